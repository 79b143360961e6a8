//! `POST /hr/v1/<connector>/imports`: the endpoint `meshctl import` uploads an extract to.
//!
//! The body streams to a spool file (memory stays flat for any size), then the import runs
//! and the answer is its [`ImportReport`](super::ImportReport) as JSON: `status` is `applied`
//! or `held`. `?confirmLeavers=true` lifts the leaver threshold. The caller authenticates
//! with a bearer token whose SHA-256 is in `connector_agent.import_token_sha256`; each token
//! has the rate limit of the SCIM endpoints ([`crate::rate_limit`]).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{ImportError, Importer};
use crate::outbox::error_chain;
use crate::rate_limit::TokenRateLimit;
use crate::scim::bearer_digest;
use crate::scim::error::ScimError;
use crate::settings::HrFeed;

/// The upload endpoint's state.
#[derive(Debug, Clone)]
pub struct UploadState {
    importer: Arc<Importer>,
    feeds: Arc<Vec<HrFeed>>,
    tokens: Arc<Vec<[u8; 32]>>,
    rate_limit: TokenRateLimit,
    spool: Option<PathBuf>,
}

impl UploadState {
    /// Builds the state; `rate_limit` is shared with the SCIM endpoints.
    pub fn new(
        importer: Arc<Importer>,
        feeds: Vec<HrFeed>,
        tokens: Vec<[u8; 32]>,
        rate_limit: TokenRateLimit,
        spool: Option<PathBuf>,
    ) -> Self {
        Self {
            importer,
            feeds: Arc::new(feeds),
            tokens: Arc::new(tokens),
            rate_limit,
            spool,
        }
    }
}

/// The upload route.
pub fn router(state: UploadState) -> Router {
    Router::new()
        .route("/hr/v1/{connector}/imports", post(upload))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

#[derive(Debug, serde::Deserialize)]
struct UploadQuery {
    #[serde(default, rename = "confirmLeavers")]
    confirm_leavers: bool,
    #[serde(default)]
    source: Option<String>,
}

async fn upload(
    State(st): State<UploadState>,
    Path(connector): Path<String>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match run(st, connector, query, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(
    st: UploadState,
    connector: String,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ScimError> {
    let Some(digest) = bearer_digest(&headers, &st.tokens) else {
        return Err(ScimError::status(
            StatusCode::UNAUTHORIZED,
            "a valid import bearer token is required",
        ));
    };
    let Query(query) = query.map_err(|e| ScimError::syntax(format!("bad query: {e}")))?;
    let feed = st
        .feeds
        .iter()
        .find(|f| f.connector.as_str() == connector)
        .ok_or_else(|| ScimError::not_found(format!("no HR feed {connector:?}")))?
        .clone();
    // After the feed lookup, so the metric's connector label only takes configured names.
    st.rate_limit.check(&digest, feed.connector.as_str())?;
    let unavailable = |e: &dyn std::error::Error| {
        tracing::error!(error = %error_chain(e), "spooling an upload failed");
        ScimError::status(StatusCode::SERVICE_UNAVAILABLE, "cannot spool the upload")
    };
    let spool = match &st.spool {
        Some(dir) => tempfile::Builder::new()
            .prefix("hr-upload-")
            .tempfile_in(dir),
        None => tempfile::Builder::new().prefix("hr-upload-").tempfile(),
    }
    .map_err(|e| unavailable(&e))?;
    let (std_file, path) = spool.into_parts();
    let mut file = tokio::fs::File::from_std(std_file);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ScimError::syntax(format!("the upload broke off: {e}")))?;
        file.write_all(&chunk).await.map_err(|e| unavailable(&e))?;
    }
    file.flush().await.map_err(|e| unavailable(&e))?;
    drop(file);
    let source = query.source.unwrap_or_else(|| "upload".to_owned());
    let report = st
        .importer
        .import_file(&feed, &path, &source, query.confirm_leavers)
        .await;
    match report {
        Ok(report) => Ok((
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&report).unwrap_or_default(),
        )
            .into_response()),
        Err(ImportError::Parse(e)) => Err(ScimError::status(
            StatusCode::UNPROCESSABLE_ENTITY,
            error_chain(&e),
        )),
        Err(e) => {
            tracing::error!(error = %error_chain(&e), connector, "hr import failed");
            Err(ScimError::status(
                StatusCode::SERVICE_UNAVAILABLE,
                error_chain(&e),
            ))
        }
    }
}
