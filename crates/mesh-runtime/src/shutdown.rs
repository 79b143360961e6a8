//! Graceful shutdown in two phases: **drain**, then **stop**.
//!
//! 1. SIGTERM or SIGINT (or [`Shutdown::trigger`]) cancels the drain token. Services stop
//!    pulling new work, finish and ack what is in flight, and return; `/readyz` answers 503 so
//!    that load balancers stop routing here.
//! 2. [`Shutdown::drain`] waits for the service tasks up to the grace period, aborts the ones
//!    still running (logging each by name), then cancels the stop token. The admin server runs
//!    until then, so `/healthz` and `/metrics` stay scrapeable while the process drains.
//!
//! Invariant: a task that ends before shutdown was asked for is treated as a failure of the
//! process (services run until stopped), so [`Shutdown::drain`] triggers shutdown for the
//! others rather than leaving a half-running process.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

/// Shutdown coordinator; clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    stop: CancellationToken,
}

impl Shutdown {
    /// Creates a coordinator that is triggered only by [`Shutdown::trigger`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a coordinator that triggers on SIGTERM or SIGINT. Needs a Tokio runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        let shutdown = Self::new();
        let waiter = signal_waiter()?;
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                signal = waiter => {
                    tracing::info!(signal, "shutdown signal received, draining");
                    trigger.trigger();
                }
                () = trigger.triggered() => {}
            }
        });
        Ok(shutdown)
    }

    /// Starts the drain phase. Idempotent.
    pub fn trigger(&self) {
        self.drain.cancel();
    }

    /// Returns whether the drain phase has started.
    pub fn is_triggered(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Completes when the drain phase starts.
    pub async fn triggered(&self) {
        self.drain.cancelled().await;
    }

    /// Returns the drain token, for services that take a [`CancellationToken`]; when it is
    /// cancelled they stop taking new work and finish what is in flight.
    pub fn token(&self) -> CancellationToken {
        self.drain.clone()
    }

    /// Completes when draining is over and everything else (the admin server) should stop.
    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    /// Returns whether the stop phase has been reached.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Waits for shutdown to be triggered (or for a task to end by itself, which triggers it),
    /// then gives the remaining tasks `grace` to finish, aborts the rest, and enters the stop
    /// phase. Returns what happened to each task.
    pub async fn drain(&self, mut tasks: TaskSet, grace: Duration) -> DrainReport {
        let mut report = DrainReport::default();

        // Phase 0: running. Watch for tasks ending on their own.
        while !self.is_triggered() {
            tokio::select! {
                () = self.triggered() => {}
                joined = tasks.set.join_next_with_id() => match joined {
                    Some(joined) => {
                        let name = tasks.record(joined, &mut report);
                        // A task that saw the trigger first (its token fired) and ended at
                        // once races this select; only an end without a trigger is early.
                        if !self.is_triggered() {
                            tracing::warn!(task = %name, "task ended before shutdown, shutting down");
                            report.ended_before_shutdown.push(name);
                            self.trigger();
                        }
                    }
                    None => self.trigger(),
                },
            }
        }

        // Phase 1: drain, bounded by the grace period.
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            match tokio::time::timeout_at(deadline, tasks.set.join_next_with_id()).await {
                Ok(Some(joined)) => {
                    tasks.record(joined, &mut report);
                }
                Ok(None) => break,
                Err(_elapsed) => {
                    tasks.abort_rest(grace, &mut report).await;
                    break;
                }
            }
        }

        // Phase 2: stop.
        tracing::info!(
            completed = report.completed.len(),
            failed = report.panicked.len(),
            aborted = report.aborted.len(),
            "drain finished"
        );
        self.stop.cancel();
        report
    }
}

#[cfg(unix)]
fn signal_waiter() -> std::io::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

#[cfg(not(unix))]
fn signal_waiter() -> std::io::Result<impl Future<Output = &'static str>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    })
}

/// Named tasks that [`Shutdown::drain`] waits for.
#[derive(Debug, Default)]
pub struct TaskSet {
    set: JoinSet<()>,
    names: HashMap<Id, String>,
}

impl TaskSet {
    /// Creates an empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `task` on the current runtime under `name` (used in logs and the report). The
    /// task should return soon after the shutdown token is cancelled.
    pub fn spawn<F>(&mut self, name: impl Into<String>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name.into());
    }

    /// Returns the number of tasks still tracked.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Returns whether no task is tracked.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    fn name_of(&mut self, id: Id) -> String {
        self.names
            .remove(&id)
            .unwrap_or_else(|| format!("task-{id}"))
    }

    fn record(&mut self, joined: Result<(Id, ()), JoinError>, report: &mut DrainReport) -> String {
        match joined {
            Ok((id, ())) => {
                let name = self.name_of(id);
                report.completed.push(name.clone());
                name
            }
            Err(error) => {
                let name = self.name_of(error.id());
                if error.is_panic() {
                    tracing::error!(task = %name, "task panicked");
                    report.panicked.push(name.clone());
                } else {
                    report.aborted.push(name.clone());
                }
                name
            }
        }
    }

    async fn abort_rest(&mut self, grace: Duration, report: &mut DrainReport) {
        self.set.abort_all();
        while let Some(joined) = self.set.join_next_with_id().await {
            let (id, outcome) = match joined {
                Ok((id, ())) => (id, Ok(())),
                Err(error) => (error.id(), Err(error)),
            };
            let name = self.name_of(id);
            match outcome {
                // Finished between the deadline and the abort.
                Ok(()) => report.completed.push(name),
                Err(error) if error.is_panic() => {
                    tracing::error!(task = %name, "task panicked");
                    report.panicked.push(name);
                }
                Err(_) => {
                    tracing::warn!(
                        task = %name,
                        grace_secs = grace.as_secs_f64(),
                        "task did not finish within the grace period, aborted"
                    );
                    report.aborted.push(name);
                }
            }
        }
    }
}

/// What happened to each task during [`Shutdown::drain`]; every list is in completion order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Tasks that returned.
    pub completed: Vec<String>,
    /// Tasks that panicked.
    pub panicked: Vec<String>,
    /// Tasks aborted because they outlived the grace period.
    pub aborted: Vec<String>,
    /// Tasks that ended before shutdown was triggered (also listed as completed or panicked).
    pub ended_before_shutdown: Vec<String>,
}

impl DrainReport {
    /// Returns whether every task finished in time, without panicking, after shutdown began.
    pub fn is_clean(&self) -> bool {
        self.panicked.is_empty() && self.aborted.is_empty() && self.ended_before_shutdown.is_empty()
    }
}
