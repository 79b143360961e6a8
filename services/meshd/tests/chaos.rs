//! Chaos: a stream of change events flows through the whole pipeline (correlation, flow,
//! projection, provisioning agent, each a `meshd run` child process) into a real PostgreSQL
//! target table, while randomly chosen services are SIGKILLed at random moments and restarted,
//! and nats-server and the mesh's PostgreSQL server each crash and restart once.
//!
//! Afterwards no event is lost, no export was applied twice and nothing was dead-lettered: the
//! mesh state and the target's rows equal a clean run's (by digest), every target row was
//! inserted once, and the target saw no more writes per row than export commands were issued
//! for it (a trigger counts every write). The mesh's PostgreSQL is a server of the test's own
//! ([`mesh_testkit::PostgresServer`]), so crashing it takes nothing from the other tests.
//!
//! The short form runs in CI (4,000 events, one run). The long form is the same test with
//! settings from the environment, run in release mode (docs/chaos.md):
//!
//! ```sh
//! CHAOS_EVENTS=100000 CHAOS_RUNS=10 CHAOS_KILLS=6 \
//!   cargo test --release -p meshd --test chaos -- --nocapture
//! ```
//!
//! `CHAOS_SEED` replays a run's schedule (each run prints its seed).

#[path = "support/mesh.rs"]
mod mesh;
#[path = "support/payroll.rs"]
mod payroll;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use mesh::{Mesh, digest};
use mesh_bus::Bus;
use mesh_bus::topology::streams;
use mesh_model::{AttributeName, ChangeEvent};
use mesh_sim::World;
use mesh_sim::synthetic::{self, Sizes};
use mesh_testkit::{PostgresServer, TestDatabase};
use payroll::{rules, target_database};
use sqlx::PgPool;

/// The services of the pipeline; every kill picks one of them.
const SERVICES: [&str; 4] = ["correlation", "flow", "projection", "provisioning-agent"];

/// How long a run may take to settle once the chaos is over.
const SETTLE: Duration = Duration::from_secs(600);

/// What a run ends with: the mesh, the target's rows and the target's writes.
struct Outcome {
    mesh_digest: String,
    mesh: serde_json::Value,
    target_digest: String,
    target_rows: usize,
    /// Per employee id: (inserts, all writes).
    writes: BTreeMap<String, (i64, i64)>,
    /// Per employee id: confirmed export commands to the target.
    commands: BTreeMap<String, i64>,
    failed_exports: i64,
    dead_letters: usize,
    audit_intact: bool,
}

impl Outcome {
    async fn read(mesh: &Mesh, target: &PgPool) -> Self {
        let state = mesh.state().await;
        let (target_digest, target_rows) = payroll::rows_digest(target).await;
        let writes = payroll::writes(target).await;
        let employee_ids = employee_ids(&mesh.pool).await;
        let per_object: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
            "SELECT mesh_object, count(*) FROM exports \
             WHERE target = 'payroll' AND status = 'confirmed' GROUP BY mesh_object",
        )
        .fetch_all(&mesh.pool)
        .await
        .unwrap();
        let failed_exports: i64 =
            sqlx::query_scalar("SELECT count(*) FROM exports WHERE status = 'failed'")
                .fetch_one(&mesh.pool)
                .await
                .unwrap();
        Self {
            mesh_digest: digest(&state),
            mesh: state,
            target_digest,
            target_rows,
            writes,
            commands: per_object
                .into_iter()
                .map(|(object, n)| (employee_ids[&object].clone(), n))
                .collect(),
            failed_exports,
            dead_letters: mesh.read_stream(streams::DLQ).await.len(),
            audit_intact: mesh_store::audit::verify(&mesh.pool)
                .await
                .unwrap()
                .is_intact(),
        }
    }

    /// What is wrong with this outcome, compared with the clean run's; empty if nothing.
    fn problems(&self, clean: &Outcome) -> Vec<String> {
        let mut problems = Vec::new();
        if self.mesh_digest != clean.mesh_digest {
            let (actual, expected) = (
                self.mesh["meshObjects"].as_array().unwrap(),
                clean.mesh["meshObjects"].as_array().unwrap(),
            );
            let mut differing = format!(
                "the mesh differs from the clean run's ({} mesh objects, clean {})",
                actual.len(),
                expected.len()
            );
            for (a, e) in actual.iter().zip(expected).filter(|(a, e)| a != e).take(3) {
                let _ = write!(differing, "\n  chaos: {a}\n  clean: {e}");
            }
            problems.push(differing);
        }
        if self.target_digest != clean.target_digest {
            problems.push(format!(
                "the target's rows differ from the clean run's ({} rows, clean {})",
                self.target_rows, clean.target_rows
            ));
        }
        for (id, (inserts, all)) in &self.writes {
            if *inserts > 1 {
                problems.push(format!("employee {id} was inserted {inserts} times"));
            }
            let commands = self.commands.get(id).copied().unwrap_or(0);
            if *all > commands {
                problems.push(format!(
                    "employee {id} saw {all} writes from {commands} export commands"
                ));
            }
        }
        if self.failed_exports > 0 {
            problems.push(format!("{} export commands failed", self.failed_exports));
        }
        if self.dead_letters > 0 {
            problems.push(format!("{} messages were dead-lettered", self.dead_letters));
        }
        if !self.audit_intact {
            problems.push("the audit chain does not verify".to_owned());
        }
        problems
    }

    fn total_writes(&self) -> i64 {
        self.writes.values().map(|(_, all)| all).sum()
    }
}

