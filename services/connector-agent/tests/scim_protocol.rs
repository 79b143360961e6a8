//! The SCIM protocol suite: RFC 7644 examples over HTTP against a running agent with real
//! PostgreSQL and nats-server; change events checked on MESH_CHANGES. The error cases are the
//! corpus of scim_malformed.rs.

mod common;

use common::{create, enc, scim, start};
use mesh_model::{ChangeOperation, Value};
use serde_json::{Value as Json, json};

const USERS: &str = "/scim/v2/okta/Users";
const GROUPS: &str = "/scim/v2/okta/Groups";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn bjensen() -> Json {
    // RFC 7644 §3.3 example, plus the Enterprise extension of RFC 7643 §8.3.
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": "bjensen",
        "externalId": "bjensen",
        "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "password": "t1meMa$heen",
        "active": true,
        ENTERPRISE: {"employeeNumber": "701984", "department": "Tour Operations"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_documents_advertise_what_is_implemented() {
    let h = start("").await;
    let spc = scim(
        h.addr,
        "GET",
        "/scim/v2/okta/ServiceProviderConfig",
        None,
        &[],
    )
    .await;
    assert_eq!(spc.status, 200);
    assert_eq!(spc.header("content-type"), Some("application/scim+json"));
    let spc = spc.json();
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["bulk"]["supported"], false);
    assert_eq!(spc["sort"]["supported"], true);
    assert_eq!(spc["etag"]["supported"], true);
    assert_eq!(spc["changePassword"]["supported"], false);
    assert_eq!(spc["filter"]["supported"], true);

    let schemas = scim(h.addr, "GET", "/scim/v2/okta/Schemas", None, &[])
        .await
        .json();
    assert_eq!(schemas["totalResults"], 4);
    let user = scim(
        h.addr,
        "GET",
        "/scim/v2/okta/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
        None,
        &[],
    )
    .await;
    assert_eq!(user.status, 200);
    let user = user.json();
    let username = user["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "userName")
        .unwrap();
    assert_eq!(username["uniqueness"], "server");
    assert_eq!(username["caseExact"], false);

    let types = scim(h.addr, "GET", "/scim/v2/okta/ResourceTypes", None, &[])
        .await
        .json();
    let names: Vec<&str> = types["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["User", "Group", "ServiceAccount"]);
    let sa = scim(
        h.addr,
        "GET",
        "/scim/v2/okta/ResourceTypes/ServiceAccount",
        None,
        &[],
    )
    .await
    .json();
    assert_eq!(sa["endpoint"], "/ServiceAccounts");
    assert_eq!(
        scim(h.addr, "GET", "/scim/v2/okta/Schemas/urn:nope", None, &[])
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_per_connector() {
    let h = start("").await;
    let no_token = common::raw(
        h.addr,
        b"GET /scim/v2/okta/Users HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(no_token.status, 401);
    assert!(
        no_token
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(no_token.json()["status"], "401");
    // The okta token does not open entra's endpoint, nor an unknown one.
    assert_eq!(
        scim(h.addr, "GET", "/scim/v2/entra/Users", None, &[])
            .await
            .status,
        401
    );
    assert_eq!(
        scim(h.addr, "GET", "/scim/v2/nobody/Users", None, &[])
            .await
            .status,
        401
    );
    let basic = common::raw(
        h.addr,
        format!("GET /scim/v2/okta/Users HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {}\r\n\r\n", common::TOKEN).as_bytes(),
    )
    .await;
    assert_eq!(basic.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_lifecycle_follows_rfc_7644_and_publishes_change_events() {
    let h = start("").await;
    let r = scim(h.addr, "POST", USERS, Some(&bjensen().to_string()), &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
    let etag = r.header("etag").unwrap().to_owned();
    assert_eq!(etag, "W/\"1\"");
    let user = r.json();
    let id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location").unwrap(),
        format!("http://scim.test/scim/v2/okta/Users/{id}")
    );
    assert_eq!(user["meta"]["resourceType"], "User");
    assert_eq!(user["meta"]["version"], etag);
    assert!(user.get("password").is_none(), "password is never returned");
    assert_eq!(user[ENTERPRISE]["employeeNumber"], "701984");

    // Uniqueness is case-insensitive, like userName's caseExact=false.
    let mut dup = bjensen();
    dup["userName"] = json!("BJENSEN");
    let r = scim(h.addr, "POST", USERS, Some(&dup.to_string()), &[]).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["scimType"], "uniqueness");

    // GET, conditional GET.
    let path = format!("{USERS}/{id}");
    let r = scim(h.addr, "GET", &path, None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["userName"], "bjensen");
    let r = scim(h.addr, "GET", &path, None, &[("If-None-Match", &etag)]).await;
    assert_eq!(r.status, 304);

    // PATCH with a value filter path, then active=false (a leaver), with If-Match.
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "barbara@example.com"},
        {"op": "replace", "path": "active", "value": false}
    ]});
    let r = scim(
        h.addr,
        "PATCH",
        &path,
        Some(&patch.to_string()),
        &[("If-Match", "W/\"7\"")],
    )
    .await;
    assert_eq!(r.status, 412, "{}", r.body);
    let r = scim(
        h.addr,
        "PATCH",
        &path,
        Some(&patch.to_string()),
        &[("If-Match", &etag)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("etag"), Some("W/\"2\""));
    assert_eq!(r.json()["emails"][0]["value"], "barbara@example.com");
    assert_eq!(r.json()["active"], false);

    // PUT replaces: what is not sent is gone.
    let put = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": id,
                     "userName": "bjensen", "displayName": "Babs", "active": false});
    let r = scim(h.addr, "PUT", &path, Some(&put.to_string()), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["displayName"], "Babs");
    assert!(body.get("emails").is_none());
    assert!(body.get(ENTERPRISE).is_none());
    assert_eq!(body["meta"]["version"], "W/\"3\"");

    // DELETE, then it is gone.
    let r = scim(h.addr, "DELETE", &path, None, &[("If-Match", "W/\"3\"")]).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(scim(h.addr, "GET", &path, None, &[]).await.status, 404);
    assert_eq!(scim(h.addr, "DELETE", &path, None, &[]).await.status, 404);

    // Four writes, four events, in order, each after its commit.
    let events = common::wait_for_changes(&h.bus, 4).await;
    assert_eq!(events.len(), 4, "{events:?}");
    for (msg_id, subject, event) in &events {
        assert_eq!(subject, "mesh.change.okta");
        assert_eq!(msg_id, &event.event_id.to_string());
        assert_eq!(event.object.external_id.as_str(), id);
        assert_eq!(event.object.object_type.as_str(), "User");
    }
    let created = &events[0].2.attributes;
    assert_eq!(created.get_str("userName"), Some(&Value::from("bjensen")));
    assert_eq!(
        created.get_str("name.givenName"),
        Some(&Value::from("Barbara"))
    );
    assert_eq!(
        created.get_str("emails[work].value"),
        Some(&Value::from("bjensen@example.com"))
    );
    assert_eq!(
        created.get_str("emails[home].value"),
        Some(&Value::from("babs@jensen.org"))
    );
    assert_eq!(
        created.get_str(&format!("{ENTERPRISE}:employeeNumber")),
        Some(&Value::from("701984"))
    );
    assert!(created.get_str("password").is_none());
    assert_eq!(
        events[1].2.attributes.get_str("active"),
        Some(&Value::Bool(false))
    );
    assert_eq!(events[3].2.operation, ChangeOperation::Delete);
    assert!(events[3].2.attributes.is_empty());
    h.shutdown.cancel();
    h.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filter_sort_paginate_and_project() {
    let h = start("").await;
    for (i, (name, title, domain)) in [
        ("alice", "Engineer", "example.com"),
        ("Bob", "Manager", "example.org"),
        ("carol", "Engineer", "example.com"),
        ("dave", "", "example.net"),
    ]
    .iter()
    .enumerate()
    {
        let mut u = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
            "emails": [{"value": format!("{name}@{domain}"), "type": "work"}],
            "externalId": format!("ext-{i}")});
        if !title.is_empty() {
            u["title"] = json!(title);
        }
        create(h.addr, USERS, &u).await;
    }
    let list = |q: String| {
        let addr = h.addr;
        async move { scim(addr, "GET", &format!("{USERS}?{q}"), None, &[]).await }
    };
    let r = list(format!("filter={}", enc(r#"userName eq "BOB""#))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );
    assert_eq!(body["totalResults"], 1);
    assert_eq!(body["Resources"][0]["userName"], "Bob");

    let r = list(format!(
        "filter={}",
        enc(r#"title eq "Engineer" and emails[type eq "work" and value co "@example.com"]"#)
    ))
    .await
    .json();
    assert_eq!(r["totalResults"], 2);
    let r = list(format!(
        "filter={}",
        enc(r#"not (title pr) or externalId eq "ext-1""#)
    ))
    .await
    .json();
    assert_eq!(r["totalResults"], 2);
    let r = list(format!(
        "filter={}",
        enc(r#"meta.created gt "2000-01-01T00:00:00Z""#)
    ))
    .await
    .json();
    assert_eq!(r["totalResults"], 4);

    let r = list("sortBy=userName&sortOrder=descending&startIndex=2&count=2".into())
        .await
        .json();
    assert_eq!(r["totalResults"], 4);
    assert_eq!(r["itemsPerPage"], 2);
    assert_eq!(r["startIndex"], 2);
    let names: Vec<&str> = r["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["carol", "Bob"]);
    let r = list("sortBy=title".into()).await.json();
    assert_eq!(
        r["Resources"][3]["userName"], "dave",
        "unassigned values sort last"
    );
    let r = list("count=0".into()).await.json();
    assert_eq!(r["totalResults"], 4);
    assert_eq!(r["Resources"].as_array().unwrap().len(), 0);

    let r = list("attributes=userName,emails.value&count=1".into())
        .await
        .json();
    let u = r["Resources"][0].as_object().unwrap();
    let mut keys: Vec<&str> = u.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["emails", "id", "schemas", "userName"]);
    assert!(u["emails"][0].get("type").is_none());
    let r = list("excludedAttributes=emails,meta,id&count=1".into())
        .await
        .json();
    let u = &r["Resources"][0];
    assert!(u.get("emails").is_none() && u.get("meta").is_none());
    assert!(u.get("id").is_some(), "id is returned always");

    // POST /.search on the type and on the root.
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "attributes": ["userName"], "filter": "userName sw \"c\"", "startIndex": 1, "count": 10});
    let r = scim(
        h.addr,
        "POST",
        &format!("{USERS}/.search"),
        Some(&search.to_string()),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["totalResults"], 1);
    let r = scim(
        h.addr,
        "POST",
        "/scim/v2/okta/.search",
        Some(&search.to_string()),
        &[],
    )
    .await;
    assert_eq!(r.json()["totalResults"], 1);

    // Another connector sees none of these.
    let other = common::raw(h.addr, b"GET /scim/v2/entra/Users HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer other-token\r\n\r\n").await;
    assert_eq!(other.json()["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_members_and_service_accounts() {
    let h = start("").await;
    let user = create(
        h.addr,
        USERS,
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ann"}),
    )
    .await;
    let uid = user["id"].as_str().unwrap().to_owned();
    let user2 = create(
        h.addr,
        USERS,
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ben"}),
    )
    .await;
    let uid2 = user2["id"].as_str().unwrap().to_owned();
    let group = create(
        h.addr,
        GROUPS,
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Tour Guides", "members": [{"value": uid}]}),
    )
    .await;
    let gid = group["id"].as_str().unwrap().to_owned();
    assert_eq!(group["members"][0]["type"], "User");
    let gpath = format!("{GROUPS}/{gid}");

    // RFC 7644 §3.5.2.1 add members; §3.5.2.2 remove one member by filter.
    let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"display": "Ben", "value": uid2}]}]});
    let r = scim(h.addr, "PATCH", &gpath, Some(&add.to_string()), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["members"].as_array().unwrap().len(), 2);
    let u = scim(h.addr, "GET", &format!("{USERS}/{uid2}"), None, &[])
        .await
        .json();
    assert_eq!(u["groups"][0]["value"], gid);
    assert_eq!(u["groups"][0]["display"], "Tour Guides");
    let remove = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": format!("members[value eq \"{uid2}\"]")}]});
    let r = scim(h.addr, "PATCH", &gpath, Some(&remove.to_string()), &[]).await;
    assert_eq!(r.json()["members"].as_array().unwrap().len(), 1);
    // Unknown members are refused.
    let bad = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": "2819c223-7f76-453a-919d-413861904646"}]}]});
    let r = scim(h.addr, "PATCH", &gpath, Some(&bad.to_string()), &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["scimType"], "invalidValue");
    // Deleting a member removes it from the group (and publishes the group's change).
    assert_eq!(
        scim(h.addr, "DELETE", &format!("{USERS}/{uid}"), None, &[])
            .await
            .status,
        204
    );
    let g = scim(h.addr, "GET", &gpath, None, &[]).await.json();
    assert!(g.get("members").is_none(), "{g}");

    // A service account needs an existing User as owner.
    let sa = json!({"schemas": ["urn:identitymesh:params:scim:schemas:core:2.0:ServiceAccount"],
        "name": "ci-deployer", "purpose": "deploys", "owner": {"value": uid2},
        "expiresAt": "2027-01-01T00:00:00Z", "active": true});
    let r = scim(
        h.addr,
        "POST",
        "/scim/v2/okta/ServiceAccounts",
        Some(&sa.to_string()),
        &[],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r2 = scim(
        h.addr,
        "POST",
        "/scim/v2/okta/ServiceAccounts",
        Some(&sa.to_string()),
        &[],
    )
    .await;
    assert_eq!(r2.json()["scimType"], "uniqueness");
    let mut orphan = sa.clone();
    orphan["name"] = json!("orphan");
    orphan["owner"]["value"] = json!(uid);
    let r3 = scim(
        h.addr,
        "POST",
        "/scim/v2/okta/ServiceAccounts",
        Some(&orphan.to_string()),
        &[],
    )
    .await;
    assert_eq!(r3.status, 400);
    assert_eq!(r3.json()["scimType"], "invalidValue");

    let events = common::wait_for_changes(&h.bus, 9).await;
    let sa_event = events
        .iter()
        .find(|(_, _, e)| e.object.object_type.as_str() == "ServiceAccount")
        .unwrap();
    assert_eq!(
        sa_event.2.attributes.get_str("owner.value"),
        Some(&Value::from(uid2.as_str()))
    );
    assert!(matches!(
        sa_event.2.attributes.get_str("expiresAt"),
        Some(Value::Timestamp(_))
    ));
    let group_events: Vec<_> = events
        .iter()
        .filter(|(_, _, e)| e.object.object_type.as_str() == "Group")
        .collect();
    assert_eq!(group_events.len(), 4, "create, add, remove, member deleted");
    assert_eq!(
        group_events[1].2.attributes.get_str("members.value"),
        Some(&Value::List(vec![
            Value::from(uid.as_str()),
            Value::from(uid2.as_str())
        ]))
    );
}

