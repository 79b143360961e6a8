//! Load harness for the connector agent against real servers (a nats-server and PostgreSQL
//! via mesh-testkit). Prints:
//!
//! - SCIM POST /Users creates per second (concurrent keep-alive clients);
//! - GET /Users?filter=userName eq "..." latency percentiles at a paced rate;
//! - a generated HR CSV import: rows per second until durable (outbox) and until published
//!   on MESH_CHANGES, and the process's peak resident memory during the import.
//!
//! `cargo bench -p connector-agent --bench connector_load`; sizes via `BENCH_SCIM_CREATES`
//! (default 20000), `BENCH_GET_RATE` (1000/s), `BENCH_GET_SECONDS` (10), `BENCH_HR_ROWS`
//! (1000000), `BENCH_CLIENTS` (32), `BENCH_MIN_CONNECTIONS` (16: the PostgreSQL connections
//! kept open while idle, of 16).

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_agent::Agent;
use mesh_bus::{Bus, Topology};
use mesh_runtime::config::MeshConfig;
use mesh_runtime::metrics::MetricsRegistry;
use mesh_testkit::{NatsServer, TestDatabase};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-token";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A keep-alive HTTP/1.1 connection.
struct Conn(BufReader<TcpStream>);

impl Conn {
    async fn open(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).ok();
        Self(BufReader::new(s))
    }

    async fn send(&mut self, method: &str, path: &str, body: &str) -> u16 {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.0
            .get_mut()
            .write_all(req.as_bytes())
            .await
            .expect("write");
        let mut line = String::new();
        self.0.read_line(&mut line).await.expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            self.0.read_line(&mut line).await.expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        self.0.read_exact(&mut body).await.expect("body");
        status
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn pending(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM connector_outbox")
        .fetch_one(pool)
        .await
        .map(|r| r.0)
        .unwrap_or(-1)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let creates = env("BENCH_SCIM_CREATES", 20_000);
    let rate = env("BENCH_GET_RATE", 1000);
    let seconds = env("BENCH_GET_SECONDS", 10);
    let rows = env("BENCH_HR_ROWS", 1_000_000);
    let clients = env("BENCH_CLIENTS", 32);

    let nats = NatsServer::start().await.expect("nats-server");
    let db = TestDatabase::create().await.expect("database");
    // The pool of a connector agent configured for bursts of reads after a quiet spell
    // (`postgres.min_connections`, docs/configuration.md): all 16 connections kept open.
    let min_connections = u32::try_from(env("BENCH_MIN_CONNECTIONS", 16)).expect("a pool size");
    let options = mesh_store::connect_options(db.url(), None).expect("url");
    let pool = mesh_store::connect_with(options, 16, min_connections)
        .await
        .expect("pool");
    mesh_store::migrate(&pool).await.expect("migrate");
    let bus = Bus::connect(&mesh_bus::ConnectOptions {
        url: nats.url(),
        ..Default::default()
    })
    .await
    .expect("bus");
    Topology::mesh()
        .ensure(bus.jetstream())
        .await
        .expect("topology");
    let dir = tempfile::tempdir().expect("tempdir");
    let drop_dir = dir.path().join("drop");
    let cfg = dir.path().join("mesh.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[connector_agent]
listen = "127.0.0.1:0"
relay_batch = 5000
relay_interval = "100ms"
# The harness measures the agent, not its per-token limit.
rate_limit_per_second = 0
[[connector_agent.scim]]
connector = "bench"
token_sha256 = ["{}"]
[[connector_agent.hr]]
connector = "hr"
external_id = "employee_id"
"#,
            hex::encode(Sha256::digest(TOKEN.as_bytes()))
        ),
    )
    .expect("config");
    let config = MeshConfig::load(Some(&cfg)).expect("config");
    let agent = Agent::build(
        &config.connector_agent,
        &bus,
        pool.clone(),
        &MetricsRegistry::new(),
    )
    .await
    .expect("agent");
    let addr = agent.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.run_until_stopped(shutdown.clone()));
    println!(
        "machine: {} cores, {} MiB RAM (shared with other builds); PostgreSQL and nats-server on loopback",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().next().and_then(|l| l
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())))
            .unwrap_or(0)
            / 1024
    );

    // SCIM creates.
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            let mut failed = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= creates {
                    return failed;
                }
                let body = format!(
                    r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"user{i}","name":{{"givenName":"G{i}","familyName":"F{i}"}},"emails":[{{"value":"user{i}@example.com","type":"work","primary":true}}],"active":true}}"#
                );
                if conn.send("POST", "/scim/v2/bench/Users", &body).await != 201 {
                    failed += 1;
                }
            }
        }));
    }
    let mut failed = 0;
    for h in handles {
        failed += h.await.unwrap_or(0);
    }
    let elapsed = started.elapsed();
    println!(
        "scim POST /Users: {creates} creates in {:.2}s = {:.0} creates/s ({clients} clients, {failed} failed)",
        elapsed.as_secs_f64(),
        creates as f64 / elapsed.as_secs_f64()
    );
    let wait = Instant::now();
    while pending(&pool).await > 0 && wait.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "  all {creates} change events published {:.2}s after the last create",
        wait.elapsed().as_secs_f64()
    );

    // Paced filtered GETs.
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let latencies = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(total as usize)));
    let (tx, rx) = async_channel(clients as usize * 4);
    let mut workers = Vec::new();
    for _ in 0..clients {
        let rx = rx.clone();
        let latencies = latencies.clone();
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            while let Ok((i, due)) = rx.recv().await {
                let path = format!(
                    "/scim/v2/bench/Users?filter=userName%20eq%20%22user{}%22",
                    i % creates.max(1)
                );
                let status = conn.send("GET", &path, "").await;
                // Latency from when the request was due, so queueing counts (no coordinated
                // omission).
                let l: Duration = Instant::now().saturating_duration_since(due);
                if status == 200 {
                    latencies.lock().await.push(l);
                }
            }
        }));
    }
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        if tx.send((i, due)).await.is_err() {
            break;
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let mut l = latencies.lock().await.clone();
    l.sort();
    println!(
        "scim GET filter userName eq: {} requests at {rate}/s: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.len(),
        percentile(&l, 0.50).as_secs_f64() * 1e3,
        percentile(&l, 0.90).as_secs_f64() * 1e3,
        percentile(&l, 0.99).as_secs_f64() * 1e3,
        l.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );

    // HR import.
    let csv = dir.path().join("extract.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).expect("csv"));
        writeln!(
            f,
            "employee_id,given_name,family_name,email,department,title,manager_id,location"
        )
        .ok();
        for i in 0..rows {
            writeln!(
                f,
                "E{i:08},Given{i},Family{i},person{i}@example.com,Dept{},Title{},E{:08},Site{}",
                i % 97,
                i % 13,
                i / 10,
                i % 7
            )
            .ok();
        }
    }
    let size = std::fs::metadata(&csv).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = peak_rss_kib();
    let settings =
        connector_agent::settings::Settings::parse(&config.connector_agent).expect("settings");
    let feed = settings.hr[0].clone();
    let importer = connector_agent::hr::Importer::new(
        pool.clone(),
        Default::default(),
        &MetricsRegistry::new(),
    );
    let started = Instant::now();
    let report = importer
        .import_file(&feed, &csv, "extract.csv", false)
        .await
        .expect("import");
    let durable = started.elapsed();
    let peak = peak_rss_kib();
    while pending(&pool).await > 0 && started.elapsed() < Duration::from_secs(1800) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let published = started.elapsed();
    println!(
        "hr csv import: {rows} rows ({:.0} MiB), {} joiners, durable in {:.1}s = {:.0} rows/s; published in {:.1}s = {:.0} rows/s",
        size as f64 / 1048576.0,
        report.joiners,
        durable.as_secs_f64(),
        rows as f64 / durable.as_secs_f64(),
        published.as_secs_f64(),
        rows as f64 / published.as_secs_f64()
    );
    println!(
        "  peak resident memory of the whole bench process during the import: {} MiB (before: {} MiB)",
        peak / 1024,
        rss_before / 1024
    );
    let _ = std::fs::remove_dir_all(&drop_dir);
    shutdown.cancel();
    let _ = task.await;
}

/// A small multi-consumer channel built from tokio primitives.
fn async_channel<T: Send + 'static>(cap: usize) -> (tokio::sync::mpsc::Sender<T>, SharedRx<T>) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap);
    (tx, SharedRx(Arc::new(tokio::sync::Mutex::new(rx))))
}

struct SharedRx<T>(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<T>>>);

impl<T> Clone for SharedRx<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> SharedRx<T> {
    async fn recv(&self) -> Result<T, ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}
