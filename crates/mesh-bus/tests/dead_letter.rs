//! A poison message lands in MESH_DLQ with its reason after the bounded deliveries, while the
//! messages behind it are processed.

mod common;

use std::time::Duration;

use futures::StreamExt;
use mesh_bus::{Outgoing, run_consumer};
use mesh_proto::WireEvent;
use mesh_testkit::{NatsServer, TestDatabase, assert_eventually};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_stream_and_does_not_block_the_rest() {
    let nats = NatsServer::start().await.unwrap();
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    common::effects_table(&pool).await;
    let registry = mesh_runtime::metrics::MetricsRegistry::new();
    let bus = common::bus(&nats.url()).await.with_metrics(&registry);
    let topology = common::topology();
    topology.ensure(bus.jetstream()).await.unwrap();

    let mut messages = vec![Outgoing::encode_raw(
        "test.a",
        "poison-1",
        "test.Raw",
        b"poison".to_vec(),
    )];
    messages.extend((0..50).map(|i| {
        Outgoing::encode_raw(
            "test.a",
            format!("good-{i}"),
            "test.Raw",
            format!("good {i}").into_bytes(),
        )
    }));
    bus.publisher().publish_all(messages).await.unwrap();

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

    assert_eventually!(
        Duration::from_secs(20),
        common::count(&pool).await.0 == 50,
        "good messages processed: {:?}",
        common::count(&pool).await
    );

    let dlq = bus.jetstream().get_stream("MESH_DLQ").await.unwrap();
    let reader = dlq
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: format!("mesh.dlq.{}", common::STAGE),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut letters = reader.messages().await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(20), letters.next())
        .await
        .expect("a dead letter within 20 s")
        .unwrap()
        .unwrap();
    let schema = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Mesh-Schema"))
        .map(|v| v.as_str().to_owned());
    assert_eq!(schema.as_deref(), Some(mesh_model::DeadLetter::SCHEMA));
    let letter = mesh_model::DeadLetter::from_wire(&message.payload).unwrap();
    assert_eq!(letter.stage, common::STAGE);
    assert_eq!(letter.stream, "TEST");
    assert_eq!(letter.subject, "test.a");
    assert_eq!(letter.payload, b"poison");
    assert_eq!(
        letter.attempts, 3,
        "dead-lettered after max_deliver deliveries"
    );
    assert!(
        letter.reason.contains("cannot process message poison-1"),
        "{}",
        letter.reason
    );
    assert_eq!(letter.schema.as_deref(), Some("test.Raw"));
    assert_eq!(
        letter.headers.get("Nats-Msg-Id"),
        Some(&vec!["poison-1".to_owned()]),
        "headers kept for replay"
    );

    // The poison message is terminated: nothing is pending or awaiting an ack on the stage.
    let stream = bus.jetstream().get_stream("TEST").await.unwrap();
    assert_eventually!(Duration::from_secs(5), {
        let info = stream.consumer_info(common::STAGE).await.unwrap();
        info.num_pending == 0 && info.num_ack_pending == 0
    });
    assert_eq!(common::count(&pool).await, (50, 50));

    let metrics = registry.encode().unwrap();
    for expected in [
        r#"mesh_bus_messages_dead_lettered_total{consumer="test-stage"} 1"#,
        r#"mesh_bus_messages_acked_total{consumer="test-stage"} 50"#,
        r#"mesh_bus_published_total{stream="MESH_DLQ"} 1"#,
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }

    shutdown.cancel();
    consumer.await.unwrap().unwrap();
}
