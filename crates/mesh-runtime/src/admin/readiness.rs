//! Readiness: every registered check must pass before the process takes traffic.
//!
//! Checks are trait objects so that adapters (mesh-bus for NATS, mesh-store for PostgreSQL)
//! implement them without this crate depending on the adapters. Each evaluation runs every
//! check concurrently, each under the same short timeout; a check that times out or panics
//! counts as failed. Nothing is cached: a probe sees the dependencies as they are now.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use serde::Serialize;

/// Default time allowed to each check.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A dependency the process needs before it is ready (a NATS connection, a database pool).
pub trait ReadinessCheck: Send + Sync {
    /// Short stable name shown in `/readyz` (`nats`, `postgres`).
    fn name(&self) -> &str;

    /// Returns `Ok(())` when the dependency answers, or an error message safe to show (no
    /// credentials).
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// A [`ReadinessCheck`] made from a name and an async closure.
pub struct FnCheck<F> {
    name: String,
    f: F,
}

impl<F> fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCheck")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Builds a check from a name and a closure returning a future:
/// `check_fn("nats", move || { let c = c.clone(); async move { ping(&c).await } })`.
pub fn check_fn<F, Fut>(name: impl Into<String>, f: F) -> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    FnCheck {
        name: name.into(),
        f,
    }
}

impl<F, Fut> ReadinessCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        (self.f)().boxed()
    }
}

/// The set of readiness checks plus the shutting-down flag; clones share state.
#[derive(Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

struct Inner {
    checks: RwLock<Vec<Arc<dyn ReadinessCheck>>>,
    timeout: Duration,
    shutting_down: AtomicBool,
    /// 0 before the first evaluation, then 1 ready, 2 not ready.
    last_state: AtomicU8,
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("checks", &self.check_names())
            .field("timeout", &self.inner.timeout)
            .field("shutting_down", &self.is_shutting_down())
            .finish()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new(DEFAULT_CHECK_TIMEOUT)
    }
}

impl Readiness {
    /// Creates an empty set whose checks each get `timeout`. With no checks, the process is
    /// ready as soon as the admin server listens.
    pub fn new(timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                checks: RwLock::new(Vec::new()),
                timeout,
                shutting_down: AtomicBool::new(false),
                last_state: AtomicU8::new(0),
            }),
        }
    }

    /// Adds a check.
    pub fn register(&self, check: impl ReadinessCheck + 'static) {
        self.register_arc(Arc::new(check));
    }

    /// Adds a shared check.
    pub fn register_arc(&self, check: Arc<dyn ReadinessCheck>) {
        self.inner
            .checks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(check);
    }

    /// Returns the names of the registered checks.
    pub fn check_names(&self) -> Vec<String> {
        self.checks().iter().map(|c| c.name().to_owned()).collect()
    }

    /// Marks the process as shutting down: from now on it is never ready.
    pub fn set_shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Returns whether [`Readiness::set_shutting_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    fn checks(&self) -> Vec<Arc<dyn ReadinessCheck>> {
        self.inner
            .checks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs every check concurrently and reports the result.
    pub async fn evaluate(&self) -> ReadinessReport {
        if self.is_shutting_down() {
            return ReadinessReport {
                status: ReadinessStatus::ShuttingDown,
                failing: Vec::new(),
            };
        }
        let checks = self.checks();
        let timeout = self.inner.timeout;
        let results = join_all(checks.iter().map(|check| async move {
            let outcome =
                tokio::time::timeout(timeout, AssertUnwindSafe(check.check()).catch_unwind()).await;
            let error = match outcome {
                Ok(Ok(Ok(()))) => return None,
                Ok(Ok(Err(error))) => error,
                Ok(Err(_panic)) => "check panicked".to_owned(),
                Err(_elapsed) => format!("timed out after {}ms", timeout.as_millis()),
            };
            Some(FailedCheck {
                check: check.name().to_owned(),
                error,
            })
        }))
        .await;
        let failing: Vec<FailedCheck> = results.into_iter().flatten().collect();
        let status = if failing.is_empty() {
            ReadinessStatus::Ready
        } else {
            ReadinessStatus::NotReady
        };
        self.log_transition(status == ReadinessStatus::Ready, &failing);
        ReadinessReport { status, failing }
    }

    /// Logs when readiness flips, not on every probe.
    fn log_transition(&self, ready: bool, failing: &[FailedCheck]) {
        let state = if ready { 1 } else { 2 };
        if self.inner.last_state.swap(state, Ordering::SeqCst) == state {
            return;
        }
        if ready {
            tracing::info!("ready");
        } else {
            let names: Vec<&str> = failing.iter().map(|f| f.check.as_str()).collect();
            tracing::warn!(failing = ?names, "not ready");
        }
    }
}

/// Outcome of one readiness evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessReport {
    /// Overall status.
    pub status: ReadinessStatus,
    /// The checks that failed, in registration order.
    pub failing: Vec<FailedCheck>,
}

impl ReadinessReport {
    /// Returns whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.status == ReadinessStatus::Ready
    }
}

/// Overall readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessStatus {
    /// Every check passed.
    Ready,
    /// At least one check failed.
    NotReady,
    /// Shutdown has begun.
    ShuttingDown,
}

/// A failed check and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedCheck {
    /// The check's name.
    pub check: String,
    /// Its error message.
    pub error: String,
}
