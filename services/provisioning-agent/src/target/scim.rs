//! A SCIM 2.0 service provider as a target (RFC 7643, RFC 7644), over HTTP with a bearer token.
//!
//! - create: `GET /Users?filter=userName eq "…"` first; an existing user is adopted (PATCHed
//!   to the carried values and enabled) instead of created twice; else `POST /Users`. A 409
//!   on the POST (created by someone in between) searches once more and adopts, and is a
//!   permanent failure only if still nothing is found.
//! - update: `PATCH` with one operation per carried attribute, `replace` for a value and
//!   `remove` for null. Typed multi-valued attributes (`emails[work].value`) are merged into
//!   the user's current list (read with a `GET`) and the list replaced, because a value filter
//!   that matches nothing is a 400 `noTarget` on many servers.
//! - disable and enable: `PATCH` `active` to false or true.
//! - delete: `DELETE`; 404 means already deleted.
//!
//! Errors: connection failures, timeouts, 408, 429 and 5xx are retryable; every other status is
//! permanent. The failure message names the method, path, status, `scimType` and `detail`.
//!
//! Target attribute names map to SCIM paths (the connector agent flattens inbound SCIM the same
//! way): `userName` and every other name without punctuation is a top-level attribute;
//! `name.givenName` a sub-attribute; `emails[work].value` the `value` of the `emails` entry of
//! type `work` (`emails[work]` alone means its `value`); a name that starts with a schema URN
//! (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`) is an attribute of
//! that extension, whose URN joins `schemas`.

use futures::FutureExt as _;
use futures::future::BoxFuture;
use mesh_model::{AttributeName, ExportOperation, Value};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value as Json, json};

use super::{Common, Outcome, Request, Target, not_known_yet, text_of};
use crate::settings::{Settings, SettingsError};

/// The core User schema, the default of `schema`.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SCIM_JSON: &str = "application/scim+json";

/// A SCIM 2.0 service provider.
#[derive(Debug)]
pub struct ScimTarget {
    base: Url,
    token: Option<String>,
    client: reqwest::Client,
    container: Option<String>,
    schema: String,
    match_attribute: String,
}

/// What a request got back, when it got an answer.
enum Reply {
    /// 2xx, with the body as JSON (null when empty).
    Success(Json),
    /// Any other status, with what the body said.
    Status(StatusCode, String),
}

