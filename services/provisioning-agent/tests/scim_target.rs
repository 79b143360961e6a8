//! The SCIM 2.0 target against a real SCIM service provider: the connector agent's own
//! endpoint, started in-process with a token.

mod common;

use common::{ScimServer, apply, attrs, command, mesh_object, target_yaml, targets};
use mesh_model::{ExportOperation as Op, Value};
use provisioning_agent::Outcome;
use provisioning_agent::target::TargetEntry;
use serde_json::json;

const TARGET: &str = "saas-app";

fn scim_target(server: &ScimServer, extra: &str) -> TargetEntry {
    let spec = format!(
        "  type: scim-target\n  url: {}\n  tokenEnv: SAAS_APP_SCIM_TOKEN\n  timeout: 2s\n{extra}",
        server.base_url()
    );
    let yaml = target_yaml(TARGET, &spec, "Users");
    let targets = targets(&yaml, &[("SAAS_APP_SCIM_TOKEN", common::SCIM_TOKEN)]);
    targets
        .get(&TARGET.parse().unwrap())
        .cloned()
        .expect("the scim target is built")
}

fn ada() -> mesh_model::Attributes {
    attrs(&[
        ("userName", Value::from("ada.lovelace")),
        ("displayName", Value::from("Ada Lovelace")),
        ("name.givenName", Value::from("Ada")),
        ("name.familyName", Value::from("Lovelace")),
        ("title", Value::from("Analyst")),
        ("emails[work].value", Value::from("ada@example.com")),
    ])
}

fn id_of(outcome: &Outcome) -> String {
    outcome
        .target_object_id()
        .unwrap_or_else(|| panic!("no target object id in {outcome:?}"))
        .to_owned()
}

#[tokio::test]
async fn create_update_disable_enable_delete_a_user() {
    let server = ScimServer::start().await;
    let target = scim_target(&server, "");
    let object = mesh_object(1);

    let created = apply(
        &target,
        &command(TARGET, Op::Create, object, 1, "Users", ada()),
        None,
    )
    .await;
    assert!(matches!(created, Outcome::Applied { .. }), "{created:?}");
    let id = id_of(&created);
    let user = server.user(&id).await.unwrap();
    assert_eq!(user["userName"], "ada.lovelace");
    assert_eq!(user["name"]["givenName"], "Ada");
    assert_eq!(user["emails"][0]["value"], "ada@example.com");
    assert_eq!(user["emails"][0]["type"], "work");
    let created_version = user["meta"]["version"].clone();

    // Only what changed: the title is removed, the work email replaced, the rest untouched.
    let update = command(
        TARGET,
        Op::Update,
        object,
        2,
        "Users",
        attrs(&[
            ("title", Value::Null),
            (
                "emails[work].value",
                Value::from("ada.lovelace@example.com"),
            ),
        ]),
    );
    let updated = apply(&target, &update, Some(&id)).await;
    assert_eq!(
        updated,
        Outcome::Applied {
            target_object_id: Some(id.clone())
        }
    );
    let user = server.user(&id).await.unwrap();
    assert!(user.get("title").is_none(), "{user}");
    assert_eq!(
        user["emails"],
        json!([{"type": "work", "value": "ada.lovelace@example.com"}])
    );
    assert_eq!(user["displayName"], "Ada Lovelace");
    assert_eq!(user["name"]["familyName"], "Lovelace");
    assert_ne!(user["meta"]["version"], created_version);

    let disabled = apply(
        &target,
        &command(TARGET, Op::Disable, object, 3, "Users", attrs(&[])),
        Some(&id),
    )
    .await;
    assert!(disabled.succeeded(), "{disabled:?}");
    assert_eq!(server.user(&id).await.unwrap()["active"], false);

    let enabled = apply(
        &target,
        &command(TARGET, Op::Enable, object, 4, "Users", attrs(&[])),
        Some(&id),
    )
    .await;
    assert!(enabled.succeeded(), "{enabled:?}");
    assert_eq!(server.user(&id).await.unwrap()["active"], true);

    let deleted = apply(
        &target,
        &command(TARGET, Op::Delete, object, 5, "Users", attrs(&[])),
        Some(&id),
    )
    .await;
    assert_eq!(
        deleted,
        Outcome::Applied {
            target_object_id: Some(id.clone())
        }
    );
    assert!(server.user(&id).await.is_none());
    // Deleting what is gone is already applied.
    let again = apply(
        &target,
        &command(TARGET, Op::Delete, object, 5, "Users", attrs(&[])),
        Some(&id),
    )
    .await;
    assert_eq!(
        again,
        Outcome::AlreadyApplied {
            target_object_id: Some(id)
        }
    );
    assert_eq!(server.user_count().await, 0);
}

