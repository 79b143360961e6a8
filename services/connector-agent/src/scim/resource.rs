//! Resources as JSON: validating what a client sends into the stored form, rendering the
//! stored form with `meta` and computed attributes, `attributes`/`excludedAttributes`
//! projection, and flattening into the attributes of a change event.
//!
//! The stored form uses each attribute's canonical name (the schema's spelling), so that
//! filters, sorting and flattening look attributes up exactly. Extension attributes live
//! under their schema URN, as on the wire. Passwords are validated and dropped: the mesh holds
//! none.
//!
//! # Flattening (change event attributes)
//! - simple attribute: `userName`, `active`; a multi-valued simple attribute is a list.
//! - complex attribute: `name.givenName`.
//! - multi-valued complex attribute with a `type` label: `emails[work].value`,
//!   `emails[work].primary` (the first value of each type); values without a type use their
//!   position, `emails[0].value`; and `emails.value` lists every value in order.
//! - `members` (Groups): `members.value`, the member ids in order. A User's computed `groups`
//!   is not carried: membership travels in the Group's events.
//! - extension attributes keep their URN: `urn:...:enterprise:2.0:User:department`,
//!   `urn:...:enterprise:2.0:User:manager.value`.
//! - dateTime values are timestamps; `schemas` and `meta` are not carried.

use chrono::{DateTime, Utc};
use mesh_model::{AttributeName, Attributes, Value};
use serde_json::{Map, Value as Json};

use super::error::{ScimError, ScimType};
use super::filter::{AttrPath, resolve_path};
use super::schema::{AttrDef, AttrType, Mutability, ResourceType, Returned};

/// Validates a client's resource body (POST or PUT) and returns its stored form.
pub fn normalize(rt: &ResourceType, input: &Json) -> Result<Map<String, Json>, ScimError> {
    let obj = input
        .as_object()
        .ok_or_else(|| ScimError::syntax("the body must be a JSON object"))?;
    let schemas = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("schemas"))
        .map(|(_, v)| v)
        .ok_or_else(|| ScimError::syntax("\"schemas\" is required"))?;
    let schemas = schemas
        .as_array()
        .ok_or_else(|| ScimError::syntax("\"schemas\" must be an array of URNs"))?;
    let mut has_core = false;
    for schema in schemas {
        let urn = schema
            .as_str()
            .ok_or_else(|| ScimError::syntax("\"schemas\" must be an array of URNs"))?;
        if urn.eq_ignore_ascii_case(rt.schema.id) {
            has_core = true;
        } else if rt.extension(urn).is_none() {
            return Err(ScimError::syntax(format!(
                "{urn:?} is not a schema of {} resources",
                rt.name
            )));
        }
    }
    if !has_core {
        return Err(ScimError::syntax(format!(
            "\"schemas\" must include {}",
            rt.schema.id
        )));
    }
    let mut out = Map::new();
    for (key, value) in obj {
        if ["schemas", "id", "meta"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key))
        {
            continue;
        }
        if let Some(ext) = rt.extension(key) {
            if value.is_null() {
                continue;
            }
            let ext_obj = value
                .as_object()
                .ok_or_else(|| ScimError::value(format!("{} must be an object", ext.id)))?;
            let mut ext_out = Map::new();
            for (k, v) in ext_obj {
                let attr = ext
                    .attributes
                    .iter()
                    .find(|a| a.name.eq_ignore_ascii_case(k))
                    .ok_or_else(|| {
                        ScimError::syntax(format!("{} has no attribute {k:?}", ext.id))
                    })?;
                put(&mut ext_out, attr, v, &format!("{}:{}", ext.id, attr.name))?;
            }
            if !ext_out.is_empty() {
                insert_once(&mut out, ext.id, Json::Object(ext_out))?;
            }
            continue;
        }
        let attr = rt
            .core_attr(key)
            .ok_or_else(|| ScimError::syntax(format!("{} has no attribute {key:?}", rt.name)))?;
        put(&mut out, attr, value, attr.name)?;
    }
    check_required(rt, &out)?;
    set_schemas(rt, &mut out);
    Ok(out)
}

