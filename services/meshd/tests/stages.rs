//! Every stage of the pipeline against repeats and poison, with the services in this process
//! on a real nats-server and PostgreSQL and a real PostgreSQL target:
//!
//! - every message of every stream published again, with its own message id, after the
//!   JetStream duplicate window has passed (so JetStream stores it again and every stage
//!   consumes it a second time) changes nothing: not the mesh, not the target's rows, no write
//!   in the target, no new export command, no audit row;
//! - a message no stage can decode, published on every stage's input, is dead-lettered by each
//!   stage that reads it, with the stage and the reason, and the stages go on; the query
//!   service (what `meshctl dlq list|replay` calls) lists them by stage and replays one, which
//!   reaches its stage again.

#[path = "support/mesh.rs"]
mod mesh;
#[path = "support/payroll.rs"]
mod payroll;

use std::collections::BTreeMap;
use std::time::Duration;

use mesh::{Mesh, digest};
use mesh_bus::topology::{consumers, streams};
use mesh_model::DeadLetter;
use mesh_proto::WireEvent;
use mesh_proto::v1;
use mesh_proto::v1::mesh_query_client::MeshQueryClient;
use mesh_sim::World;
use mesh_sim::synthetic::{self, Sizes};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

const QUIET: Duration = Duration::from_secs(120);
const TOKEN: &str = "stages-test-token";

/// The streams the pipeline's stages consume, each with the subject a poison message goes to
/// and the stages that read it.
const INPUTS: [(&str, &str, &[&str]); 5] = [
    (
        streams::CHANGES,
        "mesh.change.hr",
        &[consumers::CORRELATION],
    ),
    (streams::JOINED, "mesh.joined.hr", &[consumers::FLOW]),
    (
        streams::OBJECTS,
        "mesh.object.User",
        &[consumers::PROJECTION, consumers::CORRELATION_REJOIN],
    ),
    (
        streams::EXPORTS,
        "mesh.export.payroll",
        &[consumers::PROVISIONING],
    ),
    (
        streams::RESULTS,
        "mesh.result.payroll",
        &[consumers::PROJECTION_RESULTS],
    ),
];

/// What the stages' effects add up to.
#[derive(Debug, PartialEq, Eq)]
struct Effects {
    mesh: String,
    target: String,
    target_writes: BTreeMap<String, (i64, i64)>,
    exports: i64,
    audit_rows: i64,
}

async fn effects(mesh: &Mesh, target: &PgPool) -> Effects {
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mesh.pool)
            .await
            .unwrap()
    };
    Effects {
        mesh: digest(&mesh.state().await),
        target: payroll::rows_digest(target).await.0,
        target_writes: payroll::writes(target).await,
        exports: count("SELECT count(*) FROM exports").await,
        audit_rows: count("SELECT count(*) FROM audit_log").await,
    }
}

/// A request carrying the bearer token.
fn authed<T>(message: T) -> tonic::Request<T> {
    mesh::with_bearer(message, TOKEN)
}

