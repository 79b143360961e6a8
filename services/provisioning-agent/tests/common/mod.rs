//! Shared test harness: export commands, rules with target connectors, and the real servers
//! behind each target (the connector agent's SCIM 2.0 endpoint, a PostgreSQL database, a
//! slapd from the test kit).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;

use chrono::{TimeZone as _, Utc};
use mesh_bus::Bus;
use mesh_engine::RuleSet;
use mesh_engine::load::SourceFile;
use mesh_model::{
    AttributeName, Attributes, ConnectorId, EventId, ExportCommand, ExportOperation,
    IdempotencyKey, MeshObjectId, ObjectType, RuleName, Value,
};
use mesh_runtime::config::MeshConfig;
use mesh_runtime::metrics::MetricsRegistry;
use mesh_testkit::{NatsServer, TestDatabase};
use provisioning_agent::target::{Outcome, Request, TargetEntry, Targets};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

/// The bearer token of the SCIM endpoint the tests provision.
pub const SCIM_TOKEN: &str = "provisioning-test-token-0123456789";
/// The connector agent's inbound SCIM connector that serves as the SCIM target.
pub const SCIM_ENDPOINT: &str = "scim-app";

pub fn attrs(pairs: &[(&str, Value)]) -> Attributes {
    pairs
        .iter()
        .map(|(n, v)| (AttributeName::parse(n).unwrap(), v.clone()))
        .collect()
}

/// A mesh object id from a small number.
pub fn mesh_object(n: u32) -> MeshObjectId {
    MeshObjectId::parse(&format!("0190d1f2-7c1a-7b3e-9f00-{n:012}")).unwrap()
}

/// An export command as the projection service would send it.
pub fn command(
    target: &str,
    operation: ExportOperation,
    object: MeshObjectId,
    version: u64,
    container: &str,
    attributes: Attributes,
) -> ExportCommand {
    let target = ConnectorId::parse(target).unwrap();
    ExportCommand {
        idempotency_key: IdempotencyKey::new(object, &target, version, operation),
        target,
        operation,
        container: container.to_owned(),
        object_type: ObjectType::parse("User").unwrap(),
        attributes,
        target_object_id: None,
        mesh_object: object,
        mesh_object_version: version,
        rule: RuleName::parse("test-projection").unwrap(),
        cause: EventId::derive("test", format!("{object}/{version}").as_bytes()),
        issued_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        attempt: 1,
    }
}

/// Applies `command` to `entry`'s target with `known` as the target object id.
pub async fn apply(entry: &TargetEntry, command: &ExportCommand, known: Option<&str>) -> Outcome {
    entry
        .target
        .apply(Request {
            command,
            target_object_id: known,
        })
        .await
}

/// The HR connector that makes `User` a mesh object type.
const HR: &str = "apiVersion: identitymesh.io/v1
kind: Connector
metadata: { name: hr }
spec: { type: hr-csv, objectTypes: [User], externalIdAttribute: employeeId, authoritative: true }
";

/// Loads rules from YAML text, with an HR connector importing users.
pub fn rules(yaml: &str) -> RuleSet {
    mesh_engine::load(&[
        SourceFile::new("hr.yaml", HR),
        SourceFile::new("test.yaml", yaml),
    ])
    .unwrap_or_else(|e| panic!("rules do not load: {e:?}"))
}

/// A connector document and a projection rule that exports to it.
pub fn target_yaml(name: &str, spec: &str, container: &str) -> String {
    format!(
        "apiVersion: identitymesh.io/v1
kind: Connector
metadata: {{ name: {name} }}
spec:
  objectTypes: [User]
{spec}
---
apiVersion: identitymesh.io/v1
kind: ProjectionRule
metadata: {{ name: users-to-{name} }}
spec: {{ targetConnector: {name}, objectType: User, container: '{container}' }}
---
"
    )
}

/// Builds the targets of `yaml`, with `env` as the environment.
pub fn targets(yaml: &str, env: &[(&str, &str)]) -> Targets {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Targets::from_rules_with_env(&rules(yaml), &|name| env.get(name).cloned()).unwrap()
}

/// A closed loopback port: bound a moment ago and released.
pub fn closed_port() -> u16 {
    mesh_testkit::free_port().unwrap()
}

