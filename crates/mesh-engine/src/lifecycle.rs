//! Lifecycle: when a mesh object is active, a leaver, or deleted.
//!
//! Connectors marked `authoritative: true` (an HR system of record) decide the lifecycle of the
//! mesh objects they join. A connector object of such a connector is *active* unless the
//! connector's `inactiveWhen` filter holds for its raw attributes (`status == "Terminated"`,
//! SCIM `active == false`). Then, from the connector objects joined now:
//!
//! 1. some authoritative connector object is joined and active: **active** (a rejoin restores
//!    a leaver);
//! 2. otherwise, an authoritative connector object is joined but inactive, or one was joined
//!    before and is gone (deleted in its system): **leaver**;
//! 3. otherwise, no connector object is joined at all: **deleted**;
//! 4. otherwise (only non-authoritative sources so far, such as an AD account whose HR record
//!    has not arrived): **active**, so that importing sources in any order gives the same mesh.
//!
//! What follows from it: a leaver or deleted mesh object is out of the scope of every
//! projection rule, whatever its filter says, so each target applies its deprovision action
//! (docs/engine.md). The values of a deleted authoritative object withdraw and the next-best
//! sources take over; an inactive one keeps contributing, so the record still shows who left.

use mesh_expr::EvalContext;
use mesh_model::{Attributes, ConnectorObjectRef, EventId, LifecycleState};
use serde::Serialize;

use crate::flow::TransformError;
use crate::rules::RuleSet;
use crate::trace::Trace;

/// A connector object joined to the mesh object, as lifecycle sees it.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    /// The connector object.
    pub object: &'a ConnectorObjectRef,
    /// Its raw attributes.
    pub attributes: &'a Attributes,
}

/// The lifecycle a mesh object has after a change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleDecision {
    /// The state.
    pub state: LifecycleState,
    /// Whether an authoritative connector object has ever been joined; persisted with the
    /// mesh object, it is what makes the deletion of the HR record a leaver.
    pub authority_seen: bool,
    /// `inactiveWhen` filters that failed (treated as active, never as a leaver: a broken
    /// filter must not mass-deprovision).
    pub transform_errors: Vec<TransformError>,
}

/// Decides the lifecycle of a mesh object from its joined connector objects (see the module
/// documentation). `authority_seen` is the persisted flag from before the change.
pub fn lifecycle(
    rules: &RuleSet,
    links: &[Link<'_>],
    authority_seen: bool,
    event: EventId,
    context: &EvalContext,
    trace: &mut Trace,
) -> LifecycleDecision {
    let mut transform_errors = Vec::new();
    let mut authoritative_joined = false;
    let mut authoritative_active = false;
    for link in links {
        let Some(connector) = rules.authoritative_connector(&link.object.connector) else {
            continue;
        };
        authoritative_joined = true;
        let inactive = match &connector.inactive_when {
            None => false,
            Some(script) => match script.program.eval_filter(link.attributes, context) {
                Ok(inactive) => inactive,
                Err(error) => {
                    transform_errors.push(TransformError {
                        rule: format!("{}.inactiveWhen", connector.name),
                        subject: link.object.to_string(),
                        attribute: None,
                        code: error.code().to_owned(),
                        message: format!("inactiveWhen: {error}"),
                        event,
                    });
                    false
                }
            },
        };
        if inactive {
            trace.note(|| format!("{} is inactive (inactiveWhen holds)", link.object));
        } else {
            authoritative_active = true;
        }
    }
    let (state, why) = if authoritative_active {
        (LifecycleState::Active, "an authoritative source is active")
    } else if authoritative_joined {
        (
            LifecycleState::Leaver,
            "every authoritative source is inactive",
        )
    } else if authority_seen {
        (LifecycleState::Leaver, "its authoritative source is gone")
    } else if links.is_empty() {
        (LifecycleState::Deleted, "no connector object is joined")
    } else {
        (
            LifecycleState::Active,
            "no authoritative source has been joined yet",
        )
    };
    trace.note(|| format!("lifecycle {state}: {why}"));
    LifecycleDecision {
        state,
        authority_seen: authority_seen || authoritative_joined,
        transform_errors,
    }
}
