//! meshd: the one daemon binary of Identity Mesh. `meshd run <service>...|all` runs any set of
//! services in one process (as Grafana Loki and Tempo do with `-target`), so one image serves
//! every Deployment, and `meshd run all` is the whole mesh on a laptop.
//!
//! Every service has one shape (STYLE.md): [`App::build`] connects to NATS and PostgreSQL
//! lazily and binds the admin server (port 0 in tests); [`App::run_until_stopped`] ensures the
//! JetStream topology, starts the services, and on SIGTERM stops pulling, lets in-flight batches
//! finish and ack, and drains under the grace period. Liveness (`/healthz`) is not readiness:
//! `/readyz` answers 200 only while NATS and PostgreSQL both answer.
//!
//! A service is an entry of [`SERVICES`]: a name and an async function run until its
//! cancellation token fires. Services join the table as their issues land; none is faked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::future::BoxFuture;
use mesh_bus::{Bus, Topology};
use mesh_runtime::admin::{AdminServer, Readiness, check_fn};
use mesh_runtime::config::MeshConfig;
use mesh_runtime::error_chain;
use mesh_runtime::metrics::MetricsRegistry;
use mesh_runtime::shutdown::{DrainReport, Shutdown, TaskSet};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// What a service gets from the daemon: configuration and shared connections.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    /// The whole configuration.
    pub config: Arc<MeshConfig>,
    /// The NATS connection, with metrics.
    pub bus: Bus,
    /// The PostgreSQL pool.
    pub pool: PgPool,
    /// The metrics registry served on `/metrics`.
    pub metrics: MetricsRegistry,
    /// The streams and consumers.
    pub topology: Topology,
    /// The readiness checks behind `/readyz`, for services that add their own.
    pub readiness: Readiness,
}

/// Runs a service until the token is cancelled; returning early (Ok or Err) shuts the
/// daemon down, since a stage that stopped would silently stall the pipeline.
pub type ServiceFn =
    fn(ServiceContext, CancellationToken) -> BoxFuture<'static, anyhow::Result<()>>;

/// A service meshd can run.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDef {
    /// Its name on the command line, e.g. `correlation`.
    pub name: &'static str,
    /// One line for `meshd run --help`.
    pub about: &'static str,
    /// Its entry point.
    pub run: ServiceFn,
}

/// Every service this build can run. Stages are added here as they are built; `meshd run all`
/// runs them all.
pub const SERVICES: &[ServiceDef] = &[
    ServiceDef {
        name: "connector-agent",
        about: "SCIM 2.0 server and HR feeds -> change events",
        run: |c, t| {
            Box::pin(async move {
                Ok(connector_agent::run(c.config, c.bus, c.pool, c.metrics, t).await?)
            })
        },
    },
    ServiceDef {
        name: "correlation",
        about: "join rules: change events -> joined, disconnector or ambiguous",
        run: |c, t| {
            Box::pin(async move {
                Ok(correlation::run(c.config, c.bus, c.pool, c.metrics, c.topology, t).await?)
            })
        },
    },
    ServiceDef {
        name: "flow",
        about: "inbound flow, composition and resolution -> mesh object changes",
        run: |c, t| {
            Box::pin(async move {
                Ok(flow::run(c.config, c.bus, c.pool, c.metrics, c.topology, t).await?)
            })
        },
    },
    ServiceDef {
        name: "projection",
        about: "projection rules: mesh object changes -> export commands, retries, grace deletions",
        run: |c, t| {
            Box::pin(async move {
                Ok(projection::run(c.config, c.bus, c.pool, c.metrics, c.topology, t).await?)
            })
        },
    },
    ServiceDef {
        name: "provisioning-agent",
        about: "export commands -> SCIM 2.0, PostgreSQL and LDAP targets -> export results",
        run: |c, t| {
            Box::pin(async move {
                Ok(
                    provisioning_agent::run(c.config, c.bus, c.pool, c.metrics, c.topology, t)
                        .await?,
                )
            })
        },
    },
    ServiceDef {
        name: "risk",
        about: "signals and lifecycle -> risk state in Redis -> AccessDecision over gRPC",
        run: |c, t| {
            Box::pin(async move {
                Ok(risk::run(
                    c.config,
                    c.bus,
                    c.pool,
                    c.metrics,
                    c.topology,
                    c.readiness,
                    t,
                )
                .await?)
            })
        },
    },
    ServiceDef {
        name: "query",
        about: "MeshQuery and RuleAdmin over gRPC: lineage, review queue, exports, audit, rule versions",
        run: |c, t| {
            Box::pin(async move { Ok(query::run(c.config, c.bus, c.pool, c.metrics, t).await?) })
        },
    },
];

/// Resolves service names from the command line (`all` means every service), refusing unknown
/// ones with the list of known ones.
pub fn resolve_services(names: &[String]) -> anyhow::Result<Vec<ServiceDef>> {
    let mut chosen: Vec<ServiceDef> = Vec::new();
    for name in names {
        if name == "all" {
            chosen.extend(SERVICES.iter().copied());
            continue;
        }
        match SERVICES.iter().find(|s| s.name == name) {
            Some(service) => chosen.push(*service),
            None => {
                let known: Vec<&str> = SERVICES.iter().map(|s| s.name).collect();
                bail!(
                    "unknown service {name:?}; this build runs: {}",
                    if known.is_empty() {
                        "no pipeline service yet (only `all`, which keeps the topology)".to_owned()
                    } else {
                        format!("{}, or all", known.join(", "))
                    }
                );
            }
        }
    }
    chosen.sort_by_key(|s| s.name);
    chosen.dedup_by_key(|s| s.name);
    Ok(chosen)
}

