//! Streaming readers of HR extracts: CSV with a header row, a JSON array of objects, or
//! NDJSON. Each record is mapped through the feed's column mapping into connector attributes
//! and its external id; a record that cannot be mapped is reported as [`Malformed`] with its
//! line, column and reason, and reading goes on. Only a file that cannot be read at all (no
//! header, a missing mapped column, broken JSON array syntax, I/O) stops the import.
//!
//! Memory stays bounded: records are handed out one at a time, never collected.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use mesh_model::{AttributeName, Attributes, ExternalId, Value};
use mesh_runtime::config::HrFormat;
use serde::Serialize;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::Value as Json;

use crate::settings::HrFeed;

/// One mapped record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The line it ends on (1-based).
    pub line: u64,
    /// Its external id.
    pub external_id: ExternalId,
    /// Its mapped attributes; empty values are absent.
    pub attributes: Attributes,
}

/// A record that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Malformed {
    /// The line (1-based).
    pub line: u64,
    /// The column (1-based field index for CSV; for JSON the column of a syntax error, or 0).
    pub column: u64,
    /// The field, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// A record or the report of a malformed one.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A good record.
    Record(Record),
    /// A malformed one.
    Malformed(Malformed),
}

/// Why a file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Reading failed.
    #[error("cannot read the extract")]
    Io(#[from] io::Error),
    /// The CSV reader failed.
    #[error("cannot read the CSV extract")]
    Csv(#[from] csv::Error),
    /// The header or the mapping is wrong.
    #[error("{0}")]
    Layout(String),
    /// A JSON array is syntactically broken, so no later record can be found.
    #[error("the JSON array is malformed at line {line}, column {column}: {reason}")]
    Json {
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// The parser's message.
        reason: String,
    },
}

fn malformed(line: u64, column: u64, field: Option<&str>, reason: impl Into<String>) -> Item {
    Item::Malformed(Malformed {
        line,
        column,
        field: field.map(str::to_owned),
        reason: reason.into(),
    })
}

/// Reads every record of `reader` in `feed`'s format, calling `sink` for each; `sink`
/// returns false to stop early.
pub fn read(
    feed: &HrFeed,
    reader: impl Read,
    sink: &mut dyn FnMut(Item) -> bool,
) -> Result<(), ParseError> {
    match feed.format {
        HrFormat::Csv => read_csv(feed, reader, sink),
        HrFormat::Json => read_json_array(feed, reader, sink),
        HrFormat::Ndjson => read_ndjson(feed, reader, sink),
    }
}

fn read_csv(
    feed: &HrFeed,
    reader: impl Read,
    sink: &mut dyn FnMut(Item) -> bool,
) -> Result<(), ParseError> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(feed.delimiter)
        .flexible(true)
        .has_headers(true)
        .buffer_capacity(1 << 16)
        .from_reader(reader);
    let headers: Vec<String> = rdr
        .byte_headers()?
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_owned()
        })
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(ParseError::Layout("the extract has no header row".into()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .or_else(|| headers.iter().position(|h| h.eq_ignore_ascii_case(name)))
    };
    let id_index = find(&feed.external_id).ok_or_else(|| {
        ParseError::Layout(format!(
            "the external id column {:?} is not in the header",
            feed.external_id
        ))
    })?;
    let mapping: Vec<(usize, AttributeName)> = if feed.columns.is_empty() {
        headers
            .iter()
            .enumerate()
            .filter_map(|(i, h)| AttributeName::parse(h).ok().map(|a| (i, a)))
            .collect()
    } else {
        feed.columns
            .iter()
            .map(|(source, attr)| {
                find(source).map(|i| (i, attr.clone())).ok_or_else(|| {
                    ParseError::Layout(format!("the mapped column {source:?} is not in the header"))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut record = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => return Err(e.into()),
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                if !sink(malformed(line, 0, None, e.to_string())) {
                    return Ok(());
                }
                continue;
            }
        }
        let line = record.position().map_or(0, csv::Position::line);
        let item = map_csv_record(&headers, id_index, &mapping, &record, line);
        if !sink(item) {
            return Ok(());
        }
    }
}

fn map_csv_record(
    headers: &[String],
    id_index: usize,
    mapping: &[(usize, AttributeName)],
    record: &csv::ByteRecord,
    line: u64,
) -> Item {
    if record.len() == 1 && record.get(0).is_some_and(<[u8]>::is_empty) {
        return malformed(line, 1, None, "empty line");
    }
    if record.len() != headers.len() {
        return malformed(
            line,
            (record.len().min(headers.len()) + 1) as u64,
            None,
            format!("expected {} fields, found {}", headers.len(), record.len()),
        );
    }
    let field = |i: usize| -> Result<&str, Item> {
        let bytes = record.get(i).unwrap_or_default();
        std::str::from_utf8(bytes).map_err(|_| {
            malformed(
                line,
                i as u64 + 1,
                headers.get(i).map(String::as_str),
                "not valid UTF-8",
            )
        })
    };
    let id_text = match field(id_index) {
        Ok(s) => s.trim(),
        Err(item) => return item,
    };
    let id_name = headers.get(id_index).map(String::as_str);
    if id_text.is_empty() {
        return malformed(
            line,
            id_index as u64 + 1,
            id_name,
            "the external id is empty",
        );
    }
    let external_id = match ExternalId::parse(id_text) {
        Ok(id) => id,
        Err(e) => return malformed(line, id_index as u64 + 1, id_name, e.to_string()),
    };
    let mut attributes = Attributes::new();
    for (i, name) in mapping {
        let text = match field(*i) {
            Ok(s) => s,
            Err(item) => return item,
        };
        if !text.is_empty() {
            attributes.insert(name.clone(), Value::from(text));
        }
    }
    Item::Record(Record {
        line,
        external_id,
        attributes,
    })
}

fn flatten_json(prefix: &str, value: &Json, out: &mut BTreeMap<String, Value>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_json(&key, v, out);
            }
        }
        other => {
            if let Ok(v) = serde_json::from_value::<Value>(other.clone()) {
                out.insert(prefix.to_owned(), v);
            } else {
                // A list holding objects: keep it whole, as JSON text.
                out.insert(prefix.to_owned(), Value::from(other.to_string()));
            }
        }
    }
}

