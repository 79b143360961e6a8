//! RFC 7644 §3.5.2 PATCH: add, replace and remove, with attribute paths, value-filter paths
//! (`emails[type eq "work"].value`), whole-extension paths and path-less operations.
//!
//! Operations apply in order to a copy of the stored resource; the result is validated as a
//! whole (types, required attributes, at most one primary) before anything is written, so a
//! PATCH takes effect completely or not at all.
//!
//! Compatibility choices, each with a reason:
//! - `op` is case-insensitive (Entra ID sends `Replace`).
//! - A `remove` on a multi-valued attribute may carry a `value` listing the values to remove
//!   by their `value` sub-attribute (Entra ID removes group members this way).
//! - A boolean may arrive as the string `"True"`/`"False"` in a PATCH (Entra ID again).
//! - Path-less `add`/`replace` keys may be paths themselves (`"name.givenName"`).
//! - Setting `primary: true` on a value clears it on the others (§3.5.2: "the server SHALL
//!   automatically set primary to false for any other values").

use serde_json::{Map, Value as Json};

use super::error::ScimError;
use super::filter::{Expr, PatchPath, Target, matches, parse_patch_path};
use super::resource::{normalize, normalize_single};
use super::schema::{AttrDef, AttrType, Mutability, PATCH_OP, ResourceType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Applies a PATCH request body to `data` (the stored form, with `schemas`) and returns the
/// validated new stored form.
pub fn apply(
    rt: &ResourceType,
    data: &Map<String, Json>,
    body: &Json,
) -> Result<Map<String, Json>, ScimError> {
    let obj = super::message_body(body, PATCH_OP)?;
    let get = |name: &str| super::member(obj, name);
    let operations = get("Operations")
        .and_then(Json::as_array)
        .filter(|ops| !ops.is_empty())
        .ok_or_else(|| ScimError::syntax("\"Operations\" must be a non-empty array"))?;
    let mut doc = data.clone();
    for (i, operation) in operations.iter().enumerate() {
        let operation = operation
            .as_object()
            .ok_or_else(|| ScimError::syntax(format!("Operations[{i}] must be an object")))?;
        let field = |name: &str| {
            operation
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let op = match field("op")
            .and_then(Json::as_str)
            .map(str::to_ascii_lowercase)
        {
            Some(op) if op == "add" => Op::Add,
            Some(op) if op == "replace" => Op::Replace,
            Some(op) if op == "remove" => Op::Remove,
            _ => {
                return Err(ScimError::syntax(format!(
                    "Operations[{i}].op must be add, replace or remove"
                )));
            }
        };
        let path = match field("path") {
            None | Some(Json::Null) => None,
            Some(Json::String(p)) => Some(p.as_str()),
            Some(_) => {
                return Err(ScimError::path(format!(
                    "Operations[{i}].path must be a string"
                )));
            }
        };
        let value = field("value");
        if op != Op::Remove && value.is_none() {
            return Err(ScimError::value(format!("Operations[{i}] needs a value")));
        }
        match path {
            None => {
                if op == Op::Remove {
                    return Err(ScimError::no_target(format!(
                        "Operations[{i}]: remove needs a path"
                    )));
                }
                apply_pathless(rt, &mut doc, op, value.unwrap_or(&Json::Null))?;
            }
            Some(path) => {
                let pp = parse_patch_path(rt, path)?;
                apply_path(&mut doc, op, &pp, value)?;
            }
        }
    }
    normalize(rt, &Json::Object(doc))
}

fn apply_pathless(
    rt: &ResourceType,
    doc: &mut Map<String, Json>,
    op: Op,
    value: &Json,
) -> Result<(), ScimError> {
    let obj = value.as_object().ok_or_else(|| {
        ScimError::value("an add or replace without a path needs an object value")
    })?;
    for (key, v) in obj {
        if ["schemas", "id", "meta"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key))
        {
            continue;
        }
        if let Some(ext) = rt.extension(key) {
            let ext_obj = v
                .as_object()
                .ok_or_else(|| ScimError::value(format!("{} must be an object", ext.id)))?;
            for (k, v) in ext_obj {
                let pp = parse_patch_path(rt, &format!("{}:{k}", ext.id))?;
                apply_path(doc, op, &pp, Some(v))?;
            }
            continue;
        }
        let pp = parse_patch_path(rt, key)?;
        apply_path(doc, op, &pp, Some(v))?;
    }
    Ok(())
}

fn container<'a>(
    doc: &'a mut Map<String, Json>,
    target: &Target,
) -> Result<&'a mut Map<String, Json>, ScimError> {
    match target.ext {
        Some(urn) => {
            let slot = doc
                .entry(urn.to_owned())
                .or_insert_with(|| Json::Object(Map::new()));
            if !slot.is_object() {
                *slot = Json::Object(Map::new());
            }
            slot.as_object_mut()
                .ok_or_else(|| ScimError::value(format!("{urn} must be an object")))
        }
        None => Ok(doc),
    }
}

