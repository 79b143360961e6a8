//! The harness itself against the real servers: a killed and restarted nats-server keeps its
//! JetStream store; a crashed and restarted PostgreSQL server keeps what was committed and
//! serves the same URL again; a test database exists until dropped; a Redis prefix is cleaned up; a slapd
//! serves its suffix and stops when dropped.

use std::time::Duration;

use mesh_testkit::{
    NatsServer, PostgresServer, RedisPrefix, Slapd, TestDatabase, assert_eventually,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_nats_server_keeps_its_streams_and_messages() {
    let mut nats = NatsServer::start().await.unwrap();
    let js = async_nats::jetstream::new(nats.connect().await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "KEEP".to_owned(),
        subjects: vec!["keep.>".to_owned()],
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("keep.a", "one".into())
        .await
        .unwrap()
        .await
        .unwrap();

    nats.kill();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", nats.port()))
            .await
            .is_err(),
        "the server is down after kill"
    );
    nats.restart().await.unwrap();

    let js = async_nats::jetstream::new(nats.connect().await.unwrap());
    let mut stream = js.get_stream("KEEP").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_postgres_server_recovers_what_was_committed() {
    let mut server = PostgresServer::start().await.unwrap();
    let db = TestDatabase::create_in(&server.admin_url()).await.unwrap();
    let pool = db.pool().await.unwrap();
    sqlx::query("CREATE TABLE kept (n int)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO kept VALUES (1), (2)")
        .execute(&pool)
        .await
        .unwrap();

    server.crash();
    assert!(
        <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
            .await
            .is_err(),
        "the server is down after the crash"
    );
    server.restart().await.unwrap();

    // The pool's connections died with the server; it opens new ones on the same URL.
    let kept: i64 = sqlx::query_scalar("SELECT sum(n) FROM kept")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 3);
    pool.close().await;
}

#[tokio::test]
async fn a_test_database_is_dropped_with_its_handle() {
    let db = TestDatabase::create().await.unwrap();
    let name = db.name().to_owned();
    let pool = db.pool().await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    pool.close().await;
    drop(db);

    let admin = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_redis_prefix_isolates_and_cleans_up_its_keys() {
    let prefix = RedisPrefix::new();
    let other = RedisPrefix::new();
    assert_ne!(prefix.prefix(), other.prefix());
    let client = redis::Client::open(prefix.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{}a", prefix.prefix()))
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(prefix.key_count().await.unwrap(), 1);
    assert_eq!(other.key_count().await.unwrap(), 0);

    let pattern = prefix.prefix().to_owned();
    drop(prefix);
    assert_eventually!(Duration::from_secs(2), {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{pattern}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.is_empty()
    });
}

#[tokio::test]
async fn a_slapd_serves_its_suffix_and_stops_when_dropped() {
    let slapd = Slapd::start().await.unwrap();
    let out = tokio::process::Command::new("ldapsearch")
        .args(["-x", "-LLL", "-H", &slapd.url(), "-D", Slapd::ROOT_DN, "-w"])
        .arg(Slapd::ROOT_PASSWORD)
        .args(["-b", Slapd::PEOPLE, "-s", "base", "ou"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "ldapsearch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ou: people"));

    let port = slapd.port();
    drop(slapd);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "slapd is down after drop"
    );
}
