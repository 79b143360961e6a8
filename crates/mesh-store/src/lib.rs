//! PostgreSQL adapter of Identity Mesh: the system of record.
//!
//! This crate owns the connection pool, the embedded migrations (`meshd migrate`) and the
//! repositories the services write through. Every service follows one pattern (DESIGN.md §4):
//! read a batch of messages, open one transaction, [`inbox::claim`] the message ids, apply the
//! effect of the newly claimed ones, commit, publish outputs, then ack. A redelivered message
//! finds its id claimed and has no second effect.
//!
//! Queries use sqlx's runtime-checked `query`/`query_as` functions rather than the compile-time
//! macros, so the workspace builds on a machine without a database and without committed
//! offline data.

/// The SQL condition a `connector_objects` row is in the review queue by: a disconnector or an
/// ambiguous match, not ignored since its last change. One definition for every query.
macro_rules! in_review_queue {
    () => {
        "state IN ('disconnector', 'ambiguous') \
         AND (review_ignored_sequence IS NULL OR review_ignored_sequence <> last_sequence)"
    };
}

pub mod audit;
pub mod inbox;
pub mod json;
pub mod outbox;
pub mod pipeline;
pub mod projection;
pub mod query;
pub mod rules;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The embedded migrations, applied in order by [`migrate`].
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What went wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The connection URL could not be parsed.
    #[error("invalid PostgreSQL URL")]
    InvalidUrl(#[source] sqlx::Error),
    /// No connection could be opened.
    #[error("cannot connect to PostgreSQL at {host}")]
    Connect {
        /// Host and port only: URLs may carry passwords.
        host: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A statement failed.
    #[error("{what} failed")]
    Query {
        /// What the statement was doing, e.g. "claiming inbox ids".
        what: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored row could not be read back (written by a newer or broken writer).
    #[error("stored {what} is malformed: {reason}")]
    Malformed {
        /// What was being read, e.g. "mesh object lineage".
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    /// Returns true when the error comes from the connection rather than the data (the server
    /// is down, the pool timed out, the transaction was a serialization victim): retrying the
    /// same work later may succeed, so a consumer should nak with backoff rather than
    /// dead-letter.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::InvalidUrl(_) | Self::Migrate(_) | Self::Malformed { .. } => false,
            Self::Query { source, .. } => is_transient(source),
        }
    }

    /// Wraps a driver error with what was being done.
    pub fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Query { what, source }
    }
}

/// Returns true for driver errors that retrying may cure.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // serialization_failure, deadlock_detected, admin_shutdown, crash_shutdown,
            // cannot_connect_now, too_many_connections
            Some("40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300")
        ),
        _ => false,
    }
}

pub use sqlx::postgres::PgSslMode;

/// Parses a connection URL, applying `ssl_mode` over the URL's own `sslmode` when given.
pub fn connect_options(
    url: &str,
    ssl_mode: Option<PgSslMode>,
) -> Result<PgConnectOptions, StoreError> {
    let options: PgConnectOptions = url.parse().map_err(StoreError::InvalidUrl)?;
    Ok(match ssl_mode {
        Some(mode) => options.ssl_mode(mode),
        None => options,
    })
}

/// Opens a pool on `url` with at most `max_connections` connections, failing fast (5 s) if
/// PostgreSQL does not answer.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    connect_with(connect_options(url, None)?, max_connections, 0).await
}

/// Opens a pool with `options` (see [`connect_options`]), failing fast (5 s) if PostgreSQL does
/// not answer. It keeps `min_connections` open while idle (opened in the background), and
/// opens the others when needed.
pub async fn connect_with(
    options: PgConnectOptions,
    max_connections: u32,
    min_connections: u32,
) -> Result<PgPool, StoreError> {
    let host = format!("{}:{}", options.get_host(), options.get_port());
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(min_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect { host, source })
}

/// Opens a pool that connects on first use, so a service can start (and report not-ready)
/// while PostgreSQL is down.
pub fn connect_lazy(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    Ok(connect_lazy_with(
        connect_options(url, None)?,
        max_connections,
        0,
    ))
}

/// Like [`connect_lazy`], with `options` (see [`connect_options`]), keeping `min_connections`
/// open while idle once PostgreSQL answers (opened in the background). Call it inside a Tokio
/// runtime when `min_connections` is not 0.
pub fn connect_lazy_with(
    options: PgConnectOptions,
    max_connections: u32,
    min_connections: u32,
) -> PgPool {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(min_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options);
    if min_connections > 0 {
        tokio::spawn(open_minimum(pool.clone(), min_connections));
    }
    pool
}

/// Opens `min_connections` of `pool` as soon as PostgreSQL answers. sqlx keeps a lazy pool's
/// minimum only once it has closed an idle connection (every ten minutes at most), not from
/// the start; from then on it keeps it.
async fn open_minimum(pool: PgPool, min_connections: u32) {
    let mut delay = Duration::from_millis(100);
    while !pool.is_closed() {
        // Held together, then released together: they wait idle in the pool. On an error
        // the ones opened so far are released too.
        let error = match hold(&pool, min_connections).await {
            Ok(_) => return,
            Err(error) => error,
        };
        tracing::debug!(%error, "opening the pool's minimum of connections; trying again");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Takes `count` connections of `pool` at once.
async fn hold(
    pool: &PgPool,
    count: u32,
) -> Result<Vec<sqlx::pool::PoolConnection<sqlx::Postgres>>, sqlx::Error> {
    let mut held = Vec::new();
    for _ in 0..count {
        held.push(pool.acquire().await?);
    }
    Ok(held)
}

/// Applies every pending migration. Safe to run concurrently from several processes: sqlx
/// takes an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await.map_err(StoreError::Migrate)
}

/// Checks that PostgreSQL answers a trivial query.
pub async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(StoreError::query("pinging PostgreSQL"))
}
