//! Secrets never reach logs, errors or traces.
//!
//! `meshd run all` runs as a child process with a distinctive value for every secret it can
//! hold: the PostgreSQL, Redis and NATS URL passwords, the NATS token, the plain SCIM, HR
//! import, risk and query bearer tokens (the configuration holds only their SHA-256), the
//! provisioning targets' `tokenEnv`/`passwordEnv` variables, and the OTLP exporter's
//! `authorization` header. Logs are JSON at trace level for every crate, dependencies
//! included, and every span goes to a collector inside the test. The test drives traffic that
//! succeeds and traffic that fails: a SCIM change through the whole pipeline to a PostgreSQL
//! target, an HR upload, wrong and missing bearer tokens on every API, malformed requests, two
//! unreachable targets (SCIM and LDAP) retried until dead-lettered, Redis refusing the
//! password, and a rule set with a token written into it. After SIGTERM it looks for each
//! secret (and so each `Authorization` value sent) in stdout, stderr, every exported span
//! (resource, name, attributes, events, links, status), every row of the mesh's database,
//! every message on the streams and every API answer, and lists each place one leaked.
//! Positive checks make sure each path really ran, so a silent process cannot pass.
//!
//! meshd has no command that prints its configuration; what it prints about configuration is
//! its errors, covered by the second test with secrets in the values it refuses.

#[path = "support/mesh.rs"]
mod mesh;
#[path = "support/otlp.rs"]
mod otlp;
#[path = "support/payroll.rs"]
mod payroll;

use std::fmt::Debug;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use mesh::Mesh;
use mesh_proto::v1;
use mesh_proto::v1::access_decision_client::AccessDecisionClient;
use mesh_proto::v1::mesh_query_client::MeshQueryClient;
use mesh_proto::v1::rule_admin_client::RuleAdminClient;
use mesh_testkit::assert_eventually;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use otlp::{Collector, text};
use sha2::{Digest, Sha256};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(60);

const PG_PASSWORD: &str = "pg-pass-Qx7v2KsecretA";
const REDIS_PASSWORD: &str = "redis-pass-Lm4r8TsecretB";
const NATS_TOKEN: &str = "nats-token-Hp2w6ZsecretC";
const NATS_PASSWORD: &str = "nats-pass-Fe4g8VsecretM";
const SCIM_TOKEN: &str = "scim-token-Vd9k3RsecretD";
const IMPORT_TOKEN: &str = "import-token-Bn5t1GsecretE";
const RISK_TOKEN: &str = "risk-token-Cy8m4JsecretF";
const QUERY_TOKEN: &str = "query-token-Wz3q7NsecretG";
const EXPENSE_TOKEN: &str = "expense-scim-Tf6h2PsecretH";
const PAYROLL_PASSWORD: &str = "payroll-pass-Kj1x9DsecretI";
const DIRECTORY_PASSWORD: &str = "ldap-bind-Rs5n8YsecretJ";
const OTLP_TOKEN: &str = "otlp-auth-Ug2b6EsecretK";
/// Written into a rule by mistake: RuleAdmin must refuse it without storing or echoing it.
const INLINE_TOKEN: &str = "inline-token-Pe3d9WsecretN";
/// A token no endpoint accepts; a guess may be another endpoint's token, so it is a secret too.
const WRONG_TOKEN: &str = "wrong-token-Xa7c3MsecretL";

/// Every secret, named for the report.
const SECRETS: &[(&str, &str)] = &[
    ("the postgres.url password", PG_PASSWORD),
    ("the redis.url password", REDIS_PASSWORD),
    ("nats.token", NATS_TOKEN),
    ("the nats.url password", NATS_PASSWORD),
    ("the SCIM bearer token", SCIM_TOKEN),
    ("the HR import token", IMPORT_TOKEN),
    ("the risk bearer token", RISK_TOKEN),
    ("the query bearer token", QUERY_TOKEN),
    ("the expense target's tokenEnv", EXPENSE_TOKEN),
    ("the payroll target's passwordEnv", PAYROLL_PASSWORD),
    ("the directory target's passwordEnv", DIRECTORY_PASSWORD),
    ("the OTLP exporter's authorization header", OTLP_TOKEN),
    ("a wrong bearer token", WRONG_TOKEN),
    ("a token written into a rule", INLINE_TOKEN),
];

