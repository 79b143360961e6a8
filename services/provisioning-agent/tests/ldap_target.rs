//! The LDAP target against a real OpenLDAP slapd started by the test kit.

mod common;

use std::collections::HashMap;

use common::{apply, attrs, command, mesh_object, target_yaml, targets};
use ldap3::{Ldap, LdapConnAsync, Scope, SearchEntry};
use mesh_model::{ExportOperation as Op, Value};
use mesh_testkit::Slapd;
use provisioning_agent::Outcome;
use provisioning_agent::target::TargetEntry;

const TARGET: &str = "app-directory";
const OU: &str = Slapd::PEOPLE;

fn ldap_target(slapd: &Slapd, extra: &str) -> TargetEntry {
    let spec = format!(
        "  type: ldap-target\n  url: {}\n  bindDn: '{}'\n  passwordEnv: APP_DIRECTORY_PASSWORD\n  timeout: 2s\n{extra}",
        slapd.url(),
        Slapd::ROOT_DN
    );
    let targets = targets(
        &target_yaml(TARGET, &spec, OU),
        &[("APP_DIRECTORY_PASSWORD", Slapd::ROOT_PASSWORD)],
    );
    targets.get(&TARGET.parse().unwrap()).cloned().unwrap()
}

async fn admin(slapd: &Slapd) -> Ldap {
    let (conn, mut ldap) = LdapConnAsync::new(&slapd.url()).await.unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(Slapd::ROOT_DN, Slapd::ROOT_PASSWORD)
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap
}

/// The entry `dn` with the attributes asked for (lowercased names), or none.
async fn entry(
    ldap: &mut Ldap,
    dn: &str,
    attributes: &[&str],
) -> Option<HashMap<String, Vec<String>>> {
    let ldap3::SearchResult(entries, result) = ldap
        .search(dn, Scope::Base, "(objectClass=*)", attributes.to_vec())
        .await
        .unwrap();
    if result.rc == 32 {
        return None;
    }
    assert_eq!(result.rc, 0, "{result}");
    entries.into_iter().next().map(|e| {
        SearchEntry::construct(e)
            .attrs
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    })
}

async fn people(ldap: &mut Ldap) -> usize {
    let ldap3::SearchResult(entries, result) = ldap
        .search(
            OU,
            Scope::OneLevel,
            "(objectClass=inetOrgPerson)",
            vec!["1.1"],
        )
        .await
        .unwrap();
    assert_eq!(result.rc, 0, "{result}");
    entries.len()
}

/// Whether `dn` can bind with `password`.
async fn can_bind(slapd: &Slapd, dn: &str, password: &str) -> bool {
    let (conn, mut ldap) = LdapConnAsync::new(&slapd.url()).await.unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(dn, password).await.unwrap().rc == 0
}

fn ada() -> mesh_model::Attributes {
    attrs(&[
        ("uid", Value::from("alovelace")),
        ("cn", Value::from("Ada Lovelace")),
        ("sn", Value::from("Lovelace")),
        ("mail", Value::from("ada@example.com")),
        ("title", Value::from("Analyst")),
        ("userPassword", Value::from("s3cret-ada")),
    ])
}

const ADA: &str = "uid=alovelace,ou=people,dc=corp,dc=example,dc=com";

