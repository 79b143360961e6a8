//! The SCIM 2.0 service provider (RFC 7643, RFC 7644): one endpoint per inbound SCIM
//! connector at `/scim/v2/<connector>/`.
//!
//! - [`schema`]: the implemented schemas and resource types, served by `/Schemas`,
//!   `/ResourceTypes` and `/ServiceProviderConfig`.
//! - [`filter`]: the filter grammar and PATCH paths. [`patch`]: PATCH operations.
//! - [`json`]: request bodies, parsed so that a member named twice is an error.
//! - [`resource`]: validation, rendering, projection and flattening to change events.
//! - [`store`]: PostgreSQL rows plus the outbox, in one transaction per write.
//!
//! Each accepted write commits the resource and its change event together; the outbox relay
//! publishes the event afterwards, so an event never describes a write that was lost and a
//! write is never lost to a NATS outage. `active: false` is published as an upsert carrying
//! `active = false` (the Connector's `inactiveWhen` turns it into a leaver); DELETE is
//! published as a delete.

pub mod error;
pub mod filter;
pub mod json;
pub mod patch;
pub mod resource;
pub mod schema;
pub mod store;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use chrono::Utc;
use mesh_model::{ChangeOperation, ConnectorId};
use mesh_runtime::metrics::{MetricsRegistry, names};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;

use self::error::{SCIM_CONTENT_TYPE, ScimError, ScimType};
use self::filter::{Expr, Target};
use self::resource::{Meta, Projection};
use self::schema::{LIST_RESPONSE, RESOURCE_TYPES, ResourceType, SCHEMAS, SEARCH_REQUEST};
use self::store::{Narrow, Row, ScimStore, WriteError};
use crate::events::{OutboxRow, change_event};
use crate::outbox::{RelayHandle, error_chain};
use crate::rate_limit::TokenRateLimit;

/// Most resources a list may have to examine; beyond it the client must narrow the filter
/// (400 tooMany) rather than make the server read them all.
pub const MAX_SCAN: usize = 100_000;

/// Optimistic-concurrency retries of a write without `If-Match` before answering 409.
const WRITE_RETRIES: usize = 3;

/// One inbound SCIM connector: its name and the SHA-256 of each accepted token.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The connector.
    pub connector: ConnectorId,
    /// SHA-256 digests of the accepted bearer tokens.
    pub token_hashes: Vec<[u8; 32]>,
}

/// The SCIM server's shared state.
#[derive(Debug, Clone)]
pub struct ScimState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: ScimStore,
    endpoints: HashMap<String, Endpoint>,
    public_url: Option<String>,
    max_results: usize,
    max_body: usize,
    relay: RelayHandle,
    rate_limit: TokenRateLimit,
    requests: Family<Vec<(String, String)>, Counter>,
}

impl ScimState {
    /// Builds the state; `rate_limit` is shared with the HR upload endpoint.
    #[allow(clippy::too_many_arguments)] // one per setting of the section
    pub fn new(
        store: ScimStore,
        endpoints: Vec<Endpoint>,
        public_url: Option<String>,
        max_results: usize,
        max_body: usize,
        relay: RelayHandle,
        rate_limit: TokenRateLimit,
        metrics: &MetricsRegistry,
    ) -> Self {
        let requests = metrics.register(&names::CONNECTOR_SCIM_REQUESTS, Family::default());
        Self {
            inner: Arc::new(Inner {
                store,
                endpoints: endpoints
                    .into_iter()
                    .map(|e| (e.connector.to_string(), e))
                    .collect(),
                public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
                max_results: max_results.max(1),
                max_body,
                relay,
                rate_limit,
                requests,
            }),
        }
    }
}

/// Checks `Authorization: Bearer <token>` against a list of token digests
/// ([`mesh_runtime::auth`]) and returns the digest it matched.
pub fn bearer_digest(headers: &HeaderMap, hashes: &[[u8; 32]]) -> Option<[u8; 32]> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(mesh_runtime::auth::bearer_token)
        .and_then(|token| mesh_runtime::auth::matching_digest(token, hashes))
}

struct Ctx {
    connector: ConnectorId,
    base: String,
}

