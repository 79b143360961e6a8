//! The correlation and flow services on a real nats-server and PostgreSQL: the examples estate
//! gives what the simulator gives, repeats change nothing, concurrent sources make one mesh
//! object per person, poison goes to MESH_DLQ, a leaver is a leaver, and a service killed with
//! SIGKILL mid-stream ends in the state of a clean run.

#[path = "support/mesh.rs"]
mod mesh;

use std::time::Duration;

use mesh::{Mesh, digest, world_state};
use mesh_bus::topology::streams;
use mesh_model::{
    AttributeName, ChangeEvent, ChangeOperation, DeadLetter, LifecycleState, MeshObjectChanged,
    Value,
};
use mesh_proto::WireEvent;
use mesh_sim::synthetic::{self, Sizes};
use mesh_sim::{World, files, simulate};

const QUIET: Duration = Duration::from_secs(120);

fn examples() -> std::path::PathBuf {
    mesh_testkit::workspace_root().join("examples")
}

/// Pretty-prints both sides when they differ, so a failure shows where.
fn assert_same_state(actual: &serde_json::Value, expected: &serde_json::Value) {
    if actual != expected {
        panic!(
            "the services' mesh differs from the simulator's\n--- services\n{}\n--- simulator\n{}",
            serde_json::to_string_pretty(actual).unwrap(),
            serde_json::to_string_pretty(expected).unwrap()
        );
    }
}

fn synthetic_changes(sizes: Sizes) -> Vec<ChangeEvent> {
    let world = World::new(synthetic::rules().unwrap());
    world.change_events(&synthetic::events(sizes)).unwrap()
}