/// The dead letters of `stage`, as `meshctl dlq list --stage` asks for them.
async fn dead_letters(
    client: &mut MeshQueryClient<tonic::transport::Channel>,
    stage: &str,
) -> Vec<v1::DeadLetterEntry> {
    client
        .list_dead_letters(authed(v1::ListDeadLettersRequest {
            stage: stage.to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .entries
}

/// Publishes every message stored in `stream` again as it was (subject, headers with the
/// message id, payload); returns how many JetStream stored.
async fn republish(mesh: &Mesh, stream: &str) -> usize {
    let jetstream = mesh.bus.jetstream();
    let mut handle = jetstream.get_stream(stream).await.unwrap();
    let info = handle.info().await.unwrap();
    let mut stored = 0;
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let Ok(message) = handle.get_raw_message(seq).await else {
            continue;
        };
        let ack = jetstream
            .publish_with_headers(message.subject, message.headers, message.payload)
            .await
            .unwrap()
            .await
            .unwrap();
        if !ack.duplicate {
            stored += 1;
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_ignores_repeats_after_the_dedup_window_and_dead_letters_poison() {
    let (target_db, target) = payroll::target_database().await;
    let mut mesh = Mesh::start_with_text(&payroll::rules(target_db.url())).await;
    // A one-second duplicate window, so that "after the window" takes a second.
    for stream in &mut mesh.topology.streams {
        stream.duplicate_window = Duration::from_secs(1);
    }
    mesh.topology.ensure(mesh.bus.jetstream()).await.unwrap();
    for service in ["correlation", "flow", "projection", "provisioning-agent"] {
        mesh.run_in_process(service);
    }
    let world = World::new(synthetic::rules().unwrap());
    let changes = world
        .change_events(&synthetic::events(Sizes::for_events(400)))
        .unwrap();
    mesh.publish(&changes).await;
    mesh.wait_settled(QUIET).await;
    let before = effects(&mesh, &target).await;
    let (_, rows_before) = payroll::rows_digest(&target).await;
    assert!(before.exports > 0 && !before.target_writes.is_empty());

    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (stream, _, _) in INPUTS {
        let total = mesh.read_stream(stream).await.len();
        let stored = republish(&mesh, stream).await;
        assert_eq!(
            stored, total,
            "past the window JetStream stores every repeat in {stream} again"
        );
        mesh.wait_settled(QUIET).await;
    }
    assert_eq!(
        effects(&mesh, &target).await,
        before,
        "repeats of every stage's input had an effect"
    );

    let garbage = b"\xff\xfe not protobuf".to_vec();
    for (i, (_, subject, _)) in INPUTS.iter().enumerate() {
        let id = format!("poison-{i}");
        mesh.bus
            .publisher()
            .publish(mesh_bus::Outgoing::encode_raw(
                *subject,
                &id,
                "identitymesh.v1.Unknown",
                garbage.clone(),
            ))
            .await
            .unwrap();
    }
    // The stages go on after the poison: a new joiner still lands in the target.
    let mut more = world
        .change_events(&synthetic::events_from(
            Sizes {
                people: 5,
                movers: 0,
                phone_changes: 0,
                leavers: 0,
            },
            1_000,
        ))
        .unwrap();
    // Ids of their own: the world numbers its events from 1, as it numbered the first ones.
    for (i, change) in more.iter_mut().enumerate() {
        change.event_id =
            mesh_model::EventId::derive("stages-test", format!("more/{i}").as_bytes());
    }
    mesh.publish(&more).await;
    mesh.wait_settled(QUIET).await;
    let letters: Vec<(String, DeadLetter)> = mesh
        .read_stream(streams::DLQ)
        .await
        .into_iter()
        .map(|(subject, payload)| (subject, DeadLetter::from_wire(&payload).unwrap()))
        .collect();
    let mut stages: Vec<&str> = letters.iter().map(|(_, l)| l.stage.as_str()).collect();
    stages.sort_unstable();
    let mut expected: Vec<&str> = INPUTS
        .iter()
        .flat_map(|(_, _, s)| s.iter().copied())
        .collect();
    expected.sort_unstable();
    assert_eq!(stages, expected, "{letters:#?}");
    for (subject, letter) in &letters {
        assert_eq!(subject, &format!("mesh.dlq.{}", letter.stage));
        assert_eq!(letter.payload, garbage);
        assert!(
            letter.reason.contains("decod"),
            "{}: {}",
            letter.stage,
            letter.reason
        );
    }
    let joined: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM connector_objects WHERE external_id LIKE '10100_' \
         OR external_id LIKE 'guid-0000100_'",
    )
    .fetch_one(&mesh.pool)
    .await
    .unwrap();
    assert_eq!(joined, 10, "the changes behind the poison were processed");
    let (_, rows) = payroll::rows_digest(&target).await;
    assert_eq!(
        rows,
        rows_before + 5,
        "the joiners behind the poison were exported"
    );

    // What `meshctl dlq list` and `meshctl dlq replay` call.
    let url = mesh
        .run_query(vec![hex::encode(Sha256::digest(TOKEN.as_bytes()))])
        .await;
    let mut client = MeshQueryClient::connect(url).await.unwrap();
    for stage in &expected {
        let listed = dead_letters(&mut client, stage).await;
        assert_eq!(listed.len(), 1, "{stage}: {listed:#?}");
    }
    let provisioning = dead_letters(&mut client, consumers::PROVISIONING).await;
    let replayed = client
        .replay_dead_letter(tonic::Request::new(v1::ReplayDeadLetterRequest {
            dlq_sequence: provisioning[0].dlq_sequence,
            actor: "ops".to_owned(),
            reason: "to see it fail again".to_owned(),
        }))
        .await;
    assert_eq!(
        replayed.unwrap_err().code(),
        tonic::Code::Unauthenticated,
        "a replay needs the token"
    );
    let replayed = client
        .replay_dead_letter(authed(v1::ReplayDeadLetterRequest {
            dlq_sequence: provisioning[0].dlq_sequence,
            actor: "ops".to_owned(),
            reason: "to see it fail again".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.subject, "mesh.export.payroll");
    mesh.wait_settled(QUIET).await;
    assert_eq!(
        dead_letters(&mut client, consumers::PROVISIONING)
            .await
            .len(),
        2,
        "the replayed poison reached the provisioning agent and was dead-lettered again"
    );
    mesh.stop().await;
}
