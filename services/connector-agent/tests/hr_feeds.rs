//! HR feeds against real PostgreSQL and nats-server: diff correctness (joiner, mover, leaver,
//! unchanged), malformed rows, the leaver safety threshold, the upload endpoint and the drop
//! directory.

mod common;

use std::time::Duration;

use common::{IMPORT_TOKEN, raw, start};
use mesh_model::{ChangeOperation, Value};

const FEED: &str = r#"
[[connector_agent.hr]]
connector = "workday"
external_id = "employee_id"
max_leavers_percent = 30.0
columns = { employee_id = "employeeId", first = "givenName", last = "sn", dept = "department" }
"#;

async fn upload(addr: std::net::SocketAddr, text: &str, query: &str) -> common::Reply {
    let request = format!(
        "POST /hr/v1/workday/imports{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {IMPORT_TOKEN}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    );
    raw(addr, request.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_extracts_diff_into_joiners_movers_and_leavers() {
    let h = start(FEED).await;
    let first = "employee_id,first,last,dept\n1,Ada,Lovelace,Eng\n2,Bob,Stone,Ops\n3,Cy,Young,Eng\n4,Di,Prince,Sales\n";
    let r = upload(h.addr, first, "?source=day1.csv").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let report = r.json();
    assert_eq!(report["status"], "applied");
    assert_eq!(report["joiners"], 4);
    assert_eq!(common::wait_for_changes(&h.bus, 4).await.len(), 4);

    // Day 2: 1 unchanged, 2 moves department, 3 leaves, 4 unchanged, 5 joins; one bad row.
    let second = "employee_id,first,last,dept\n1,Ada,Lovelace,Eng\n2,Bob,Stone,Eng\n4,Di,Prince,Sales\n5,Eve,Adams,Ops\n,No,Id,Eng\n";
    let report = upload(h.addr, second, "").await.json();
    assert_eq!(report["status"], "applied", "{report}");
    assert_eq!(
        (
            report["joiners"].as_u64(),
            report["movers"].as_u64(),
            report["leavers"].as_u64(),
            report["unchanged"].as_u64(),
            report["malformed"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(2), Some(1)),
        "{report}"
    );
    assert_eq!(report["errors"][0]["line"], 6);
    assert_eq!(report["errors"][0]["column"], 1);
    let mover = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "mover")
        .unwrap();
    assert_eq!(mover["externalId"], "2");
    assert_eq!(mover["changed"], serde_json::json!(["department"]));

    let events = common::wait_for_changes(&h.bus, 7).await;
    assert_eq!(
        events.len(),
        7,
        "4 joiners, then 1 mover, 1 joiner, 1 leaver; nothing for unchanged"
    );
    let day2: Vec<_> = events[4..]
        .iter()
        .map(|(_, s, e)| (s.clone(), e.clone()))
        .collect();
    assert!(day2.iter().all(|(s, _)| s == "mesh.change.workday"));
    let by_id = |id: &str| {
        day2.iter()
            .find(|(_, e)| e.object.external_id.as_str() == id)
            .map(|(_, e)| e.clone())
            .unwrap()
    };
    let moved = by_id("2");
    assert_eq!(moved.operation, ChangeOperation::Upsert);
    assert_eq!(
        moved.attributes.get_str("department"),
        Some(&Value::from("Eng"))
    );
    assert_eq!(
        moved.attributes.get_str("givenName"),
        Some(&Value::from("Bob")),
        "upserts are full snapshots"
    );
    assert_eq!(by_id("3").operation, ChangeOperation::Delete);
    assert_eq!(
        by_id("5").attributes.get_str("employeeId"),
        Some(&Value::from("5"))
    );

    // The same extract again changes nothing.
    let report = upload(h.addr, second, "").await.json();
    assert_eq!(report["unchanged"], 4);
    assert_eq!(
        report["joiners"].as_u64().unwrap()
            + report["movers"].as_u64().unwrap()
            + report["leavers"].as_u64().unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(common::changes(&h.bus).await.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_leavers_hold_the_extract_until_confirmed() {
    let h = start(FEED).await;
    let full: String = std::iter::once("employee_id,first,last,dept\n".to_owned())
        .chain((1..=10).map(|i| format!("{i},F{i},L{i},D\n")))
        .collect();
    assert_eq!(upload(h.addr, &full, "").await.json()["joiners"], 10);
    // A truncated extract: 6 of 10 gone (60% > 30%), and one person moved.
    let truncated = "employee_id,first,last,dept\n1,F1,L1,D\n2,F2,L2,D\n3,F3,L3,D\n4,F4,L4,Moved\n";
    let report = upload(h.addr, truncated, "").await.json();
    assert_eq!(report["status"], "held", "{report}");
    assert_eq!(report["leavers"], 6);
    assert!(
        report["heldBecause"]
            .as_str()
            .unwrap()
            .contains("6 leavers")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        common::changes(&h.bus).await.len(),
        10,
        "a held extract publishes nothing"
    );
    let (records,): (i64,) = sqlx::query_as("SELECT count(*) FROM hr_records")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(records, 10);

    let report = upload(h.addr, truncated, "?confirmLeavers=true")
        .await
        .json();
    assert_eq!(report["status"], "applied");
    assert_eq!(
        (report["leavers"].as_u64(), report["movers"].as_u64()),
        (Some(6), Some(1))
    );
    assert_eq!(common::wait_for_changes(&h.bus, 17).await.len(), 17);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unreadable_extracts() {
    let h = start(FEED).await;
    let corpus = "employee_id,first,last,dept\n\
                  1,Ada,Lovelace,Eng\n\
                  2,Bob\n\
                  3,Cy,Young,Eng,extra\n\
                  ,Nobody,Here,Eng\n\
                  1,Ada,Again,Eng\n\
                  \"5\",\"Quoted, Name\",X,Y\n\
                  6,\u{1}ctl,X,Y\n";
    let report = upload(h.addr, corpus, "").await.json();
    assert_eq!(report["status"], "applied", "{report}");
    assert_eq!(report["joiners"], 3, "{report}");
    let lines: Vec<u64> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 5, 6], "{report}");
    for e in report["errors"].as_array().unwrap() {
        assert!(!e["reason"].as_str().unwrap().is_empty());
    }
    // A file without the external id column cannot be imported at all.
    let r = upload(h.addr, "id,first\n1,x\n", "").await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.json()["detail"].as_str().unwrap().contains("employee_id"));
    // Wrong token.
    let r = raw(h.addr, b"POST /hr/v1/workday/imports HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer nope\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drop_directory_imports_holds_and_confirms() {
    let drop = tempfile::tempdir().unwrap();
    let feed = format!(
        "{FEED}drop_dir = \"{}\"\npoll_interval = \"200ms\"\n",
        drop.path().display()
    );
    let h = start(&feed).await;
    let write_old = |name: &str, text: &str| {
        let path = drop.path().join(name);
        std::fs::write(&path, text).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(10);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    };
    write_old(
        "day1.csv",
        "employee_id,first,last,dept\n1,A,B,C\n2,D,E,F\n3,G,H,I\n",
    );
    mesh_testkit::assert_eventually!(
        Duration::from_secs(10),
        common::changes(&h.bus).await.len() == 3
    );
    // Events publish right after the commit; the file moves and its report is written just
    // after the import returns.
    let reported = || {
        std::fs::read_dir(drop.path().join("done")).is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .ends_with("day1.csv.report.json")
            })
        })
    };
    mesh_testkit::assert_eventually!(Duration::from_secs(10), reported());

    write_old("day2.csv", "employee_id,first,last,dept\n1,A,B,C\n");
    let held = drop.path().join("held").join("day2.csv");
    mesh_testkit::assert_eventually!(Duration::from_secs(10), held.exists());
    assert_eq!(common::changes(&h.bus).await.len(), 3);
    std::fs::rename(&held, drop.path().join("confirmed").join("day2.csv")).unwrap();
    let confirmed = drop.path().join("confirmed").join("day2.csv");
    std::fs::File::options()
        .write(true)
        .open(&confirmed)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(10))
        .unwrap();
    mesh_testkit::assert_eventually!(
        Duration::from_secs(10),
        common::changes(&h.bus).await.len() == 5
    );
    h.shutdown.cancel();
    h.task.await.unwrap().unwrap();
}

