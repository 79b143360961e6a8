//! Simulates 100,000 identities across 3 connectors (HR, a directory, a SaaS app: 300,000
//! connector objects) through the whole pipeline, with explanations off, and reports connector
//! objects per second (criterion's throughput) and the process's peak memory.
//!
//! Run with `cargo bench -p mesh-sim --bench simulate`; `MESH_BENCH_IDENTITIES` changes the size.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput};
use mesh_engine::{SourceFile, load};
use mesh_model::{AttributeName, Attributes, ConnectorId, Value};
use mesh_sim::{SimEvent, World};

// The pipeline allocates many small strings and B-tree nodes; glibc's allocator spends a third
// of the time consolidating its bins on that pattern. The services use the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RULES: &str = include_str!("../tests/scenarios/base/reference.rules.yaml");

fn record(connector: &ConnectorId, pairs: Vec<(&str, String)>) -> SimEvent {
    let attributes: Attributes = pairs
        .into_iter()
        .map(|(n, v)| (AttributeName::parse(n).unwrap(), Value::from(v)))
        .collect();
    SimEvent::Upsert {
        connector: connector.clone(),
        object_type: None,
        attributes,
    }
}

/// HR for everyone, then the directory and the SaaS app: the order of an initial load.
fn events(identities: usize) -> Vec<SimEvent> {
    let hr = ConnectorId::parse("hr").unwrap();
    let ad = ConnectorId::parse("ad").unwrap();
    let saas = ConnectorId::parse("saas").unwrap();
    let departments = ["Engineering", "Research", "Sales", "Finance", "Contractors"];
    let mut events = Vec::with_capacity(identities * 3);
    for i in 0..identities {
        let last = format!("Surname{i}");
        events.push(record(
            &hr,
            vec![
                ("employeeId", format!("{}", 100_000 + i)),
                ("givenName", "Pat".to_owned()),
                ("surname", last.clone()),
                ("displayName", format!("Pat {last}")),
                ("department", departments[i % departments.len()].to_owned()),
                ("email", format!("pat.{i}@example.com")),
                ("status", "Active".to_owned()),
            ],
        ));
    }
    for i in 0..identities {
        let mut fields = vec![
            ("objectGUID", format!("guid-{i}")),
            ("objectType", "User".to_owned()),
            ("sAMAccountName", format!("psurname{i}")),
            ("givenName", "Pat".to_owned()),
            ("sn", format!("Surname{i}")),
            ("mail", format!("pat.{i}@corp.example.com")),
        ];
        // One in ten accounts lacks employeeID and joins by sAMAccountName instead.
        if i % 10 != 0 {
            fields.push(("employeeID", format!("{}", 100_000 + i)));
        }
        events.push(record(&ad, fields));
    }
    for i in 0..identities {
        events.push(record(
            &saas,
            vec![
                ("id", format!("scim-{i}")),
                ("userName", format!("pat.{i}@example.com")),
                ("name.givenName", "Patricia".to_owned()),
            ],
        ));
    }
    events
}

fn run(world: World, events: &[SimEvent]) -> World {
    let mut world = world;
    for event in events {
        world.apply(event, None).unwrap();
    }
    world
}

/// CPU time this thread has run, from /proc (Linux): on a busy machine the wall clock also
/// counts the time other processes held the core.
fn thread_cpu_seconds() -> Option<f64> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// Peak resident set size of this process, from /proc (Linux); `None` elsewhere.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Times the load with parts of the rules removed, to see where the time goes.
fn breakdown(events: &[SimEvent], identities: usize) {
    let documents: Vec<&str> = RULES.split("\n---\n").collect();
    let without = |kinds: &[&str]| -> String {
        documents
            .iter()
            .filter(|d| !kinds.iter().any(|k| d.contains(&format!("kind: {k}"))))
            .copied()
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    for (label, text, slice) in [
        (
            "all rules, hr only",
            RULES.to_owned(),
            &events[..identities],
        ),
        ("no projection", without(&["ProjectionRule"]), events),
        (
            "no projection, no composer",
            without(&["ProjectionRule", "MeshComposerRule"]),
            events,
        ),
        ("all rules", RULES.to_owned(), events),
    ] {
        let rules = load(&[SourceFile::new("rules.yaml", text)]).unwrap();
        let started = Instant::now();
        let world = run(World::new(rules).with_tracing(false), slice);
        let elapsed = started.elapsed();
        println!(
            "  {label:<32} {} objects in {:.3} s: {:.0}/s",
            slice.len(),
            elapsed.as_secs_f64(),
            slice.len() as f64 / elapsed.as_secs_f64()
        );
        drop(world);
    }
}

fn main() {
    let identities: usize = std::env::var("MESH_BENCH_IDENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rules = load(&[SourceFile::new("reference.rules.yaml", RULES)]).unwrap();
    let events = events(identities);
    let objects = events.len();

    // One measured run first, to print the figures the issue asks for in plain words.
    let started = Instant::now();
    let cpu_started = thread_cpu_seconds();
    let world = run(World::new(rules.clone()).with_tracing(false), &events);
    let elapsed = started.elapsed();
    let cpu = thread_cpu_seconds()
        .zip(cpu_started)
        .map(|(end, start)| end - start);
    let joined = world
        .connector_objects()
        .values()
        .filter(|o| matches!(o.state, mesh_model::JoinState::Joined { .. }))
        .count();
    println!(
        "simulate: {identities} identities, {objects} connector objects ({joined} joined), {} mesh objects, {} export commands in {:.2} s wall: {:.0} connector objects/s; {}; peak memory {}",
        world.mesh_objects().len(),
        world.exports().len(),
        elapsed.as_secs_f64(),
        objects as f64 / elapsed.as_secs_f64(),
        cpu.map_or("cpu time unknown".to_owned(), |cpu| format!(
            "{cpu:.2} s on the cpu: {:.0} connector objects per cpu-second",
            objects as f64 / cpu
        )),
        peak_memory_mib().map_or("unknown".to_owned(), |m| format!("{m:.0} MiB")),
    );
    drop(world);

    if std::env::var_os("MESH_BENCH_BREAKDOWN").is_some() {
        breakdown(&events, identities);
    }

    let mut criterion = Criterion::default().sample_size(10).configure_from_args();
    let mut group = criterion.benchmark_group("simulate");
    group.throughput(Throughput::Elements(objects as u64));
    group.bench_function(format!("{identities}_identities_3_connectors"), |b| {
        b.iter_batched(
            || World::new(rules.clone()).with_tracing(false),
            |world| black_box(run(world, &events)),
            BatchSize::PerIteration,
        );
    });
    group.finish();
    criterion.final_summary();
    println!(
        "peak memory after the benchmark: {}",
        peak_memory_mib().map_or("unknown".to_owned(), |m| format!("{m:.0} MiB"))
    );
}
