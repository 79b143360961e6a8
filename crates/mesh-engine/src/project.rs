//! Projection: what each target must hold for one mesh object, as export commands.
//!
//! A mesh object is in scope of a projection rule when its type is the rule's object type, its
//! lifecycle is active, and the rule's filter holds over its resolved attributes. Outbound flow
//! rules of the target shape the target attributes (without any, every mesh attribute is
//! exported under its own name). Against what the target holds ([`TargetState`]):
//!
//! | scope | target holds | commands | target then holds |
//! |---|---|---|---|
//! | in | nothing | create (all attributes) | provisioned |
//! | in | provisioned | update (only what changed; a removed attribute is sent as null) | provisioned |
//! | in | disabled | enable, then update if anything changed | provisioned |
//! | out | provisioned | the rule's deprovision: disable, delete, or disable with a deadline | disabled or nothing |
//! | out | disabled with a deadline that has passed | delete | nothing |
//!
//! A filter that fails at run time leaves that target untouched (and reports the error): a
//! broken filter must never mass-deprovision. A timer (the projection service's, or the
//! simulator's clock) calls [`project`] again with a later `now` to carry out due deletions;
//! re-entering scope before the deadline enables the object again (a rejoin in grace).
//!
//! Every command's idempotency key is (mesh object, target, mesh object version, operation), so
//! applying a command twice has one effect and two commands of one projection never collide.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mesh_expr::{EvalContext, EvalError};
use mesh_model::{
    AttributeName, Attributes, ConnectorId, EventId, ExportCommand, ExportOperation,
    IdempotencyKey, LifecycleState, MeshObjectId, ObjectType, RuleName, Value,
};
use serde::Serialize;

use crate::flow::TransformError;
use crate::rules::{Deprovision, ProjectionRule, RuleSet};
use crate::trace::Trace;

/// What a target holds for one mesh object, as far as the projection stage knows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum TargetState {
    /// The object exists and has these (last exported) target attributes.
    #[serde(rename_all = "camelCase")]
    Provisioned {
        /// The target attributes last exported.
        attributes: Attributes,
        /// The object's id in the target, once a result told it.
        target_object_id: Option<String>,
    },
    /// The object exists but is disabled.
    #[serde(rename_all = "camelCase")]
    Disabled {
        /// The target attributes last exported.
        attributes: Attributes,
        /// The object's id in the target, once a result told it.
        target_object_id: Option<String>,
        /// When it is to be deleted (`disable-then-delete`), if ever.
        delete_after: Option<DateTime<Utc>>,
    },
}

impl TargetState {
    fn target_object_id(&self) -> Option<String> {
        match self {
            Self::Provisioned {
                target_object_id, ..
            }
            | Self::Disabled {
                target_object_id, ..
            } => target_object_id.clone(),
        }
    }
}

/// What projection needs about one mesh object.
#[derive(Debug, Clone, Copy)]
pub struct ProjectInput<'a> {
    /// The mesh object.
    pub mesh_object: MeshObjectId,
    /// Its type.
    pub object_type: &'a ObjectType,
    /// Its version now.
    pub version: u64,
    /// Its lifecycle now.
    pub lifecycle: LifecycleState,
    /// Its resolved attributes now.
    pub attributes: &'a Attributes,
    /// What each target holds for it now, by target connector: the services' map, or the
    /// simulator's sorted list.
    pub targets: &'a dyn HeldTargets,
    /// The event that caused the projection.
    pub cause: EventId,
}

/// What a mesh object's targets hold, by target connector.
pub trait HeldTargets: std::fmt::Debug {
    /// What `target` holds, if anything.
    fn held(&self, target: &ConnectorId) -> Option<&TargetState>;
}

impl HeldTargets for BTreeMap<ConnectorId, TargetState> {
    fn held(&self, target: &ConnectorId) -> Option<&TargetState> {
        self.get(target)
    }
}

/// A list sorted by target connector, one entry per target: a mesh object projects to a few
/// targets, and a list holds two in a tenth of the memory of a B-tree node.
impl HeldTargets for Vec<(ConnectorId, TargetState)> {
    fn held(&self, target: &ConnectorId) -> Option<&TargetState> {
        self.binary_search_by(|(t, _)| t.cmp(target))
            .ok()
            .and_then(|at| self.get(at))
            .map(|(_, state)| state)
    }
}

/// The projection stage's outcome for one mesh object.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// The export commands, by target name then in the order to apply them.
    pub commands: Vec<ExportCommand>,
    /// What each target holds once the commands are applied; `None` means nothing (persist
    /// by replacing the entries named here; targets not named are unchanged).
    ///
    /// In target order, one entry per target: a mesh object projects to a few targets, and a
    /// sorted vector holds them in one allocation where a B-tree map took a node of eleven.
    pub targets: Vec<(ConnectorId, Option<TargetState>)>,
    /// Filters and outbound scripts that failed.
    pub transform_errors: Vec<TransformError>,
    /// Why.
    pub trace: Trace,
}

