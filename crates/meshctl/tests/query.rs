//! `meshctl lineage`, `get object`, `review list` and `find` against a query service running
//! in this test process, on a real PostgreSQL (and a nats-server for its bus). The mesh state
//! is written through the store's own repositories, resolved by the engine as flow resolves it.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mesh_bus::{Bus, Topology};
use mesh_engine::{MeshObjectState, NewMeshObject, SourceFile, StoredSource};
use mesh_model::{
    AttributeName, Attributes, ConnectorId, ConnectorObjectRef, EventId, ExternalId, JoinState,
    MeshObjectId, ObjectType, Value,
};
use mesh_store::pipeline::{self, ConnectorObjectWrite, StoredConnectorObject, StoredLink};
use mesh_testkit::{NatsServer, TestDatabase};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "meshctl-query-token";

const RULES: &str = r#"
kind: Connector
metadata: { name: hr }
spec: { type: hr-csv, objectTypes: [User], externalIdAttribute: employeeId, authoritative: true }
---
kind: Connector
metadata: { name: directory }
spec: { type: ldap, objectTypes: [User], externalIdAttribute: objectGUID }
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
metadata: { name: hr-department }
spec: { connector: hr, direction: inbound, sourceAttribute: department,
        targetAttribute: Department, confidence: 90 }
---
kind: FlowRule
metadata: { name: directory-department }
spec: { connector: directory, direction: inbound, sourceAttribute: department,
        targetAttribute: Department, confidence: 70 }
"#;

const ID: &str = "7f1c9a52-1d6e-4c2a-9a44-0b5e5f2a1001";

fn object(connector: &str, id: &str) -> ConnectorObjectRef {
    ConnectorObjectRef {
        connector: ConnectorId::parse(connector).unwrap(),
        object_type: ObjectType::parse("User").unwrap(),
        external_id: ExternalId::parse(id).unwrap(),
    }
}

fn attributes(pairs: &[(&str, &str)]) -> Attributes {
    pairs
        .iter()
        .map(|(n, v)| (AttributeName::parse(n).unwrap(), Value::from(*v)))
        .collect()
}

fn at(n: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600 + n, 0).unwrap()
}

/// One mesh object joined by an HR record and a directory account that disagree on the
/// department, and one directory account no rule matched.
async fn seed(pool: &sqlx::PgPool, rules: &mesh_engine::RuleSet) {
    let id = MeshObjectId::parse(ID).unwrap();
    let mut conn = pool.acquire().await.unwrap();
    pipeline::insert_mesh_objects(
        &mut conn,
        &[NewMeshObject {
            id,
            object_type: ObjectType::parse("User").unwrap(),
            anchor: "1001".to_owned(),
            anchor_attribute: AttributeName::parse("EmployeeId").unwrap(),
        }],
    )
    .await
    .unwrap();
    let links: BTreeMap<ConnectorObjectRef, StoredLink> = [
        (
            object("hr", "1001"),
            attributes(&[("employeeId", "1001"), ("department", "Sales")]),
            1,
        ),
        (
            object("directory", "g-1001"),
            attributes(&[("employeeID", "1001"), ("department", "Marketing")]),
            2,
        ),
    ]
    .into_iter()
    .map(|(object, attributes, n): (_, _, i64)| {
        let link = StoredLink {
            linked: true,
            attributes,
            event: EventId::derive("meshctl-query", &n.to_be_bytes()),
            event_time: at(n),
            source_sequence: n as u64,
        };
        (object, link)
    })
    .collect();
    let rows: Vec<_> = links.iter().map(|(o, l)| (id, o, l)).collect();
    pipeline::save_links(&mut conn, &rows).await.unwrap();
    let sources: Vec<StoredSource<'_>> = links
        .iter()
        .map(|(object, link)| StoredSource {
            object,
            attributes: &link.attributes,
            event: link.event,
            event_time: link.event_time,
        })
        .collect();
    let before = MeshObjectState::new(id, ObjectType::parse("User").unwrap(), Some("1001".into()));
    let resolved = mesh_engine::resolve_from_sources(
        rules,
        &before,
        &sources,
        &BTreeMap::new(),
        EventId::derive("meshctl-query", b"cause"),
        at(2),
    );
    pipeline::save_mesh_objects(&mut conn, &[&resolved.update.after], 1)
        .await
        .unwrap();
    // The join-key index flow keeps for join targets.
    pipeline::index_mesh_attributes(
        &mut conn,
        &[pipeline::AttributeIndexChange {
            mesh_object: id,
            object_type: ObjectType::parse("User").unwrap(),
            name: "employeeid".to_owned(),
            key: Some("1001".to_owned()),
        }],
    )
    .await
    .unwrap();
    let stray = object("directory", "g-9001");
    let stored = StoredConnectorObject {
        attributes: attributes(&[("employeeID", "9001")]),
        join: JoinState::Disconnector,
        last_event: EventId::derive("meshctl-query", b"stray"),
        last_event_time: at(3),
        last_sequence: 3,
    };
    pipeline::save_connector_objects(
        &mut conn,
        &[ConnectorObjectWrite {
            object: &stray,
            stored: &stored,
            rule_version: rules.version(),
        }],
    )
    .await
    .unwrap();
}

