//! A synthetic estate for load and crash tests: an authoritative HR feed and a directory, both
//! anchored on the employee id, with joiners, movers and leavers.
//!
//! [`events`] is deterministic: the same sizes give the same events, so a clean run and a run
//! with crashes can be compared by digest. Per person, the HR record comes first and the
//! directory account right after it; movers change department, leavers are terminated in HR
//! and their accounts deleted, and a share of the accounts change their phone number.

use mesh_engine::{RuleSet, SourceFile};
use mesh_model::{AttributeName, Attributes, ConnectorId, Value};

use crate::data::TimedEvent;
use crate::world::SimEvent;

/// The rules of the synthetic estate.
pub const RULES: &str = r#"
kind: Connector
metadata: { name: hr }
spec: { type: hr-csv, objectTypes: [User], externalIdAttribute: employeeId,
        authoritative: true, inactiveWhen: 'status == "Terminated"' }
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
kind: JoinRule
metadata: { name: directory-by-employee-id }
spec: { connector: directory, sourceAttribute: employeeID, targetAttribute: EmployeeId,
        isAnchor: true, priority: 1 }
---
kind: FlowRule
metadata: { name: hr-employee-id }
spec: { connector: hr, direction: inbound, sourceAttribute: employeeId,
        targetAttribute: EmployeeId, confidence: 95 }
---
kind: FlowRule
metadata: { name: hr-first-name }
spec: { connector: hr, direction: inbound, sourceAttribute: givenName,
        targetAttribute: FirstName, confidence: 95 }
---
kind: FlowRule
metadata: { name: hr-last-name }
spec: { connector: hr, direction: inbound, sourceAttribute: surname,
        targetAttribute: LastName, confidence: 95 }
---
kind: FlowRule
metadata: { name: hr-department }
spec: { connector: hr, direction: inbound, sourceAttribute: department,
        targetAttribute: Department, confidence: 95 }
---
kind: FlowRule
metadata: { name: directory-employee-id }
spec: { connector: directory, direction: inbound, sourceAttribute: employeeID,
        targetAttribute: EmployeeId, confidence: 80 }
---
kind: FlowRule
metadata: { name: directory-first-name }
spec: { connector: directory, direction: inbound, sourceAttribute: givenName,
        targetAttribute: FirstName, confidence: 80 }
---
kind: FlowRule
metadata: { name: directory-department }
spec: { connector: directory, direction: inbound, sourceAttribute: department,
        targetAttribute: Department, confidence: 70 }
---
kind: FlowRule
metadata: { name: directory-phone }
spec: { connector: directory, direction: inbound, sourceAttribute: telephoneNumber,
        targetAttribute: Phone, confidence: 80 }
---
kind: FlowRule
metadata: { name: directory-mail }
spec: { connector: directory, direction: inbound, sourceAttribute: mail,
        targetAttribute: Email, confidence: 80 }
---
kind: MeshComposerRule
metadata: { name: compose-display-name }
spec: { objectType: User, targetAttribute: DisplayName, confidence: 60,
        transformScript: 'Trim(Concat(FirstName, " ", LastName))' }
"#;

/// Returns the rule set of the synthetic estate.
pub fn rules() -> Result<RuleSet, mesh_engine::LoadError> {
    mesh_engine::load(&[SourceFile::new("synthetic.rules.yaml", RULES)])
}

/// How big the synthetic stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// People joining: an HR record and a directory account each (two events).
    pub people: usize,
    /// HR records that change department afterwards (one event each).
    pub movers: usize,
    /// Directory accounts that change phone number afterwards (one event each).
    pub phone_changes: usize,
    /// People who leave: HR terminates them, then the account is deleted (two events each).
    pub leavers: usize,
}

impl Sizes {
    /// Sizes giving about `total` events: 80 % joiners, 10 % movers, 5 % phone changes and
    /// 5 % leaver events.
    pub fn for_events(total: usize) -> Self {
        Self {
            people: total * 2 / 5,
            movers: total / 10,
            phone_changes: total / 20,
            leavers: total / 40,
        }
    }