/// Shapes the target attributes of `target` from the resolved mesh attributes: each outbound
/// flow rule of the target sets one target attribute (null results are left out); a target
/// without outbound rules receives every mesh attribute under its own name. Returns the
/// scripts that failed with their rule names.
pub fn outbound(
    rules: &RuleSet,
    target: &ConnectorId,
    object_type: &ObjectType,
    attributes: &Attributes,
    context: &EvalContext,
) -> (Attributes, Vec<(RuleName, AttributeName, EvalError)>) {
    let flows = rules.outbound_flow_rules(target);
    let mut errors = Vec::new();
    if flows.is_empty() {
        return (attributes.clone(), errors);
    }
    let mut shaped = Attributes::new();
    for rule in flows.iter().filter(|r| r.applies_to(object_type)) {
        let value = match (&rule.transform, &rule.source_attribute) {
            (Some(script), _) => match script.program.eval(attributes, context) {
                Ok(value) => value,
                Err(error) => {
                    errors.push((rule.name.clone(), rule.target_attribute.clone(), error));
                    continue;
                }
            },
            (None, Some(source)) => attributes.get(source).cloned().unwrap_or(Value::Null),
            (None, None) => Value::Null,
        };
        if !crate::flow::is_no_value(&value) {
            shaped.insert(rule.target_attribute.clone(), value);
        }
    }
    (shaped, errors)
}

/// Projects one mesh object to every target (see the module documentation).
pub fn project(
    rules: &RuleSet,
    input: &ProjectInput<'_>,
    now: DateTime<Utc>,
    mut trace: Trace,
) -> Projection {
    let context = EvalContext::new(now);
    let subject = || format!("mesh object {}", input.mesh_object);
    let mut projection = Projection {
        commands: Vec::new(),
        targets: Vec::new(),
        transform_errors: Vec::new(),
        trace: Trace::disabled(),
    };
    for rule in rules.projection_rules() {
        if rule.object_type != *input.object_type {
            continue;
        }
        let current = input.targets.held(&rule.target);
        let in_scope = if input.lifecycle != LifecycleState::Active {
            trace.note(|| {
                format!(
                    "{}: out of scope, the mesh object is {}",
                    rule.name, input.lifecycle
                )
            });
            false
        } else {
            match &rule.filter {
                None => true,
                Some(filter) => match filter.program.eval_filter(input.attributes, &context) {
                    Ok(holds) => {
                        trace.note(|| {
                            format!("{}: filter `{}` is {holds}", rule.name, filter.source())
                        });
                        holds
                    }
                    Err(error) => {
                        trace.note(|| {
                            format!(
                                "{}: filter failed ({} {error}); target {} left as it is",
                                rule.name,
                                error.code(),
                                rule.target
                            )
                        });
                        projection.transform_errors.push(TransformError {
                            rule: rule.name.to_string(),
                            subject: subject(),
                            attribute: None,
                            code: error.code().to_owned(),
                            message: error.to_string(),
                            event: input.cause,
                        });
                        continue;
                    }
                },
            }
        };
        let mut plan = Plan {
            rule,
            input,
            now,
            commands: &mut projection.commands,
            transform_errors: &mut projection.transform_errors,
        };
        let next = if in_scope {
            let (shaped, errors) = outbound(
                rules,
                &rule.target,
                input.object_type,
                input.attributes,
                &context,
            );
            for (rule, attribute, error) in errors {
                trace
                    .note(|| format!("outbound flow rule {rule} failed: {} {error}", error.code()));
                plan.transform_errors.push(TransformError {
                    rule: rule.to_string(),
                    subject: subject(),
                    attribute: Some(attribute),
                    code: error.code().to_owned(),
                    message: error.to_string(),
                    event: input.cause,
                });
            }
            plan.in_scope(current, shaped, &mut trace)
        } else {
            plan.out_of_scope(current, &mut trace)
        };
        if next.as_ref() != current {
            // As a map's insert: in target order, a later rule for a target replaces.
            match projection
                .targets
                .binary_search_by(|(target, _)| target.cmp(&rule.target))
            {
                Ok(at) => {
                    if let Some((_, slot)) = projection.targets.get_mut(at) {
                        *slot = next;
                    }
                }
                Err(at) => projection.targets.insert(at, (rule.target.clone(), next)),
            }
        }
    }
    projection.trace = trace;
    projection
}

struct Plan<'a, 'b> {
    rule: &'a ProjectionRule,
    input: &'a ProjectInput<'b>,
    now: DateTime<Utc>,
    commands: &'a mut Vec<ExportCommand>,
    transform_errors: &'a mut Vec<TransformError>,
}

