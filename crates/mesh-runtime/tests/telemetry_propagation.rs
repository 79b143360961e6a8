//! W3C trace context carried through a plain map: the extracting span becomes a child of the
//! injecting one (what mesh-bus does with NATS headers).

use std::collections::HashMap;

use mesh_runtime::telemetry::{inject_context, layer_for, set_parent_from};
use opentelemetry::trace::SpanId;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn extracted_context_parents_the_consumer_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = Registry::default().with(layer_for(&provider));

    let mut carrier: HashMap<String, String> = HashMap::new();
    tracing::subscriber::with_default(subscriber, || {
        let publish = tracing::info_span!("publish");
        publish.in_scope(|| inject_context(&publish, &mut carrier));
        drop(publish);

        let consume = tracing::info_span!("consume");
        set_parent_from(&consume, &carrier).expect("set parent");
        consume.in_scope(|| tracing::info!("handling"));
    });
    provider.force_flush().expect("flush");

    assert!(
        carrier
            .get("traceparent")
            .is_some_and(|v| v.starts_with("00-")),
        "{carrier:?}"
    );
    let spans = exporter.get_finished_spans().expect("spans");
    let find = |name: &str| spans.iter().find(|s| s.name == name).expect(name).clone();
    let publish = find("publish");
    let consume = find("consume");
    assert_eq!(
        consume.span_context.trace_id(),
        publish.span_context.trace_id()
    );
    assert_eq!(consume.parent_span_id, publish.span_context.span_id());
    assert!(consume.parent_span_is_remote);
    assert_eq!(publish.parent_span_id, SpanId::INVALID);
}

#[test]
fn an_empty_carrier_leaves_the_span_a_root() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = Registry::default().with(layer_for(&provider));

    tracing::subscriber::with_default(subscriber, || {
        let consume = tracing::info_span!("consume");
        set_parent_from(&consume, &HashMap::<String, String>::new()).expect("no-op");
        consume.in_scope(|| {});
    });
    provider.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].parent_span_id, SpanId::INVALID);
}

#[test]
fn without_an_opentelemetry_layer_nothing_is_injected() {
    let mut carrier: HashMap<String, String> = HashMap::new();
    tracing::subscriber::with_default(Registry::default(), || {
        let span = tracing::info_span!("publish");
        inject_context(&span, &mut carrier);
    });
    assert!(carrier.is_empty(), "{carrier:?}");
}
