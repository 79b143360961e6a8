//! Joiner-to-provisioned latency and export throughput per target type (issue 7's benchmark).
//!
//! Starts a private nats-server, a mesh database, slapd, a PostgreSQL target table and a SCIM
//! 2.0 service (the connector agent's endpoint), runs correlation, flow, projection and the
//! provisioning agent in this process, then:
//! - **latency**: publishes HR joiners at a fixed rate (default 100/s for 20 s) and, per target
//!   type, measures from the moment a joiner's change event is published to the moment the
//!   target confirmed the create (the agent's ExportResult.completed_at, taken right after the
//!   target answered), as percentiles;
//! - **throughput**: publishes a burst of joiners at once (default 3,000) and measures creates
//!   confirmed per second per target, from the first publish to the last confirmation.
//!
//! For the latency run it also breaks each joiner's time down by hop: a separate NATS
//! connection on a thread of its own sees every message of the pipeline as it is published,
//! so the report shows how long correlation, flow, projection (with the dispatcher) and the
//! provisioning agent each took.
//!
//! `cargo bench -p meshd --bench provisioning`; `BENCH_RATE`, `BENCH_SECONDS` and
//! `BENCH_BURST` change the load. Prints a table and writes target/bench/provisioning.json.
//! Everything shares the machine: the figures include the load generator, both databases,
//! slapd and the SCIM service competing for the same cores.

#[path = "../tests/support/mesh.rs"]
mod mesh;

#[path = "../../provisioning-agent/tests/common/mod.rs"]
mod targets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use mesh::Mesh;
use mesh_model::{
    AttributeName, Attributes, ChangeEvent, ChangeOperation, ConnectorId, ConnectorObjectRef,
    CorrelatedChange, EventId, ExportCommand, ExportOperation, ExportResult, ExportStatus,
    ExternalId, MeshObjectChanged, MeshObjectId, ObjectType, Value,
};
use mesh_proto::WireEvent;
use mesh_testkit::{Slapd, TestDatabase};
use serde_json::json;
use targets::{SCIM_TOKEN, ScimServer};

/// The targets, by connector name, with their type.
const TARGETS: [(&str, &str); 3] = [
    ("hr-database", "postgres"),
    ("app-directory", "ldap"),
    ("saas-app", "scim"),
];

fn rules(payroll: &str, directory: &str, scim: &str) -> String {
    format!(
        r#"
kind: Connector
metadata: {{ name: hr }}
spec: {{ type: hr-csv, objectTypes: [User], externalIdAttribute: employeeId, authoritative: true }}
---
kind: Connector
metadata: {{ name: hr-database }}
spec: {{ type: postgres-target, objectTypes: [User], dsn: '{payroll}', keyColumn: employee_id }}
---
kind: Connector
metadata: {{ name: app-directory }}
spec: {{ type: ldap-target, objectTypes: [User], url: '{directory}',
        bindDn: '{root}', passwordEnv: APP_DIRECTORY_PASSWORD }}
---
kind: Connector
metadata: {{ name: saas-app }}
spec: {{ type: scim-target, objectTypes: [User], url: '{scim}', tokenEnv: SAAS_APP_TOKEN }}
---
kind: JoinRule
metadata: {{ name: hr-by-employee-id }}
spec: {{ connector: hr, sourceAttribute: employeeId, targetAttribute: EmployeeId,
        isAnchor: true, priority: 1 }}
---
kind: FlowRule
metadata: {{ name: hr-employee-id }}
spec: {{ connector: hr, direction: inbound, sourceAttribute: employeeId,
        targetAttribute: EmployeeId, confidence: 95 }}
---
kind: FlowRule
metadata: {{ name: hr-user-name }}
spec: {{ connector: hr, direction: inbound, sourceAttribute: userName,
        targetAttribute: UserName, confidence: 95 }}
---
kind: FlowRule
metadata: {{ name: hr-display-name }}
spec: {{ connector: hr, direction: inbound, sourceAttribute: displayName,
        targetAttribute: DisplayName, confidence: 95 }}
---
kind: FlowRule
metadata: {{ name: hr-last-name }}
spec: {{ connector: hr, direction: inbound, sourceAttribute: surname,
        targetAttribute: LastName, confidence: 95 }}
---
kind: ProjectionRule
metadata: {{ name: to-hr-database }}
spec: {{ targetConnector: hr-database, objectType: User, container: public.employees }}
---
kind: ProjectionRule
metadata: {{ name: to-app-directory }}
spec: {{ targetConnector: app-directory, objectType: User, container: '{people}' }}
---
kind: ProjectionRule
metadata: {{ name: to-saas-app }}
spec: {{ targetConnector: saas-app, objectType: User, container: Users }}
---
kind: FlowRule
metadata: {{ name: db-employee-id }}
spec: {{ connector: hr-database, direction: outbound, sourceAttribute: EmployeeId,
        targetAttribute: employee_id }}
---
kind: FlowRule
metadata: {{ name: db-display-name }}
spec: {{ connector: hr-database, direction: outbound, sourceAttribute: DisplayName,
        targetAttribute: display_name }}
---
kind: FlowRule
metadata: {{ name: dir-uid }}
spec: {{ connector: app-directory, direction: outbound, sourceAttribute: UserName,
        targetAttribute: uid }}
---
kind: FlowRule
metadata: {{ name: dir-cn }}
spec: {{ connector: app-directory, direction: outbound, sourceAttribute: DisplayName,
        targetAttribute: cn }}
---
kind: FlowRule
metadata: {{ name: dir-sn }}
spec: {{ connector: app-directory, direction: outbound, sourceAttribute: LastName,
        targetAttribute: sn }}
---
kind: FlowRule
metadata: {{ name: scim-user-name }}
spec: {{ connector: saas-app, direction: outbound, sourceAttribute: UserName,
        targetAttribute: userName }}
---
kind: FlowRule
metadata: {{ name: scim-display-name }}
spec: {{ connector: saas-app, direction: outbound, sourceAttribute: DisplayName,
        targetAttribute: displayName }}
"#,
        root = Slapd::ROOT_DN,
        people = Slapd::PEOPLE,
    )
}