/// The pipeline of [`payroll::okta_to_payroll_rules`] (payroll's password from the
/// environment), plus an HR feed and two targets nothing listens for, one SCIM and one LDAP,
/// each with its secret in the environment.
fn rules(payroll_dsn: &str, closed_port: u16) -> String {
    let pipeline =
        payroll::okta_to_payroll_rules(payroll_dsn, ", passwordEnv: PAYROLL_DB_PASSWORD");
    format!(
        r#"{pipeline}
---
kind: Connector
metadata: {{ name: workday }}
spec: {{ type: hr-csv, objectTypes: [User], externalIdAttribute: employee_id }}
---
kind: Connector
metadata: {{ name: expense }}
spec: {{ type: scim-target, objectTypes: [User], url: 'http://127.0.0.1:{closed_port}/scim/v2',
        tokenEnv: EXPENSE_SCIM_TOKEN, timeout: 2s }}
---
kind: Connector
metadata: {{ name: directory }}
spec: {{ type: ldap-target, objectTypes: [User], url: 'ldap://127.0.0.1:{closed_port}',
        bindDn: 'cn=mesh,dc=example,dc=com', passwordEnv: DIRECTORY_BIND_PASSWORD, timeout: 2s }}
---
kind: ProjectionRule
metadata: {{ name: users-to-expense }}
spec: {{ targetConnector: expense, objectType: User, container: Users, deprovision: delete }}
---
kind: ProjectionRule
metadata: {{ name: users-to-directory }}
spec: {{ targetConnector: directory, objectType: User, container: 'ou=people,dc=example,dc=com',
        deprovision: delete }}
---
kind: FlowRule
metadata: {{ name: expense-user-name }}
spec: {{ connector: expense, direction: outbound, sourceAttribute: UserName,
        targetAttribute: userName }}
---
kind: FlowRule
metadata: {{ name: directory-uid }}
spec: {{ connector: directory, direction: outbound, sourceAttribute: UserName,
        targetAttribute: uid }}
"#
    )
}

fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `meshd` with none of the developer's `MESH_*`, `OTEL_*` or `RUST_LOG` variables.
fn meshd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshd"));
    for (key, _) in std::env::vars() {
        if key.starts_with("MESH_") || key.starts_with("OTEL_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.kill_on_drop(true);
    command
}

/// The `addr` field of the first JSON log line whose message is `message`.
fn logged_addr(log: &str, message: &str) -> Option<SocketAddr> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["message"] == message)?["addr"]
        .as_str()?
        .parse()
        .ok()
}

/// Where secrets are looked for, and what was found.
#[derive(Default)]
struct Leaks(Vec<String>);

impl Leaks {
    /// Looks for every secret in `text`, found at `place`.
    fn check(&mut self, place: &str, text: &str) {
        for (name, secret) in SECRETS {
            if text.contains(secret) {
                let at = text.find(secret).unwrap_or_default();
                let start = text.floor_char_boundary(at.saturating_sub(120));
                let end = text.ceil_char_boundary((at + secret.len() + 120).min(text.len()));
                self.0
                    .push(format!("{name} in {place}: …{}…", &text[start..end]));
            }
        }
    }

    /// Checks a log line by line, naming the line.
    fn check_log(&mut self, file: &str, log: &str) {
        for (i, line) in log.lines().enumerate() {
            self.check(&format!("{file} line {}", i + 1), line);
        }
    }

    /// Checks an API answer (or error) through its Debug form.
    fn check_answer(&mut self, what: &str, answer: &impl Debug) {
        self.check(what, &format!("{answer:?}"));
    }

    fn check_attributes(&mut self, place: &str, attributes: &[KeyValue]) {
        for kv in attributes {
            let value = text(kv.value.as_ref()).unwrap_or_default();
            self.check(&format!("{place}, attribute {}", kv.key), &kv.key);
            self.check(&format!("{place}, attribute {}", kv.key), &value);
        }
    }