// --- SCIM: the connector agent's SCIM 2.0 endpoint ---------------------------------------------

/// A connector agent serving SCIM 2.0 for `scim-app` with [`SCIM_TOKEN`].
pub struct ScimServer {
    /// The servers it owns, when it was not given a bus and a database.
    pub owned: Option<(NatsServer, TestDatabase)>,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), connector_agent::AgentError>>,
    pub dir: tempfile::TempDir,
}

impl ScimServer {
    /// Starts the agent on its own nats-server and database.
    pub async fn start() -> Self {
        Self::start_owned(0).await
    }

    /// Starts the agent on its own nats-server and database, listening on `port` (0: any),
    /// so that a target configured with that port before can find it "back up".
    pub async fn start_owned(port: u16) -> Self {
        let nats = NatsServer::start().await.unwrap();
        let db = TestDatabase::create().await.unwrap();
        let pool = db.pool().await.unwrap();
        mesh_store::migrate(&pool).await.unwrap();
        let bus = Bus::connect(&mesh_bus::ConnectOptions {
            url: nats.url(),
            ..Default::default()
        })
        .await
        .unwrap();
        mesh_bus::Topology::mesh()
            .ensure(bus.jetstream())
            .await
            .unwrap();
        let mut server = Self::start_on_port(&bus, pool, port).await;
        server.owned = Some((nats, db));
        server
    }

    /// Starts the agent on `bus` and a migrated database (its change events go to the bus's
    /// MESH_CHANGES, which nothing reads in these tests).
    pub async fn start_on(bus: &Bus, pool: sqlx::PgPool) -> Self {
        Self::start_on_port(bus, pool, 0).await
    }

    async fn start_on_port(bus: &Bus, pool: sqlx::PgPool, port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.toml");
        let mut file = std::fs::File::create(&path).unwrap();
        write!(
            file,
            r#"
[connector_agent]
listen = "127.0.0.1:{port}"

[[connector_agent.scim]]
connector = "{SCIM_ENDPOINT}"
token_sha256 = ["{}"]
"#,
            hex::encode(Sha256::digest(SCIM_TOKEN.as_bytes()))
        )
        .unwrap();
        let config = MeshConfig::load(Some(&path)).unwrap();
        let agent = connector_agent::Agent::build(
            &config.connector_agent,
            bus,
            pool,
            &MetricsRegistry::new(),
        )
        .await
        .unwrap();
        let addr = agent.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(agent.run_until_stopped(shutdown.clone()));
        Self {
            owned: None,
            addr,
            shutdown,
            task,
            dir,
        }
    }

    /// The base URL a SCIM target is configured with.
    pub fn base_url(&self) -> String {
        format!("http://{}/scim/v2/{SCIM_ENDPOINT}", self.addr)
    }

    /// A request to the endpoint with the token; returns the status and the JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base_url()))
            .bearer_auth(SCIM_TOKEN);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, json)
    }

    /// Every user with `user_name`.
    pub async fn users_named(&self, user_name: &str) -> Vec<serde_json::Value> {
        let filter = format!("userName eq \"{user_name}\"");
        let mut url = reqwest::Url::parse(&format!("{}/Users", self.base_url())).unwrap();
        url.query_pairs_mut().append_pair("filter", &filter);
        let (status, list) = self
            .request(
                reqwest::Method::GET,
                &format!("/Users?{}", url.query().unwrap()),
                None,
            )
            .await;
        assert_eq!(status, 200, "{list}");
        list["Resources"].as_array().cloned().unwrap_or_default()
    }

    /// Every user of the endpoint.
    pub async fn user_count(&self) -> u64 {
        let (status, list) = self
            .request(reqwest::Method::GET, "/Users?count=0", None)
            .await;
        assert_eq!(status, 200, "{list}");
        list["totalResults"].as_u64().unwrap()
    }

    /// The user with `id`, or none when it does not exist.
    pub async fn user(&self, id: &str) -> Option<serde_json::Value> {
        let (status, body) = self
            .request(reqwest::Method::GET, &format!("/Users/{id}"), None)
            .await;
        match status {
            200 => Some(body),
            404 => None,
            other => panic!("GET /Users/{id}: {other} {body}"),
        }
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
