//! Reading an `AccessPolicy` document (docs/risk.md).
//!
//! A rule set holds at most one access policy: its rules are ordered, so splitting them over
//! documents would leave their order to file names. Conditions compile as filters; a name in
//! the reserved namespaces `request.`, `risk.` or `identity.` that the risk service does not
//! provide is refused (a typo would otherwise read as null and never hold).

use std::collections::BTreeSet;
use std::time::Duration;

use mesh_model::{AttributeName, ObjectType, RuleName};

use super::{Ctx, Fields, Text, duration, optional_attribute, parse_with, script, text};
use crate::risk::{
    AccessPolicy, IdentitySettings, PolicyRule, Scoring, Verdict, is_unknown_reserved,
};
use crate::rules::Origin;
use crate::yaml::{Node, NodeKind};

pub(super) fn read_policy(
    ctx: &mut Ctx<'_>,
    spec: &Node,
    what: &str,
    name: Option<RuleName>,
    origin: Origin,
) -> Option<AccessPolicy> {
    let fields = Fields::read(
        ctx,
        spec,
        what,
        Some(&[
            "default",
            "defaultScope",
            "degraded",
            "identity",
            "scoring",
            "rules",
        ]),
    )?;
    let default = verdict(ctx, &fields, "default", what, true);
    let default_scope = fields
        .string(ctx, "defaultScope", what, false)
        .map(|t| t.value);
    let degraded = match fields.string(ctx, "degraded", what, false) {
        None => Some(Verdict::RequireMfa),
        Some(t) => match Verdict::parse(&t.value) {
            Some(Verdict::Allow) => {
                ctx.error(
                    t.position,
                    "invalid-value",
                    "`degraded` must not be `allow`: without its risk state the service never \
                     allows everything",
                );
                None
            }
            Some(v) => Some(v),
            None => {
                unknown_verdict(ctx, &t);
                None
            }
        },
    };
    if default == Some(Some(Verdict::Limit)) && default_scope.is_none() {
        ctx.error(
            fields.position,
            "missing-field",
            format!("{what} needs `defaultScope` for a `limit` default"),
        );
    }
    let identity = match fields.get("identity") {
        Some(node) => identity(ctx, node, what),
        None => Some(IdentitySettings::default()),
    };
    let scoring = match fields.get("scoring") {
        Some(node) => scoring(ctx, node, what),
        None => Some(Scoring::default()),
    };
    let rules = match fields.required(ctx, "rules", what) {
        Some(Node {
            kind: NodeKind::Seq(items),
            ..
        }) => {
            let mut rules = Vec::new();
            let mut names = BTreeSet::new();
            let mut broken = false;
            for item in items {
                match rule(ctx, item, what) {
                    Some((rule, position)) => {
                        if !names.insert(rule.name.to_string()) {
                            ctx.error(
                                position,
                                "duplicate-name",
                                format!("rule `{}` appears twice in {what}", rule.name),
                            );
                            broken = true;
                        }
                        rules.push(rule);
                    }
                    None => broken = true,
                }
            }
            (!broken).then_some(rules)
        }
        Some(other) => {
            ctx.error(
                other.position,
                "wrong-type",
                format!("`rules` must be a list, found {}", other.kind.describe()),
            );
            None
        }
        None => None,
    };
    Some(AccessPolicy {
        name: name?,
        default: default??,
        default_scope,
        degraded: degraded?,
        identity: identity?,
        scoring: scoring?,
        rules: rules?,
        origin,
    })
}

fn unknown_verdict(ctx: &mut Ctx<'_>, t: &Text) {
    let all: Vec<&str> = Verdict::ALL.iter().map(|(_, n)| *n).collect();
    ctx.error(
        t.position,
        "invalid-value",
        format!(
            "unknown decision `{}`; expected one of {}",
            t.value,
            all.join(", ")
        ),
    );
}

