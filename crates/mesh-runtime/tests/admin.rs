//! The admin server over real HTTP: liveness, readiness pass/fail/transition, shutdown, metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mesh_runtime::admin::{AdminServer, Readiness, check_fn};
use mesh_runtime::metrics::{MetricsRegistry, names};
use mesh_runtime::shutdown::{Shutdown, TaskSet};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

struct Response {
    status: u16,
    content_type: String,
    body: String,
}

/// One HTTP/1.1 GET with `Connection: close`; enough for an admin endpoint.
async fn get(addr: SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_owned();
    Response {
        status,
        content_type,
        body: body.to_owned(),
    }
}

async fn start(
    readiness: Readiness,
    metrics: MetricsRegistry,
) -> (SocketAddr, Shutdown, JoinHandle<()>) {
    let server = AdminServer::bind("127.0.0.1:0".parse().expect("addr"), readiness, metrics)
        .await
        .expect("bind");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let shutdown = Shutdown::new();
    let handle = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { server.run_until_stopped(shutdown).await.expect("serve") }
    });
    (addr, shutdown, handle)
}

fn flag_check(
    name: &'static str,
    flag: Arc<AtomicBool>,
) -> impl mesh_runtime::admin::ReadinessCheck {
    check_fn(name, move || {
        let up = flag.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(())
            } else {
                Err(format!("{name} unreachable"))
            }
        }
    })
}

#[tokio::test]
async fn healthz_answers_ok() {
    let (addr, _shutdown, _handle) = start(Readiness::default(), MetricsRegistry::new()).await;
    let response = get(addr, "/healthz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ok");
}

#[tokio::test]
async fn readyz_is_ready_with_no_checks_and_when_all_pass() {
    let readiness = Readiness::default();
    let (addr, _shutdown, _handle) = start(readiness.clone(), MetricsRegistry::new()).await;
    assert_eq!(get(addr, "/readyz").await.status, 200);

    readiness.register(flag_check("nats", Arc::new(AtomicBool::new(true))));
    readiness.register(flag_check("postgres", Arc::new(AtomicBool::new(true))));
    let response = get(addr, "/readyz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ready");
}

#[tokio::test]
async fn readyz_lists_failing_checks_and_follows_transitions() {
    let nats = Arc::new(AtomicBool::new(true));
    let postgres = Arc::new(AtomicBool::new(false));
    let readiness = Readiness::default();
    readiness.register(flag_check("nats", nats.clone()));
    readiness.register(flag_check("postgres", postgres.clone()));
    let (addr, _shutdown, _handle) = start(readiness, MetricsRegistry::new()).await;

    let response = get(addr, "/readyz").await;
    assert_eq!(response.status, 503);
    assert_eq!(response.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_str(&response.body).expect("json");
    assert_eq!(
        body,
        serde_json::json!({
            "status": "not_ready",
            "failing": [{ "check": "postgres", "error": "postgres unreachable" }]
        })
    );

    postgres.store(true, Ordering::SeqCst);
    assert_eq!(get(addr, "/readyz").await.status, 200);

    nats.store(false, Ordering::SeqCst);
    postgres.store(false, Ordering::SeqCst);
    let body: serde_json::Value =
        serde_json::from_str(&get(addr, "/readyz").await.body).expect("json");
    let failing: Vec<&str> = body["failing"]
        .as_array()
        .expect("failing")
        .iter()
        .map(|f| f["check"].as_str().expect("check"))
        .collect();
    assert_eq!(failing, ["nats", "postgres"]);
}

#[tokio::test]
async fn readyz_times_out_slow_checks_and_runs_checks_concurrently() {
    let readiness = Readiness::new(Duration::from_millis(200));
    for name in ["slow-a", "slow-b", "slow-c"] {
        readiness.register(check_fn(name, || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }));
    }
    readiness.register(check_fn("panics", || async { panic!("boom") }));
    let (addr, _shutdown, _handle) = start(readiness, MetricsRegistry::new()).await;

    let started = tokio::time::Instant::now();
    let response = get(addr, "/readyz").await;
    // Three 200 ms timeouts in sequence would take 600 ms.
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status, 503);
    let body: serde_json::Value = serde_json::from_str(&response.body).expect("json");
    assert_eq!(body["failing"][0]["error"], "timed out after 200ms");
    assert_eq!(
        body["failing"][3],
        serde_json::json!({"check": "panics", "error": "check panicked"})
    );
}

#[tokio::test]
async fn shutdown_turns_readyz_503_while_healthz_and_metrics_answer_until_stopped() {
    let readiness = Readiness::default();
    let (addr, shutdown, handle) = start(readiness.clone(), MetricsRegistry::new()).await;
    assert_eq!(get(addr, "/readyz").await.status, 200);

    let mut tasks = TaskSet::new();
    let token = shutdown.token();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tasks.spawn("stage", async move {
        token.cancelled().await;
        let _ = released.await; // in-flight work, finished when the test says so
    });
    let drain = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.drain(tasks, Duration::from_secs(10)).await }
    });

    shutdown.trigger();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !readiness.is_shutting_down() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never saw the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let response = get(addr, "/readyz").await;
    assert_eq!(response.status, 503);
    assert!(
        response.body.contains("\"shutting_down\""),
        "{}",
        response.body
    );
    assert_eq!(get(addr, "/healthz").await.status, 200);
    assert_eq!(get(addr, "/metrics").await.status, 200);

    release.send(()).expect("release");
    let report = drain.await.expect("drain");
    assert!(report.is_clean(), "{report:?}");
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("admin server stops after the drain")
        .expect("join");
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn metrics_serves_registered_metrics_as_openmetrics_text() {
    let metrics = MetricsRegistry::new();
    let consumed = metrics.register(&names::BUS_MESSAGES_CONSUMED, Counter::<u64>::default());
    consumed.inc_by(42);
    let (addr, _shutdown, _handle) = start(Readiness::default(), metrics).await;

    let response = get(addr, "/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        response.content_type
    );
    assert!(
        response
            .body
            .contains("# TYPE mesh_bus_messages_consumed counter"),
        "{}",
        response.body
    );
    assert!(
        response
            .body
            .contains("mesh_bus_messages_consumed_total 42"),
        "{}",
        response.body
    );
    assert!(response.body.ends_with("# EOF\n"), "{}", response.body);
}

#[tokio::test]
async fn bind_reports_the_address_in_use() {
    let first = AdminServer::bind(
        "127.0.0.1:0".parse().expect("addr"),
        Readiness::default(),
        MetricsRegistry::new(),
    )
    .await
    .expect("bind");
    let err = AdminServer::bind(
        first.local_addr(),
        Readiness::default(),
        MetricsRegistry::new(),
    )
    .await
    .expect_err("port in use");
    assert_eq!(
        err.to_string(),
        format!("admin: cannot bind {}", first.local_addr())
    );
}
