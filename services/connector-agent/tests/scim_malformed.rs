//! The malformed-request corpus (tests/scim_malformed.txt, one request per line) against a
//! running agent with real PostgreSQL and nats-server.
//!
//! Every response must be the error the line expects: its status, a 4xx (the only 5xx allowed
//! is 501, for optional features `ServiceProviderConfig` advertises as unsupported), an
//! `application/scim+json` RFC 7644 §3.12 body with the error schema, the status as a string,
//! a detail, and exactly the expected `scimType` (none where the line names none). A 405 also
//! carries `Allow`. Afterwards nothing the corpus sent has changed a resource or written a
//! change event. Every failing line is reported, not only the first.

mod common;

use common::{scim, start};
use serde_json::{Value as Json, json};

const CORPUS: &str = include_str!("scim_malformed.txt");
const BASE: &str = "/scim/v2/okta";
const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const SERVICE_ACCOUNT: &str = "urn:identitymesh:params:scim:schemas:core:2.0:ServiceAccount";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The RFC 7644 Table 9 `scimType` values.
const SCIM_TYPES: &[&str] = &[
    "invalidFilter",
    "tooMany",
    "uniqueness",
    "mutability",
    "invalidSyntax",
    "invalidPath",
    "noTarget",
    "invalidValue",
    "invalidVers",
    "sensitive",
];

/// One line of the corpus.
#[derive(Debug)]
struct Case {
    line: usize,
    text: &'static str,
    status: u16,
    scim_type: Option<&'static str>,
    method: &'static str,
    target: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
}

/// Parses the corpus; a malformed line fails the test with its number.
fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, text) in CORPUS.lines().enumerate() {
        let line = i + 1;
        if text.trim().is_empty() || text.starts_with('#') {
            continue;
        }
        let bad = |why: &str| -> ! { panic!("scim_malformed.txt:{line}: {why}: {text}") };
        let mut fields = text.splitn(4, '|').map(str::trim);
        let (Some(expected), Some(request), Some(headers), Some(body)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            bad("expected `EXPECTED | METHOD TARGET | HEADERS | BODY`");
        };
        let mut expected = expected.split_whitespace();
        let status = expected
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or_else(|| bad("the status is not a number"));
        let scim_type = expected.next();
        if scim_type.is_some_and(|t| !SCIM_TYPES.contains(&t)) {
            bad("not an RFC 7644 scimType");
        }
        let (method, target) = request
            .split_once(' ')
            .unwrap_or_else(|| bad("expected `METHOD TARGET`"));
        let headers = headers
            .split(" ; ")
            .filter(|h| !h.is_empty())
            .map(|h| {
                h.split_once(": ")
                    .unwrap_or_else(|| bad("a header is `Name: value`"))
            })
            .collect();
        cases.push(Case {
            line,
            text,
            status,
            scim_type,
            method,
            target,
            headers,
            body,
        });
    }
    cases
}

