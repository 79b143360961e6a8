//! The schemas this server implements (RFC 7643 §4 User, §4.3 Enterprise User, §4.2 Group,
//! and the mesh's ServiceAccount), as static definitions.
//!
//! One table drives everything: input validation, mutability, case rules in filters and
//! sorting, `returned` in projections, and the `/Schemas` and `/ResourceTypes` documents, so
//! what the server advertises is exactly what it does.

use serde_json::{Value as Json, json};

/// Core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Enterprise User extension.
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The mesh's ServiceAccount schema: non-human identities with an owner and an expiry.
pub const SERVICE_ACCOUNT_SCHEMA: &str =
    "urn:identitymesh:params:scim:schemas:core:2.0:ServiceAccount";
/// List responses.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// Search requests (`POST /.search`).
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// PATCH requests.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// Text.
    String,
    /// true/false.
    Boolean,
    /// A real number.
    Decimal,
    /// A whole number.
    Integer,
    /// An xsd:dateTime (RFC 3339) string.
    DateTime,
    /// Base64 text.
    Binary,
    /// A URI.
    Reference,
    /// An object of sub-attributes.
    Complex,
}

impl AttrType {
    fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Boolean => "boolean",
            Self::Decimal => "decimal",
            Self::Integer => "integer",
            Self::DateTime => "dateTime",
            Self::Binary => "binary",
            Self::Reference => "reference",
            Self::Complex => "complex",
        }
    }
}

/// RFC 7643 §7 mutability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Set by the server only; ignored in requests.
    ReadOnly,
    /// Any change.
    ReadWrite,
    /// Set once, then never changed.
    Immutable,
    /// Written, never returned.
    WriteOnly,
}

/// RFC 7643 §7 returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Always, whatever `attributes`/`excludedAttributes` say.
    Always,
    /// Never.
    Never,
    /// Unless excluded.
    Default,
    /// Only when asked for.
    Request,
}

/// One attribute definition.
#[derive(Debug, Clone, Copy)]
pub struct AttrDef {
    /// Its canonical name.
    pub name: &'static str,
    /// Its type.
    pub ty: AttrType,
    /// Multi-valued?
    pub multi: bool,
    /// Required in a resource?
    pub required: bool,
    /// Case-sensitive comparison?
    pub case_exact: bool,
    /// Mutability.
    pub mutability: Mutability,
    /// When it is returned.
    pub returned: Returned,
    /// `server` when unique per endpoint, else `none`.
    pub unique: bool,
    /// Sub-attributes of a complex attribute.
    pub sub: &'static [AttrDef],
    /// For references: the resource types referred to.
    pub reference_types: &'static [&'static str],
    /// For people.
    pub description: &'static str,
}

const fn attr(name: &'static str, ty: AttrType, description: &'static str) -> AttrDef {
    AttrDef {
        name,
        ty,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        unique: false,
        sub: &[],
        reference_types: &[],
        description,
    }
}

const fn s(name: &'static str, d: &'static str) -> AttrDef {
    attr(name, AttrType::String, d)
}

impl AttrDef {
    const fn multi(mut self) -> Self {
        self.multi = true;
        self
    }
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    const fn exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    const fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    const fn sub(mut self, sub: &'static [AttrDef]) -> Self {
        self.sub = sub;
        self
    }
    const fn refs(mut self, r: &'static [&'static str]) -> Self {
        self.reference_types = r;
        self
    }

    /// Finds a sub-attribute by name, case-insensitively.
    pub fn sub_attr(&self, name: &str) -> Option<&'static AttrDef> {
        self.sub.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The JSON form used in `/Schemas`.
    pub fn to_json(&self) -> Json {
        let mut v = json!({
            "name": self.name,
            "type": self.ty.as_str(),
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
                Returned::Request => "request",
            },
            "uniqueness": if self.unique { "server" } else { "none" },
        });
        if let Some(map) = v.as_object_mut() {
            if !self.sub.is_empty() {
                map.insert(
                    "subAttributes".into(),
                    Json::Array(self.sub.iter().map(AttrDef::to_json).collect()),
                );
            }
            if !self.reference_types.is_empty() {
                map.insert("referenceTypes".into(), json!(self.reference_types));
            }
        }
        v
    }
}

use AttrType::{Binary, Boolean, Complex, DateTime, Reference};
use Mutability::{Immutable, ReadOnly, WriteOnly};