#[tokio::test]
async fn create_adopts_an_existing_user_with_the_same_user_name() {
    let server = ScimServer::start().await;
    let target = scim_target(&server, "");
    let (status, existing) = server
        .request(
            reqwest::Method::POST,
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "ada.lovelace",
                "displayName": "A. Lovelace",
                "title": "Countess",
                "active": false,
            })),
        )
        .await;
    assert_eq!(status, 201, "{existing}");
    let existing_id = existing["id"].as_str().unwrap().to_owned();

    let outcome = apply(
        &target,
        &command(TARGET, Op::Create, mesh_object(2), 1, "Users", ada()),
        None,
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::AlreadyApplied {
            target_object_id: Some(existing_id.clone())
        }
    );
    let users = server.users_named("ada.lovelace").await;
    assert_eq!(users.len(), 1, "adopted, not duplicated: {users:?}");
    assert_eq!(server.user_count().await, 1);
    let user = server.user(&existing_id).await.unwrap();
    assert_eq!(user["displayName"], "Ada Lovelace");
    assert_eq!(user["title"], "Analyst");
    assert_eq!(user["active"], true, "a create leaves the user enabled");
}

#[tokio::test]
async fn the_same_command_applied_twice_has_one_effect() {
    let server = ScimServer::start().await;
    let target = scim_target(&server, "");
    let object = mesh_object(3);
    let create = command(TARGET, Op::Create, object, 1, "Users", ada());
    let first = apply(&target, &create, None).await;
    assert!(matches!(first, Outcome::Applied { .. }), "{first:?}");
    let id = id_of(&first);
    // A redelivery after a crash before the commit: the agent does not know the id yet.
    let second = apply(&target, &create, None).await;
    assert_eq!(
        second,
        Outcome::AlreadyApplied {
            target_object_id: Some(id.clone())
        }
    );
    assert_eq!(server.user_count().await, 1);

    let update = command(
        TARGET,
        Op::Update,
        object,
        2,
        "Users",
        attrs(&[("displayName", Value::from("Ada King"))]),
    );
    assert!(apply(&target, &update, Some(&id)).await.succeeded());
    let version = server.user(&id).await.unwrap()["meta"]["version"].clone();
    assert!(apply(&target, &update, Some(&id)).await.succeeded());
    let user = server.user(&id).await.unwrap();
    assert_eq!(user["displayName"], "Ada King");
    assert_eq!(
        user["meta"]["version"], version,
        "the second update changed nothing"
    );
    assert_eq!(server.user_count().await, 1);
}

#[tokio::test]
async fn refused_data_is_a_permanent_failure_and_a_down_target_a_retryable_one() {
    let server = ScimServer::start().await;
    let target = scim_target(&server, "");
    // The endpoint refuses an attribute its schema does not have (400 invalidSyntax).
    let refused = apply(
        &target,
        &command(
            TARGET,
            Op::Create,
            mesh_object(4),
            1,
            "Users",
            attrs(&[
                ("userName", Value::from("grace")),
                ("shoeSize", Value::from(42_i64)),
            ]),
        ),
        None,
    )
    .await;
    assert!(
        matches!(&refused, Outcome::Permanent(m) if m.contains("400")),
        "{refused:?}"
    );

    // An update of an object the agent never saw created may be overtaking its create.
    let early = apply(
        &target,
        &command(TARGET, Op::Disable, mesh_object(5), 2, "Users", attrs(&[])),
        None,
    )
    .await;
    assert!(matches!(early, Outcome::Retryable(_)), "{early:?}");

    let spec = format!(
        "  type: scim-target\n  url: http://127.0.0.1:{}/scim/v2\n  timeout: 2s\n",
        common::closed_port()
    );
    let down = targets(&target_yaml("down-app", &spec, "Users"), &[]);
    let down = down.get(&"down-app".parse().unwrap()).unwrap();
    let outcome = apply(
        down,
        &command("down-app", Op::Create, mesh_object(6), 1, "Users", ada()),
        None,
    )
    .await;
    assert!(matches!(outcome, Outcome::Retryable(_)), "{outcome:?}");
}