/// An import while NATS is down is durable: each batch waits in the outbox as one framed row,
/// and once NATS is back the relay publishes every record's event as its own message, with
/// the event id as `Nats-Msg-Id`. 6,000 records are two batches, the first larger than the
/// relay's batch of 1,000 events (a framed row is taken whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_during_a_nats_outage_publishes_every_record_once_nats_is_back() {
    let mut h = start(FEED).await;
    h.nats.kill();
    let mut extract = String::from("employee_id,first,last,dept\n");
    for i in 0..6000 {
        extract.push_str(&format!("{i},Given{i},Family{i},Dept{}\n", i % 7));
    }
    let r = upload(h.addr, &extract, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["joiners"], 6000);
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM connector_outbox")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "one framed row per batch");
    assert_eq!(common::outbox_events(&h.pool).await, 6000);

    h.nats.restart().await.unwrap();
    common::wait_for_outbox_drained(&h.pool).await;
    let published = common::changes(&h.bus).await;
    assert_eq!(published.len(), 6000);
    let mut ids = std::collections::HashSet::new();
    let mut records = std::collections::HashSet::new();
    for (msg_id, subject, event) in &published {
        assert_eq!(subject, "mesh.change.workday");
        assert_eq!(msg_id, &event.event_id.to_string());
        assert_eq!(event.operation, ChangeOperation::Upsert);
        ids.insert(msg_id.clone());
        records.insert(event.object.external_id.as_str().to_owned());
    }
    assert_eq!((ids.len(), records.len()), (6000, 6000));
    let n = 4321;
    let event = published
        .iter()
        .map(|(_, _, e)| e)
        .find(|e| e.object.external_id.as_str() == n.to_string())
        .unwrap();
    assert_eq!(
        event.attributes.get_str("givenName"),
        Some(&Value::from(format!("Given{n}")))
    );
}
