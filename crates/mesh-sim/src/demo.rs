//! `meshd demo`: the examples/ estate through the whole pipeline, as a report people read.
//!
//! The report says what joined (and what did not), which source won each attribute and why
//! (the winner's confidence against the others'), and what would be exported where.

use std::fmt::Write as _;
use std::path::Path;

use mesh_engine::{Source, load};
use mesh_model::JoinState;

use crate::files::{FilesError, read_data, read_rules};
use crate::scenario::simulate;
use crate::world::{World, WorldError};

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file could not be read.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The example rules are refused.
    #[error("the example rules are refused:\n{}", .0.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Rules(mesh_engine::LoadError),
    /// An event is refused.
    #[error("event {index}: {source}")]
    Event {
        /// 1-based.
        index: usize,
        /// Why.
        #[source]
        source: WorldError,
    },
}

/// Runs `examples_dir/rules` over `examples_dir/data` and returns the report.
pub fn run(examples_dir: &Path) -> Result<String, DemoError> {
    let sources = read_rules(&examples_dir.join("rules"))?;
    let rules = load(&sources).map_err(DemoError::Rules)?;
    let events = read_data(&examples_dir.join("data"), &rules)?;
    let count = events.len();
    let world = simulate(World::new(rules), &events)
        .map_err(|(index, source)| DemoError::Event { index, source })?;
    Ok(render(&world, sources.len(), count))
}

/// Renders the demo report of a world.
pub fn render(world: &World, rule_files: usize, events: usize) -> String {
    let mut out = String::new();
    let rules = world.rules();
    let _ = writeln!(out, "Identity Mesh demo");
    let _ = writeln!(out, "==================");
    let _ = writeln!(
        out,
        "{rule_files} rule files, {} connectors; {events} changes imported; {} mesh objects; {} export commands.\n",
        rules.connectors().count(),
        world.mesh_objects().len(),
        world.exports().len()
    );
    let mut records: Vec<_> = world.mesh_objects().values().collect();
    records.sort_by(|a, b| {
        (&a.state.object_type, &a.state.anchor).cmp(&(&b.state.object_type, &b.state.anchor))
    });
    for record in records {
        let state = &record.state;
        let title = state
            .attributes
            .get_str("DisplayName")
            .map(ToString::to_string)
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{} {}  {}  [{}]",
            state.object_type,
            state.anchor.as_deref().unwrap_or("-"),
            title,
            state.lifecycle
        );
        let joined: Vec<String> = record
            .links
            .iter()
            .map(|l| format!("{}:{}", l.object.connector, l.object.external_id))
            .collect();
        let _ = writeln!(out, "  joined: {}", joined.join(", "));
        for (name, value) in &state.attributes {
            let Some(lineage) = state.lineage.get(name) else {
                continue;
            };
            let winner = match &lineage.source {
                Source::Flow {
                    connector_object,
                    rule,
                } => format!("{} ({rule})", connector_object.connector),
                Source::Composer { rule } => format!("composed ({rule})"),
                Source::Override => "override".to_owned(),
            };
            let others: Vec<String> = record
                .links
                .iter()
                .flat_map(|l| &l.contributions)
                .chain(&record.composed)
                .filter(|c| c.attribute == *name && c.source != lineage.source)
                .map(|c| {
                    let who = match &c.source {
                        Source::Flow {
                            connector_object, ..
                        } => connector_object.connector.to_string(),
                        Source::Composer { rule } => format!("composer {rule}"),
                        Source::Override => "override".to_owned(),
                    };
                    format!("{who} {:?} at {}", c.value.to_string(), c.confidence)
                })
                .collect();
            let why = if others.is_empty() {
                "only source".to_owned()
            } else {
                format!("beats {}", others.join(", "))
            };
            let _ = writeln!(
                out,
                "  {:<16} {:<28} <- {winner} at {}; {why}",
                name.as_str(),
                value.to_string(),
                lineage.confidence
            );
        }
        for (target, held) in &record.targets {
            let status = match held {
                mesh_engine::TargetState::Provisioned { .. } => "provisioned".to_owned(),
                mesh_engine::TargetState::Disabled {
                    delete_after: Some(t),
                    ..
                } => format!("disabled, deleted after {t}"),
                mesh_engine::TargetState::Disabled { .. } => "disabled".to_owned(),
            };
            let _ = writeln!(out, "  -> {target}: {status}");
        }
        out.push('\n');
    }
    let mut objects: Vec<_> = world.connector_objects().iter().collect();
    objects.sort_by(|a, b| a.0.cmp(b.0));
    let unjoined: Vec<String> = objects
        .into_iter()
        .filter_map(|(object, record)| match &record.state {
            JoinState::Disconnector => Some(format!("  disconnector {object}")),
            JoinState::Ambiguous { rule, candidates } => Some(format!(
                "  ambiguous {object}: rule {rule} matched {} mesh objects; waiting for review",
                candidates.len()
            )),
            _ => None,
        })
        .collect();
    if !unjoined.is_empty() {
        let _ = writeln!(out, "Not joined");
        for line in unjoined {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "Export commands");
    for command in world.exports() {
        let anchor = world
            .mesh_objects()
            .get(&command.mesh_object)
            .and_then(|r| r.state.anchor.clone())
            .unwrap_or_default();
        let attributes: Vec<String> = command
            .attributes
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "  {:<7} {:<14} {:<16} {:<8} {}",
            command.operation,
            command.target,
            command.container,
            anchor,
            attributes.join(", ")
        );
    }
    if !world.transform_errors().is_empty() {
        let _ = writeln!(
            out,
            "\nTransform errors (contributions skipped, pipeline went on)"
        );
        for e in world.transform_errors() {
            let _ = writeln!(
                out,
                "  {} on {}: {} {}",
                e.rule, e.subject, e.code, e.message
            );
        }
    }
    out
}