/// Mesh object id → its EmployeeId.
async fn employee_ids(pool: &PgPool) -> BTreeMap<uuid::Uuid, String> {
    let rows: Vec<(uuid::Uuid, serde_json::Value)> =
        sqlx::query_as("SELECT id, attributes FROM mesh_objects")
            .fetch_all(pool)
            .await
            .unwrap();
    let name = AttributeName::parse("EmployeeId").unwrap();
    rows.into_iter()
        .map(|(id, attributes)| {
            let attributes = mesh_store::json::attributes_from_json(&attributes).unwrap();
            let value = attributes.get(&name).map(ToString::to_string);
            (id, value.unwrap_or_default())
        })
        .collect()
}

/// One disruption of a chaos run.
#[derive(Debug, Clone, Copy)]
enum Action {
    Kill(&'static str),
    RestartNats,
    RestartPostgres,
}

/// A run's settings, from the environment (see the module documentation).
#[derive(Debug, Clone, Copy)]
struct Plan {
    events: usize,
    runs: usize,
    kills: usize,
    seed: u64,
}

impl Plan {
    fn from_env() -> Self {
        let number = |name: &str, default: u64| -> u64 {
            std::env::var(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
            })
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Self {
            events: number("CHAOS_EVENTS", 4_000) as usize,
            runs: number("CHAOS_RUNS", 1) as usize,
            kills: number("CHAOS_KILLS", 4) as usize,
            seed: number("CHAOS_SEED", seed),
        }
    }
}

/// The disruptions of one run and when they happen, spread over `window`.
fn schedule(rng: &mut fastrand::Rng, kills: usize, window: Duration) -> Vec<(Duration, Action)> {
    let mut actions: Vec<Action> = (0..kills)
        .map(|_| Action::Kill(SERVICES[rng.usize(..SERVICES.len())]))
        .collect();
    actions.push(Action::RestartNats);
    actions.push(Action::RestartPostgres);
    let mut timed: Vec<(Duration, Action)> = actions
        .into_iter()
        .map(|action| (window.mul_f64(0.05 + 0.9 * rng.f64()), action))
        .collect();
    timed.sort_by_key(|(at, _)| *at);
    timed
}

/// Publishes `events` in order, as a connector agent's outbox does: a chunk that fails (the
/// nats-server is down) is published again with the same message ids until it is stored.
async fn publish_retrying(bus: Bus, events: Vec<ChangeEvent>) {
    let publisher = bus.publisher();
    for chunk in events.chunks(500) {
        loop {
            match publisher.publish_all(mesh::change_messages(chunk)).await {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

/// The pipeline without disruptions, its services in this process.
async fn clean_run(changes: &[ChangeEvent]) -> (Outcome, Duration) {
    let (target_db, target) = target_database().await;
    let started = Instant::now();
    let mut mesh = Mesh::start_with_text(&rules(target_db.url())).await;
    for service in SERVICES {
        mesh.run_in_process(service);
    }
    mesh.publish(changes).await;
    mesh.wait_settled(SETTLE).await;
    let elapsed = started.elapsed();
    let outcome = Outcome::read(&mesh, &target).await;
    mesh.stop().await;
    (outcome, elapsed)
}

/// One run under fire; returns what went wrong, or a line of what happened.
async fn chaos_run(
    changes: &[ChangeEvent],
    clean: &Outcome,
    window: Duration,
    seed: u64,
    kills: usize,
) -> Result<String, String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let plan = schedule(&mut rng, kills, window);
    eprintln!("chaos run, seed {seed}: {plan:?}");
    let mut postgres = PostgresServer::start().await.unwrap();
    let db = TestDatabase::create_in(&postgres.admin_url())
        .await
        .unwrap();
    let (target_db, target) = target_database().await;
    let mut mesh = Mesh::start_in(&rules(target_db.url()), db).await;
    // A command must not fail for good because the mesh's own database was down meanwhile.
    mesh.max_attempts = 1_000;
    for service in SERVICES {
        mesh.run_process(service);
    }
    let started = Instant::now();
    let publishing = tokio::spawn(publish_retrying(mesh.bus.clone(), changes.to_vec()));
    let mut exits = Vec::new();
    for (at, action) in &plan {
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        // A service that stopped by itself is restarted, as Kubernetes would, and reported.
        for (service, status) in mesh.exited() {
            exits.push(format!("{service} exited with {status}"));
            mesh.run_process(service);
        }
        match *action {
            Action::Kill(service) => {
                mesh.kill(service);
                tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
                mesh.run_process(service);
            }
            Action::RestartNats => {
                mesh.nats.kill();
                tokio::time::sleep(Duration::from_millis(rng.u64(200..1500))).await;
                mesh.nats.restart().await.unwrap();
            }
            Action::RestartPostgres => {
                postgres.crash();
                tokio::time::sleep(Duration::from_millis(rng.u64(200..1500))).await;
                postgres.restart().await.unwrap();
            }
        }
    }
    publishing.await.unwrap();
    mesh.wait_settled(SETTLE).await;
    for (service, status) in mesh.exited() {
        exits.push(format!("{service} exited with {status}"));
    }
    let elapsed = started.elapsed();
    let outcome = Outcome::read(&mesh, &target).await;
    mesh.stop().await;
    let mut problems = outcome.problems(clean);
    problems.extend(exits.iter().map(|exit| format!("{exit} on its own")));
    if problems.is_empty() {
        Ok(format!(
            "seed {seed}: {} events, {} disruptions, settled in {:.1} s; {} target rows, {} \
             writes from {} export commands",
            changes.len(),
            plan.len(),
            elapsed.as_secs_f64(),
            outcome.target_rows,
            outcome.total_writes(),
            outcome.commands.values().sum::<i64>()
        ))
    } else {
        Err(format!("seed {seed}:\n  {}", problems.join("\n  ")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_killed_and_servers_crashed_mid_stream_lose_nothing_and_apply_nothing_twice() {
    let plan = Plan::from_env();
    let world = World::new(synthetic::rules().unwrap());
    let changes = world
        .change_events(&synthetic::events(Sizes::for_events(plan.events)))
        .unwrap();

    let (clean, clean_elapsed) = clean_run(&changes).await;
    assert!(
        clean.problems(&clean).is_empty(),
        "{:?}",
        clean.problems(&clean)
    );
    assert_eq!(
        clean.mesh["meshObjects"].as_array().unwrap().len(),
        Sizes::for_events(plan.events).people
    );
    assert!(clean.target_rows > 0, "the clean run exported nothing");
    eprintln!(
        "clean run: {} events in {:.1} s, {} target rows, {} writes",
        changes.len(),
        clean_elapsed.as_secs_f64(),
        clean.target_rows,
        clean.total_writes()
    );

    // The disruptions fall within the time a clean run takes, while the stream flows.
    let window = clean_elapsed.max(Duration::from_secs(5));
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for run in 0..plan.runs as u64 {
        match chaos_run(&changes, &clean, window, plan.seed + run, plan.kills).await {
            Ok(line) => passed.push(line),
            Err(problems) => failed.push(problems),
        }
    }
    eprintln!(
        "chaos: {} of {} runs passed\n{}",
        passed.len(),
        plan.runs,
        passed.join("\n")
    );
    assert!(
        failed.is_empty(),
        "{} of {} chaos runs failed:\n{}",
        failed.len(),
        plan.runs,
        failed.join("\n")
    );
}