fn joiner(n: u32) -> ChangeEvent {
    let attributes: Attributes = [
        ("employeeId", format!("E{n:07}")),
        ("userName", format!("user{n}")),
        ("displayName", format!("User {n}")),
        ("surname", format!("Surname{n}")),
    ]
    .into_iter()
    .map(|(k, v)| (AttributeName::parse(k).unwrap(), Value::from(v)))
    .collect();
    ChangeEvent {
        event_id: EventId::derive("provisioning-bench", &n.to_be_bytes()),
        object: ConnectorObjectRef {
            connector: ConnectorId::parse("hr").unwrap(),
            object_type: ObjectType::parse("User").unwrap(),
            external_id: ExternalId::parse(&format!("E{n:07}")).unwrap(),
        },
        operation: ChangeOperation::Upsert,
        attributes,
        source_time: Utc::now(),
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Confirmed creates: (target, mesh object) -> when the target confirmed it.
type Confirmed = HashMap<(String, MeshObjectId), DateTime<Utc>>;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The hops of a joiner, in pipeline order: the message that ends each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Hop {
    /// The CorrelatedChange (correlation).
    Joined,
    /// The MeshObjectChanged (flow).
    Changed,
    /// The ExportCommand of a target (projection and its dispatcher).
    Export,
    /// The ExportResult of a target (the agent's commit and publish after the target answered).
    Result,
}

/// When the observer saw each hop's first message: (hop, target or "", mesh object) -> instant.
type Seen = Arc<Mutex<HashMap<(Hop, String, MeshObjectId), DateTime<Utc>>>>;

/// Watches every pipeline subject on a connection and a thread of its own, so that the
/// instants do not wait for the services' runtime.
fn observe(url: String) -> Seen {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = async_nats::connect(url).await.unwrap();
            let mut messages = client.subscribe("mesh.>").await.unwrap();
            let user = ObjectType::parse("User").unwrap();
            while let Some(message) = messages.next().await {
                let at = Utc::now();
                let subject = message.subject.as_str();
                let payload = &message.payload;
                let key = if subject.starts_with("mesh.joined.") {
                    CorrelatedChange::from_wire(payload).ok().map(|c| {
                        let id = mesh_engine::correlate::mesh_object_id(
                            &user,
                            c.change.object.external_id.as_str(),
                        );
                        (Hop::Joined, String::new(), id)
                    })
                } else if subject.starts_with("mesh.object.") {
                    MeshObjectChanged::from_wire(payload)
                        .ok()
                        .map(|c| (Hop::Changed, String::new(), c.mesh_object))
                } else if subject.starts_with("mesh.export.") {
                    ExportCommand::from_wire(payload)
                        .ok()
                        .filter(|c| c.operation == ExportOperation::Create)
                        .map(|c| (Hop::Export, c.target.to_string(), c.mesh_object))
                } else if subject.starts_with("mesh.result.") {
                    ExportResult::from_wire(payload)
                        .ok()
                        .filter(|r| r.operation == ExportOperation::Create)
                        .map(|r| (Hop::Result, r.target.to_string(), r.mesh_object))
                } else {
                    None
                };
                if let Some(key) = key {
                    record.lock().unwrap().entry(key).or_insert(at);
                }
            }
        });
    });
    seen
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