/// Reads a verdict field: `Some(None)` when absent and optional, `None` on a problem.
fn verdict(
    ctx: &mut Ctx<'_>,
    fields: &Fields<'_>,
    name: &str,
    what: &str,
    required: bool,
) -> Option<Option<Verdict>> {
    let Some(t) = fields.string(ctx, name, what, required) else {
        return (!required && fields.get(name).is_none()).then_some(None);
    };
    match Verdict::parse(&t.value) {
        Some(v) => Some(Some(v)),
        None => {
            unknown_verdict(ctx, &t);
            None
        }
    }
}

fn rule(
    ctx: &mut Ctx<'_>,
    node: &Node,
    policy: &str,
) -> Option<(PolicyRule, crate::yaml::Position)> {
    let fields = Fields::read(
        ctx,
        node,
        &format!("a rule of {policy}"),
        Some(&["name", "when", "decision", "scope", "message"]),
    )?;
    let name_text = fields.string(ctx, "name", "a policy rule", true)?;
    let what = format!("rule `{}` of {policy}", name_text.value);
    let name = parse_with(ctx, &name_text, "invalid-name", RuleName::parse);
    let decision = verdict(ctx, &fields, "decision", &what, true);
    let scope = fields.string(ctx, "scope", &what, false).map(|t| t.value);
    if decision == Some(Some(Verdict::Limit)) && scope.is_none() {
        ctx.error(
            fields.position,
            "missing-field",
            format!("{what} decides `limit` and needs `scope`"),
        );
    }
    let message = fields
        .string(ctx, "message", &what, false)
        .map(|t| t.value)
        .unwrap_or_else(|| name_text.value.replace(['-', '_'], " "));
    let when = script(ctx, &fields, "when", true, true, &what);
    if let Some(Some(script)) = &when {
        let mut unknown = false;
        for attribute in script.program.attributes() {
            if is_unknown_reserved(attribute.as_str()) {
                let position = fields.get("when").map_or(fields.position, |n| n.position);
                ctx.error(
                    position,
                    "unknown-name",
                    format!(
                        "in `when`: `{}` is not a name the risk service provides (docs/risk.md \
                         lists them)",
                        attribute.as_str()
                    ),
                );
                unknown = true;
            }
        }
        if unknown {
            return None;
        }
    }
    Some((
        PolicyRule {
            name: name?,
            when: when??,
            decision: decision??,
            scope,
            message,
        },
        name_text.position,
    ))
}

fn attribute_list(ctx: &mut Ctx<'_>, node: &Node, what: &str) -> Option<Vec<AttributeName>> {
    let NodeKind::Seq(items) = &node.kind else {
        ctx.error(
            node.position,
            "wrong-type",
            format!("{what} must be a list, found {}", node.kind.describe()),
        );
        return None;
    };
    let mut out = Vec::new();
    let mut broken = false;
    for item in items {
        match text(ctx, item, "an attribute name")
            .and_then(|t| parse_with(ctx, &t, "invalid-name", AttributeName::parse))
        {
            Some(a) => out.push(a),
            None => broken = true,
        }
    }
    (!broken).then_some(out)
}

fn identity(ctx: &mut Ctx<'_>, node: &Node, policy: &str) -> Option<IdentitySettings> {
    let what = format!("`identity` of {policy}");
    let fields = Fields::read(
        ctx,
        node,
        &what,
        Some(&[
            "subjectAttributes",
            "serviceAccountTypes",
            "ownerAttribute",
            "ownerKeyAttribute",
            "expiryAttribute",
        ]),
    )?;
    let defaults = IdentitySettings::default();
    let subject_attributes = match fields.get("subjectAttributes") {
        Some(n) => attribute_list(ctx, n, "`subjectAttributes`"),
        None => Some(defaults.subject_attributes),
    };
    let service_account_types = match fields.get("serviceAccountTypes") {
        Some(Node {
            kind: NodeKind::Seq(items),
            ..
        }) => {
            let mut types = Vec::new();
            let mut broken = false;
            for item in items {
                match text(ctx, item, "an object type")
                    .and_then(|t| parse_with(ctx, &t, "invalid-name", ObjectType::parse))
                {
                    Some(t) => types.push(t),
                    None => broken = true,
                }
            }
            (!broken).then_some(types)
        }
        Some(other) => {
            ctx.error(
                other.position,
                "wrong-type",
                format!(
                    "`serviceAccountTypes` must be a list, found {}",
                    other.kind.describe()
                ),
            );
            None
        }
        None => Some(defaults.service_account_types),
    };
    let owner_attribute = optional_attribute(ctx, &fields, "ownerAttribute", &what);
    let owner_key_attribute = optional_attribute(ctx, &fields, "ownerKeyAttribute", &what);
    let expiry_attribute = optional_attribute(ctx, &fields, "expiryAttribute", &what);
    Some(IdentitySettings {
        subject_attributes: subject_attributes?,
        service_account_types: service_account_types?,
        owner_attribute,
        owner_key_attribute,
        expiry_attribute,
    })
}

