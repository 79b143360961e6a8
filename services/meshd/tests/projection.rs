//! The projection service on a real nats-server and PostgreSQL, behind correlation and flow.
//! The test answers export commands itself, as a provisioning agent would over
//! MESH_EXPORTS/MESH_RESULTS, so that it can choose each answer: joiner, mover and leaver
//! commands; the grace timer; retries with backoff, one command at a time per object, and the
//! dead-letter stream; the mass-deletion guard and its approval. The real agent and targets are
//! in tests/provisioning.rs.

#[path = "support/mesh.rs"]
mod mesh;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::PullConsumer;
use chrono::Utc;
use futures::StreamExt as _;
use mesh::Mesh;
use mesh_bus::topology::{consumers, streams};
use mesh_bus::{Bus, Outgoing};
use mesh_model::{
    AttributeName, Attributes, ChangeEvent, ChangeOperation, ConnectorId, ConnectorObjectRef,
    DeadLetter, EventId, ExportCommand, ExportOperation, ExportResult, ExportStatus, ExternalId,
    ObjectType, Value,
};
use mesh_proto::WireEvent;
use mesh_store::projection::{self, ExportFilter, ExportState};

const QUIET: Duration = Duration::from_secs(60);

/// HR (authoritative) projected to a payroll table (contractors excluded, deleted on exit)
/// and to a directory (disabled, deleted two seconds later). Payroll's guard allows 3
/// deprovisions per minute.
const RULES: &str = r#"
kind: Connector
metadata: { name: hr }
spec: { type: hr-csv, objectTypes: [User], externalIdAttribute: employeeId,
        authoritative: true, inactiveWhen: 'status == "Terminated"' }
---
kind: Connector
metadata: { name: payroll }
spec: { type: postgres-target, objectTypes: [User],
        massDeletionGuard: { threshold: 3, window: 1m } }
---
kind: Connector
metadata: { name: directory }
spec: { type: ldap-target, objectTypes: [User] }
---
kind: JoinRule
metadata: { name: hr-by-employee-id }
spec: { connector: hr, sourceAttribute: employeeId, targetAttribute: EmployeeId,
        isAnchor: true, priority: 1 }
---
kind: FlowRule
metadata: { name: hr-employee-id }
spec: { connector: hr, direction: inbound, sourceAttribute: employeeId,
        targetAttribute: EmployeeId, confidence: 95 }
---
kind: FlowRule
metadata: { name: hr-name }
spec: { connector: hr, direction: inbound, sourceAttribute: name,
        targetAttribute: DisplayName, confidence: 95 }
---
kind: FlowRule
metadata: { name: hr-department }
spec: { connector: hr, direction: inbound, sourceAttribute: department,
        targetAttribute: Department, confidence: 95 }
---
kind: ProjectionRule
metadata: { name: employees-to-payroll }
spec: { targetConnector: payroll, objectType: User, filter: 'Department != "Contractors"',
        container: public.employees, deprovision: delete }
---
kind: ProjectionRule
metadata: { name: users-to-directory }
spec: { targetConnector: directory, objectType: User,
        container: 'ou=people,dc=corp,dc=example,dc=com',
        deprovision: disable-then-delete, gracePeriod: 2s }
"#;