impl ScimState {
    fn authorize(&self, connector: &str, headers: &HeaderMap) -> Result<Ctx, ScimError> {
        // An unknown connector answers like a wrong token, so names cannot be probed.
        let unauthorized = || {
            ScimError::status(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token for this endpoint is required",
            )
        };
        let endpoint = self
            .inner
            .endpoints
            .get(connector)
            .ok_or_else(unauthorized)?;
        let digest = bearer_digest(headers, &endpoint.token_hashes).ok_or_else(unauthorized)?;
        self.inner
            .rate_limit
            .check(&digest, endpoint.connector.as_str())?;
        let root = match &self.inner.public_url {
            Some(url) => url.clone(),
            None => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .filter(|h| {
                        !h.is_empty()
                            && h.bytes().all(|b| {
                                b.is_ascii_alphanumeric()
                                    || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                            })
                    })
                    .unwrap_or("localhost");
                format!("http://{host}")
            }
        };
        Ok(Ctx {
            connector: endpoint.connector.clone(),
            base: format!("{root}/scim/v2/{connector}"),
        })
    }

    fn count(&self, method: &Method, status: StatusCode) {
        self.inner
            .requests
            .get_or_create(&vec![
                ("method".to_owned(), method.as_str().to_owned()),
                ("status".to_owned(), status.as_u16().to_string()),
            ])
            .inc();
    }
}

/// The SCIM routes, with SCIM error bodies for every failure (including unknown paths,
/// wrong methods and oversized bodies).
pub fn router(state: ScimState) -> Router {
    let max_body = state.inner.max_body;
    Router::new()
        .route(
            "/scim/v2/{connector}/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/{connector}/Schemas", get(schemas))
        .route("/scim/v2/{connector}/Schemas/{id}", get(schema_by_id))
        .route("/scim/v2/{connector}/ResourceTypes", get(resource_types))
        .route(
            "/scim/v2/{connector}/ResourceTypes/{name}",
            get(resource_type_by_name),
        )
        .route("/scim/v2/{connector}/.search", post(root_search))
        .route("/scim/v2/{connector}/Bulk", any(unsupported))
        .route("/scim/v2/{connector}/Me", any(unsupported))
        .route("/scim/v2/{connector}/{resource}", get(list).post(create))
        .route("/scim/v2/{connector}/{resource}/.search", post(search))
        .route(
            "/scim/v2/{connector}/{resource}/{id}",
            get(get_one)
                .put(replace)
                .patch(patch_one)
                .delete(delete_one),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Turns any error response that is not already a SCIM error (unknown route, wrong method,
/// body too large, unreadable path) into one, so clients always get RFC 7644 §3.12 bodies.
pub async fn scim_error_bodies(response: Response) -> Response {
    let status = response.status();
    let is_scim = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(SCIM_CONTENT_TYPE.as_bytes()));
    if status.is_client_error() || status.is_server_error() {
        if is_scim {
            return response;
        }
        let detail = status.canonical_reason().unwrap_or("error").to_owned();
        let scim_type = (status == StatusCode::BAD_REQUEST).then_some(ScimType::InvalidSyntax);
        return ScimError {
            status,
            scim_type,
            detail,
            retry_after: None,
        }
        .into_response();
    }
    response
}

fn scim_response(status: StatusCode, body: &Json) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_CONTENT_TYPE),
    );
    response
}

fn with_etag(mut response: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn finish(state: &ScimState, method: Method, result: Result<Response, ScimError>) -> Response {
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            // 501 is an answer about the protocol, not a failure of the server.
            if e.status.is_server_error() && e.status != StatusCode::NOT_IMPLEMENTED {
                tracing::error!(status = e.status.as_u16(), detail = %e.detail, "scim request failed");
            }
            e.into_response()
        }
    };
    state.count(&method, response.status());
    response
}

fn store_error(error: &dyn std::error::Error) -> ScimError {
    let chain = error_chain(error);
    tracing::error!(error = %chain, "scim store failure");
    ScimError::status(
        StatusCode::SERVICE_UNAVAILABLE,
        "the resource store is unavailable; retry later",
    )
}

fn resource_type(segment: &str) -> Result<&'static ResourceType, ScimError> {
    ResourceType::by_endpoint(segment)
        .ok_or_else(|| ScimError::not_found(format!("no resource type is served at /{segment}")))
}

fn parse_id(id: &str, rt: &ResourceType) -> Result<Uuid, ScimError> {
    Uuid::parse_str(id).map_err(|_| ScimError::not_found(format!("{} {id:?} not found", rt.name)))
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ScimError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or_default();
    let essence = ct.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case(SCIM_CONTENT_TYPE)
        || essence.eq_ignore_ascii_case("application/json")
    {
        Ok(())
    } else {
        Err(ScimError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send {SCIM_CONTENT_TYPE}, not {ct:?}"),
        ))
    }
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Json, ScimError> {
    check_content_type(headers)?;
    if body.is_empty() {
        return Err(ScimError::syntax("the request has no body"));
    }
    json::parse(body).map_err(|e| ScimError::syntax(format!("the body is not valid JSON: {e}")))
}

