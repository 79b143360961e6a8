//! `meshctl decide` against a risk service running in this test process, on a real
//! nats-server, PostgreSQL and Redis, with the reference policy of examples/rules. The
//! identities are written into the risk service's Redis state as its lifecycle consumer would.

use std::process::{Command, Output};

use chrono::{Duration, Utc};
use mesh_bus::{Bus, ConsumerSettings, Topology};
use mesh_model::{AttributeName, Attributes, LifecycleState, Value};
use mesh_runtime::config::RiskConfig;
use mesh_testkit::{NatsServer, RedisPrefix, TestDatabase};
use risk::state::ObjectRecord;

const TOKEN: &str = "meshctl-decide-token";

fn rules() -> mesh_engine::RuleSet {
    mesh_stage::load_rules(&mesh_testkit::workspace_root().join("examples/rules")).unwrap()
}

fn user(id: &str, name: &str, lifecycle: LifecycleState) -> ObjectRecord {
    let mut attributes = Attributes::new();
    attributes.insert(
        AttributeName::parse("SamAccountName").unwrap(),
        Value::from(name),
    );
    ObjectRecord {
        id: id.to_owned(),
        object_type: "User".to_owned(),
        lifecycle,
        version: 1,
        joined_at: Utc::now() - Duration::days(90),
        attributes,
    }
}

fn meshctl(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshctl"));
    command
        .arg("decide")
        .args(args)
        .env("MESHCTL_RISK_URL", url)
        .env_remove("MESHCTL_RISK_TOKEN");
    if let Some(token) = token {
        command.env("MESHCTL_RISK_TOKEN", token);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decide_prints_the_decision_and_why() {
    let nats = NatsServer::start().await.unwrap();
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    mesh_store::migrate(&pool).await.unwrap();
    let redis = RedisPrefix::new();
    let bus = Bus::from_client(nats.connect().await.unwrap());
    let topology = Topology::mesh();
    topology.ensure(bus.jetstream()).await.unwrap();

    let rules = rules();
    let mut config = RiskConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.key_prefix = redis.prefix().to_owned();
    config.token_sha256 = vec![hex_digest(TOKEN)];
    let service = risk::LocalRisk::start(
        &rules,
        config,
        redis.url(),
        &bus,
        pool.clone(),
        &topology,
        ConsumerSettings::default(),
    )
    .await
    .unwrap();
    let indexed = service.risk.policy().identity.subject_attributes.clone();
    service
        .risk
        .state()
        .write_objects(
            &indexed,
            &[
                user(
                    "7f1c9a52-1d6e-4c2a-9a44-0b5e5f2a1001",
                    "aturing",
                    LifecycleState::Active,
                ),
                user(
                    "7f1c9a52-1d6e-4c2a-9a44-0b5e5f2a1002",
                    "ghopper",
                    LifecycleState::Leaver,
                ),
            ],
            &[],
        )
        .await
        .unwrap();
    let url = format!("http://{}", service.addr);

    let url2 = url.clone();
    let (allow, leaver, json, refused, unreachable, bad_context) =
        tokio::task::spawn_blocking(move || {
            (
                meshctl(
                    &url2,
                    Some(TOKEN),
                    &[
                        "--subject",
                        "aturing",
                        "--resource",
                        "app:wiki",
                        "--context",
                        "userAgent=curl",
                    ],
                ),
                meshctl(
                    &url2,
                    Some(TOKEN),
                    &[
                        "--subject",
                        "ghopper",
                        "--resource",
                        "app:payroll",
                        "--sensitivity",
                        "high",
                    ],
                ),
                meshctl(
                    &url2,
                    Some(TOKEN),
                    &[
                        "--subject",
                        "ghopper",
                        "--resource",
                        "app:payroll",
                        "-o",
                        "json",
                    ],
                ),
                meshctl(
                    &url2,
                    None,
                    &["--subject", "aturing", "--resource", "app:wiki"],
                ),
                meshctl(
                    "http://127.0.0.1:1",
                    Some(TOKEN),
                    &["--subject", "aturing", "--resource", "app:wiki"],
                ),
                meshctl(
                    &url2,
                    Some(TOKEN),
                    &[
                        "--subject",
                        "aturing",
                        "--resource",
                        "app:wiki",
                        "--context",
                        "nothing",
                    ],
                ),
            )
        })
        .await
        .unwrap();

    assert!(allow.status.success(), "{allow:?}");
    let out = text(&allow.stdout);
    assert!(out.starts_with("ALLOW  aturing read on app:wiki"), "{out}");
    assert!(
        out.contains("policy default, risk score 0/100 (low)"),
        "{out}"
    );

    assert!(leaver.status.success(), "{leaver:?}");
    let out = text(&leaver.stdout);
    assert!(
        out.starts_with("DENY  ghopper read on app:payroll"),
        "{out}"
    );
    assert!(
        out.contains("policy leaver, risk score 100/100 (critical)"),
        "{out}"
    );
    assert!(
        out.contains("the identity has left the organisation"),
        "{out}"
    );
    assert!(out.contains("+100"), "{out}");

    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["decision"], "deny");
    assert_eq!(doc["policy"], "leaver");
    assert_eq!(doc["reasons"][0]["code"], "leaver");
    assert_eq!(doc["degraded"], false);

    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    assert!(err.contains("MESHCTL_RISK_TOKEN"), "{err}");

    assert_eq!(unreachable.status.code(), Some(1));
    let err = text(&unreachable.stderr);
    assert!(
        err.contains("cannot reach the risk service at http://127.0.0.1:1"),
        "{err}"
    );
    assert!(err.contains("meshd run risk"), "{err}");

    assert_eq!(bad_context.status.code(), Some(2), "a usage error");
    assert!(text(&bad_context.stderr).contains("name=value"));

    service.stop().await.unwrap();
}

fn hex_digest(token: &str) -> String {
    use std::fmt::Write as _;
    let digest = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes());
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