    /// Checks every string of every exported span.
    fn check_spans(&mut self, requests: &[ExportTraceServiceRequest]) {
        for request in requests {
            for resource_spans in &request.resource_spans {
                let resource = resource_spans.resource.clone().unwrap_or_default();
                self.check_attributes("a span resource", &resource.attributes);
                for scope_spans in &resource_spans.scope_spans {
                    for span in &scope_spans.spans {
                        let place = format!("span {:?}", span.name);
                        self.check(&place, &span.name);
                        self.check(&format!("{place}, tracestate"), &span.trace_state);
                        self.check_attributes(&place, &span.attributes);
                        for event in &span.events {
                            let place = format!("{place}, event {:?}", event.name);
                            self.check(&place, &event.name);
                            self.check_attributes(&place, &event.attributes);
                        }
                        for link in &span.links {
                            self.check_attributes(&format!("{place}, link"), &link.attributes);
                        }
                        if let Some(status) = &span.status {
                            self.check(&format!("{place}, status"), &status.message);
                        }
                    }
                }
            }
        }
    }
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_errors_or_traces() {
    let (payroll, payroll_pool) = payroll::payroll_database().await;
    let closed_port = mesh_testkit::free_port().unwrap();
    let mut mesh = Mesh::start_with_text(&rules(payroll.url(), closed_port)).await;
    let (collector, collector_addr) = Collector::start().await;

    let postgres_url = mesh.db.url().replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PG_PASSWORD}@"),
        1,
    );
    assert!(postgres_url.contains(PG_PASSWORD), "{postgres_url}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[connector_agent]
import_token_sha256 = ["{import}"]

[[connector_agent.scim]]
connector = "okta"
token_sha256 = ["{scim}"]

[[connector_agent.hr]]
connector = "workday"
external_id = "employee_id"
"#,
            import = sha(IMPORT_TOKEN),
            scim = sha(SCIM_TOKEN),
        ),
    )
    .unwrap();
    let stdout_path = dir.path().join("stdout.log");
    let stderr_path = dir.path().join("stderr.log");
    let mut daemon = meshd()
        .args(["run", "all"])
        .env("MESH_CONFIG_FILE", &config)
        .env(
            "MESH_NATS__URL",
            mesh.nats
                .url()
                .replacen("nats://", &format!("nats://mesh:{NATS_PASSWORD}@"), 1),
        )
        .env("MESH_NATS__TOKEN", NATS_TOKEN)
        .env("MESH_POSTGRES__URL", &postgres_url)
        .env(
            "MESH_REDIS__URL",
            format!("redis://:{REDIS_PASSWORD}@127.0.0.1:6379"),
        )
        .env("MESH_RULES__PATH", &mesh.rules_path)
        .env("MESH_ADMIN__LISTEN", "127.0.0.1:0")
        .env("MESH_CONNECTOR_AGENT__LISTEN", "127.0.0.1:0")
        .env("MESH_RISK__LISTEN", "127.0.0.1:0")
        .env(
            "MESH_RISK__TOKEN_SHA256",
            format!("[\"{}\"]", sha(RISK_TOKEN)),
        )
        .env("MESH_QUERY__LISTEN", "127.0.0.1:0")
        .env(
            "MESH_QUERY__TOKEN_SHA256",
            format!("[\"{}\"]", sha(QUERY_TOKEN)),
        )
        .env("MESH_TELEMETRY__LOG_FORMAT", "json")
        // Everything at trace, dependencies included: an operator chasing a fault may do so.
        .env("MESH_TELEMETRY__LOG_FILTER", "trace")
        .env("MESH_BUS__BACKOFF", "[\"50ms\", \"200ms\"]")
        .env("MESH_BUS__MAX_DELIVER", "3")
        .env("MESH_PROJECTION__MAX_ATTEMPTS", "2")
        .env("MESH_PROJECTION__RETRY_INITIAL", "100ms")
        .env("MESH_PROJECTION__RETRY_MAX", "200ms")
        .env("MESH_PROJECTION__TIMER_INTERVAL", "100ms")
        .env("MESH_SHUTDOWN__GRACE_PERIOD", "10s")
        .env("EXPENSE_SCIM_TOKEN", EXPENSE_TOKEN)
        .env("PAYROLL_DB_PASSWORD", PAYROLL_PASSWORD)
        .env("DIRECTORY_BIND_PASSWORD", DIRECTORY_PASSWORD)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer {OTLP_TOKEN}"),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();

    let read_log = || std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let deadline = std::time::Instant::now() + WAIT;
    let (agent, risk, query) = loop {
        let log = read_log();
        let listening = logged_addr(&log, "connector agent listening").and_then(|agent| {
            let risk = logged_addr(&log, "AccessDecision listening")?;
            let query = logged_addr(&log, "MeshQuery and RuleAdmin listening")?;
            Some((agent, risk, query))
        });
        if let Some(addrs) = listening {
            break addrs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "meshd does not listen after {WAIT:?}; stderr: {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut leaks = Leaks::default();
    let http = reqwest::Client::new();
    let users = format!("http://{agent}/scim/v2/okta/Users");

    // SCIM: a change that goes all the way, then wrong, missing and malformed requests.
    let created = http
        .post(&users)
        .bearer_auth(SCIM_TOKEN)
        .header("content-type", "application/scim+json")
        .body(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    for (request, status) in [
        (http.get(&users).bearer_auth(WRONG_TOKEN), 401),
        (http.get(&users), 401),
        (
            http.get(&users)
                .header("authorization", format!("Basic {SCIM_TOKEN}")),
            401,
        ),
        (
            http.get(format!("http://{agent}/scim/v2/nobody/Users"))
                .bearer_auth(SCIM_TOKEN),
            401,
        ),
        (
            http.post(&users)
                .bearer_auth(SCIM_TOKEN)
                .header("content-type", "application/scim+json")
                .body(r#"{"userName": "#),
            400,
        ),
        (
            http.get(format!("{users}/00000000-0000-0000-0000-000000000000"))
                .bearer_auth(SCIM_TOKEN),
            404,
        ),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        leaks.check("a SCIM error answer", &response.text().await.unwrap());
    }

    // HR uploads: accepted with the import token, refused with a wrong one.
    let imports = format!("http://{agent}/hr/v1/workday/imports");
    let csv = "employee_id,first\n1,Ada\n";
    let uploaded = http
        .post(&imports)
        .bearer_auth(IMPORT_TOKEN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status().as_u16(), 200);
    let refused = http
        .post(&imports)
        .bearer_auth(WRONG_TOKEN)
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    leaks.check("an upload error answer", &refused.text().await.unwrap());

    // AccessDecision: a decision with the token (Redis refuses its password: the safe
    // default), refusals without it.
    let mut decisions = AccessDecisionClient::connect(format!("http://{risk}"))
        .await
        .unwrap();
    let ask = v1::DecideRequest {
        subject: "ada".to_owned(),
        resource: "app:payroll".to_owned(),
        action: "read".to_owned(),
        ..Default::default()
    };
    let decided = decisions.decide(with_token(ask.clone(), RISK_TOKEN)).await;
    leaks.check_answer("a Decide answer", &decided);
    assert!(decided.is_ok(), "{decided:?}");
    for token in [WRONG_TOKEN, QUERY_TOKEN] {
        let refused = decisions.decide(with_token(ask.clone(), token)).await;
        assert_eq!(
            refused.as_ref().map_err(tonic::Status::code).err(),
            Some(tonic::Code::Unauthenticated)
        );
        leaks.check_answer("a Decide refusal", &refused);
    }
    let invalid = decisions
        .decide(with_token(v1::DecideRequest::default(), RISK_TOKEN))
        .await;
    assert!(invalid.is_err(), "{invalid:?}");
    leaks.check_answer("a Decide error", &invalid);

    // The pipeline: payroll gets the user; expense and directory refuse the connection until
    // their exports fail for good (dead-lettered).
    assert_eventually!(
        WAIT,
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM public.accounts WHERE user_name = 'ada'"
        )
        .fetch_one(&payroll_pool)
        .await
        .unwrap()
            == 1
    );
    assert_eventually!(
        WAIT,
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM exports WHERE target IN ('expense', 'directory') \
             AND status = 'failed' AND result = 'retryable-failure'"
        )
        .fetch_one(&mesh.pool)
        .await
        .unwrap()
            == 2,
        "the unreachable targets' exports did not fail"
    );

    // MeshQuery: what an operator reads back (export messages, dead letters), and refusals.
    let mut queries = MeshQueryClient::connect(format!("http://{query}"))
        .await
        .unwrap();
    let exports = queries
        .list_exports(with_token(v1::ListExportsRequest::default(), QUERY_TOKEN))
        .await;
    assert!(
        exports
            .as_ref()
            .is_ok_and(|e| e.get_ref().exports.len() >= 3),
        "{exports:?}"
    );
    leaks.check_answer("ListExports", &exports);
    let dead = queries
        .list_dead_letters(with_token(
            v1::ListDeadLettersRequest::default(),
            QUERY_TOKEN,
        ))
        .await;
    assert!(dead.is_ok(), "{dead:?}");
    leaks.check_answer("ListDeadLetters", &dead);
    for token in [WRONG_TOKEN, RISK_TOKEN] {
        let refused = queries
            .list_exports(with_token(v1::ListExportsRequest::default(), token))
            .await;
        assert_eq!(
            refused.as_ref().map_err(tonic::Status::code).err(),
            Some(tonic::Code::Unauthenticated)
        );
        leaks.check_answer("a MeshQuery refusal", &refused);
    }
    let invalid = queries
        .find_mesh_objects(with_token(
            v1::FindMeshObjectsRequest::default(),
            QUERY_TOKEN,
        ))
        .await;
    assert!(invalid.is_err(), "{invalid:?}");
    leaks.check_answer("a MeshQuery error", &invalid);

    // RuleAdmin: a rule set with a secret written into a Connector is refused, neither
    // stored nor quoted back.
    let leaky = format!(
        "{}---\nkind: Connector\nmetadata: {{ name: leaky }}\nspec: {{ type: scim-target, \
         objectTypes: [User], url: 'https://leaky.example.com/scim/v2', token: {INLINE_TOKEN} }}\n\
         ---\nkind: Connector\nmetadata: {{ name: leaky-db }}\nspec: {{ type: postgres-target, \
         objectTypes: [User], dsn: 'postgres://app:{INLINE_TOKEN}@db/app', keyColumn: id }}\n",
        rules(payroll.url(), closed_port)
    );
    let files = vec![v1::RuleFile {
        path: "rules.yaml".to_owned(),
        content: leaky,
    }];
    let mut admin = RuleAdminClient::connect(format!("http://{query}"))
        .await
        .unwrap();
    let validated = admin
        .validate_rules(with_token(
            v1::ValidateRulesRequest {
                files: files.clone(),
            },
            QUERY_TOKEN,
        ))
        .await;
    assert!(
        validated.as_ref().is_ok_and(|v| !v.get_ref().valid),
        "a rule set with an inline secret validated: {validated:?}"
    );
    leaks.check_answer("ValidateRules", &validated);
    let applied = admin
        .apply_rules(with_token(
            v1::ApplyRulesRequest {
                files,
                actor: "secrets-test".to_owned(),
                reason: "an inline secret must be refused".to_owned(),
                expected_current_version: None,
            },
            QUERY_TOKEN,
        ))
        .await;
    assert!(
        applied.as_ref().is_ok_and(|a| !a.get_ref().applied),
        "a rule set with an inline secret was applied: {applied:?}"
    );
    leaks.check_answer("ApplyRules", &applied);

    // SIGTERM drains and flushes the spans.
    let pid = daemon.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(WAIT, daemon.wait())
        .await
        .expect("meshd did not exit on SIGTERM")
        .unwrap();

    let stdout = read_log();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    leaks.check_log("stdout", &stdout);
    leaks.check_log("stderr", &stderr);
    let requests = collector.requests();
    leaks.check_spans(&requests);
    check_database(&mesh, &mut leaks).await;
    for stream in &mesh.topology.streams {
        for (subject, payload) in mesh.read_stream(&stream.name).await {
            leaks.check(
                &format!("a message on {subject}"),
                &String::from_utf8_lossy(&payload),
            );
        }
    }
    mesh.stop().await;

    assert!(
        leaks.0.is_empty(),
        "{} secret(s) leaked:\n{}",
        leaks.0.len(),
        leaks.0.join("\n")
    );

    // Each path ran, so the absence of secrets means something.
    assert!(exit.success(), "meshd exited with {exit}; stderr: {stderr}");
    let logged = |level: &str, target: &str, text: &str| {
        stdout.lines().any(|line| {
            line.contains(&format!("\"level\":\"{level}\""))
                && line.contains(&format!("\"target\":\"{target}"))
                && line.contains(text)
        })
    };
    for (what, found) in [
        ("trace-level logs", logged("TRACE", "", "")),
        (
            "debug logs of the mesh",
            logged("DEBUG", "connector_agent", ""),
        ),
        (
            "the Redis failure",
            logged("WARN", "mesh_bus", "Password authentication"),
        ),
        (
            "the unreachable SCIM target",
            logged("WARN", "provisioning_agent", "expense"),
        ),
        (
            "the unreachable LDAP target",
            logged("WARN", "provisioning_agent", "directory"),
        ),
    ] {
        assert!(found, "no {what} in the log");
    }
    assert!(
        collector
            .authorizations()
            .contains(&format!("Bearer {OTLP_TOKEN}")),
        "the OTLP header did not reach the collector"
    );
    let spans = collector.spans();
    for status in ["201", "401", "400"] {
        assert!(
            spans.iter().any(|e| {
                e.span.name.starts_with("GET ") || e.span.name.starts_with("POST ")
            } && otlp::attribute(&e.span, "http.response.status_code")
                .as_deref()
                == Some(status)),
            "no exported request span answered {status}"
        );
    }
}

/// Looks for secrets in every row of every table of the mesh's database (bytea columns show as
/// hex, so each secret is also looked for in hex).
async fn check_database(mesh: &Mesh, leaks: &mut Leaks) {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) \
         FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&mesh.pool)
    .await
    .unwrap();
    assert!(tables.len() > 5, "{tables:?}");
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM {table} t"
        )))
        .fetch_all(&mesh.pool)
        .await
        .unwrap();
        for row in rows {
            leaks.check(&format!("a row of {table}"), &row);
            for (name, secret) in SECRETS {
                if row.contains(&hex::encode(secret)) {
                    leaks
                        .0
                        .push(format!("{name} in a row of {table}, as bytes"));
                }
            }
        }
    }
}

