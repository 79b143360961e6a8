//! A mesh for pipeline tests: a nats-server and a database of its own, the topology declared,
//! correlation and flow running either in this process or as `meshd` child processes that a
//! test can SIGKILL, and ways to publish change events, wait until the pipeline is quiet and
//! read the whole mesh state back as JSON (and as a digest).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_bus::{Bus, ConsumerSettings, Outgoing, Topology, topology::consumers};
use mesh_engine::correlate::JoinQuery;
use mesh_engine::{DisconnectorDirectory, Lineage, MeshDirectory, RetryQuery, RuleSet, join_key};
use mesh_model::{AttributeName, ChangeEvent};
use mesh_runtime::metrics::MetricsRegistry;
use mesh_sim::World;
use mesh_store::json::{attributes_from_json, attributes_to_json};
use mesh_testkit::{NatsServer, TestDatabase};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The stages of the pipeline under test.
pub const STAGES: [&str; 3] = [
    consumers::CORRELATION,
    consumers::FLOW,
    consumers::CORRELATION_REJOIN,
];

/// The consumers of the projection service, waited for by [`Mesh::wait_quiet`] while it runs.
pub const PROJECTION_STAGES: [&str; 2] = [consumers::PROJECTION, consumers::PROJECTION_RESULTS];

/// Projection settings for tests: quick retries and timer, a small default guard.
pub fn projection_settings(rules: &RuleSet) -> projection::ProjectionSettings {
    let config = mesh_runtime::config::MeshConfig::default();
    let mut settings = projection::ProjectionSettings::new(&config.projection, rules).unwrap();
    settings.max_attempts = 3;
    settings.retry_initial = Duration::from_millis(100);
    settings.retry_max = Duration::from_millis(400);
    settings.timer_interval = Duration::from_millis(100);
    settings
}

/// How long JetStream waits for an ack in these tests: short, so a killed service's batch
/// comes back quickly.
pub const ACK_WAIT: Duration = Duration::from_secs(2);

enum Running {
    Task(CancellationToken, JoinHandle<()>),
    Process(Child),
}

/// A mesh under test.
pub struct Mesh {
    pub nats: NatsServer,
    pub db: TestDatabase,
    pub pool: PgPool,
    pub bus: Bus,
    pub rules: Arc<RuleSet>,
    pub rules_path: PathBuf,
    pub topology: Topology,
    /// The environment the provisioning agent reads target secrets from (`passwordEnv`,
    /// `tokenEnv`), instead of the process's.
    pub target_env: BTreeMap<String, String>,
    /// The projection service's `max_attempts` in this mesh.
    pub max_attempts: u32,
    running: BTreeMap<&'static str, Running>,
    _rules_dir: Option<tempfile::TempDir>,
}

/// Consumer settings for tests: small waits, quick retries.
pub fn settings() -> ConsumerSettings {
    ConsumerSettings {
        batch_size: 256,
        batch_wait: Duration::from_millis(5),
        max_deliver: 3,
        backoff: vec![Duration::from_millis(50), Duration::from_millis(200)],
        workers: 1,
    }
}

impl Mesh {
    /// A mesh governed by the rules at `rules_path` (a file or directory).
    pub async fn start(rules_path: &Path) -> Self {
        Self::start_with(rules_path.to_owned(), None, ACK_WAIT).await
    }

    /// A mesh governed by the rule text `rules`.
    pub async fn start_with_text(rules: &str) -> Self {
        Self::start_with_text_and_ack_wait(rules, ACK_WAIT).await
    }

    /// A mesh governed by the rule text `rules` whose consumers wait `ack_wait` (benchmarks use
    /// production's 30 s: the provisioning agent gives its targets half of it per batch).
    pub async fn start_with_text_and_ack_wait(rules: &str, ack_wait: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yaml");
        std::fs::write(&path, rules).unwrap();
        Self::start_with(path, Some(dir), ack_wait).await
    }