fn hr_change(n: u32, name: &str, department: &str, status: &str, second: i64) -> ChangeEvent {
    let attributes: Attributes = [
        ("employeeId", format!("E{n:04}")),
        ("name", name.to_owned()),
        ("department", department.to_owned()),
        ("status", status.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (AttributeName::parse(k).unwrap(), Value::from(v)))
    .collect();
    ChangeEvent {
        event_id: EventId::derive("projection-test", format!("{n}/{second}").as_bytes()),
        object: ConnectorObjectRef {
            connector: ConnectorId::parse("hr").unwrap(),
            object_type: ObjectType::parse("User").unwrap(),
            external_id: ExternalId::parse(&format!("E{n:04}")).unwrap(),
        },
        operation: ChangeOperation::Upsert,
        attributes,
        // Change times move with the wall clock, so that grace deadlines do too.
        source_time: Utc::now() + chrono::Duration::milliseconds(second),
    }
}

/// Plays the provisioning agent: pulls export commands and answers them.
struct Agent {
    bus: Bus,
    consumer: PullConsumer,
}

impl Agent {
    async fn new(mesh: &Mesh) -> Self {
        let consumer = mesh
            .bus
            .jetstream()
            .get_consumer_from_stream(consumers::PROVISIONING, streams::EXPORTS)
            .await
            .unwrap();
        Self {
            bus: mesh.bus.clone(),
            consumer,
        }
    }

    /// Waits for the next `n` commands (failing after `timeout`), acks them, returns them with
    /// when they arrived.
    async fn take(&self, n: usize, timeout: Duration) -> Vec<(Instant, ExportCommand)> {
        let deadline = Instant::now() + timeout;
        let mut taken = Vec::new();
        while taken.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "only {} of {n} export commands arrived: {taken:#?}",
                taken.len()
            );
            let mut batch = self
                .consumer
                .fetch()
                .max_messages(n - taken.len())
                .expires(left.min(Duration::from_secs(1)))
                .messages()
                .await
                .unwrap();
            while let Some(message) = batch.next().await {
                let message = message.unwrap();
                let command = ExportCommand::from_wire(&message.payload).unwrap();
                message.ack().await.unwrap();
                taken.push((Instant::now(), command));
            }
        }
        taken
    }

    /// Asserts that no command arrives within `wait`.
    async fn none_within(&self, wait: Duration) {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .unwrap();
        if let Some(message) = batch.next().await {
            let command = ExportCommand::from_wire(&message.unwrap().payload).unwrap();
            panic!("no command was expected, got {command:#?}");
        }
    }

    async fn answer(&self, command: &ExportCommand, status: ExportStatus) {
        let result = ExportResult {
            idempotency_key: command.idempotency_key.clone(),
            target: command.target.clone(),
            operation: command.operation,
            mesh_object: command.mesh_object,
            mesh_object_version: command.mesh_object_version,
            status,
            target_object_id: Some(format!("{}-in-{}", command.mesh_object, command.target)),
            message: match status {
                ExportStatus::RetryableFailure => "503 Service Unavailable".to_owned(),
                ExportStatus::PermanentFailure => "400 invalidValue".to_owned(),
                _ => String::new(),
            },
            attempt: command.attempt,
            completed_at: Utc::now(),
        };
        self.bus
            .publisher()
            .publish(Outgoing::event(
                format!("mesh.result.{}", command.target),
                format!("{}/{}/result", command.idempotency_key, command.attempt),
                result,
            ))
            .await
            .unwrap();
    }

    /// Applies every command of `commands`.
    async fn apply_all(&self, commands: &[(Instant, ExportCommand)]) {
        for (_, command) in commands {
            self.answer(command, ExportStatus::Applied).await;
        }
    }
}

fn ops(commands: &[(Instant, ExportCommand)]) -> BTreeMap<(String, ExportOperation), usize> {
    let mut counted = BTreeMap::new();
    for (_, c) in commands {
        *counted
            .entry((c.target.to_string(), c.operation))
            .or_insert(0) += 1;
    }
    counted
}

fn expect(pairs: &[(&str, ExportOperation, usize)]) -> BTreeMap<(String, ExportOperation), usize> {
    pairs
        .iter()
        .map(|(t, o, n)| (((*t).to_owned(), *o), *n))
        .collect()
}

async fn start() -> (Mesh, Agent) {
    let mut mesh = Mesh::start_with_text(RULES).await;
    mesh.run_in_process("correlation");
    mesh.run_in_process("flow");
    mesh.run_in_process("projection");
    let agent = Agent::new(&mesh).await;
    (mesh, agent)
}

async fn exports(mesh: &Mesh, states: &[ExportState]) -> Vec<projection::ExportRow> {
    projection::list(
        &mesh.pool,
        &ExportFilter {
            states: states.to_vec(),
            limit: 10_000,
            ..ExportFilter::default()
        },
    )
    .await
    .unwrap()
}

