//! The audit log: append-only and hash-chained, so that an edited or deleted row is detected.
//!
//! A batch appends inside its own transaction to a chain of its stage (`flow/<uuid>`) whose head
//! no other transaction holds: it locks a free head with `SKIP LOCKED`, or starts a new chain
//! when every chain of the stage is busy. So concurrent workers and replicas never wait for
//! each other, a chain has one writer at a time, and its sequence numbers have no gaps; a stage
//! has as many chains as it ever ran batches at once. A row's hash is
//! `sha256(previous hash || canonical text of the row)`; the head keeps the last sequence number
//! and hash, so removing the newest rows is detected as surely as editing an old one.
//! [`verify`] recomputes every chain.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::StoreError;

/// One audited fact.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// When it happened (the event's time); stored to the microsecond.
    pub at: DateTime<Utc>,
    /// What happened: `join`, `projection`, `disconnector`, `ambiguous`, `value`, ...
    pub kind: &'static str,
    /// The event that caused it.
    pub event_id: Option<Uuid>,
    /// The mesh object concerned.
    pub mesh_object: Option<Uuid>,
    /// The connector object concerned, as `connector/type/external-id`.
    pub connector_object: Option<String>,
    /// The rule that decided it.
    pub rule: Option<String>,
    /// Everything else, as a JSON object.
    pub detail: Json,
}

/// The canonical text a row's hash covers. Key order is fixed by the struct; `detail` is a
/// `serde_json::Value`, whose maps are sorted, so the text read back from `jsonb` is the text
/// written.
#[derive(Serialize)]
struct Canonical<'a> {
    chain: &'a str,
    seq: i64,
    at: String,
    kind: &'a str,
    event_id: Option<Uuid>,
    mesh_object: Option<Uuid>,
    connector_object: Option<&'a str>,
    rule: Option<&'a str>,
    detail: &'a Json,
}

fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

#[allow(clippy::too_many_arguments)]
fn row_hash(
    prev: &[u8],
    chain: &str,
    seq: i64,
    at: DateTime<Utc>,
    kind: &str,
    event_id: Option<Uuid>,
    mesh_object: Option<Uuid>,
    connector_object: Option<&str>,
    rule: Option<&str>,
    detail: &Json,
) -> Vec<u8> {
    let canonical = Canonical {
        chain,
        seq,
        at: at.to_rfc3339_opts(SecondsFormat::Micros, true),
        kind,
        event_id,
        mesh_object,
        connector_object,
        rule,
        detail,
    };
    let text = serde_json::to_vec(&canonical).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(&text);
    hasher.finalize().to_vec()
}

/// Appends `entries` to a chain of `writer`, in order; returns the last entry's sequence in
/// its chain (0 when there was nothing to append). Call it inside the transaction whose
/// effect they audit; it holds the chain's head lock until that transaction ends.
pub async fn append(
    conn: &mut PgConnection,
    writer: &str,
    entries: &[AuditEntry],
) -> Result<u64, StoreError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let free = sqlx::query(
        "SELECT chain, seq, hash FROM audit_heads WHERE writer = $1 \
         ORDER BY chain LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .bind(writer)
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::query("locking an audit chain head"))?;
    let head = match free {
        Some(head) => head,
        // Every chain of the stage is busy (or there is none yet): start one; the new row is
        // locked by this transaction.
        None => sqlx::query(
            "INSERT INTO audit_heads (chain, writer, seq, hash) VALUES ($1, $2, 0, '\\x'::bytea) \
             RETURNING chain, seq, hash",
        )
        .bind(format!("{writer}/{}", Uuid::new_v4()))
        .bind(writer)
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::query("starting an audit chain"))?,
    };
    let chain: String = head.get("chain");
    let chain = chain.as_str();
    let mut seq: i64 = head.get("seq");
    let mut hash: Vec<u8> = head.get("hash");

    let n = entries.len();
    let (mut seqs, mut ats, mut kinds, mut events, mut objects, mut connectors, mut rules) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut details, mut prevs, mut hashes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for entry in entries {
        seq += 1;
        let at = micros(entry.at);
        let next = row_hash(
            &hash,
            chain,
            seq,
            at,
            entry.kind,
            entry.event_id,
            entry.mesh_object,
            entry.connector_object.as_deref(),
            entry.rule.as_deref(),
            &entry.detail,
        );
        seqs.push(seq);
        ats.push(at);
        kinds.push(entry.kind);
        events.push(entry.event_id);
        objects.push(entry.mesh_object);
        connectors.push(entry.connector_object.as_deref());
        rules.push(entry.rule.as_deref());
        details.push(entry.detail.clone());
        prevs.push(std::mem::replace(&mut hash, next.clone()));
        hashes.push(next);
    }
    // The rows and the new head in one statement.
    sqlx::query(
        "WITH appended AS ( \
           INSERT INTO audit_log \
             (chain, seq, at, kind, event_id, mesh_object, connector_object, rule, detail, \
              prev_hash, hash) \
           SELECT $1, * FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::uuid[], \
             $6::uuid[], $7::text[], $8::text[], $9::jsonb[], $10::bytea[], $11::bytea[])) \
         UPDATE audit_heads SET seq = $12, hash = $13 WHERE chain = $1",
    )
    .bind(chain)
    .bind(&seqs)
    .bind(&ats)
    .bind(&kinds)
    .bind(&events)
    .bind(&objects)
    .bind(&connectors)
    .bind(&rules)
    .bind(&details)
    .bind(&prevs)
    .bind(&hashes)
    .bind(seq)
    .bind(&hash)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("appending to the audit log"))?;
    Ok(u64::try_from(seq).unwrap_or(0))
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Rows checked, over every chain.
    pub rows: u64,
    /// Chains checked.
    pub chains: u64,
    /// What is wrong, one line per problem; empty when every chain is intact.
    pub problems: Vec<String>,
    /// The same problems with the row each names, in the same order.
    pub broken: Vec<BrokenRow>,
    /// The hash of the newest row checked (by time, chain and sequence); empty for an empty
    /// log.
    pub newest_hash: Vec<u8>,
}

