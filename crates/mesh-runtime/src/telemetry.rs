//! Logs and traces: `tracing` with an `EnvFilter`, human-readable or JSON lines, and an
//! OpenTelemetry OTLP/gRPC trace exporter when the standard `OTEL_*` variables ask for one.
//!
//! Trace export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! is set, unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER` does not name `otlp`
//! (`none`, say). The exporter itself reads the other `OTEL_EXPORTER_OTLP_*` variables
//! (headers, timeout, compression). The resource's `service.name` is `OTEL_SERVICE_NAME`, else
//! `service.name` from `OTEL_RESOURCE_ATTRIBUTES`, else the name passed to [`init`].
//!
//! Context crosses process boundaries as W3C `traceparent`/`tracestate` (the wire contract of
//! DESIGN.md §2): [`inject_context`] and [`set_parent_from`] work on any carrier implementing
//! OpenTelemetry's `Injector`/`Extractor` (mesh-bus wraps NATS headers) and always use the W3C
//! propagator, independent of the global one. A tracer provider is installed even when nothing
//! is exported, so every span has a context and a service without export still continues the
//! producer's trace into what it publishes.

use std::env;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use tracing_opentelemetry::SetParentError;

use crate::config::{LogFormat, TelemetryConfig};

/// Instrumentation scope name of the tracer.
const TRACER_NAME: &str = "identity-mesh";

/// How long dropping a [`TelemetryGuard`] waits for the last spans to be exported.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter (from `RUST_LOG` or `telemetry.log_filter`) does not parse.
    #[error("telemetry: invalid log filter {filter:?}")]
    Filter {
        /// The directive that failed.
        filter: String,
        /// The parse error.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// The OTLP exporter could not be built.
    #[error("telemetry: cannot build the OTLP span exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber is already installed.
    #[error("telemetry: a global tracing subscriber is already set")]
    AlreadyInitialised(#[source] tracing_subscriber::util::TryInitError),
    /// Flushing or shutting down the tracer provider failed.
    #[error("telemetry: tracer provider shutdown failed")]
    Shutdown(#[source] opentelemetry_sdk::error::OTelSdkError),
}

/// Whether OTLP trace export is on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtlpDecision {
    /// Export to the endpoint the variables name.
    Enabled {
        /// The endpoint variable's value, for the startup log.
        endpoint: String,
    },
    /// No export; the reason is logged at startup.
    Disabled(&'static str),
}

/// Decides from `OTEL_*` variables (read through `var`) whether to export traces over OTLP.
pub fn otlp_decision(var: impl Fn(&str) -> Option<String>) -> OtlpDecision {
    let set = |name: &str| {
        var(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return OtlpDecision::Disabled("OTEL_SDK_DISABLED is true");
    }
    if let Some(exporters) = set("OTEL_TRACES_EXPORTER") {
        let names: Vec<String> = exporters
            .split(',')
            .map(|e| e.trim().to_ascii_lowercase())
            .collect();
        if names.iter().any(|n| n == "none") {
            return OtlpDecision::Disabled("OTEL_TRACES_EXPORTER is none");
        }
        if !names.iter().any(|n| n == "otlp") {
            return OtlpDecision::Disabled(
                "OTEL_TRACES_EXPORTER names no supported exporter (otlp)",
            );
        }
    }
    match set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT")) {
        Some(endpoint) => OtlpDecision::Enabled { endpoint },
        None => OtlpDecision::Disabled("no OTEL_EXPORTER_OTLP_ENDPOINT set"),
    }
}

/// Returns the `service.name` to report: `OTEL_SERVICE_NAME`, else `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`, else `default`.
pub fn resolve_service_name(default: &str, var: impl Fn(&str) -> Option<String>) -> String {
    let set = |name: &str| {
        var(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if let Some(name) = set("OTEL_SERVICE_NAME") {
        return name;
    }
    set("OTEL_RESOURCE_ATTRIBUTES")
        .and_then(|attrs| {
            attrs.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == "service.name" && !v.trim().is_empty()).then(|| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| default.to_owned())
}

fn env_var(name: &str) -> Option<String> {
    env::var(name).ok()
}

/// Installs the global subscriber (filter, log format, optional OTLP export) and the global
/// W3C propagator. Call once, early, inside a Tokio runtime (the gRPC exporter needs one).
///
/// `RUST_LOG`, when set, overrides `config.log_filter`.
pub fn init(
    service_name: &str,
    config: &TelemetryConfig,
) -> Result<TelemetryGuard, TelemetryError> {
    let filter_text = env_var(EnvFilter::DEFAULT_ENV)
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| config.log_filter.clone());
    let filter = EnvFilter::try_new(&filter_text).map_err(|source| TelemetryError::Filter {
        filter: filter_text.clone(),
        source,
    })?;

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let decision = otlp_decision(env_var);
    let service_name = resolve_service_name(service_name, env_var);
    // A provider is installed even when nothing is exported, so that every span has a trace
    // context: a service with export off still passes the producer's `traceparent` on to the
    // messages it publishes, and the trace does not break in the middle of the pipeline.
    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service_name.clone())
            .build(),
    );
    if let OtlpDecision::Enabled { .. } = &decision {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(TelemetryError::Exporter)?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let exporting = matches!(decision, OtlpDecision::Enabled { .. });
    let provider = Some(provider);

    let fmt_layer = match config.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let otel_layer = provider.as_ref().map(layer_for);
    tracing_subscriber::registry()
        .with(otel_layer)
        .with(fmt_layer)
        .with(filter)
        .try_init()
        .map_err(TelemetryError::AlreadyInitialised)?;

    match &decision {
        OtlpDecision::Enabled { endpoint } => {
            tracing::info!(service = %service_name, endpoint = %endpoint, "otlp trace export on");
        }
        OtlpDecision::Disabled(reason) => {
            tracing::info!(service = %service_name, reason, "otlp trace export off");
        }
    }
    Ok(TelemetryGuard {
        provider,
        exporting,
    })
}

/// Builds the `tracing` layer that turns spans into OpenTelemetry spans of `provider`.
///
/// Tests use it with an `InMemorySpanExporter`:
/// `Registry::default().with(layer_for(&provider))`.
pub fn layer_for<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, SdkTracer>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(TRACER_NAME))
}

/// Writes `span`'s trace context into `carrier` as W3C `traceparent` (and `tracestate`).
/// Writes nothing when the span has no OpenTelemetry context (export off, span disabled).
pub fn inject_context(span: &tracing::Span, carrier: &mut dyn Injector) {
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, carrier);
    }
}

