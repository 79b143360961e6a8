//! HR feeds: full extracts diffed against the previous one.
//!
//! An import reads the file twice, streaming both times (memory does not grow with the file):
//!
//! 1. **Count.** Every external id goes to `hr_import_seen`; malformed and duplicate records
//!    are reported with line, column and reason. Leavers are the records of the previous
//!    extract (`hr_records`) that are not seen. If they exceed the feed's threshold (a
//!    percentage of the previous extract, or an absolute count), the extract is **held**:
//!    nothing is applied until an operator confirms (`meshctl import --confirm-leavers`, or
//!    moving the file to the drop directory's `confirmed/`). A truncated or wrong extract thus
//!    never deprovisions half the company.
//! 2. **Apply.** Records are compared with `hr_records` by a digest of their attributes:
//!    joiners (new), movers (changed) and unchanged (no event). Each batch updates
//!    `hr_records` and writes its change events to the outbox as one framed row, in one
//!    transaction; a few batches are applied at once. Then leavers are deleted the same way.
//!    The relay publishes afterwards.
//!
//! A mover's event carries the record's full attributes, because a `ChangeEvent` upsert is a
//! snapshot (an absent attribute is withdrawn); the import report names only the attributes
//! that changed. Re-running an import after a crash is safe: what committed is now unchanged
//! and costs no event.

pub mod parse;
pub mod upload;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use mesh_model::{Attributes, ChangeOperation};
use mesh_runtime::metrics::{MetricsRegistry, names};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use self::parse::{Item, Malformed, ParseError, Record};
use crate::events::{OutboxRow, change_event, insert_outbox_framed};
use crate::outbox::RelayHandle;
use crate::settings::HrFeed;

/// Records per database round trip.
const BATCH: usize = 5000;
/// Batches applied at once. Batches hold distinct records (duplicates are dropped in the
/// first pass), so their order does not matter; three in flight keep PostgreSQL, the
/// importer and the relay busy at the same time (two: about 10% slower).
const APPLY_IN_FLIGHT: usize = 3;
/// Malformed records and changes listed in a report; the counts are always complete.
const REPORT_LIMIT: usize = 1000;

/// How an import ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportStatus {
    /// Diffed and applied; its events are in the outbox.
    Applied,
    /// Too many leavers: nothing applied until confirmed.
    Held,
}

/// One change an import found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordChange {
    /// `joiner`, `mover` or `leaver`.
    pub kind: &'static str,
    /// The record.
    pub external_id: String,
    /// For a mover, the attributes that changed (appeared, disappeared or differ).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

/// What applying one batch of records found.
#[derive(Debug, Default)]
struct BatchOutcome {
    joiners: u64,
    movers: u64,
    unchanged: u64,
    /// The batch's first changes (at most [`REPORT_LIMIT`]).
    changes: Vec<RecordChange>,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    /// The import's id.
    pub import_id: Uuid,
    /// The connector.
    pub connector: String,
    /// The file's name.
    pub source: String,
    /// Applied or held.
    pub status: ImportStatus,
    /// Records read (good ones).
    pub records: u64,
    /// New records.
    pub joiners: u64,
    /// Changed records.
    pub movers: u64,
    /// Records gone since the previous extract.
    pub leavers: u64,
    /// Records without change.
    pub unchanged: u64,
    /// Malformed or duplicate records, skipped.
    pub malformed: u64,
    /// Records of the previous extract.
    pub previous_records: u64,
    /// Why the extract was held, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_because: Option<String>,
    /// The first malformed records.
    pub errors: Vec<Malformed>,
    /// The first changes.
    pub changes: Vec<RecordChange>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
}