fn insert_once(out: &mut Map<String, Json>, name: &str, value: Json) -> Result<(), ScimError> {
    if out.insert(name.to_owned(), value).is_some() {
        return Err(ScimError::syntax(format!(
            "{name:?} is given twice (attribute names are case-insensitive)"
        )));
    }
    Ok(())
}

/// Validates `value` for `attr` and stores it under the canonical name; read-only attributes
/// are ignored (RFC 7643 §2.2) and write-only ones validated and dropped.
fn put(
    out: &mut Map<String, Json>,
    attr: &'static AttrDef,
    value: &Json,
    path: &str,
) -> Result<(), ScimError> {
    if attr.mutability == Mutability::ReadOnly {
        return Ok(());
    }
    let normalized = normalize_value(attr, value, path)?;
    if attr.mutability == Mutability::WriteOnly {
        return Ok(());
    }
    if let Some(v) = normalized {
        insert_once(out, attr.name, v)?;
    }
    Ok(())
}

/// Validates a value (single or multi) of `attr`; `None` when it is unassigned (null, empty).
pub fn normalize_value(
    attr: &'static AttrDef,
    value: &Json,
    path: &str,
) -> Result<Option<Json>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attr.multi {
        let items = value
            .as_array()
            .ok_or_else(|| ScimError::value(format!("{path} is multi-valued: send an array")))?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = normalize_single(attr, item, path)? {
                out.push(v);
            }
        }
        if attr.ty == AttrType::Complex {
            let primaries = out
                .iter()
                .filter(|v| v.get("primary") == Some(&Json::Bool(true)))
                .count();
            if primaries > 1 {
                return Err(ScimError::value(format!(
                    "{path}: at most one value may be primary"
                )));
            }
        }
        return Ok((!out.is_empty()).then_some(Json::Array(out)));
    }
    normalize_single(attr, value, path)
}

/// Validates one value of `attr` (an element, for a multi-valued attribute).
pub fn normalize_single(
    attr: &'static AttrDef,
    value: &Json,
    path: &str,
) -> Result<Option<Json>, ScimError> {
    let wrong = |expected: &str| ScimError::value(format!("{path} must be {expected}"));
    Ok(Some(match attr.ty {
        _ if value.is_null() => return Ok(None),
        AttrType::String | AttrType::Reference => match value {
            Json::String(s) => Json::String(s.clone()),
            _ => return Err(wrong("a string")),
        },
        AttrType::Binary => match value {
            Json::String(s)
                if s.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
                }) =>
            {
                Json::String(s.clone())
            }
            _ => return Err(wrong("base64 text")),
        },
        AttrType::Boolean => match value {
            Json::Bool(b) => Json::Bool(*b),
            _ => return Err(wrong("true or false")),
        },
        AttrType::Integer => match value.as_i64() {
            Some(i) if value.is_i64() || value.is_u64() => Json::from(i),
            _ => return Err(wrong("an integer")),
        },
        AttrType::Decimal => match value {
            Json::Number(n) => Json::Number(n.clone()),
            _ => return Err(wrong("a number")),
        },
        AttrType::DateTime => match value {
            Json::String(s) if DateTime::parse_from_rfc3339(s).is_ok() => Json::String(s.clone()),
            _ => return Err(wrong("an RFC 3339 dateTime such as 2026-01-31T12:00:00Z")),
        },
        AttrType::Complex => {
            let obj = value.as_object().ok_or_else(|| wrong("an object"))?;
            let mut out = Map::new();
            for (k, v) in obj {
                let sub = attr.sub_attr(k).ok_or_else(|| {
                    ScimError::syntax(format!("{path} has no sub-attribute {k:?}"))
                })?;
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(v) = normalize_single(sub, v, &format!("{path}.{}", sub.name))? {
                    insert_once(&mut out, sub.name, v)?;
                }
            }
            if out.is_empty() {
                return Ok(None);
            }
            for sub in attr.sub.iter().filter(|s| s.required) {
                if !out.contains_key(sub.name) {
                    return Err(ScimError::value(format!("{path}.{} is required", sub.name)));
                }
            }
            Json::Object(out)
        }
    }))
}