fn etag_of(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn etag_matches(list: &str, current: &str) -> bool {
    let opaque = |t: &str| {
        let t = t.trim();
        t.strip_prefix("W/").unwrap_or(t).to_owned()
    };
    let current = opaque(current);
    list.split(',')
        .any(|t| t.trim() == "*" || opaque(t) == current)
}

/// Checks `If-Match`; returns whether the request had one.
fn check_if_match(headers: &HeaderMap, version: i64) -> Result<bool, ScimError> {
    let mut present = false;
    for value in headers.get_all(header::IF_MATCH) {
        present = true;
        let value = value.to_str().unwrap_or_default();
        if etag_matches(value, &etag_of(version)) {
            return Ok(true);
        }
    }
    if present {
        Err(ScimError::precondition(format!(
            "the resource is at version {}; If-Match does not match",
            etag_of(version)
        )))
    } else {
        Ok(false)
    }
}

fn meta(row: &Row) -> Meta {
    Meta {
        id: row.id.to_string(),
        version: row.version,
        created: row.created,
        modified: row.modified,
    }
}

fn outbox_row(
    connector: &ConnectorId,
    rt: &ResourceType,
    id: Uuid,
    version: i64,
    data: Option<&Map<String, Json>>,
    at: chrono::DateTime<Utc>,
) -> Result<OutboxRow, ScimError> {
    let external_id = id.to_string();
    let (operation, attributes, key) = match data {
        Some(data) => (
            ChangeOperation::Upsert,
            resource::flatten(rt, &external_id, data),
            format!("scim/{}/{id}/{version}", rt.name),
        ),
        None => (
            ChangeOperation::Delete,
            mesh_model::Attributes::new(),
            format!("scim/{}/{id}/{version}/delete", rt.name),
        ),
    };
    change_event(
        connector,
        rt.name,
        &external_id,
        &key,
        operation,
        attributes,
        at,
    )
    .map(OutboxRow::new)
    .map_err(|e| store_error(&e))
}

impl ScimState {
    /// Renders rows for a response, computing a User's `groups`.
    async fn render_rows(
        &self,
        ctx: &Ctx,
        rt: &ResourceType,
        rows: &[Row],
    ) -> Result<Vec<Map<String, Json>>, ScimError> {
        let groups = if rt.name == "User" {
            let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            self.inner
                .store
                .groups_of(ctx.connector.as_str(), &ids)
                .await
                .map_err(|e| store_error(&e))?
        } else {
            HashMap::new()
        };
        Ok(rows
            .iter()
            .map(|row| {
                let mut doc = resource::render(rt, &row.data, &meta(row), &ctx.base);
                if let Some(gs) = groups.get(&row.id) {
                    let list: Vec<Json> = gs
                        .iter()
                        .map(|(g, name)| {
                            json!({
                                "value": g.to_string(),
                                "$ref": format!("{}/Groups/{g}", ctx.base),
                                "display": name,
                                "type": "direct",
                            })
                        })
                        .collect();
                    doc.insert("groups".into(), Json::Array(list));
                }
                doc
            })
            .collect())
    }

    /// Checks references a write makes: group members and a service account's owner must be
    /// resources of this endpoint. Fills each member's `type`.
    async fn check_references(
        &self,
        ctx: &Ctx,
        rt: &ResourceType,
        data: &mut Map<String, Json>,
    ) -> Result<(), ScimError> {
        let mut wanted: Vec<(String, Uuid)> = Vec::new();
        if let Some(Json::Array(members)) = data.get("members") {
            for (i, m) in members.iter().enumerate() {
                let value = m.get("value").and_then(Json::as_str).unwrap_or_default();
                let id = Uuid::parse_str(value).map_err(|_| {
                    ScimError::value(format!("members[{i}].value {value:?} is not a resource id"))
                })?;
                wanted.push((format!("members[{i}]"), id));
            }
        }
        if rt.name == "ServiceAccount"
            && let Some(owner) = data
                .get("owner")
                .and_then(|o| o.get("value"))
                .and_then(Json::as_str)
        {
            let id = Uuid::parse_str(owner)
                .map_err(|_| ScimError::value(format!("owner.value {owner:?} is not a User id")))?;
            wanted.push(("owner".into(), id));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = wanted.iter().map(|(_, id)| *id).collect();
        let found = self
            .inner
            .store
            .resource_types(ctx.connector.as_str(), &ids)
            .await
            .map_err(|e| store_error(&e))?;
        for (what, id) in &wanted {
            let found_type = found.get(id).map(String::as_str);
            let ok = if what == "owner" {
                found_type == Some("User")
            } else {
                matches!(found_type, Some("User" | "Group"))
            };
            if !ok {
                return Err(ScimError::value(format!(
                    "{what} refers to {id}, which is not a {} of this endpoint",
                    if what == "owner" {
                        "User"
                    } else {
                        "User or Group"
                    }
                )));
            }
        }
        if let Some(Json::Array(members)) = data.get_mut("members") {
            for m in members.iter_mut() {
                let Some(obj) = m.as_object_mut() else {
                    continue;
                };
                let id = obj
                    .get("value")
                    .and_then(Json::as_str)
                    .and_then(|v| Uuid::parse_str(v).ok());
                if let Some(t) = id.and_then(|id| found.get(&id)) {
                    match obj.get("type").and_then(Json::as_str) {
                        Some(given) if !given.eq_ignore_ascii_case(t) => {
                            return Err(ScimError::value(format!(
                                "member {} is a {t}, not a {given}",
                                obj.get("value").and_then(Json::as_str).unwrap_or_default()
                            )));
                        }
                        _ => {
                            obj.insert("type".into(), Json::String(t.clone()));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The parameters of a list or search.
#[derive(Debug, Default)]
struct ListParams {
    filter: Option<String>,
    start_index: usize,
    count: Option<usize>,
    sort_by: Option<String>,
    descending: bool,
    attributes: Option<String>,
    excluded: Option<String>,
}

fn parse_int(name: &str, value: &str) -> Result<i64, ScimError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| ScimError::value(format!("{name} must be an integer, not {value:?}")))
}

fn sort_order(value: &str) -> Result<bool, ScimError> {
    match value.to_ascii_lowercase().as_str() {
        "ascending" => Ok(false),
        "descending" => Ok(true),
        _ => Err(ScimError::value(format!(
            "sortOrder must be ascending or descending, not {value:?}"
        ))),
    }
}

impl ListParams {
    fn from_query(pairs: &[(String, String)]) -> Result<Self, ScimError> {
        let mut p = ListParams {
            start_index: 1,
            ..Default::default()
        };
        for (k, v) in pairs {
            match k.to_ascii_lowercase().as_str() {
                "filter" => p.filter = Some(v.clone()),
                "startindex" => p.start_index = parse_int("startIndex", v)?.max(1) as usize,
                "count" => p.count = Some(parse_int("count", v)?.max(0) as usize),
                "sortby" => p.sort_by = Some(v.clone()),
                "sortorder" => p.descending = sort_order(v)?,
                "attributes" => p.attributes = Some(v.clone()),
                "excludedattributes" => p.excluded = Some(v.clone()),
                _ => {}
            }
        }
        Ok(p)
    }

    fn from_search(body: &Json) -> Result<Self, ScimError> {
        let obj = message_body(body, SEARCH_REQUEST)?;
        let get = |name: &str| member(obj, name);
        let string = |name: &str| -> Result<Option<String>, ScimError> {
            match get(name) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::value(format!("{name} must be a string"))),
            }
        };
        let list = |name: &str| -> Result<Option<String>, ScimError> {
            match get(name) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(Json::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| ScimError::value(format!("{name} must list strings")))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|v| Some(v.join(","))),
                Some(_) => Err(ScimError::value(format!(
                    "{name} must be an array of strings"
                ))),
            }
        };
        let int = |name: &str| -> Result<Option<i64>, ScimError> {
            match get(name) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::value(format!("{name} must be an integer"))),
            }
        };
        Ok(ListParams {
            filter: string("filter")?,
            start_index: int("startIndex")?.unwrap_or(1).max(1) as usize,
            count: int("count")?.map(|c| c.max(0) as usize),
            sort_by: string("sortBy")?,
            descending: string("sortOrder")?
                .map(|s| sort_order(&s))
                .transpose()?
                .unwrap_or(false),
            attributes: list("attributes")?,
            excluded: list("excludedAttributes")?,
        })
    }
}

fn narrow_for(expr: Option<&Expr>) -> Narrow {
    match expr.and_then(filter::index_hint) {
        Some(("id", v)) => Uuid::parse_str(&v).map_or(Narrow::Nothing, Narrow::Id),
        Some(("externalId", v)) => Narrow::ExternalId(v),
        Some((_, v)) => Narrow::UniqueKey(v),
        None => Narrow::All,
    }
}

impl ScimState {
    async fn run_list(
        &self,
        ctx: &Ctx,
        types: &[&'static ResourceType],
        params: &ListParams,
    ) -> Result<Json, ScimError> {
        let parsed = params.filter.as_deref().map(filter::parse).transpose()?;
        let mut matched: Vec<(&'static ResourceType, Map<String, Json>)> = Vec::new();
        let mut sort_targets: HashMap<&'static str, Target> = HashMap::new();
        let mut resolved_any = parsed.is_none();
        let mut first_error = None;
        for rt in types {
            let expr = match &parsed {
                Some(f) => match filter::resolve(rt, f) {
                    Ok(e) => {
                        resolved_any = true;
                        Some(e)
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                        continue;
                    }
                },
                None => None,
            };
            if let Some(sort_by) = &params.sort_by {
                let path = filter::AttrPath::parse(sort_by).ok_or_else(|| {
                    ScimError::value(format!("sortBy {sort_by:?} is not an attribute path"))
                })?;
                match filter::resolve_path(rt, None, &path) {
                    Ok(t) if t.leaf().ty != schema::AttrType::Complex => {
                        sort_targets.insert(rt.name, t);
                    }
                    Ok(_) => {
                        return Err(ScimError::value(format!(
                            "sortBy {sort_by:?} names a complex attribute"
                        )));
                    }
                    Err(m) if types.len() == 1 => {
                        return Err(ScimError::value(format!("sortBy: {m}")));
                    }
                    Err(_) => {}
                }
            }
            let rows = self
                .inner
                .store
                .list(
                    ctx.connector.as_str(),
                    rt.name,
                    &narrow_for(expr.as_ref()),
                    MAX_SCAN + 1,
                )
                .await
                .map_err(|e| store_error(&e))?;
            if rows.len() > MAX_SCAN {
                return Err(ScimError::bad_request(
                    ScimType::TooMany,
                    format!(
                        "more than {MAX_SCAN} {} resources would have to be examined; narrow the filter (for example userName eq ...)",
                        rt.name
                    ),
                ));
            }
            let docs = self.render_rows(ctx, rt, &rows).await?;
            matched.extend(
                docs.into_iter()
                    .filter(|doc| expr.as_ref().is_none_or(|e| filter::matches(e, doc)))
                    .map(|doc| (*rt, doc)),
            );
        }
        if !resolved_any && let Some(e) = first_error {
            return Err(e);
        }
        if params.sort_by.is_some() {
            matched.sort_by(|(ra, a), (rb, b)| {
                let va = sort_targets
                    .get(ra.name)
                    .and_then(|t| filter::sort_value(a, t).map(|v| (t, v)));
                let vb = sort_targets
                    .get(rb.name)
                    .and_then(|t| filter::sort_value(b, t).map(|v| (t, v)));
                // Unassigned values sort last in either order.
                match (va, vb) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(_), None) => Ordering::Less,
                    (Some((t, x)), Some((_, y))) => {
                        let o = filter::compare_values(t.leaf(), x, y);
                        if params.descending { o.reverse() } else { o }
                    }
                }
            });
        }
        let total = matched.len();
        let count = params
            .count
            .unwrap_or(self.inner.max_results)
            .min(self.inner.max_results);
        let resources: Vec<Json> = matched
            .into_iter()
            .skip(params.start_index.saturating_sub(1))
            .take(count)
            .map(|(rt, doc)| {
                let projection =
                    Projection::parse(rt, params.attributes.as_deref(), params.excluded.as_deref());
                projection.map(|p| Json::Object(p.apply(rt, doc)))
            })
            .collect::<Result<_, _>>()?;
        Ok(json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": total,
            "itemsPerPage": resources.len(),
            "startIndex": params.start_index,
            "Resources": resources,
        }))
    }

    async fn single(
        &self,
        ctx: &Ctx,
        rt: &'static ResourceType,
        row: &Row,
        projection: &Projection,
        status: StatusCode,
    ) -> Result<Response, ScimError> {
        let docs = self.render_rows(ctx, rt, std::slice::from_ref(row)).await?;
        let doc = docs.into_iter().next().unwrap_or_default();
        Ok(respond(ctx, rt, row, doc, projection, status))
    }
}