fn coerce(def: &AttrDef, value: &Json) -> Json {
    match (def.ty, value) {
        (AttrType::Boolean, Json::String(s)) if s.eq_ignore_ascii_case("true") => Json::Bool(true),
        (AttrType::Boolean, Json::String(s)) if s.eq_ignore_ascii_case("false") => {
            Json::Bool(false)
        }
        (AttrType::Complex, Json::Object(o)) => Json::Object(
            o.iter()
                .map(|(k, v)| {
                    let v = def.sub_attr(k).map_or_else(|| v.clone(), |s| coerce(s, v));
                    (k.clone(), v)
                })
                .collect(),
        ),
        _ => value.clone(),
    }
}

fn writable(def: &AttrDef, name: &str) -> Result<(), ScimError> {
    if def.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!("{name} is readOnly")));
    }
    Ok(())
}

fn apply_path(
    doc: &mut Map<String, Json>,
    op: Op,
    pp: &PatchPath,
    value: Option<&Json>,
) -> Result<(), ScimError> {
    if let Some(urn) = pp.whole_extension {
        match op {
            Op::Remove => {
                doc.remove(urn);
            }
            Op::Add | Op::Replace => {
                let obj = value
                    .and_then(Json::as_object)
                    .ok_or_else(|| ScimError::value(format!("{urn} needs an object value")))?;
                let slot = doc
                    .entry(urn.to_owned())
                    .or_insert_with(|| Json::Object(Map::new()));
                match slot {
                    Json::Object(existing) => {
                        for (k, v) in obj {
                            existing.insert(k.clone(), v.clone());
                        }
                    }
                    other => *other = Json::Object(obj.clone()),
                }
            }
        }
        return Ok(());
    }
    let Some(target) = pp.target else {
        return Err(ScimError::path("the path names nothing"));
    };
    let attr = target.attr;
    writable(attr, &target.display())?;
    if let Some(sub) = target.sub {
        writable(sub, &target.display())?;
    }
    let value = value.map(|v| coerce(target.sub.unwrap_or(attr), v));
    let name = target.display();
    let holder = container(doc, &target)?;
    match &pp.filter {
        Some(filter) => apply_filtered(holder, &target, filter, op, value.as_ref(), &name),
        None => apply_plain(holder, &target, op, value.as_ref(), &name),
    }
}

