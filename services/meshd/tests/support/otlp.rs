//! An OTLP/gRPC trace collector inside a test (a tonic `TraceService` on a loopback port), for
//! tests that point `meshd` child processes at it with `OTEL_EXPORTER_OTLP_ENDPOINT`. It keeps
//! every export request whole, and the `authorization` metadata each came with.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// A span as the collector received it, with the `service.name` of its resource.
#[derive(Debug, Clone)]
pub struct Exported {
    pub service: String,
    pub span: Span,
}

#[derive(Debug, Default)]
struct Received {
    requests: Vec<ExportTraceServiceRequest>,
    authorizations: Vec<String>,
}

/// The collector: keeps every request it is sent.
#[derive(Debug, Clone, Default)]
pub struct Collector(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = self.0.lock().unwrap();
        if let Some(value) = request.metadata().get("authorization") {
            received
                .authorizations
                .push(value.to_str().unwrap_or_default().to_owned());
        }
        received.requests.push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Starts a collector on a port of its own.
    pub async fn start() -> (Self, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Self::default();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        (collector, addr)
    }

    /// Every export request received so far.
    pub fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.0.lock().unwrap().requests.clone()
    }

    /// The `authorization` metadata of the requests that carried one.
    pub fn authorizations(&self) -> Vec<String> {
        self.0.lock().unwrap().authorizations.clone()
    }

    /// Every span received so far, with its service.
    pub fn spans(&self) -> Vec<Exported> {
        let mut spans = Vec::new();
        for request in self.requests() {
            for resource_spans in request.resource_spans {
                let service = resource_spans
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| text(kv.value.as_ref()))
                    .unwrap_or_default();
                for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                    spans.push(Exported {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        spans
    }
}

/// An attribute value as text: strings as they are, other values in their usual form.
pub fn text(value: Option<&AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// The value of a span's attribute `key`, as [`text`].
pub fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(kv.value.as_ref()))
}