/// Writes are accepted while NATS is down and published once it is back: the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_a_nats_outage() {
    let mut h = start("").await;
    h.nats.kill();
    for name in ["during-1", "during-2"] {
        let body =
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
        let r = scim(h.addr, "POST", USERS, Some(&body.to_string()), &[]).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(common::outbox_events(&h.pool).await, 2);
    h.nats.restart().await.unwrap();
    let events = common::wait_for_changes(&h.bus, 2).await;
    let names: Vec<_> = events
        .iter()
        .map(|(_, _, e)| e.attributes.get_str("userName").cloned())
        .collect();
    assert_eq!(
        names,
        [Some(Value::from("during-1")), Some(Value::from("during-2"))]
    );
    common::wait_for_outbox_drained(&h.pool).await;
}

/// Concurrent creates are written together (one statement for those that arrive at once), yet
/// each answers for itself: of 24 creates of one userName exactly one is 201 and the others
/// 409 `uniqueness`; 24 creates of distinct userNames are all 201; one change event per
/// created resource, none for the refused ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_answer_each_request_for_itself() {
    let h = start("").await;
    let post = |name: String| {
        let addr = h.addr;
        tokio::spawn(async move {
            let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
            scim(addr, "POST", USERS, Some(&body.to_string()), &[]).await
        })
    };
    let same: Vec<_> = (0..24).map(|_| post("contested".to_owned())).collect();
    let distinct: Vec<_> = (0..24).map(|i| post(format!("user-{i}"))).collect();
    let mut created = 0;
    for reply in same {
        let reply = reply.await.unwrap();
        match reply.status {
            201 => created += 1,
            409 => assert_eq!(reply.json()["scimType"], "uniqueness", "{}", reply.body),
            status => panic!("{status}: {}", reply.body),
        }
    }
    assert_eq!(
        created, 1,
        "exactly one create of a contested userName wins"
    );
    let mut ids = std::collections::HashSet::new();
    for reply in distinct {
        let reply = reply.await.unwrap();
        assert_eq!(reply.status, 201, "{}", reply.body);
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        let stored = scim(h.addr, "GET", &format!("{USERS}/{id}"), None, &[]).await;
        assert_eq!(stored.status, 200, "{}", stored.body);
        assert_eq!(stored.json()["userName"], reply.json()["userName"]);
        ids.insert(id);
    }
    assert_eq!(ids.len(), 24);
    common::wait_for_outbox_drained(&h.pool).await;
    let events = common::changes(&h.bus).await;
    assert_eq!(events.len(), 25, "one event per created resource");
    let contested = events
        .iter()
        .filter(|(_, _, e)| e.attributes.get_str("userName") == Some(&Value::from("contested")))
        .count();
    assert_eq!(contested, 1);
}