impl ScimTarget {
    /// Reads `url`, `tokenEnv`, `schema` and `matchAttribute`.
    pub(crate) fn from_settings(
        settings: &mut Settings<'_>,
        common: &Common,
    ) -> Result<Self, SettingsError> {
        let url = settings.required_string("url")?;
        let base = Url::parse(url.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| settings.error(format!("`url` is not an http(s) URL: {url}")))?;
        settings.forbid_inline_secret("token", "tokenEnv")?;
        let token = settings.secret_env("tokenEnv")?;
        let schema = settings
            .string("schema")?
            .unwrap_or_else(|| USER_SCHEMA.to_owned());
        let match_attribute = settings
            .string("matchAttribute")?
            .unwrap_or_else(|| "userName".to_owned());
        let client = reqwest::Client::builder()
            .timeout(common.timeout)
            .connect_timeout(common.timeout)
            .build()
            .map_err(|e| settings.error(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self::new(base, token, client, common.container.clone())
            .with_schema(schema)
            .with_match_attribute(match_attribute))
    }

    /// A target at `base` (`https://app.example.com/scim/v2`), authenticating with `token`.
    pub fn new(
        base: Url,
        token: Option<String>,
        client: reqwest::Client,
        container: Option<String>,
    ) -> Self {
        Self {
            base,
            token,
            client,
            container,
            schema: USER_SCHEMA.to_owned(),
            match_attribute: "userName".to_owned(),
        }
    }

    /// Sets the core schema of created resources.
    pub fn with_schema(mut self, schema: String) -> Self {
        self.schema = schema;
        self
    }

    /// Sets the attribute an existing resource is adopted by.
    pub fn with_match_attribute(mut self, attribute: String) -> Self {
        self.match_attribute = attribute;
        self
    }

    /// The resource endpoint (`<base>/Users`) and, with `id`, one resource.
    fn url(&self, container: &str, id: Option<&str>) -> Result<Url, Outcome> {
        if container.is_empty() || !container.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Outcome::Permanent(format!(
                "`{container}` is not a SCIM resource endpoint such as Users"
            )));
        }
        let mut url = self.base.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| Outcome::Permanent(format!("{} cannot be a base URL", self.base)))?;
            segments.pop_if_empty().push(container);
            if let Some(id) = id {
                segments.push(id);
            }
        }
        Ok(url)
    }

    async fn call(&self, method: Method, url: Url, body: Option<&Json>) -> Result<Reply, Outcome> {
        let shown = format!("{method} {}", url.path());
        let mut request = self
            .client
            .request(method, url)
            .header(reqwest::header::ACCEPT, SCIM_JSON);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, SCIM_JSON)
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| transport(&shown, &e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.map_err(|e| transport(&shown, &e))?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Reply::Success(Json::Null));
            }
            return serde_json::from_str(&text)
                .map(Reply::Success)
                .map_err(|e| Outcome::Permanent(format!("{shown}: the answer is not JSON: {e}")));
        }
        let mut detail = format!("{shown}: HTTP {}", status.as_u16());
        match serde_json::from_str::<Json>(&text) {
            Ok(error) => {
                for key in ["scimType", "detail"] {
                    if let Some(s) = error.get(key).and_then(Json::as_str) {
                        detail.push(' ');
                        detail.push_str(s);
                    }
                }
            }
            Err(_) if !text.trim().is_empty() => {
                detail.push(' ');
                detail.extend(text.trim().chars().take(200));
            }
            Err(_) => {}
        }
        if let Some(after) = retry_after {
            detail.push_str(&format!(" (Retry-After: {after})"));
        }
        Ok(Reply::Status(status, detail))
    }

    /// Finds the resource whose match attribute is `value`: its id and body.
    async fn find(&self, container: &str, value: &str) -> Result<Option<(String, Json)>, Outcome> {
        let mut url = self.url(container, None)?;
        // A SCIM filter's string literal is JSON string syntax.
        let literal = Json::String(value.to_owned()).to_string();
        url.query_pairs_mut()
            .append_pair("filter", &format!("{} eq {literal}", self.match_attribute))
            .append_pair("count", "2");
        match self.call(Method::GET, url, None).await? {
            Reply::Success(list) => {
                let resources = list
                    .get("Resources")
                    .and_then(Json::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                match resources {
                    [] => Ok(None),
                    [one] => match one.get("id").and_then(Json::as_str) {
                        Some(id) => Ok(Some((id.to_owned(), one.clone()))),
                        None => Err(Outcome::Permanent(format!(
                            "the {container} resource with {} {literal} has no id",
                            self.match_attribute
                        ))),
                    },
                    _ => Err(Outcome::Permanent(format!(
                        "several {container} resources have {} {literal}; cannot choose one to adopt",
                        self.match_attribute
                    ))),
                }
            }
            Reply::Status(status, detail) => Err(failure(status, detail)),
        }
    }

    async fn create(&self, request: Request<'_>, container: &str) -> Outcome {
        let attributes = &request.command.attributes;
        let key = attributes.get_str(&self.match_attribute).and_then(text_of);
        if let Some(key) = &key {
            match self.find(container, key).await {
                Err(outcome) => return outcome,
                Ok(Some((id, current))) => {
                    return self.adopt(container, &id, request, current).await;
                }
                Ok(None) => {}
            }
        }
        let body = match resource(&self.schema, attributes) {
            Ok(body) => body,
            Err(message) => return Outcome::Permanent(message),
        };
        let url = match self.url(container, None) {
            Ok(url) => url,
            Err(outcome) => return outcome,
        };
        match self.call(Method::POST, url, Some(&body)).await {
            Err(outcome) => outcome,
            Ok(Reply::Success(created)) => match created.get("id").and_then(Json::as_str) {
                Some(id) => Outcome::applied(id),
                None => Outcome::Permanent(format!(
                    "POST {container} succeeded but the answer carries no id"
                )),
            },
            // Created by someone else since the search: adopt it, once.
            Ok(Reply::Status(StatusCode::CONFLICT, detail)) => match &key {
                Some(key) => match self.find(container, key).await {
                    Err(outcome) => outcome,
                    Ok(Some((id, current))) => self.adopt(container, &id, request, current).await,
                    Ok(None) => Outcome::Permanent(detail),
                },
                None => Outcome::Permanent(detail),
            },
            Ok(Reply::Status(status, detail)) => failure(status, detail),
        }
    }

    /// Brings an existing resource to the create's values and enables it.
    async fn adopt(
        &self,
        container: &str,
        id: &str,
        request: Request<'_>,
        current: Json,
    ) -> Outcome {
        let attributes: Vec<(&AttributeName, &Value)> = request
            .command
            .attributes
            .iter()
            .filter(|(name, _)| !name.as_str().eq_ignore_ascii_case(&self.match_attribute))
            .collect();
        let mut operations = match patch_operations(&attributes, Some(&current)) {
            Ok(operations) => operations,
            Err(message) => return Outcome::Permanent(message),
        };
        if request.command.attributes.get_str("active").is_none() {
            operations.push(json!({"op": "replace", "path": "active", "value": true}));
        }
        match self.patch(container, id, operations).await {
            Ok(()) => Outcome::already(id),
            Err(outcome) => outcome,
        }
    }

    async fn patch(&self, container: &str, id: &str, operations: Vec<Json>) -> Result<(), Outcome> {
        let url = self.url(container, Some(id))?;
        let body = json!({"schemas": [PATCH_SCHEMA], "Operations": operations});
        match self.call(Method::PATCH, url, Some(&body)).await? {
            Reply::Success(_) => Ok(()),
            Reply::Status(StatusCode::NOT_FOUND, detail) => Err(Outcome::Permanent(format!(
                "{detail}: the target no longer holds {id}"
            ))),
            Reply::Status(status, detail) => Err(failure(status, detail)),
        }
    }

    /// The id of the command's object: the known one, else the one its match attribute finds.
    async fn known_id(&self, request: Request<'_>, container: &str) -> Result<String, Outcome> {
        if let Some(id) = request.target_object_id {
            return Ok(id.to_owned());
        }
        let key = request
            .command
            .attributes
            .get_str(&self.match_attribute)
            .and_then(text_of);
        if let Some(key) = key
            && let Some((id, _)) = self.find(container, &key).await?
        {
            return Ok(id);
        }
        Err(not_known_yet())
    }

    async fn update(&self, request: Request<'_>, container: &str) -> Outcome {
        let id = match self.known_id(request, container).await {
            Ok(id) => id,
            Err(outcome) => return outcome,
        };
        let attributes: Vec<(&AttributeName, &Value)> = request.command.attributes.iter().collect();
        if attributes.is_empty() {
            return Outcome::already(id);
        }
        let current = if attributes
            .iter()
            .any(|(name, _)| name.as_str().contains('['))
        {
            let url = match self.url(container, Some(&id)) {
                Ok(url) => url,
                Err(outcome) => return outcome,
            };
            match self.call(Method::GET, url, None).await {
                Err(outcome) => return outcome,
                Ok(Reply::Success(current)) => Some(current),
                Ok(Reply::Status(StatusCode::NOT_FOUND, detail)) => {
                    return Outcome::Permanent(format!(
                        "{detail}: the target no longer holds {id}"
                    ));
                }
                Ok(Reply::Status(status, detail)) => return failure(status, detail),
            }
        } else {
            None
        };
        let operations = match patch_operations(&attributes, current.as_ref()) {
            Ok(operations) => operations,
            Err(message) => return Outcome::Permanent(message),
        };
        match self.patch(container, &id, operations).await {
            Ok(()) => Outcome::applied(id),
            Err(outcome) => outcome,
        }
    }

    async fn set_active(&self, request: Request<'_>, container: &str, active: bool) -> Outcome {
        let Some(id) = request.target_object_id else {
            return not_known_yet();
        };
        let operations = vec![json!({"op": "replace", "path": "active", "value": active})];
        let url = match self.url(container, Some(id)) {
            Ok(url) => url,
            Err(outcome) => return outcome,
        };
        let body = json!({"schemas": [PATCH_SCHEMA], "Operations": operations});
        match self.call(Method::PATCH, url, Some(&body)).await {
            Err(outcome) => outcome,
            Ok(Reply::Success(_)) => Outcome::applied(id),
            // A user that is gone has no access left to take away.
            Ok(Reply::Status(StatusCode::NOT_FOUND, _)) if !active => Outcome::already(id),
            Ok(Reply::Status(StatusCode::NOT_FOUND, detail)) => {
                Outcome::Permanent(format!("{detail}: the target no longer holds {id}"))
            }
            Ok(Reply::Status(status, detail)) => failure(status, detail),
        }
    }

    async fn delete(&self, request: Request<'_>, container: &str) -> Outcome {
        let Some(id) = request.target_object_id else {
            return not_known_yet();
        };
        let url = match self.url(container, Some(id)) {
            Ok(url) => url,
            Err(outcome) => return outcome,
        };
        match self.call(Method::DELETE, url, None).await {
            Err(outcome) => outcome,
            Ok(Reply::Success(_)) => Outcome::applied(id),
            Ok(Reply::Status(StatusCode::NOT_FOUND, _)) => Outcome::already(id),
            Ok(Reply::Status(status, detail)) => failure(status, detail),
        }
    }
}

