//! Output formats shared by every command: `-o text|json` for the commands that print a report,
//! `-o table|json|yaml` for those that print records ([`Format`]).
//!
//! JSON and YAML print the same document, so a script can switch between them; the table is
//! for people and may change.

use clap::ValueEnum;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    #[default]
    #[value(alias = "table")]
    Text,
    /// One JSON document on stdout, for scripts.
    Json,
    /// The JSON document as YAML.
    Yaml,
}

/// Prints `document` as JSON, or as YAML for [`OutputFormat::Yaml`] (text output is the
/// command's own).
pub fn print_structured(format: OutputFormat, document: &serde_json::Value) -> anyhow::Result<()> {
    match format {
        OutputFormat::Yaml => print_yaml(document),
        OutputFormat::Json | OutputFormat::Text => print_json(document),
    }
}

/// How a command that prints records prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Aligned columns, for people.
    #[default]
    #[value(alias = "text")]
    Table,
    /// One JSON document on stdout, for scripts.
    Json,
    /// One YAML document on stdout: the JSON document as YAML.
    Yaml,
}

/// Prints a JSON document on stdout.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints a YAML document on stdout.
pub fn print_yaml(value: &serde_json::Value) -> anyhow::Result<()> {
    print!("{}", serde_saphyr::to_string(value)?);
    Ok(())
}

/// Prints `document` as JSON or YAML; returns false for [`Format::Table`], which the command
/// prints itself.
pub fn print_document(format: Format, document: &serde_json::Value) -> anyhow::Result<bool> {
    match format {
        Format::Json => print_json(document)?,
        Format::Yaml => print_yaml(document)?,
        Format::Table => return Ok(false),
    }
    Ok(true)
}

/// How [`print_list`] shows a list as a table.
pub struct ListTable<'a, T> {
    /// The column names.
    pub header: &'a [&'a str],
    /// One row's cells.
    pub row: &'a dyn Fn(&T) -> Vec<String>,
    /// What to print instead of an empty table, if anything.
    pub empty: Option<&'a str>,
}

/// Prints `items` as `{key: [..]}` in JSON or YAML, or as a table.
pub fn print_list<T>(
    format: Format,
    key: &str,
    items: &[T],
    json: impl Fn(&T) -> serde_json::Value,
    table: &ListTable<'_, T>,
) -> anyhow::Result<()> {
    let document = serde_json::json!({ key: items.iter().map(json).collect::<Vec<_>>() });
    if print_document(format, &document)? {
        return Ok(());
    }
    match table.empty {
        Some(empty) if items.is_empty() => println!("{empty}"),
        _ => print_table(
            table.header,
            &items.iter().map(table.row).collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

/// Prints rows as columns separated by two spaces, each as wide as its widest cell (the last
/// column is not padded).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    for line in table(header, rows) {
        println!("{line}");
    }
}

/// The lines of [`print_table`].
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i + 1 < widths.len() {
                let width = widths.get(i).copied().unwrap_or(0);
                out.extend(std::iter::repeat_n(
                    ' ',
                    width.saturating_sub(cell.chars().count()),
                ));
            }
        }
        out.trim_end().to_owned()
    };
    let mut lines = vec![line(&mut header.iter().copied())];
    lines.extend(
        rows.iter()
            .map(|row| line(&mut row.iter().map(String::as_str))),
    );
    lines
}
