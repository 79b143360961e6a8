//! Simulates 100,000 identities across 3 connectors (HR, a directory, a SaaS app: 300,000
//! connector objects) through the whole pipeline, with explanations off, and reports connector
//! objects per second (criterion's throughput) and the process's peak memory.
//!
//! Every stage runs for every object, projection included; the world counts the export
//! commands projection issues rather than keeping all of them (`World::with_export_log`).
//! Column names are parsed once per connector, as the CSV and JSON loaders do.
//!
//! Run with `cargo bench -p mesh-sim --bench simulate`; `MESH_BENCH_IDENTITIES` changes the size.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput};
use mesh_engine::{RuleSet, SourceFile, load};
use mesh_model::{AttributeName, Attributes, ConnectorId, Value};
use mesh_sim::{SimEvent, World};

// The pipeline allocates many small strings and B-tree nodes; glibc's allocator spends a third
// of the time consolidating its bins on that pattern. The services use the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RULES: &str = include_str!("../tests/scenarios/base/reference.rules.yaml");

fn columns(names: &[&str]) -> Vec<AttributeName> {
    names
        .iter()
        .map(|n| AttributeName::parse(n).unwrap())
        .collect()
}

/// One record: `values` in the order of `columns` (a shorter record leaves the last out).
fn record(connector: &ConnectorId, columns: &[AttributeName], values: Vec<String>) -> SimEvent {
    let attributes: Attributes = columns
        .iter()
        .zip(values)
        .map(|(n, v)| (n.clone(), Value::from(v)))
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
    let hr_columns = columns(&[
        "employeeId",
        "givenName",
        "surname",
        "displayName",
        "department",
        "email",
        "status",
    ]);
    let ad_columns = columns(&[
        "objectGUID",
        "objectType",
        "sAMAccountName",
        "givenName",
        "sn",
        "mail",
        "employeeID",
    ]);
    let saas_columns = columns(&["id", "userName", "name.givenName"]);
    let mut events = Vec::with_capacity(identities * 3);
    for i in 0..identities {
        let last = format!("Surname{i}");
        events.push(record(
            &hr,
            &hr_columns,
            vec![
                format!("{}", 100_000 + i),
                "Pat".to_owned(),
                last.clone(),
                format!("Pat {last}"),
                departments[i % departments.len()].to_owned(),
                format!("pat.{i}@example.com"),
                "Active".to_owned(),
            ],
        ));
    }
    for i in 0..identities {
        let mut values = vec![
            format!("guid-{i}"),
            "User".to_owned(),
            format!("psurname{i}"),
            "Pat".to_owned(),
            format!("Surname{i}"),
            format!("pat.{i}@corp.example.com"),
        ];
        // One in ten accounts lacks employeeID and joins by sAMAccountName instead.
        if i % 10 != 0 {
            values.push(format!("{}", 100_000 + i));
        }
        events.push(record(&ad, &ad_columns, values));
    }
    for i in 0..identities {
        events.push(record(
            &saas,
            &saas_columns,
            vec![
                format!("scim-{i}"),
                format!("pat.{i}@example.com"),
                "Patricia".to_owned(),
            ],
        ));
    }
    events
}

/// A world as the benchmark runs it: no explanations, export commands counted.
fn new_world(rules: RuleSet) -> World {
    World::new(rules).with_tracing(false).with_export_log(false)
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
        let world = run(new_world(rules), slice);
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
    let world = run(new_world(rules.clone()), &events);
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
        world.export_count(),
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
            || new_world(rules.clone()),
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
