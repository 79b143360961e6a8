//! Rule set versions: the rule set in force and its history (RuleAdmin).
//!
//! A rule set is applied atomically as a new, numbered version; versions start at 1 and only
//! grow, and the highest one is in force. A rollback is a new version with an older version's
//! files (`restored_from`). Writers serialize on the table's lock, so two applies never get the
//! same number, and an apply that names the version it expects to replace is refused when
//! another apply came first.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};

use crate::StoreError;

/// One file of a rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFile {
    /// Its path relative to the rule directory.
    pub path: String,
    /// Its YAML text.
    pub content: String,
}

impl RuleFile {
    /// The file as the rule loader reads it.
    pub fn to_source(&self) -> mesh_engine::SourceFile {
        mesh_engine::SourceFile::new(self.path.clone(), self.content.clone())
    }
}

/// One version of the rule set, without its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVersion {
    /// The version, from 1.
    pub version: u64,
    /// Who applied it.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When.
    pub applied_at: DateTime<Utc>,
    /// Hex SHA-256 over the files ([`digest`]).
    pub digest: String,
    /// Rule kind -> count.
    pub summary: BTreeMap<String, u32>,
    /// For a rollback, the version whose files it restores.
    pub restored_from: Option<u64>,
}

/// A version to write.
#[derive(Debug, Clone, Copy)]
pub struct NewRuleVersion<'a> {
    /// The files, in any order (stored in path order).
    pub files: &'a [RuleFile],
    /// Who applies it.
    pub actor: &'a str,
    /// Why.
    pub reason: &'a str,
    /// Rule kind -> count.
    pub summary: &'a BTreeMap<String, u32>,
    /// For a rollback, the version restored.
    pub restored_from: Option<u64>,
    /// Refuse unless this is still the current version (0: none yet).
    pub expected_current: Option<u64>,
}