    /// A mesh governed by the rule text `rules` whose database is `db` (one on a
    /// [`mesh_testkit::PostgresServer`] of the test's own, say).
    pub async fn start_in(rules: &str, db: TestDatabase) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yaml");
        std::fs::write(&path, rules).unwrap();
        Self::start_with_database(path, Some(dir), ACK_WAIT, db).await
    }

    async fn start_with(
        rules_path: PathBuf,
        dir: Option<tempfile::TempDir>,
        ack_wait: Duration,
    ) -> Self {
        let db = TestDatabase::create().await.unwrap();
        Self::start_with_database(rules_path, dir, ack_wait, db).await
    }

    async fn start_with_database(
        rules_path: PathBuf,
        dir: Option<tempfile::TempDir>,
        ack_wait: Duration,
        db: TestDatabase,
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,mesh_bus=info".to_owned()),
            )
            .with_test_writer()
            .try_init();
        let nats = NatsServer::start().await.unwrap();
        let pool = db.pool().await.unwrap();
        mesh_store::migrate(&pool).await.unwrap();
        // Version 1 in the database, as `meshd run` stores it: in-process and child-process
        // services stamp the same rule version.
        let rules = Arc::new(
            mesh_stage::rules::load_versioned_rules_from(&rules_path, &pool, "test")
                .await
                .unwrap(),
        );
        let bus = Bus::from_client(nats.connect().await.unwrap());
        let topology = Topology::mesh().with_ack_wait(ack_wait);
        topology.ensure(bus.jetstream()).await.unwrap();
        Self {
            nats,
            db,
            pool,
            bus,
            rules,
            rules_path,
            topology,
            target_env: BTreeMap::new(),
            max_attempts: 3,
            running: BTreeMap::new(),
            _rules_dir: dir,
        }
    }

    /// Runs `service` (`correlation` or `flow`) as a task of this process.
    pub fn run_in_process(&mut self, service: &'static str) {
        self.run_in_process_as(service, service);
    }

    /// Runs `service` as a task of this process, under `name` (to run two workers of one).
    pub fn run_in_process_as(&mut self, name: &'static str, service: &'static str) {
        let token = CancellationToken::new();
        let (rules, bus, pool, topology) = (
            self.rules.clone(),
            self.bus.clone(),
            self.pool.clone(),
            self.topology.clone(),
        );
        let env = self.target_env.clone();
        let max_attempts = self.max_attempts;
        let stop = token.clone();
        let handle = mesh_stage::RulesHandle::from_shared(rules.clone());
        tokio::spawn(mesh_stage::follow_rules(
            bus.clone(),
            pool.clone(),
            handle.clone(),
            "test",
            token.clone(),
        ));
        let task = tokio::spawn(async move {
            let metrics = MetricsRegistry::new();
            let result = match service {
                "correlation" => correlation::run_with_rules(
                    handle,
                    &bus,
                    pool,
                    &metrics,
                    &topology,
                    &settings(),
                    stop,
                )
                .await
                .map_err(|e| e.to_string()),
                "flow" => {
                    flow::run_with_rules(handle, &bus, pool, &metrics, &topology, &settings(), stop)
                        .await
                        .map_err(|e| e.to_string())
                }
                "projection" => projection::run_with_rules(
                    handle,
                    Arc::new(projection::ProjectionSettings {
                        max_attempts,
                        ..projection_settings(&rules)
                    }),
                    &bus,
                    pool,
                    &metrics,
                    &topology,
                    &settings(),
                    stop,
                )
                .await
                .map_err(|e| e.to_string()),
                "provisioning-agent" => {
                    let targets =
                        provisioning_agent::target::Targets::from_rules_with_env(&rules, &|name| {
                            env.get(name).cloned()
                        })
                        .unwrap();
                    provisioning_agent::run_with_targets(
                        Arc::new(targets),
                        &bus,
                        pool,
                        &metrics,
                        &topology,
                        &settings(),
                        stop,
                    )
                    .await
                    .map_err(|e| e.to_string())
                }
                other => Err(format!("no service {other}")),
            };
            if let Err(error) = result {
                panic!("{service} stopped: {error}");
            }
        });
        self.running.insert(name, Running::Task(token, task));
    }

    /// Runs the query service (MeshQuery, RuleAdmin) as a task of this process on a free
    /// loopback port, following the rule versions; returns its URL.
    pub async fn run_query(&mut self, token_sha256: Vec<String>) -> String {
        let mut config = mesh_runtime::config::MeshConfig::default();
        config.query.listen = "127.0.0.1:0".parse().unwrap();
        config.query.token_sha256 = token_sha256;
        let listener = query::bind(&config.query).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let token = CancellationToken::new();
        let handle = mesh_stage::RulesHandle::from_shared(self.rules.clone());
        tokio::spawn(mesh_stage::follow_rules(
            self.bus.clone(),
            self.pool.clone(),
            handle.clone(),
            "test",
            token.clone(),
        ));
        let query = query::Query::new(
            self.pool.clone(),
            self.bus.clone(),
            Arc::new(config),
            handle,
            &MetricsRegistry::new(),
        );
        let stop = token.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = query::serve(query, listener, stop).await {
                panic!("query stopped: {error}");
            }
        });
        self.running.insert("query", Running::Task(token, task));
        url
    }

    /// Waits until `stage` has re-evaluated its state under rule version `version`.
    pub async fn wait_swept(&self, stage: &str, version: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !mesh_store::rules::swept(&self.pool, stage, version)
            .await
            .unwrap()
        {
            assert!(
                Instant::now() < deadline,
                "{stage} has not swept rule version {version} after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `service` as a `meshd run <service>` child process, with the bus settings of
    /// [`settings`], the projection settings of [`projection_settings`] (and this mesh's
    /// `max_attempts`) and [`Mesh::target_env`] in its environment.
    pub fn run_process(&mut self, service: &'static str) {
        let child = Command::new(env!("CARGO_BIN_EXE_meshd"))
            .args(["run", service])
            .envs(&self.target_env)
            .env(
                "MESH_PROJECTION__MAX_ATTEMPTS",
                self.max_attempts.to_string(),
            )
            .env("MESH_PROJECTION__RETRY_INITIAL", "100ms")
            .env("MESH_PROJECTION__RETRY_MAX", "400ms")
            .env("MESH_PROJECTION__TIMER_INTERVAL", "100ms")
            .env("MESH_NATS__URL", self.nats.url())
            .env("MESH_POSTGRES__URL", self.db.url())
            .env("MESH_RULES__PATH", &self.rules_path)
            .env("MESH_ADMIN__LISTEN", "127.0.0.1:0")
            .env("MESH_BUS__ACK_WAIT", format!("{}s", ACK_WAIT.as_secs()))
            .env("MESH_BUS__BACKOFF", "[\"50ms\", \"200ms\"]")
            .env("MESH_BUS__MAX_DELIVER", "3")
            .env("MESH_TELEMETRY__LOG_FILTER", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.running.insert(service, Running::Process(child));
    }

    /// Kills `service` at once: SIGKILL for a process, an abort for a task.
    pub fn kill(&mut self, service: &'static str) {
        match self.running.remove(service) {
            Some(Running::Process(mut child)) => {
                child.kill().unwrap();
                child.wait().unwrap();
            }
            Some(Running::Task(_, task)) => task.abort(),
            None => panic!("{service} is not running"),
        }
    }

    /// The child processes that have exited since they were started, with how they ended
    /// (they are forgotten: [`Mesh::run_process`] starts them again).
    pub fn exited(&mut self) -> Vec<(&'static str, std::process::ExitStatus)> {
        let mut exited = Vec::new();
        for (name, running) in &mut self.running {
            if let Running::Process(child) = running
                && let Ok(Some(status)) = child.try_wait()
            {
                exited.push((*name, status));
            }
        }
        for (name, _) in &exited {
            self.running.remove(name);
        }
        exited
    }

    /// Waits until every export command has ended (confirmed or failed for good): none is
    /// queued, sent or waiting for its retry.
    pub async fn wait_exports_settled(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let open: Result<i64, _> = sqlx::query_scalar(
                "SELECT count(*) FROM exports WHERE status IN ('queued', 'sent')",
            )
            .fetch_one(&self.pool)
            .await;
            if open.as_ref().is_ok_and(|n| *n == 0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "export commands still open after {timeout:?}: {open:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the pipeline has settled: every stage drained, the outbox empty and every
    /// export command ended, checked again after the last confirmation (a confirmation can
    /// queue an object's next command).
    pub async fn wait_settled(&self, timeout: Duration) {
        for _ in 0..2 {
            self.wait_quiet(timeout).await;
            self.wait_exports_settled(timeout).await;
        }
        self.wait_quiet(timeout).await;
    }

    /// Stops every service gracefully.
    pub async fn stop(&mut self) {
        for (_, running) in std::mem::take(&mut self.running) {
            match running {
                Running::Task(token, task) => {
                    token.cancel();
                    let _ = task.await;
                }
                Running::Process(mut child) => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }

    /// Publishes change events to MESH_CHANGES, as a connector agent does.
    pub async fn publish(&self, events: &[ChangeEvent]) {
        publish(&self.bus, events).await;
    }

    /// Publishes raw bytes to MESH_CHANGES (a poison message).
    pub async fn publish_raw(&self, subject: &str, msg_id: &str, payload: &[u8]) {
        self.bus
            .publisher()
            .publish(Outgoing::encode_raw(
                subject,
                msg_id,
                "identitymesh.v1.ChangeEvent",
                payload.to_vec(),
            ))
            .await
            .unwrap();
    }

    /// Every message stored in `stream` now: (subject, payload).
    pub async fn read_stream(&self, stream: &str) -> Vec<(String, Vec<u8>)> {
        let mut stream = self.bus.jetstream().get_stream(stream).await.unwrap();
        let info = stream.info().await.unwrap();
        let mut messages = Vec::new();
        if info.state.messages == 0 {
            return messages;
        }
        for seq in info.state.first_sequence..=info.state.last_sequence {
            if let Ok(message) = stream.get_raw_message(seq).await {
                messages.push((message.subject.to_string(), message.payload.to_vec()));
            }
        }
        messages
    }

    async fn stage_is_quiet(&self, durable: &str) -> bool {
        let Some(spec) = self.topology.consumer(durable) else {
            return false;
        };
        let Ok(mut consumer) = self
            .bus
            .jetstream()
            .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                durable,
                spec.stream.as_str(),
            )
            .await
        else {
            return false;
        };
        match consumer.info().await {
            Ok(info) => info.num_pending == 0 && info.num_ack_pending == 0,
            Err(_) => false,
        }
    }

    async fn outbox_is_empty(&self) -> bool {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM stage_outbox")
            .fetch_one(&self.pool)
            .await
            .is_ok_and(|n| n == 0)
    }

    /// Waits until every stage has consumed and acked everything, twice in a row.
    pub async fn wait_quiet(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut quiet_rounds = 0;
        while quiet_rounds < 2 {
            // A batch is acked at commit and its outputs published from the outbox after, so
            // quiet means drained consumers and an empty outbox.
            let mut quiet = self.outbox_is_empty().await;
            let mut extra: Vec<&str> = Vec::new();
            if self.running.contains_key("projection") {
                extra.extend(PROJECTION_STAGES);
            }
            if self.running.contains_key("provisioning-agent") {
                extra.push(consumers::PROVISIONING);
            }
            for stage in STAGES.iter().chain(&extra) {
                quiet = quiet && self.stage_is_quiet(stage).await;
            }
            quiet_rounds = if quiet { quiet_rounds + 1 } else { 0 };
            assert!(
                Instant::now() < deadline,
                "the pipeline is not quiet after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(if quiet { 30 } else { 10 })).await;
        }
    }

    /// The whole mesh state as JSON, in a canonical order (see [`world_state`] for the shape).
    pub async fn state(&self) -> Json {
        let links: Vec<(uuid::Uuid, String, String, String)> = sqlx::query_as(
            r#"SELECT mesh_object, connector, object_type, external_id FROM mesh_links
               WHERE linked ORDER BY mesh_object, connector COLLATE "C", object_type COLLATE "C",
                 external_id COLLATE "C""#,
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        let mut links_of: BTreeMap<uuid::Uuid, Vec<String>> = BTreeMap::new();
        for (id, c, t, e) in links {
            links_of.entry(id).or_default().push(format!("{c}/{t}/{e}"));
        }
        let rows = sqlx::query(
            "SELECT id, object_type, anchor, version, lifecycle, attributes, lineage \
             FROM mesh_objects ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        let mesh: Vec<Json> = rows
            .iter()
            .map(|row| {
                let id: uuid::Uuid = row.get(0);
                let attributes = attributes_from_json(&row.get::<Json, _>(5)).unwrap();
                let lineage: BTreeMap<AttributeName, Lineage> =
                    serde_json::from_value(row.get(6)).unwrap();
                json!({
                    "id": id.to_string(),
                    "objectType": row.get::<String, _>(1),
                    "anchor": row.get::<Option<String>, _>(2),
                    "version": row.get::<i64, _>(3),
                    "lifecycle": row.get::<String, _>(4),
                    "attributes": attributes_to_json(&attributes),
                    "lineage": serde_json::to_value(&lineage).unwrap(),
                    "links": links_of.remove(&id).unwrap_or_default(),
                })
            })
            .collect();
        let objects: Vec<(String, String, String, String, Option<uuid::Uuid>)> = sqlx::query_as(
            r#"SELECT connector, object_type, external_id, state, mesh_object
               FROM connector_objects WHERE state <> 'deleted'
               ORDER BY connector COLLATE "C", object_type COLLATE "C", external_id COLLATE "C""#,
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        let objects: Vec<Json> = objects
            .into_iter()
            .map(|(c, t, e, state, mesh_object)| {
                json!({
                    "object": format!("{c}/{t}/{e}"),
                    "state": state,
                    "meshObject": mesh_object.map(|id| id.to_string()),
                })
            })
            .collect();
        json!({ "meshObjects": mesh, "connectorObjects": objects })
    }
}

/// Publishes change events to MESH_CHANGES on `bus`, in order, as a connector agent does.
pub async fn publish(bus: &Bus, events: &[ChangeEvent]) {
    let publisher = bus.publisher();
    for chunk in events.chunks(1000) {
        publisher.publish_all(change_messages(chunk)).await.unwrap();
    }
}

/// The messages a connector agent publishes for `events`: on `mesh.change.<connector>`, with
/// the event id as message id.
pub fn change_messages(events: &[ChangeEvent]) -> Vec<Outgoing> {
    events
        .iter()
        .map(|event| {
            Outgoing::event(
                format!("mesh.change.{}", event.object.connector),
                event.event_id.to_string(),
                event.clone(),
            )
        })
        .collect()
}

/// A gRPC request carrying `token` as its bearer token.
pub fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// The simulator's world in the shape of [`Mesh::state`].
pub fn world_state(world: &World) -> Json {
    let mut ids: Vec<_> = world.mesh_objects().keys().copied().collect();
    ids.sort();
    let mesh: Vec<Json> = ids
        .iter()
        .filter_map(|id| world.mesh_objects().get(id).map(|r| (id, r)))
        .map(|(id, record)| {
            let state = &record.state;
            json!({
                "id": id.to_string(),
                "objectType": state.object_type.as_str(),
                "anchor": state.anchor,
                "version": state.version,
                "lifecycle": state.lifecycle.as_str(),
                "attributes": attributes_to_json(&state.attributes),
                "lineage": serde_json::to_value(&state.lineage).unwrap(),
                "links": record.links.iter().map(|l| l.object.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut objects: Vec<_> = world.connector_objects().iter().collect();
    objects.sort_by(|a, b| a.0.cmp(b.0));
    let objects: Vec<Json> = objects
        .into_iter()
        .map(|(object, record)| {
            json!({
                "object": object.to_string(),
                "state": mesh_store::pipeline::state_name(&record.state),
                "meshObject": match &record.state {
                    mesh_model::JoinState::Joined { mesh_object, .. } => Some(mesh_object.to_string()),
                    _ => None,
                },
            })
        })
        .collect();
    json!({ "meshObjects": mesh, "connectorObjects": objects })
}

/// The SHA-256 of a state's canonical JSON text.
pub fn digest(state: &Json) -> String {
    let text = serde_json::to_vec(state).unwrap();
    Sha256::digest(&text)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The searches of the directory contract for the state of `world`: per mesh object, its anchor
/// and the values of its join-target attributes, plus a search that must find nothing; per
/// unjoined connector object, the values its join rules read.
pub fn contract_searches(world: &World) -> (Vec<JoinQuery>, Vec<RetryQuery>) {
    let rules = world.rules();
    let rule = mesh_model::RuleName::parse("contract").unwrap();
    let mut joins = Vec::new();
    for record in world.mesh_objects().values() {
        let state = &record.state;
        let mut keys: Vec<(AttributeName, String)> = state
            .attributes
            .iter()
            .filter(|(name, _)| rules.is_join_target(&state.object_type, name.key()))
            .filter_map(|(name, value)| Some((name.clone(), join_key(value)?)))
            .collect();
        if let Some(anchor) = &state.anchor {
            keys.push((
                AttributeName::parse("NoSuchAttribute").unwrap(),
                anchor.clone(),
            ));
        }
        keys.push((
            AttributeName::parse("EmployeeId").unwrap(),
            "no-such-value".to_owned(),
        ));
        for (target_attribute, key) in keys {
            joins.push(JoinQuery {
                rule: rule.clone(),
                object_type: state.object_type.clone(),
                target_attribute,
                key,
            });
        }
    }
    let mut retries = Vec::new();
    for (object, record) in world.connector_objects() {
        if !matches!(
            record.state,
            mesh_model::JoinState::Disconnector | mesh_model::JoinState::Ambiguous { .. }
        ) {
            continue;
        }
        for join_rule in rules.join_rules(&object.connector) {
            if !join_rule.applies_to(&object.object_type) {
                continue;
            }
            if let Some(key) = record
                .attributes
                .get(&join_rule.source_attribute)
                .and_then(join_key)
            {
                retries.push(RetryQuery {
                    rule: join_rule.name.clone(),
                    connector: object.connector.clone(),
                    object_type: object.object_type.clone(),
                    source_attribute: join_rule.source_attribute.clone(),
                    key,
                });
            }
        }
    }
    joins.sort();
    retries.sort_by(|a, b| (&a.connector, &a.key).cmp(&(&b.connector, &b.key)));
    (joins, retries)
}

/// Asks `directory` every search of the contract; one line per answer.
pub fn contract_answers(
    directory: &(impl MeshDirectory + DisconnectorDirectory),
    joins: &[JoinQuery],
    retries: &[RetryQuery],
) -> Vec<String> {
    let mut answers = Vec::new();
    for q in joins {
        answers.push(format!(
            "attribute {}.{} = {:?} -> {:?}",
            q.object_type,
            q.target_attribute,
            q.key,
            directory.find_by_attribute(&q.object_type, &q.target_attribute, &q.key)
        ));
        answers.push(format!(
            "anchor {} {:?} -> {:?}",
            q.object_type,
            q.key,
            directory.find_by_anchor(&q.object_type, &q.key)
        ));
    }
    for q in retries {
        answers.push(format!(
            "unjoined {}/{}.{} = {:?} -> {:?}",
            q.connector,
            q.object_type,
            q.source_attribute,
            q.key,
            directory.find_unjoined(&q.connector, &q.object_type, &q.source_attribute, &q.key)
        ));
    }
    answers
}
