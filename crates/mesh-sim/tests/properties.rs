//! Property tests of the pipeline's invariants (STYLE.md "Tests"):
//! - the final mesh does not depend on the order in which the same snapshot records arrive;
//! - applying the same event twice changes nothing;
//! - a deleted mesh object is deprovisioned from every target it was exported to.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use mesh_engine::{SourceFile, TargetState, load};
use mesh_model::{AttributeName, Attributes, ConnectorId, ExportOperation, Value};
use mesh_sim::{Report, SimEvent, World};
use proptest::prelude::*;

const RULES: &str = include_str!("scenarios/base/reference.rules.yaml");

fn world() -> World {
    World::new(load(&[SourceFile::new("reference.rules.yaml", RULES)]).unwrap()).with_tracing(false)
}

fn attributes(pairs: &[(&str, Value)]) -> Attributes {
    pairs
        .iter()
        .map(|(n, v)| (AttributeName::parse(n).unwrap(), v.clone()))
        .collect()
}

fn upsert(connector: &str, pairs: &[(&str, Value)]) -> SimEvent {
    SimEvent::Upsert {
        connector: ConnectorId::parse(connector).unwrap(),
        object_type: None,
        attributes: attributes(pairs),
    }
}

fn delete(connector: &str, id_attribute: &str, id: &str) -> SimEvent {
    SimEvent::Delete {
        connector: ConnectorId::parse(connector).unwrap(),
        object_type: None,
        attributes: attributes(&[(id_attribute, Value::from(id))]),
    }
}

/// One generated person and which systems know them.
#[derive(Debug, Clone)]
struct Person {
    hr: bool,
    hr_display_name: bool,
    department: &'static str,
    terminated: bool,
    ad: bool,
    ad_has_employee_id: bool,
    saas: bool,
}

fn person() -> impl Strategy<Value = Person> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec!["Engineering", "Research", "Contractors"]),
        prop::bool::weighted(0.2),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(hr, hr_display_name, department, terminated, ad, ad_has_employee_id, saas)| Person {
                hr,
                hr_display_name,
                department,
                terminated,
                ad,
                ad_has_employee_id,
                saas,
            },
        )
}

/// The snapshot records of `people`: unique names, so joins are never ambiguous.
fn records(people: &[Person]) -> Vec<SimEvent> {
    let mut events = Vec::new();
    for (i, p) in people.iter().enumerate() {
        let id = format!("{}", 1000 + i);
        let last = format!("Surname{i}");
        let sam = format!("p{}", last.to_lowercase());
        let email = format!("person{i}@example.com");
        if p.hr {
            let mut fields = vec![
                ("employeeId", Value::from(id.as_str())),
                ("givenName", Value::from("Pat")),
                ("surname", Value::from(last.as_str())),
                ("department", Value::from(p.department)),
                ("email", Value::from(email.as_str())),
                (
                    "status",
                    Value::from(if p.terminated { "Terminated" } else { "Active" }),
                ),
            ];
            if p.hr_display_name {
                fields.push(("displayName", Value::from(format!("Pat {last}"))));
            }
            events.push(upsert("hr", &fields));
        }
        if p.ad {
            let mut fields = vec![
                ("objectGUID", Value::from(format!("guid-{i}"))),
                ("objectType", Value::from("User")),
                ("sAMAccountName", Value::from(sam.as_str())),
                ("givenName", Value::from("Pat")),
                ("sn", Value::from(last.as_str())),
                ("mail", Value::from(format!("p.{i}@corp.example.com"))),
            ];
            if p.ad_has_employee_id {
                fields.push(("employeeID", Value::from(id.as_str())));
            }
            events.push(upsert("ad", &fields));
        }
        if p.saas {
            events.push(upsert(
                "saas",
                &[
                    ("id", Value::from(format!("s-{i}"))),
                    ("userName", Value::from(email.as_str())),
                    ("name.givenName", Value::from("Patricia")),
                ],
            ));
        }
    }
    events
}

