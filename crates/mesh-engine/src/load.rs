//! Loading and validating rule documents.
//!
//! The caller reads the files (this crate does no I/O) and hands over `(path, contents)` pairs
//! as [`SourceFile`]s; [`load`] parses every YAML document, reads each one by hand from its
//! positioned tree, checks the references between documents, and either returns the
//! [`RuleSet`] or every [`Problem`] found, each with its file, line and column. Nothing stops at
//! the first problem: a broken document is skipped for the cross-document checks that depend on
//! it, and the rest are still checked.
//!
//! Problem codes are stable (`meshctl rules validate` prints them, and people search for them);
//! see docs/rules.md for the list.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use mesh_expr::{Diagnostic, Severity, compile, compile_filter};
use mesh_model::{AttributeName, Confidence, ConnectorId, ObjectType, RuleName};

use crate::risk::AccessPolicy;
use crate::rules::{
    ComposerRule, Connector, ConnectorKind, Deprovision, Direction, FlowRule, JoinRule, Origin,
    ProjectionRule, RuleSet, Script,
};
use crate::yaml::{Key, Node, NodeKind, Position, parse_documents};

mod policy;

/// The only `apiVersion` understood.
pub const API_VERSION: &str = "identitymesh.io/v1";

/// One file's path (as the caller wants it printed) and contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path, printed in problems.
    pub path: String,
    /// The YAML text.
    pub contents: String,
}

impl SourceFile {
    /// Pairs a path with its contents.
    pub fn new(path: impl Into<String>, contents: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            contents: contents.into(),
        }
    }
}

/// What is wrong with a rule document, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The file.
    pub file: String,
    /// Where in it.
    pub position: Position,
    /// Error (the rule set is refused) or warning.
    pub severity: Severity,
    /// A stable code: `unknown-connector`, `duplicate-priority`, `E020`, ... (docs/rules.md).
    pub code: String,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}[{}]: {}",
            self.file,
            self.position,
            self.severity.as_str(),
            self.code,
            self.message
        )
    }
}

/// Every problem that refused a rule set, in file and position order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s) in the rules, the first: {}", .problems.len(), .problems.first().map(ToString::to_string).unwrap_or_default())]
pub struct LoadError {
    /// Errors and warnings, sorted.
    pub problems: Vec<Problem>,
}

/// The result of validating rule documents: the rule set when there was no error, and every
/// problem (warnings included) either way.
#[derive(Debug, Clone)]
pub struct Validation {
    /// The rule set, when no problem is an error.
    pub rule_set: Option<RuleSet>,
    /// Errors and warnings, sorted by file and position.
    pub problems: Vec<Problem>,
}

/// Parses and validates `sources`; returns the rule set, or every problem when any is an
/// error. Warnings alone do not refuse a rule set; use [`validate`] to see them.
pub fn load(sources: &[SourceFile]) -> Result<RuleSet, LoadError> {
    let validation = validate(sources);
    match validation.rule_set {
        Some(rule_set) => Ok(rule_set),
        None => Err(LoadError {
            problems: validation.problems,
        }),
    }
}

/// Parses and validates `sources`, returning every problem found.
pub fn validate(sources: &[SourceFile]) -> Validation {
    let mut loader = Loader::default();
    for source in sources {
        loader.file(source);
    }
    loader.finish(sources)
}

/// A document after reading, before the cross-document checks.
enum Document {
    Connector(Connector),
    Join(JoinRule, Spots),
    Flow(FlowRule, Spots),
    Projection(ProjectionRule, Spots),
    Composer(ComposerRule, Spots),
    Policy(AccessPolicy),
}

/// Positions of the fields the cross-document checks point at.
#[derive(Debug, Clone, Default)]
struct Spots {
    connector: Position,
    object_type: Position,
    priority: Position,
    target_attribute: Position,
}

#[derive(Default)]
struct Loader {
    problems: Vec<Problem>,
    documents: Vec<(String, Document)>,
    /// Every name read, broken documents included, so duplicates are found even when the
    /// other copy has problems of its own: (is a connector, name, where).
    names: Vec<(bool, String, Origin)>,
}

/// Reads fields of one mapping, reporting problems against one file.
struct Ctx<'a> {
    file: &'a str,
    source: &'a str,
    problems: &'a mut Vec<Problem>,
    names: &'a mut Vec<(bool, String, Origin)>,
}

impl Ctx<'_> {
    fn error(&mut self, position: Position, code: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            position,
            severity: Severity::Error,
            code: code.to_owned(),
            message: message.into(),
        });
    }

    fn origin(&self, position: Position) -> Origin {
        Origin {
            file: self.file.to_owned(),
            position,
        }
    }
}

/// One mapping's entries, with the keys already checked against the allowed set.
struct Fields<'n> {
    position: Position,
    entries: &'n [(Key, Node)],
}

