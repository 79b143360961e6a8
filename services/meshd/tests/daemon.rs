//! meshd against a real nats-server and PostgreSQL: readiness follows its dependencies, the
//! topology is declared, config errors name the key, migrate migrates, SIGTERM drains.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mesh_runtime::config::MeshConfig;
use mesh_runtime::shutdown::Shutdown;
use mesh_testkit::{NatsServer, TestDatabase, assert_eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `path` from `addr` and returns (status, body); (0, error) when nothing answers.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, "connection refused".to_owned());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, "write failed".to_owned());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn config_file(dir: &Path, nats: &str, postgres: &str) -> std::path::PathBuf {
    let path = dir.join("meshd.toml");
    let mut file = std::fs::File::create(&path).unwrap();
    write!(
        file,
        r#"
[nats]
url = "{nats}"

[postgres]
url = "{postgres}"

[admin]
listen = "127.0.0.1:0"
readiness_timeout = "1s"

[shutdown]
grace_period = "5s"

[rules]
path = "{rules}"

[risk]
listen = "127.0.0.1:0"

[query]
listen = "127.0.0.1:0"
"#,
        rules = mesh_testkit::workspace_root()
            .join("examples/rules")
            .display()
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_nats_and_postgres_and_the_topology_is_declared() {
    let mut nats = NatsServer::start().await.unwrap();
    let db = TestDatabase::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = MeshConfig::load(Some(&config_file(dir.path(), &nats.url(), db.url()))).unwrap();

    let app = meshd::App::build(
        config,
        meshd::resolve_services(&["all".to_owned()]).unwrap(),
    )
    .await
    .unwrap();
    let addr = app.admin_addr();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    assert_eventually!(Duration::from_secs(10), get(addr, "/readyz").await.0 == 200);
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (status, metrics) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("# EOF"), "{metrics}");

    // Every stream of DESIGN.md §2 exists on the server.
    let client = nats.connect().await.unwrap();
    let js = async_nats::jetstream::new(client);
    for stream in [
        "MESH_CHANGES",
        "MESH_JOINED",
        "MESH_OBJECTS",
        "MESH_EXPORTS",
        "MESH_RESULTS",
        "MESH_SIGNALS",
        "MESH_DLQ",
    ] {
        assert_eventually!(
            Duration::from_secs(10),
            js.get_stream(stream).await.is_ok(),
            "stream {stream} declared"
        );
    }

    nats.kill();
    assert_eventually!(Duration::from_secs(10), {
        let (status, body) = get(addr, "/readyz").await;
        status == 503 && body.contains("nats")
    });
    assert_eq!(get(addr, "/healthz").await.0, 200, "alive while not ready");
    nats.restart().await.unwrap();
    assert_eventually!(Duration::from_secs(20), get(addr, "/readyz").await.0 == 200);

    shutdown.trigger();
    let report = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_postgres_is_unreachable() {
    let nats = NatsServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = mesh_testkit::free_port().unwrap();
    let unreachable = format!("postgres://postgres@127.0.0.1:{port}/none");
    let config =
        MeshConfig::load(Some(&config_file(dir.path(), &nats.url(), &unreachable))).unwrap();
    let app = meshd::App::build(config, Vec::new()).await.unwrap();
    let addr = app.admin_addr();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    assert_eventually!(Duration::from_secs(15), {
        let (status, body) = get(addr, "/readyz").await;
        status == 503 && body.contains("postgres") && !body.contains("\"nats\"")
    });
    shutdown.trigger();
    running.await.unwrap().unwrap();
}

fn meshd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshd"));
    // A stray MESH_* variable of the developer's shell must not leak into these runs.
    for (key, _) in std::env::vars() {
        if key.starts_with("MESH_") {
            command.env_remove(key);
        }
    }
    command.env("RUST_LOG", "warn");
    command
}

#[test]
fn a_wrong_key_or_type_in_the_config_fails_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[nats]\nulr = \"nats://x\"\n").unwrap();
    let output = meshd()
        .arg("--config")
        .arg(&path)
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nats.ulr"), "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");

    std::fs::write(&path, "[bus]\nbatch_size = \"ten\"\n").unwrap();
    let output = meshd()
        .arg("--config")
        .arg(&path)
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bus.batch_size"), "{stderr}");

    let output = meshd()
        .env("MESH_BUS__MAX_DELIVER", "many")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MESH_BUS__MAX_DELIVER"), "{stderr}");
}

#[test]
fn an_unknown_service_is_refused() {
    let output = meshd().args(["run", "nonsense"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown service \"nonsense\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_schema() {
    let db = TestDatabase::create().await.unwrap();
    let output = meshd()
        .env("MESH_POSTGRES__URL", db.url())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pool = db.pool().await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'inbox'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() {
    let nats = NatsServer::start().await.unwrap();
    let db = TestDatabase::create().await.unwrap();
    let port = mesh_testkit::free_port().unwrap();
    let mut child = meshd()
        .env("MESH_NATS__URL", nats.url())
        .env("MESH_POSTGRES__URL", db.url())
        .env("MESH_ADMIN__LISTEN", format!("127.0.0.1:{port}"))
        .env("MESH_RISK__LISTEN", "127.0.0.1:0")
        .env("MESH_QUERY__LISTEN", "127.0.0.1:0")
        .env(
            "MESH_RULES__PATH",
            mesh_testkit::workspace_root().join("examples/rules"),
        )
        .args(["run", "all"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eventually!(Duration::from_secs(20), get(addr, "/readyz").await.0 == 200);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "meshd did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(exit.success(), "exit {exit:?}: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_mode_is_applied() {
    let db = TestDatabase::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), "nats://127.0.0.1:1", db.url());
    let plain = std::fs::read_to_string(&path).unwrap();
    // The local server has TLS on (Debian's default), so both modes can connect.
    for (mode, expect_tls) in [("require", true), ("disable", false)] {
        let text = plain.replace(
            &format!("url = \"{}\"\n", db.url()),
            &format!("url = \"{}\"\ntls_mode = \"{mode}\"\n", db.url()),
        );
        std::fs::write(&path, text).unwrap();
        let config = MeshConfig::load(Some(&path)).unwrap();
        let options = meshd::postgres_options(&config.postgres).unwrap();
        let pool = mesh_store::connect_with(options, 1, 0).await.unwrap();
        let encrypted: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(encrypted, expect_tls, "tls_mode = {mode}");
        pool.close().await;
    }
}

#[test]
fn demo_runs_the_examples_without_servers() {
    let examples = mesh_testkit::workspace_root().join("examples");
    let output = meshd()
        // No server is reachable at these addresses: the demo must not need any.
        .env("MESH_NATS__URL", "nats://127.0.0.1:1")
        .env("MESH_POSTGRES__URL", "postgres://postgres@127.0.0.1:1/none")
        .arg("demo")
        .arg(&examples)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("Identity Mesh demo"), "{stdout}");
    assert!(stdout.contains("[leaver]"), "the leaver is shown: {stdout}");
    assert!(
        stdout.contains("hr-database"),
        "exports are shown: {stdout}"
    );
}