#[tokio::test]
async fn create_update_disable_enable_delete_an_entry() {
    let slapd = Slapd::start().await.unwrap();
    let target = ldap_target(&slapd, "");
    let mut ldap = admin(&slapd).await;
    let object = mesh_object(1);

    let created = apply(
        &target,
        &command(TARGET, Op::Create, object, 1, OU, ada()),
        None,
    )
    .await;
    assert_eq!(
        created,
        Outcome::Applied {
            target_object_id: Some(ADA.into())
        }
    );
    let e = entry(&mut ldap, ADA, &["cn", "mail", "title", "objectClass"])
        .await
        .unwrap();
    assert_eq!(e["cn"], vec!["Ada Lovelace"]);
    assert!(e["objectclass"].iter().any(|c| c == "inetOrgPerson"));
    assert!(can_bind(&slapd, ADA, "s3cret-ada").await);

    // Only what changed: title removed, mail replaced by two values, cn untouched.
    let update = command(
        TARGET,
        Op::Update,
        object,
        2,
        OU,
        attrs(&[
            ("title", Value::Null),
            (
                "mail",
                Value::List(vec![
                    Value::from("ada@example.com"),
                    Value::from("ada@corp.example.com"),
                ]),
            ),
        ]),
    );
    assert_eq!(
        apply(&target, &update, Some(ADA)).await,
        Outcome::Applied {
            target_object_id: Some(ADA.into())
        }
    );
    let e = entry(&mut ldap, ADA, &["cn", "mail", "title"])
        .await
        .unwrap();
    assert!(!e.contains_key("title"), "{e:?}");
    let mut mail = e["mail"].clone();
    mail.sort();
    assert_eq!(mail, vec!["ada@corp.example.com", "ada@example.com"]);
    assert_eq!(e["cn"], vec!["Ada Lovelace"]);

    // Disabled: locked by ppolicy, the bind is refused.
    let disable = command(TARGET, Op::Disable, object, 3, OU, attrs(&[]));
    assert!(matches!(
        apply(&target, &disable, Some(ADA)).await,
        Outcome::Applied { .. }
    ));
    let e = entry(&mut ldap, ADA, &["pwdAccountLockedTime"])
        .await
        .unwrap();
    assert_eq!(e["pwdaccountlockedtime"], vec!["000001010000Z"]);
    assert!(!can_bind(&slapd, ADA, "s3cret-ada").await);
    assert_eq!(
        apply(&target, &disable, Some(ADA)).await,
        Outcome::AlreadyApplied {
            target_object_id: Some(ADA.into())
        }
    );

    let enable = command(TARGET, Op::Enable, object, 4, OU, attrs(&[]));
    assert!(matches!(
        apply(&target, &enable, Some(ADA)).await,
        Outcome::Applied { .. }
    ));
    assert!(can_bind(&slapd, ADA, "s3cret-ada").await);

    // A new uid renames the entry.
    let rename = command(
        TARGET,
        Op::Update,
        object,
        5,
        OU,
        attrs(&[("uid", Value::from("aking"))]),
    );
    let renamed = "uid=aking,ou=people,dc=corp,dc=example,dc=com";
    assert_eq!(
        apply(&target, &rename, Some(ADA)).await,
        Outcome::Applied {
            target_object_id: Some(renamed.into())
        }
    );
    assert!(entry(&mut ldap, ADA, &["cn"]).await.is_none());
    // Again, as after a crash before the commit: the old name is gone, the new one holds it.
    assert_eq!(
        apply(&target, &rename, Some(ADA)).await,
        Outcome::AlreadyApplied {
            target_object_id: Some(renamed.into())
        }
    );

    let delete = command(TARGET, Op::Delete, object, 6, OU, attrs(&[]));
    assert!(matches!(
        apply(&target, &delete, Some(renamed)).await,
        Outcome::Applied { .. }
    ));
    assert_eq!(people(&mut ldap).await, 0);
    assert_eq!(
        apply(&target, &delete, Some(renamed)).await,
        Outcome::AlreadyApplied {
            target_object_id: Some(renamed.into())
        }
    );
}

