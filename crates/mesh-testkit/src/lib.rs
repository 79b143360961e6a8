//! Test harness for Identity Mesh: real servers, isolated per test.
//!
//! - [`NatsServer`]: a nats-server 2.12+ with JetStream on a free loopback port and a temporary
//!   store; tests can [`NatsServer::kill`] it (SIGKILL) and [`NatsServer::restart`] it on the
//!   same port and store.
//! - [`TestDatabase`]: a fresh PostgreSQL database per test on the local server, dropped after.
//! - [`PostgresServer`]: a PostgreSQL cluster of the test's own (initdb in a temporary
//!   directory, run as the `postgres` user under root), for tests that crash and restart it;
//!   [`TestDatabase::create_in`] makes a database on it.
//! - [`RedisPrefix`]: a key prefix per test on the local Redis, its keys deleted after.
//! - [`Slapd`]: an OpenLDAP slapd on a free loopback port with its own directory (suffix
//!   `dc=corp,dc=example,dc=com`, `ou=people`, a root DN, a ppolicy default policy), killed
//!   when dropped.
//! - [`assert_eventually!`]: poll a condition until a deadline instead of sleeping.
//!
//! The servers are found as `scripts/dev-setup` leaves them: `MESHTEST_NATS_SERVER` (a path to the
//! binary), else `.dev/venv/bin/nats-server` in the workspace, else `nats-server` on PATH if it is
//! 2.12 or newer. PostgreSQL is `MESHTEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), Redis is `MESHTEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`), slapd and slapadd are `MESHTEST_SLAPD` and `MESHTEST_SLAPADD`
//! (default: Debian's, in /usr/sbin).

mod database;
mod nats;
mod postgres_server;
mod redis_prefix;
mod redis_server;
mod slapd;

pub use database::TestDatabase;
pub use nats::NatsServer;
pub use postgres_server::PostgresServer;
pub use redis_prefix::RedisPrefix;
pub use redis_server::RedisServer;
pub use slapd::Slapd;

/// Polls `$cond` (an expression that may `.await`) every 20 ms until it is true, panicking with
/// the message if `$timeout` passes first.
///
/// ```no_run
/// # async fn count_rows() -> usize { 0 }
/// # async fn demo() {
/// use std::time::Duration;
/// mesh_testkit::assert_eventually!(
///     Duration::from_secs(10),
///     count_rows().await == 10_000,
///     "rows: {}",
///     count_rows().await
/// );
/// # }
/// ```
#[macro_export]
macro_rules! assert_eventually {
    ($timeout:expr, $cond:expr $(,)?) => {
        $crate::assert_eventually!($timeout, $cond, "condition `{}` still false", stringify!($cond))
    };
    ($timeout:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = ::std::time::Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            if ::std::time::Instant::now() >= deadline {
                panic!("not true after {:?}: {}", $timeout, format!($($msg)+));
            }
            ::tokio::time::sleep(::std::time::Duration::from_millis(20)).await;
        }
    }};
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Returns the workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}