impl Target for ScimTarget {
    fn apply<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Outcome> {
        async move {
            let container = request
                .container(self.container.as_deref())
                .unwrap_or("Users")
                .to_owned();
            match request.command.operation {
                ExportOperation::Create => self.create(request, &container).await,
                ExportOperation::Update => self.update(request, &container).await,
                ExportOperation::Disable => self.set_active(request, &container, false).await,
                ExportOperation::Enable => self.set_active(request, &container, true).await,
                ExportOperation::Delete => self.delete(request, &container).await,
            }
        }
        .boxed()
    }
}

/// Classifies an HTTP error status.
fn failure(status: StatusCode, detail: String) -> Outcome {
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Outcome::Retryable(detail)
    } else {
        Outcome::Permanent(detail)
    }
}

/// Classifies a transport error: anything but a request that could not even be built may pass.
fn transport(shown: &str, error: &reqwest::Error) -> Outcome {
    let mut message = format!("{shown}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_builder() {
        Outcome::Permanent(message)
    } else {
        Outcome::Retryable(message)
    }
}

/// A target attribute name as a SCIM path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ScimPath {
    /// The extension schema URN, for an extension attribute.
    schema: Option<String>,
    /// The attribute.
    attribute: String,
    /// The `type` of the multi-valued entry, for `emails[work].value`.
    entry_type: Option<String>,
    /// The sub-attribute.
    sub: Option<String>,
}

