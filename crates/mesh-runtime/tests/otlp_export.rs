//! `telemetry::init` exports spans over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! The spans come from a child process (this test binary re-run with the `OTEL_*` variables
//! set), because `init` installs a process-global subscriber and the environment cannot be
//! changed safely from a running test. The collector is an in-process tonic `TraceService`.

use std::collections::HashMap;
use std::time::Duration;

use mesh_runtime::config::TelemetryConfig;
use mesh_runtime::telemetry;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio::sync::mpsc;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

const CHILD_ENV: &str = "MESH_RUNTIME_OTLP_CHILD";

struct Collector {
    received: mpsc::UnboundedSender<ExportTraceServiceRequest>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let _ = self.received.send(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_with_service_name_and_parentage() {
    // The test re-runs itself as a child process with the OTEL_* variables set.
    if std::env::var_os(CHILD_ENV).is_some() {
        emit_spans_as_child().await;
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector { received: tx }))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    let exe = std::env::current_exe().expect("test binary");
    let output = tokio::process::Command::new(exe)
        .args([
            "--exact",
            "spans_reach_an_otlp_collector_with_service_name_and_parentage",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env("OTEL_SERVICE_NAME", "otlp-test")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .output()
        .await
        .expect("run child");
    assert!(
        output.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The child shut its provider down before exiting, so everything has been sent.
    let mut spans = HashMap::new();
    let mut service_names = Vec::new();
    while let Ok(Some(request)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
    {
        for resource_spans in request.resource_spans {
            for attr in resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
            {
                if attr.key == "service.name"
                    && let Some(Value::StringValue(name)) =
                        attr.value.as_ref().and_then(|v| v.value.clone())
                {
                    service_names.push(name);
                }
            }
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.insert(span.name.clone(), span);
            }
        }
    }
    assert_eq!(service_names.first().map(String::as_str), Some("otlp-test"));
    let publish = spans.get("publish").expect("publish span exported");
    let consume = spans.get("consume").expect("consume span exported");
    assert_eq!(consume.trace_id, publish.trace_id);
    assert_eq!(consume.parent_span_id, publish.span_id);
}

/// The child's half of the test above: initialise telemetry from the environment and emit a
/// parent and a child span across an injected and extracted carrier.
async fn emit_spans_as_child() {
    let guard = telemetry::init("meshd", &TelemetryConfig::default()).expect("init");
    assert!(guard.exporting());

    let mut carrier: HashMap<String, String> = HashMap::new();
    {
        let publish = tracing::info_span!("publish");
        publish.in_scope(|| telemetry::inject_context(&publish, &mut carrier));
    }
    let consume = tracing::info_span!("consume");
    telemetry::set_parent_from(&consume, &carrier).expect("set parent");
    consume.in_scope(|| tracing::info!(messages = 1, "handled"));
    drop(consume);

    guard.shutdown().await.expect("flush and shut down");
}
