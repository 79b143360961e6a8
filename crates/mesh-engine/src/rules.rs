//! The loaded, checked rule set: connectors and the four rule kinds of DESIGN.md §3.
//!
//! A [`RuleSet`] only exists once every document parsed and validated (see [`crate::load`]):
//! every connector a rule names exists and carries the rule's object type, join priorities are
//! unique per connector, every script compiled, and MeshComposer rules are held in dependency
//! order. The stages therefore never meet a dangling reference and never fail on a rule.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use mesh_expr::Program;
use mesh_model::{AttributeName, Confidence, ConnectorId, ObjectType, RuleName};

use crate::yaml::{Node, Position};

/// Where a rule or connector was defined: a file and a position in it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Origin {
    /// The file as the caller named it.
    pub file: String,
    /// Where the document's `kind` key is.
    pub position: Position,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.position)
    }
}

/// What kind of system a connector talks to. Decides whether it imports (a source of
/// connector objects), exports (a target of projections), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnectorKind {
    /// `hr-csv`: an HR extract in CSV.
    HrCsv,
    /// `hr-json`: an HR extract in JSON (an array or NDJSON).
    HrJson,
    /// `scim-inbound`: an identity provider pushing SCIM 2.0 to the connector agent.
    ScimInbound,
    /// `scim-target`: a SCIM 2.0 service provider the mesh provisions.
    ScimTarget,
    /// `postgres-target`: a PostgreSQL table the mesh provisions.
    PostgresTarget,
    /// `ldap-target`: an LDAP directory the mesh provisions.
    LdapTarget,
    /// `ldap`: a directory that is both imported (from an export or a sync) and provisioned,
    /// such as a corporate Active Directory.
    Ldap,
    /// `risk`: the risk service, contributing each identity's risk level (docs/risk.md).
    Risk,
}

impl ConnectorKind {
    /// Every kind with its spelling in YAML.
    pub const ALL: &'static [(Self, &'static str)] = &[
        (Self::HrCsv, "hr-csv"),
        (Self::HrJson, "hr-json"),
        (Self::ScimInbound, "scim-inbound"),
        (Self::ScimTarget, "scim-target"),
        (Self::PostgresTarget, "postgres-target"),
        (Self::LdapTarget, "ldap-target"),
        (Self::Ldap, "ldap"),
        (Self::Risk, "risk"),
    ];

    /// Returns the YAML spelling.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(kind, _)| *kind == self)
            .map_or("?", |(_, name)| name)
    }

    /// Parses the YAML spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(kind, _)| *kind)
    }

    /// Returns true when the connector imports connector objects into the mesh.
    pub fn imports(self) -> bool {
        matches!(
            self,
            Self::HrCsv | Self::HrJson | Self::ScimInbound | Self::Ldap | Self::Risk
        )
    }

    /// Returns true when the mesh can export to the connector.
    pub fn exports(self) -> bool {
        matches!(
            self,
            Self::ScimTarget | Self::PostgresTarget | Self::LdapTarget | Self::Ldap
        )
    }
}

/// A compiled TransformScript with the text it came from.
#[derive(Debug, Clone)]
pub struct Script {
    /// The compiled program.
    pub program: Program,
}

impl Script {
    /// Returns the script's source.
    pub fn source(&self) -> &str {
        self.program.source()
    }
}

/// A `Connector` document.
#[derive(Debug, Clone)]
pub struct Connector {
    /// `metadata.name`.
    pub name: ConnectorId,
    /// `spec.type`.
    pub kind: ConnectorKind,
    /// `spec.objectTypes`: the object types it carries; the first is the default.
    pub object_types: Vec<ObjectType>,
    /// `spec.externalIdAttribute`: the raw attribute holding the external id of its objects.
    pub external_id_attribute: Option<AttributeName>,
    /// `spec.objectTypeAttribute`: the raw attribute naming a record's object type, for a
    /// connector that carries several.
    pub object_type_attribute: Option<AttributeName>,
    /// `spec.authoritative`: whether this connector decides the lifecycle of the mesh objects
    /// it joins (see [`crate::lifecycle`]).
    pub authoritative: bool,
    /// `spec.inactiveWhen`: a filter over raw attributes; a connector object for which it
    /// holds is present but inactive (a terminated worker, `active: false`).
    pub inactive_when: Option<Script>,
    /// Every other key of `spec`, for the connector agents (endpoints, column mappings...).
    pub settings: BTreeMap<String, Node>,
    /// Where it was defined.
    pub origin: Origin,
}