impl ScimPath {
    fn parse(name: &str) -> Result<Self, String> {
        let bad = || format!("target attribute `{name}` is not a SCIM attribute path");
        let (schema, rest) = if name.len() > 4 && name[..4].eq_ignore_ascii_case("urn:") {
            let (urn, rest) = name.rsplit_once(':').ok_or_else(bad)?;
            let schema = (!urn.eq_ignore_ascii_case(USER_SCHEMA)).then(|| urn.to_owned());
            (schema, rest)
        } else {
            (None, name)
        };
        let (head, sub) = match rest.split_once('.') {
            Some((head, sub)) => (head, Some(sub)),
            None => (rest, None),
        };
        let (attribute, entry_type) = match head.split_once('[') {
            Some((attribute, typed)) => {
                let typed = typed.strip_suffix(']').ok_or_else(bad)?;
                (attribute, Some(typed))
            }
            None => (head, None),
        };
        let word = |s: &str| {
            s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        };
        if !word(attribute)
            || sub.is_some_and(|s| !word(s))
            || entry_type.is_some_and(|t| t.is_empty() || t.contains(['"', ']']))
        {
            return Err(bad());
        }
        let sub = match (entry_type, sub) {
            (Some(_), None) => Some("value".to_owned()),
            (_, sub) => sub.map(str::to_owned),
        };
        Ok(Self {
            schema,
            attribute: attribute.to_owned(),
            entry_type: entry_type.map(str::to_owned),
            sub,
        })
    }

    /// The PATCH path of a path without an entry type.
    fn patch_path(&self) -> String {
        let mut path = String::new();
        if let Some(schema) = &self.schema {
            path.push_str(schema);
            path.push(':');
        }
        path.push_str(&self.attribute);
        if let Some(sub) = &self.sub {
            path.push('.');
            path.push_str(sub);
        }
        path
    }