/// Returns `span`'s W3C `traceparent`, to store with work that continues the trace later (an
/// outbox row, a queued export); None when the span has no OpenTelemetry context.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut carrier: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    inject_context(span, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes the W3C context in `carrier` the parent of `span`. Call before the span is entered.
///
/// Returns `Ok(())` without change when the carrier holds no valid context; an error when the
/// span already started or no OpenTelemetry layer is installed.
pub fn set_parent_from(
    span: &tracing::Span,
    carrier: &dyn Extractor,
) -> Result<(), SetParentError> {
    let cx = TraceContextPropagator::new().extract(carrier);
    if !cx.span().span_context().is_valid() {
        return Ok(());
    }
    span.set_parent(cx)
}

/// Keeps the tracer provider alive; flushes and shuts it down on [`TelemetryGuard::shutdown`]
/// or, failing that, on drop.
#[derive(Debug)]
#[must_use = "dropping the guard shuts trace export down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    exporting: bool,
}

impl TelemetryGuard {
    /// Returns whether OTLP export is on.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Flushes pending spans and shuts the provider down, off the async worker threads (the
    /// export itself runs on the runtime, so blocking a worker could starve it).
    pub async fn shutdown(mut self) -> Result<(), TelemetryError> {
        let Some(provider) = self.provider.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT))
            .await
            .unwrap_or_else(|join| {
                Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                    join.to_string(),
                ))
            })
            .map_err(TelemetryError::Shutdown)
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            eprintln!("telemetry: tracer provider shutdown failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn otlp_off_without_endpoint() {
        assert!(matches!(
            otlp_decision(vars(&[])),
            OtlpDecision::Disabled(_)
        ));
    }

    #[test]
    fn otlp_on_with_either_endpoint() {
        let generic = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]);
        assert_eq!(
            otlp_decision(generic),
            OtlpDecision::Enabled {
                endpoint: "http://c:4317".to_owned()
            }
        );
        let traces = vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
        ]);
        assert_eq!(
            otlp_decision(traces),
            OtlpDecision::Enabled {
                endpoint: "http://t:4317".to_owned()
            }
        );
    }

    #[test]
    fn otlp_off_when_disabled_or_exporter_none() {
        for pairs in [
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_SDK_DISABLED", "TRUE"),
            ],
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ],
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_TRACES_EXPORTER", "zipkin"),
            ],
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "  "),
                ("OTEL_SDK_DISABLED", "false"),
            ],
        ] {
            assert!(
                matches!(otlp_decision(vars(&pairs)), OtlpDecision::Disabled(_)),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn service_name_precedence() {
        assert_eq!(resolve_service_name("meshd", vars(&[])), "meshd");
        assert_eq!(
            resolve_service_name(
                "meshd",
                vars(&[("OTEL_RESOURCE_ATTRIBUTES", "env=prod, service.name=mesh-eu")])
            ),
            "mesh-eu"
        );
        assert_eq!(
            resolve_service_name(
                "meshd",
                vars(&[
                    ("OTEL_RESOURCE_ATTRIBUTES", "service.name=mesh-eu"),
                    ("OTEL_SERVICE_NAME", "mesh-correlation"),
                ])
            ),
            "mesh-correlation"
        );
    }
}