/// Waits until no export is queued or sent.
async fn settled(mesh: &Mesh) {
    let deadline = Instant::now() + QUIET;
    loop {
        mesh.wait_quiet(QUIET).await;
        if exports(mesh, &[ExportState::Queued, ExportState::Sent])
            .await
            .is_empty()
        {
            return;
        }
        assert!(Instant::now() < deadline, "exports did not settle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiner_mover_and_leaver_become_the_rules_commands_and_the_grace_timer_deletes() {
    let (mut mesh, agent) = start().await;

    // Joiner: created in both targets with the shaped attributes.
    mesh.publish(&[hr_change(1, "Ada Lovelace", "Engineering", "Active", 0)])
        .await;
    let created = agent.take(2, QUIET).await;
    assert_eq!(
        ops(&created),
        expect(&[
            ("directory", ExportOperation::Create, 1),
            ("payroll", ExportOperation::Create, 1)
        ])
    );
    let payroll = &created
        .iter()
        .find(|(_, c)| c.target.as_str() == "payroll")
        .unwrap()
        .1;
    assert_eq!(payroll.container, "public.employees");
    assert_eq!(payroll.attempt, 1);
    assert_eq!(
        payroll
            .attributes
            .get(&AttributeName::parse("DisplayName").unwrap()),
        Some(&Value::from("Ada Lovelace"))
    );
    agent.apply_all(&created).await;
    settled(&mesh).await;

    // Mover into Contractors: deleted from payroll (its rule says delete), the directory
    // gets only what changed, with the target object id the create's result told.
    mesh.publish(&[hr_change(1, "Ada Lovelace", "Contractors", "Active", 1)])
        .await;
    let moved = agent.take(2, QUIET).await;
    assert_eq!(
        ops(&moved),
        expect(&[
            ("directory", ExportOperation::Update, 1),
            ("payroll", ExportOperation::Delete, 1)
        ])
    );
    let update = &moved
        .iter()
        .find(|(_, c)| c.target.as_str() == "directory")
        .unwrap()
        .1;
    assert_eq!(update.attributes.len(), 1, "{update:#?}");
    assert_eq!(
        update.target_object_id.as_deref(),
        Some(format!("{}-in-directory", update.mesh_object).as_str())
    );
    agent.apply_all(&moved).await;
    settled(&mesh).await;

    // Leaver, then back within the grace period: disable, then enable; no delete.
    mesh.publish(&[hr_change(1, "Ada Lovelace", "Contractors", "Terminated", 2)])
        .await;
    let left = agent.take(1, QUIET).await;
    assert_eq!(
        ops(&left),
        expect(&[("directory", ExportOperation::Disable, 1)])
    );
    agent.apply_all(&left).await;
    mesh.publish(&[hr_change(1, "Ada Lovelace", "Contractors", "Active", 3)])
        .await;
    let back = agent.take(1, QUIET).await;
    assert_eq!(
        ops(&back),
        expect(&[("directory", ExportOperation::Enable, 1)])
    );
    agent.apply_all(&back).await;
    agent.none_within(Duration::from_millis(2500)).await;

    // Leaver for good: disabled, then deleted by the grace timer once 2 s have passed.
    mesh.publish(&[hr_change(1, "Ada Lovelace", "Contractors", "Terminated", 4)])
        .await;
    let left = agent.take(1, QUIET).await;
    assert_eq!(
        ops(&left),
        expect(&[("directory", ExportOperation::Disable, 1)])
    );
    agent.apply_all(&left).await;
    // The deadline is stored, not held in memory: a projection service restarted within the
    // grace period still deletes.
    mesh.kill("projection");
    mesh.run_in_process("projection");
    // (Its consumers first wait out the dead instance's pulls; the timer does not.)
    let deleted = agent.take(1, QUIET).await;
    assert_eq!(
        ops(&deleted),
        expect(&[("directory", ExportOperation::Delete, 1)])
    );
    assert!(
        deleted[0].0 >= left[0].0 + Duration::from_millis(1500),
        "deleted before its grace period ended"
    );
    agent.apply_all(&deleted).await;
    settled(&mesh).await;

    let all = exports(&mesh, &[]).await;
    assert_eq!(all.len(), 8);
    assert!(
        all.iter().all(|e| e.state == ExportState::Confirmed),
        "{all:#?}"
    );
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_targets")
        .fetch_one(&mesh.pool)
        .await
        .unwrap();
    assert_eq!(held, 0, "nothing is left in any target");
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_gets_retries_with_backoff_one_command_at_a_time_then_the_dlq() {
    let (mut mesh, agent) = start().await;
    mesh.publish(&[hr_change(7, "Grace Hopper", "Contractors", "Active", 0)])
        .await;
    // Contractors are not in payroll: one create, for the directory.
    let first = agent.take(1, QUIET).await;
    let create = first[0].1.clone();
    assert_eq!(create.operation, ExportOperation::Create);
    // A change behind the failing create must wait for it.
    mesh.publish(&[hr_change(7, "Grace B. Hopper", "Contractors", "Active", 1)])
        .await;
    mesh.wait_quiet(QUIET).await;

    let mut sends = vec![first[0].0];
    agent.answer(&create, ExportStatus::RetryableFailure).await;
    for attempt in 2..=3 {
        let again = agent.take(1, QUIET).await;
        let (at, command) = &again[0];
        assert_eq!(command.operation, ExportOperation::Create, "{command:#?}");
        assert_eq!(command.idempotency_key, create.idempotency_key);
        assert_eq!(command.attempt, attempt);
        sends.push(*at);
        agent.answer(command, ExportStatus::RetryableFailure).await;
    }
    // Backoff: 100 ms, then 200 ms (tests' settings).
    assert!(
        sends[1] - sends[0] >= Duration::from_millis(90),
        "{sends:?}"
    );
    assert!(
        sends[2] - sends[1] >= Duration::from_millis(190),
        "{sends:?}"
    );

    // The third failure is the last (max_attempts 3): the create is dead-lettered, and only
    // then is the update behind it sent.
    let update = agent.take(1, QUIET).await;
    assert_eq!(update[0].1.operation, ExportOperation::Update);
    agent
        .answer(&update[0].1, ExportStatus::PermanentFailure)
        .await;
    settled(&mesh).await;

    let letters: Vec<DeadLetter> = mesh
        .read_stream(streams::DLQ)
        .await
        .into_iter()
        .map(|(_, payload)| DeadLetter::from_wire(&payload).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "{letters:#?}");
    let failed_create = ExportCommand::from_wire(&letters[0].payload).unwrap();
    assert_eq!(failed_create.idempotency_key, create.idempotency_key);
    assert_eq!(letters[0].attempts, 3);
    assert!(letters[0].reason.contains("503"), "{}", letters[0].reason);
    assert!(letters[1].reason.contains("400"), "{}", letters[1].reason);
    let failed = exports(&mesh, &[ExportState::Failed]).await;
    assert_eq!(failed.len(), 2);
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_holds_a_mass_deletion_and_releases_it_on_approval() {
    let (mut mesh, agent) = start().await;
    let people: Vec<u32> = (100..106).collect();
    let joiners: Vec<ChangeEvent> = people
        .iter()
        .map(|n| hr_change(*n, "Someone", "Engineering", "Active", 0))
        .collect();
    mesh.publish(&joiners).await;
    let created = agent.take(2 * people.len(), QUIET).await;
    agent.apply_all(&created).await;
    settled(&mesh).await;

    // Six leavers at once: payroll's guard lets 3 deletes through and holds 3; the directory
    // (default guard) disables all six.
    let leavers: Vec<ChangeEvent> = people
        .iter()
        .map(|n| hr_change(*n, "Someone", "Engineering", "Terminated", 1))
        .collect();
    mesh.publish(&leavers).await;
    let deprovisioned = agent.take(9, QUIET).await;
    assert_eq!(
        ops(&deprovisioned),
        expect(&[
            ("directory", ExportOperation::Disable, 6),
            ("payroll", ExportOperation::Delete, 3)
        ])
    );
    agent.apply_all(&deprovisioned).await;
    // The directory's grace deletes flow; payroll's held deletes do not.
    let deleted = agent.take(6, Duration::from_secs(10)).await;
    assert_eq!(
        ops(&deleted),
        expect(&[("directory", ExportOperation::Delete, 6)])
    );
    agent.apply_all(&deleted).await;
    settled(&mesh).await;
    agent.none_within(Duration::from_millis(300)).await;
    let held = exports(&mesh, &[ExportState::Held]).await;
    assert_eq!(held.len(), 3, "{held:#?}");
    assert!(held.iter().all(|e| e.target == "payroll"));
    let guards = projection::held_guards(&mesh.pool).await.unwrap();
    assert_eq!(guards.len(), 1);
    assert_eq!(guards[0].0, "payroll");
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE kind = 'guard-held'")
        .fetch_one(&mesh.pool)
        .await
        .unwrap();
    assert_eq!(audit, 1);

    // Approval (what `meshctl exports approve payroll` does) releases them.
    assert_eq!(
        projection::approve(&mesh.pool, "payroll").await.unwrap(),
        Some(3)
    );
    let released = agent.take(3, QUIET).await;
    assert_eq!(
        ops(&released),
        expect(&[("payroll", ExportOperation::Delete, 3)])
    );
    agent.apply_all(&released).await;
    settled(&mesh).await;
    let all = exports(&mesh, &[]).await;
    assert!(
        all.iter().all(|e| e.state == ExportState::Confirmed),
        "{all:#?}"
    );
    assert!(
        projection::held_guards(&mesh.pool)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        projection::approve(&mesh.pool, "payroll").await.unwrap(),
        None,
        "a guard that is not holding has nothing to approve"
    );
    mesh.stop().await;
}
