//! PostgreSQL persistence of SCIM resources (table `scim_resources`), writing each change's
//! event to the outbox in the same transaction.
//!
//! Writes are optimistic: a replace or delete names the version it read and affects nothing
//! if another write came first, so the caller can answer 412 (with `If-Match`) or retry.
//! Uniqueness of userName/name is the unique index's job, so two concurrent creates of one
//! userName cannot both succeed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::events::{OutboxRow, insert_outbox};

/// A stored resource.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its id.
    pub id: Uuid,
    /// The stored form.
    pub data: Map<String, Json>,
    /// Its version.
    pub version: i64,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Last modification.
    pub modified: DateTime<Utc>,
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The unique attribute's value is taken.
    #[error("the unique attribute's value is already in use")]
    Conflict,
    /// PostgreSQL failed.
    #[error("storing a SCIM resource failed")]
    Store(#[from] sqlx::Error),
}

impl WriteError {
    fn from_insert(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => Self::Conflict,
            _ => Self::Store(error),
        }
    }
}

type RowTuple = (
    Uuid,
    sqlx::types::Json<Map<String, Json>>,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
);

fn row((id, data, version, created, modified): RowTuple) -> Row {
    Row {
        id,
        data: data.0,
        version,
        created,
        modified,
    }
}

/// An index to narrow a list before the filter is evaluated.
#[derive(Debug, Clone)]
pub enum Narrow {
    /// All resources of the type.
    All,
    /// The one whose folded unique attribute equals this.
    UniqueKey(String),
    /// Those with this externalId.
    ExternalId(String),
    /// The one with this id.
    Id(Uuid),
    /// Nothing can match (an id that is not a UUID).
    Nothing,
}

/// The SCIM repository.
#[derive(Debug, Clone)]
pub struct ScimStore {
    pool: PgPool,
}

const COLUMNS: &str = "id, data, version, created_at, modified_at";

