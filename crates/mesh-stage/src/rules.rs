//! The rule set in force, versioned in PostgreSQL and switched live.
//!
//! The database holds the rule set's versions (`rule_versions`, written by the query service's
//! RuleAdmin); the highest one is in force. A service loads it at start
//! ([`load_versioned_rules`]); when no version exists yet, the first service to start stores
//! the configured files (`rules.path`) as version 1, so that a fresh install works from the
//! mounted rules and every outcome still names a numbered version. After that the files are
//! only read to warn that they differ from the version in force: `meshctl rules apply`
//! changes rules, not the mount.
//!
//! [`follow_rules`] keeps a [`RulesHandle`] on the newest version: it wakes on the query
//! service's announcement (`mesh.rules.changed`) and polls every [`POLL_INTERVAL`] in case
//! one was missed, then loads and swaps. A handler takes [`RulesHandle::current`] once per
//! batch, so a batch runs under one version and stamps it on its outputs.

use std::sync::Arc;
use std::time::Duration;

use mesh_bus::Bus;
use mesh_engine::{LoadError, RuleSet, SourceFile};
use mesh_runtime::config::MeshConfig;
use mesh_store::rules::{self as stored, ApplyError, NewRuleVersion, RuleFile};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::RulesError;

/// How often a service checks the database for a new version, besides the announcements.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// The rule set a service runs with now; cheap to clone and share between handlers.
#[derive(Debug, Clone)]
pub struct RulesHandle {
    sender: Arc<watch::Sender<Arc<RuleSet>>>,
}

impl RulesHandle {
    /// A handle holding `rules`.
    pub fn new(rules: RuleSet) -> Self {
        Self {
            sender: Arc::new(watch::Sender::new(Arc::new(rules))),
        }
    }

    /// A handle holding an already shared rule set.
    pub fn from_shared(rules: Arc<RuleSet>) -> Self {
        Self {
            sender: Arc::new(watch::Sender::new(rules)),
        }
    }

    /// The rule set in force; take it once per batch.
    pub fn current(&self) -> Arc<RuleSet> {
        self.sender.borrow().clone()
    }

    /// A receiver that sees every switch, for state derived from the rules.
    pub fn subscribe(&self) -> watch::Receiver<Arc<RuleSet>> {
        self.sender.subscribe()
    }

    /// Puts `rules` in force.
    pub fn replace(&self, rules: RuleSet) {
        self.sender.send_replace(Arc::new(rules));
    }
}

/// Compiles stored files into the rule set numbered `version`.
pub fn rule_set_from_files(files: &[RuleFile], version: u64) -> Result<RuleSet, RulesError> {
    let sources: Vec<SourceFile> = files.iter().map(RuleFile::to_source).collect();
    mesh_engine::load(&sources)
        .map(|rules| rules.with_version(version))
        .map_err(|LoadError { problems }| RulesError::Invalid {
            path: format!("rule version {version}"),
            problems: problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        })
}

/// Reads a rule directory (or file) as stored files, paths relative to it.
pub fn read_rule_files(path: &std::path::Path) -> Result<Vec<RuleFile>, RulesError> {
    let sources =
        mesh_sim::files::read_rules_relative(path).map_err(|source| RulesError::Read {
            path: path.display().to_string(),
            source,
        })?;
    Ok(sources
        .into_iter()
        .map(|s| RuleFile {
            path: s.path,
            content: s.contents,
        })
        .collect())
}

