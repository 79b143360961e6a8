//! AccessDecision.Decide over gRPC on this machine: the risk service in this process with the
//! reference policy of examples/rules, Redis on loopback (the machine's, under a key prefix),
//! and 10,000 identities with some signals. Prints, and writes to target/bench/decide.json:
//!
//! - **throughput**: `BENCH_CONCURRENCY` (default 64) callers over `BENCH_CHANNELS` (4)
//!   HTTP/2 connections, each sending its next call when the last one answered, for
//!   `BENCH_SECONDS` (10): calls per second and latency percentiles;
//! - **paced**: calls started at `BENCH_RATE` per second (default 20,000) whatever the
//!   answers, latency measured from when each call was due (no coordinated omission).
//!
//! `cargo bench -p risk --bench decide`. The load generator shares the machine's cores with
//! the service and Redis; the report says how many there are.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use mesh_bus::{Bus, ConsumerSettings, Topology};
use mesh_model::{AttributeName, Attributes, LifecycleState, Value};
use mesh_proto::v1;
use mesh_proto::v1::access_decision_client::AccessDecisionClient;
use mesh_runtime::config::RiskConfig;
use mesh_testkit::{NatsServer, RedisPrefix, TestDatabase};
use risk::state::ObjectRecord;
use tonic::transport::Channel;

// As meshd runs it (services/meshd/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IDENTITIES: usize = 10_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rules() -> mesh_engine::RuleSet {
    mesh_stage::load_rules(&mesh_testkit::workspace_root().join("examples/rules")).unwrap()
}

fn identity(i: usize) -> ObjectRecord {
    let mut attributes = Attributes::new();
    for (name, value) in [
        ("SamAccountName", format!("user{i}")),
        ("Email", format!("user{i}@corp.example.com")),
        (
            "Department",
            ["Research", "Sales", "Finance"][i % 3].to_owned(),
        ),
        ("DisplayName", format!("User {i}")),
    ] {
        attributes.insert(AttributeName::parse(name).unwrap(), Value::from(value));
    }
    ObjectRecord {
        id: uuid::Uuid::from_u128(0x7f1c_9a52_0000_4000_8000_0000_0000_0000 + i as u128)
            .hyphenated()
            .to_string(),
        object_type: "User".to_owned(),
        // One in fifty has left: those calls are denies, which are always audited.
        lifecycle: if i.is_multiple_of(50) {
            LifecycleState::Leaver
        } else {
            LifecycleState::Active
        },
        version: 1,
        joined_at: Utc::now() - chrono::Duration::days(90),
        attributes,
    }
}

fn request(i: usize) -> v1::DecideRequest {
    v1::DecideRequest {
        subject: format!("user{}", i % IDENTITIES),
        mesh_object_id: None,
        resource: "app:wiki".to_owned(),
        action: "read".to_owned(),
        sensitivity: if i.is_multiple_of(10) {
            v1::Sensitivity::High
        } else {
            v1::Sensitivity::Low
        } as i32,
        context: Some(v1::RequestContext {
            device_id: Some(format!("laptop-{}", i % IDENTITIES)),
            location: Some(v1::GeoLocation {
                latitude: 51.5,
                longitude: -0.12,
                country: Some("GB".to_owned()),
                city: None,
            }),
            interactive: true,
            ..Default::default()
        }),
    }
}