/// The response carrying one rendered resource, with its ETag and Location.
fn respond(
    ctx: &Ctx,
    rt: &'static ResourceType,
    row: &Row,
    doc: Map<String, Json>,
    projection: &Projection,
    status: StatusCode,
) -> Response {
    let location = format!("{}{}/{}", ctx.base, rt.endpoint, row.id);
    let mut response = with_etag(
        scim_response(status, &Json::Object(projection.apply(rt, doc))),
        &etag_of(row.version),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn projection_from(rt: &ResourceType, query: &[(String, String)]) -> Result<Projection, ScimError> {
    let find = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    Projection::parse(rt, find("attributes"), find("excludedAttributes"))
}

type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn query_pairs(query: QueryPairs) -> Result<Vec<(String, String)>, ScimError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ScimError::syntax(format!("the query string is malformed: {e}")))
}

async fn service_provider_config(
    State(st): State<ScimState>,
    Path(connector): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = st.authorize(&connector, &headers).map(|ctx| {
        scim_response(
            StatusCode::OK,
            &schema::service_provider_config(&ctx.base, st.inner.max_results, st.inner.max_body),
        )
    });
    finish(&st, Method::GET, result)
}

/// Answers 501 for the optional features this server does not implement, once the caller has
/// authenticated (so the answer reveals nothing to others):
/// - Bulk (RFC 7644 §3.7): `ServiceProviderConfig` says `bulk.supported: false`, and a bulk
///   request gets 501 (§3.12: "service provider does not support the request operation")
///   rather than a 404 that would read as a wrong base URL;
/// - `/Me` (§3.11): a bearer token here names an identity provider, not a User, so there is no
///   authenticated subject to alias; §3.11 names 501 for a server without `/Me`.
async fn unsupported(
    State(st): State<ScimState>,
    Path(connector): Path<String>,
    route: MatchedPath,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let detail = if route.as_str().ends_with("/Bulk") {
        "bulk operations are not supported (ServiceProviderConfig: bulk.supported is false)"
    } else {
        "/Me is not supported: the bearer token identifies a client, not a User"
    };
    let result = st
        .authorize(&connector, &headers)
        .and_then(|_| Err(ScimError::status(StatusCode::NOT_IMPLEMENTED, detail)));
    finish(&st, method, result)
}

