//! What a simulation produced, in the shape `meshctl simulate -o json` prints, and a table
//! rendering for people.
//!
//! Order is part of the contract (goldens compare it): mesh objects by type, anchor and id;
//! disconnectors and ambiguous objects by connector object; exports and errors in the order
//! they were issued.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mesh_engine::{Source, TransformError};
use mesh_model::{Attributes, JoinState, MeshObjectId};
use serde::Serialize;

use crate::world::World;

/// The result of a simulation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Every mesh object.
    pub mesh_objects: Vec<MeshObjectView>,
    /// Connector objects that joined nothing.
    pub disconnectors: Vec<ConnectorObjectView>,
    /// Connector objects waiting for review.
    pub ambiguous: Vec<AmbiguousView>,
    /// Every export command, in order.
    pub exports: Vec<ExportView>,
    /// Every transform error, in order.
    pub transform_errors: Vec<TransformError>,
    /// The explanation of every decision, in order (empty when tracing was off).
    pub trace: Vec<String>,
}

/// One mesh object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshObjectView {
    /// Its id.
    pub id: MeshObjectId,
    /// Its type.
    pub object_type: String,
    /// Its anchor.
    pub anchor: Option<String>,
    /// Its version.
    pub version: u64,
    /// Its lifecycle state.
    pub state: String,
    /// The resolved attributes.
    pub attributes: Attributes,
    /// Where each came from.
    pub lineage: BTreeMap<String, LineageView>,
    /// The connectors of the connector objects joined to it, in name order.
    pub connectors: Vec<String>,
    /// Per-object overrides in force.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, mesh_model::Value>,
    /// What each target holds: `provisioned` or `disabled`.
    pub targets: BTreeMap<String, String>,
}

/// Where one resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineageView {
    /// The source connector, for a flowed value.
    pub connector: Option<String>,
    /// The rule, unless an override set it.
    pub rule: Option<String>,
    /// The winning confidence.
    pub confidence: u8,
    /// `flow`, `composer` or `override`.
    pub source: &'static str,
}

/// A connector object that joined nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorObjectView {
    /// Its connector.
    pub connector: String,
    /// Its type.
    pub object_type: String,
    /// Its external id.
    pub external_id: String,
    /// Its raw attributes.
    pub attributes: Attributes,
}

/// A connector object whose join matched several mesh objects.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AmbiguousView {
    /// Its connector.
    pub connector: String,
    /// Its type.
    pub object_type: String,
    /// Its external id.
    pub external_id: String,
    /// The rule that matched several.
    pub rule: String,
    /// The anchors (or ids) of the candidates.
    pub candidates: Vec<String>,
}

/// One export command.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportView {
    /// The target connector.
    pub target: String,
    /// `create`, `update`, `disable`, `enable` or `delete`.
    pub op: String,
    /// Where the object lives in the target.
    pub container: String,
    /// The object type.
    pub object_type: String,
    /// The target attributes carried.
    pub attributes: Attributes,
    /// The idempotency key.
    pub key: String,
    /// The mesh object's anchor.
    pub anchor: Option<String>,
    /// The mesh object.
    pub mesh_object: MeshObjectId,
    /// Its version.
    pub version: u64,
    /// The projection rule.
    pub rule: String,
}