    /// The PATCH path of the whole multi-valued attribute.
    fn attribute_path(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}:{}", self.attribute),
            None => self.attribute.clone(),
        }
    }
}

/// A value as SCIM JSON: timestamps as RFC 3339 strings.
fn to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Integer(i) => Json::from(*i),
        Value::Decimal(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.as_str().to_owned()),
        Value::Timestamp(_) => text_of(value).map_or(Json::Null, Json::String),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
    }
}

/// Returns the member of `object` named `key` in any case, inserting `default` under `key`.
fn member<'a>(object: &'a mut Map<String, Json>, key: &str, default: Json) -> &'a mut Json {
    let existing = object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(key))
        .cloned()
        .unwrap_or_else(|| key.to_owned());
    object.entry(existing).or_insert(default)
}

/// Sets `path` to `value` inside `object` (the resource or an extension object).
fn set(object: &mut Map<String, Json>, path: &ScimPath, value: Json) -> Result<(), String> {
    let shape = || format!("`{}` does not fit the resource's shape", path.patch_path());
    match (&path.entry_type, &path.sub) {
        (None, None) => {
            *member(object, &path.attribute, Json::Null) = value;
        }
        (None, Some(sub)) => {
            let parent = member(object, &path.attribute, json!({}));
            if !parent.is_object() {
                *parent = json!({});
            }
            let parent = parent.as_object_mut().ok_or_else(shape)?;
            *member(parent, sub, Json::Null) = value;
        }
        (Some(entry_type), sub) => {
            let sub = sub.as_deref().unwrap_or("value");
            let list = member(object, &path.attribute, json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            let list = list.as_array_mut().ok_or_else(shape)?;
            let position = list.iter().position(|entry| {
                entry
                    .get("type")
                    .and_then(Json::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(entry_type))
            });
            if value.is_null() {
                if let Some(i) = position {
                    if sub.eq_ignore_ascii_case("value") {
                        list.remove(i);
                    } else if let Some(entry) = list.get_mut(i).and_then(Json::as_object_mut) {
                        let key = entry.keys().find(|k| k.eq_ignore_ascii_case(sub)).cloned();
                        if let Some(key) = key {
                            entry.remove(&key);
                        }
                    }
                }
                return Ok(());
            }
            let index = match position {
                Some(i) => i,
                None => {
                    list.push(json!({"type": entry_type}));
                    list.len() - 1
                }
            };
            let entry = list
                .get_mut(index)
                .and_then(Json::as_object_mut)
                .ok_or_else(shape)?;
            *member(entry, sub, Json::Null) = value;
        }
    }
    Ok(())
}

/// The body of a `POST`: the carried attributes that have a value.
fn resource(schema: &str, attributes: &mesh_model::Attributes) -> Result<Json, String> {
    let mut root = Map::new();
    let mut schemas = vec![schema.to_owned()];
    for (name, value) in attributes {
        if value.is_null() {
            continue;
        }
        let path = ScimPath::parse(name.as_str())?;
        let object = match &path.schema {
            Some(urn) => {
                if !schemas.contains(urn) {
                    schemas.push(urn.clone());
                }
                member(&mut root, urn, json!({}))
                    .as_object_mut()
                    .ok_or_else(|| format!("`{urn}` is not an extension object"))?
            }
            None => &mut root,
        };
        set(object, &path, to_json(value))?;
    }
    // A created resource is enabled unless the command says otherwise, as an adopted one is.
    root.entry("active").or_insert(Json::Bool(true));
    root.insert(
        "schemas".to_owned(),
        Json::Array(schemas.into_iter().map(Json::String).collect()),
    );
    Ok(Json::Object(root))
}

/// The PATCH operations that set `attributes`: `replace` per value, `remove` per null; typed
/// multi-valued attributes are merged into `current` (the resource as the target holds it) and
/// replaced whole.
fn patch_operations(
    attributes: &[(&AttributeName, &Value)],
    current: Option<&Json>,
) -> Result<Vec<Json>, String> {
    let mut operations = Vec::with_capacity(attributes.len());
    // Per multi-valued attribute path: its merged list.
    let mut lists: Vec<(String, Map<String, Json>, ScimPath)> = Vec::new();
    for (name, value) in attributes {
        let path = ScimPath::parse(name.as_str())?;
        if path.entry_type.is_none() {
            operations.push(if value.is_null() {
                json!({"op": "remove", "path": path.patch_path()})
            } else {
                json!({"op": "replace", "path": path.patch_path(), "value": to_json(value)})
            });
            continue;
        }
        let whole = path.attribute_path();
        let slot = match lists.iter().position(|(p, _, _)| *p == whole) {
            Some(i) => i,
            None => {
                // The current list, in a one-member object so that `set` can work on it.
                let mut holder = Map::new();
                let existing = current.and_then(|resource| {
                    let object = match &path.schema {
                        Some(urn) => resource.get(urn.as_str())?,
                        None => resource,
                    };
                    object
                        .as_object()?
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(&path.attribute))
                        .map(|(_, v)| v.clone())
                });
                holder.insert(
                    path.attribute.clone(),
                    existing.unwrap_or_else(|| json!([])),
                );
                lists.push((whole.clone(), holder, path.clone()));
                lists.len() - 1
            }
        };
        if let Some((_, holder, _)) = lists.get_mut(slot) {
            set(holder, &path, to_json(value))?;
        }
    }
    for (whole, holder, path) in lists {
        let list = holder.get(&path.attribute).cloned().unwrap_or(Json::Null);
        if list.as_array().is_none_or(Vec::is_empty) {
            operations.push(json!({"op": "remove", "path": whole}));
        } else {
            operations.push(json!({"op": "replace", "path": whole, "value": list}));
        }
    }
    Ok(operations)
}