fn meshctl(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshctl"));
    command
        .args(args)
        .env("MESHCTL_QUERY_URL", url)
        .env_remove("MESHCTL_QUERY_TOKEN");
    if let Some(token) = token {
        command.env("MESHCTL_QUERY_TOKEN", token);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn hex_digest(token: &str) -> String {
    <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_review_and_find_through_the_query_service() {
    let nats = NatsServer::start().await.unwrap();
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    mesh_store::migrate(&pool).await.unwrap();
    let bus = Bus::from_client(nats.connect().await.unwrap());
    Topology::mesh().ensure(bus.jetstream()).await.unwrap();
    let rules = mesh_engine::load(&[SourceFile::new("rules.yaml", RULES)]).unwrap();
    seed(&pool, &rules).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = mesh_runtime::config::MeshConfig::default();
    config.query.token_sha256 = vec![hex_digest(TOKEN)];
    let stop = CancellationToken::new();
    tokio::spawn(query::serve(
        query::Query::new(
            pool.clone(),
            bus,
            Arc::new(config),
            mesh_stage::RulesHandle::new(rules),
            &mesh_runtime::metrics::MetricsRegistry::new(),
        ),
        listener,
        stop.clone(),
    ));

    let url2 = url.clone();
    let (lineage, table, object, review, find, refused, unreachable) =
        tokio::task::spawn_blocking(move || {
            (
                meshctl(
                    &url2,
                    Some(TOKEN),
                    &["lineage", ID, "-a", "department", "-o", "json"],
                ),
                meshctl(&url2, Some(TOKEN), &["lineage", ID]),
                meshctl(&url2, Some(TOKEN), &["get", "object", ID, "-o", "yaml"]),
                meshctl(&url2, Some(TOKEN), &["review", "list"]),
                meshctl(
                    &url2,
                    Some(TOKEN),
                    &[
                        "find",
                        "--attribute",
                        "employeeid",
                        "--value",
                        "1001",
                        "-o",
                        "json",
                    ],
                ),
                meshctl(&url2, None, &["review", "list"]),
                meshctl("http://127.0.0.1:1", Some(TOKEN), &["review", "list"]),
            )
        })
        .await
        .unwrap();

    assert!(lineage.status.success(), "{lineage:?}");
    let doc: serde_json::Value = serde_json::from_slice(&lineage.stdout).unwrap();
    assert_eq!(doc["meshObject"]["id"], ID);
    let department = &doc["lineage"][0];
    assert_eq!(doc["lineage"].as_array().unwrap().len(), 1, "{doc:#}");
    assert_eq!(department["name"], "Department");
    assert_eq!(department["value"], "Sales");
    assert_eq!(department["winner"]["rule"], "hr-department");
    assert_eq!(department["winner"]["connectorObject"], "hr/User/1001");
    let candidates: Vec<(&str, u64)> = department["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["connectorObject"].as_str().unwrap(),
                c["confidence"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        candidates,
        [("hr/User/1001", 90), ("directory/User/g-1001", 70)]
    );

    assert!(table.status.success(), "{table:?}");
    let out = text(&table.stdout);
    assert!(out.contains("Department = Sales"), "{out}");
    assert!(
        out.contains("winner: hr/User/1001 by rule hr-department at confidence 90"),
        "{out}"
    );
    assert!(
        out.contains("directory/User/g-1001  directory-department"),
        "{out}"
    );

    assert!(object.status.success(), "{object:?}");
    let out = text(&object.stdout);
    assert!(out.contains("objectType: User"), "{out}");
    assert!(out.contains("Department: Sales"), "{out}");

    assert!(review.status.success(), "{review:?}");
    let out = text(&review.stdout);
    assert!(out.contains("directory/User/g-9001"), "{out}");
    assert!(out.contains("disconnector"), "{out}");
    assert!(out.contains("no join rule of directory matched"), "{out}");

    assert!(find.status.success(), "{find:?}");
    let doc: serde_json::Value = serde_json::from_slice(&find.stdout).unwrap();
    assert_eq!(doc["meshObjects"][0]["id"], ID);
    assert_eq!(doc["meshObjects"].as_array().unwrap().len(), 1);

    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    assert!(
        err.contains("set MESHCTL_QUERY_TOKEN to a token whose SHA-256 is in query.token_sha256"),
        "{err}"
    );

    assert_eq!(unreachable.status.code(), Some(1));
    let err = text(&unreachable.stderr);
    assert!(
        err.contains("cannot reach the query service at http://127.0.0.1:1; start it with `meshd run query` or set --query-url/MESHCTL_QUERY_URL"),
        "{err}"
    );

    stop.cancel();
}