impl Report {
    /// Describes the world as it is now.
    pub fn of(world: &World) -> Self {
        let anchor_of = |id: &MeshObjectId| {
            world
                .mesh_objects()
                .get(id)
                .and_then(|r| r.state.anchor.clone())
        };
        let mut mesh_objects: Vec<MeshObjectView> = world
            .mesh_objects()
            .values()
            .map(|record| {
                let state = &record.state;
                MeshObjectView {
                    id: state.id,
                    object_type: state.object_type.to_string(),
                    anchor: state.anchor.clone(),
                    version: state.version,
                    state: state.lifecycle.to_string(),
                    attributes: state.attributes.clone(),
                    lineage: state
                        .lineage
                        .iter()
                        .map(|(name, lineage)| {
                            let (connector, source) = match &lineage.source {
                                Source::Flow {
                                    connector_object, ..
                                } => (Some(connector_object.connector.to_string()), "flow"),
                                Source::Composer { .. } => (None, "composer"),
                                Source::Override => (None, "override"),
                            };
                            (
                                name.to_string(),
                                LineageView {
                                    connector,
                                    rule: lineage.source.rule().map(ToString::to_string),
                                    confidence: lineage.confidence.get(),
                                    source,
                                },
                            )
                        })
                        .collect(),
                    connectors: {
                        let mut names: Vec<String> = record
                            .links
                            .iter()
                            .map(|l| l.object.connector.to_string())
                            .collect();
                        names.dedup();
                        names
                    },
                    overrides: record
                        .overrides
                        .iter()
                        .map(|(name, o)| (name.to_string(), o.value.clone()))
                        .collect(),
                    targets: record
                        .targets
                        .iter()
                        .map(|(target, state)| {
                            let status = match state {
                                mesh_engine::TargetState::Provisioned { .. } => "provisioned",
                                mesh_engine::TargetState::Disabled {
                                    delete_after: Some(_),
                                    ..
                                } => "disabled (deletion pending)",
                                mesh_engine::TargetState::Disabled { .. } => "disabled",
                            };
                            (target.to_string(), status.to_owned())
                        })
                        .collect(),
                }
            })
            .collect();
        mesh_objects.sort_by(|a, b| {
            (&a.object_type, &a.anchor, a.id).cmp(&(&b.object_type, &b.anchor, b.id))
        });
        let mut disconnectors = Vec::new();
        let mut ambiguous = Vec::new();
        let mut objects: Vec<_> = world.connector_objects().iter().collect();
        objects.sort_by(|a, b| a.0.cmp(b.0));
        for (object, record) in objects {
            match &record.state {
                JoinState::Disconnector => disconnectors.push(ConnectorObjectView {
                    connector: object.connector.to_string(),
                    object_type: object.object_type.to_string(),
                    external_id: object.external_id.to_string(),
                    attributes: record.attributes.clone(),
                }),
                JoinState::Ambiguous { rule, candidates } => ambiguous.push(AmbiguousView {
                    connector: object.connector.to_string(),
                    object_type: object.object_type.to_string(),
                    external_id: object.external_id.to_string(),
                    rule: rule.to_string(),
                    candidates: candidates
                        .iter()
                        .map(|id| anchor_of(id).unwrap_or_else(|| id.to_string()))
                        .collect(),
                }),
                _ => {}
            }
        }
        let exports = world
            .exports()
            .iter()
            .map(|command| ExportView {
                target: command.target.to_string(),
                op: command.operation.to_string(),
                container: command.container.clone(),
                object_type: command.object_type.to_string(),
                attributes: command.attributes.clone(),
                key: command.idempotency_key.to_string(),
                anchor: anchor_of(&command.mesh_object),
                mesh_object: command.mesh_object,
                version: command.mesh_object_version,
                rule: command.rule.to_string(),
            })
            .collect();
        Self {
            mesh_objects,
            disconnectors,
            ambiguous,
            exports,
            transform_errors: world.transform_errors().to_vec(),
            trace: world.trace().to_vec(),
        }
    }

    /// Renders the report as tables for people.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "MESH OBJECTS ({})", self.mesh_objects.len());
        for object in &self.mesh_objects {
            let _ = writeln!(
                out,
                "  {} {} [{}] v{}  joined: {}",
                object.object_type,
                object.anchor.as_deref().unwrap_or("-"),
                object.state,
                object.version,
                object.connectors.join(", ")
            );
            let width = object
                .attributes
                .iter()
                .map(|(n, _)| n.as_str().len())
                .max()
                .unwrap_or(0);
            for (name, value) in &object.attributes {
                let source = object.lineage.get(name.as_str()).map_or_else(
                    || "override".to_owned(),
                    |l| {
                        format!(
                            "{} {} @{}",
                            l.connector.as_deref().unwrap_or(l.source),
                            l.rule.as_deref().unwrap_or(""),
                            l.confidence
                        )
                    },
                );
                let _ = writeln!(
                    out,
                    "    {:width$}  {:<32}  <- {source}",
                    name.as_str(),
                    value.to_string()
                );
            }
        }
        if !self.disconnectors.is_empty() {
            let _ = writeln!(out, "\nDISCONNECTORS ({})", self.disconnectors.len());
            for d in &self.disconnectors {
                let _ = writeln!(out, "  {}/{}/{}", d.connector, d.object_type, d.external_id);
            }
        }
        if !self.ambiguous.is_empty() {
            let _ = writeln!(out, "\nAMBIGUOUS ({})", self.ambiguous.len());
            for a in &self.ambiguous {
                let _ = writeln!(
                    out,
                    "  {}/{}/{}  rule {} matched {}",
                    a.connector,
                    a.object_type,
                    a.external_id,
                    a.rule,
                    a.candidates.join(", ")
                );
            }
        }
        let _ = writeln!(out, "\nEXPORTS ({})", self.exports.len());
        for e in &self.exports {
            let attributes: Vec<String> = e
                .attributes
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            let _ = writeln!(
                out,
                "  {:<8} {:<16} {:<20} {:<10} {}",
                e.op,
                e.target,
                e.container,
                e.anchor.as_deref().unwrap_or("-"),
                attributes.join(" ")
            );
        }
        if !self.transform_errors.is_empty() {
            let _ = writeln!(out, "\nTRANSFORM ERRORS ({})", self.transform_errors.len());
            for t in &self.transform_errors {
                let _ = writeln!(
                    out,
                    "  {} on {}: {} {}",
                    t.rule, t.subject, t.code, t.message
                );
            }
        }
        out
    }
}
