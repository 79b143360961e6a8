// figment::Jail dictates the closure's error type (figment::Error, which is large).
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::time::Duration;

use figment::Jail;

use super::*;

fn load_err(file: Option<&str>) -> ConfigError {
    match MeshConfig::load(file.map(Path::new)) {
        Ok(config) => panic!("expected an error, loaded {config:?}"),
        Err(e) => e,
    }
}

#[test]
fn defaults_without_file_or_env() {
    Jail::expect_with(|_| {
        let config = MeshConfig::load(None).map_err(|e| e.to_string())?;
        assert_eq!(config.nats.url.expose(), "nats://127.0.0.1:4222");
        assert_eq!(
            config.postgres.url.expose(),
            "postgres://postgres@127.0.0.1:5432/identitymesh"
        );
        assert_eq!(config.admin.listen.to_string(), "0.0.0.0:9464");
        assert_eq!(config.telemetry.log_format, LogFormat::Pretty);
        assert_eq!(config.telemetry.log_filter, "info");
        assert_eq!(config.shutdown.grace_period, Duration::from_secs(30));
        assert_eq!(config.bus.batch_size, 256);
        assert_eq!(config.bus.batch_wait(), Duration::from_millis(5));
        assert_eq!(config.bus.max_deliver, 5);
        Ok(())
    });
}

#[test]
fn file_then_env_override() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "mesh.toml",
            r#"
            [nats]
            url = "nats://nats:4222"
            connect_timeout = "1m30s"

            [bus]
            batch_size = 64
            backoff = ["500ms", 2]

            [telemetry]
            log_format = "json"

            [shutdown]
            grace_period = 10
            "#,
        )?;
        jail.set_env("MESH_BUS__BATCH_SIZE", "128");
        jail.set_env("MESH_POSTGRES__URL", "postgres://mesh:pw@db/identitymesh");
        jail.set_env("MESH_SHUTDOWN__GRACE_PERIOD", "45s");
        jail.set_env("MESH_CONFIG_FILE", "mesh.toml");
        let config = MeshConfig::load(Some(Path::new("mesh.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(config.nats.url.expose(), "nats://nats:4222");
        assert_eq!(config.nats.connect_timeout, Duration::from_secs(90));
        assert_eq!(config.bus.batch_size, 128);
        assert_eq!(
            config.bus.backoff,
            [Duration::from_millis(500), Duration::from_secs(2)]
        );
        assert_eq!(config.telemetry.log_format, LogFormat::Json);
        assert_eq!(config.shutdown.grace_period, Duration::from_secs(45));
        assert_eq!(
            config.postgres.url.expose(),
            "postgres://mesh:pw@db/identitymesh"
        );
        Ok(())
    });
}

#[test]
fn env_list_values() {
    Jail::expect_with(|jail| {
        jail.set_env("MESH_BUS__BACKOFF", r#"["1s", "2s"]"#);
        let config = MeshConfig::load(None).map_err(|e| e.to_string())?;
        assert_eq!(
            config.bus.backoff,
            [Duration::from_secs(1), Duration::from_secs(2)]
        );
        Ok(())
    });
}

#[test]
fn unknown_key_in_file_names_key_file_and_alternatives() {
    Jail::expect_with(|jail| {
        jail.create_file("mesh.toml", "[nats]\nulr = \"nats://x:4222\"\n")?;
        let err = load_err(Some("mesh.toml"));
        let msg = err.to_string();
        assert!(
            msg.starts_with("config: unknown key \"nats.ulr\" in "),
            "{msg}"
        );
        assert!(msg.contains("mesh.toml"), "{msg}");
        assert!(
            msg.contains("expected one of url, credentials_file, nkey_seed_file"),
            "{msg}"
        );
        assert_eq!(err.problems()[0].key, "nats.ulr");
        Ok(())
    });
}

#[test]
fn unknown_section_is_rejected() {
    Jail::expect_with(|jail| {
        jail.create_file("mesh.toml", "[natz]\nurl = \"nats://x:4222\"\n")?;
        let msg = load_err(Some("mesh.toml")).to_string();
        assert!(msg.contains("unknown key \"natz\""), "{msg}");
        assert!(msg.contains("expected one of nats, postgres"), "{msg}");
        Ok(())
    });
}

#[test]
fn wrong_type_from_env_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("MESH_BUS__BATCH_SIZE", "ten");
        let msg = load_err(None).to_string();
        assert_eq!(
            msg,
            "config: invalid type for \"bus.batch_size\" from MESH_BUS__BATCH_SIZE: \
             expected usize, found \"ten\""
        );
        Ok(())
    });
}

#[test]
fn unknown_key_from_env_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("MESH_NATS__ULR", "nats://x:4222");
        let msg = load_err(None).to_string();
        assert!(
            msg.contains("unknown key \"nats.ulr\" in MESH_NATS__ULR"),
            "{msg}"
        );
        Ok(())
    });
}

#[test]
fn wrong_type_in_file_names_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file("mesh.toml", "[bus]\nmax_deliver = \"five\"\n")?;
        let msg = load_err(Some("mesh.toml")).to_string();
        assert!(
            msg.contains("invalid type for \"bus.max_deliver\" from mesh.toml"),
            "{msg}"
        );
        Ok(())
    });
}

