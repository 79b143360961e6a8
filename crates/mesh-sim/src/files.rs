//! Reading rule and data directories from disk: the only module of this crate that does I/O,
//! kept to `std::fs` so the crate stays free of I/O frameworks. Everything it reads is handed
//! to the pure parsers in [`crate::data`] and `mesh_engine::load`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use mesh_engine::{RuleSet, SourceFile};

use crate::data::{
    DataError, DataFormat, TimedEvent, parse_events, parse_records, snapshot_events,
};

/// Why a directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The file system said no.
    #[error("cannot read {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A data file is malformed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Two snapshot files for one connector.
    #[error("connector `{connector}` has more than one snapshot file: {files}")]
    TwoSnapshots {
        /// The connector.
        connector: String,
        /// The files.
        files: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads every `*.yaml` and `*.yml` file under `path` (a file or a directory, recursively), in
/// path order.
pub fn read_rules(path: &Path) -> Result<Vec<SourceFile>, FilesError> {
    let mut files = Vec::new();
    collect_yaml(path, &mut files)?;
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let contents = fs::read_to_string(&file).map_err(io_error(&file))?;
            Ok(SourceFile::new(file.display().to_string(), contents))
        })
        .collect()
}

/// Like [`read_rules`], with each path relative to `path` (a file keeps its name): the form
/// a rule set is stored and compared in (RuleAdmin), independent of where it was mounted.
pub fn read_rules_relative(path: &Path) -> Result<Vec<SourceFile>, FilesError> {
    let mut files = read_rules(path)?;
    let base = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    let base = base.display().to_string();
    for file in &mut files {
        if let Some(rest) = file.path.strip_prefix(&base) {
            file.path = rest.trim_start_matches(['/', '\\']).replace('\\', "/");
        }
    }
    Ok(files)
}

fn collect_yaml(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), FilesError> {
    let metadata = fs::metadata(path).map_err(io_error(path))?;
    if metadata.is_file() {
        files.push(path.to_owned());
        return Ok(());
    }
    for entry in fs::read_dir(path).map_err(io_error(path))? {
        let entry = entry.map_err(io_error(path))?;
        // Hidden entries are skipped: a Kubernetes ConfigMap volume holds every file twice more
        // under `..data` and a dated `..2026_…` directory, besides the visible symlinks.
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let child = entry.path();
        if child.is_dir() {
            collect_yaml(&child, files)?;
        } else if child.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(child);
        }
    }
    Ok(())
}

/// Reads a data directory: the snapshot of every importing connector that has a file
/// (authoritative connectors first, then by name, as an initial load runs), then
/// `events.ndjson` if present.
pub fn read_data(path: &Path, rules: &RuleSet) -> Result<Vec<TimedEvent>, FilesError> {
    let mut connectors: Vec<_> = rules.connectors().filter(|c| c.kind.imports()).collect();
    connectors.sort_by_key(|c| (!c.authoritative, c.name.clone()));
    let mut events = Vec::new();
    for connector in connectors {
        let mut found = Vec::new();
        for (format, extension) in DataFormat::ALL {
            let file = path.join(format!("{}.{extension}", connector.name));
            if file.is_file() {
                found.push((*format, file));
            }
        }
        if found.len() > 1 {
            return Err(FilesError::TwoSnapshots {
                connector: connector.name.to_string(),
                files: found
                    .iter()
                    .map(|(_, f)| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if let Some((format, file)) = found.into_iter().next() {
            let text = fs::read_to_string(&file).map_err(io_error(&file))?;
            let records = parse_records(format, &text, &file.display().to_string())?;
            events.extend(snapshot_events(&connector.name, records));
        }
    }
    let file = path.join("events.ndjson");
    if file.is_file() {
        let text = fs::read_to_string(&file).map_err(io_error(&file))?;
        events.extend(parse_events(&text, &file.display().to_string())?);
    }
    Ok(events)
}