/// A daemon ready to run: connections made (lazily), admin server bound.
#[derive(Debug)]
pub struct App {
    context: ServiceContext,
    services: Vec<ServiceDef>,
    admin: AdminServer,
}

impl App {
    /// Connects to NATS and PostgreSQL (in the background: the daemon starts, and reports
    /// not-ready, while they are down) and binds the admin server.
    pub async fn build(config: MeshConfig, services: Vec<ServiceDef>) -> anyhow::Result<Self> {
        let metrics = MetricsRegistry::new();
        let bus = Bus::connect(&(&config.nats).into())
            .await
            .context("setting up the NATS connection")?
            .with_metrics(&metrics);
        let pool = mesh_store::connect_lazy_with(
            postgres_options(&config.postgres).context("setting up the PostgreSQL pool")?,
            config.postgres.max_connections,
            config.postgres.min_connections,
        );

        let readiness = Readiness::new(config.admin.readiness_timeout);
        let probe_timeout = config.admin.readiness_timeout;
        let nats = bus.clone();
        readiness.register(check_fn("nats", move || {
            let nats = nats.clone();
            async move { nats.ping(probe_timeout).await.map_err(|e| error_chain(&e)) }
        }));
        let postgres = pool.clone();
        readiness.register(check_fn("postgres", move || {
            let postgres = postgres.clone();
            async move {
                mesh_store::ping(&postgres)
                    .await
                    .map_err(|e| error_chain(&e))
            }
        }));
        let admin = AdminServer::bind(config.admin.listen, readiness.clone(), metrics.clone())
            .await
            .context("binding the admin server")?;

        let topology = Topology::mesh().with_ack_wait(config.bus.ack_wait);
        Ok(Self {
            context: ServiceContext {
                config: Arc::new(config),
                bus,
                pool,
                metrics,
                topology,
                readiness,
            },
            services,
            admin,
        })
    }

    /// Returns the admin server's address (useful when bound to port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// Runs until `shutdown` is triggered (a signal, or a service ending by itself), then
    /// drains under the grace period.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<DrainReport> {
        let admin = tokio::spawn(self.admin.run_until_stopped(shutdown.clone()));
        let mut tasks = TaskSet::new();

        // The topology task declares the streams and consumers (retrying until NATS answers)
        // and then stays, so that `meshd run all` is a daemon even before its first stage.
        let bus = self.context.bus.clone();
        let topology = self.context.topology.clone();
        let token = shutdown.token();
        tasks.spawn("topology", async move {
            ensure_topology(&bus, &topology, &token).await;
            token.cancelled().await;
        });

        for service in &self.services {
            let context = self.context.clone();
            let token = shutdown.token();
            let name = service.name;
            let run = service.run;
            tasks.spawn(name, async move {
                if let Err(error) = run(context, token).await {
                    tracing::error!(service = name, error = %format!("{error:#}"), "service failed");
                }
            });
            tracing::info!(service = name, "service started");
        }

        let report = shutdown
            .drain(tasks, self.context.config.shutdown.grace_period)
            .await;
        admin
            .await
            .context("admin server task")?
            .context("admin server")?;
        Ok(report)
    }
}

async fn ensure_topology(bus: &Bus, topology: &Topology, token: &CancellationToken) {
    let mut delay = Duration::from_millis(200);
    loop {
        match topology.ensure(bus.jetstream()).await {
            Ok(()) => {
                tracing::info!(
                    streams = topology.streams.len(),
                    consumers = topology.consumers.len(),
                    "jetstream topology ensured"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "jetstream topology not ensured yet; retrying");
            }
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Builds the PostgreSQL connection options: the URL, with `postgres.tls_mode` over the URL's
/// own `sslmode` when set.
pub fn postgres_options(
    config: &mesh_runtime::config::PostgresConfig,
) -> anyhow::Result<sqlx::postgres::PgConnectOptions> {
    use mesh_runtime::config::PgTlsMode;
    use mesh_store::PgSslMode;
    let mode = config.tls_mode.map(|mode| match mode {
        PgTlsMode::Disable => PgSslMode::Disable,
        PgTlsMode::Allow => PgSslMode::Allow,
        PgTlsMode::Prefer => PgSslMode::Prefer,
        PgTlsMode::Require => PgSslMode::Require,
        PgTlsMode::VerifyCa => PgSslMode::VerifyCa,
        PgTlsMode::VerifyFull => PgSslMode::VerifyFull,
    });
    Ok(mesh_store::connect_options(config.url.expose(), mode)?)
}

/// Applies the embedded PostgreSQL migrations (`meshd migrate`).
pub async fn migrate(config: &MeshConfig) -> anyhow::Result<()> {
    let pool = mesh_store::connect_with(postgres_options(&config.postgres)?, 2, 0)
        .await
        .with_context(|| format!("connecting to {}", config.postgres.url.redacted()))?;
    mesh_store::migrate(&pool).await.context("migrating")?;
    let applied = mesh_store::MIGRATOR.iter().count();
    tracing::info!(migrations = applied, "database migrated");
    Ok(())
}