fn map_json_record(feed: &HrFeed, value: Json, line: u64) -> Item {
    let Json::Object(_) = value else {
        return malformed(line, 0, None, "a record must be a JSON object");
    };
    let mut flat = BTreeMap::new();
    flatten_json("", &value, &mut flat);
    let lookup = |name: &str| {
        flat.get(name).or_else(|| {
            flat.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    };
    let id_text = match lookup(&feed.external_id) {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Integer(i)) => i.to_string(),
        Some(Value::Null) | None => {
            return malformed(
                line,
                0,
                Some(&feed.external_id),
                "the external id is missing",
            );
        }
        Some(other) => {
            return malformed(
                line,
                0,
                Some(&feed.external_id),
                format!(
                    "the external id must be a string or an integer, not a {}",
                    other.kind()
                ),
            );
        }
    };
    let external_id = match ExternalId::parse(&id_text) {
        Ok(id) => id,
        Err(e) => return malformed(line, 0, Some(&feed.external_id), e.to_string()),
    };
    let mut attributes = Attributes::new();
    if feed.columns.is_empty() {
        for (k, v) in &flat {
            if v.is_null() || matches!(v, Value::String(s) if s.is_empty()) {
                continue;
            }
            match AttributeName::parse(k) {
                Ok(name) => {
                    attributes.insert(name, v.clone());
                }
                Err(e) => return malformed(line, 0, Some(k), e.to_string()),
            }
        }
    } else {
        for (source, name) in &feed.columns {
            if let Some(v) = lookup(source)
                && !v.is_null()
                && !matches!(v, Value::String(s) if s.is_empty())
            {
                attributes.insert(name.clone(), v.clone());
            }
        }
    }
    Item::Record(Record {
        line,
        external_id,
        attributes,
    })
}

fn read_ndjson(
    feed: &HrFeed,
    reader: impl Read,
    sink: &mut dyn FnMut(Item) -> bool,
) -> Result<(), ParseError> {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let item = match serde_json::from_str::<Json>(&line) {
            Ok(value) => map_json_record(feed, value, number),
            Err(e) => malformed(
                number,
                e.column() as u64,
                None,
                format!("invalid JSON: {e}"),
            ),
        };
        if !sink(item) {
            return Ok(());
        }
    }
}

/// Counts newlines as serde_json pulls bytes, so each array element knows its line.
struct LineCounter<R> {
    inner: R,
    lines: Rc<Cell<u64>>,
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let newlines = buf
            .get(..n)
            .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count());
        self.lines.set(self.lines.get() + newlines as u64);
        Ok(n)
    }
}

struct ArrayVisitor<'a> {
    feed: &'a HrFeed,
    lines: Rc<Cell<u64>>,
    sink: &'a mut dyn FnMut(Item) -> bool,
}

