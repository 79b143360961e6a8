//! `meshctl bench`: load tools that measure a running mesh.
//!
//! `meshctl bench pipeline` publishes change events for synthetic people across two connectors
//! (`meshctl bench rules` prints their rules; the mesh under test must run them) and measures,
//! end to end, from the publish of each change event to the MeshObjectChanged it causes (the
//! first one whose `cause` is the event): sustained events per second when published as fast
//! as JetStream takes them, and latency percentiles at a fixed rate. It listens to
//! `mesh.object.>` with a plain subscription, so it adds no consumer to the mesh.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use mesh_bus::{Bus, ConnectOptions, Outgoing};
use mesh_model::{CorrelatedChange, EventId, MeshObjectChanged};
use mesh_proto::WireEvent;
use mesh_sim::World;
use mesh_sim::synthetic::{self, Sizes};
use serde::Serialize;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Measure a running pipeline (correlation and flow) end to end.
    Pipeline(PipelineArgs),
    /// Print the rules of the synthetic estate `bench pipeline` publishes.
    Rules,
}

/// Options of `meshctl bench pipeline`.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// The NATS server of the mesh (JetStream).
    #[arg(long, default_value = "nats://127.0.0.1:4222", env = "MESH_NATS__URL")]
    nats: String,
    /// How many change events to publish.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per second; 0 publishes as fast as JetStream acknowledges them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// The first synthetic person's number; pick one the mesh has not seen (default: derived
    /// from the clock).
    #[arg(long)]
    first_person: Option<usize>,
    /// Give up waiting for the mesh after this many seconds without progress.
    #[arg(long, default_value_t = 60)]
    stall_seconds: u64,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What a run measured.
#[derive(Debug, Serialize)]
struct PipelineReport {
    events: usize,
    completed: usize,
    rate_requested: u64,
    publish_seconds: f64,
    publish_events_per_second: f64,
    total_seconds: f64,
    events_per_second: f64,
    /// Publish of the change event to MeshObjectChanged.
    latency_ms: Percentiles,
    /// Publish of the change event to its CorrelatedChange (the correlation stage).
    correlation_latency_ms: Percentiles,
}

#[derive(Debug, Serialize)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort_unstable();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Percentiles {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
    }
}