fn scoring(ctx: &mut Ctx<'_>, node: &Node, policy: &str) -> Option<Scoring> {
    const WEIGHTS: &[&str] = &[
        "freeFailures",
        "failureWeight",
        "failureCap",
        "impossibleTravel",
        "unknownDevice",
        "unmanagedDevice",
        "noncompliantDevice",
        "staleMfa",
        "leaver",
        "disabled",
        "nhiInteractive",
        "expired",
        "ownerless",
    ];
    const DURATIONS: &[&str] = &["failureWindow", "travelMemory", "mfaFresh"];
    const SPEEDS: &[&str] = &["maxTravelKmh", "minTravelKm"];
    let what = format!("`scoring` of {policy}");
    let allowed: Vec<&str> = WEIGHTS
        .iter()
        .chain(DURATIONS)
        .chain(SPEEDS)
        .copied()
        .collect();
    let fields = Fields::read(ctx, node, &what, Some(&allowed))?;
    let mut s = Scoring::default();
    let mut broken = false;
    for (key, value) in fields.entries {
        let name = key.name.as_str();
        let number = match value.kind {
            NodeKind::Integer(i) => Some(i as f64),
            NodeKind::Float(f) => Some(f),
            _ => None,
        };
        if DURATIONS.contains(&name) {
            let parsed = text(ctx, value, &format!("`{name}`")).and_then(|t| {
                parse_with(ctx, &t, "invalid-value", |v: &str| duration(v)).filter(|d| {
                    let ok = *d > Duration::ZERO;
                    if !ok {
                        ctx.error(
                            t.position,
                            "invalid-value",
                            format!("`{name}` must be positive"),
                        );
                    }
                    ok
                })
            });
            match (name, parsed) {
                ("failureWindow", Some(d)) => s.failure_window = d,
                ("travelMemory", Some(d)) => s.travel_memory = d,
                ("mfaFresh", Some(d)) => s.mfa_fresh = d,
                _ => broken = true,
            }
            continue;
        }
        let Some(n) = number.filter(|n| n.is_finite() && *n >= 0.0) else {
            ctx.error(
                value.position,
                "wrong-type",
                format!("`{name}` must be a number of at least 0"),
            );
            broken = true;
            continue;
        };
        if WEIGHTS.contains(&name) && (n > 100.0 || n.fract() != 0.0) {
            ctx.error(
                value.position,
                "invalid-value",
                format!("`{name}` must be a whole number of points from 0 to 100"),
            );
            broken = true;
            continue;
        }
        let points = n as u32;
        match name {
            "freeFailures" => s.free_failures = points,
            "failureWeight" => s.failure_weight = points,
            "failureCap" => s.failure_cap = points,
            "impossibleTravel" => s.impossible_travel = points,
            "unknownDevice" => s.unknown_device = points,
            "unmanagedDevice" => s.unmanaged_device = points,
            "noncompliantDevice" => s.noncompliant_device = points,
            "staleMfa" => s.stale_mfa = points,
            "leaver" => s.leaver = points,
            "disabled" => s.disabled = points,
            "nhiInteractive" => s.nhi_interactive = points,
            "expired" => s.expired = points,
            "ownerless" => s.ownerless = points,
            "maxTravelKmh" => s.max_travel_kmh = n,
            "minTravelKm" => s.min_travel_km = n,
            _ => {}
        }
    }
    (!broken).then_some(s)
}