impl<'n> Fields<'n> {
    /// Reads `node` as a mapping whose keys are `allowed` (`None` allows any key).
    fn read(
        ctx: &mut Ctx<'_>,
        node: &'n Node,
        what: &str,
        allowed: Option<&[&str]>,
    ) -> Option<Self> {
        let NodeKind::Map(entries) = &node.kind else {
            ctx.error(
                node.position,
                "wrong-type",
                format!("{what} must be a mapping, found {}", node.kind.describe()),
            );
            return None;
        };
        let mut seen = BTreeSet::new();
        for (key, _) in entries {
            if !seen.insert(key.name.as_str()) {
                ctx.error(
                    key.position,
                    "duplicate-key",
                    format!("`{}` appears twice in {what}", key.name),
                );
            }
            if let Some(allowed) = allowed
                && !allowed.contains(&key.name.as_str())
            {
                let hint = allowed
                    .iter()
                    .find(|a| a.eq_ignore_ascii_case(&key.name))
                    .map(|a| format!("; did you mean `{a}`?"))
                    .unwrap_or_else(|| format!("; expected one of {}", allowed.join(", ")));
                ctx.error(
                    key.position,
                    "unknown-field",
                    format!("unknown field `{}` in {what}{hint}", key.name),
                );
            }
        }
        Some(Self {
            position: node.position,
            entries,
        })
    }

    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, v)| k.name == name && v.kind != NodeKind::Null)
            .map(|(_, v)| v)
    }

    fn required(&self, ctx: &mut Ctx<'_>, name: &str, what: &str) -> Option<&'n Node> {
        let node = self.get(name);
        if node.is_none() {
            ctx.error(
                self.position,
                "missing-field",
                format!("{what} needs `{name}`"),
            );
        }
        node
    }

    fn string(&self, ctx: &mut Ctx<'_>, name: &str, what: &str, required: bool) -> Option<Text> {
        let node = if required {
            self.required(ctx, name, what)?
        } else {
            self.get(name)?
        };
        text(ctx, node, &format!("`{name}`"))
    }

    fn boolean(&self, ctx: &mut Ctx<'_>, name: &str) -> Option<bool> {
        let node = self.get(name)?;
        match node.kind {
            NodeKind::Bool(b) => Some(b),
            _ => {
                ctx.error(
                    node.position,
                    "wrong-type",
                    format!(
                        "`{name}` must be true or false, found {}",
                        node.kind.describe()
                    ),
                );
                None
            }
        }
    }

    fn integer(&self, ctx: &mut Ctx<'_>, name: &str, what: &str) -> Option<(i64, Position)> {
        let node = self.required(ctx, name, what)?;
        match node.kind {
            NodeKind::Integer(i) => Some((i, node.position)),
            _ => {
                ctx.error(
                    node.position,
                    "wrong-type",
                    format!(
                        "`{name}` must be an integer, found {}",
                        node.kind.describe()
                    ),
                );
                None
            }
        }
    }
}

/// A string value and where it is written.
#[derive(Debug, Clone)]
struct Text {
    value: String,
    position: Position,
}

fn text(ctx: &mut Ctx<'_>, node: &Node, what: &str) -> Option<Text> {
    match &node.kind {
        NodeKind::String(s) => Some(Text {
            value: s.clone(),
            position: node.position,
        }),
        // Plain scalars such as `employeeID: 1001` are common in attribute-like fields.
        NodeKind::Integer(i) => Some(Text {
            value: i.to_string(),
            position: node.position,
        }),
        other => {
            ctx.error(
                node.position,
                "wrong-type",
                format!("{what} must be a string, found {}", other.describe()),
            );
            None
        }
    }
}

fn parse_with<T, E: fmt::Display>(
    ctx: &mut Ctx<'_>,
    text: &Text,
    code: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Option<T> {
    match parse(&text.value) {
        Ok(value) => Some(value),
        Err(error) => {
            ctx.error(text.position, code, error.to_string());
            None
        }
    }
}

fn attribute(
    ctx: &mut Ctx<'_>,
    fields: &Fields<'_>,
    name: &str,
    what: &str,
) -> Option<AttributeName> {
    let text = fields.string(ctx, name, what, true)?;
    parse_with(ctx, &text, "invalid-name", AttributeName::parse)
}

fn optional_attribute(
    ctx: &mut Ctx<'_>,
    fields: &Fields<'_>,
    name: &str,
    what: &str,
) -> Option<AttributeName> {
    let text = fields.string(ctx, name, what, false)?;
    parse_with(ctx, &text, "invalid-name", AttributeName::parse)
}

fn confidence(ctx: &mut Ctx<'_>, fields: &Fields<'_>, what: &str) -> Option<Confidence> {
    let (value, position) = fields.integer(ctx, "confidence", what)?;
    match Confidence::new(value) {
        Ok(c) => Some(c),
        Err(_) => {
            ctx.error(
                position,
                "confidence-out-of-range",
                format!("confidence {value} is outside 0..=100"),
            );
            None
        }
    }
}

/// Compiles a script field, reporting each diagnostic at its position in the file.
fn script(
    ctx: &mut Ctx<'_>,
    fields: &Fields<'_>,
    name: &str,
    filter: bool,
    required: bool,
    what: &str,
) -> Option<Option<Script>> {
    let Some(text) = fields.string(ctx, name, what, required) else {
        return if required || fields.get(name).is_some() {
            None
        } else {
            Some(None)
        };
    };
    let result = if filter {
        compile_filter(&text.value, None)
    } else {
        compile(&text.value, None)
    };
    let report = |ctx: &mut Ctx<'_>, d: &Diagnostic| {
        let position = script_position(ctx.source, &text, d.span.start);
        let mut message = format!("in `{name}`: {}", d.message);
        if let Some(suggestion) = &d.suggestion {
            message.push_str(&format!(" ({suggestion})"));
        }
        ctx.problems.push(Problem {
            file: ctx.file.to_owned(),
            position,
            severity: d.severity(),
            code: d.code.as_str().to_owned(),
            message,
        });
    };
    match result {
        Ok(program) => {
            for warning in program.warnings() {
                report(ctx, warning);
            }
            Some(Some(Script { program }))
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                report(ctx, d);
            }
            None
        }
    }
}

/// Maps a byte offset inside a script to its line and column in the YAML file.
///
/// Exact for plain and quoted scalars on one line whose text before the offset has no escape,
/// and for literal block scalars (`|`); otherwise it falls back to the scalar's start, which
/// still names the right field.
fn script_position(source: &str, text: &Text, offset: usize) -> Position {
    let start = text.position;
    let Some(prefix) = text.value.get(..offset) else {
        return start;
    };
    let Some(raw) = start.offset.and_then(|o| source.get(o..)) else {
        return start;
    };
    let quote = usize::from(raw.starts_with('\'') || raw.starts_with('"'));
    if !prefix.contains('\n') && raw.get(quote..).is_some_and(|r| r.starts_with(prefix)) {
        let column = start.column + u32::try_from(quote + prefix.chars().count()).unwrap_or(0);
        return Position {
            line: start.line,
            column,
            offset: start.offset.map(|o| o + quote + prefix.len()),
        };
    }
    if prefix.contains('\n') {
        // A block scalar: the parser places it at its first content line, and the following
        // lines share that indentation.
        let line_in_block = prefix.matches('\n').count();
        let column_in_line = prefix.rsplit('\n').next().map_or(0, |s| s.chars().count());
        return Position {
            line: start.line + u32::try_from(line_in_block).unwrap_or(0),
            column: start.column + u32::try_from(column_in_line).unwrap_or(0),
            offset: None,
        };
    }
    start
}

fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 30d, 12h, 90m or 3600s"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{s}` is not a duration such as 30d, 12h, 90m or 3600s"
            ));
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

const KINDS: &[&str] = &[
    "Connector",
    "JoinRule",
    "FlowRule",
    "ProjectionRule",
    "MeshComposerRule",
    "AccessPolicy",
];

impl Loader {
    fn file(&mut self, source: &SourceFile) {
        let mut ctx = Ctx {
            file: &source.path,
            source: &source.contents,
            problems: &mut self.problems,
            names: &mut self.names,
        };
        let documents = match parse_documents(&source.contents) {
            Ok(documents) => documents,
            Err(error) => {
                ctx.error(error.position, "yaml-syntax", error.message);
                return;
            }
        };
        for node in &documents {
            if let Some(document) = read_document(&mut ctx, node) {
                self.documents.push((source.path.clone(), document));
            }
        }
    }

    fn finish(mut self, sources: &[SourceFile]) -> Validation {
        let mut rule_set = RuleSet::default();
        let mut first: BTreeMap<(bool, &str), &Origin> = BTreeMap::new();
        let mut duplicates: BTreeSet<Origin> = BTreeSet::new();
        for (is_connector, name, origin) in &self.names {
            match first.get(&(*is_connector, name.as_str())) {
                Some(first) => {
                    self.problems.push(Problem {
                        file: origin.file.clone(),
                        position: origin.position,
                        severity: Severity::Error,
                        code: "duplicate-name".to_owned(),
                        message: format!(
                            "{} `{name}` is already defined at {first}",
                            if *is_connector { "connector" } else { "rule" }
                        ),
                    });
                    duplicates.insert(origin.clone());
                }
                None => {
                    first.insert((*is_connector, name.as_str()), origin);
                }
            }
        }
        let documents = std::mem::take(&mut self.documents);
        let problems = &mut self.problems;
        let mut error = |file: &str, position: Position, code: &str, message: String| {
            problems.push(Problem {
                file: file.to_owned(),
                position,
                severity: Severity::Error,
                code: code.to_owned(),
                message,
            });
        };

        // Connectors first: every rule refers to them.
        for (_, document) in &documents {
            if let Document::Connector(connector) = document
                && !duplicates.contains(&connector.origin)
            {
                rule_set
                    .connectors
                    .insert(connector.name.clone(), connector.clone());
            }
        }
        let mesh_types = rule_set.mesh_object_types();
        let connectors = rule_set.connectors.clone();

        let check_connector = |error: &mut dyn FnMut(&str, Position, &str, String),
                               file: &str,
                               name: &ConnectorId,
                               spots: &Spots,
                               direction: Direction,
                               object_type: Option<&ObjectType>|
         -> bool {
            let Some(connector) = connectors.get(name) else {
                let known: Vec<&str> = connectors.keys().map(ConnectorId::as_str).collect();
                error(
                    file,
                    spots.connector,
                    "unknown-connector",
                    format!(
                        "unknown connector `{name}`; known connectors: {}",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                return false;
            };
            let fits = match direction {
                Direction::Inbound => connector.kind.imports(),
                Direction::Outbound => connector.kind.exports(),
            };
            if !fits {
                error(
                    file,
                    spots.connector,
                    "wrong-direction",
                    format!(
                        "connector `{name}` is of type {}, which does not {}",
                        connector.kind.as_str(),
                        match direction {
                            Direction::Inbound => "import objects",
                            Direction::Outbound => "accept exports",
                        }
                    ),
                );
                return false;
            }
            if let Some(object_type) = object_type
                && !connector.carries(object_type)
            {
                error(
                    file,
                    spots.object_type,
                    "unknown-object-type",
                    format!(
                        "connector `{name}` does not carry object type `{object_type}`; it carries {}",
                        connector
                            .object_types
                            .iter()
                            .map(ObjectType::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                return false;
            }
            true
        };
        let check_mesh_type = |error: &mut dyn FnMut(&str, Position, &str, String),
                               file: &str,
                               object_type: &ObjectType,
                               position: Position|
         -> bool {
            if mesh_types.contains(object_type) {
                return true;
            }
            error(
                file,
                position,
                "unknown-object-type",
                format!(
                    "no importing connector carries object type `{object_type}`; mesh object types: {}",
                    if mesh_types.is_empty() {
                        "none".to_owned()
                    } else {
                        mesh_types
                            .iter()
                            .map(ObjectType::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            );
            false
        };

        let mut priorities: BTreeMap<(ConnectorId, i64), Origin> = BTreeMap::new();
        let mut projected: BTreeMap<(ConnectorId, ObjectType), Origin> = BTreeMap::new();
        let mut composers: BTreeMap<ObjectType, Vec<ComposerRule>> = BTreeMap::new();
        let mut composer_spots: BTreeMap<RuleName, (String, Spots)> = BTreeMap::new();
        for (file, document) in &documents {
            let origin = match document {
                Document::Connector(_) => continue,
                Document::Policy(p) => &p.origin,
                Document::Join(r, _) => &r.origin,
                Document::Flow(r, _) => &r.origin,
                Document::Projection(r, _) => &r.origin,
                Document::Composer(r, _) => &r.origin,
            };
            if duplicates.contains(origin) {
                continue;
            }
            match document {
                Document::Connector(_) => {}
                Document::Policy(policy) => match &rule_set.access_policy {
                    Some(first) => error(
                        file,
                        policy.origin.position,
                        "duplicate-policy",
                        format!(
                            "a rule set holds one AccessPolicy, and `{}` ({}) is already one; \
                             put every access rule in it, in order",
                            first.name, first.origin
                        ),
                    ),
                    None => rule_set.access_policy = Some(policy.clone()),
                },
                Document::Join(rule, spots) => {
                    if !check_connector(
                        &mut error,
                        file,
                        &rule.connector,
                        spots,
                        Direction::Inbound,
                        rule.object_type.as_ref(),
                    ) {
                        continue;
                    }
                    let key = (rule.connector.clone(), rule.priority);
                    if let Some(first) = priorities.get(&key) {
                        error(
                            file,
                            spots.priority,
                            "duplicate-priority",
                            format!(
                                "connector `{}` already has a join rule with priority {} at {first}; priorities decide the order rules are tried in, so they must differ",
                                rule.connector, rule.priority
                            ),
                        );
                        continue;
                    }
                    priorities.insert(key, rule.origin.clone());
                    rule_set
                        .join_rules
                        .entry(rule.connector.clone())
                        .or_default()
                        .push(rule.clone());
                }
                Document::Flow(rule, spots) => {
                    if !check_connector(
                        &mut error,
                        file,
                        &rule.connector,
                        spots,
                        rule.direction,
                        rule.object_type.as_ref(),
                    ) {
                        continue;
                    }
                    let map = match rule.direction {
                        Direction::Inbound => &mut rule_set.inbound,
                        Direction::Outbound => &mut rule_set.outbound,
                    };
                    map.entry(rule.connector.clone())
                        .or_default()
                        .push(rule.clone());
                }
                Document::Projection(rule, spots) => {
                    let connector_ok = check_connector(
                        &mut error,
                        file,
                        &rule.target,
                        spots,
                        Direction::Outbound,
                        None,
                    );
                    let type_ok =
                        check_mesh_type(&mut error, file, &rule.object_type, spots.object_type);
                    if !(connector_ok && type_ok) {
                        continue;
                    }
                    // The idempotency key and the target state are per (mesh object, target):
                    // a second rule for the same target and type would collide with the first.
                    let key = (rule.target.clone(), rule.object_type.clone());
                    if let Some(first) = projected.get(&key) {
                        error(
                            file,
                            spots.connector,
                            "duplicate-projection",
                            format!(
                                "target `{}` already has a projection rule for object type `{}` at {first}",
                                rule.target, rule.object_type
                            ),
                        );
                        continue;
                    }
                    projected.insert(key, rule.origin.clone());
                    rule_set.projections.push(rule.clone());
                }
                Document::Composer(rule, spots) => {
                    if check_mesh_type(&mut error, file, &rule.object_type, spots.object_type) {
                        composer_spots.insert(rule.name.clone(), (file.clone(), spots.clone()));
                        composers
                            .entry(rule.object_type.clone())
                            .or_default()
                            .push(rule.clone());
                    }
                }
            }
        }

        for rules in rule_set.join_rules.values_mut() {
            rules.sort_by_key(|r| r.priority);
        }
        for rules in rule_set
            .inbound
            .values_mut()
            .chain(rule_set.outbound.values_mut())
        {
            rules.sort_by(|a, b| a.name.cmp(&b.name));
        }
        rule_set.projections.sort_by(|a, b| a.name.cmp(&b.name));
        for (object_type, rules) in composers {
            match order_composers(rules) {
                Ok(ordered) => {
                    rule_set.composers.insert(object_type, ordered);
                }
                Err(cycle) => {
                    let path: Vec<String> = cycle
                        .iter()
                        .map(|r| format!("{} ({})", r.name, r.target_attribute))
                        .collect();
                    for rule in &cycle {
                        let (file, spots) =
                            composer_spots.get(&rule.name).cloned().unwrap_or_default();
                        error(
                            &file,
                            spots.target_attribute,
                            "composer-cycle",
                            format!(
                                "MeshComposer rule `{}` is part of a dependency cycle: {}",
                                rule.name,
                                path.join(" -> ")
                            ),
                        );
                    }
                }
            }
        }
        for rule in rule_set.join_rules.values().flatten() {
            let types: Vec<ObjectType> = match &rule.object_type {
                Some(t) => vec![t.clone()],
                None => rule_set
                    .connectors
                    .get(&rule.connector)
                    .map(|c| c.object_types.clone())
                    .unwrap_or_default(),
            };
            for object_type in types {
                let targets = rule_set.join_targets.entry(object_type).or_default();
                let folded = rule.target_attribute.key();
                if !targets.iter().any(|t| t == folded) {
                    targets.push(folded.to_owned());
                }
            }
        }
        rule_set.index();
        rule_set.version = fingerprint(sources);

        let mut problems = self.problems;
        problems.sort();
        problems.dedup();
        let failed = problems.iter().any(|p| p.severity == Severity::Error);
        Validation {
            rule_set: (!failed).then_some(rule_set),
            problems,
        }
    }
}

/// Orders composer rules so each comes after the rules whose targets it reads; returns the
/// rules of a cycle when there is one.
fn order_composers(rules: Vec<ComposerRule>) -> Result<Vec<ComposerRule>, Vec<ComposerRule>> {
    let mut remaining: BTreeMap<RuleName, ComposerRule> =
        rules.into_iter().map(|r| (r.name.clone(), r)).collect();
    let mut ordered = Vec::with_capacity(remaining.len());
    loop {
        // A rule is ready when no remaining rule writes an attribute it reads.
        let ready = remaining
            .values()
            .find(|rule| {
                !rule.transform.program.attributes().any(|read| {
                    remaining
                        .values()
                        .any(|other| other.target_attribute == *read)
                })
            })
            .map(|rule| rule.name.clone());
        match ready {
            Some(name) => {
                if let Some(rule) = remaining.remove(&name) {
                    ordered.push(rule);
                }
            }
            None if remaining.is_empty() => return Ok(ordered),
            None => {
                // Peel off rules that nothing left reads: they only wait on the cycle. What
                // stays is the cycle (or cycles) itself.
                loop {
                    let unread = remaining
                        .values()
                        .find(|rule| {
                            !remaining.values().any(|other| {
                                other
                                    .transform
                                    .program
                                    .attributes()
                                    .any(|read| *read == rule.target_attribute)
                            })
                        })
                        .map(|rule| rule.name.clone());
                    match unread {
                        Some(name) => {
                            remaining.remove(&name);
                        }
                        None => return Err(remaining.into_values().collect()),
                    }
                }
            }
        }
    }
}

fn fingerprint(sources: &[SourceFile]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for source in sources {
        for byte in source
            .path
            .bytes()
            .chain([0])
            .chain(source.contents.bytes())
            .chain([0])
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

fn read_document(ctx: &mut Ctx<'_>, node: &Node) -> Option<Document> {
    let top = Fields::read(
        ctx,
        node,
        "a rule document",
        Some(&["apiVersion", "kind", "metadata", "spec"]),
    )?;
    if let Some(api) = top.get("apiVersion") {
        let api = text(ctx, api, "`apiVersion`")?;
        if api.value != API_VERSION {
            ctx.error(
                api.position,
                "unsupported-api-version",
                format!(
                    "apiVersion `{}` is not supported; use `{API_VERSION}`",
                    api.value
                ),
            );
            return None;
        }
    }
    let kind = top.string(ctx, "kind", "a rule document", true)?;
    if !KINDS.contains(&kind.value.as_str()) {
        let hint = KINDS
            .iter()
            .find(|k| k.eq_ignore_ascii_case(&kind.value))
            .map(|k| format!("; did you mean `{k}`?"))
            .unwrap_or_else(|| format!("; expected one of {}", KINDS.join(", ")));
        ctx.error(
            kind.position,
            "unknown-kind",
            format!("unknown kind `{}`{hint}", kind.value),
        );
        return None;
    }
    let what = format!("a {}", kind.value);
    let metadata = top.required(ctx, "metadata", &what);
    let spec = top.required(ctx, "spec", &what);
    let (metadata, spec) = (metadata?, spec?);
    let metadata = Fields::read(
        ctx,
        metadata,
        "`metadata`",
        Some(&["name", "description", "labels"]),
    )?;
    let name = metadata.string(ctx, "name", "`metadata`", true)?;
    let origin = ctx.origin(name.position);
    ctx.names.push((
        kind.value == "Connector",
        name.value.clone(),
        origin.clone(),
    ));
    let spec_what = format!("the spec of {} `{}`", kind.value, name.value);
    match kind.value.as_str() {
        "Connector" => {
            let id = parse_with(ctx, &name, "invalid-name", ConnectorId::parse);
            read_connector(ctx, spec, &spec_what, id, origin).map(Document::Connector)
        }
        "AccessPolicy" => {
            let id = parse_with(ctx, &name, "invalid-name", RuleName::parse);
            policy::read_policy(ctx, spec, &spec_what, id, origin).map(Document::Policy)
        }
        _ => {
            let rule_name = parse_with(ctx, &name, "invalid-name", RuleName::parse);
            let spots = Spots::default();
            match kind.value.as_str() {
                "JoinRule" => read_join(ctx, spec, &spec_what, rule_name?, spots, origin),
                "FlowRule" => read_flow(ctx, spec, &spec_what, rule_name?, spots, origin),
                "ProjectionRule" => {
                    read_projection(ctx, spec, &spec_what, rule_name?, spots, origin)
                }
                _ => read_composer(ctx, spec, &spec_what, rule_name?, spots, origin),
            }
        }
    }
}

fn object_type_field(
    ctx: &mut Ctx<'_>,
    fields: &Fields<'_>,
    what: &str,
    required: bool,
    spots: &mut Spots,
) -> Option<Option<ObjectType>> {
    match fields.string(ctx, "objectType", what, required) {
        Some(text) => {
            spots.object_type = text.position;
            parse_with(ctx, &text, "invalid-name", ObjectType::parse).map(Some)
        }
        None if required || fields.get("objectType").is_some() => None,
        None => Some(None),
    }
}

fn connector_field(
    ctx: &mut Ctx<'_>,
    fields: &Fields<'_>,
    key: &str,
    what: &str,
    spots: &mut Spots,
) -> Option<ConnectorId> {
    let text = fields.string(ctx, key, what, true)?;
    spots.connector = text.position;
    parse_with(ctx, &text, "invalid-name", ConnectorId::parse)
}

fn read_connector(
    ctx: &mut Ctx<'_>,
    spec: &Node,
    what: &str,
    name: Option<ConnectorId>,
    origin: Origin,
) -> Option<Connector> {
    const KNOWN: &[&str] = &[
        "type",
        "objectTypes",
        "externalIdAttribute",
        "objectTypeAttribute",
        "authoritative",
        "inactiveWhen",
    ];
    // Other keys are type-specific settings for the connector agents.
    let fields = Fields::read(ctx, spec, what, None)?;
    let kind = fields.string(ctx, "type", what, true).and_then(|t| {
        let kind = ConnectorKind::parse(&t.value);
        if kind.is_none() {
            let all: Vec<&str> = ConnectorKind::ALL.iter().map(|(_, n)| *n).collect();
            ctx.error(
                t.position,
                "invalid-value",
                format!(
                    "unknown connector type `{}`; expected one of {}",
                    t.value,
                    all.join(", ")
                ),
            );
        }
        kind
    });
    let object_types = match fields.required(ctx, "objectTypes", what) {
        Some(Node {
            kind: NodeKind::Seq(items),
            position,
        }) => {
            let mut types = Vec::new();
            for item in items {
                if let Some(t) = text(ctx, item, "an object type")
                    && let Some(t) = parse_with(ctx, &t, "invalid-name", ObjectType::parse)
                    && !types.contains(&t)
                {
                    types.push(t);
                }
            }
            if types.is_empty() && !items.is_empty() {
                return None;
            }
            if types.is_empty() {
                ctx.error(
                    *position,
                    "invalid-value",
                    "`objectTypes` must list at least one object type",
                );
                return None;
            }
            Some(types)
        }
        Some(other) => {
            ctx.error(
                other.position,
                "wrong-type",
                format!(
                    "`objectTypes` must be a list, found {}",
                    other.kind.describe()
                ),
            );
            None
        }
        None => None,
    };
    let external_id_attribute = optional_attribute(ctx, &fields, "externalIdAttribute", what);
    if let Some(kind) = kind
        && kind.imports()
        && fields.get("externalIdAttribute").is_none()
    {
        ctx.error(
            fields.position,
            "missing-field",
            format!(
                "{what} needs `externalIdAttribute`: a {} connector imports objects",
                kind.as_str()
            ),
        );
    }
    let object_type_attribute = optional_attribute(ctx, &fields, "objectTypeAttribute", what);
    let authoritative = fields.boolean(ctx, "authoritative").unwrap_or(false);
    let inactive_when = script(ctx, &fields, "inactiveWhen", true, false, what);
    let settings: BTreeMap<String, Node> = fields
        .entries
        .iter()
        .filter(|(k, _)| !KNOWN.contains(&k.name.as_str()))
        .map(|(k, v)| (k.name.clone(), v.clone()))
        .collect();
    for (key, value) in fields
        .entries
        .iter()
        .filter(|(k, _)| settings.contains_key(&k.name))
    {
        inline_secret(ctx, key, value);
    }
    Some(Connector {
        name: name?,
        kind: kind?,
        object_types: object_types?,
        external_id_attribute,
        object_type_attribute,
        authoritative,
        inactive_when: inactive_when?,
        settings,
        origin,
    })
}

/// Refuses a secret written into a connector's settings: rule sets are stored, listed, diffed
/// and shown by `meshctl rules`, so a secret there is a secret everywhere. Secrets go in
/// environment variables that settings ending in `Env` name (docs/provisioning.md). A setting
/// named like a secret, or a URL carrying a password, is an error; the message never quotes
/// the value.
fn inline_secret(ctx: &mut Ctx<'_>, key: &Key, value: &Node) {
    const SECRET_NAMES: &[&str] = &["password", "passwd", "secret", "token", "apikey"];
    let name = key.name.to_ascii_lowercase();
    if SECRET_NAMES.iter().any(|s| name.ends_with(s)) {
        ctx.error(
            key.position,
            "inline-secret",
            format!(
                "`{}` would put a secret in the rules, which are stored and shown; put it in an \
                 environment variable and name that with the setting ending in `Env` \
                 (`tokenEnv`, `passwordEnv`)",
                key.name
            ),
        );
    } else if let NodeKind::String(text) = &value.kind
        && url_carries_secret(text)
    {
        ctx.error(
            value.position,
            "inline-secret",
            format!(
                "`{}` carries a password, which the rules would store and show; put the \
                 password in an environment variable named by `passwordEnv` (or the whole URL \
                 in one named by `{}Env`)",
                key.name, key.name
            ),
        );
    }
}

/// Whether `text`, read as a URL, has a password in its user-info or a query parameter named
/// like one (`?password=`, `?sslpassword=`, `?token=`).
fn url_carries_secret(text: &str) -> bool {
    let Some((_, rest)) = text.split_once("://") else {
        return false;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, _) = rest.split_at(authority_end);
    let password_in_userinfo = authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .is_some_and(|(_, password)| !password.is_empty());
    let secret_parameter = rest.split_once('?').is_some_and(|(_, query)| {
        query.split(['&', '#']).any(|param| {
            let name = param
                .split('=')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            ["pass", "token", "secret"].iter().any(|s| name.contains(s))
        })
    });
    password_in_userinfo || secret_parameter
}

fn read_join(
    ctx: &mut Ctx<'_>,
    spec: &Node,
    what: &str,
    name: RuleName,
    mut spots: Spots,
    origin: Origin,
) -> Option<Document> {
    let fields = Fields::read(
        ctx,
        spec,
        what,
        Some(&[
            "connector",
            "objectType",
            "sourceAttribute",
            "targetAttribute",
            "isAnchor",
            "priority",
        ]),
    )?;
    let connector = connector_field(ctx, &fields, "connector", what, &mut spots);
    let object_type = object_type_field(ctx, &fields, what, false, &mut spots);
    let source_attribute = attribute(ctx, &fields, "sourceAttribute", what);
    let target_attribute = attribute(ctx, &fields, "targetAttribute", what);
    let is_anchor = fields.boolean(ctx, "isAnchor").unwrap_or(false);
    let priority = fields.integer(ctx, "priority", what);
    if let Some((_, position)) = priority {
        spots.priority = position;
    }
    Some(Document::Join(
        JoinRule {
            name,
            connector: connector?,
            object_type: object_type?,
            source_attribute: source_attribute?,
            target_attribute: target_attribute?,
            is_anchor,
            priority: priority?.0,
            origin,
        },
        spots,
    ))
}

fn read_flow(
    ctx: &mut Ctx<'_>,
    spec: &Node,
    what: &str,
    name: RuleName,
    mut spots: Spots,
    origin: Origin,
) -> Option<Document> {
    let fields = Fields::read(
        ctx,
        spec,
        what,
        Some(&[
            "connector",
            "direction",
            "objectType",
            "sourceAttribute",
            "targetAttribute",
            "confidence",
            "transformScript",
        ]),
    )?;
    let connector = connector_field(ctx, &fields, "connector", what, &mut spots);
    let direction =
        fields
            .string(ctx, "direction", what, true)
            .and_then(|d| match d.value.as_str() {
                "inbound" => Some(Direction::Inbound),
                "outbound" => Some(Direction::Outbound),
                other => {
                    ctx.error(
                        d.position,
                        "invalid-value",
                        format!("`direction` must be inbound or outbound, found `{other}`"),
                    );
                    None
                }
            });
    let object_type = object_type_field(ctx, &fields, what, false, &mut spots);
    let source_attribute = optional_attribute(ctx, &fields, "sourceAttribute", what);
    let target_attribute = attribute(ctx, &fields, "targetAttribute", what);
    let confidence = match direction {
        Some(Direction::Outbound) if fields.get("confidence").is_none() => Some(Confidence::MAX),
        _ => confidence(ctx, &fields, what),
    };
    let transform = script(ctx, &fields, "transformScript", false, false, what);
    if fields.get("sourceAttribute").is_none() && fields.get("transformScript").is_none() {
        ctx.error(
            fields.position,
            "missing-field",
            format!("{what} needs `sourceAttribute`, `transformScript`, or both"),
        );
        return None;
    }
    Some(Document::Flow(
        FlowRule {
            name,
            connector: connector?,
            direction: direction?,
            object_type: object_type?,
            source_attribute,
            target_attribute: target_attribute?,
            confidence: confidence?,
            transform: transform?,
            origin,
        },
        spots,
    ))
}

fn read_projection(
    ctx: &mut Ctx<'_>,
    spec: &Node,
    what: &str,
    name: RuleName,
    mut spots: Spots,
    origin: Origin,
) -> Option<Document> {
    let fields = Fields::read(
        ctx,
        spec,
        what,
        Some(&[
            "targetConnector",
            "objectType",
            "filter",
            "container",
            "deprovision",
            "gracePeriod",
        ]),
    )?;
    let target = connector_field(ctx, &fields, "targetConnector", what, &mut spots);
    let object_type = object_type_field(ctx, &fields, what, true, &mut spots);
    let filter = script(ctx, &fields, "filter", true, false, what);
    let container = fields.string(ctx, "container", what, true);
    let grace = fields.string(ctx, "gracePeriod", what, false);
    let grace_period = match &grace {
        Some(g) => parse_with(ctx, g, "invalid-value", duration).map(Some),
        None => Some(None),
    };
    let deprovision = match fields.string(ctx, "deprovision", what, false) {
        None => Some(Deprovision::Disable),
        Some(d) => match (d.value.as_str(), grace_period) {
            ("disable", _) => Some(Deprovision::Disable),
            ("delete", _) => Some(Deprovision::Delete),
            ("disable-then-delete", Some(Some(grace_period))) => {
                Some(Deprovision::DisableThenDelete { grace_period })
            }
            ("disable-then-delete", Some(None)) => {
                ctx.error(
                    d.position,
                    "missing-field",
                    "`deprovision: disable-then-delete` needs `gracePeriod`, such as 30d",
                );
                None
            }
            ("disable-then-delete", None) => None,
            (other, _) => {
                ctx.error(
                    d.position,
                    "invalid-value",
                    format!("`deprovision` must be disable, delete or disable-then-delete, found `{other}`"),
                );
                None
            }
        },
    };
    if let (Some(g), Some(Deprovision::Disable | Deprovision::Delete)) = (&grace, deprovision) {
        ctx.problems.push(Problem {
            file: ctx.file.to_owned(),
            position: g.position,
            severity: Severity::Warning,
            code: "unused-field".to_owned(),
            message: "`gracePeriod` only applies to `deprovision: disable-then-delete`".to_owned(),
        });
    }
    Some(Document::Projection(
        ProjectionRule {
            name,
            target: target?,
            object_type: object_type??,
            filter: filter?,
            container: container?.value,
            deprovision: deprovision?,
            origin,
        },
        spots,
    ))
}

fn read_composer(
    ctx: &mut Ctx<'_>,
    spec: &Node,
    what: &str,
    name: RuleName,
    mut spots: Spots,
    origin: Origin,
) -> Option<Document> {
    let fields = Fields::read(
        ctx,
        spec,
        what,
        Some(&[
            "objectType",
            "targetAttribute",
            "confidence",
            "transformScript",
        ]),
    )?;
    let object_type = object_type_field(ctx, &fields, what, true, &mut spots);
    let target = fields.string(ctx, "targetAttribute", what, true);
    if let Some(t) = &target {
        spots.target_attribute = t.position;
    }
    let target_attribute =
        target.and_then(|t| parse_with(ctx, &t, "invalid-name", AttributeName::parse));
    let confidence = confidence(ctx, &fields, what);
    let transform = script(ctx, &fields, "transformScript", false, true, what);
    Some(Document::Composer(
        ComposerRule {
            name,
            object_type: object_type??,
            target_attribute: target_attribute?,
            confidence: confidence?,
            transform: transform??,
            origin,
        },
        spots,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECTORS: &str = r#"
apiVersion: identitymesh.io/v1
kind: Connector
metadata: { name: hr }
spec: { type: hr-csv, objectTypes: [User], externalIdAttribute: employeeId, authoritative: true }
---
kind: Connector
metadata: { name: corporate-ad }
spec: { type: ldap, objectTypes: [User, ServiceAccount], externalIdAttribute: objectGUID }
---
kind: Connector
metadata: { name: hr-database }
spec: { type: postgres-target, objectTypes: [User] }
"#;

    fn problems(rules: &str) -> Vec<String> {
        let validation = validate(&[
            SourceFile::new("connectors.yaml", CONNECTORS),
            SourceFile::new("rules.yaml", rules),
        ]);
        validation
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn secrets_in_connector_settings_are_refused_without_quoting_them() {
        let rules = r#"
kind: Connector
metadata: { name: expense }
spec: { type: scim-target, objectTypes: [User], url: 'https://x.example.com/scim/v2',
        token: hunter2 }
---
kind: Connector
metadata: { name: directory }
spec: { type: ldap-target, objectTypes: [User], url: 'ldap://ldap:389', bindPassword: hunter3 }
---
kind: Connector
metadata: { name: payroll }
spec: { type: postgres-target, objectTypes: [User], dsn: 'postgres://app:hunter4@db/app' }
---
kind: Connector
metadata: { name: payroll-2 }
spec: { type: postgres-target, objectTypes: [User], dsn: 'postgres://db/app?sslpassword=hunter5' }
"#;
        let found = problems(rules);
        assert_eq!(found.len(), 4, "{found:#?}");
        for problem in &found {
            assert!(problem.contains("error[inline-secret]"), "{problem}");
            assert!(!problem.contains("hunter"), "{problem}");
        }
        // Settings that name a variable, and URLs without a password, are what belongs here.
        let rules = r#"
kind: Connector
metadata: { name: expense }
spec: { type: scim-target, objectTypes: [User], url: 'https://x.example.com/scim/v2?a=b',
        tokenEnv: EXPENSE_TOKEN, tokenUrl: 'https://idp/token' }
---
kind: Connector
metadata: { name: payroll }
spec: { type: postgres-target, objectTypes: [User], dsn: 'postgres://app@db/app',
        passwordEnv: PAYROLL_PASSWORD, dsnEnv: PAYROLL_DSN }
"#;
        assert_eq!(problems(rules), Vec::<String>::new());
    }

    #[test]
    fn the_reference_rules_load() {
        let rules = r#"
kind: JoinRule
metadata: { name: match-ad-users-by-employee-id }
spec: { connector: corporate-ad, sourceAttribute: employeeID, targetAttribute: EmployeeId,
        isAnchor: true, priority: 1 }
---
kind: FlowRule
metadata: { name: ad-display-name }
spec: { connector: corporate-ad, direction: inbound, sourceAttribute: displayName,
        targetAttribute: DisplayName, confidence: 80,
        transformScript: 'Concat(Left(givenName, 1), ". ", sn)' }
---
kind: ProjectionRule
metadata: { name: hr-db }
spec: { targetConnector: hr-database, objectType: User, filter: 'department != "Contractors"',
        container: dbo.Employees, deprovision: disable }
---
kind: MeshComposerRule
metadata: { name: sam }
spec: { objectType: User, targetAttribute: SamAccountName, confidence: 90,
        transformScript: 'ToLower(Concat(Left(FirstName, 1), LastName))' }
"#;
        assert_eq!(problems(rules), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let rules = r#"kind: JoinRule
metadata: { name: a }
spec: { connector: nowhere, sourceAttribute: x, targetAttribute: X, priority: 1 }
---
kind: JoinRule
metadata: { name: b }
spec: { connector: corporate-ad, sourceAttribute: x, targetAttribute: X, priority: 1 }
---
kind: JoinRule
metadata: { name: c }
spec: { connector: corporate-ad, sourceAttribute: x, targetAttribute: X, priority: 1 }
---
kind: FlowRule
metadata: { name: c }
spec: { connector: corporate-ad, direction: inbound, targetAttribute: X, confidence: 101, transformScript: 'Lefft(x, 1)' }
---
kind: MeshComposerRule
metadata: { name: m1 }
spec: { objectType: Robot, targetAttribute: A, confidence: 50, transformScript: 'B' }
"#;
        let found = problems(rules);
        let expected = [
            "rules.yaml:3:20: error[unknown-connector]: unknown connector `nowhere`",
            "rules.yaml:11:84: error[duplicate-priority]: connector `corporate-ad` already has a join rule with priority 1 at rules.yaml:6:19",
            "rules.yaml:14:19: error[duplicate-name]: rule `c` is already defined at rules.yaml:10:19",
            "rules.yaml:15:86: error[confidence-out-of-range]",
            "rules.yaml:15:109: error[E020]: in `transformScript`: unknown function `Lefft` (did you mean `Left`?)",
            "rules.yaml:19:21: error[unknown-object-type]",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(
                found.starts_with(expected),
                "{found} does not start with {expected}"
            );
        }
    }

    #[test]
    fn composer_cycles_are_refused() {
        let rules = r#"
kind: MeshComposerRule
metadata: { name: a }
spec: { objectType: User, targetAttribute: A, confidence: 50, transformScript: 'Concat(b, "x")' }
---
kind: MeshComposerRule
metadata: { name: b }
spec: { objectType: User, targetAttribute: B, confidence: 50, transformScript: 'a' }
---
kind: MeshComposerRule
metadata: { name: c }
spec: { objectType: User, targetAttribute: C, confidence: 50, transformScript: 'a' }
"#;
        let found = problems(rules);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found.iter().all(|p| p.contains("composer-cycle")),
            "{found:#?}"
        );
    }

    #[test]
    fn block_scripts_and_unknown_fields_point_inside_the_block() {
        let rules = "kind: MeshComposerRule\nmetadata: { name: a }\nspec:\n  objectType: User\n  targetAttribute: A\n  confidence: 50\n  transformScrip: x\n  transformScript: |\n    Concat(\n      Foo(x))\n";
        let found = problems(rules);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].starts_with("rules.yaml:7:3: error[unknown-field]"),
            "{found:#?}"
        );
        assert!(
            found[1].starts_with("rules.yaml:10:7: error[E020]"),
            "{found:#?}"
        );
    }

    #[test]
    fn composers_are_ordered_by_dependency() {
        let rules = r#"
kind: MeshComposerRule
metadata: { name: a-mail }
spec: { objectType: User, targetAttribute: Mail, confidence: 50, transformScript: 'Concat(SamAccountName, "@example.com")' }
---
kind: MeshComposerRule
metadata: { name: b-sam }
spec: { objectType: User, targetAttribute: SamAccountName, confidence: 90, transformScript: 'ToLower(LastName)' }
"#;
        let validation = validate(&[
            SourceFile::new("connectors.yaml", CONNECTORS),
            SourceFile::new("rules.yaml", rules),
        ]);
        let rule_set = validation.rule_set.unwrap();
        let order: Vec<&str> = rule_set
            .composer_rules(&ObjectType::parse("User").unwrap())
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(order, ["b-sam", "a-mail"]);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(duration("90m"), Ok(Duration::from_secs(5400)));
        assert!(duration("soon").is_err());
        assert!(duration("3w").is_err());
    }
}
