//! Scenario files: rules, snapshot data and events in one YAML document, run through a fresh
//! world. The engine's scenario goldens (`tests/scenarios/*.yaml`) are written in this form.
//!
//! ```yaml
//! description: what the scenario shows
//! base: reference            # optional: shared rules the caller resolves by name
//! rules: |                   # more rules, appended to the base
//!   kind: Connector
//!   ...
//! data:                      # optional snapshots, per connector
//!   hr: [{ employeeId: "1001", givenName: Ada }]
//! events:                    # optional, applied after the snapshots; see crate::data
//!   - { op: delete, connector: hr, attributes: { employeeId: "1001" } }
//! ```

use std::collections::BTreeMap;

use mesh_engine::{LoadError, SourceFile, load};
use mesh_model::{Attributes, ConnectorId};
use serde::Deserialize;

use crate::data::{EventLine, TimedEvent, snapshot_events};
use crate::report::Report;
use crate::world::{World, WorldError};

/// A scenario as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What it shows.
    pub description: String,
    /// The name of shared rules to start from, resolved by the caller.
    pub base: Option<String>,
    /// The rule documents (after the base's, if any).
    #[serde(default)]
    pub rules: String,
    /// Snapshot records per connector.
    #[serde(default)]
    pub data: BTreeMap<String, Vec<Attributes>>,
    /// Events after the snapshots.
    #[serde(default)]
    pub events: Vec<EventLine>,
}

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file is not a scenario.
    #[error("{0}")]
    Malformed(String),
    /// The rules are refused.
    #[error("the scenario's rules are refused: {}", .0.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Rules(LoadError),
    /// An event is refused.
    #[error("event {index}: {message}")]
    Event {
        /// 1-based, counting snapshot records first.
        index: usize,
        /// Why.
        message: String,
    },
}

/// Runs the scenario in `text` (named `name` in rule positions) and reports the world;
/// `base` returns the shared rules a scenario names in `base:`.
pub fn run(
    text: &str,
    name: &str,
    base: &dyn Fn(&str) -> Option<String>,
) -> Result<Report, ScenarioError> {
    run_with(text, name, base, true)
}

/// Runs the scenario like [`run`], recording explanations only when `tracing` is true.
/// Without them the world takes its shortcuts (see [`World::with_tracing`]); the report must
/// be the same but for its empty trace.
pub fn run_with(
    text: &str,
    name: &str,
    base: &dyn Fn(&str) -> Option<String>,
    tracing: bool,
) -> Result<Report, ScenarioError> {
    let scenario: Scenario =
        serde_saphyr::from_str(text).map_err(|e| ScenarioError::Malformed(e.to_string()))?;
    let mut sources = Vec::new();
    if let Some(name) = &scenario.base {
        let text = base(name)
            .ok_or_else(|| ScenarioError::Malformed(format!("unknown base rules `{name}`")))?;
        sources.push(SourceFile::new(format!("{name}.rules.yaml"), text));
    }
    if !scenario.rules.trim().is_empty() {
        sources.push(SourceFile::new(
            format!("{name}#rules"),
            scenario.rules.clone(),
        ));
    }
    let rules = load(&sources).map_err(ScenarioError::Rules)?;
    let mut events: Vec<TimedEvent> = Vec::new();
    let mut connectors: Vec<(bool, ConnectorId, Vec<Attributes>)> = Vec::new();
    for (connector, records) in scenario.data {
        let id = ConnectorId::parse(&connector)
            .map_err(|e| ScenarioError::Malformed(format!("data: {e}")))?;
        let authoritative = rules.connector(&id).is_some_and(|c| c.authoritative);
        connectors.push((!authoritative, id, records));
    }
    connectors.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    for (_, id, records) in connectors {
        events.extend(snapshot_events(&id, records));
    }
    for line in scenario.events {
        events.push(line.into_event().map_err(|message| ScenarioError::Event {
            index: events.len() + 1,
            message,
        })?);
    }
    let world =
        simulate(World::new(rules).with_tracing(tracing), &events).map_err(|(index, e)| {
            ScenarioError::Event {
                index,
                message: e.to_string(),
            }
        })?;
    Ok(Report::of(&world))
}

/// Applies `events` in order; on a refused event returns its 1-based index and the reason.
pub fn simulate(mut world: World, events: &[TimedEvent]) -> Result<World, (usize, WorldError)> {
    for (i, event) in events.iter().enumerate() {
        world
            .apply(&event.event, event.at)
            .map_err(|e| (i + 1, e))?;
    }
    Ok(world)
}
