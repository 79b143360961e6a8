//! One change, one trace: a SCIM `POST /Users` to the connector agent flows through
//! correlation, flow, projection and the provisioning agent into a PostgreSQL table. Each
//! service is a `meshd run <service>` child process with its own `OTEL_SERVICE_NAME`, exporting
//! spans over OTLP/gRPC to a collector inside this test (a tonic `TraceService`). After SIGTERM
//! (which flushes the exporters) the spans must form one trace spanning the five services:
//! every span's parent is in the trace, each stage's consumer span is a child of the previous
//! stage's producer span, and the NATS spans carry the OpenTelemetry messaging semantic
//! conventions.

#[path = "support/mesh.rs"]
mod mesh;
#[path = "support/otlp.rs"]
mod otlp;
#[path = "support/payroll.rs"]
mod payroll;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mesh::Mesh;
use mesh_testkit::assert_eventually;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use otlp::{Collector, Exported, attribute};
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(30);

/// The services of the pipeline, each in its own process.
const SERVICES: [&str; 5] = [
    "connector-agent",
    "correlation",
    "flow",
    "projection",
    "provisioning-agent",
];

/// Each NATS hop of the change: (publishing service, subject, consuming service, consumer).
const HOPS: [(&str, &str, &str, &str); 5] = [
    (
        "connector-agent",
        "mesh.change.okta",
        "correlation",
        "correlation",
    ),
    ("correlation", "mesh.joined.okta", "flow", "flow"),
    ("flow", "mesh.object.User", "projection", "projection"),
    (
        "projection",
        "mesh.export.payroll",
        "provisioning-agent",
        "provisioning",
    ),
    (
        "provisioning-agent",
        "mesh.result.payroll",
        "projection",
        "projection-results",
    ),
];

/// The SCIM client's own trace and span (the W3C example ids): it sends them as `traceparent`,
/// so the test knows which trace the change must be.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

const SCIM_TOKEN: &str = "tracing-test-token-0123456789";

/// The address the connector agent bound (its `listen` is port 0), from its JSON log: a port
/// chosen beforehand could be taken by then, by one of the other processes' admin servers.
fn agent_addr(log: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(log)
        .ok()?
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["message"] == "connector agent listening")?["addr"]
        .as_str()?
        .parse()
        .ok()
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap()
}