impl<'de> Visitor<'de> for ArrayVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Json>()? {
            let line = self.lines.get() + 1;
            if !(self.sink)(map_json_record(self.feed, value, line)) {
                // Stop reading: drain nothing more.
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for ArrayVisitor<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

fn read_json_array(
    feed: &HrFeed,
    reader: impl Read,
    sink: &mut dyn FnMut(Item) -> bool,
) -> Result<(), ParseError> {
    let lines = Rc::new(Cell::new(0));
    let counter = LineCounter {
        inner: BufReader::with_capacity(1 << 16, reader),
        lines: lines.clone(),
    };
    let mut stopped = false;
    let mut wrapped = |item: Item| {
        let go = sink(item);
        stopped |= !go;
        go
    };
    let mut de = serde_json::Deserializer::from_reader(counter);
    let visitor = ArrayVisitor {
        feed,
        lines,
        sink: &mut wrapped,
    };
    let result = visitor.deserialize(&mut de).and_then(|()| de.end());
    match result {
        Ok(()) => Ok(()),
        Err(_) if stopped => Ok(()),
        Err(e) if e.is_io() => Err(ParseError::Io(io::Error::other(e.to_string()))),
        Err(e) => Err(ParseError::Json {
            line: e.line(),
            column: e.column(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mesh_model::{ConnectorId, ObjectType};

    use super::*;

    fn feed(format: HrFormat, columns: &[(&str, &str)]) -> HrFeed {
        HrFeed {
            connector: ConnectorId::parse("hr").unwrap(),
            format,
            delimiter: b',',
            object_type: ObjectType::parse("User").unwrap(),
            external_id: "employee_id".into(),
            columns: columns
                .iter()
                .map(|(s, a)| ((*s).to_owned(), AttributeName::parse(a).unwrap()))
                .collect(),
            drop_dir: None,
            poll_interval: Duration::from_secs(1),
            max_leavers_percent: 5.0,
            max_leavers: None,
        }
    }

    fn collect(feed: &HrFeed, text: &str) -> (Vec<Record>, Vec<Malformed>) {
        let mut records = Vec::new();
        let mut bad = Vec::new();
        read(feed, text.as_bytes(), &mut |item| {
            match item {
                Item::Record(r) => records.push(r),
                Item::Malformed(m) => bad.push(m),
            }
            true
        })
        .unwrap();
        (records, bad)
    }

    #[test]
    fn csv_maps_columns_and_reports_malformed_rows_with_positions() {
        let feed = feed(
            HrFormat::Csv,
            &[
                ("employee_id", "employeeId"),
                ("first", "givenName"),
                ("dept", "department"),
            ],
        );
        let text = "employee_id,first,dept\n\
                    1,Ada,Eng\n\
                    2,Bob\n\
                    ,Cy,Ops\n\
                    \"4\",\"Dee, Jr\",\n\
                    5,Eve,Sales,extra\n";
        let (records, bad) = collect(&feed, text);
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].external_id.as_str(), "4");
        assert_eq!(
            records[1].attributes.get_str("givenName"),
            Some(&Value::from("Dee, Jr"))
        );
        assert_eq!(records[1].attributes.get_str("department"), None);
        let positions: Vec<(u64, u64)> = bad.iter().map(|m| (m.line, m.column)).collect();
        assert_eq!(positions, vec![(3, 3), (4, 1), (6, 4)]);
        assert!(bad[1].reason.contains("empty"), "{:?}", bad[1]);
    }

    #[test]
    fn csv_layout_errors_stop_the_import() {
        let feed = feed(HrFormat::Csv, &[("nope", "x")]);
        assert!(matches!(
            read(&feed, "employee_id,a\n1,2\n".as_bytes(), &mut |_| true),
            Err(ParseError::Layout(_))
        ));
        let feed2 = super::tests::feed(HrFormat::Csv, &[]);
        assert!(matches!(
            read(&feed2, "id,a\n1,2\n".as_bytes(), &mut |_| true),
            Err(ParseError::Layout(_))
        ));
    }

    #[test]
    fn json_array_and_ndjson_stream_records() {
        let feed = feed(HrFormat::Json, &[]);
        let text = "[\n{\"employee_id\": \"1\", \"name\": {\"given\": \"Ada\"}, \"grade\": 7},\n{\"name\": \"x\"},\n42\n]";
        let (records, bad) = collect(&feed, text);
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].attributes.get_str("name.given"),
            Some(&Value::from("Ada"))
        );
        assert_eq!(
            records[0].attributes.get_str("grade"),
            Some(&Value::Integer(7))
        );
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].line, 3);
        let broken = read(&feed, "[{\"employee_id\": \"1\"},".as_bytes(), &mut |_| {
            true
        });
        assert!(matches!(broken, Err(ParseError::Json { .. })), "{broken:?}");

        let feed = super::tests::feed(HrFormat::Ndjson, &[]);
        let text = "{\"employee_id\": 1}\n{broken\n\n{\"employee_id\": \"3\"}\n";
        let (records, bad) = collect(&feed, text);
        assert_eq!(records.len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 2);
    }
}
