//! The drop-directory watcher of one HR feed.
//!
//! Producers write a file under a temporary name (a leading `.` or a `.tmp`/`.partial`
//! suffix) and rename it when complete; the watcher polls the directory, leaves files
//! modified in the last two seconds alone, and imports the others one at a time, oldest
//! first:
//!
//! - `<drop>/processing/` holds the file while it imports (a file found there at start is
//!   imported again: imports are idempotent);
//! - applied files go to `<drop>/done/`, held ones to `<drop>/held/`, unreadable ones to
//!   `<drop>/failed/`, each with a `<name>.report.json` beside it;
//! - an operator confirms a held extract by moving it to `<drop>/confirmed/`, which imports
//!   it without the leaver threshold.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::{ImportError, ImportStatus, Importer};
use crate::outbox::error_chain;
use crate::settings::HrFeed;

/// Files younger than this may still be being written.
const SETTLE: Duration = Duration::from_secs(2);

/// Watches one feed's drop directory.
#[derive(Debug)]
pub struct DropDirWatcher {
    feed: HrFeed,
    importer: Arc<Importer>,
}

fn ready_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let now = SystemTime::now();
    let mut files: Vec<(SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                || name.ends_with(".tmp")
                || name.ends_with(".partial")
                || name.ends_with(".report.json")
            {
                return None;
            }
            let meta = e.metadata().ok()?;
            if !meta.is_file() {
                return None;
            }
            let modified = meta.modified().ok()?;
            let settled = now.duration_since(modified).is_ok_and(|age| age >= SETTLE);
            settled.then(|| (modified, e.path()))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

impl DropDirWatcher {
    /// Watches `feed.drop_dir` with `importer`.
    pub fn new(feed: HrFeed, importer: Arc<Importer>) -> Self {
        Self { feed, importer }
    }

    /// Polls until `shutdown`; an import in progress finishes first.
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(dir) = self.feed.drop_dir.clone() else {
            return;
        };
        for sub in ["processing", "done", "held", "failed", "confirmed"] {
            if let Err(error) = std::fs::create_dir_all(dir.join(sub)) {
                tracing::error!(connector = %self.feed.connector, dir = %dir.display(), error = %error, "cannot prepare the drop directory");
                return;
            }
        }
        tracing::info!(connector = %self.feed.connector, dir = %dir.display(), "watching drop directory");
        loop {
            self.poll(&dir, &shutdown).await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.feed.poll_interval) => {}
            }
        }
    }

    /// Imports every settled file once.
    pub async fn poll(&self, dir: &Path, shutdown: &CancellationToken) {
        let processing = dir.join("processing");
        let mut work: Vec<(PathBuf, bool)> = Vec::new();
        // Left over from a crash: import again, without confirmation unless it came from
        // confirmed/ (which we cannot know any more, so the threshold applies again).
        if let Ok(entries) = std::fs::read_dir(&processing) {
            work.extend(entries.filter_map(Result::ok).map(|e| (e.path(), false)));
        }
        work.extend(
            ready_files(&dir.join("confirmed"))
                .into_iter()
                .map(|p| (p, true)),
        );
        work.extend(ready_files(dir).into_iter().map(|p| (p, false)));
        for (path, confirmed) in work {
            if shutdown.is_cancelled() {
                return;
            }
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let claimed = processing.join(&name);
            if path != claimed && std::fs::rename(&path, &claimed).is_err() {
                continue;
            }
            let outcome = self
                .importer
                .import_file(&self.feed, &claimed, &name, confirmed)
                .await;
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
            let (dest, report) = match &outcome {
                Ok(r) if r.status == ImportStatus::Held => (
                    dir.join("held").join(&name),
                    serde_json::to_string_pretty(r),
                ),
                Ok(r) => (
                    dir.join("done").join(format!("{stamp}-{name}")),
                    serde_json::to_string_pretty(r),
                ),
                Err(ImportError::Parse(e)) => (
                    dir.join("failed").join(format!("{stamp}-{name}")),
                    Ok(serde_json::json!({ "error": error_chain(e) }).to_string()),
                ),
                Err(e) => {
                    // A database outage: leave the file in processing/ for the next poll.
                    tracing::warn!(connector = %self.feed.connector, file = %name, error = %error_chain(e), "import failed; will retry");
                    continue;
                }
            };
            if let Err(error) = std::fs::rename(&claimed, &dest) {
                tracing::error!(file = %name, error = %error, "cannot move an imported file");
            }
            if let Ok(report) = report {
                let mut report_path = dest.into_os_string();
                report_path.push(".report.json");
                let _ = std::fs::write(PathBuf::from(report_path), report);
            }
        }
    }
}
