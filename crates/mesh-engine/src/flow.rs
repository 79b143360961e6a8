//! Inbound flow: a joined connector object's raw attributes become contributions.
//!
//! Each inbound flow rule of the object's connector (and object type) yields at most one
//! [`Contribution`]: the rule's script evaluated over the raw attributes, or the
//! `sourceAttribute` copied as is. A null result contributes nothing, which is how a source
//! withdraws a value. A script that fails at run time skips its contribution and is reported as
//! a [`TransformError`]; the other rules still flow.
//!
//! The contributions returned are the complete set from this connector object: the caller
//! replaces the object's previous contributions with them (a change event is a full snapshot),
//! so a rule whose value became null or failed no longer contributes.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mesh_expr::EvalContext;
use mesh_model::{
    AttributeName, Attributes, Confidence, ConnectorObjectRef, EventId, MeshObjectId, RuleName,
    Value,
};
use serde::{Deserialize, Serialize};

use crate::rules::RuleSet;
use crate::trace::{Trace, show};

/// Where a contribution comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Source {
    /// An inbound flow rule over a connector object.
    #[serde(rename_all = "camelCase")]
    Flow {
        /// The connector object: one shared copy for all the contributions of one flow, and
        /// for the lineage entries they win (a reference count, not three, per copy).
        connector_object: Arc<ConnectorObjectRef>,
        /// The flow rule.
        rule: RuleName,
    },
    /// A MeshComposer rule over the resolved mesh attributes.
    Composer {
        /// The composer rule.
        rule: RuleName,
    },
    /// A per-object override set by an operator.
    Override,
}

impl Source {
    /// Returns the rule, when a rule contributed.
    pub fn rule(&self) -> Option<&RuleName> {
        match self {
            Self::Flow { rule, .. } | Self::Composer { rule } => Some(rule),
            Self::Override => None,
        }
    }

    /// Returns the connector object, for a flow contribution.
    pub fn connector_object(&self) -> Option<&ConnectorObjectRef> {
        match self {
            Self::Flow {
                connector_object, ..
            } => Some(connector_object.as_ref()),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flow {
                connector_object,
                rule,
            } => write!(f, "flow rule {rule} from {connector_object}"),
            Self::Composer { rule } => write!(f, "composer rule {rule}"),
            Self::Override => f.write_str("override"),
        }
    }
}

/// One source's claim on one mesh attribute. Every contribution is kept; resolution picks the
/// winner per attribute.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Contribution {
    /// The mesh object.
    pub mesh_object: MeshObjectId,
    /// The mesh attribute.
    pub attribute: AttributeName,
    /// The value; never null.
    pub value: Value,
    /// How much it is trusted.
    pub confidence: Confidence,
    /// Who claims it.
    pub source: Source,
    /// The event that produced it.
    pub event: EventId,
}

/// A script that failed at run time: the contribution (or filter) was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransformError {
    /// The rule whose script failed (`<connector>.inactiveWhen` for a connector's filter).
    pub rule: String,
    /// What it was evaluated for: a connector object or a mesh object, as text.
    pub subject: String,
    /// The attribute it would have set, if any.
    pub attribute: Option<AttributeName>,
    /// The stable runtime code (`R001`, ...).
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// The event being processed.
    pub event: EventId,
}

/// Returns true for a result that carries no value: null, or text that is empty or only
/// whitespace (what `Concat(FirstName, " ", LastName)` gives when both are missing). Such a
/// result contributes nothing rather than a blank that would win over real values.
pub fn is_no_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        // Most values start with a letter or a digit: no need to scan for whitespace.
        Value::String(s) => {
            !s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric) && s.trim().is_empty()
        }
        _ => false,
    }
}

/// The contributions of one connector object.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowOutcome {
    /// Every contribution of the object, in rule name order; replaces its previous ones.
    pub contributions: Vec<Contribution>,
    /// Scripts that failed.
    pub transform_errors: Vec<TransformError>,
    /// Why.
    pub trace: Trace,
}

/// Runs the inbound flow rules of `object` over its raw `attributes`.
pub fn flow(
    rules: &RuleSet,
    object: &ConnectorObjectRef,
    attributes: &Attributes,
    mesh_object: MeshObjectId,
    event: EventId,
    now: DateTime<Utc>,
    mut trace: Trace,
) -> FlowOutcome {
    let context = EvalContext::new(now);
    let applicable = || {
        rules
            .inbound_flow_rules(&object.connector)
            .iter()
            .filter(|rule| rule.applies_to(&object.object_type))
    };
    // Sized up front: the contributions are kept for as long as the object is joined.
    let mut contributions = Vec::with_capacity(applicable().count());
    let mut transform_errors = Vec::new();
    // The source of every contribution, made at the first.
    let mut shared_object: Option<Arc<ConnectorObjectRef>> = None;
    for rule in applicable() {
        let value = match (&rule.transform, &rule.source_attribute) {
            (Some(script), _) => match script.program.eval(attributes, &context) {
                Ok(value) => value,
                Err(error) => {
                    trace.note(|| {
                        format!(
                            "flow rule {} failed on {object}: {} {error}; contribution skipped",
                            rule.name,
                            error.code()
                        )
                    });
                    transform_errors.push(TransformError {
                        rule: rule.name.to_string(),
                        subject: object.to_string(),
                        attribute: Some(rule.target_attribute.clone()),
                        code: error.code().to_owned(),
                        message: error.to_string(),
                        event,
                    });
                    continue;
                }
            },
            (None, Some(source)) => attributes.get(source).cloned().unwrap_or(Value::Null),
            (None, None) => Value::Null,
        };
        if is_no_value(&value) {
            trace.note(|| {
                format!(
                    "flow rule {}: {object} has no value for {}; nothing contributed",
                    rule.name, rule.target_attribute
                )
            });
            continue;
        }
        trace.note(|| {
            format!(
                "flow rule {}: {object} contributes {} = {} at confidence {}",
                rule.name,
                rule.target_attribute,
                show(&value),
                rule.confidence
            )
        });
        contributions.push(Contribution {
            mesh_object,
            attribute: rule.target_attribute.clone(),
            value,
            confidence: rule.confidence,
            source: Source::Flow {
                connector_object: Arc::clone(
                    shared_object.get_or_insert_with(|| Arc::new(object.clone())),
                ),
                rule: rule.name.clone(),
            },
            event,
        });
    }
    FlowOutcome {
        contributions,
        transform_errors,
        trace,
    }
}
