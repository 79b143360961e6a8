//! Sample data: connector snapshots (CSV, JSON array, NDJSON) and event lists, as text.
//!
//! A data directory holds one file per importing connector, named after it
//! (`<connector>.csv`, `<connector>.json` or `<connector>.ndjson`; each record is the raw
//! attributes of one connector object), and optionally `events.ndjson`: one event per line,
//! `{"connector", "op": "upsert"|"delete", "attributes"}`, applied after the snapshots. Events
//! may also carry `"at"` (RFC 3339; the world's clock moves one second per event otherwise),
//! `"objectType"`, and the simulator-only ops `override` (`objectType`, `anchor`, `attribute`,
//! `value`, `reason`; a null value removes the override) and `tick` (let time pass to `at`).
//!
//! Parsing is pure; [`crate::files`] reads the directory.

use chrono::{DateTime, Utc};
use mesh_model::{AttributeName, Attributes, ConnectorId, ObjectType, Value};
use serde::Deserialize;

use crate::world::SimEvent;

/// The formats a snapshot file can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DataFormat {
    /// A header line, then one record per line; empty cells are absent attributes.
    Csv,
    /// A JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl DataFormat {
    /// Every format with its file extension.
    pub const ALL: &'static [(Self, &'static str)] = &[
        (Self::Csv, "csv"),
        (Self::Json, "json"),
        (Self::Ndjson, "ndjson"),
    ];
}

/// A record or event that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct DataError {
    /// The file.
    pub file: String,
    /// The 1-based line (0 when unknown).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn error(file: &str, line: usize, message: impl Into<String>) -> DataError {
    DataError {
        file: file.to_owned(),
        line,
        message: message.into(),
    }
}

/// Drops null attributes: an absent attribute and a null one mean the same to the mesh.
fn without_nulls(attributes: Attributes) -> Attributes {
    attributes
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .collect()
}

/// Parses the records of one snapshot file.
pub fn parse_records(
    format: DataFormat,
    text: &str,
    file: &str,
) -> Result<Vec<Attributes>, DataError> {
    match format {
        DataFormat::Csv => parse_csv(text, file),
        DataFormat::Json => serde_json::from_str::<Vec<Attributes>>(text)
            .map(|records| records.into_iter().map(without_nulls).collect())
            .map_err(|e| error(file, e.line(), e.to_string())),
        DataFormat::Ndjson => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str::<Attributes>(line)
                    .map(without_nulls)
                    .map_err(|e| error(file, i + 1, e.to_string()))
            })
            .collect(),
    }
}

fn parse_csv(text: &str, file: &str) -> Result<Vec<Attributes>, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<AttributeName> = reader
        .headers()
        .map_err(|e| error(file, 1, e.to_string()))?
        .iter()
        .map(|h| AttributeName::parse(h).map_err(|e| error(file, 1, format!("column {h:?}: {e}"))))
        .collect::<Result<_, _>>()?;
    let mut records = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| {
            let line = e
                .position()
                .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
            error(file, line, e.to_string())
        })?;
        let attributes = headers
            .iter()
            .zip(row.iter())
            .filter(|(_, cell)| !cell.is_empty())
            .map(|(name, cell)| (name.clone(), Value::from(cell)))
            .collect();
        records.push(attributes);
    }
    Ok(records)
}

/// Turns the records of one connector's snapshot into upsert events.
pub fn snapshot_events(connector: &ConnectorId, records: Vec<Attributes>) -> Vec<TimedEvent> {
    records
        .into_iter()
        .map(|attributes| TimedEvent {
            event: SimEvent::Upsert {
                connector: connector.clone(),
                object_type: None,
                attributes,
            },
            at: None,
        })
        .collect()
}

/// An event and, when it says so, the time it happens.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedEvent {
    /// The event.
    pub event: SimEvent,
    /// When it happens; one second after the previous event when `None`.
    pub at: Option<DateTime<Utc>>,
}

/// One event as written in `events.ndjson` or a scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventLine {
    /// `upsert`, `delete`, `override` or `tick`.
    pub op: String,
    /// The connector (upsert, delete).
    pub connector: Option<String>,
    /// The object type (optional for upsert and delete; required for override).
    pub object_type: Option<String>,
    /// The raw attributes (upsert, delete).
    #[serde(default)]
    pub attributes: Attributes,
    /// When it happens.
    pub at: Option<String>,
    /// The mesh object's anchor (override).
    pub anchor: Option<String>,
    /// The attribute (override).
    pub attribute: Option<String>,
    /// The value (override); null or absent removes the override.
    #[serde(default)]
    pub value: Value,
    /// Why (override).
    pub reason: Option<String>,
}

impl EventLine {
    /// Checks the line and turns it into an event.
    pub fn into_event(self) -> Result<TimedEvent, String> {
        let at = self
            .at
            .as_deref()
            .map(|at| {
                DateTime::parse_from_rfc3339(at)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| format!("`at` {at:?}: {e}"))
            })
            .transpose()?;
        let object_type = self
            .object_type
            .as_deref()
            .map(ObjectType::parse)
            .transpose()
            .map_err(|e| e.to_string())?;
        let connector = || {
            self.connector
                .as_deref()
                .ok_or_else(|| format!("a `{}` event needs `connector`", self.op))
                .and_then(|c| ConnectorId::parse(c).map_err(|e| e.to_string()))
        };
        let event = match self.op.as_str() {
            "upsert" => SimEvent::Upsert {
                connector: connector()?,
                object_type,
                attributes: without_nulls(self.attributes.clone()),
            },
            "delete" => SimEvent::Delete {
                connector: connector()?,
                object_type,
                attributes: self.attributes.clone(),
            },
            "override" => SimEvent::Override {
                object_type: object_type.ok_or("an `override` event needs `objectType`")?,
                anchor: self
                    .anchor
                    .clone()
                    .ok_or("an `override` event needs `anchor`")?,
                attribute: AttributeName::parse(
                    self.attribute
                        .as_deref()
                        .ok_or("an `override` event needs `attribute`")?,
                )
                .map_err(|e| e.to_string())?,
                value: (!self.value.is_null()).then(|| self.value.clone()),
                reason: self.reason.clone().unwrap_or_default(),
            },
            "tick" => SimEvent::Tick,
            other => {
                return Err(format!(
                    "unknown op {other:?}; expected upsert, delete, override or tick"
                ));
            }
        };
        Ok(TimedEvent { event, at })
    }
}

/// Parses `events.ndjson`.
pub fn parse_events(text: &str, file: &str) -> Result<Vec<TimedEvent>, DataError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str::<EventLine>(line)
                .map_err(|e| e.to_string())
                .and_then(EventLine::into_event)
                .map_err(|message| error(file, i + 1, message))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_strings_and_empty_cells_are_absent() {
        let records = parse_records(
            DataFormat::Csv,
            "employeeId,givenName,manager\n1001,Ada,\n\"1002\",\"Grace, R.\",1001\n",
            "hr.csv",
        )
        .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].get_str("EMPLOYEEID"), Some(&Value::from("1001")));
        assert_eq!(records[0].get_str("manager"), None);
        assert_eq!(
            records[1].get_str("givenName"),
            Some(&Value::from("Grace, R."))
        );
    }

    #[test]
    fn bad_lines_name_their_line() {
        let err = parse_records(
            DataFormat::Ndjson,
            "{\"a\": 1}\n{\"a\": {\"b\": 1}}\n",
            "x.ndjson",
        )
        .unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse_events("{\"op\": \"upsert\"}\n", "events.ndjson").unwrap_err();
        assert!(err.message.contains("connector"), "{err}");
    }
}
