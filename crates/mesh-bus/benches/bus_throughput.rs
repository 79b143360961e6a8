//! Throughput of mesh-bus: 256-byte messages published, consumed in batches and acked, against a
//! real nats-server (2.12+, file storage) started for the run.
//!
//! `cargo bench -p mesh-bus --bench bus_throughput [-- MESSAGES]` prints messages per second
//! for three phases: publish only (pipelined, every publish acknowledged by the stream),
//! consume only (a pre-filled stream drained through the micro-batch loop, every message
//! acked), and both at once (end to end). Default 200,000 messages per phase.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mesh_bus::topology::{ConsumerSpec, StreamSpec, Topology, streams};
use mesh_bus::{
    BatchHandler, Bus, ConsumerSettings, Delivery, HandlerError, Outgoing, run_consumer,
};
use mesh_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

const PAYLOAD: usize = 256;
const CHUNK: usize = 1_000;

struct Count(Arc<AtomicU64>);

impl BatchHandler for Count {
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        let bytes: usize = batch.iter().map(|d| d.payload().len()).sum();
        std::hint::black_box(bytes);
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn topology(stream: &str) -> Topology {
    let dlq = Topology::mesh()
        .streams
        .into_iter()
        .find(|s| s.name == streams::DLQ)
        .expect("dlq stream");
    let subject = format!("{}.>", stream.to_lowercase());
    Topology {
        streams: vec![StreamSpec::new(stream, &subject, "bench"), dlq],
        consumers: vec![ConsumerSpec::new(stream, "bench", &subject)],
    }
}

async fn publish(bus: &Bus, stream: &str, messages: usize) -> Duration {
    let payload = bytes::Bytes::from(vec![b'x'; PAYLOAD]);
    let subject = format!("{}.event", stream.to_lowercase());
    let started = Instant::now();
    // Two publishers in flight: pipelining within a chunk, concurrency across chunks.
    let chunks: Vec<_> = (0..messages)
        .collect::<Vec<_>>()
        .chunks(CHUNK)
        .map(<[usize]>::to_vec)
        .collect();
    let mut handles = Vec::new();
    for part in chunks.chunks(chunks.len().div_ceil(2).max(1)) {
        let publisher = bus.publisher();
        let part = part.to_vec();
        let payload = payload.clone();
        let subject = subject.clone();
        handles.push(tokio::spawn(async move {
            for chunk in part {
                let batch: Vec<Outgoing> = chunk
                    .iter()
                    .map(|i| {
                        Outgoing::encode_raw(
                            subject.clone(),
                            format!("b-{i}"),
                            "bench.Raw",
                            payload.clone(),
                        )
                    })
                    .collect();
                publisher.publish_all(batch).await.expect("publish");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("publisher task");
    }
    started.elapsed()
}

async fn consume_until(
    bus: &Bus,
    topology: &Topology,
    settings: &ConsumerSettings,
    total: u64,
) -> Duration {
    let counted = Arc::new(AtomicU64::new(0));
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = {
        let bus = bus.clone();
        let spec = topology.consumers[0].clone();
        let settings = settings.clone();
        let handler = Count(counted.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move { run_consumer(&bus, &spec, &settings, &handler, shutdown).await })
    };
    while counted.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    task.await.expect("consumer task").expect("consumer");
    elapsed
}

fn rate(messages: usize, elapsed: Duration) -> f64 {
    messages as f64 / elapsed.as_secs_f64()
}

fn main() {
    let messages: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let nats = NatsServer::start().await.expect("nats-server");
        let bus = Bus::from_client(nats.connect().await.expect("connect"));
        let settings = ConsumerSettings::default();
        println!(
            "mesh-bus throughput: {messages} messages of {PAYLOAD} bytes, batch {} (wait {:?}), {} cpus",
            settings.batch_size,
            settings.batch_wait,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        );

        let first = topology("BENCH_A");
        first.ensure(bus.jetstream()).await.expect("topology");
        let elapsed = publish(&bus, "BENCH_A", messages).await;
        println!("  publish only        {:>10.0} msg/s  ({elapsed:.2?})", rate(messages, elapsed));
        let elapsed = consume_until(&bus, &first, &settings, messages as u64).await;
        println!("  consume + ack only  {:>10.0} msg/s  ({elapsed:.2?})", rate(messages, elapsed));

        let second = topology("BENCH_B");
        second.ensure(bus.jetstream()).await.expect("topology");
        let started = Instant::now();
        let producer = {
            let bus = bus.clone();
            tokio::spawn(async move { publish(&bus, "BENCH_B", messages).await })
        };
        consume_until(&bus, &second, &settings, messages as u64).await;
        producer.await.expect("producer");
        let elapsed = started.elapsed();
        println!("  end to end          {:>10.0} msg/s  ({elapsed:.2?})", rate(messages, elapsed));
    });
}