fn as_items(value: &Json) -> Vec<Json> {
    match value {
        Json::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

fn clear_other_primaries(items: &mut [Json], keep: &[usize]) {
    let keeps_primary = keep.iter().any(|i| {
        items
            .get(*i)
            .and_then(|v| v.get("primary"))
            .and_then(Json::as_bool)
            == Some(true)
    });
    if !keeps_primary {
        return;
    }
    for (i, item) in items.iter_mut().enumerate() {
        if !keep.contains(&i)
            && let Json::Object(o) = item
            && o.get("primary").and_then(Json::as_bool) == Some(true)
        {
            o.insert("primary".into(), Json::Bool(false));
        }
    }
}

fn apply_plain(
    holder: &mut Map<String, Json>,
    target: &Target,
    op: Op,
    value: Option<&Json>,
    name: &str,
) -> Result<(), ScimError> {
    let attr = target.attr;
    match (op, target.sub) {
        (Op::Remove, None) => {
            if attr.multi
                && attr.ty == AttrType::Complex
                && let Some(value) = value.filter(|v| !v.is_null())
            {
                // Remove the listed values, matched on their `value` sub-attribute.
                let remove: Vec<Json> = as_items(value)
                    .iter()
                    .filter_map(|v| v.get("value").cloned())
                    .collect();
                if let Some(Json::Array(items)) = holder.get_mut(attr.name) {
                    items.retain(|i| i.get("value").is_none_or(|v| !remove.contains(v)));
                }
                return Ok(());
            }
            holder.remove(attr.name);
        }
        (Op::Remove, Some(sub)) => match holder.get_mut(attr.name) {
            Some(Json::Object(o)) => {
                o.remove(sub.name);
            }
            Some(Json::Array(items)) => {
                for item in items {
                    if let Json::Object(o) = item {
                        o.remove(sub.name);
                    }
                }
            }
            _ => {}
        },
        (Op::Add | Op::Replace, None) => {
            let value = value.cloned().unwrap_or(Json::Null);
            if attr.multi {
                let new_items = as_items(&value);
                let existing = match (op, holder.remove(attr.name)) {
                    (Op::Add, Some(Json::Array(items))) => items,
                    _ => Vec::new(),
                };
                let mut items = existing;
                let mut added = Vec::new();
                for item in new_items {
                    if item.is_null() {
                        continue;
                    }
                    if !items.contains(&item) {
                        added.push(items.len());
                        items.push(item);
                    }
                }
                clear_other_primaries(&mut items, &added);
                if !items.is_empty() {
                    holder.insert(attr.name.to_owned(), Json::Array(items));
                }
            } else if attr.ty == AttrType::Complex {
                // §3.5.2.3: sub-attributes not given are left unchanged, for add and replace.
                let obj = value
                    .as_object()
                    .ok_or_else(|| ScimError::value(format!("{name} needs an object value")))?;
                let slot = holder
                    .entry(attr.name.to_owned())
                    .or_insert_with(|| Json::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Json::Object(Map::new());
                }
                if let Json::Object(existing) = slot {
                    for (k, v) in obj {
                        existing.insert(k.clone(), v.clone());
                    }
                }
            } else if value.is_null() {
                holder.remove(attr.name);
            } else {
                holder.insert(attr.name.to_owned(), value);
            }
        }
        (Op::Add | Op::Replace, Some(sub)) => {
            let value = value.cloned().unwrap_or(Json::Null);
            if attr.multi {
                let Some(Json::Array(items)) = holder.get_mut(attr.name) else {
                    return Err(ScimError::no_target(format!("{name}: no values to set")));
                };
                if sub.mutability == Mutability::Immutable {
                    return Err(ScimError::mutability(format!("{name} is immutable")));
                }
                for item in items.iter_mut() {
                    if let Json::Object(o) = item {
                        o.insert(sub.name.to_owned(), value.clone());
                    }
                }
            } else {
                let slot = holder
                    .entry(attr.name.to_owned())
                    .or_insert_with(|| Json::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Json::Object(Map::new());
                }
                if let Json::Object(o) = slot {
                    o.insert(sub.name.to_owned(), value);
                }
            }
        }
    }
    Ok(())
}

fn apply_filtered(
    holder: &mut Map<String, Json>,
    target: &Target,
    filter: &Expr,
    op: Op,
    value: Option<&Json>,
    name: &str,
) -> Result<(), ScimError> {
    let attr = target.attr;
    let Some(Json::Array(items)) = holder.get_mut(attr.name) else {
        return Err(ScimError::no_target(format!(
            "{name}: the attribute has no values"
        )));
    };
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.as_object().is_some_and(|o| matches(filter, o)))
        .map(|(i, _)| i)
        .collect();
    if matched.is_empty() {
        return Err(ScimError::no_target(format!(
            "{name}: the filter matches no value"
        )));
    }
    match (op, target.sub) {
        (Op::Remove, None) => {
            let mut index = 0;
            items.retain(|_| {
                let keep = !matched.contains(&index);
                index += 1;
                keep
            });
        }
        (Op::Remove, Some(sub)) => {
            for i in &matched {
                if let Some(Json::Object(o)) = items.get_mut(*i) {
                    o.remove(sub.name);
                }
            }
        }
        (Op::Add | Op::Replace, Some(sub)) => {
            if sub.mutability == Mutability::Immutable {
                return Err(ScimError::mutability(format!("{name} is immutable")));
            }
            let value = value.cloned().unwrap_or(Json::Null);
            for i in &matched {
                if let Some(Json::Object(o)) = items.get_mut(*i) {
                    o.insert(sub.name.to_owned(), value.clone());
                }
            }
            clear_other_primaries(items, &matched);
        }
        (Op::Add | Op::Replace, None) => {
            let value = value.cloned().unwrap_or(Json::Null);
            let new = normalize_single(attr, &value, name)?
                .ok_or_else(|| ScimError::value(format!("{name} needs a value")))?;
            let Json::Object(new) = new else {
                return Err(ScimError::value(format!("{name} needs an object value")));
            };
            for i in &matched {
                if let Some(Json::Object(o)) = items.get_mut(*i) {
                    if op == Op::Replace {
                        *o = new.clone();
                    } else {
                        for (k, v) in &new {
                            o.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            clear_other_primaries(items, &matched);
        }
    }
    if items.is_empty() {
        holder.remove(attr.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::error::ScimType;
    use crate::scim::schema::RESOURCE_TYPES;

    fn user() -> Map<String, Json> {
        normalize(
            &RESOURCE_TYPES[0],
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "bjensen",
                "name": {"givenName": "Barbara", "familyName": "Jensen"},
                "emails": [
                    {"value": "bjensen@example.com", "type": "work", "primary": true},
                    {"value": "babs@jensen.org", "type": "home"}
                ]
            }),
        )
        .unwrap()
    }

    fn patch(ops: Json) -> Result<Map<String, Json>, ScimError> {
        apply(
            &RESOURCE_TYPES[0],
            &user(),
            &json!({"schemas": [PATCH_OP], "Operations": ops}),
        )
    }

    #[test]
    fn replace_with_value_filter_and_sub_attribute() {
        let out = patch(
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value",
                                "value": "barbara@example.com"}]),
        )
        .unwrap();
        assert_eq!(out["emails"][0]["value"], "barbara@example.com");
        assert_eq!(out["emails"][1]["value"], "babs@jensen.org");
    }

    #[test]
    fn add_appends_and_moves_primary() {
        let out = patch(json!([{"op": "add", "path": "emails",
            "value": [{"value": "new@example.com", "type": "other", "primary": true}]}]))
        .unwrap();
        assert_eq!(out["emails"].as_array().unwrap().len(), 3);
        assert_eq!(out["emails"][0]["primary"], false);
        assert_eq!(out["emails"][2]["primary"], true);
    }

    #[test]
    fn remove_with_filter_and_pathless_replace() {
        let out = patch(json!([
            {"op": "remove", "path": "emails[type eq \"home\"]"},
            {"op": "Replace", "value": {"active": "False", "name.givenName": "Babs",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Tour"}}}
        ]))
        .unwrap();
        assert_eq!(out["emails"].as_array().unwrap().len(), 1);
        assert_eq!(out["active"], false);
        assert_eq!(out["name"]["givenName"], "Babs");
        assert_eq!(out["name"]["familyName"], "Jensen");
        assert_eq!(
            out["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
            "Tour"
        );
        assert_eq!(out["schemas"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn errors_carry_the_rfc_scim_type() {
        let cases = [
            (json!([{"op": "remove"}]), ScimType::NoTarget),
            (
                json!([{"op": "move", "path": "title", "value": "x"}]),
                ScimType::InvalidSyntax,
            ),
            (
                json!([{"op": "replace", "path": "emails[type eq \"pager\"].value", "value": "x"}]),
                ScimType::NoTarget,
            ),
            (
                json!([{"op": "replace", "path": "nosuch", "value": "x"}]),
                ScimType::InvalidPath,
            ),
            (
                json!([{"op": "replace", "path": "emails[type eq]", "value": "x"}]),
                ScimType::InvalidPath,
            ),
            (
                json!([{"op": "replace", "path": "groups", "value": []}]),
                ScimType::Mutability,
            ),
            (
                json!([{"op": "replace", "path": "active", "value": "maybe"}]),
                ScimType::InvalidValue,
            ),
            (
                json!([{"op": "remove", "path": "userName"}]),
                ScimType::InvalidValue,
            ),
            (
                json!([{"op": "add", "path": "title"}]),
                ScimType::InvalidValue,
            ),
            (
                json!([{"op": "replace", "path": 7, "value": "x"}]),
                ScimType::InvalidPath,
            ),
            (json!([]), ScimType::InvalidSyntax),
            (json!(["x"]), ScimType::InvalidSyntax),
        ];
        for (ops, expected) in cases {
            let e = patch(ops.clone()).expect_err(&ops.to_string());
            assert_eq!(e.scim_type, Some(expected), "{ops}: {e:?}");
        }
    }
}
