//! Drain under a grace period: tasks that finish in time are reported completed, the rest are
//! aborted and named.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mesh_runtime::shutdown::{Shutdown, TaskSet};

#[tokio::test]
async fn finishes_prompt_tasks_and_aborts_the_stuck_one_after_the_grace_period() {
    let shutdown = Shutdown::new();
    let mut tasks = TaskSet::new();

    let token = shutdown.token();
    let finished_cleanly = Arc::new(AtomicBool::new(false));
    let flag = finished_cleanly.clone();
    tasks.spawn("prompt", async move {
        token.cancelled().await;
        tokio::time::sleep(Duration::from_millis(50)).await; // finish in-flight work
        flag.store(true, Ordering::SeqCst);
    });
    tasks.spawn("stuck", async {
        // Ignores the token entirely.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    assert_eq!(tasks.len(), 2);

    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        trigger.trigger();
    });

    let started = tokio::time::Instant::now();
    let report = shutdown.drain(tasks, Duration::from_millis(300)).await;
    let elapsed = started.elapsed();

    assert_eq!(report.completed, ["prompt"]);
    assert_eq!(report.aborted, ["stuck"]);
    assert!(report.panicked.is_empty());
    assert!(report.ended_before_shutdown.is_empty());
    assert!(!report.is_clean());
    assert!(finished_cleanly.load(Ordering::SeqCst));
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(shutdown.is_stopped());
}

#[tokio::test]
async fn a_clean_drain_returns_as_soon_as_every_task_is_done() {
    let shutdown = Shutdown::new();
    let mut tasks = TaskSet::new();
    for name in ["correlation", "flow"] {
        let token = shutdown.token();
        tasks.spawn(name, async move { token.cancelled().await });
    }
    shutdown.trigger();
    let started = tokio::time::Instant::now();
    let report = shutdown.drain(tasks, Duration::from_secs(30)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(report.is_clean(), "{report:?}");
    let mut completed = report.completed.clone();
    completed.sort();
    assert_eq!(completed, ["correlation", "flow"]);
}

#[tokio::test]
async fn a_task_ending_early_triggers_shutdown_and_a_panic_is_reported() {
    let shutdown = Shutdown::new();
    let mut tasks = TaskSet::new();
    tasks.spawn("crashes", async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        panic!("stage failed");
    });
    let token = shutdown.token();
    tasks.spawn("waits", async move { token.cancelled().await });

    let report = tokio::time::timeout(
        Duration::from_secs(5),
        shutdown.drain(tasks, Duration::from_secs(5)),
    )
    .await
    .expect("drain ends");
    assert!(shutdown.is_triggered());
    assert_eq!(report.panicked, ["crashes"]);
    assert_eq!(report.ended_before_shutdown, ["crashes"]);
    assert_eq!(report.completed, ["waits"]);
}

#[tokio::test]
async fn on_signals_installs_handlers_and_trigger_still_works() {
    let shutdown = Shutdown::on_signals().expect("signal handlers");
    assert!(!shutdown.is_triggered());
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(1), shutdown.triggered())
        .await
        .expect("triggered");
}

/// A task that returns the moment its token fires races the drain's wait for the trigger; it
/// must count as completed, not as a task that ended before shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_ending_on_the_trigger_is_a_clean_completion() {
    for _ in 0..200 {
        let shutdown = Shutdown::new();
        let mut tasks = TaskSet::new();
        let token = shutdown.token();
        tasks.spawn(
            "waits-for-the-token",
            async move { token.cancelled().await },
        );
        let trigger = shutdown.clone();
        tokio::spawn(async move { trigger.trigger() });
        let report = shutdown.drain(tasks, Duration::from_secs(1)).await;
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.completed, ["waits-for-the-token"]);
        assert!(report.ended_before_shutdown.is_empty(), "{report:?}");
    }
}