/// Why an import failed; nothing was applied unless stated.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read at all.
    #[error("the extract cannot be imported")]
    Parse(#[from] ParseError),
    /// PostgreSQL failed (batches already committed stay applied; re-running completes it).
    #[error("the import's database work failed")]
    Store(#[from] sqlx::Error),
    /// An event could not be built.
    #[error("building a change event failed")]
    Event(#[from] crate::events::EventError),
    /// The reader thread died.
    #[error("the extract reader stopped unexpectedly")]
    Reader,
}

/// Runs imports.
#[derive(Debug)]
pub struct Importer {
    pool: PgPool,
    relay: RelayHandle,
    records: Family<Vec<(String, String)>, Counter>,
}

/// A record's attributes as stored in `hr_records` (JSON) and their digest.
fn stored_form(attributes: &Attributes) -> (Vec<u8>, Vec<u8>) {
    let json = serde_json::to_vec(attributes).unwrap_or_default();
    let digest = Sha256::digest(&json)
        .get(..16)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    (json, digest)
}

fn changed_names(old: &Attributes, new: &Attributes) -> Vec<String> {
    let mut changed: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(k) != Some(*v))
        .map(|(k, _)| k.to_string())
        .collect();
    changed.extend(
        old.iter()
            .filter(|(k, _)| new.get(k).is_none())
            .map(|(k, _)| k.to_string()),
    );
    changed.sort();
    changed
}

/// Streams batches of items from a file on a blocking thread; the channel's bound keeps
/// memory flat whatever the file's size.
fn stream(
    feed: &HrFeed,
    path: &Path,
) -> (
    mpsc::Receiver<Vec<Item>>,
    tokio::task::JoinHandle<Result<(), ParseError>>,
) {
    let (tx, rx) = mpsc::channel::<Vec<Item>>(4);
    let feed = feed.clone();
    let path = path.to_owned();
    let handle = tokio::task::spawn_blocking(move || {
        let file = File::open(&path)?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut open = true;
        parse::read(&feed, file, &mut |item| {
            batch.push(item);
            if batch.len() >= BATCH {
                open = tx
                    .blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .is_ok();
            }
            open
        })?;
        if open && !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        Ok(())
    });
    (rx, handle)
}

async fn finish_reader(
    handle: tokio::task::JoinHandle<Result<(), ParseError>>,
) -> Result<(), ImportError> {
    handle
        .await
        .map_err(|_| ImportError::Reader)?
        .map_err(ImportError::from)
}

impl Importer {
    /// Builds an importer writing to `pool` and waking `relay` after each commit.
    pub fn new(pool: PgPool, relay: RelayHandle, metrics: &MetricsRegistry) -> Self {
        Self {
            pool,
            relay,
            records: metrics.register(&names::CONNECTOR_HR_RECORDS, Family::default()),
        }
    }

    fn count(&self, connector: &str, outcome: &str, n: u64) {
        if n > 0 {
            self.records
                .get_or_create(&vec![
                    ("connector".to_owned(), connector.to_owned()),
                    ("outcome".to_owned(), outcome.to_owned()),
                ])
                .inc_by(n);
        }
    }

    /// Imports the extract at `path` for `feed`. With `confirm_leavers`, the leaver
    /// threshold does not hold it.
    pub async fn import_file(
        &self,
        feed: &HrFeed,
        path: &Path,
        source: &str,
        confirm_leavers: bool,
    ) -> Result<ImportReport, ImportError> {
        let started = Instant::now();
        let import_id = Uuid::new_v4();
        let connector = feed.connector.as_str();
        let object_type = feed.object_type.as_str();
        let mut report = ImportReport {
            import_id,
            connector: connector.to_owned(),
            source: source.to_owned(),
            status: ImportStatus::Applied,
            records: 0,
            joiners: 0,
            movers: 0,
            leavers: 0,
            unchanged: 0,
            malformed: 0,
            previous_records: 0,
            held_because: None,
            errors: Vec::new(),
            changes: Vec::new(),
            started_at: Utc::now(),
            elapsed_ms: 0,
        };
        let result = self
            .run(feed, path, import_id, confirm_leavers, &mut report)
            .await;
        // The seen ids only matter during the import.
        let _ = sqlx::query("DELETE FROM hr_import_seen WHERE import_id = $1")
            .bind(import_id)
            .execute(&self.pool)
            .await;
        result?;
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.count(connector, "joiner", report.joiners);
        self.count(connector, "mover", report.movers);
        self.count(connector, "leaver", report.leavers);
        self.count(connector, "unchanged", report.unchanged);
        self.count(connector, "malformed", report.malformed);
        sqlx::query(
            "INSERT INTO hr_imports (import_id, connector, source, status, report, started_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, now())",
        )
        .bind(import_id)
        .bind(connector)
        .bind(source)
        .bind(match report.status {
            ImportStatus::Applied => "applied",
            ImportStatus::Held => "held",
        })
        .bind(sqlx::types::Json(&report))
        .bind(report.started_at)
        .execute(&self.pool)
        .await?;
        tracing::info!(
            connector, object_type, source, import_id = %import_id, status = ?report.status,
            joiners = report.joiners, movers = report.movers, leavers = report.leavers,
            unchanged = report.unchanged, malformed = report.malformed,
            elapsed_ms = report.elapsed_ms, "hr extract imported"
        );
        Ok(report)
    }

    async fn run(
        &self,
        feed: &HrFeed,
        path: &Path,
        import_id: Uuid,
        confirm_leavers: bool,
        report: &mut ImportReport,
    ) -> Result<(), ImportError> {
        let connector = feed.connector.as_str();
        let object_type = feed.object_type.as_str();

        // Pass 1: record what the extract contains.
        let mut skip: HashSet<u64> = HashSet::new();
        let (mut rx, reader) = stream(feed, path);
        while let Some(batch) = rx.recv().await {
            let mut ids: Vec<&str> = Vec::with_capacity(batch.len());
            let mut in_batch: HashSet<&str> = HashSet::with_capacity(batch.len());
            let mut lines: Vec<(u64, &str)> = Vec::new();
            for item in &batch {
                match item {
                    Item::Record(r) => {
                        let id = r.external_id.as_str();
                        if in_batch.insert(id) {
                            ids.push(id);
                            lines.push((r.line, id));
                        } else {
                            skip.insert(r.line);
                            note_malformed(report, r.line, "duplicate external id in the extract");
                        }
                    }
                    Item::Malformed(m) => {
                        skip.insert(m.line);
                        report.malformed += 1;
                        if report.errors.len() < REPORT_LIMIT {
                            report.errors.push(m.clone());
                        }
                    }
                }
            }
            let inserted: Vec<(String,)> = sqlx::query_as(
                "INSERT INTO hr_import_seen (import_id, external_id) \
                 SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING external_id",
            )
            .bind(import_id)
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
            if inserted.len() != ids.len() {
                let fresh: HashSet<&str> = inserted.iter().map(|(s,)| s.as_str()).collect();
                for (line, id) in lines {
                    if !fresh.contains(id) {
                        skip.insert(line);
                        note_malformed(report, line, "duplicate external id in the extract");
                    }
                }
            }
            report.records += inserted.len() as u64;
        }
        finish_reader(reader).await?;
        report.errors.sort_by_key(|m| m.line);

        let (previous,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM hr_records WHERE connector = $1 AND object_type = $2",
        )
        .bind(connector)
        .bind(object_type)
        .fetch_one(&self.pool)
        .await?;
        let (leavers,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM hr_records r WHERE r.connector = $1 AND r.object_type = $2 \
             AND NOT EXISTS (SELECT 1 FROM hr_import_seen s WHERE s.import_id = $3 AND s.external_id = r.external_id)",
        )
        .bind(connector)
        .bind(object_type)
        .bind(import_id)
        .fetch_one(&self.pool)
        .await?;
        report.previous_records = previous.max(0) as u64;
        let leavers = leavers.max(0) as u64;
        let percent = if previous > 0 {
            leavers as f64 * 100.0 / previous as f64
        } else {
            0.0
        };
        let over_percent = leavers > 0 && percent > feed.max_leavers_percent;
        let over_count = feed.max_leavers.is_some_and(|max| leavers > max);
        if !confirm_leavers && (over_percent || over_count) {
            report.status = ImportStatus::Held;
            report.leavers = leavers;
            report.held_because = Some(format!(
                "{leavers} leavers ({percent:.1}% of {previous} records) exceed the threshold \
                 ({}%{}); confirm to apply",
                feed.max_leavers_percent,
                feed.max_leavers
                    .map(|m| format!(" or {m} records"))
                    .unwrap_or_default()
            ));
            tracing::warn!(connector, import_id = %import_id, leavers, previous, "hr extract held: too many leavers");
            return Ok(());
        }

        // Pass 2: apply joiners and movers, a few batches at once.
        let now = Utc::now();
        let traceparent = mesh_runtime::telemetry::traceparent(&tracing::Span::current());
        let (rx, reader) = stream(feed, path);
        let batches = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|batch| (batch, rx))
        });
        let mut applied = std::pin::pin!(
            batches
                .map(|batch| {
                    let records: Vec<Record> = batch
                        .into_iter()
                        .filter_map(|item| match item {
                            Item::Record(r) if !skip.contains(&r.line) => Some(r),
                            _ => None,
                        })
                        .collect();
                    self.apply_batch(feed, import_id, now, records, traceparent.as_deref())
                })
                .buffered(APPLY_IN_FLIGHT)
        );
        while let Some(outcome) = applied.next().await {
            let outcome = outcome?;
            report.joiners += outcome.joiners;
            report.movers += outcome.movers;
            report.unchanged += outcome.unchanged;
            let room = REPORT_LIMIT.saturating_sub(report.changes.len());
            report
                .changes
                .extend(outcome.changes.into_iter().take(room));
        }
        finish_reader(reader).await?;

        // Then leavers.
        loop {
            let gone: Vec<(String,)> = sqlx::query_as(
                "SELECT r.external_id FROM hr_records r WHERE r.connector = $1 AND r.object_type = $2 \
                 AND NOT EXISTS (SELECT 1 FROM hr_import_seen s WHERE s.import_id = $3 AND s.external_id = r.external_id) \
                 LIMIT $4",
            )
            .bind(connector)
            .bind(object_type)
            .bind(import_id)
            .bind(BATCH as i64)
            .fetch_all(&self.pool)
            .await?;
            if gone.is_empty() {
                break;
            }
            let ids: Vec<&str> = gone.iter().map(|(s,)| s.as_str()).collect();
            let mut events = Vec::with_capacity(ids.len());
            for id in &ids {
                let event = change_event(
                    &feed.connector,
                    object_type,
                    id,
                    &format!("hr/{import_id}/{object_type}/{id}/delete"),
                    ChangeOperation::Delete,
                    Attributes::new(),
                    now,
                )?;
                events.push(OutboxRow::with_traceparent(event, traceparent.clone()));
                report.leavers += 1;
                if report.changes.len() < REPORT_LIMIT {
                    report.changes.push(RecordChange {
                        kind: "leaver",
                        external_id: (*id).to_owned(),
                        changed: Vec::new(),
                    });
                }
            }
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "DELETE FROM hr_records r USING unnest($3::text[]) AS i(id) \
                 WHERE r.connector = $1 AND r.object_type = $2 AND r.external_id = i.id",
            )
            .bind(connector)
            .bind(object_type)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
            insert_outbox_framed(&mut tx, &events).await?;
            tx.commit().await?;
            self.relay.wake();
        }
        Ok(())
    }

    async fn apply_batch(
        &self,
        feed: &HrFeed,
        import_id: Uuid,
        now: DateTime<Utc>,
        records: Vec<Record>,
        traceparent: Option<&str>,
    ) -> Result<BatchOutcome, ImportError> {
        let mut outcome = BatchOutcome::default();
        if records.is_empty() {
            return Ok(outcome);
        }
        let connector = feed.connector.as_str();
        let object_type = feed.object_type.as_str();
        let ids: Vec<&str> = records.iter().map(|r| r.external_id.as_str()).collect();
        let existing: Vec<(String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            // One primary-key lookup per id: `LIMIT 1` keeps the lateral subquery from being
            // flattened into a join, which PostgreSQL plans as a hash join over the whole
            // table (`= ANY($3)` as a scan testing every row against the array) whenever its
            // statistics say the table is small, as they do all through a first import: the
            // scan then grows with every batch.
            "SELECT r.external_id, r.digest, r.attributes FROM unnest($3::text[]) AS i(id) \
             CROSS JOIN LATERAL (SELECT h.external_id, h.digest, h.attributes FROM hr_records h \
             WHERE h.connector = $1 AND h.object_type = $2 AND h.external_id = i.id LIMIT 1) r",
        )
        .bind(connector)
        .bind(object_type)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let existing: HashMap<String, (Vec<u8>, Vec<u8>)> = existing
            .into_iter()
            .map(|(id, d, a)| (id, (d, a)))
            .collect();
        let mut up_ids = Vec::new();
        let mut up_digests = Vec::new();
        let mut up_attrs = Vec::new();
        let mut events = Vec::new();
        // The records are consumed: each one's attributes move into its event.
        for record in records {
            let id = record.external_id.as_str();
            let (json, d) = stored_form(&record.attributes);
            let previous = existing.get(id);
            let kind = match previous {
                None => "joiner",
                Some((old, _)) if *old == d => {
                    outcome.unchanged += 1;
                    continue;
                }
                Some(_) => "mover",
            };
            if kind == "joiner" {
                outcome.joiners += 1;
            } else {
                outcome.movers += 1;
            }
            if outcome.changes.len() < REPORT_LIMIT {
                // A stored record that no longer reads names every attribute as changed.
                let changed = match previous {
                    Some((_, old)) => changed_names(
                        &serde_json::from_slice(old).unwrap_or_default(),
                        &record.attributes,
                    ),
                    None => Vec::new(),
                };
                outcome.changes.push(RecordChange {
                    kind,
                    external_id: id.to_owned(),
                    changed,
                });
            }
            let event = change_event(
                &feed.connector,
                object_type,
                id,
                &format!("hr/{import_id}/{object_type}/{id}"),
                ChangeOperation::Upsert,
                record.attributes,
                now,
            )?;
            events.push(OutboxRow::with_traceparent(
                event,
                traceparent.map(str::to_owned),
            ));
            up_ids.push(record.external_id.as_str().to_owned());
            up_digests.push(d);
            up_attrs.push(json);
        }
        if events.is_empty() {
            return Ok(outcome);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO hr_records (connector, object_type, external_id, digest, attributes, import_id, updated_at) \
             SELECT $1, $2, i, d, a, $6, now() FROM unnest($3::text[], $4::bytea[], $5::bytea[]) AS t(i, d, a) \
             ON CONFLICT (connector, object_type, external_id) DO UPDATE \
             SET digest = EXCLUDED.digest, attributes = EXCLUDED.attributes, \
                 import_id = EXCLUDED.import_id, updated_at = EXCLUDED.updated_at",
        )
        .bind(connector)
        .bind(object_type)
        .bind(&up_ids)
        .bind(&up_digests)
        .bind(&up_attrs)
        .bind(import_id)
        .execute(&mut *tx)
        .await?;
        insert_outbox_framed(&mut tx, &events).await?;
        tx.commit().await?;
        self.relay.wake();
        Ok(outcome)
    }
}

fn note_malformed(report: &mut ImportReport, line: u64, reason: &str) {
    report.malformed += 1;
    if report.errors.len() < REPORT_LIMIT {
        report.errors.push(Malformed {
            line,
            column: 0,
            field: None,
            reason: reason.to_owned(),
        });
    }
}
