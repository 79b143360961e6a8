//! The trace context a publisher sets is the parent of the consumer's span, through the bus's
//! `mesh.publish` producer span, and both spans carry the messaging semantic conventions.

mod common;

use std::time::Duration;

use mesh_bus::{BatchHandler, Delivery, HandlerError, Outgoing, run_consumer};
use mesh_testkit::NatsServer;
use opentelemetry::trace::{SpanId, SpanKind};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

struct Forward(mpsc::UnboundedSender<String>);

impl BatchHandler for Forward {
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        for delivery in batch {
            let _entered = delivery.span().enter();
            tracing::info!("handled");
            let _ = self.0.send(delivery.msg_id().into_owned());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn publisher_span_parents_the_consumer_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber =
        tracing_subscriber::Registry::default().with(mesh_runtime::telemetry::layer_for(&provider));
    // current_thread: every task of this test runs on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let nats = NatsServer::start().await.unwrap();
    let bus = common::bus(&nats.url()).await;
    let topology = common::topology();
    topology.ensure(bus.jetstream()).await.unwrap();

    let publish_span = tracing::info_span!("producer.publish");
    bus.publisher()
        .publish(
            async { Outgoing::encode_raw("test.trace", "t-1", "test.Raw", b"x".to_vec()) }
                .instrument(publish_span.clone())
                .await,
        )
        .await
        .unwrap();
    drop(publish_span);

    let (tx, mut rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let consumer = {
        let bus = bus.clone();
        let spec = topology.consumers[0].clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            run_consumer(
                &bus,
                &spec,
                &common::fast_settings(),
                &Forward(tx),
                shutdown,
            )
            .await
        })
    };
    let handled = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    assert_eq!(handled.as_deref(), Some("t-1"));
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let producer = spans
        .iter()
        .find(|s| s.name == "producer.publish")
        .expect("producer span");
    let publish = spans
        .iter()
        .find(|s| s.name == "mesh.publish")
        .expect("publish span");
    let consume = spans
        .iter()
        .find(|s| s.name == "mesh.consume")
        .expect("consumer span");
    let trace = producer.span_context.trace_id();
    assert_eq!(publish.span_context.trace_id(), trace);
    assert_eq!(consume.span_context.trace_id(), trace);
    assert_eq!(publish.parent_span_id, producer.span_context.span_id());
    assert_eq!(consume.parent_span_id, publish.span_context.span_id());
    assert_ne!(consume.parent_span_id, SpanId::INVALID);

    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_eq!(consume.span_kind, SpanKind::Consumer);
    for (span, operation) in [(publish, "publish"), (consume, "process")] {
        let attribute = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(attribute("messaging.system").as_deref(), Some("nats"));
        assert_eq!(
            attribute("messaging.destination.name").as_deref(),
            Some("test.trace")
        );
        assert_eq!(attribute("messaging.operation").as_deref(), Some(operation));
        assert_eq!(attribute("messaging.message.id").as_deref(), Some("t-1"));
    }
}
