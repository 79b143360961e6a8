//! The headers every mesh message carries, and W3C trace context in NATS headers.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};

/// JetStream's deduplication header; the mesh derives it from the input event id and the stage.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The protobuf message type of the payload, e.g. `identitymesh.v1.ChangeEvent`.
pub const SCHEMA: &str = "Mesh-Schema";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state.
pub const TRACESTATE: &str = "tracestate";

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// Writes the trace context of `span` into `headers` as W3C `traceparent`/`tracestate`.
pub fn inject_trace_context(span: &tracing::Span, headers: &mut HeaderMap) {
    mesh_runtime::telemetry::inject_context(span, &mut HeaderInjector(headers));
}

/// Makes the producer's trace context in `headers` the parent of `span`. Does nothing when the
/// headers carry no valid context.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    // Fails only when the span is disabled; then there is nothing to parent.
    let _ = mesh_runtime::telemetry::set_parent_from(span, &HeaderExtractor(headers));
}