/// Streams the examples estate, in the order `order` leaves it, through the services one change
/// at a time (each followed to the end, as the simulator applies them), and through the
/// simulator; returns the running mesh and the simulated world.
async fn examples_through_both(
    order: impl FnOnce(&mut Vec<mesh_sim::TimedEvent>),
) -> (Mesh, World) {
    let rules_dir = examples().join("rules");
    let rules = mesh_stage::load_rules(&rules_dir).unwrap();
    let mut events = files::read_data(&examples().join("data"), &rules).unwrap();
    order(&mut events);
    let world = World::new(rules);
    let changes = world.change_events(&events).unwrap();
    let world = simulate(world, &events).unwrap();

    let mut mesh = Mesh::start(&rules_dir).await;
    mesh.run_in_process("correlation");
    mesh.run_in_process("flow");
    for change in &changes {
        mesh.publish(std::slice::from_ref(change)).await;
        mesh.wait_quiet(QUIET).await;
    }
    (mesh, world)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_estate_streamed_through_the_services_gives_what_simulate_gives() {
    let (mut mesh, world) = examples_through_both(|_| {}).await;
    let state = mesh.state().await;
    assert_same_state(&state, &world_state(&world));
    assert!(
        state["meshObjects"].as_array().unwrap().len() >= 6,
        "the examples hold six people and a service account"
    );
    let verification = mesh_store::audit::verify(&mesh.pool).await.unwrap();
    assert!(verification.is_intact(), "{:?}", verification.problems);
    assert!(verification.rows > 10, "joins and values were audited");

    // The directory contract: the store answers every search as the simulator's world does.
    let (joins, retries) = mesh::contract_searches(&world);
    let mut conn = mesh.pool.acquire().await.unwrap();
    let store = mesh_store::pipeline::StoreDirectory::load(&mut conn, &joins, &retries)
        .await
        .unwrap();
    let expected = mesh::contract_answers(&world.directory(), &joins, &retries);
    assert_eq!(mesh::contract_answers(&store, &joins, &retries), expected);
    let hits = |prefix: &str| {
        expected
            .iter()
            .filter(|a| a.starts_with(prefix) && !a.ends_with("{}") && !a.ends_with("None"))
            .count()
    };
    assert!(hits("attribute") >= 6, "{expected:#?}");
    assert!(hits("anchor") >= 6, "{expected:#?}");
    assert!(
        hits("unjoined") >= 1,
        "the examples keep a disconnector: {expected:#?}"
    );
    drop(conn);
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_arriving_before_the_authoritative_one_wait_as_disconnectors_and_join_as_simulate_says()
 {
    // The SaaS app and the directory first, HR last: their objects find no mesh object, wait as
    // disconnectors, and join when HR's records make the attributes they search (Email, the
    // composed SamAccountName) exist — through the correlation-rejoin consumer.
    let rank = |event: &mesh_sim::TimedEvent| {
        let connector = match &event.event {
            mesh_sim::SimEvent::Upsert { connector, .. }
            | mesh_sim::SimEvent::Delete { connector, .. } => connector.as_str(),
            _ => "",
        };
        let source = ["saas-app", "corporate-ad", "hr"]
            .iter()
            .position(|c| *c == connector)
            .unwrap_or(3);
        (event.at.is_some(), source)
    };
    let (mut mesh, world) = examples_through_both(|events| events.sort_by_key(rank)).await;
    assert_same_state(&mesh.state().await, &world_state(&world));
    let rejoined: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(seq), 0)::bigint FROM audit_heads WHERE writer = 'correlation-rejoin'",
    )
    .fetch_one(&mesh.pool)
    .await
    .unwrap();
    assert!(
        rejoined >= 3,
        "disconnectors joined through the re-join consumer: {rejoined}"
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_delivered_twice_and_again_after_the_dedup_window_changes_nothing() {
    let mut mesh = Mesh::start_with_text(synthetic::RULES).await;
    // A one-second duplicate window, so that "after the window" takes a second.
    for stream in &mut mesh.topology.streams {
        stream.duplicate_window = Duration::from_secs(1);
    }
    mesh.topology.ensure(mesh.bus.jetstream()).await.unwrap();
    mesh.run_in_process("correlation");
    mesh.run_in_process("flow");
    let changes = synthetic_changes(Sizes::for_events(400));
    mesh.publish(&changes).await;
    mesh.publish(&changes).await;
    mesh.wait_quiet(QUIET).await;
    let first = mesh.state().await;
    let audit_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&mesh.pool)
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stored_before = mesh.read_stream(streams::CHANGES).await.len();
    mesh.publish(&changes).await;
    let stored_after = mesh.read_stream(streams::CHANGES).await.len();
    assert_eq!(
        stored_after - stored_before,
        changes.len(),
        "past the window JetStream stores every repeat again"
    );
    mesh.wait_quiet(QUIET).await;
    assert_eq!(mesh.state().await, first, "the repeats changed the mesh");
    let audit_after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&mesh.pool)
        .await
        .unwrap();
    assert_eq!(
        audit_after, audit_rows,
        "the repeats were audited as new facts"
    );
    let joined = mesh.read_stream(streams::JOINED).await.len();
    assert_eq!(
        joined,
        changes
            .iter()
            .filter(|c| c.operation == ChangeOperation::Upsert)
            .count()
            + changes
                .iter()
                .filter(|c| c.operation == ChangeOperation::Delete)
                .count(),
        "each change is correlated once"
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connectors_publishing_the_same_thousand_people_at_once_make_a_thousand_mesh_objects() {
    let mut mesh = Mesh::start_with_text(synthetic::RULES).await;
    mesh.run_in_process_as("correlation-1", "correlation");
    mesh.run_in_process_as("correlation-2", "correlation");
    mesh.run_in_process("flow");
    let changes = synthetic_changes(Sizes {
        people: 1000,
        movers: 0,
        phone_changes: 0,
        leavers: 0,
    });
    let (hr, directory): (Vec<ChangeEvent>, Vec<ChangeEvent>) = changes
        .into_iter()
        .partition(|c| c.object.connector.as_str() == "hr");
    let publish_hr = mesh.publish(&hr);
    let publish_directory = async {
        // The directory's records chase HR's, person by person.
        for chunk in directory.chunks(50) {
            mesh.publish(chunk).await;
        }
    };
    tokio::join!(publish_hr, publish_directory);
    mesh.wait_quiet(QUIET).await;

    let objects: i64 = sqlx::query_scalar("SELECT count(*) FROM mesh_objects")
        .fetch_one(&mesh.pool)
        .await
        .unwrap();
    assert_eq!(objects, 1000);
    let both: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT mesh_object FROM mesh_links WHERE linked \
         GROUP BY mesh_object HAVING count(DISTINCT connector) = 2) AS t",
    )
    .fetch_one(&mesh.pool)
    .await
    .unwrap();
    assert_eq!(both, 1000, "every mesh object is joined to both connectors");
    let joined: i64 =
        sqlx::query_scalar("SELECT count(*) FROM connector_objects WHERE state = 'joined'")
            .fetch_one(&mesh.pool)
            .await
            .unwrap();
    assert_eq!(joined, 2000);
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_reaches_the_dlq_with_its_reason_and_the_events_behind_it_flow_on() {
    let mut mesh = Mesh::start_with_text(synthetic::RULES).await;
    mesh.run_in_process("correlation");
    mesh.run_in_process("flow");
    let changes = synthetic_changes(Sizes {
        people: 20,
        movers: 0,
        phone_changes: 0,
        leavers: 0,
    });
    let (before, after) = changes.split_at(20);
    mesh.publish(before).await;
    mesh.publish_raw("mesh.change.hr", "garbage-1", b"\xff\xfe not protobuf")
        .await;
    let mut stranger = before[0].clone();
    stranger.event_id = mesh_model::EventId::derive("test", b"stranger");
    stranger.object.connector = mesh_model::ConnectorId::parse("payroll").unwrap();
    mesh.publish(std::slice::from_ref(&stranger)).await;
    mesh.publish(after).await;
    mesh.wait_quiet(QUIET).await;

    let letters: Vec<DeadLetter> = mesh
        .read_stream(streams::DLQ)
        .await
        .into_iter()
        .map(|(_, payload)| DeadLetter::from_wire(&payload).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "{letters:#?}");
    assert!(letters.iter().all(|l| l.stage == "correlation"));
    assert!(
        letters.iter().any(|l| l.reason.contains("decod")),
        "{letters:#?}"
    );
    assert!(
        letters
            .iter()
            .any(|l| l.reason.contains("connector `payroll` is not defined")),
        "{letters:#?}"
    );
    let objects: i64 = sqlx::query_scalar("SELECT count(*) FROM mesh_objects")
        .fetch_one(&mesh.pool)
        .await
        .unwrap();
    assert_eq!(
        objects, 20,
        "the events behind the poison ones were processed"
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_authoritative_record_makes_a_leaver_and_other_sources_take_over() {
    let mut mesh = Mesh::start_with_text(synthetic::RULES).await;
    mesh.run_in_process("correlation");
    mesh.run_in_process("flow");
    let mut changes = synthetic_changes(Sizes {
        people: 1,
        movers: 0,
        phone_changes: 0,
        leavers: 0,
    });
    let mut delete = changes[0].clone();
    delete.event_id = mesh_model::EventId::derive("test", b"hr-delete");
    delete.operation = ChangeOperation::Delete;
    delete.attributes = mesh_model::Attributes::new();
    delete.source_time += chrono::Duration::seconds(60);
    changes.push(delete);
    mesh.publish(&changes).await;
    mesh.wait_quiet(QUIET).await;

    let published: Vec<MeshObjectChanged> = mesh
        .read_stream(streams::OBJECTS)
        .await
        .into_iter()
        .map(|(_, payload)| MeshObjectChanged::from_wire(&payload).unwrap())
        .collect();
    let last = published
        .last()
        .expect("mesh object changes were published");
    assert_eq!(published.len(), 3, "{published:#?}");
    assert_eq!(last.version, 3);
    assert_eq!(last.lifecycle, LifecycleState::Leaver);
    assert_eq!(last.previous_lifecycle, Some(LifecycleState::Active));
    let change = |name: &str| {
        last.changes
            .iter()
            .find(|c| c.name == AttributeName::parse(name).unwrap())
            .unwrap_or_else(|| panic!("{name} did not change: {last:#?}"))
    };
    // The directory's values take over where it has one; HR-only values drop.
    assert_eq!(change("FirstName").old, Value::from("Given0"));
    assert_eq!(change("FirstName").new, Value::from("G0"));
    assert_eq!(change("LastName").new, Value::Null);
    assert_eq!(change("Department").new, Value::from("Unknown"));
    assert_eq!(
        change("DisplayName").new,
        Value::from("G0"),
        "composed again without the LastName that is gone"
    );
    let lifecycle: String = sqlx::query_scalar("SELECT lifecycle FROM mesh_objects")
        .fetch_one(&mesh.pool)
        .await
        .unwrap();
    assert_eq!(lifecycle, "leaver");
    mesh.stop().await;
}

/// 20,000 events through a clean pipeline and through one whose `victim` is SIGKILLed at a
/// random moment and restarted: the final states must be equal.
async fn killed_mid_stream_ends_in_the_clean_state(victim: &'static str) {
    let changes = synthetic_changes(Sizes::for_events(20_000));
    assert!(changes.len() >= 20_000);

    let mut clean = Mesh::start_with_text(synthetic::RULES).await;
    clean.run_in_process("correlation");
    clean.run_in_process("flow");
    clean.publish(&changes).await;
    clean.wait_quiet(QUIET).await;
    let expected = clean.state().await;
    clean.stop().await;

    let mut mesh = Mesh::start_with_text(synthetic::RULES).await;
    mesh.run_process("correlation");
    mesh.run_process("flow");
    let delay = Duration::from_millis(
        100 + u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_millis()
                % 2000,
        ),
    );
    eprintln!("killing {victim} after {delay:?}");
    let bus = mesh.bus.clone();
    let stream = changes.clone();
    let publishing = tokio::spawn(async move { mesh::publish(&bus, &stream).await });
    tokio::time::sleep(delay).await;
    mesh.kill(victim);
    let at_kill: i64 = sqlx::query_scalar("SELECT count(*) FROM connector_objects")
        .fetch_one(&mesh.pool)
        .await
        .unwrap();
    eprintln!("{at_kill} connector objects were stored when {victim} was killed");
    mesh.run_process(victim);
    publishing.await.unwrap();
    mesh.wait_quiet(QUIET).await;
    let actual = mesh.state().await;
    if digest(&actual) != digest(&expected) {
        let differing = |key: &str| {
            let (a, e) = (
                actual[key].as_array().unwrap(),
                expected[key].as_array().unwrap(),
            );
            a.iter()
                .zip(e)
                .filter(|(a, e)| a != e)
                .take(3)
                .map(|(a, e)| format!("after the kill: {a}\nclean run:      {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "the state after killing {victim} differs from a clean run\n{}\n{}",
            differing("meshObjects"),
            differing("connectorObjects")
        );
    }
    assert_eq!(
        actual["meshObjects"].as_array().unwrap().len(),
        Sizes::for_events(20_000).people
    );
    let verification = mesh_store::audit::verify(&mesh.pool).await.unwrap();
    assert!(verification.is_intact(), "{:?}", verification.problems);
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_killed_mid_stream_ends_in_the_clean_state() {
    killed_mid_stream_ends_in_the_clean_state("correlation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_killed_mid_stream_ends_in_the_clean_state() {
    killed_mid_stream_ends_in_the_clean_state("flow").await;
}