impl Plan<'_, '_> {
    fn emit(
        &mut self,
        operation: ExportOperation,
        attributes: Attributes,
        target_object_id: Option<String>,
    ) {
        self.commands.push(ExportCommand {
            idempotency_key: IdempotencyKey::new(
                self.input.mesh_object,
                &self.rule.target,
                self.input.version,
                operation,
            ),
            target: self.rule.target.clone(),
            operation,
            container: self.rule.container.clone(),
            object_type: self.input.object_type.clone(),
            attributes,
            target_object_id,
            mesh_object: self.input.mesh_object,
            mesh_object_version: self.input.version,
            rule: self.rule.name.clone(),
            cause: self.input.cause,
            issued_at: self.now,
            attempt: 1,
        });
    }

    fn in_scope(
        &mut self,
        current: Option<&TargetState>,
        shaped: Attributes,
        trace: &mut Trace,
    ) -> Option<TargetState> {
        let target = &self.rule.target;
        match current {
            None => {
                trace.note(|| {
                    format!(
                        "{target}: enters scope; create in {} with {} attributes",
                        self.rule.container,
                        shaped.len()
                    )
                });
                self.emit(ExportOperation::Create, shaped.clone(), None);
                Some(TargetState::Provisioned {
                    attributes: shaped,
                    target_object_id: None,
                })
            }
            Some(TargetState::Provisioned {
                attributes,
                target_object_id,
            }) => {
                let changed = changed_attributes(attributes, &shaped);
                if !changed.is_empty() {
                    trace.note(|| {
                        let names: Vec<&str> = changed.iter().map(|(n, _)| n.as_str()).collect();
                        format!("{target}: update {}", names.join(", "))
                    });
                    self.emit(ExportOperation::Update, changed, target_object_id.clone());
                }
                Some(TargetState::Provisioned {
                    attributes: shaped,
                    target_object_id: target_object_id.clone(),
                })
            }
            Some(TargetState::Disabled {
                attributes,
                target_object_id,
                delete_after,
            }) => {
                trace.note(|| match delete_after {
                    Some(deadline) => {
                        format!("{target}: back in scope before its deletion at {deadline}; enable")
                    }
                    None => format!("{target}: back in scope; enable"),
                });
                self.emit(
                    ExportOperation::Enable,
                    Attributes::new(),
                    target_object_id.clone(),
                );
                let changed = changed_attributes(attributes, &shaped);
                if !changed.is_empty() {
                    self.emit(ExportOperation::Update, changed, target_object_id.clone());
                }
                Some(TargetState::Provisioned {
                    attributes: shaped,
                    target_object_id: target_object_id.clone(),
                })
            }
        }
    }

    fn out_of_scope(
        &mut self,
        current: Option<&TargetState>,
        trace: &mut Trace,
    ) -> Option<TargetState> {
        let target = self.rule.target.clone();
        match current {
            None => None,
            Some(TargetState::Provisioned {
                attributes,
                target_object_id,
            }) => match self.rule.deprovision {
                Deprovision::Disable => {
                    trace.note(|| format!("{target}: leaves scope; disable"));
                    self.emit(
                        ExportOperation::Disable,
                        Attributes::new(),
                        target_object_id.clone(),
                    );
                    Some(TargetState::Disabled {
                        attributes: attributes.clone(),
                        target_object_id: target_object_id.clone(),
                        delete_after: None,
                    })
                }
                Deprovision::Delete => {
                    trace.note(|| format!("{target}: leaves scope; delete"));
                    self.emit(
                        ExportOperation::Delete,
                        Attributes::new(),
                        target_object_id.clone(),
                    );
                    None
                }
                Deprovision::DisableThenDelete { grace_period } => {
                    let deadline = chrono::Duration::from_std(grace_period)
                        .ok()
                        .and_then(|g| self.now.checked_add_signed(g))
                        .unwrap_or(DateTime::<Utc>::MAX_UTC);
                    trace.note(|| {
                        format!("{target}: leaves scope; disable, delete after {deadline}")
                    });
                    self.emit(
                        ExportOperation::Disable,
                        Attributes::new(),
                        target_object_id.clone(),
                    );
                    Some(TargetState::Disabled {
                        attributes: attributes.clone(),
                        target_object_id: target_object_id.clone(),
                        delete_after: Some(deadline),
                    })
                }
            },
            Some(state @ TargetState::Disabled { delete_after, .. }) => match delete_after {
                Some(deadline) if self.now >= *deadline => {
                    trace.note(|| format!("{target}: grace period over at {deadline}; delete"));
                    self.emit(
                        ExportOperation::Delete,
                        Attributes::new(),
                        state.target_object_id(),
                    );
                    None
                }
                _ => Some(state.clone()),
            },
        }
    }
}

/// The target attributes that differ: changed or new ones with their value, removed ones as
/// null (the target clears them).
fn changed_attributes(old: &Attributes, new: &Attributes) -> Attributes {
    crate::resolve::diff(old, new)
        .into_iter()
        .map(|change| (change.name, change.new))
        .collect()
}
