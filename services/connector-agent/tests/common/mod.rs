//! Shared harness: a nats-server, a fresh database, a running agent on port 0, a tiny HTTP
//! client, and readers of MESH_CHANGES.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use connector_agent::Agent;
use mesh_bus::{Bus, Topology};
use mesh_model::ChangeEvent;
use mesh_proto::WireEvent;
use mesh_runtime::config::MeshConfig;
use mesh_runtime::metrics::MetricsRegistry;
use mesh_testkit::{NatsServer, TestDatabase};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token-0123456789";
pub const IMPORT_TOKEN: &str = "import-token-0123456789";
/// The bearer token of the `entra` endpoint.
pub const OTHER_TOKEN: &str = "other-token";

pub fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub struct Harness {
    pub nats: NatsServer,
    pub db: TestDatabase,
    pub pool: PgPool,
    pub bus: Bus,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), connector_agent::AgentError>>,
    pub dir: tempfile::TempDir,
    pub metrics: MetricsRegistry,
}

/// Starts everything; `extra` is appended to the `[connector_agent]` TOML (after the SCIM
/// endpoints, so it can add `[[connector_agent.hr]]` feeds).
pub async fn start(extra: &str) -> Harness {
    start_with("", extra).await
}

/// Like [`start`], with `settings` (keys of the `[connector_agent]` table itself, such as
/// `rate_limit_per_second = 1`) written into that table.
pub async fn start_with(settings: &str, extra: &str) -> Harness {
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
    Topology::mesh().ensure(bus.jetstream()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh.toml");
    let mut file = std::fs::File::create(&path).unwrap();
    write!(
        file,
        r#"
[connector_agent]
listen = "127.0.0.1:0"
relay_interval = "200ms"
import_token_sha256 = ["{}"]
{settings}

[[connector_agent.scim]]
connector = "okta"
token_sha256 = ["{}"]

[[connector_agent.scim]]
connector = "entra"
token_sha256 = ["{}"]
{extra}
"#,
        sha(IMPORT_TOKEN),
        sha(TOKEN),
        sha(OTHER_TOKEN)
    )
    .unwrap();
    let config = MeshConfig::load(Some(&path)).unwrap();
    let metrics = MetricsRegistry::new();
    let agent = Agent::build(&config.connector_agent, &bus, pool.clone(), &metrics)
        .await
        .unwrap();
    let addr = agent.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.run_until_stopped(shutdown.clone()));
    Harness {
        nats,
        db,
        pool,
        bus,
        addr,
        shutdown,
        task,
        dir,
        metrics,
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Sends one HTTP/1.1 request and reads the whole response.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A SCIM request with the test token.
pub async fn scim(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> Reply {
    scim_as(addr, TOKEN, method, path, body, extra_headers).await
}

/// A SCIM request with bearer `token`.
pub async fn scim_as(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> Reply {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: scim.test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n"
    );
    for (k, v) in extra_headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    match body {
        Some(b) => {
            if !extra_headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                request.push_str("Content-Type: application/scim+json\r\n");
            }
            request.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len()));
        }
        None => request.push_str("\r\n"),
    }
    raw(addr, request.as_bytes()).await
}

/// Creates a resource with the test token; panics unless the answer is 201. Returns the body.
pub async fn create(addr: SocketAddr, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let r = scim(addr, "POST", path, Some(&body.to_string()), &[]).await;
    assert_eq!(r.status, 201, "POST {path}: {}", r.body);
    r.json()
}

pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads every message of MESH_CHANGES as (Nats-Msg-Id, subject, event).
pub async fn changes(bus: &Bus) -> Vec<(String, String, ChangeEvent)> {
    let stream = bus.jetstream().get_stream("MESH_CHANGES").await.unwrap();
    let info = stream.get_info().await.unwrap();
    let mut out = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if info.state.messages == 0 {
            break;
        }
        let Ok(msg) = stream.get_raw_message(seq).await else {
            continue;
        };
        let id = msg
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let event = ChangeEvent::from_wire(&msg.payload).unwrap();
        out.push((id, msg.subject.to_string(), event));
    }
    out
}

pub async fn wait_for_changes(bus: &Bus, n: usize) -> Vec<(String, String, ChangeEvent)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let c = changes(bus).await;
        if c.len() >= n || std::time::Instant::now() > deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Change events in the outbox, not yet published.
pub async fn outbox_events(pool: &PgPool) -> i64 {
    sqlx::query_as::<_, (i64,)>("SELECT coalesce(sum(events), 0)::bigint FROM connector_outbox")
        .fetch_one(pool)
        .await
        .unwrap()
        .0
}

/// Waits until the relay has published everything in the outbox.
pub async fn wait_for_outbox_drained(pool: &PgPool) {
    mesh_testkit::assert_eventually!(Duration::from_secs(30), outbox_events(pool).await == 0);
}
