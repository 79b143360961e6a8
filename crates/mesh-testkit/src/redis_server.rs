//! A redis-server per test, for tests that stop and start Redis.
//!
//! Most tests share the machine's Redis with a key prefix ([`crate::RedisPrefix`]); a test
//! that kills Redis must not take it away from the others, so it gets its own.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running redis-server without persistence on a free loopback port, owned by one test.
/// Killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a redis-server (`MESHTEST_REDIS_SERVER`, default `redis-server` on PATH or
    /// /usr/bin) and waits until it answers PING.
    pub async fn start() -> anyhow::Result<Self> {
        let binary = std::env::var_os("MESHTEST_REDIS_SERVER")
            .map(PathBuf::from)
            .or_else(|| {
                ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| PathBuf::from("redis-server"));
        let mut server = Self {
            binary,
            port: crate::free_port()?,
            dir: tempfile::Builder::new().prefix("mesh-redis-").tempdir()?,
            child: None,
        };
        server.spawn().await?;
        Ok(server)
    }

    /// Returns the URL, `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL and waits for it to exit; its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty, after [`RedisServer::kill`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.path().join("server.log"))?;
        let child = Command::new(&self.binary)
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--port",
            ])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                bail!("redis-server exited with {status} during start:\n{log}");
            }
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("redis-server on port {} not ready after 10 s", self.port);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