impl Connector {
    /// Returns true when the connector carries `object_type`.
    pub fn carries(&self, object_type: &ObjectType) -> bool {
        self.object_types.contains(object_type)
    }
}

/// A `JoinRule` document.
#[derive(Debug, Clone)]
pub struct JoinRule {
    /// `metadata.name`.
    pub name: RuleName,
    /// `spec.connector`.
    pub connector: ConnectorId,
    /// `spec.objectType`: limits the rule to one object type; `None` for all of them.
    pub object_type: Option<ObjectType>,
    /// `spec.sourceAttribute`: read from the raw connector attributes.
    pub source_attribute: AttributeName,
    /// `spec.targetAttribute`: the mesh attribute searched.
    pub target_attribute: AttributeName,
    /// `spec.isAnchor`: when nothing matches, project a new mesh object anchored on the value.
    pub is_anchor: bool,
    /// `spec.priority`: lower is tried first; unique per connector.
    pub priority: i64,
    /// Where it was defined.
    pub origin: Origin,
}

impl JoinRule {
    /// Returns true when the rule applies to connector objects of `object_type`.
    pub fn applies_to(&self, object_type: &ObjectType) -> bool {
        self.object_type.as_ref().is_none_or(|t| t == object_type)
    }
}

/// Which way a flow rule moves values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Connector attributes to mesh attributes.
    Inbound,
    /// Mesh attributes to target attributes.
    Outbound,
}

impl Direction {
    /// Returns `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// A `FlowRule` document.
#[derive(Debug, Clone)]
pub struct FlowRule {
    /// `metadata.name`.
    pub name: RuleName,
    /// `spec.connector`: the source (inbound) or the target (outbound).
    pub connector: ConnectorId,
    /// `spec.direction`.
    pub direction: Direction,
    /// `spec.objectType`: limits the rule to one object type; `None` for all of them.
    pub object_type: Option<ObjectType>,
    /// `spec.sourceAttribute`: copied as is when there is no script.
    pub source_attribute: Option<AttributeName>,
    /// `spec.targetAttribute`.
    pub target_attribute: AttributeName,
    /// `spec.confidence` (inbound only; outbound rules carry 100).
    pub confidence: Confidence,
    /// `spec.transformScript`: computes the value from the source attributes.
    pub transform: Option<Script>,
    /// Where it was defined.
    pub origin: Origin,
}

impl FlowRule {
    /// Returns true when the rule applies to objects of `object_type`.
    pub fn applies_to(&self, object_type: &ObjectType) -> bool {
        self.object_type.as_ref().is_none_or(|t| t == object_type)
    }
}

/// What a projection rule does to a target object that leaves its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Deprovision {
    /// Disable it and keep it; re-entering scope enables it again.
    Disable,
    /// Delete it; re-entering scope creates it again.
    Delete,
    /// Disable it, then delete it once the grace period has passed; re-entering scope inside
    /// the grace period enables it again.
    DisableThenDelete {
        /// How long a disabled object waits before deletion.
        grace_period: Duration,
    },
}

impl Deprovision {
    /// Returns the YAML spelling: `disable`, `delete` or `disable-then-delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Delete => "delete",
            Self::DisableThenDelete { .. } => "disable-then-delete",
        }
    }
}

/// A `ProjectionRule` document.
#[derive(Debug, Clone)]
pub struct ProjectionRule {
    /// `metadata.name`.
    pub name: RuleName,
    /// `spec.targetConnector`.
    pub target: ConnectorId,
    /// `spec.objectType`: the mesh object type projected.
    pub object_type: ObjectType,
    /// `spec.filter`: mesh objects for which it holds are in scope; none means all.
    pub filter: Option<Script>,
    /// `spec.container`: where the objects live in the target.
    pub container: String,
    /// `spec.deprovision` (and `spec.gracePeriod`).
    pub deprovision: Deprovision,
    /// Where it was defined.
    pub origin: Origin,
}

/// A `MeshComposerRule` document.
#[derive(Debug, Clone)]
pub struct ComposerRule {
    /// `metadata.name`.
    pub name: RuleName,
    /// `spec.objectType`.
    pub object_type: ObjectType,
    /// `spec.targetAttribute`.
    pub target_attribute: AttributeName,
    /// `spec.confidence`.
    pub confidence: Confidence,
    /// `spec.transformScript`, over the resolved mesh attributes.
    pub transform: Script,
    /// Where it was defined.
    pub origin: Origin,
}