#[tokio::test]
async fn create_adopts_an_existing_entry_with_the_same_dn() {
    let slapd = Slapd::start().await.unwrap();
    let target = ldap_target(&slapd, "");
    let mut ldap = admin(&slapd).await;
    ldap.add(
        ADA,
        vec![
            ("objectClass", ["inetOrgPerson"].into()),
            ("uid", ["alovelace"].into()),
            ("cn", ["A. Lovelace"].into()),
            ("sn", ["Lovelace"].into()),
            ("pwdAccountLockedTime", ["000001010000Z"].into()),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();

    let outcome = apply(
        &target,
        &command(TARGET, Op::Create, mesh_object(2), 1, OU, ada()),
        None,
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::AlreadyApplied {
            target_object_id: Some(ADA.into())
        }
    );
    assert_eq!(people(&mut ldap).await, 1, "adopted, not duplicated");
    let e = entry(&mut ldap, ADA, &["cn", "mail", "pwdAccountLockedTime"])
        .await
        .unwrap();
    assert_eq!(e["cn"], vec!["Ada Lovelace"]);
    assert_eq!(e["mail"], vec!["ada@example.com"]);
    assert!(
        !e.contains_key("pwdaccountlockedtime"),
        "a create leaves the entry enabled"
    );
}

#[tokio::test]
async fn the_same_command_applied_twice_has_one_effect() {
    let slapd = Slapd::start().await.unwrap();
    let target = ldap_target(&slapd, "");
    let mut ldap = admin(&slapd).await;
    let object = mesh_object(3);
    let create = command(TARGET, Op::Create, object, 1, OU, ada());
    assert!(matches!(
        apply(&target, &create, None).await,
        Outcome::Applied { .. }
    ));
    let csn = |e: HashMap<String, Vec<String>>| e["entrycsn"].clone();
    let written = csn(entry(&mut ldap, ADA, &["entryCSN"]).await.unwrap());
    assert_eq!(
        apply(&target, &create, None).await,
        Outcome::AlreadyApplied {
            target_object_id: Some(ADA.into())
        }
    );
    assert_eq!(
        csn(entry(&mut ldap, ADA, &["entryCSN"]).await.unwrap()),
        written,
        "the second create did not modify the entry"
    );

    let update = command(
        TARGET,
        Op::Update,
        object,
        2,
        OU,
        attrs(&[("title", Value::from("Countess"))]),
    );
    assert!(matches!(
        apply(&target, &update, Some(ADA)).await,
        Outcome::Applied { .. }
    ));
    let written = csn(entry(&mut ldap, ADA, &["entryCSN"]).await.unwrap());
    assert_eq!(
        apply(&target, &update, Some(ADA)).await,
        Outcome::AlreadyApplied {
            target_object_id: Some(ADA.into())
        }
    );
    assert_eq!(
        csn(entry(&mut ldap, ADA, &["entryCSN"]).await.unwrap()),
        written
    );
    assert_eq!(people(&mut ldap).await, 1);
}

#[tokio::test]
async fn refused_entries_are_permanent_failures_and_a_down_directory_a_retryable_one() {
    let mut slapd = Slapd::start().await.unwrap();
    let target = ldap_target(&slapd, "");
    // inetOrgPerson needs sn: objectClassViolation.
    let outcome = apply(
        &target,
        &command(
            TARGET,
            Op::Create,
            mesh_object(4),
            1,
            OU,
            attrs(&[
                ("uid", Value::from("nosn")),
                ("cn", Value::from("No Surname")),
            ]),
        ),
        None,
    )
    .await;
    assert!(
        matches!(&outcome, Outcome::Permanent(m) if m.contains("65")),
        "{outcome:?}"
    );
    // No naming attribute, no DN.
    let outcome = apply(
        &target,
        &command(
            TARGET,
            Op::Create,
            mesh_object(4),
            1,
            OU,
            attrs(&[("cn", Value::from("x"))]),
        ),
        None,
    )
    .await;
    assert!(
        matches!(&outcome, Outcome::Permanent(m) if m.contains("uid")),
        "{outcome:?}"
    );

    // The directory goes away under an open connection, then the port stays closed.
    slapd.kill();
    let outcome = apply(
        &target,
        &command(TARGET, Op::Create, mesh_object(5), 1, OU, ada()),
        None,
    )
    .await;
    assert!(matches!(outcome, Outcome::Retryable(_)), "{outcome:?}");
    let spec = format!(
        "  type: ldap-target\n  url: ldap://127.0.0.1:{}\n  timeout: 1s\n",
        common::closed_port()
    );
    let down = targets(&target_yaml("down-directory", &spec, OU), &[]);
    let down = down.get(&"down-directory".parse().unwrap()).unwrap();
    let outcome = apply(
        down,
        &command("down-directory", Op::Create, mesh_object(6), 1, OU, ada()),
        None,
    )
    .await;
    assert!(matches!(outcome, Outcome::Retryable(_)), "{outcome:?}");
}