/// The meshd processes of the test; killed if the test fails before it stops them, with the
/// tail of their logs printed.
struct Daemons(Vec<(&'static str, Child, PathBuf)>);

impl Daemons {
    /// Starts every service as `meshd run <service>` with `config`, exporting to `collector`.
    fn start(config: &Path, collector: SocketAddr, logs: &Path) -> Self {
        let mut daemons = Vec::new();
        for service in SERVICES {
            let log = logs.join(format!("{service}.log"));
            let mut command = Command::new(env!("CARGO_BIN_EXE_meshd"));
            // The developer's shell must not change what is exported or where.
            for (key, _) in std::env::vars() {
                if key.starts_with("MESH_") || key.starts_with("OTEL_") || key == "RUST_LOG" {
                    command.env_remove(key);
                }
            }
            let child = command
                .args(["run", service])
                .env("MESH_CONFIG_FILE", config)
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
                .env("OTEL_SERVICE_NAME", service)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            daemons.push((service, child, log));
        }
        Self(daemons)
    }

    /// Stops every process with SIGTERM (they drain and flush their spans) and waits until
    /// each has exited cleanly.
    async fn terminate(&mut self) {
        for (_, child, _) in &self.0 {
            let pid = child.id().unwrap().to_string();
            let status = Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .await
                .unwrap();
            assert!(status.success());
        }
        for (service, child, _) in &mut self.0 {
            let exit = tokio::time::timeout(WAIT, child.wait())
                .await
                .unwrap_or_else(|_| panic!("{service} did not exit on SIGTERM"))
                .unwrap();
            assert!(exit.success(), "{service} exited with {exit}");
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (service, _, log) in &self.0 {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines
                .get(lines.len().saturating_sub(30)..)
                .unwrap_or_default();
            eprintln!("--- {service} (last lines of {}):", log.display());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// The exported spans of one trace, by span id.
struct Trace<'a> {
    spans: Vec<&'a Exported>,
    by_id: HashMap<&'a [u8], &'a Exported>,
}

impl<'a> Trace<'a> {
    fn new(all: &'a [Exported], trace_id: &[u8]) -> Self {
        let spans: Vec<&Exported> = all.iter().filter(|e| e.span.trace_id == trace_id).collect();
        let by_id = spans
            .iter()
            .map(|e| (e.span.span_id.as_slice(), *e))
            .collect();
        Self { spans, by_id }
    }

    /// The spans named `name` that `service` exported, with `subject` as their destination.
    fn messaging(&self, name: &str, service: &str, subject: &str) -> Vec<&'a Exported> {
        self.spans
            .iter()
            .copied()
            .filter(|e| {
                e.span.name == name
                    && e.service == service
                    && attribute(&e.span, "messaging.destination.name").as_deref() == Some(subject)
            })
            .collect()
    }

    /// Whether `ancestor` is `span`'s parent, grandparent, ...
    fn descends_from(&self, span: &Span, ancestor: &Span) -> bool {
        let mut current = span;
        // A chain is never longer than the trace; the bound guards against a cycle.
        for _ in 0..self.spans.len() {
            let Some(parent) = self.by_id.get(current.parent_span_id.as_slice()) else {
                return false;
            };
            if parent.span.span_id == ancestor.span_id {
                return true;
            }
            current = &parent.span;
        }
        false
    }

    fn describe(&self, span: &Span) -> String {
        let mut path = vec![span.name.clone()];
        let mut current = span;
        while let Some(parent) = self.by_id.get(current.parent_span_id.as_slice()) {
            path.push(format!("{} ({})", parent.span.name, parent.service));
            current = &parent.span;
            if path.len() > self.spans.len() {
                break;
            }
        }
        path.join(" <- ")
    }
}

fn assert_messaging(span: &Exported, kind: SpanKind, operation: &str, subject: &str) {
    let what = format!("{} of {} on {subject}", span.span.name, span.service);
    assert_eq!(span.span.kind, kind as i32, "span kind of {what}");
    for (key, expected) in [
        ("messaging.system", Some("nats")),
        ("messaging.operation", Some(operation)),
        ("messaging.destination.name", Some(subject)),
    ] {
        assert_eq!(
            attribute(&span.span, key).as_deref(),
            expected,
            "{key} of {what}"
        );
    }
    assert!(
        attribute(&span.span, "messaging.message.id").is_some(),
        "messaging.message.id of {what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scim_change_is_one_trace_through_all_five_services() {
    let (payroll, payroll_pool) = payroll::payroll_database().await;
    let mesh = Mesh::start_with_text(&payroll::okta_to_payroll_rules(payroll.url(), "")).await;
    let (collector, collector_addr) = Collector::start().await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[nats]
url = "{nats}"

[postgres]
url = "{postgres}"

[admin]
listen = "127.0.0.1:0"

[telemetry]
log_filter = "info"
log_format = "json"

[bus]
ack_wait = "{ack_wait}s"

[rules]
path = "{rules}"

[connector_agent]
listen = "127.0.0.1:0"

[[connector_agent.scim]]
connector = "okta"
token_sha256 = ["{token}"]
"#,
            nats = mesh.nats.url(),
            postgres = mesh.db.url(),
            ack_wait = mesh::ACK_WAIT.as_secs(),
            rules = mesh.rules_path.display(),
            token = hex::encode(Sha256::digest(SCIM_TOKEN.as_bytes())),
        ),
    )
    .unwrap();
    let mut daemons = Daemons::start(&config, collector_addr, dir.path());

    // One change, from a SCIM client that traces its own request.
    let log = dir.path().join("connector-agent.log");
    let deadline = std::time::Instant::now() + WAIT;
    let agent = loop {
        if let Some(addr) = agent_addr(&log) {
            break addr;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the connector agent does not listen after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let created = reqwest::Client::new()
        .post(format!("http://{agent}/scim/v2/okta/Users"))
        .bearer_auth(SCIM_TOKEN)
        .header("content-type", "application/scim+json")
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"))
        .body(
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "ada.lovelace",
                "displayName": "Ada Lovelace",
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);

    // It reaches the target, and the target's answer reaches the projection service.
    assert_eventually!(WAIT, {
        sqlx::query_scalar::<_, String>(
            "SELECT display_name FROM public.accounts WHERE user_name = 'ada.lovelace'",
        )
        .fetch_optional(&payroll_pool)
        .await
        .unwrap()
        .as_deref()
            == Some("Ada Lovelace")
    });
    assert_eventually!(
        WAIT,
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM exports WHERE status = 'confirmed'")
            .fetch_one(&mesh.pool)
            .await
            .unwrap()
            == 1
    );
    // SIGTERM flushes each process's spans before it exits.
    daemons.terminate().await;
    let spans = collector.spans();

    let trace_id = unhex(TRACE_ID);
    let trace = Trace::new(&spans, &trace_id);

    // One trace: every span of the change is in it, and each batch span links to it.
    for exported in &spans {
        let span = &exported.span;
        if span.name == "mesh.batch" {
            assert!(
                span.links.iter().any(|link| link.trace_id == trace_id),
                "mesh.batch of {} links to the change's trace",
                exported.service
            );
        } else {
            assert_eq!(
                hex::encode(&span.trace_id),
                TRACE_ID,
                "{} of {} is in another trace",
                span.name,
                exported.service
            );
        }
    }
    let services: BTreeSet<&str> = trace.spans.iter().map(|e| e.service.as_str()).collect();
    assert_eq!(services, SERVICES.into_iter().collect::<BTreeSet<_>>());

    // Connected: the request's server span is the only child of the client's span, and every
    // other span's parent is in the trace.
    let client = unhex(CLIENT_SPAN_ID);
    let roots: Vec<&&Exported> = trace
        .spans
        .iter()
        .filter(|e| e.span.parent_span_id == client)
        .collect();
    assert_eq!(roots.len(), 1, "{roots:#?}");
    let request = roots[0];
    assert_eq!(request.service, "connector-agent");
    assert_eq!(request.span.name, "POST /scim/v2/{connector}/{resource}");
    assert_eq!(request.span.kind, SpanKind::Server as i32);
    assert_eq!(
        attribute(&request.span, "http.response.status_code").as_deref(),
        Some("201")
    );
    for exported in &trace.spans {
        let span = &exported.span;
        assert!(
            span.parent_span_id == client
                || trace.by_id.contains_key(span.parent_span_id.as_slice()),
            "the parent of {} of {} was not exported",
            span.name,
            exported.service
        );
    }

    // Hop by hop: the producer span descends from the previous stage's consumer span (first:
    // the SCIM request) and is the parent of the next stage's consumer span.
    let mut previous: Vec<&Exported> = vec![request];
    for (from, subject, to, consumer) in HOPS {
        let producers = trace.messaging("mesh.publish", from, subject);
        assert!(
            !producers.is_empty(),
            "no mesh.publish of {from} on {subject}"
        );
        for producer in &producers {
            assert_messaging(producer, SpanKind::Producer, "publish", subject);
            assert!(
                previous
                    .iter()
                    .any(|p| trace.descends_from(&producer.span, &p.span)),
                "mesh.publish of {from} on {subject} does not continue the previous stage: {}",
                trace.describe(&producer.span)
            );
        }
        let consumers = trace.messaging("mesh.consume", to, subject);
        assert!(
            !consumers.is_empty(),
            "no mesh.consume of {to} on {subject}"
        );
        for span in &consumers {
            assert_messaging(span, SpanKind::Consumer, "process", subject);
            assert_eq!(
                attribute(&span.span, "messaging.consumer.group.name").as_deref(),
                Some(consumer)
            );
            assert!(
                producers
                    .iter()
                    .any(|p| span.span.parent_span_id == p.span.span_id),
                "mesh.consume of {to} on {subject} is not a child of its mesh.publish: {}",
                trace.describe(&span.span)
            );
        }
        previous = consumers;
    }

    // The target write is in the trace, under the export command's consumer span.
    let commands = trace.messaging("mesh.consume", "provisioning-agent", "mesh.export.payroll");
    let applies: Vec<&&Exported> = trace
        .spans
        .iter()
        .filter(|e| e.span.name == "export apply")
        .collect();
    assert!(
        applies
            .iter()
            .any(|a| attribute(&a.span, "status").as_deref() == Some("applied")),
        "no export apply span with status applied: {applies:#?}"
    );
    for apply in applies {
        assert_eq!(apply.service, "provisioning-agent");
        assert!(
            commands
                .iter()
                .any(|c| trace.descends_from(&apply.span, &c.span)),
            "{}",
            trace.describe(&apply.span)
        );
    }
}