/// Checks the schema's required attributes.
pub fn check_required(rt: &ResourceType, out: &Map<String, Json>) -> Result<(), ScimError> {
    for attr in rt.schema.attributes.iter().filter(|a| a.required) {
        match out.get(attr.name) {
            Some(Json::String(s)) if s.trim().is_empty() => {
                return Err(ScimError::value(format!("{} must not be empty", attr.name)));
            }
            Some(_) => {}
            None => return Err(ScimError::value(format!("{} is required", attr.name))),
        }
    }
    Ok(())
}

/// Sets `schemas` to the core schema plus the extensions the resource uses.
pub fn set_schemas(rt: &ResourceType, out: &mut Map<String, Json>) {
    let mut schemas = vec![Json::from(rt.schema.id)];
    for (ext, _) in rt.extensions {
        if out.get(ext.id).is_some_and(|v| !v.is_null()) {
            schemas.push(Json::from(ext.id));
        }
    }
    out.insert("schemas".to_owned(), Json::Array(schemas));
}

/// The value of the unique attribute, folded for comparison (userName is not caseExact).
pub fn unique_key(rt: &ResourceType, data: &Map<String, Json>) -> Option<String> {
    let attr = rt.unique_attr()?;
    let v = data.get(attr.name)?.as_str()?;
    Some(if attr.case_exact {
        v.to_owned()
    } else {
        v.to_lowercase()
    })
}

/// The parts of `meta` the store keeps as columns.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The id.
    pub id: String,
    /// The version, increasing by one per write.
    pub version: i64,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Last modification time.
    pub modified: DateTime<Utc>,
}

impl Meta {
    /// The weak ETag for this version.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

/// Renders the stored form with `id` and `meta`.
pub fn render(
    rt: &ResourceType,
    data: &Map<String, Json>,
    meta: &Meta,
    base: &str,
) -> Map<String, Json> {
    let mut out = Map::with_capacity(data.len() + 2);
    if let Some(schemas) = data.get("schemas") {
        out.insert("schemas".into(), schemas.clone());
    }
    out.insert("id".into(), Json::String(meta.id.clone()));
    for (k, v) in data {
        if k != "schemas" {
            out.insert(k.clone(), v.clone());
        }
    }
    out.insert(
        "meta".into(),
        serde_json::json!({
            "resourceType": rt.name,
            "created": meta.created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lastModified": meta.modified.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "location": format!("{base}{}/{}", rt.endpoint, meta.id),
            "version": meta.etag(),
        }),
    );
    out
}

/// One selection of `attributes` / `excludedAttributes`.
#[derive(Debug, Clone)]
enum Selection {
    /// A whole extension.
    Extension(&'static str),
    /// An attribute, optionally one sub-attribute of it.
    Attr {
        ext: Option<&'static str>,
        attr: &'static AttrDef,
        sub: Option<&'static AttrDef>,
    },
}

/// Which attributes a response returns (RFC 7644 §3.9).
#[derive(Debug, Clone, Default)]
pub struct Projection {
    attributes: Option<Vec<Selection>>,
    excluded: Vec<Selection>,
}

fn parse_selections(rt: &ResourceType, list: &str) -> Result<Vec<Selection>, ScimError> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(ext) = rt.extension(item) {
            out.push(Selection::Extension(ext.id));
            continue;
        }
        let path = AttrPath::parse(item)
            .ok_or_else(|| ScimError::syntax(format!("{item:?} is not an attribute path")))?;
        // Unknown attributes select nothing rather than fail: a client asking one resource
        // type's list for another's attributes still gets an answer.
        if let Ok(t) = resolve_path(rt, None, &path) {
            out.push(Selection::Attr {
                ext: t.ext,
                attr: t.attr,
                sub: t.sub,
            });
        }
    }
    Ok(out)
}