fn list_of(items: Vec<Json>) -> Json {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": items.len(),
        "itemsPerPage": items.len(),
        "startIndex": 1,
        "Resources": items,
    })
}

async fn schemas(
    State(st): State<ScimState>,
    Path(connector): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = st.authorize(&connector, &headers).map(|ctx| {
        scim_response(
            StatusCode::OK,
            &list_of(SCHEMAS.iter().map(|s| s.to_json(&ctx.base)).collect()),
        )
    });
    finish(&st, Method::GET, result)
}

async fn schema_by_id(
    State(st): State<ScimState>,
    Path((connector, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = st.authorize(&connector, &headers).and_then(|ctx| {
        SCHEMAS
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(&id))
            .map(|s| scim_response(StatusCode::OK, &s.to_json(&ctx.base)))
            .ok_or_else(|| ScimError::not_found(format!("no schema {id:?}")))
    });
    finish(&st, Method::GET, result)
}

async fn resource_types(
    State(st): State<ScimState>,
    Path(connector): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = st.authorize(&connector, &headers).map(|ctx| {
        scim_response(
            StatusCode::OK,
            &list_of(
                RESOURCE_TYPES
                    .iter()
                    .map(|r| r.to_json(&ctx.base))
                    .collect(),
            ),
        )
    });
    finish(&st, Method::GET, result)
}

async fn resource_type_by_name(
    State(st): State<ScimState>,
    Path((connector, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = st.authorize(&connector, &headers).and_then(|ctx| {
        ResourceType::by_name(&name)
            .map(|r| scim_response(StatusCode::OK, &r.to_json(&ctx.base)))
            .ok_or_else(|| ScimError::not_found(format!("no resource type {name:?}")))
    });
    finish(&st, Method::GET, result)
}

async fn list(
    State(st): State<ScimState>,
    Path((connector, resource)): Path<(String, String)>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Response {
    let result = async {
        let ctx = st.authorize(&connector, &headers)?;
        let rt = resource_type(&resource)?;
        let params = ListParams::from_query(&query_pairs(query)?)?;
        let body = st.run_list(&ctx, &[rt], &params).await?;
        Ok(scim_response(StatusCode::OK, &body))
    }
    .await;
    finish(&st, Method::GET, result)
}

async fn search(
    State(st): State<ScimState>,
    Path((connector, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let ctx = st.authorize(&connector, &headers)?;
        let rt = resource_type(&resource)?;
        let params = ListParams::from_search(&parse_body(&headers, &body)?)?;
        let body = st.run_list(&ctx, &[rt], &params).await?;
        Ok(scim_response(StatusCode::OK, &body))
    }
    .await;
    finish(&st, Method::POST, result)
}

async fn root_search(
    State(st): State<ScimState>,
    Path(connector): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let ctx = st.authorize(&connector, &headers)?;
        let params = ListParams::from_search(&parse_body(&headers, &body)?)?;
        let types: Vec<&'static ResourceType> = RESOURCE_TYPES.iter().collect();
        let body = st.run_list(&ctx, &types, &params).await?;
        Ok(scim_response(StatusCode::OK, &body))
    }
    .await;
    finish(&st, Method::POST, result)
}

async fn get_one(
    State(st): State<ScimState>,
    Path((connector, resource, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Response {
    let result = async {
        let ctx = st.authorize(&connector, &headers)?;
        let rt = resource_type(&resource)?;
        let uuid = parse_id(&id, rt)?;
        let projection = projection_from(rt, &query_pairs(query)?)?;
        let row = st
            .inner
            .store
            .get(ctx.connector.as_str(), rt.name, uuid)
            .await
            .map_err(|e| store_error(&e))?
            .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", rt.name)))?;
        if let Some(inm) = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            && etag_matches(inm, &etag_of(row.version))
        {
            let response = StatusCode::NOT_MODIFIED.into_response();
            return Ok(with_etag(response, &etag_of(row.version)));
        }
        st.single(&ctx, rt, &row, &projection, StatusCode::OK).await
    }
    .await;
    finish(&st, Method::GET, result)
}

async fn create(
    State(st): State<ScimState>,
    Path((connector, resource)): Path<(String, String)>,
    headers: HeaderMap,
    query: QueryPairs,
    body: Bytes,
) -> Response {
    let result = async {
        let ctx = st.authorize(&connector, &headers)?;
        let rt = resource_type(&resource)?;
        let projection = projection_from(rt, &query_pairs(query)?)?;
        let mut data = resource::normalize(rt, &parse_body(&headers, &body)?)?;
        st.check_references(&ctx, rt, &mut data).await?;
        let id = Uuid::new_v4();
        let now = Utc::now();
        let event = outbox_row(&ctx.connector, rt, id, 1, Some(&data), now)?;
        let key = resource::unique_key(rt, &data);
        match st
            .inner
            .store
            .create(
                ctx.connector.as_str(),
                rt.name,
                id,
                key.as_deref(),
                &data,
                now,
                event,
            )
            .await
        {
            Ok(()) => {}
            Err(WriteError::Conflict) => {
                let attr = rt.unique_attr().map_or("a unique attribute", |a| a.name);
                return Err(ScimError::uniqueness(format!("{attr} is already in use")));
            }
            Err(e) => return Err(store_error(&e)),
        }
        st.inner.relay.wake();
        let row = Row {
            id,
            data,
            version: 1,
            created: now,
            modified: now,
        };
        // No group lists a resource that did not exist before this request (members must
        // exist when a group is written), so a new User's `groups` is empty without asking.
        let doc = resource::render(rt, &row.data, &meta(&row), &ctx.base);
        Ok(respond(
            &ctx,
            rt,
            &row,
            doc,
            &projection,
            StatusCode::CREATED,
        ))
    }
    .await;
    finish(&st, Method::POST, result)
}

/// How a PUT or PATCH computes the new stored form from the current one.
#[derive(Debug, Clone, Copy)]
enum Change {
    Put,
    Patch,
}

#[allow(clippy::too_many_arguments)] // one handler body shared by PUT and PATCH
async fn write(
    st: &ScimState,
    connector: &str,
    resource: &str,
    id: &str,
    headers: &HeaderMap,
    query: QueryPairs,
    body: &Bytes,
    change: Change,
) -> Result<Response, ScimError> {
    let ctx = st.authorize(connector, headers)?;
    let rt = resource_type(resource)?;
    let uuid = parse_id(id, rt)?;
    let projection = projection_from(rt, &query_pairs(query)?)?;
    let request = parse_body(headers, body)?;
    for _ in 0..WRITE_RETRIES {
        let current = st
            .inner
            .store
            .get(ctx.connector.as_str(), rt.name, uuid)
            .await
            .map_err(|e| store_error(&e))?
            .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", rt.name)))?;
        let conditional = check_if_match(headers, current.version)?;
        let mut data = match change {
            Change::Put => {
                let body = &request;
                if let Some(given) = body.get("id").and_then(Json::as_str)
                    && given != id
                {
                    return Err(ScimError::mutability(format!(
                        "id is readOnly: the body says {given:?}, the URL {id:?}"
                    )));
                }
                resource::normalize(rt, body)?
            }
            Change::Patch => patch::apply(rt, &current.data, &request)?,
        };
        st.check_references(&ctx, rt, &mut data).await?;
        if data == current.data {
            // Nothing changed: no new version, no event.
            return st
                .single(&ctx, rt, &current, &projection, StatusCode::OK)
                .await;
        }
        let now = Utc::now();
        let version = current.version + 1;
        let event = outbox_row(&ctx.connector, rt, uuid, version, Some(&data), now)?;
        let key = resource::unique_key(rt, &data);
        match st
            .inner
            .store
            .replace(
                ctx.connector.as_str(),
                rt.name,
                uuid,
                current.version,
                key.as_deref(),
                &data,
                now,
                &event,
            )
            .await
        {
            Ok(true) => {
                st.inner.relay.wake();
                let row = Row {
                    id: uuid,
                    data,
                    version,
                    created: current.created,
                    modified: now,
                };
                return st.single(&ctx, rt, &row, &projection, StatusCode::OK).await;
            }
            Ok(false) if conditional => {
                return Err(ScimError::precondition(
                    "the resource changed since it was read",
                ));
            }
            Ok(false) => continue,
            Err(WriteError::Conflict) => {
                let attr = rt.unique_attr().map_or("a unique attribute", |a| a.name);
                return Err(ScimError::uniqueness(format!("{attr} is already in use")));
            }
            Err(e) => return Err(store_error(&e)),
        }
    }
    Err(ScimError::status(
        StatusCode::CONFLICT,
        "the resource is being changed concurrently; retry",
    ))
}

async fn replace(
    State(st): State<ScimState>,
    Path((connector, resource, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    query: QueryPairs,
    body: Bytes,
) -> Response {
    let result = write(
        &st,
        &connector,
        &resource,
        &id,
        &headers,
        query,
        &body,
        Change::Put,
    )
    .await;
    finish(&st, Method::PUT, result)
}

async fn patch_one(
    State(st): State<ScimState>,
    Path((connector, resource, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    query: QueryPairs,
    body: Bytes,
) -> Response {
    let result = write(
        &st,
        &connector,
        &resource,
        &id,
        &headers,
        query,
        &body,
        Change::Patch,
    )
    .await;
    finish(&st, Method::PATCH, result)
}

async fn delete_one(
    State(st): State<ScimState>,
    Path((connector, resource, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let ctx = st.authorize(&connector, &headers)?;
        let rt = resource_type(&resource)?;
        let uuid = parse_id(&id, rt)?;
        for _ in 0..WRITE_RETRIES {
            let current = st
                .inner
                .store
                .get(ctx.connector.as_str(), rt.name, uuid)
                .await
                .map_err(|e| store_error(&e))?
                .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", rt.name)))?;
            let conditional = check_if_match(&headers, current.version)?;
            let now = Utc::now();
            let event = outbox_row(&ctx.connector, rt, uuid, current.version + 1, None, now)?;
            let group_rt = ResourceType::by_name("Group");
            let connector_id = ctx.connector.clone();
            let deleted = st
                .inner
                .store
                .delete(
                    ctx.connector.as_str(),
                    rt.name,
                    uuid,
                    current.version,
                    &event,
                    |group| {
                        let rt = group_rt?;
                        outbox_row(
                            &connector_id,
                            rt,
                            group.id,
                            group.version,
                            Some(&group.data),
                            now,
                        )
                        .ok()
                    },
                )
                .await;
            match deleted {
                Ok(true) => {
                    st.inner.relay.wake();
                    return Ok(StatusCode::NO_CONTENT.into_response());
                }
                Ok(false) if conditional => {
                    return Err(ScimError::precondition(
                        "the resource changed since it was read",
                    ));
                }
                Ok(false) => continue,
                Err(WriteError::Conflict) => {
                    return Err(ScimError::status(
                        StatusCode::CONFLICT,
                        "conflicting delete; retry",
                    ));
                }
                Err(e) => return Err(store_error(&e)),
            }
        }
        Err(ScimError::status(
            StatusCode::CONFLICT,
            "the resource is being changed concurrently; retry",
        ))
    }
    .await;
    finish(&st, Method::DELETE, result)
}

/// Opens a SCIM message body (a PATCH request, a search request): it must be a JSON object whose
/// `schemas` names `schema` (RFC 7644 §3.5.2, §3.4.3), else `invalidSyntax`.
pub(crate) fn message_body<'a>(
    body: &'a Json,
    schema: &str,
) -> Result<&'a Map<String, Json>, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::syntax("the body must be a JSON object"))?;
    let schemas_ok = member(obj, "schemas")
        .and_then(Json::as_array)
        .is_some_and(|s| s.iter().any(|u| u.as_str() == Some(schema)));
    if !schemas_ok {
        return Err(ScimError::syntax(format!(
            "\"schemas\" must be [\"{schema}\"]"
        )));
    }
    Ok(obj)
}

/// Returns the member of a message body whose name matches `name` case-insensitively (SCIM
/// attribute names are case-insensitive, RFC 7643 §2.1).
pub(crate) fn member<'a>(obj: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}
