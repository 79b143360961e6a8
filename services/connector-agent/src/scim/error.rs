//! RFC 7644 §3.12 error responses.
//!
//! Every failure a SCIM client can see is a [`ScimError`]: an HTTP status, an optional
//! `scimType`, and a detail for people. Bad input always maps to a 4xx with the scimType the
//! RFC names for it; only a store that fails for reasons of its own answers 5xx (503 when
//! retrying may help). A token over its rate limit gets 429 (RFC 6585) in the same body shape,
//! with `Retry-After`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The error message schema URN.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The media type of every SCIM body.
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// RFC 7644 Table 9 `scimType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    /// The filter syntax was invalid, or the attribute and operator do not go together.
    InvalidFilter,
    /// The filter yields more results than the server will process.
    TooMany,
    /// A value is already in use.
    Uniqueness,
    /// The modification does not fit the attribute's mutability.
    Mutability,
    /// The body is not valid JSON or does not follow the request schema.
    InvalidSyntax,
    /// The PATCH path is malformed.
    InvalidPath,
    /// The PATCH path yields nothing to operate on.
    NoTarget,
    /// A required value is missing or a value has the wrong type.
    InvalidValue,
    /// The SCIM version is not supported.
    InvalidVers,
    /// Personal information was sent in the URI.
    Sensitive,
}

impl ScimType {
    /// Returns the RFC spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidFilter => "invalidFilter",
            Self::TooMany => "tooMany",
            Self::Uniqueness => "uniqueness",
            Self::Mutability => "mutability",
            Self::InvalidSyntax => "invalidSyntax",
            Self::InvalidPath => "invalidPath",
            Self::NoTarget => "noTarget",
            Self::InvalidValue => "invalidValue",
            Self::InvalidVers => "invalidVers",
            Self::Sensitive => "sensitive",
        }
    }
}

/// A SCIM error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {scim_type:?}: {detail}")]
pub struct ScimError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The RFC 7644 error type, for 400 and 409 responses.
    pub scim_type: Option<ScimType>,
    /// What went wrong, for people.
    pub detail: String,
    /// Seconds the client should wait before retrying (`Retry-After`); a 503 without one
    /// says 1.
    pub retry_after: Option<u64>,
}

impl ScimError {
    /// A 400 with `scim_type`.
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(scim_type),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 400 invalidSyntax.
    pub fn syntax(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidSyntax, detail)
    }

    /// 400 invalidValue.
    pub fn value(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidValue, detail)
    }

    /// 400 invalidFilter.
    pub fn filter(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidFilter, detail)
    }

    /// 400 invalidPath.
    pub fn path(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidPath, detail)
    }

    /// 400 noTarget.
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::NoTarget, detail)
    }

    /// 400 mutability.
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::Mutability, detail)
    }

    /// 409 uniqueness.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            scim_type: Some(ScimType::Uniqueness),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A status without a scimType (401, 404, 405, 412, 413, 415, 501, 503...).
    pub fn status(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 429 for a client over its rate limit, to retry after `retry_after` (rounded up to
    /// whole seconds, at least 1, as `Retry-After` counts).
    pub fn too_many_requests(detail: impl Into<String>, retry_after: Duration) -> Self {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self {
            retry_after: Some(seconds.max(1)),
            ..Self::status(StatusCode::TOO_MANY_REQUESTS, detail)
        }
    }

    /// 404 for a resource that does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::status(StatusCode::NOT_FOUND, detail)
    }

    /// 412 for an `If-Match` that does not match.
    pub fn precondition(detail: impl Into<String>) -> Self {
        Self::status(StatusCode::PRECONDITION_FAILED, detail)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(map)) = (self.scim_type, body.as_object_mut()) {
            map.insert("scimType".to_owned(), t.as_str().into());
        }
        body
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_CONTENT_TYPE),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scim\""),
            );
        }
        let retry_after = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
