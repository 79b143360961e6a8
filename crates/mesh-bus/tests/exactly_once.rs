//! 10,000 messages through mesh-bus into PostgreSQL while nats-server is killed and restarted:
//! exactly 10,000 effects.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mesh_bus::{Outgoing, run_consumer};
use mesh_testkit::{NatsServer, TestDatabase, assert_eventually};
use tokio_util::sync::CancellationToken;

const TOTAL: usize = 10_000;
const CHUNK: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_survive_a_nats_kill_with_no_loss_and_no_double() {
    let mut nats = NatsServer::start().await.unwrap();
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    common::effects_table(&pool).await;

    let bus = common::bus(&nats.url()).await;
    let topology = common::topology();
    topology.ensure(bus.jetstream()).await.unwrap();

    let shutdown = CancellationToken::new();
    let consumer = {
        let bus = bus.clone();
        let spec = topology.consumers[0].clone();
        let handler = common::RowPerMessage { pool: pool.clone() };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            run_consumer(&bus, &spec, &common::fast_settings(), &handler, shutdown).await
        })
    };

    // The producer retries a chunk until every message of it is acknowledged: with
    // deterministic message ids a retry can only add what the stream lacks.
    let published = Arc::new(AtomicUsize::new(0));
    let producer = {
        let publisher = bus.publisher();
        let published = published.clone();
        tokio::spawn(async move {
            for chunk in (0..TOTAL).collect::<Vec<_>>().chunks(CHUNK) {
                loop {
                    let messages: Vec<Outgoing> = chunk
                        .iter()
                        .map(|i| {
                            Outgoing::encode_raw(
                                format!("test.{}", i % 7),
                                format!("m-{i}"),
                                "test.Raw",
                                format!("payload {i}").into_bytes(),
                            )
                        })
                        .collect();
                    match publisher.publish_all(messages).await {
                        Ok(_) => break,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                published.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        })
    };

    assert_eventually!(
        Duration::from_secs(60),
        common::count(&pool).await.0 >= 3_000,
        "effects before the kill"
    );
    nats.kill();
    let at_kill = common::count(&pool).await.0;
    assert!(
        at_kill < TOTAL as i64,
        "the kill must land mid-stream ({at_kill} rows already)"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.restart().await.unwrap();

    producer.await.unwrap();
    assert_eq!(published.load(Ordering::SeqCst), TOTAL);
    assert_eventually!(
        Duration::from_secs(90),
        common::count(&pool).await.0 >= TOTAL as i64,
        "rows: {:?}",
        common::count(&pool).await
    );
    // Let redeliveries of lost acks arrive: they must not add rows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rows, distinct) = common::count(&pool).await;
    assert_eq!(rows, TOTAL as i64, "no message doubled");
    assert_eq!(distinct, TOTAL as i64, "no message lost");

    shutdown.cancel();
    consumer.await.unwrap().unwrap();
}