/// What the stages look up by connector, gathered in one place.
#[derive(Debug, Clone)]
pub(crate) struct ConnectorRules {
    pub(crate) connector: Connector,
    pub(crate) join_rules: Vec<JoinRule>,
    pub(crate) inbound: Vec<FlowRule>,
    pub(crate) outbound: Vec<FlowRule>,
}

/// What the stages look up by object type, gathered in one place.
#[derive(Debug, Clone, Default)]
pub(crate) struct ObjectTypeRules {
    pub(crate) composers: Vec<ComposerRule>,
    pub(crate) join_targets: Vec<String>,
    /// The same targets as names: comparing names mostly settles on their heads.
    pub(crate) join_target_names: Vec<AttributeName>,
}

/// Finds `key` in a lookup list. The lists hold a few connectors or object types, looked up
/// for every event. The key is mostly the rule set's own copy, which a first scan finds by its
/// pointer alone; only then are texts compared (two ids of one length, `hr` and `ad`, cost a
/// comparison of their bytes each).
fn find<'a, K: PartialEq + AsRef<str>, V>(list: &'a [(K, V)], key: &K) -> Option<&'a V> {
    find_among(list.iter(), key)
}

/// [`find`] over the entries `list` gives.
fn find_among<'a, K: PartialEq + AsRef<str> + 'a, V: 'a>(
    list: impl Iterator<Item = &'a (K, V)> + Clone,
    key: &K,
) -> Option<&'a V> {
    let wanted: *const str = key.as_ref();
    list.clone()
        .find(|(k, _)| std::ptr::eq(k.as_ref(), wanted))
        .or_else(|| list.into_iter().find(|(k, _)| k == key))
        .map(|(_, v)| v)
}

/// Makes `value` the copy of it in `pool` (by `same`), or adds it there: the rule set's names
/// shared, one allocation per name, so that comparisons settle on a shared pointer.
fn share<T: Clone>(pool: &mut Vec<T>, value: &mut T, same: impl Fn(&T, &T) -> bool) {
    match pool.iter().find(|s| same(s, value)) {
        Some(s) => *value = s.clone(),
        None => pool.push(value.clone()),
    }
}

/// Every connector and rule, checked and indexed for the stages.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub(crate) connectors: BTreeMap<ConnectorId, Connector>,
    /// Per connector, in priority order.
    pub(crate) join_rules: BTreeMap<ConnectorId, Vec<JoinRule>>,
    /// Inbound flow rules per source connector, in name order.
    pub(crate) inbound: BTreeMap<ConnectorId, Vec<FlowRule>>,
    /// Outbound flow rules per target connector, in name order.
    pub(crate) outbound: BTreeMap<ConnectorId, Vec<FlowRule>>,
    /// In name order.
    pub(crate) projections: Vec<ProjectionRule>,
    /// Per object type, in dependency order (a rule comes after every rule whose target it
    /// reads), ties broken by name.
    pub(crate) composers: BTreeMap<ObjectType, Vec<ComposerRule>>,
    /// Per object type: the folded mesh attributes some join rule targets (a handful, so a
    /// list; it is searched for every attribute change).
    pub(crate) join_targets: BTreeMap<ObjectType, Vec<String>>,
    /// The maps above by connector and by object type, for the stages' lookups; built once
    /// the rest is complete ([`RuleSet::index`]).
    pub(crate) by_connector: Vec<(ConnectorId, ConnectorRules)>,
    pub(crate) by_object_type: Vec<(ObjectType, ObjectTypeRules)>,
    /// The places in `by_connector` of the authoritative connectors (mostly one), which
    /// lifecycle looks up for every joined connector object.
    pub(crate) authoritative: Vec<usize>,
    pub(crate) version: u64,
    /// The `AccessPolicy`, when the rule set has one (the risk service's).
    pub(crate) access_policy: Option<crate::risk::AccessPolicy>,
}