/// Why a version was not written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Another apply came first.
    #[error(
        "the current rule version is {current}, not {expected}; review its changes and apply again"
    )]
    Conflict {
        /// What the caller expected.
        expected: u64,
        /// What is current.
        current: u64,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Hex SHA-256 over the files in path order: for each, the path's and the content's byte
/// lengths (8 bytes, big-endian) and bytes, so no two different sets share an input.
pub fn digest(files: &[RuleFile]) -> String {
    let mut sorted: Vec<&RuleFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = Sha256::new();
    for file in sorted {
        for part in [file.path.as_bytes(), file.content.as_bytes()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
    }
    hex::encode(hasher.finalize())
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn version_from_row(row: &sqlx::postgres::PgRow) -> Result<RuleVersion, StoreError> {
    let summary: serde_json::Value = row.get("summary");
    let summary = serde_json::from_value(summary).map_err(|e| StoreError::Malformed {
        what: "rule version summary",
        reason: e.to_string(),
    })?;
    Ok(RuleVersion {
        version: to_u64(row.get("version")),
        actor: row.get("actor"),
        reason: row.get("reason"),
        applied_at: row.get("applied_at"),
        digest: row.get("digest"),
        summary,
        restored_from: row.get::<Option<i64>, _>("restored_from").map(to_u64),
    })
}

fn files_from_json(files: serde_json::Value) -> Result<Vec<RuleFile>, StoreError> {
    serde_json::from_value(files).map_err(|e| StoreError::Malformed {
        what: "rule version files",
        reason: e.to_string(),
    })
}

/// Writes a new version numbered one above the current one, inside the caller's transaction
/// (which holds the table's lock until it ends).
pub async fn insert(
    conn: &mut PgConnection,
    new: NewRuleVersion<'_>,
) -> Result<RuleVersion, ApplyError> {
    // SHARE ROW EXCLUSIVE conflicts with itself: one writer at a time, readers unaffected.
    sqlx::query("LOCK TABLE rule_versions IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *conn)
        .await
        .map_err(StoreError::query("locking rule versions"))?;
    let current: i64 = sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM rule_versions")
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::query("reading the current rule version"))?;
    let current = to_u64(current);
    if let Some(expected) = new.expected_current
        && expected != current
    {
        return Err(ApplyError::Conflict { expected, current });
    }
    let mut files = new.files.to_vec();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let files_json = serde_json::to_value(&files).map_err(|e| StoreError::Malformed {
        what: "rule version files",
        reason: e.to_string(),
    })?;
    let summary_json = serde_json::to_value(new.summary).map_err(|e| StoreError::Malformed {
        what: "rule version summary",
        reason: e.to_string(),
    })?;
    let row = sqlx::query(
        "INSERT INTO rule_versions (version, actor, reason, digest, summary, restored_from, files) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         RETURNING version, actor, reason, applied_at, digest, summary, restored_from",
    )
    .bind(to_i64(current + 1))
    .bind(new.actor)
    .bind(new.reason)
    .bind(digest(&files))
    .bind(summary_json)
    .bind(new.restored_from.map(to_i64))
    .bind(files_json)
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::query("inserting a rule version"))?;
    Ok(version_from_row(&row)?)
}

/// The version in force, if any version was ever applied.
pub async fn current_version(pool: &PgPool) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM rule_versions")
        .fetch_one(pool)
        .await
        .map_err(StoreError::query("reading the current rule version"))?;
    Ok(v.map(to_u64))
}

/// One version with its files; version 0 means the current one.
pub async fn get(
    pool: &PgPool,
    version: u64,
) -> Result<Option<(RuleVersion, Vec<RuleFile>)>, StoreError> {
    let sql = if version == 0 {
        "SELECT version, actor, reason, applied_at, digest, summary, restored_from, files \
         FROM rule_versions ORDER BY version DESC LIMIT 1"
    } else {
        "SELECT version, actor, reason, applied_at, digest, summary, restored_from, files \
         FROM rule_versions WHERE version = $1"
    };
    let row = sqlx::query(sql)
        .bind(to_i64(version))
        .fetch_optional(pool)
        .await
        .map_err(StoreError::query("reading a rule version"))?;
    row.map(|row| Ok((version_from_row(&row)?, files_from_json(row.get("files"))?)))
        .transpose()
}

/// Versions below `before` (all when `None`), newest first, at most `limit`.
pub async fn list(
    pool: &PgPool,
    before: Option<u64>,
    limit: u32,
) -> Result<Vec<RuleVersion>, StoreError> {
    let rows = sqlx::query(
        "SELECT version, actor, reason, applied_at, digest, summary, restored_from \
         FROM rule_versions WHERE version < $1 ORDER BY version DESC LIMIT $2",
    )
    .bind(before.map_or(i64::MAX, to_i64))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(StoreError::query("listing rule versions"))?;
    rows.iter().map(version_from_row).collect()
}

/// True when `stage` has swept its state under `version`.
pub async fn swept(pool: &PgPool, stage: &str, version: u64) -> Result<bool, StoreError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM rule_sweeps WHERE stage = $1 AND version = $2)",
    )
    .bind(stage)
    .bind(to_i64(version))
    .fetch_one(pool)
    .await
    .map_err(StoreError::query("reading rule sweeps"))
}

/// Records that `stage` swept its state under `version`, changing `changed` objects.
pub async fn record_sweep(
    pool: &PgPool,
    stage: &str,
    version: u64,
    changed: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO rule_sweeps (stage, version, changed) VALUES ($1, $2, $3) \
         ON CONFLICT (stage, version) DO NOTHING",
    )
    .bind(stage)
    .bind(to_i64(version))
    .bind(to_i64(changed))
    .execute(pool)
    .await
    .map(|_| ())
    .map_err(StoreError::query("recording a rule sweep"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> RuleFile {
        RuleFile {
            path: path.into(),
            content: content.into(),
        }
    }

    #[test]
    fn digest_ignores_order_and_separates_paths_from_contents() {
        let a = [file("a.yaml", "x"), file("b.yaml", "y")];
        let b = [file("b.yaml", "y"), file("a.yaml", "x")];
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&[file("ab", "c")]), digest(&[file("a", "bc")]));
        assert_eq!(digest(&a).len(), 64);
    }
}
