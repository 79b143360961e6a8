//! Shared set-up for the mesh-bus tests: a test stream, and a handler whose effect is one
//! PostgreSQL row per message, made exactly-once by the inbox.

#![allow(dead_code)]

use std::time::Duration;

use mesh_bus::topology::{ConsumerSpec, StreamSpec, Topology, streams};
use mesh_bus::{BatchHandler, Bus, Delivery, HandlerError};
use sqlx::PgPool;

pub const STAGE: &str = "test-stage";

/// A test stream `TEST` on `test.>`, its consumer, and the mesh's dead-letter stream.
pub fn topology() -> Topology {
    let dlq = Topology::mesh()
        .streams
        .into_iter()
        .find(|s| s.name == streams::DLQ)
        .unwrap();
    Topology {
        streams: vec![StreamSpec::new("TEST", "test.>", "test messages"), dlq],
        consumers: vec![ConsumerSpec::new("TEST", STAGE, "test.>")],
    }
}

pub async fn bus(url: &str) -> Bus {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(url)
        .await
        .unwrap();
    Bus::from_client(client)
}

pub async fn effects_table(pool: &PgPool) {
    mesh_store::migrate(pool).await.unwrap();
    sqlx::query("CREATE TABLE effects (id bigserial PRIMARY KEY, message_id text NOT NULL, payload bytea NOT NULL)")
        .execute(pool)
        .await
        .unwrap();
}

pub async fn count(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), count(DISTINCT message_id) FROM effects")
        .fetch_one(pool)
        .await
        .unwrap_or((-1, -1))
}

/// Inserts one row per newly claimed message in one transaction; fails on payload `poison`.
pub struct RowPerMessage {
    pub pool: PgPool,
}

impl BatchHandler for RowPerMessage {
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        if let Some(poison) = batch.iter().find(|d| d.payload() == b"poison") {
            return Err(HandlerError::failed(format!(
                "cannot process message {}",
                poison.msg_id()
            )));
        }
        let mut tx = self.pool.begin().await.map_err(HandlerError::transient)?;
        let ids: Vec<String> = batch.iter().map(|d| d.msg_id().into_owned()).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let fresh = mesh_store::inbox::claim(&mut tx, STAGE, &id_refs)
            .await
            .map_err(HandlerError::transient)?;
        let (new_ids, payloads): (Vec<&str>, Vec<&[u8]>) = batch
            .iter()
            .zip(&ids)
            .filter(|(_, id)| fresh.contains(*id))
            .map(|(d, id)| (id.as_str(), d.payload()))
            .unzip();
        sqlx::query("INSERT INTO effects (message_id, payload) SELECT * FROM unnest($1::text[], $2::bytea[])")
            .bind(&new_ids)
            .bind(&payloads)
            .execute(&mut *tx)
            .await
            .map_err(HandlerError::transient)?;
        tx.commit().await.map_err(HandlerError::transient)?;
        Ok(())
    }
}

pub fn fast_settings() -> mesh_bus::ConsumerSettings {
    mesh_bus::ConsumerSettings {
        batch_size: 256,
        batch_wait: Duration::from_millis(5),
        max_deliver: 3,
        backoff: vec![Duration::from_millis(50)],
        workers: 1,
    }
}
