//! The per-token rate limit of the SCIM endpoints and HR uploads.
//!
//! Each configured bearer token has its own token bucket (GCRA, `governor`): it holds
//! `connector_agent.rate_limit_burst` requests and refills at `rate_limit_per_second`. The
//! bucket is keyed by the SHA-256 digest the presented token matched, never by the token, so
//! the raw token is not kept, and the number of buckets is bounded by the configured digests:
//! requests with an unknown token never reach the limiter and keep getting 401. A token that
//! several endpoints accept (or that is both a SCIM and an upload token) has one bucket across
//! them, because one client holds it.
//!
//! Over the limit, a request gets 429 with an RFC 7644 §3.12 error body and `Retry-After`,
//! and `mesh_connector_rate_limited_total{connector}` counts it. The buckets live in the
//! process: behind N replicas a token's effective limit is up to N times the setting.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use mesh_runtime::metrics::{MetricsRegistry, names};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::scim::error::ScimError;

type Buckets = RateLimiter<[u8; 32], DefaultKeyedStateStore<[u8; 32]>, DefaultClock>;

/// The shared limiter: cheap to clone, one set of buckets.
#[derive(Debug, Clone)]
pub struct TokenRateLimit {
    /// `None` when the limit is off.
    buckets: Option<Arc<Buckets>>,
    per_second: u32,
    rejected: Family<Vec<(String, String)>, Counter>,
}

impl TokenRateLimit {
    /// A limit of `per_second` requests per token with bursts of `burst`; `per_second == 0`
    /// turns it off. A `burst` of 0 is taken as 1 (configuration checks refuse it).
    pub fn new(per_second: u32, burst: u32, metrics: &MetricsRegistry) -> Self {
        let rejected = metrics.register(&names::CONNECTOR_RATE_LIMITED, Family::default());
        let buckets = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        Self {
            buckets,
            per_second,
            rejected,
        }
    }

    /// Takes one request from the bucket of `digest` (the configured token digest the request
    /// authenticated with), or answers 429 for `connector` when it is empty.
    pub fn check(&self, digest: &[u8; 32], connector: &str) -> Result<(), ScimError> {
        let Some(buckets) = &self.buckets else {
            return Ok(());
        };
        buckets.check_key(digest).map_err(|not_until| {
            self.rejected
                .get_or_create(&vec![("connector".to_owned(), connector.to_owned())])
                .inc();
            let wait = not_until.wait_time_from(buckets.clock().now());
            ScimError::too_many_requests(
                format!(
                    "this bearer token is over its rate limit of {} requests per second; retry after the Retry-After delay",
                    self.per_second
                ),
                wait,
            )
        })
    }
}