/// Waits until `expected` creates are confirmed per target (or `limit` passes).
async fn collect(
    results: &mut async_nats::Subscriber,
    confirmed: &mut Confirmed,
    expected: usize,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    let done = |c: &Confirmed| {
        TARGETS
            .iter()
            .all(|(target, _)| c.keys().filter(|(t, _)| t == target).count() >= expected)
    };
    while !done(confirmed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            eprintln!("gave up waiting: {} confirmations", confirmed.len());
            return;
        }
        let Ok(Some(message)) = tokio::time::timeout(left, results.next()).await else {
            continue;
        };
        let Ok(result) = ExportResult::from_wire(&message.payload) else {
            continue;
        };
        if result.operation == ExportOperation::Create
            && matches!(
                result.status,
                ExportStatus::Applied | ExportStatus::AlreadyApplied
            )
        {
            confirmed
                .entry((result.target.to_string(), result.mesh_object))
                .or_insert(result.completed_at);
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let rate = env_or("BENCH_RATE", 100);
    let seconds = env_or("BENCH_SECONDS", 20);
    let burst = env_or("BENCH_BURST", 3000) as u32;

    let slapd = Slapd::start().await.unwrap();
    let (payroll, _) = TestDatabase::with_schema(
        "CREATE TABLE public.employees (employee_id text PRIMARY KEY, display_name text, \
         active boolean NOT NULL DEFAULT true)",
    )
    .await
    .unwrap();
    let scim = ScimServer::start().await;
    let mut mesh = Mesh::start_with_text_and_ack_wait(
        &rules(payroll.url(), &slapd.url(), &scim.base_url()),
        Duration::from_secs(30),
    )
    .await;
    mesh.target_env.insert(
        "APP_DIRECTORY_PASSWORD".to_owned(),
        Slapd::ROOT_PASSWORD.to_owned(),
    );
    mesh.target_env
        .insert("SAAS_APP_TOKEN".to_owned(), SCIM_TOKEN.to_owned());
    for service in ["correlation", "flow", "projection", "provisioning-agent"] {
        mesh.run_in_process(service);
    }
    let mut results = mesh.bus.client().subscribe("mesh.result.>").await.unwrap();
    let seen = observe(mesh.nats.url());

    // Warm-up: a few joiners through every stage and target.
    let mut confirmed = Confirmed::new();
    let warm: Vec<ChangeEvent> = (0..20).map(joiner).collect();
    mesh.publish(&warm).await;
    collect(&mut results, &mut confirmed, 20, Duration::from_secs(60)).await;

    // Latency at a fixed rate.
    let count = (rate * seconds) as u32;
    let mut published: HashMap<MeshObjectId, DateTime<Utc>> = HashMap::new();
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut confirmed = Confirmed::new();
    let first = 1_000;
    for i in 0..count {
        let due = start + interval * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let event = joiner(first + i);
        let at = Utc::now();
        mesh.publish(std::slice::from_ref(&event)).await;
        let id = mesh_engine::correlate::mesh_object_id(
            &ObjectType::parse("User").unwrap(),
            &format!("E{:07}", first + i),
        );
        published.insert(id, at);
        // Drain what has arrived, without waiting.
        while let Ok(Some(message)) = tokio::time::timeout(Duration::ZERO, results.next()).await {
            if let Ok(result) = ExportResult::from_wire(&message.payload)
                && result.operation == ExportOperation::Create
            {
                confirmed
                    .entry((result.target.to_string(), result.mesh_object))
                    .or_insert(result.completed_at);
            }
        }
    }
    let offered = count as f64 / start.elapsed().as_secs_f64();
    collect(
        &mut results,
        &mut confirmed,
        count as usize,
        Duration::from_secs(120),
    )
    .await;
    let mut report = serde_json::Map::new();
    println!(
        "latency: {count} joiners at {offered:.0}/s (target {rate}/s); HR change published -> create confirmed by the target"
    );
    println!(
        "{:<10} {:<14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "type", "target", "n", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "max ms"
    );
    for (target, kind) in TARGETS {
        let mut latencies: Vec<f64> = confirmed
            .iter()
            .filter(|((t, _), _)| t == target)
            .filter_map(|((_, id), done)| {
                published
                    .get(id)
                    .map(|at| (*done - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        let row = json!({
            "target": target,
            "n": latencies.len(),
            "p50_ms": percentile(&latencies, 50.0),
            "p90_ms": percentile(&latencies, 90.0),
            "p95_ms": percentile(&latencies, 95.0),
            "p99_ms": percentile(&latencies, 99.0),
            "max_ms": latencies.last().copied().unwrap_or(f64::NAN),
        });
        println!(
            "{:<10} {:<14} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            kind,
            target,
            latencies.len(),
            percentile(&latencies, 50.0),
            percentile(&latencies, 90.0),
            percentile(&latencies, 95.0),
            percentile(&latencies, 99.0),
            latencies.last().copied().unwrap_or(f64::NAN)
        );
        report.insert(format!("latency_{kind}"), row);
    }
    report.insert("offered_rate".to_owned(), json!(offered));

    // Where the time went, hop by hop, for the same joiners.
    let seen = seen.lock().unwrap().clone();
    let at = |hop: Hop, target: &str, id: &MeshObjectId| {
        seen.get(&(hop, target.to_owned(), *id)).copied()
    };
    println!("hops (ms, p50 / p90 / p99): where the latency run's joiners spent their time");
    let mut hops = serde_json::Map::new();
    for (target, kind) in TARGETS {
        let mut spans: [(&str, Vec<f64>); 6] = [
            ("published->correlated", Vec::new()),
            ("correlated->mesh object changed", Vec::new()),
            ("mesh object changed->export sent", Vec::new()),
            ("export sent->target answered", Vec::new()),
            ("target answered->result published", Vec::new()),
            ("published->target answered", Vec::new()),
        ];
        for (id, published_at) in &published {
            let (Some(joined), Some(changed), Some(export), Some(result)) = (
                at(Hop::Joined, "", id),
                at(Hop::Changed, "", id),
                at(Hop::Export, target, id),
                at(Hop::Result, target, id),
            ) else {
                continue;
            };
            let Some(done) = confirmed.get(&(target.to_owned(), *id)).copied() else {
                continue;
            };
            let points = [*published_at, joined, changed, export, done, result];
            for (i, (_, values)) in spans.iter_mut().take(5).enumerate() {
                values.push(millis(points[i], points[i + 1]));
            }
            spans[5].1.push(millis(*published_at, done));
        }
        println!("{kind:<10} {target}");
        let mut rows = serde_json::Map::new();
        for (name, values) in &mut spans {
            values.sort_by(f64::total_cmp);
            println!(
                "  {name:<36} {:>8.1} {:>8.1} {:>8.1}",
                percentile(values, 50.0),
                percentile(values, 90.0),
                percentile(values, 99.0)
            );
            rows.insert(
                (*name).to_owned(),
                json!({"n": values.len(), "p50_ms": percentile(values, 50.0),
                       "p90_ms": percentile(values, 90.0), "p99_ms": percentile(values, 99.0)}),
            );
        }
        hops.insert(kind.to_owned(), serde_json::Value::Object(rows));
    }
    report.insert("hops".to_owned(), serde_json::Value::Object(hops));

    // Throughput: a burst of joiners at once.
    let mut confirmed = Confirmed::new();
    let first = 10_000_000;
    let events: Vec<ChangeEvent> = (first..first + burst).map(joiner).collect();
    let start = Utc::now();
    for chunk in events.chunks(1000) {
        mesh.publish(chunk).await;
    }
    collect(
        &mut results,
        &mut confirmed,
        burst as usize,
        Duration::from_secs(600),
    )
    .await;
    println!("throughput: {burst} joiners published at once; creates confirmed per second");
    for (target, kind) in TARGETS {
        let times: Vec<DateTime<Utc>> = confirmed
            .iter()
            .filter(|((t, _), _)| t == target)
            .map(|(_, at)| *at)
            .collect();
        let last = times.iter().max().copied().unwrap_or(start);
        let seconds = (last - start).num_milliseconds().max(1) as f64 / 1000.0;
        let per_second = times.len() as f64 / seconds;
        println!(
            "{kind:<10} {target:<14} {:>8} creates in {seconds:.1} s = {per_second:.0}/s",
            times.len()
        );
        report.insert(
            format!("throughput_{kind}"),
            json!({"target": target, "creates": times.len(), "seconds": seconds, "per_second": per_second}),
        );
    }
    let dir = mesh_testkit::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("provisioning.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&serde_json::Value::Object(report)).unwrap(),
    )
    .unwrap();
    println!("report: {}", path.display());
    mesh.stop().await;
}
