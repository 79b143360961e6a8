//! PostgreSQL persistence of SCIM resources (table `scim_resources`), writing each change's
//! event to the outbox in the same transaction.
//!
//! Writes are optimistic: a replace or delete names the version it read and affects nothing
//! if another write came first, so the caller can answer 412 (with `If-Match`) or retry.
//! Uniqueness of userName/name is the unique index's job, so two concurrent creates of one
//! userName cannot both succeed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};
use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};
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
    /// PostgreSQL failed the statement that wrote this create with others.
    #[error("storing a SCIM resource failed")]
    Batch(#[source] Arc<sqlx::Error>),
    /// The create writer stopped (the agent is shutting down).
    #[error("the SCIM create writer stopped")]
    Stopped,
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
    /// The create writer, started on the first create.
    creates: Arc<OnceLock<mpsc::Sender<PendingCreate>>>,
}

/// Most creates written by one statement.
const CREATE_BATCH: usize = 128;
/// Create statements in flight at once (on two cores one was no faster, four slower).
const CREATE_STATEMENTS: usize = 2;

/// A create waiting for the create writer.
#[derive(Debug)]
struct PendingCreate {
    connector: String,
    resource_type: String,
    id: Uuid,
    unique_key: Option<String>,
    external_id: Option<String>,
    /// The stored form, as JSON text.
    data: String,
    at: DateTime<Utc>,
    event: OutboxRow,
    done: oneshot::Sender<Result<(), WriteError>>,
}

/// Starts the create writer: it takes whatever creates have arrived (up to [`CREATE_BATCH`])
/// and writes them with one statement, at most [`CREATE_STATEMENTS`] at a time, so that
/// concurrent creates share one commit and one WAL flush instead of paying one each. A lone
/// create is written at once, as before. The writer stops when the store is dropped.
fn spawn_creates(pool: PgPool) -> mpsc::Sender<PendingCreate> {
    let (tx, mut rx) = mpsc::channel::<PendingCreate>(CREATE_BATCH * CREATE_STATEMENTS);
    tokio::spawn(async move {
        let statements = Arc::new(Semaphore::new(CREATE_STATEMENTS));
        while let Some(first) = rx.recv().await {
            // Waiting for a free statement lets more creates gather behind the first.
            let Ok(permit) = statements.clone().acquire_owned().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < CREATE_BATCH {
                match rx.try_recv() {
                    Ok(create) => batch.push(create),
                    Err(_) => break,
                }
            }
            let pool = pool.clone();
            tokio::spawn(async move {
                write_creates(&pool, batch).await;
                drop(permit);
            });
        }
    });
    tx
}

/// Writes `batch` with one statement and tells each create its outcome. The resources are
/// inserted in arrival order with `ON CONFLICT DO NOTHING`: a create whose unique attribute is
/// taken (by a stored resource, or by an earlier create of the same batch) is not inserted and
/// is told so; the outbox receives the events of the inserted ones only, in the same
/// statement, so a resource and its event are written together or not at all.
async fn write_creates(pool: &PgPool, batch: Vec<PendingCreate>) {
    let column = |f: fn(&PendingCreate) -> Option<&str>| -> Vec<Option<&str>> {
        batch.iter().map(f).collect()
    };
    let connectors = column(|c| Some(c.connector.as_str()));
    let types = column(|c| Some(c.resource_type.as_str()));
    let keys = column(|c| c.unique_key.as_deref());
    let external_ids = column(|c| c.external_id.as_deref());
    let data = column(|c| Some(c.data.as_str()));
    let msg_ids = column(|c| Some(c.event.msg_id.as_str()));
    let subjects = column(|c| Some(c.event.subject.as_str()));
    let traceparents = column(|c| c.event.traceparent.as_deref());
    let ids: Vec<Uuid> = batch.iter().map(|c| c.id).collect();
    let at: Vec<DateTime<Utc>> = batch.iter().map(|c| c.at).collect();
    let payloads: Vec<&[u8]> = batch.iter().map(|c| c.event.payload.as_slice()).collect();
    let created: Result<Vec<(Uuid,)>, sqlx::Error> = sqlx::query_as(
        "WITH input AS ( \
           SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], \
             $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::bytea[], $11::text[]) \
           WITH ORDINALITY AS t(connector, resource_type, id, unique_key, external_id, data, at, \
             msg_id, subject, payload, traceparent, n)), \
         created AS ( \
           INSERT INTO scim_resources \
           (connector, resource_type, id, unique_key, external_id, data, version, created_at, modified_at) \
           SELECT connector, resource_type, id, unique_key, external_id, data::jsonb, 1, at, at \
           FROM input ORDER BY n \
           ON CONFLICT DO NOTHING RETURNING id), \
         queued AS ( \
           INSERT INTO connector_outbox (msg_id, subject, payload, traceparent) \
           SELECT msg_id, subject, payload, traceparent FROM input \
           WHERE id IN (SELECT id FROM created) ORDER BY n) \
         SELECT id FROM created",
    )
    .bind(&connectors)
    .bind(&types)
    .bind(&ids)
    .bind(&keys)
    .bind(&external_ids)
    .bind(&data)
    .bind(&at)
    .bind(&msg_ids)
    .bind(&subjects)
    .bind(&payloads)
    .bind(&traceparents)
    .fetch_all(pool)
    .await;
    match created {
        Ok(created) => {
            let created: HashSet<Uuid> = created.into_iter().map(|(id,)| id).collect();
            for create in batch {
                let outcome = if created.contains(&create.id) {
                    Ok(())
                } else {
                    Err(WriteError::Conflict)
                };
                // A caller that went away still had its resource written, as before.
                let _ = create.done.send(outcome);
            }
        }
        Err(error) => {
            let error = Arc::new(error);
            for create in batch {
                let _ = create.done.send(Err(WriteError::Batch(error.clone())));
            }
        }
    }
}

const COLUMNS: &str = "id, data, version, created_at, modified_at";

impl ScimStore {
    /// Wraps a pool.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            creates: Arc::default(),
        }
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

    /// Creates a resource and queues its event. Creates arriving together are written
    /// together (see [`write_creates`]); each caller learns its own outcome.
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        connector: &str,
        rt: &str,
        id: Uuid,
        unique_key: Option<&str>,
        data: &Map<String, Json>,
        at: DateTime<Utc>,
        event: OutboxRow,
    ) -> Result<(), WriteError> {
        let (done, outcome) = oneshot::channel();
        let create = PendingCreate {
            connector: connector.to_owned(),
            resource_type: rt.to_owned(),
            id,
            unique_key: unique_key.map(str::to_owned),
            external_id: data
                .get("externalId")
                .and_then(Json::as_str)
                .map(str::to_owned),
            data: serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned()),
            at,
            event,
            done,
        };
        let creates = self
            .creates
            .get_or_init(|| spawn_creates(self.pool.clone()));
        creates
            .send(create)
            .await
            .map_err(|_| WriteError::Stopped)?;
        outcome.await.map_err(|_| WriteError::Stopped)?
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
