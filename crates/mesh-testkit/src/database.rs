//! A fresh PostgreSQL database per test.

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgPool};

fn admin_url() -> String {
    std::env::var("MESHTEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database created for one test and dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin: String,
}

impl TestDatabase {
    /// Creates an empty database named `mesh_test_<uuid>` on the machine's server
    /// (`MESHTEST_POSTGRES_URL`).
    pub async fn create() -> anyhow::Result<Self> {
        Self::create_in(&admin_url()).await
    }

    /// Creates an empty database named `mesh_test_<uuid>` on the server whose maintenance
    /// database is at `admin_url` (a [`crate::PostgresServer`]'s, say).
    pub async fn create_in(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("mesh_test_{}", uuid::Uuid::new_v4().simple());
        let admin: PgConnectOptions = admin_url.parse().context("the admin URL")?;
        let mut conn = admin
            .connect()
            .await
            .with_context(|| format!("connecting to {admin_url}"))?;
        // The name is generated here from a UUID, never from input.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        conn.close().await?;
        let url = admin.database(&name).to_url_lossy().to_string();
        Ok(Self {
            name,
            url,
            admin: admin_url.to_owned(),
        })
    }

    /// Returns the database's connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns the database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a pool on the database.
    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(8)
            .connect(&self.url)
            .await?)
    }

    /// Creates a fresh database, runs `schema` in it (statements separated by `;`), and
    /// returns it with a pool on it: a target database with its tables.
    pub async fn with_schema(schema: &'static str) -> anyhow::Result<(Self, PgPool)> {
        let db = Self::create().await?;
        let pool = db.pool().await?;
        sqlx::raw_sql(schema).execute(&pool).await?;
        Ok((db, pool))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let admin_url = std::mem::take(&mut self.admin);
        // Drop runs outside any async context guarantee, so the drop happens on a thread
        // with its own small runtime; FORCE ends connections a test left open.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(admin) = admin_url.parse::<PgConnectOptions>() else {
                    return;
                };
                if let Ok(mut conn) = admin.connect().await {
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}