impl ScimStore {
    /// Wraps a pool.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Returns the pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Reads one resource.
    pub async fn get(
        &self,
        connector: &str,
        rt: &str,
        id: Uuid,
    ) -> Result<Option<Row>, sqlx::Error> {
        let found: Option<RowTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM scim_resources \
             WHERE connector = $1 AND resource_type = $2 AND id = $3"
        )))
        .bind(connector)
        .bind(rt)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.map(row))
    }

    /// Counts the resources of a type.
    pub async fn count(&self, connector: &str, rt: &str) -> Result<i64, sqlx::Error> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM scim_resources WHERE connector = $1 AND resource_type = $2",
        )
        .bind(connector)
        .bind(rt)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Lists resources of a type in creation order, narrowed by an index; at most `limit`, so
    /// a caller that refuses more than N reads N + 1, never the whole table.
    pub async fn list(
        &self,
        connector: &str,
        rt: &str,
        narrow: &Narrow,
        limit: usize,
    ) -> Result<Vec<Row>, sqlx::Error> {
        let (clause, value): (&str, Option<String>) = match narrow {
            Narrow::All => ("", None),
            Narrow::UniqueKey(k) => (" AND unique_key = $3", Some(k.clone())),
            Narrow::ExternalId(k) => (" AND external_id = $3", Some(k.clone())),
            Narrow::Id(id) => (" AND id = $3::uuid", Some(id.to_string())),
            Narrow::Nothing => return Ok(Vec::new()),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = if clause.is_empty() {
            format!(
                "SELECT {COLUMNS} FROM scim_resources WHERE connector = $1 AND resource_type = $2 \
                 ORDER BY created_at, id LIMIT {limit}"
            )
        } else {
            // Narrowed: find the few rows by the narrowing index first, then order them. With
            // the LIMIT in the same query PostgreSQL may instead walk the creation-order index
            // and test every row (20,000 resources made a filtered GET take milliseconds).
            format!(
                "WITH narrowed AS MATERIALIZED (SELECT {COLUMNS} FROM scim_resources \
                 WHERE connector = $1 AND resource_type = $2{clause}) \
                 SELECT {COLUMNS} FROM narrowed ORDER BY created_at, id LIMIT {limit}"
            )
        };
        let mut query = sqlx::query_as::<_, RowTuple>(sqlx::AssertSqlSafe(sql))
            .bind(connector)
            .bind(rt);
        if let Some(v) = value {
            query = query.bind(v);
        }
        Ok(query
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(row)
            .collect())
    }

    /// Creates a resource and queues its event.
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        connector: &str,
        rt: &str,
        id: Uuid,
        unique_key: Option<&str>,
        data: &Map<String, Json>,
        at: DateTime<Utc>,
        event: &OutboxRow,
    ) -> Result<(), WriteError> {
        // One statement, so one round trip and atomic without a transaction block: the
        // resource and its event are written together or not at all.
        sqlx::query(
            "WITH created AS ( \
               INSERT INTO scim_resources \
               (connector, resource_type, id, unique_key, external_id, data, version, created_at, modified_at) \
               VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7) RETURNING id) \
             INSERT INTO connector_outbox (msg_id, subject, payload, traceparent) \
             SELECT $8, $9, $10, $11 FROM created",
        )
        .bind(connector)
        .bind(rt)
        .bind(id)
        .bind(unique_key)
        .bind(data.get("externalId").and_then(Json::as_str))
        .bind(sqlx::types::Json(data))
        .bind(at)
        .bind(&event.msg_id)
        .bind(&event.subject)
        .bind(&event.payload)
        .bind(event.traceparent.as_deref())
        .execute(&self.pool)
        .await
        .map_err(WriteError::from_insert)?;
        Ok(())
    }

    /// Replaces a resource if it is still at `expected`; returns false if it is not (or is
    /// gone).
    #[allow(clippy::too_many_arguments)]
    pub async fn replace(
        &self,
        connector: &str,
        rt: &str,
        id: Uuid,
        expected: i64,
        unique_key: Option<&str>,
        data: &Map<String, Json>,
        at: DateTime<Utc>,
        event: &OutboxRow,
    ) -> Result<bool, WriteError> {
        // One statement, as for a create: the event is written when, and only when, the
        // resource was still at `expected` and is updated.
        let written = sqlx::query(
            "WITH updated AS ( \
               UPDATE scim_resources SET unique_key = $5, external_id = $6, data = $7, \
               version = version + 1, modified_at = $8 \
               WHERE connector = $1 AND resource_type = $2 AND id = $3 AND version = $4 \
               RETURNING id) \
             INSERT INTO connector_outbox (msg_id, subject, payload, traceparent) \
             SELECT $9, $10, $11, $12 FROM updated",
        )
        .bind(connector)
        .bind(rt)
        .bind(id)
        .bind(expected)
        .bind(unique_key)
        .bind(data.get("externalId").and_then(Json::as_str))
        .bind(sqlx::types::Json(data))
        .bind(at)
        .bind(&event.msg_id)
        .bind(&event.subject)
        .bind(&event.payload)
        .bind(event.traceparent.as_deref())
        .execute(&self.pool)
        .await
        .map_err(WriteError::from_insert)?;
        Ok(written.rows_affected() == 1)
    }

    /// Deletes a resource if it is still at `expected`, with the events of the delete and of
    /// the groups it is removed from (`cleanup` builds those from each group's new state).
    pub async fn delete<F>(
        &self,
        connector: &str,
        rt: &str,
        id: Uuid,
        expected: i64,
        event: &OutboxRow,
        mut cleanup: F,
    ) -> Result<bool, WriteError>
    where
        F: FnMut(&Row) -> Option<OutboxRow>,
    {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM scim_resources \
             WHERE connector = $1 AND resource_type = $2 AND id = $3 AND version = $4",
        )
        .bind(connector)
        .bind(rt)
        .bind(id)
        .bind(expected)
        .execute(&mut *tx)
        .await?;
        if deleted.rows_affected() == 0 {
            return Ok(false);
        }
        let mut events = vec![event.clone()];
        // A deleted User or Group leaves the groups it was a member of (RFC 7644 §3.6: the
        // server removes references to a deleted resource).
        let groups: Vec<RowTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM scim_resources \
             WHERE connector = $1 AND resource_type = 'Group' \
             AND data -> 'members' @> jsonb_build_array(jsonb_build_object('value', $2::text)) \
             FOR UPDATE"
        )))
        .bind(connector)
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let now = Utc::now();
        for group in groups {
            let mut group = row(group);
            let member = Json::String(id.to_string());
            if let Some(Json::Array(members)) = group.data.get_mut("members") {
                members.retain(|m| m.get("value") != Some(&member));
                if members.is_empty() {
                    group.data.remove("members");
                }
            }
            group.version += 1;
            group.modified = now;
            sqlx::query(
                "UPDATE scim_resources SET data = $3, version = $4, modified_at = $5 \
                 WHERE connector = $1 AND resource_type = 'Group' AND id = $2",
            )
            .bind(connector)
            .bind(group.id)
            .bind(sqlx::types::Json(&group.data))
            .bind(group.version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if let Some(e) = cleanup(&group) {
                events.push(e);
            }
        }
        insert_outbox(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Returns the resource type of each of `ids` that exists in the connector.
    pub async fn resource_types(
        &self,
        connector: &str,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, String>, sqlx::Error> {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, resource_type FROM scim_resources WHERE connector = $1 AND id = ANY($2)",
        )
        .bind(connector)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Returns the direct groups (id, displayName) of each of `users`.
    pub async fn groups_of(
        &self,
        connector: &str,
        users: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<(Uuid, Option<String>)>>, sqlx::Error> {
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = users.iter().map(Uuid::to_string).collect();
        let rows: Vec<(Uuid, Option<String>, String)> = sqlx::query_as(
            "SELECT g.id, g.data ->> 'displayName', m ->> 'value' \
             FROM scim_resources g, jsonb_array_elements(g.data -> 'members') AS m \
             WHERE g.connector = $1 AND g.resource_type = 'Group' \
             AND jsonb_typeof(g.data -> 'members') = 'array' AND m ->> 'value' = ANY($2) \
             ORDER BY g.created_at, g.id",
        )
        .bind(connector)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<Uuid, Vec<(Uuid, Option<String>)>> = HashMap::new();
        for (group, name, member) in rows {
            if let Ok(member) = Uuid::parse_str(&member) {
                out.entry(member).or_default().push((group, name));
            }
        }
        Ok(out)
    }
}