/// The sub-attributes of the common multi-valued attributes (emails, phoneNumbers, ims,
/// entitlements, roles).
const MULTI_STRING: &[AttrDef] = &[
    s("value", "The value."),
    s("display", "A human-readable name."),
    s("type", "A label: work, home, other..."),
    attr(
        "primary",
        Boolean,
        "The preferred value; true for at most one.",
    ),
];
const PHOTOS: &[AttrDef] = &[
    attr("value", Reference, "The URL of a photo.")
        .exact()
        .refs(&["external"]),
    s("display", "A human-readable name."),
    s("type", "photo or thumbnail."),
    attr("primary", Boolean, "The preferred photo."),
];
const X509: &[AttrDef] = &[
    attr("value", Binary, "A DER certificate, base64.").exact(),
    s("display", "A human-readable name."),
    s("type", "A label."),
    attr("primary", Boolean, "The preferred certificate."),
];
const ADDRESSES: &[AttrDef] = &[
    s("formatted", "The full address."),
    s("streetAddress", "Street, house number, ..."),
    s("locality", "City."),
    s("region", "State or region."),
    s("postalCode", "Postal code."),
    s("country", "ISO 3166-1 alpha-2 country code."),
    s("type", "work, home or other."),
    attr("primary", Boolean, "The preferred address."),
];
const NAME: &[AttrDef] = &[
    s("formatted", "The full name."),
    s("familyName", "The family name."),
    s("givenName", "The given name."),
    s("middleName", "The middle name(s)."),
    s("honorificPrefix", "Such as Ms."),
    s("honorificSuffix", "Such as III."),
];
const USER_GROUPS: &[AttrDef] = &[
    s("value", "The id of the group.")
        .exact()
        .mutability(ReadOnly),
    attr("$ref", Reference, "The URI of the group.")
        .exact()
        .mutability(ReadOnly)
        .refs(&["Group"]),
    s("display", "The group's displayName.").mutability(ReadOnly),
    s("type", "direct (only direct memberships are computed).").mutability(ReadOnly),
];

/// Core User attributes (RFC 7643 §4.1).
pub const USER_ATTRS: &[AttrDef] = &[
    s(
        "userName",
        "Unique identifier for the User, used to sign in.",
    )
    .required()
    .unique(),
    attr("name", Complex, "The components of the user's name.").sub(NAME),
    s("displayName", "The name for display."),
    s("nickName", "The casual name."),
    attr("profileUrl", Reference, "An online profile.")
        .exact()
        .refs(&["external"]),
    s("title", "The job title."),
    s("userType", "Employee, Contractor, ..."),
    s("preferredLanguage", "RFC 7231 Accept-Language form."),
    s("locale", "Such as en-US."),
    s("timezone", "IANA time zone, such as America/Los_Angeles."),
    attr(
        "active",
        Boolean,
        "Whether the user may sign in; false is a leaver.",
    ),
    s(
        "password",
        "Accepted and discarded: the mesh holds no passwords.",
    )
    .mutability(WriteOnly)
    .returned(Returned::Never),
    attr("emails", Complex, "Email addresses.")
        .multi()
        .sub(MULTI_STRING),
    attr("phoneNumbers", Complex, "Phone numbers.")
        .multi()
        .sub(MULTI_STRING),
    attr("ims", Complex, "Instant messaging addresses.")
        .multi()
        .sub(MULTI_STRING),
    attr("photos", Complex, "Photo URLs.").multi().sub(PHOTOS),
    attr("addresses", Complex, "Physical addresses.")
        .multi()
        .sub(ADDRESSES),
    attr(
        "groups",
        Complex,
        "Direct group memberships, computed from Groups.",
    )
    .multi()
    .mutability(ReadOnly)
    .sub(USER_GROUPS),
    attr("entitlements", Complex, "Entitlements.")
        .multi()
        .sub(MULTI_STRING),
    attr("roles", Complex, "Roles.").multi().sub(MULTI_STRING),
    attr("x509Certificates", Complex, "Certificates.")
        .multi()
        .sub(X509),
];

const MANAGER: &[AttrDef] = &[
    s("value", "The id of the manager's User.").exact(),
    attr("$ref", Reference, "The URI of the manager's User.")
        .exact()
        .refs(&["User"]),
    s("displayName", "The manager's displayName.").mutability(ReadOnly),
];

