//! A nats-server per test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The oldest nats-server the mesh is tested against (JetStream fixes from the 2025 Jepsen
/// analysis landed in 2.10.23 and 2.12.3).
const MIN_VERSION: (u32, u32) = (2, 12);

/// A running nats-server with JetStream, owned by one test. Killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
    /// The user and password the server requires, if any.
    user: Option<(String, String)>,
}

impl NatsServer {
    /// Starts a nats-server on a free loopback port with a new temporary store and waits until
    /// JetStream answers.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_as(None).await
    }

    /// Like [`NatsServer::start`], for a server that accepts only `user` with `password`.
    /// [`NatsServer::url`] stays without credentials; [`NatsServer::connect`] sends them.
    pub async fn start_with_user(user: &str, password: &str) -> anyhow::Result<Self> {
        Self::start_as(Some((user.to_owned(), password.to_owned()))).await
    }

    async fn start_as(user: Option<(String, String)>) -> anyhow::Result<Self> {
        let binary = find_binary()?;
        let store = tempfile::Builder::new().prefix("mesh-nats-").tempdir()?;
        let port = crate::free_port()?;
        let mut server = Self {
            binary,
            port,
            store,
            child: None,
            user,
        };
        server.spawn().await?;
        Ok(server)
    }

    /// Returns the client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Returns the port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Kills the server with SIGKILL and waits for it to exit. Its store stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store, after [`NatsServer::kill`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }

    /// Connects a client with the retry policy the services use (reconnect forever).
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        self.options()
            .retry_on_initial_connect()
            .connect(self.url())
            .await
            .with_context(|| format!("connecting to {}", self.url()))
    }

    fn options(&self) -> async_nats::ConnectOptions {
        match &self.user {
            Some((user, password)) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            None => async_nats::ConnectOptions::new(),
        }
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.store.path().join("server.log"))?;
        let mut command = Command::new(&self.binary);
        command
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.store.path());
        if let Some((user, password)) = &self.user {
            command.args(["--user", user, "--pass", password]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log = std::fs::read_to_string(self.store.path().join("server.log"))
                    .unwrap_or_default();
                bail!("nats-server exited with {status} during start:\n{log}");
            }
            if let Ok(client) = self.options().connect(self.url()).await {
                let js = async_nats::jetstream::new(client);
                if js.query_account().await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!("nats-server on port {} not ready after 20 s", self.port);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MESHTEST_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let dev = crate::workspace_root().join(".dev/venv/bin/nats-server");
    if dev.is_file() {
        return Ok(dev);
    }
    let version = Command::new("nats-server").arg("--version").output();
    if let Ok(output) = version {
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if parse_version(&text).is_some_and(|v| v >= MIN_VERSION) {
            return Ok(PathBuf::from("nats-server"));
        }
        bail!(
            "nats-server on PATH is too old ({}); run scripts/dev-setup or set MESHTEST_NATS_SERVER",
            text.trim()
        );
    }
    bail!("no nats-server found; run scripts/dev-setup or set MESHTEST_NATS_SERVER")
}

/// Parses `nats-server: v2.15.1` into (2, 15).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix('v'))?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert!(parse_version("garbage").is_none());
    }
}