#[cfg(test)]
mod tests {
    use mesh_model::Attributes;

    use super::*;

    fn attributes(pairs: &[(&str, Value)]) -> Attributes {
        pairs
            .iter()
            .map(|(n, v)| (AttributeName::parse(n).unwrap(), v.clone()))
            .collect()
    }

    #[test]
    fn paths_parse_simple_sub_typed_and_extension_names() {
        let p = ScimPath::parse("name.givenName").unwrap();
        assert_eq!(p.attribute, "name");
        assert_eq!(p.sub.as_deref(), Some("givenName"));
        let p = ScimPath::parse("emails[work]").unwrap();
        assert_eq!(p.entry_type.as_deref(), Some("work"));
        assert_eq!(p.sub.as_deref(), Some("value"));
        let p = ScimPath::parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        )
        .unwrap();
        assert_eq!(
            p.schema.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(
            p.patch_path(),
            format!("{}:manager.value", p.schema.clone().unwrap())
        );
        let p = ScimPath::parse("urn:ietf:params:scim:schemas:core:2.0:User:userName").unwrap();
        assert_eq!(p.schema, None);
        assert!(ScimPath::parse("display name").is_err());
        assert!(ScimPath::parse("emails[work").is_err());
    }

    #[test]
    fn a_resource_nests_sub_attributes_typed_entries_and_extensions() {
        let body = resource(
            USER_SCHEMA,
            &attributes(&[
                ("userName", Value::from("ada")),
                ("name.givenName", Value::from("Ada")),
                ("name.familyName", Value::from("Lovelace")),
                ("emails[work].value", Value::from("ada@example.com")),
                ("title", Value::Null),
                (
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                    Value::from("R&D"),
                ),
            ]),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({
                "schemas": [USER_SCHEMA, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "userName": "ada",
                "active": true,
                "name": {"givenName": "Ada", "familyName": "Lovelace"},
                "emails": [{"type": "work", "value": "ada@example.com"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
            })
        );
    }

    #[test]
    fn patches_replace_values_remove_nulls_and_merge_typed_lists() {
        let attrs = attributes(&[
            ("displayName", Value::from("Ada L.")),
            ("title", Value::Null),
            ("emails[work].value", Value::from("new@example.com")),
        ]);
        let pairs: Vec<_> = attrs.iter().collect();
        let current = json!({"emails": [
            {"type": "home", "value": "home@example.com"},
            {"type": "work", "value": "old@example.com"}
        ]});
        let ops = patch_operations(&pairs, Some(&current)).unwrap();
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "displayName", "value": "Ada L."}),
                json!({"op": "remove", "path": "title"}),
                json!({"op": "replace", "path": "emails", "value": [
                    {"type": "home", "value": "home@example.com"},
                    {"type": "work", "value": "new@example.com"}
                ]}),
            ]
        );
    }
}