/// Runs a bench command.
pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Rules => {
            print!("{}", synthetic::RULES);
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Pipeline(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let report = runtime.block_on(pipeline(&args))?;
            print_report(&report);
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(if report.completed == report.events {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn print_report(report: &PipelineReport) {
    let rate = if report.rate_requested == 0 {
        "as fast as possible".to_owned()
    } else {
        format!("{}/s", report.rate_requested)
    };
    println!("pipeline bench: {} events at {rate}", report.events);
    println!(
        "  published in      {:>9.2} s  ({:.0} events/s)",
        report.publish_seconds, report.publish_events_per_second
    );
    println!(
        "  completed         {:>9} of {} (a MeshObjectChanged per event)",
        report.completed, report.events
    );
    println!(
        "  end to end        {:>9.2} s  ({:.0} events/s sustained)",
        report.total_seconds, report.events_per_second
    );
    for (what, l) in [
        ("latency ms        ", &report.latency_ms),
        ("  to correlated   ", &report.correlation_latency_ms),
    ] {
        println!(
            "  {what}p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
    }
}

async fn pipeline(args: &PipelineArgs) -> anyhow::Result<PipelineReport> {
    let bus = Bus::connect(&ConnectOptions {
        url: args.nats.clone(),
        name: "meshctl-bench".to_owned(),
        ..ConnectOptions::default()
    })
    .await
    .with_context(|| format!("connecting to {}", args.nats))?;
    // Microseconds since the epoch: runs started a second apart use disjoint people (and event
    // ids) unless one publishes more than a million people.
    let first = args.first_person.unwrap_or_else(|| {
        usize::try_from(chrono::Utc::now().timestamp_micros().unsigned_abs()).unwrap_or(0)
    });
    let sizes = Sizes::for_events(args.events);
    let rules = synthetic::rules().map_err(|e| anyhow::anyhow!("synthetic rules: {e:?}"))?;
    let world = World::new(rules);
    let mut changes = world
        .change_events(&synthetic::events_from(sizes, first))
        .map_err(|(i, e)| anyhow::anyhow!("synthetic event {i}: {e}"))?;
    // Fresh event ids per run: the mesh's inbox would skip ids it has seen.
    let nonce = format!("meshctl-bench-{first}");
    for (i, change) in changes.iter_mut().enumerate() {
        change.event_id = EventId::derive(&nonce, &(i as u64).to_be_bytes());
        change.source_time = chrono::Utc::now();
    }
    let total = changes.len();
    if total == 0 {
        bail!("nothing to publish");
    }

    let mut subscription = bus
        .client()
        .subscribe("mesh.object.>")
        .await
        .context("subscribing to mesh.object.>")?;
    let mut joined = bus
        .client()
        .subscribe("mesh.joined.>")
        .await
        .context("subscribing to mesh.joined.>")?;
    let sent: std::sync::Arc<std::sync::Mutex<HashMap<EventId, Instant>>> =
        std::sync::Arc::default();
    let publisher = bus.publisher();
    let publish_sent = sent.clone();
    let rate = args.rate;
    let started = Instant::now();
    let publishing = tokio::spawn(async move {
        let chunk = if rate == 0 {
            500
        } else {
            usize::try_from((rate / 100).max(1)).unwrap_or(1)
        };
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for batch in changes.chunks(chunk) {
            if rate > 0 {
                tick.tick().await;
            }
            let messages: Vec<Outgoing> = batch
                .iter()
                .map(|change| {
                    Outgoing::event(
                        format!("mesh.change.{}", change.object.connector),
                        change.event_id.to_string(),
                        change.clone(),
                    )
                })
                .collect();
            {
                let now = Instant::now();
                let mut sent = publish_sent.lock().unwrap_or_else(|e| e.into_inner());
                for change in batch {
                    sent.insert(change.event_id, now);
                }
            }
            publisher.publish_all(messages).await?;
        }
        anyhow::Ok(started.elapsed())
    });

    // The correlation stage's latency, from the CorrelatedChanges seen on the way.
    let joined_sent = sent.clone();
    let correlation = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(total);
        let mut seen = std::collections::HashSet::with_capacity(total);
        while latencies.len() < total {
            let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_secs(5), joined.next()).await
            else {
                break;
            };
            let Ok(correlated) = CorrelatedChange::from_wire(&message.payload) else {
                continue;
            };
            let id = correlated.change.event_id;
            let sent_at = joined_sent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .copied();
            if let Some(sent_at) = sent_at
                && seen.insert(id)
            {
                latencies.push(sent_at.elapsed());
            }
        }
        latencies
    });

    let mut latencies = Vec::with_capacity(total);
    let stall = Duration::from_secs(args.stall_seconds);
    let mut last_progress = Instant::now();
    while latencies.len() < total {
        match tokio::time::timeout(Duration::from_secs(1), subscription.next()).await {
            Ok(Some(message)) => {
                let Ok(changed) = MeshObjectChanged::from_wire(&message.payload) else {
                    continue;
                };
                let sent_at = sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&changed.cause);
                if let Some(sent_at) = sent_at {
                    latencies.push(sent_at.elapsed());
                    last_progress = Instant::now();
                }
            }
            Ok(None) => bail!("the subscription to mesh.object.> ended"),
            Err(_) if last_progress.elapsed() > stall => {
                eprintln!(
                    "no progress for {}s; stopping with {} of {total} events through",
                    args.stall_seconds,
                    latencies.len()
                );
                break;
            }
            Err(_) => {}
        }
    }
    let total_seconds = started.elapsed().as_secs_f64();
    let publish_seconds = publishing.await??.as_secs_f64();
    let correlation_latencies = correlation.await.unwrap_or_default();
    let completed = latencies.len();
    Ok(PipelineReport {
        events: total,
        completed,
        rate_requested: rate,
        publish_seconds,
        publish_events_per_second: total as f64 / publish_seconds,
        total_seconds,
        events_per_second: completed as f64 / total_seconds,
        latency_ms: percentiles(latencies),
        correlation_latency_ms: percentiles(correlation_latencies),
    })
}