/// Percent-encodes a query as the corpus header describes: unreserved characters, `&`, `=`
/// and `%XX` escapes are kept, every other byte is encoded.
fn encode_query(query: &str) -> String {
    let bytes = query.as_bytes();
    let mut out = String::new();
    for (i, &b) in bytes.iter().enumerate() {
        let escape = b == b'%'
            && bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if b.is_ascii_alphanumeric() || b"-_.~&=".contains(&b) || escape {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn path_of(target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let path = match path.strip_prefix("//") {
        Some(rooted) => format!("/{rooted}"),
        None => format!("{BASE}{path}"),
    };
    match query {
        Some(query) => format!("{path}?{}", encode_query(query)),
        None => path,
    }
}

/// Checks one response; returns what is wrong with it.
fn problems(case: &Case, reply: &common::Reply, bulk_unsupported: bool) -> Vec<String> {
    let mut wrong = Vec::new();
    if reply.status != case.status {
        wrong.push(format!(
            "status {} (expected {})",
            reply.status, case.status
        ));
    }
    let optional_feature = reply.status == 501 && bulk_unsupported;
    if !(400..500).contains(&reply.status) && !optional_feature {
        wrong.push(format!("status {} is not a 4xx", reply.status));
    }
    if reply.status == 405 && reply.header("allow").is_none() {
        wrong.push("405 without Allow".to_owned());
    }
    if reply.header("content-type") != Some("application/scim+json") {
        wrong.push(format!("content-type {:?}", reply.header("content-type")));
    }
    let Ok(body) = serde_json::from_str::<Json>(&reply.body) else {
        wrong.push("the body is not JSON".to_owned());
        return wrong;
    };
    if body["schemas"] != json!([ERROR]) {
        wrong.push(format!("schemas {}", body["schemas"]));
    }
    if body["status"] != json!(reply.status.to_string()) {
        wrong.push(format!("body status {}", body["status"]));
    }
    if body["detail"].as_str().is_none_or(str::is_empty) {
        wrong.push("no detail".to_owned());
    }
    if body.get("scimType").and_then(Json::as_str) != case.scim_type {
        wrong.push(format!(
            "scimType {} (expected {})",
            body.get("scimType").unwrap_or(&Json::Null),
            case.scim_type.unwrap_or("none")
        ));
    }
    wrong
}

/// Creates a resource at `endpoint` of the okta endpoint and returns its id.
async fn seed(addr: std::net::SocketAddr, endpoint: &str, body: Json) -> String {
    let created = common::create(addr, &format!("{BASE}{endpoint}"), &body).await;
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_request_gets_its_rfc_7644_error_and_changes_nothing() {
    let cases = corpus();
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    let h = start("").await;
    let spc = scim(
        h.addr,
        "GET",
        &format!("{BASE}/ServiceProviderConfig"),
        None,
        &[],
    )
    .await
    .json();
    let bulk_unsupported = spc["bulk"]["supported"] == json!(false);

    let user = seed(
        h.addr,
        "/Users",
        json!({"schemas": [CORE], "userName": "x", "emails": [{"value": "x@example.com", "type": "work"}]}),
    )
    .await;
    let user2 = seed(
        h.addr,
        "/Users",
        json!({"schemas": [CORE], "userName": "y"}),
    )
    .await;
    let group = seed(
        h.addr,
        "/Groups",
        json!({"schemas": [GROUP], "displayName": "g", "members": [{"value": user}]}),
    )
    .await;
    let sa = seed(
        h.addr,
        "/ServiceAccounts",
        json!({"schemas": [SERVICE_ACCOUNT], "name": "svc", "owner": {"value": user}}),
    )
    .await;
    let seeded = [
        ("Users", &user),
        ("Users", &user2),
        ("Groups", &group),
        ("ServiceAccounts", &sa),
    ];
    let big = "a".repeat(2 << 20);
    let deep_json = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let deep_filter = format!("{}userName pr{}", "(".repeat(500), ")".repeat(500));
    let long_filter = format!("userName eq \"{}\"", "a".repeat(9 * 1024));
    let fill = |text: &str| {
        text.replace("{user}", &user)
            .replace("{user2}", &user2)
            .replace("{group}", &group)
            .replace("{sa}", &sa)
            .replace("{core}", CORE)
            .replace("{group_schema}", GROUP)
            .replace("{sa_schema}", SERVICE_ACCOUNT)
            .replace("{patchop}", "urn:ietf:params:scim:api:messages:2.0:PatchOp")
            .replace(
                "{search}",
                "urn:ietf:params:scim:api:messages:2.0:SearchRequest",
            )
            .replace("{enterprise}", ENTERPRISE)
            .replace("{big}", &big)
            .replace("{deep_json}", &deep_json)
            .replace("{deep_filter}", &deep_filter)
            .replace("{long_filter}", &long_filter)
    };

    let mut failures = Vec::new();
    for case in &cases {
        let path = path_of(&fill(case.target));
        let headers: Vec<(String, String)> = case
            .headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), fill(v)))
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = (!case.body.is_empty()).then(|| fill(case.body));
        let reply = scim(h.addr, case.method, &path, body.as_deref(), &headers).await;
        let wrong = problems(case, &reply, bulk_unsupported);
        if !wrong.is_empty() {
            let shown: String = reply.body.chars().take(300).collect();
            failures.push(format!(
                "scim_malformed.txt:{}: {}\n    {}\n    got {} {shown}",
                case.line,
                case.text.chars().take(200).collect::<String>(),
                wrong.join("; "),
                reply.status,
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed requests were answered wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // None of it changed a resource or wrote a change event: once the outbox is drained,
    // MESH_CHANGES holds the four creations only, and every resource is still at its first
    // version.
    common::wait_for_outbox_drained(&h.pool).await;
    let events = common::changes(&h.bus).await;
    assert_eq!(events.len(), 4, "malformed requests wrote change events");
    for (endpoint, id) in seeded {
        let r = scim(h.addr, "GET", &format!("{BASE}/{endpoint}/{id}"), None, &[]).await;
        assert_eq!(r.status, 200, "{endpoint}/{id}: {}", r.body);
        assert_eq!(r.header("etag"), Some("W/\"1\""), "{endpoint}/{id} changed");
    }
    let users = scim(h.addr, "GET", &format!("{BASE}/Users"), None, &[])
        .await
        .json();
    assert_eq!(
        users["totalResults"], 2,
        "a malformed request created a user: {users}"
    );
    h.shutdown.cancel();
    h.task.await.unwrap().unwrap();
}

/// `tooMany` needs more resources than a list may examine ([`connector_agent::scim::MAX_SCAN`]),
/// so it is not a corpus line: the resources are written straight to the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_that_would_examine_too_many_resources_is_too_many() {
    let h = start("").await;
    let n = i64::try_from(connector_agent::scim::MAX_SCAN).unwrap() + 1;
    sqlx::query(
        "INSERT INTO scim_resources
             (connector, resource_type, id, unique_key, data, version, created_at, modified_at)
         SELECT 'okta', 'User', gen_random_uuid(), 'u' || i,
                jsonb_build_object('schemas', jsonb_build_array($1::text), 'userName', 'u' || i),
                1, now(), now()
         FROM generate_series(1, $2) AS i",
    )
    .bind(CORE)
    .bind(n)
    .execute(&h.pool)
    .await
    .unwrap();
    let list = |filter: &str| {
        let path = format!("{BASE}/Users?filter={}", common::enc(filter));
        async move { scim(h.addr, "GET", &path, None, &[]).await }
    };
    let r = list("title pr").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
    let body = r.json();
    assert_eq!(body["schemas"], json!([ERROR]), "{body}");
    assert_eq!(body["scimType"], "tooMany", "{body}");
    // A filter the index answers still works on the same endpoint.
    let r = list("userName eq \"u77\"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["totalResults"], 1);
}