/// Enterprise User attributes (RFC 7643 §4.3).
pub const ENTERPRISE_ATTRS: &[AttrDef] = &[
    s(
        "employeeNumber",
        "The organization's identifier for the person.",
    ),
    s("costCenter", "The cost center."),
    s("organization", "The organization."),
    s("division", "The division."),
    s("department", "The department."),
    attr("manager", Complex, "The user's manager.").sub(MANAGER),
];

const MEMBERS: &[AttrDef] = &[
    s("value", "The id of a member User or Group.")
        .exact()
        .mutability(Immutable),
    attr("$ref", Reference, "The URI of the member.")
        .exact()
        .mutability(Immutable)
        .refs(&["User", "Group"]),
    s("type", "User or Group.").mutability(Immutable),
    s("display", "The member's name, for display."),
];

/// Core Group attributes (RFC 7643 §4.2).
pub const GROUP_ATTRS: &[AttrDef] = &[
    s("displayName", "The name of the group.").required(),
    attr("members", Complex, "Direct members: Users and Groups.")
        .multi()
        .sub(MEMBERS),
];

const OWNER: &[AttrDef] = &[
    s("value", "The id of the owning User.").exact().required(),
    attr("$ref", Reference, "The URI of the owning User.")
        .exact()
        .refs(&["User"]),
    s("display", "The owner's name, for display."),
];

/// ServiceAccount attributes: a non-human identity governed like a person.
pub const SERVICE_ACCOUNT_ATTRS: &[AttrDef] = &[
    s(
        "name",
        "Unique name of the service account (a client id, an account name).",
    )
    .required()
    .unique(),
    s("displayName", "The name for display."),
    s("description", "What the account is."),
    s(
        "purpose",
        "Why the account exists: the workload or integration it serves.",
    ),
    attr("owner", Complex, "The User accountable for the account.").sub(OWNER),
    attr("expiresAt", DateTime, "When the account must stop working."),
    attr(
        "active",
        Boolean,
        "Whether the account may authenticate; false is a leaver.",
    ),
];

const META: &[AttrDef] = &[
    s("resourceType", "The resource type.")
        .exact()
        .mutability(ReadOnly),
    attr("created", DateTime, "When the resource was created.").mutability(ReadOnly),
    attr("lastModified", DateTime, "When it was last changed.").mutability(ReadOnly),
    attr("location", Reference, "Its URI.")
        .exact()
        .mutability(ReadOnly),
    s("version", "Its ETag.").exact().mutability(ReadOnly),
];

/// The common attributes every resource has (RFC 7643 §3.1).
pub const COMMON_ATTRS: &[AttrDef] = &[
    s("id", "Server-assigned identifier.")
        .exact()
        .mutability(ReadOnly)
        .returned(Returned::Always)
        .unique(),
    s("externalId", "The client's identifier for the resource.").exact(),
    attr("meta", Complex, "Resource metadata.")
        .mutability(ReadOnly)
        .sub(META),
];

/// `schemas`: in every resource, filterable (RFC 7644 §3.4.2.2 filters on it), but not an
/// attribute of any schema, so it is not listed in `/Schemas`.
pub const SCHEMAS_ATTR: AttrDef = attr("schemas", Reference, "The schemas of the resource.")
    .multi()
    .exact()
    .mutability(ReadOnly)
    .returned(Returned::Always);

/// A schema: its URN and attributes.
#[derive(Debug)]
pub struct SchemaDef {
    /// The URN.
    pub id: &'static str,
    /// Short name.
    pub name: &'static str,
    /// For people.
    pub description: &'static str,
    /// The attributes.
    pub attributes: &'static [AttrDef],
}

/// Every schema served.
pub const SCHEMAS: &[SchemaDef] = &[
    SchemaDef {
        id: USER_SCHEMA,
        name: "User",
        description: "User Account",
        attributes: USER_ATTRS,
    },
    SchemaDef {
        id: ENTERPRISE_SCHEMA,
        name: "EnterpriseUser",
        description: "Enterprise User",
        attributes: ENTERPRISE_ATTRS,
    },
    SchemaDef {
        id: GROUP_SCHEMA,
        name: "Group",
        description: "Group",
        attributes: GROUP_ATTRS,
    },
    SchemaDef {
        id: SERVICE_ACCOUNT_SCHEMA,
        name: "ServiceAccount",
        description: "A non-human identity with an accountable owner, a purpose and an expiry",
        attributes: SERVICE_ACCOUNT_ATTRS,
    },
];