/// Runs `meshd migrate` with `env` and returns whether it succeeded and what it printed
/// (stdout then stderr). PostgreSQL is a closed port unless `env` says otherwise, so the run
/// fails even where a database `identitymesh` exists.
async fn migrate_output(env: &[(&str, String)], closed: u16) -> (bool, String) {
    let mut command = meshd();
    command.arg("migrate").env("RUST_LOG", "trace").env(
        "MESH_POSTGRES__URL",
        format!("postgres://postgres@127.0.0.1:{closed}/identitymesh"),
    );
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_and_connection_errors_do_not_echo_secrets() {
    let closed = mesh_testkit::free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("mesh.creds");
    std::fs::write(&creds, "not a creds file").unwrap();
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "PostgreSQL refuses the connection",
            vec![(
                "MESH_POSTGRES__URL",
                format!("postgres://mesh:{PG_PASSWORD}@127.0.0.1:{closed}/mesh"),
            )],
        ),
        (
            "a PostgreSQL URL that does not parse",
            vec![(
                "MESH_POSTGRES__URL",
                format!("postgres://mesh:{PG_PASSWORD}@db:port/mesh?sslmode=sideways"),
            )],
        ),
        (
            "a URL of the wrong scheme",
            vec![(
                "MESH_POSTGRES__URL",
                format!("mysql://mesh:{PG_PASSWORD}@db/mesh?password={PG_PASSWORD}"),
            )],
        ),
        (
            "a Redis URL of the wrong scheme",
            vec![(
                "MESH_REDIS__URL",
                format!("http://:{REDIS_PASSWORD}@cache:6379"),
            )],
        ),
        (
            "a NATS URL of the wrong scheme",
            vec![(
                "MESH_NATS__URL",
                format!("http://mesh:{NATS_TOKEN}@nats:4222"),
            )],
        ),
        (
            "a NATS server list with a bad entry",
            vec![(
                "MESH_NATS__URL",
                format!("nats://127.0.0.1:4222,http://mesh:{NATS_PASSWORD}@nats:4222"),
            )],
        ),
        (
            "two NATS credentials",
            vec![
                ("MESH_NATS__TOKEN", NATS_TOKEN.to_owned()),
                ("MESH_NATS__CREDENTIALS_FILE", creds.display().to_string()),
            ],
        ),
        (
            "a token of the wrong type",
            vec![("MESH_NATS__TOKEN", format!("[\"{NATS_TOKEN}\"]"))],
        ),
        (
            "a token where its digest belongs",
            vec![(
                "MESH_CONNECTOR_AGENT__IMPORT_TOKEN_SHA256",
                format!("[\"{IMPORT_TOKEN}\"]"),
            )],
        ),
    ];
    let mut leaks = Leaks::default();
    for (what, env) in &cases {
        let (succeeded, output) = migrate_output(env, closed).await;
        assert!(!succeeded, "{what}: meshd migrate succeeded: {output}");
        assert!(!output.trim().is_empty(), "{what}: meshd printed no error");
        leaks.check(&format!("the output of meshd migrate ({what})"), &output);
    }
    assert!(
        leaks.0.is_empty(),
        "{} secret(s) leaked:\n{}",
        leaks.0.len(),
        leaks.0.join("\n")
    );
}
