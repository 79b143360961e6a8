//! A PostgreSQL server per test, for tests that crash and restart PostgreSQL.
//!
//! Most tests share the machine's PostgreSQL with a database each ([`crate::TestDatabase`]); a
//! test that restarts PostgreSQL must not take it away from the others, so it gets a cluster of
//! its own: `initdb` into a temporary directory, `postgres` on a free loopback port.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

/// A running PostgreSQL cluster with trust authentication on a free loopback port, owned by one
/// test. Stopped (immediately) when dropped.
#[derive(Debug)]
pub struct PostgresServer {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    /// The uid and gid the server runs as: PostgreSQL refuses to run as root, so a test run as
    /// root runs it as the `postgres` user.
    owner: Option<(u32, u32)>,
    child: Option<Child>,
}

impl PostgresServer {
    /// Creates a cluster (`MESHTEST_PG_BIN`, default the newest /usr/lib/postgresql/*/bin) and
    /// starts it, waiting until it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = find_bin()?;
        let dir = tempfile::Builder::new().prefix("mesh-pg-").tempdir()?;
        let owner = owner()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the postgres user", dir.path().display()))?;
        }
        let mut server = Self {
            bin,
            port: crate::free_port()?,
            dir,
            owner,
            child: None,
        };
        let output = server
            .command("initdb")
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(server.data_dir())
            .output()
            .context("running initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        server.spawn().await?;
        Ok(server)
    }

    /// Returns the URL of the `postgres` database as superuser `postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server the way a crash does (`pg_ctl stop -m immediate`: every process quits
    /// without a checkpoint, so the next start runs crash recovery) and waits for it to exit.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(self.data_dir())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data, after [`PostgresServer::crash`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.crash();
        self.spawn().await
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command.stdin(Stdio::null());
        command
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.log_path())?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(self.log_path(), Some(uid), Some(gid))?;
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            // The tests crash the server, not the machine: the page cache survives.
            .args(["-c", "fsync=off", "-c", "max_connections=300"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.join("postgres").display()))?;
        self.child = Some(child);
        let options: PgConnectOptions = self.admin_url().parse()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                bail!("postgres exited with {status} during start:\n{log}");
            }
            if options.connect().await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("postgres on port {} not ready after 30 s", self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.crash();
    }
}

fn find_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MESHTEST_PG_BIN") {
        return Ok(PathBuf::from(path));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("no PostgreSQL server binaries in /usr/lib/postgresql; set MESHTEST_PG_BIN"),
    }
}

/// `Some((uid, gid))` of the `postgres` user when this process runs as root.
fn owner() -> anyhow::Result<Option<(u32, u32)>> {
    use std::os::unix::fs::MetadataExt;
    // The owner of /proc/self is this process's effective uid.
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"postgres"))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .map(Some)
        .context("running as root, PostgreSQL needs a `postgres` user to run as")
}