#[test]
fn bad_enum_and_duration_values() {
    Jail::expect_with(|jail| {
        jail.set_env("MESH_TELEMETRY__LOG_FORMAT", "xml");
        let msg = load_err(None).to_string();
        assert!(
            msg.contains("\"telemetry.log_format\" from MESH_TELEMETRY__LOG_FORMAT"),
            "{msg}"
        );
        assert!(msg.contains("pretty, json"), "{msg}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("MESH_SHUTDOWN__GRACE_PERIOD", "30 parsecs");
        let msg = load_err(None).to_string();
        assert!(
            msg.contains("\"shutdown.grace_period\" from MESH_SHUTDOWN__GRACE_PERIOD"),
            "{msg}"
        );
        assert!(msg.contains("\"30 parsecs\""), "{msg}");
        Ok(())
    });
}

#[test]
fn missing_file_is_an_error() {
    Jail::expect_with(|_| {
        let err = load_err(Some("nope.toml"));
        assert!(matches!(err, ConfigError::MissingFile { .. }));
        assert_eq!(err.to_string(), "config: file nope.toml does not exist");
        Ok(())
    });
}

#[test]
fn toml_syntax_error_names_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file("mesh.toml", "[nats\nurl = 1\n")?;
        let msg = load_err(Some("mesh.toml")).to_string();
        assert!(msg.starts_with("config: "), "{msg}");
        assert!(msg.contains("mesh.toml"), "{msg}");
        Ok(())
    });
}

#[test]
fn cross_field_checks_name_key_and_origin() {
    Jail::expect_with(|jail| {
        jail.create_file("mesh.toml", "[bus]\nmax_deliver = 2\n")?;
        jail.set_env("MESH_POSTGRES__URL", "mysql://u:hunter2@db/x");
        let err = load_err(Some("mesh.toml"));
        let msg = err.to_string();
        assert!(
            msg.contains("\"postgres.url\" from MESH_POSTGRES__URL"),
            "{msg}"
        );
        assert!(msg.contains("mysql://u:***@db/x"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("\"bus.backoff\""), "{msg}");
        assert_eq!(err.problems().len(), 2);
        Ok(())
    });
}

#[test]
fn secret_values_are_not_echoed_in_errors() {
    Jail::expect_with(|jail| {
        jail.set_env("MESH_NATS__TOKEN", "[1234]");
        let msg = load_err(None).to_string();
        assert!(msg.contains("\"nats.token\""), "{msg}");
        assert!(!msg.contains("1234"), "{msg}");
        Ok(())
    });
}

#[test]
fn debug_of_config_redacts_secrets() {
    Jail::expect_with(|jail| {
        jail.set_env(
            "MESH_POSTGRES__URL",
            "postgres://mesh:hunter2@db/identitymesh",
        );
        jail.set_env("MESH_REDIS__URL", "redis://:hunter3@cache:6379");
        jail.set_env("MESH_NATS__TOKEN", "hunter4");
        let config = MeshConfig::load(None).map_err(|e| e.to_string())?;
        let debug = format!("{config:?}");
        for secret in ["hunter2", "hunter3", "hunter4"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(
            debug.contains("postgres://mesh:***@db/identitymesh"),
            "{debug}"
        );
        assert_eq!(
            config.nats.token.as_ref().map(|t| t.expose().as_str()),
            Some("hunter4")
        );
        Ok(())
    });
}

#[test]
fn env_var_names() {
    assert_eq!(env_var_for("bus.batch_size"), "MESH_BUS__BATCH_SIZE");
    assert_eq!(env_var_for("nats.url"), "MESH_NATS__URL");
}

#[test]
fn connector_agent_rate_limit_defaults_off_switch_and_burst_check() {
    Jail::expect_with(|jail| {
        let config = MeshConfig::load(None).map_err(|e| e.to_string())?;
        assert_eq!(config.connector_agent.rate_limit_per_second, 1000);
        assert_eq!(config.connector_agent.rate_limit_burst, 2000);

        jail.set_env("MESH_CONNECTOR_AGENT__RATE_LIMIT_PER_SECOND", "0");
        jail.set_env("MESH_CONNECTOR_AGENT__RATE_LIMIT_BURST", "0");
        let config = MeshConfig::load(None).map_err(|e| e.to_string())?;
        assert_eq!(config.connector_agent.rate_limit_per_second, 0);

        jail.set_env("MESH_CONNECTOR_AGENT__RATE_LIMIT_PER_SECOND", "5");
        let msg = load_err(None).to_string();
        assert!(
            msg.contains("\"connector_agent.rate_limit_burst\""),
            "{msg}"
        );
        Ok(())
    });
}

#[test]
fn postgres_min_connections_from_env_and_at_most_the_pool_size() {
    Jail::expect_with(|jail| {
        let config = MeshConfig::load(None).map_err(|e| e.to_string())?;
        assert_eq!(config.postgres.min_connections, 0);
        jail.set_env("MESH_POSTGRES__MIN_CONNECTIONS", "10");
        let config = MeshConfig::load(None).map_err(|e| e.to_string())?;
        assert_eq!(config.postgres.min_connections, 10);
        jail.set_env("MESH_POSTGRES__MIN_CONNECTIONS", "11");
        let message = load_err(None).to_string();
        assert!(
            message.contains("postgres.min_connections")
                && message.contains("must be at most postgres.max_connections (10)"),
            "{message}"
        );
        Ok(())
    });
}