impl Projection {
    /// Parses the comma-separated `attributes` and `excludedAttributes` parameters.
    pub fn parse(
        rt: &ResourceType,
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Result<Self, ScimError> {
        Ok(Self {
            attributes: attributes.map(|a| parse_selections(rt, a)).transpose()?,
            excluded: excluded
                .map(|e| parse_selections(rt, e))
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// Applies the projection to a rendered resource.
    pub fn apply(&self, rt: &ResourceType, doc: Map<String, Json>) -> Map<String, Json> {
        let mut doc = doc;
        if let Some(selections) = &self.attributes {
            let mut out = Map::new();
            for key in ["schemas", "id"] {
                if let Some(v) = doc.get(key) {
                    out.insert(key.to_owned(), v.clone());
                }
            }
            for sel in selections {
                copy_selection(&doc, &mut out, sel);
            }
            doc = out;
        }
        for sel in &self.excluded {
            remove_selection(&mut doc, sel);
        }
        let _ = rt;
        doc
    }
}

fn copy_selection(doc: &Map<String, Json>, out: &mut Map<String, Json>, sel: &Selection) {
    match sel {
        Selection::Extension(urn) => {
            if let Some(v) = doc.get(*urn) {
                out.insert((*urn).to_owned(), v.clone());
            }
        }
        Selection::Attr { ext, attr, sub } => {
            let (src, dst) = match ext {
                Some(urn) => {
                    let Some(Json::Object(src)) = doc.get(*urn) else {
                        return;
                    };
                    let dst = out
                        .entry((*urn).to_owned())
                        .or_insert_with(|| Json::Object(Map::new()));
                    let Json::Object(dst) = dst else { return };
                    (src, dst)
                }
                None => (doc, &mut *out),
            };
            let Some(value) = src.get(attr.name) else {
                return;
            };
            match sub {
                None => {
                    dst.insert(attr.name.to_owned(), value.clone());
                }
                Some(sub) => {
                    let pick = |v: &Json| -> Option<Json> {
                        let s = v.get(sub.name)?;
                        let mut m = Map::new();
                        m.insert(sub.name.to_owned(), s.clone());
                        Some(Json::Object(m))
                    };
                    match (value, dst.get_mut(attr.name)) {
                        (Json::Array(items), None) => {
                            dst.insert(
                                attr.name.to_owned(),
                                Json::Array(items.iter().filter_map(pick).collect()),
                            );
                        }
                        (Json::Array(items), Some(Json::Array(existing))) => {
                            for (item, slot) in items.iter().zip(existing.iter_mut()) {
                                if let (Some(s), Json::Object(slot)) = (item.get(sub.name), slot) {
                                    slot.insert(sub.name.to_owned(), s.clone());
                                }
                            }
                        }
                        (Json::Object(_), Some(Json::Object(existing))) => {
                            if let Some(s) = value.get(sub.name) {
                                existing.insert(sub.name.to_owned(), s.clone());
                            }
                        }
                        (Json::Object(_), None) => {
                            if let Some(v) = pick(value) {
                                dst.insert(attr.name.to_owned(), v);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

fn remove_selection(doc: &mut Map<String, Json>, sel: &Selection) {
    match sel {
        Selection::Extension(urn) => {
            doc.remove(*urn);
        }
        Selection::Attr { ext, attr, sub } => {
            if attr.returned == Returned::Always {
                return;
            }
            let container = match ext {
                Some(urn) => match doc.get_mut(*urn) {
                    Some(Json::Object(o)) => o,
                    _ => return,
                },
                None => doc,
            };
            match sub {
                None => {
                    container.remove(attr.name);
                }
                Some(sub) => match container.get_mut(attr.name) {
                    Some(Json::Array(items)) => {
                        for item in items {
                            if let Json::Object(o) = item {
                                o.remove(sub.name);
                            }
                        }
                    }
                    Some(Json::Object(o)) => {
                        o.remove(sub.name);
                    }
                    _ => {}
                },
            }
        }
    }
}

fn to_value(attr: &AttrDef, v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) if attr.ty == AttrType::Integer || n.is_i64() => Value::Integer(i),
            _ => n.as_f64().map_or(Value::Null, Value::Decimal),
        },
        Json::String(s) if attr.ty == AttrType::DateTime => DateTime::parse_from_rfc3339(s)
            .map(|t| Value::Timestamp(t.with_timezone(&Utc)))
            .unwrap_or_else(|_| Value::from(s.as_str())),
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::List(items.iter().map(|i| to_value(attr, i)).collect()),
        Json::Object(_) => Value::Null,
    }
}

fn push(out: &mut Attributes, name: String, value: Value) {
    if value.is_null() {
        return;
    }
    if let Ok(name) = AttributeName::parse(&name) {
        out.insert(name, value);
    }
}

fn flatten_attr(out: &mut Attributes, prefix: &str, attr: &'static AttrDef, value: &Json) {
    let name = format!("{prefix}{}", attr.name);
    match (attr.ty, value) {
        (AttrType::Complex, Json::Object(obj)) => {
            for sub in attr.sub {
                if let Some(v) = obj.get(sub.name) {
                    push(out, format!("{name}.{}", sub.name), to_value(sub, v));
                }
            }
        }
        (AttrType::Complex, Json::Array(items)) => {
            let value_sub = attr.sub_attr("value");
            if let Some(vs) = value_sub {
                let all: Vec<Value> = items
                    .iter()
                    .filter_map(|i| i.get(vs.name))
                    .map(|v| to_value(vs, v))
                    .collect();
                push(out, format!("{name}.value"), Value::List(all));
            }
            if attr.name == "members" {
                return;
            }
            let mut seen_types: Vec<String> = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let Some(obj) = item.as_object() else {
                    continue;
                };
                let key = match obj.get("type").and_then(Json::as_str) {
                    Some(t) if !t.is_empty() => {
                        let folded = t.to_lowercase();
                        if seen_types.contains(&folded) {
                            continue;
                        }
                        seen_types.push(folded);
                        t.to_owned()
                    }
                    _ => index.to_string(),
                };
                for sub in attr.sub {
                    if sub.name == "type" {
                        continue;
                    }
                    if let Some(v) = obj.get(sub.name) {
                        push(out, format!("{name}[{key}].{}", sub.name), to_value(sub, v));
                    }
                }
            }
        }
        _ => push(out, name, to_value(attr, value)),
    }
}

/// Flattens a stored resource (plus its id) into change event attributes; see the module
/// docs for the naming scheme.
pub fn flatten(rt: &ResourceType, id: &str, data: &Map<String, Json>) -> Attributes {
    let mut out = Attributes::new();
    push(&mut out, "id".to_owned(), Value::from(id));
    for (key, value) in data {
        if key == "schemas" || key == "groups" {
            continue;
        }
        if let Some(ext) = rt.extension(key) {
            let Some(obj) = value.as_object() else {
                continue;
            };
            let prefix = format!("{}:", ext.id);
            for attr in ext.attributes {
                if let Some(v) = obj.get(attr.name) {
                    flatten_attr(&mut out, &prefix, attr, v);
                }
            }
            continue;
        }
        if let Some(attr) = rt.core_attr(key) {
            flatten_attr(&mut out, "", attr, value);
        }
    }
    out
}

/// The `scimType` for an attribute path the client may not write.
pub fn readonly_error(name: &str) -> ScimError {
    ScimError::bad_request(ScimType::Mutability, format!("{name} is readOnly"))
}
