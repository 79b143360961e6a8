//! `nats.url` as operators write it, against a nats-server that requires a user and password:
//! credentials in the URL's user-info authenticate, several comma-separated servers are tried
//! in turn, and the password appears in no debug log of the connection.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_bus::{Bus, ConnectOptions};
use mesh_testkit::{NatsServer, assert_eventually};

const PASSWORD: &str = "p@ss:w0rd-Zq8";

/// Collects what the tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_credentials_authenticate_every_listed_server_and_stay_out_of_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_writer(move || writer.clone())
            .finish(),
    );
    let nats = NatsServer::start_with_user("mesh", PASSWORD).await.unwrap();
    let closed = mesh_testkit::free_port().unwrap();
    // '@' and ':' are percent-encoded in user-info.
    let password = PASSWORD.replace('@', "%40").replace(':', "%3A");
    let options = ConnectOptions {
        url: format!(
            "nats://mesh:{password}@127.0.0.1:{closed}, nats://mesh:{password}@127.0.0.1:{}",
            nats.port()
        ),
        ..Default::default()
    };
    assert!(!format!("{options:?}").contains(&password), "{options:?}");
    let bus = Bus::connect(&options).await.unwrap();
    assert_eventually!(
        Duration::from_secs(15),
        bus.ping(Duration::from_secs(1)).await.is_ok(),
        "JetStream does not answer with the URL's credentials"
    );

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("127.0.0.1"),
        "the connection logged nothing at trace level"
    );
    for secret in [PASSWORD, password.as_str()] {
        assert!(
            !logs.contains(secret),
            "the password is in the logs:\n{logs}"
        );
    }
}