/// Loads the rule set in force; stores the configured files as version 1 when there is none.
///
/// While the database cannot answer (down, or not migrated yet) it waits and tries again,
/// with a warning that says what to do, so a service can start before PostgreSQL and report
/// not-ready meanwhile; `None` when `shutdown` fires first. Invalid rules are an error.
pub async fn load_versioned_rules(
    config: &MeshConfig,
    pool: &PgPool,
    stage: &str,
    shutdown: &CancellationToken,
) -> Result<Option<RuleSet>, RulesError> {
    let mut wait = Duration::from_millis(500);
    loop {
        match load_versioned_rules_from(&config.rules.path, pool, stage).await {
            Err(RulesError::Store(error)) => {
                let missing = matches!(
                    &error,
                    mesh_store::StoreError::Query { source: sqlx::Error::Database(db), .. }
                        if db.code().as_deref() == Some("42P01")
                );
                if missing {
                    tracing::warn!(
                        stage,
                        "the mesh database has no rule_versions table; run `meshd migrate`; waiting"
                    );
                } else {
                    tracing::warn!(stage, error = %mesh_runtime::error_chain(&error), retry_in = ?wait, "cannot read the rule version in force; waiting for the database");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            other => return other.map(Some),
        }
    }
}

/// [`load_versioned_rules`] with the rule files at `configured`.
pub async fn load_versioned_rules_from(
    configured: &std::path::Path,
    pool: &PgPool,
    stage: &str,
) -> Result<RuleSet, RulesError> {
    if let Some((version, files)) = stored::get(pool, 0).await.map_err(RulesError::Store)? {
        let rules = rule_set_from_files(&files, version.version)?;
        if let Ok(mounted) = read_rule_files(configured)
            && stored::digest(&mounted) != version.digest
        {
            tracing::warn!(
                stage,
                path = %configured.display(),
                version = version.version,
                "the configured rule files differ from the rule version in force, which is used; apply them with `meshctl rules apply -f` to use them"
            );
        }
        tracing::info!(stage, version = version.version, "rules loaded");
        return Ok(rules);
    }
    let files = read_rule_files(configured)?;
    // Validate before storing: an invalid mount must not become version 1.
    let rules = rule_set_from_files(&files, 1).map_err(|e| match e {
        RulesError::Invalid { problems, .. } => RulesError::Invalid {
            path: configured.display().to_string(),
            problems,
        },
        other => other,
    })?;
    let mut tx = pool.begin().await.map_err(|e| {
        RulesError::Store(mesh_store::StoreError::query(
            "storing the first rule version",
        )(e))
    })?;
    let reason = format!("initial rule set from {}", configured.display());
    let summary = rules.summary();
    let inserted = stored::insert(
        &mut tx,
        NewRuleVersion {
            files: &files,
            actor: stage,
            reason: &reason,
            summary: &summary,
            restored_from: None,
            expected_current: Some(0),
        },
    )
    .await;
    match inserted {
        Ok(version) => {
            tx.commit().await.map_err(|e| {
                RulesError::Store(mesh_store::StoreError::query(
                    "storing the first rule version",
                )(e))
            })?;
            tracing::info!(stage, version = version.version, path = %configured.display(), "rules stored as the first version");
            Ok(rules)
        }
        // Another service stored its files first: use the stored version.
        Err(ApplyError::Conflict { .. }) => {
            drop(tx);
            let (version, files) = stored::get(pool, 0)
                .await
                .map_err(RulesError::Store)?
                .ok_or_else(|| {
                    RulesError::Store(mesh_store::StoreError::Malformed {
                        what: "rule versions",
                        reason: "a version was stored concurrently, then disappeared".into(),
                    })
                })?;
            tracing::info!(stage, version = version.version, "rules loaded");
            rule_set_from_files(&files, version.version)
        }
        Err(ApplyError::Store(e)) => Err(RulesError::Store(e)),
    }
}

/// A service's start: [`load_versioned_rules`], then [`follow_rules`] in the background until
/// `shutdown`. `None` when `shutdown` fired while waiting for the database.
pub async fn load_and_follow(
    config: &MeshConfig,
    pool: &PgPool,
    bus: &Bus,
    stage: &'static str,
    shutdown: &CancellationToken,
) -> Result<Option<RulesHandle>, RulesError> {
    let Some(rules) = load_versioned_rules(config, pool, stage, shutdown).await? else {
        return Ok(None);
    };
    let handle = RulesHandle::new(rules);
    tokio::spawn(follow_rules(
        bus.clone(),
        pool.clone(),
        handle.clone(),
        stage,
        shutdown.clone(),
    ));
    Ok(Some(handle))
}

/// Keeps `handle` on the newest rule version until `shutdown`; see the module docs.
pub async fn follow_rules(
    bus: Bus,
    pool: PgPool,
    handle: RulesHandle,
    stage: &'static str,
    shutdown: CancellationToken,
) {
    let mut watch = match bus.watch_rule_versions().await {
        Ok(watch) => Some(watch),
        Err(error) => {
            tracing::warn!(stage, error = %mesh_runtime::error_chain(&error), "cannot subscribe to rule announcements; polling only");
            None
        }
    };
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            announced = async {
                match watch.as_mut() {
                    Some(w) => w.next().await,
                    None => std::future::pending().await,
                }
            } => {
                if announced.is_none() {
                    watch = None;
                }
            }
        }
        if let Err(error) = refresh(&pool, &handle, stage).await {
            tracing::warn!(stage, error = %mesh_runtime::error_chain(&error), "cannot switch to the newest rule version; keeping the current one");
        }
    }
}

/// Switches `handle` to the newest stored version when it is newer than the one in force.
pub async fn refresh(pool: &PgPool, handle: &RulesHandle, stage: &str) -> Result<bool, RulesError> {
    let in_force = handle.current().version();
    let Some(newest) = stored::current_version(pool)
        .await
        .map_err(RulesError::Store)?
    else {
        return Ok(false);
    };
    if newest == in_force {
        return Ok(false);
    }
    let Some((version, files)) = stored::get(pool, newest).await.map_err(RulesError::Store)? else {
        return Ok(false);
    };
    let rules = rule_set_from_files(&files, version.version)?;
    handle.replace(rules);
    tracing::info!(stage, from = in_force, to = version.version, actor = %version.actor, "rules switched");
    Ok(true)
}

/// Re-evaluates a stage's whole state under each rule version that comes into force, until
/// `shutdown`: `sweep` runs once per version this stage has not swept yet (recorded in
/// `rule_sweeps`, so a stage that was down when a version was applied catches up at start),
/// and is retried after a failure. It returns how many objects changed.
pub async fn sweep_rule_versions<F, Fut>(
    pool: PgPool,
    handle: RulesHandle,
    stage: &'static str,
    shutdown: CancellationToken,
    sweep: F,
) where
    F: Fn(Arc<RuleSet>) -> Fut,
    Fut: std::future::Future<Output = Result<usize, mesh_bus::HandlerError>>,
{
    let mut changes = handle.subscribe();
    loop {
        let rules = changes.borrow_and_update().clone();
        let version = rules.version();
        match stored::swept(&pool, stage, version).await {
            // Superseded before its sweep began: the newer version's sweep covers it.
            Ok(false) if changes.has_changed().unwrap_or(false) => continue,
            Ok(true) => {}
            Ok(false) => {
                let started = std::time::Instant::now();
                match sweep(rules).await {
                    Ok(changed) => {
                        tracing::info!(stage, version, changed, elapsed = ?started.elapsed(), "state re-evaluated under the new rule version");
                        if let Err(error) =
                            stored::record_sweep(&pool, stage, version, changed as u64).await
                        {
                            tracing::warn!(stage, version, error = %mesh_runtime::error_chain(&error), "cannot record the sweep; it runs again at the next start");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(stage, version, error = %error, "re-evaluation under the new rule version failed; retrying");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(stage, version, error = %mesh_runtime::error_chain(&error), "cannot read rule sweeps; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