    /// The number of events [`events`] returns.
    pub fn total(&self) -> usize {
        self.people * 2 + self.movers + self.phone_changes + self.leavers * 2
    }
}

const DEPARTMENTS: [&str; 5] = ["Engineering", "Research", "Sales", "Finance", "Support"];

fn record(pairs: &[(&str, String)]) -> Attributes {
    pairs
        .iter()
        .filter_map(|(n, v)| Some((AttributeName::parse(n).ok()?, Value::from(v.as_str()))))
        .collect()
}

fn hr(i: usize, department: &str, status: &str) -> Attributes {
    record(&[
        ("employeeId", format!("{}", 100_000 + i)),
        ("givenName", format!("Given{i}")),
        ("surname", format!("Surname{i}")),
        ("department", department.to_owned()),
        ("status", status.to_owned()),
    ])
}

fn account(i: usize, phone: usize) -> Attributes {
    record(&[
        ("objectGUID", format!("guid-{i:08}")),
        ("employeeID", format!("{}", 100_000 + i)),
        ("givenName", format!("G{i}")),
        ("department", "Unknown".to_owned()),
        ("telephoneNumber", format!("+1 555 {phone:07}")),
        ("mail", format!("given{i}.surname{i}@example.com")),
    ])
}

fn upsert(connector: &ConnectorId, attributes: Attributes) -> TimedEvent {
    TimedEvent {
        event: SimEvent::Upsert {
            connector: connector.clone(),
            object_type: None,
            attributes,
        },
        at: None,
    }
}

/// The synthetic stream of `sizes` (see the module documentation).
pub fn events(sizes: Sizes) -> Vec<TimedEvent> {
    events_from(sizes, 0)
}

/// The synthetic stream of `sizes` for people numbered from `first` on, so that runs against
/// one mesh can use people it has not seen.
pub fn events_from(sizes: Sizes, first: usize) -> Vec<TimedEvent> {
    let (Ok(hr_id), Ok(directory)) = (ConnectorId::parse("hr"), ConnectorId::parse("directory"))
    else {
        return Vec::new();
    };
    let department = |i: usize| {
        DEPARTMENTS
            .get(i % DEPARTMENTS.len())
            .copied()
            .unwrap_or("None")
    };
    let mut events = Vec::with_capacity(sizes.total());
    for i in first..first + sizes.people {
        events.push(upsert(&hr_id, hr(i, department(i), "Active")));
        events.push(upsert(&directory, account(i, i)));
    }
    let people = sizes.people.max(1);
    for m in 0..sizes.movers {
        // Spread over everyone, moving each one department on.
        let i = first + (m * 7919) % people;
        events.push(upsert(&hr_id, hr(i, department(i + 1), "Active")));
    }
    for p in 0..sizes.phone_changes {
        let i = first + (p * 104_729) % people;
        events.push(upsert(&directory, account(i, i + 1_000_000)));
    }
    for l in 0..sizes.leavers {
        let i = first + people - 1 - (l % people);
        events.push(upsert(&hr_id, hr(i, department(i), "Terminated")));
        events.push(TimedEvent {
            event: SimEvent::Delete {
                connector: directory.clone(),
                object_type: None,
                attributes: account(i, i),
            },
            at: None,
        });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::World;

    #[test]
    fn the_synthetic_estate_loads_and_runs_into_one_mesh_object_per_person() {
        let sizes = Sizes::for_events(1000);
        let events = events(sizes);
        assert_eq!(events.len(), sizes.total());
        let world = crate::simulate(World::new(rules().unwrap()), &events).unwrap();
        assert_eq!(world.mesh_objects().len(), sizes.people);
        let leavers = world
            .mesh_objects()
            .values()
            .filter(|r| r.state.lifecycle == mesh_model::LifecycleState::Leaver)
            .count();
        assert_eq!(leavers, sizes.leavers);
    }
}