/// A row that breaks its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenRow {
    /// The chain.
    pub chain: String,
    /// The row's sequence in the chain: the row that was edited, the first row missing, or
    /// the first row past the end that the head and the log disagree on.
    pub seq: u64,
    /// What is wrong, in words (the matching line of [`Verification::problems`]).
    pub problem: String,
}

impl Verification {
    /// Returns true when no problem was found.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, chain: &str, seq: i64, problem: String) {
        self.broken.push(BrokenRow {
            chain: chain.to_owned(),
            seq: u64::try_from(seq).unwrap_or(0),
            problem: problem.clone(),
        });
        self.problems.push(problem);
    }
}

/// Recomputes every chain and compares it with the stored hashes and heads.
///
/// It reads one snapshot (a repeatable-read, read-only transaction): on a running mesh, rows
/// appended while it reads would otherwise look like a head that disagrees with its log.
pub async fn verify(pool: &PgPool) -> Result<Verification, StoreError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::query("beginning the audit verification"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("taking a snapshot of the audit log"))?;
    let heads: Vec<(String, i64, Vec<u8>)> =
        sqlx::query_as("SELECT chain, seq, hash FROM audit_heads ORDER BY chain")
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query("reading the audit chain heads"))?;
    let mut report = Verification::default();
    let mut newest: Option<(DateTime<Utc>, String, i64)> = None;
    for (chain, head_seq, head_hash) in heads {
        report.chains += 1;
        let mut expected_seq = 0_i64;
        let mut hash: Vec<u8> = Vec::new();
        let mut after = 0_i64;
        loop {
            let rows = sqlx::query(
                "SELECT seq, at, kind, event_id, mesh_object, connector_object, rule, detail, \
                        prev_hash, hash \
                 FROM audit_log WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT 10000",
            )
            .bind(&chain)
            .bind(after)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query("reading the audit log"))?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let seq: i64 = row.get("seq");
                after = seq;
                report.rows += 1;
                expected_seq += 1;
                if seq != expected_seq {
                    report.problem(
                        &chain,
                        expected_seq,
                        format!("chain {chain}: row {expected_seq} is missing (next row is {seq})"),
                    );
                    expected_seq = seq;
                }
                let stored_prev: Vec<u8> = row.get("prev_hash");
                let stored: Vec<u8> = row.get("hash");
                let kind: String = row.get("kind");
                let connector_object: Option<String> = row.get("connector_object");
                let rule: Option<String> = row.get("rule");
                let detail: Json = row.get("detail");
                let computed = row_hash(
                    &stored_prev,
                    &chain,
                    seq,
                    row.get("at"),
                    &kind,
                    row.get("event_id"),
                    row.get("mesh_object"),
                    connector_object.as_deref(),
                    rule.as_deref(),
                    &detail,
                );
                if stored_prev != hash {
                    report.problem(
                        &chain,
                        seq,
                        format!("chain {chain}: row {seq} does not follow the row before it"),
                    );
                }
                if computed != stored {
                    report.problem(
                        &chain,
                        seq,
                        format!("chain {chain}: row {seq} was changed after it was written"),
                    );
                }
                let at: DateTime<Utc> = row.get("at");
                if newest
                    .as_ref()
                    .is_none_or(|(t, c, s)| (at, &chain, seq) > (*t, c, *s))
                {
                    newest = Some((at, chain.clone(), seq));
                    report.newest_hash.clone_from(&stored);
                }
                hash = stored;
            }
        }
        if expected_seq != head_seq || hash != head_hash {
            // Rows missing at the end (or beyond the head): the first row the two disagree on;
            // the same length with another hash: the last row.
            let first_bad = if expected_seq == head_seq {
                head_seq
            } else {
                expected_seq.min(head_seq) + 1
            };
            report.problem(
                &chain,
                first_bad,
                format!(
                    "chain {chain}: the head says {head_seq} rows, the log ends at row {expected_seq}"
                ),
            );
        }
    }
    Ok(report)
}