#[derive(Debug, serde::Serialize)]
struct Phase {
    calls: usize,
    errors: usize,
    seconds: f64,
    calls_per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

fn phase(mut latencies: Vec<Duration>, errors: usize, elapsed: Duration) -> Phase {
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Phase {
        calls: latencies.len(),
        errors,
        seconds: elapsed.as_secs_f64(),
        calls_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pick(0.50),
        p90_ms: pick(0.90),
        p99_ms: pick(0.99),
        p999_ms: pick(0.999),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

async fn throughput(channels: &[Channel], concurrency: usize, seconds: u64) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let mut client = AccessDecisionClient::new(channels[c % channels.len()].clone());
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0;
            let mut i = c * 7919;
            while !stop.load(Ordering::Relaxed) {
                i += concurrency;
                let t = Instant::now();
                match client.decide(request(i)).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.unwrap();
        all.extend(l);
        errors += e;
    }
    phase(all, errors, elapsed)
}

async fn paced(channels: &[Channel], rate: u64, seconds: u64) -> Phase {
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut i = 0;
    while i < total {
        // Start every call that is due by now; sleep to the next one.
        let due_now = (started.elapsed().as_secs_f64() / interval.as_secs_f64()) as usize + 1;
        while i < due_now.min(total) {
            let due = started + interval * i as u32;
            let mut client = AccessDecisionClient::new(channels[i % channels.len()].clone());
            let tx = tx.clone();
            let n = i;
            tokio::spawn(async move {
                let ok = client.decide(request(n * 31)).await.is_ok();
                let _ = tx.send((ok, due.elapsed()));
            });
            i += 1;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    while let Some((ok, latency)) = rx.recv().await {
        if ok {
            latencies.push(latency);
        } else {
            errors += 1;
        }
    }
    phase(latencies, errors, started.elapsed())
}

fn print(name: &str, p: &Phase) {
    println!(
        "{name:<11} {:>9.0} calls/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  max {:>7.2} ms  ({} calls, {} errors, {:.1} s)",
        p.calls_per_second,
        p.p50_ms,
        p.p90_ms,
        p.p99_ms,
        p.p999_ms,
        p.max_ms,
        p.calls,
        p.errors,
        p.seconds
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let concurrency = env("BENCH_CONCURRENCY", 64) as usize;
    let channel_count = env("BENCH_CHANNELS", 4) as usize;
    let seconds = env("BENCH_SECONDS", 10);
    let rate = env("BENCH_RATE", 20_000);

    let nats = NatsServer::start().await.unwrap();
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    mesh_store::migrate(&pool).await.unwrap();
    let redis = RedisPrefix::new();
    let bus = Bus::from_client(nats.connect().await.unwrap());
    let topology = Topology::mesh();
    topology.ensure(bus.jetstream()).await.unwrap();

    let rules = rules();
    let mut config = RiskConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.key_prefix = redis.prefix().to_owned();
    let service = risk::LocalRisk::start(
        &rules,
        config,
        redis.url(),
        &bus,
        pool.clone(),
        &topology,
        ConsumerSettings::default(),
    )
    .await
    .unwrap();
    let state = service.risk.state();
    let indexed = service.risk.policy().identity.subject_attributes.clone();
    let objects: Vec<ObjectRecord> = (0..IDENTITIES).map(identity).collect();
    for chunk in objects.chunks(1000) {
        state.write_objects(&indexed, chunk, &[]).await.unwrap();
    }
    state.mark_synced().await.unwrap();
    let url = format!("http://{}", service.addr);
    // Some identities have signals: a known device, failed sign-ins, a last sighting.
    let mut channels = Vec::new();
    for _ in 0..channel_count.max(1) {
        let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .tcp_nodelay(true);
        channels.push(endpoint.connect().await.unwrap());
    }
    let mut client = AccessDecisionClient::new(channels[0].clone());
    for i in (0..IDENTITIES).step_by(10) {
        let signal = v1::RiskSignal {
            signal_id: uuid::Uuid::from_u128(0xb0 << 64 | i as u128).to_string(),
            subject: format!("user{i}"),
            mesh_object: None,
            observed_at: Some(prost_types::Timestamp {
                seconds: Utc::now().timestamp(),
                nanos: 0,
            }),
            kind: Some(v1::risk_signal::Kind::SignIn(v1::SignIn {
                success: i % 20 != 0,
                device_id: Some(format!("laptop-{i}")),
                location: Some(v1::GeoLocation {
                    latitude: 51.5,
                    longitude: -0.12,
                    country: None,
                    city: None,
                }),
                interactive: true,
                ..Default::default()
            })),
        };
        client
            .report_signal(v1::ReportSignalRequest {
                signal: Some(signal),
            })
            .await
            .unwrap();
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Decide over gRPC: {IDENTITIES} identities, {cores} CPUs, load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Warm up connections, Redis and the allocator.
    let _ = throughput(&channels, concurrency, 2).await;
    let max = throughput(&channels, concurrency, seconds).await;
    print("throughput", &max);
    let at_rate = paced(&channels, rate, seconds).await;
    print(&format!("at {rate}/s"), &at_rate);

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let report = serde_json::json!({
        "identities": IDENTITIES,
        "cpus": cores,
        "concurrency": concurrency,
        "channels": channel_count,
        "throughput": max,
        "paced": { "rate": rate, "result": at_rate },
    });
    std::fs::write(
        dir.join("decide.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    service.stop().await.unwrap();
}