impl RuleSet {
    /// Makes every rule and connector name an object type with one shared copy per type, so
    /// that the stages' comparisons of types (a rule's with a connector object's, a mesh
    /// object's with a projection rule's) settle on a shared pointer without reading text.
    fn share_object_types(&mut self) {
        let mut shared: Vec<ObjectType> = Vec::new();
        let mut share = |t: &mut ObjectType| share(&mut shared, t, |a, b| a == b);
        for connector in self.connectors.values_mut() {
            for t in &mut connector.object_types {
                share(t);
            }
        }
        for rules in self.join_rules.values_mut() {
            for rule in rules {
                if let Some(t) = rule.object_type.as_mut() {
                    share(t);
                }
            }
        }
        for rules in self.inbound.values_mut().chain(self.outbound.values_mut()) {
            for rule in rules {
                if let Some(t) = rule.object_type.as_mut() {
                    share(t);
                }
            }
        }
        for rule in &mut self.projections {
            share(&mut rule.object_type);
        }
        for rules in self.composers.values_mut() {
            for rule in rules {
                share(&mut rule.object_type);
            }
        }
        fn keys<V>(map: &mut BTreeMap<ObjectType, V>, mut share: impl FnMut(&mut ObjectType)) {
            *map = std::mem::take(map)
                .into_iter()
                .map(|(mut t, v)| {
                    share(&mut t);
                    (t, v)
                })
                .collect();
        }
        keys(&mut self.composers, &mut share);
        keys(&mut self.join_targets, share);
    }

    /// Makes the attribute names the rules write and read one shared copy per spelling, so
    /// that comparing a contribution's attribute with a composer's target or a join rule's
    /// settles on a shared pointer (a name longer than the twelve bytes kept beside it is
    /// otherwise compared by its text).
    fn share_attribute_names(&mut self) {
        // By spelling: a shared name must keep the spelling it stands for.
        let mut shared: Vec<AttributeName> = Vec::new();
        let mut share = |name: &mut AttributeName| {
            share(&mut shared, name, |a, b| a.as_str() == b.as_str());
        };
        for rules in self.inbound.values_mut().chain(self.outbound.values_mut()) {
            for rule in rules {
                share(&mut rule.target_attribute);
                if let Some(source) = rule.source_attribute.as_mut() {
                    share(source);
                }
            }
        }
        for rules in self.join_rules.values_mut() {
            for rule in rules {
                share(&mut rule.target_attribute);
                share(&mut rule.source_attribute);
            }
        }
        for rules in self.composers.values_mut() {
            for rule in rules {
                share(&mut rule.target_attribute);
            }
        }
    }

    /// Builds the lookup lists from the maps; called once the maps are complete.
    pub(crate) fn index(&mut self) {
        self.share_object_types();
        self.share_attribute_names();
        self.by_connector = self
            .connectors
            .iter()
            .map(|(id, connector)| {
                let rules = |map: &BTreeMap<ConnectorId, Vec<FlowRule>>| {
                    map.get(id).cloned().unwrap_or_default()
                };
                (
                    id.clone(),
                    ConnectorRules {
                        connector: connector.clone(),
                        join_rules: self.join_rules.get(id).cloned().unwrap_or_default(),
                        inbound: rules(&self.inbound),
                        outbound: rules(&self.outbound),
                    },
                )
            })
            .collect();
        self.authoritative = self
            .by_connector
            .iter()
            .enumerate()
            .filter(|(_, (_, rules))| rules.connector.authoritative)
            .map(|(i, _)| i)
            .collect();
        let types: BTreeSet<&ObjectType> = self
            .composers
            .keys()
            .chain(self.join_targets.keys())
            .collect();
        self.by_object_type = types
            .into_iter()
            .map(|t| {
                (
                    t.clone(),
                    ObjectTypeRules {
                        composers: self.composers.get(t).cloned().unwrap_or_default(),
                        join_targets: self.join_targets.get(t).cloned().unwrap_or_default(),
                        join_target_names: self
                            .join_targets
                            .get(t)
                            .into_iter()
                            .flatten()
                            .filter_map(|folded| AttributeName::parse(folded).ok())
                            // Only names whose fold is the folded text itself stand for it.
                            .filter(|name| name.key() == name.as_str())
                            .collect(),
                    },
                )
            })
            .collect();
    }

    fn for_connector(&self, name: &ConnectorId) -> Option<&ConnectorRules> {
        find(&self.by_connector, name)
    }

    /// Returns the connector named `name`.
    pub fn connector(&self, name: &ConnectorId) -> Option<&Connector> {
        self.for_connector(name).map(|r| &r.connector)
    }

    /// Returns the connector named `name` when it is authoritative (decides lifecycle):
    /// [`RuleSet::connector`] for the connectors lifecycle reads, searched among the
    /// authoritative ones only.
    pub fn authoritative_connector(&self, name: &ConnectorId) -> Option<&Connector> {
        let authoritative = self
            .authoritative
            .iter()
            .filter_map(|i| self.by_connector.get(*i));
        find_among(authoritative, name).map(|rules| &rules.connector)
    }