fn run(events: &[SimEvent]) -> World {
    let mut world = world();
    for event in events {
        world.apply(event, None).unwrap();
    }
    world
}

/// The final mesh without what legitimately depends on history: versions, exports, trace, and
/// target states (an AD account seen before its terminated HR record is provisioned, then
/// deprovisioned; seen after it, never provisioned).
fn final_mesh(world: &World) -> serde_json::Value {
    let mut report = serde_json::to_value(Report::of(world)).unwrap();
    let object = report.as_object_mut().unwrap();
    object.remove("exports");
    object.remove("trace");
    object.remove("transformErrors");
    for mesh_object in object["meshObjects"].as_array_mut().unwrap() {
        let mesh_object = mesh_object.as_object_mut().unwrap();
        mesh_object.remove("version");
        mesh_object.remove("targets");
    }
    report
}

/// Applies `events` at fixed times, each `repeat` times in a row.
fn run_timed(events: &[SimEvent], repeat: usize) -> World {
    let start: DateTime<Utc> = World::epoch();
    let mut world = world();
    for (i, event) in events.iter().enumerate() {
        let at = start + Duration::seconds(i64::try_from(i).unwrap());
        for _ in 0..repeat {
            world.apply(event, Some(at)).unwrap();
        }
    }
    world
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn final_mesh_does_not_depend_on_arrival_order(
        people in prop::collection::vec(person(), 1..8),
        seed in any::<u64>(),
    ) {
        let events = records(&people);
        let mut shuffled = events.clone();
        // A deterministic Fisher-Yates shuffle driven by the generated seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let j = usize::try_from(state % (i as u64 + 1)).unwrap();
            shuffled.swap(i, j);
        }
        prop_assert_eq!(final_mesh(&run(&events)), final_mesh(&run(&shuffled)));
    }

    #[test]
    fn applying_an_event_twice_changes_nothing(
        people in prop::collection::vec(person(), 1..6),
        deletions in prop::collection::vec(0usize..6, 0..4),
    ) {
        let mut events = records(&people);
        for i in deletions {
            events.push(delete("hr", "employeeId", &format!("{}", 1000 + i)));
        }
        let once = run_timed(&events, 1);
        let twice = run_timed(&events, 2);
        prop_assert_eq!(
            serde_json::to_value(Report::of(&once)).unwrap(),
            serde_json::to_value(Report::of(&twice)).unwrap()
        );
    }

    #[test]
    fn a_deleted_mesh_object_is_deprovisioned_everywhere_it_was_exported(
        people in prop::collection::vec(person(), 1..6),
    ) {
        let mut events = records(&people);
        for (i, p) in people.iter().enumerate() {
            if p.hr {
                events.push(delete("hr", "employeeId", &format!("{}", 1000 + i)));
            }
            if p.ad {
                events.push(delete("ad", "objectGUID", &format!("guid-{i}")));
            }
            if p.saas {
                events.push(delete("saas", "id", &format!("s-{i}")));
            }
        }
        let world = run(&events);
        prop_assert!(world.connector_objects().is_empty());
        // The last command per (mesh object, target) of anything ever created takes access away.
        let mut last: BTreeMap<(String, String), ExportOperation> = BTreeMap::new();
        let mut created = BTreeSet::new();
        for command in world.exports() {
            let key = (command.mesh_object.to_string(), command.target.to_string());
            if command.operation == ExportOperation::Create {
                created.insert(key.clone());
            }
            last.insert(key, command.operation);
        }
        for key in &created {
            let op = last[key];
            prop_assert!(
                matches!(op, ExportOperation::Disable | ExportOperation::Delete),
                "{:?} ends with {:?}", key, op
            );
        }
        for record in world.mesh_objects().values() {
            prop_assert!(record.state.lifecycle != mesh_model::LifecycleState::Active);
            for (_, state) in &record.targets {
                prop_assert!(
                    matches!(state, TargetState::Disabled { .. }),
                    "{:?}", state
                );
            }
        }
    }
}