/// A resource type served.
#[derive(Debug)]
pub struct ResourceType {
    /// `User`, `Group`, `ServiceAccount`: also the object type of its change events.
    pub name: &'static str,
    /// The endpoint, e.g. `/Users`.
    pub endpoint: &'static str,
    /// For people.
    pub description: &'static str,
    /// The core schema.
    pub schema: &'static SchemaDef,
    /// Extensions, with whether each is required.
    pub extensions: &'static [(&'static SchemaDef, bool)],
}

#[allow(clippy::indexing_slicing)] // constant indices into a constant table
const USER_RT: ResourceType = ResourceType {
    name: "User",
    endpoint: "/Users",
    description: "User Account",
    schema: &SCHEMAS[0],
    extensions: &[(&SCHEMAS[1], false)],
};

#[allow(clippy::indexing_slicing)]
const GROUP_RT: ResourceType = ResourceType {
    name: "Group",
    endpoint: "/Groups",
    description: "Group",
    schema: &SCHEMAS[2],
    extensions: &[],
};

#[allow(clippy::indexing_slicing)]
const SERVICE_ACCOUNT_RT: ResourceType = ResourceType {
    name: "ServiceAccount",
    endpoint: "/ServiceAccounts",
    description: "Non-human identity",
    schema: &SCHEMAS[3],
    extensions: &[],
};

/// Every resource type served.
pub const RESOURCE_TYPES: &[ResourceType] = &[USER_RT, GROUP_RT, SERVICE_ACCOUNT_RT];

impl ResourceType {
    /// Finds a resource type by its endpoint segment (`Users`).
    pub fn by_endpoint(segment: &str) -> Option<&'static ResourceType> {
        RESOURCE_TYPES
            .iter()
            .find(|rt| rt.endpoint.get(1..) == Some(segment))
    }

    /// Finds a resource type by name.
    pub fn by_name(name: &str) -> Option<&'static ResourceType> {
        RESOURCE_TYPES.iter().find(|rt| rt.name == name)
    }

    /// The attribute that must be unique (userName, name), if any.
    pub fn unique_attr(&self) -> Option<&'static AttrDef> {
        self.schema.attributes.iter().find(|a| a.unique)
    }

    /// Finds an extension schema by URN, case-insensitively.
    pub fn extension(&self, urn: &str) -> Option<&'static SchemaDef> {
        self.extensions
            .iter()
            .map(|(s, _)| *s)
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// Finds a core or common attribute (or `schemas`) by name, case-insensitively.
    pub fn core_attr(&self, name: &str) -> Option<&'static AttrDef> {
        self.schema
            .attributes
            .iter()
            .chain(COMMON_ATTRS)
            .chain(std::iter::once(&SCHEMAS_ATTR))
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Every schema URN of this type (core first).
    pub fn schema_ids(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.schema.id).chain(self.extensions.iter().map(|(s, _)| s.id))
    }

    /// The `/ResourceTypes` document.
    pub fn to_json(&self, base: &str) -> Json {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema.id,
            "schemaExtensions": self.extensions.iter().map(|(s, required)| json!({
                "schema": s.id, "required": required
            })).collect::<Vec<_>>(),
            "meta": {
                "resourceType": "ResourceType",
                "location": format!("{base}/ResourceTypes/{}", self.name),
            }
        })
    }
}

impl SchemaDef {
    /// The `/Schemas` document.
    pub fn to_json(&self, base: &str) -> Json {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(AttrDef::to_json).collect::<Vec<_>>(),
            "meta": {
                "resourceType": "Schema",
                "location": format!("{base}/Schemas/{}", self.id),
            }
        })
    }
}

/// The `/ServiceProviderConfig` document: exactly what this server implements.
pub fn service_provider_config(base: &str, max_results: usize, max_body: usize) -> Json {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/identity-mesh/identity-mesh/blob/main/docs/scim.md",
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": max_results },
        "changePassword": { "supported": false },
        "sort": { "supported": true },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A per-connector bearer token (RFC 6750), configured as its SHA-256.",
            "primary": true
        }],
        "maxPayloadSize": max_body,
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        }
    })
}