    /// Returns the access policy of the risk service, when the rule set has one.
    pub fn access_policy(&self) -> Option<&crate::risk::AccessPolicy> {
        self.access_policy.as_ref()
    }

    /// Iterates over the connectors in name order.
    pub fn connectors(&self) -> impl Iterator<Item = &Connector> {
        self.connectors.values()
    }

    /// Returns the join rules of `connector`, in priority order.
    pub fn join_rules(&self, connector: &ConnectorId) -> &[JoinRule] {
        self.for_connector(connector)
            .map_or(&[], |r| r.join_rules.as_slice())
    }

    /// Iterates over every join rule, by connector then priority.
    pub fn all_join_rules(&self) -> impl Iterator<Item = &JoinRule> {
        self.join_rules.values().flatten()
    }

    /// Returns the inbound flow rules whose source is `connector`, in name order.
    pub fn inbound_flow_rules(&self, connector: &ConnectorId) -> &[FlowRule] {
        self.for_connector(connector)
            .map_or(&[], |r| r.inbound.as_slice())
    }

    /// Returns the outbound flow rules whose target is `connector`, in name order.
    pub fn outbound_flow_rules(&self, connector: &ConnectorId) -> &[FlowRule] {
        self.for_connector(connector)
            .map_or(&[], |r| r.outbound.as_slice())
    }

    /// Returns the projection rules, in name order.
    pub fn projection_rules(&self) -> &[ProjectionRule] {
        &self.projections
    }

    /// Returns the MeshComposer rules of `object_type`, in dependency order.
    pub fn composer_rules(&self, object_type: &ObjectType) -> &[ComposerRule] {
        find(&self.by_object_type, object_type).map_or(&[], |r| r.composers.as_slice())
    }

    /// Returns true when some connector carrying `object_type` is authoritative.
    pub fn has_authority(&self, object_type: &ObjectType) -> bool {
        self.connectors
            .values()
            .any(|c| c.authoritative && c.carries(object_type))
    }

    /// Returns the mesh object types: every object type an importing connector carries.
    pub fn mesh_object_types(&self) -> BTreeSet<ObjectType> {
        self.connectors
            .values()
            .filter(|c| c.kind.imports())
            .flat_map(|c| c.object_types.iter().cloned())
            .collect()
    }

    /// Returns true when some join rule for `object_type` targets the mesh attribute whose
    /// folded name is `folded`: a change of it may let a disconnector join.
    pub fn is_join_target(&self, object_type: &ObjectType, folded: &str) -> bool {
        find(&self.by_object_type, object_type).is_some_and(|r| {
            r.join_targets
                .iter()
                .any(|t| t.len() == folded.len() && t == folded)
        })
    }

    /// Returns the mesh attributes join rules for `object_type` target, as names, when each is
    /// written as its own fold (so that a name's equality with them is
    /// [`RuleSet::is_join_target`]); `None` otherwise, and then `is_join_target` decides.
    pub fn join_target_names(&self, object_type: &ObjectType) -> Option<&[AttributeName]> {
        match find(&self.by_object_type, object_type) {
            None => Some(&[]),
            Some(r) => (r.join_target_names.len() == r.join_targets.len())
                .then_some(r.join_target_names.as_slice()),
        }
    }

    /// Returns the version the services stamp on their outputs as `rule_version`: the
    /// numbered version of the stored rule set ([`RuleSet::with_version`]), or a fingerprint
    /// of the content (FNV-1a over the sources) for a rule set read from files only.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Counts the documents by kind (`Connector`, `JoinRule`, `FlowRule`, `ProjectionRule`,
    /// `MeshComposerRule`, `AccessPolicy`), as RuleAdmin reports a version's content.
    pub fn summary(&self) -> BTreeMap<String, u32> {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let flows: usize = self
            .connectors()
            .map(|c| {
                self.inbound_flow_rules(&c.name).len() + self.outbound_flow_rules(&c.name).len()
            })
            .sum();
        let composers: usize = self
            .mesh_object_types()
            .iter()
            .map(|t| self.composer_rules(t).len())
            .sum();
        [
            ("Connector", self.connectors().count()),
            ("JoinRule", self.all_join_rules().count()),
            ("FlowRule", flows),
            ("ProjectionRule", self.projection_rules().len()),
            ("MeshComposerRule", composers),
            ("AccessPolicy", usize::from(self.access_policy().is_some())),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| (kind.to_owned(), count(n)))
        .collect()
    }

    /// Numbers the rule set with its stored version (RuleAdmin).
    #[must_use]
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }
}
