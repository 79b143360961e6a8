//! The deployment files checked against this build of meshd. Docker and Helm do not run in CI,
//! so everything they would only find out at `docker compose up` or `helm install` is checked
//! here instead, from the files as committed:
//!
//! - every meshd TOML we ship (compose, kustomize) and the config the chart renders from its
//!   values (default and `ci/`) loads with [`MeshConfig::load`];
//! - every `MESH_*` variable set by docker-compose.yml, the chart or the kustomize base is a key
//!   meshd accepts, checked by running the real binary with it (`meshd run <no such service>`
//!   loads the configuration, then stops at the unknown service: exit 1 means the
//!   configuration was accepted, exit 2 names the key it refused);
//! - every command they run exists (`meshd run <service>` resolves, subcommands exist), every
//!   service meshd can run has its compose container, Prometheus target and chart entry;
//! - ports and probe paths agree with the config and the admin server's routes (admin, the
//!   connector agent's SCIM port, the gRPC ports of the risk and query services: Dockerfile
//!   EXPOSE, compose, chart values and templates, kustomize, network policies); a gRPC port
//!   compose publishes without a bearer token configured is on the loopback only; the risk
//!   container waits for a healthy Redis;
//! - values.yaml (and each `ci/` file merged over it) validates against values.schema.json, and
//!   bad values are refused; every `.Values` path a template reads is declared in the schema;
//!   the commented `networkPolicy.egress.provisioningTargets` example validates and matches the
//!   ci/ overlay's;
//! - docs/operations.md has a runbook section for every alert;
//! - every YAML and JSON file parses, the chart's copies of the alerts and the dashboard are
//!   identical to deploy/'s, and every metric the dashboard and the alerts query is one meshd
//!   exports or one in the documented contract of a service still to land.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mesh_runtime::admin::{AdminServer, Readiness};
use mesh_runtime::config::MeshConfig;
use mesh_runtime::metrics::{MetricKind, MetricsRegistry, names};
use mesh_runtime::shutdown::Shutdown;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Metrics the dashboard and alerts use that services still to land must export, with these
/// names (docs/observability.md, "Metric contract"). A name moves out of this list when its
/// service adds it to crates/mesh-runtime/src/metrics/names.rs.
const CONTRACT_METRICS: &[&str] = &["mesh_connector_hr_extracts_held"];

/// A service name meshd does not know: `meshd run` loads the configuration, then refuses it.
const NO_SUCH_SERVICE: &str = "deploy-configs-check";

const CHART: &str = "helm/identity-mesh";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

fn files_under(rel: &str, extensions: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![rel.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(root().join(&dir)).unwrap_or_else(|e| panic!("listing {dir}: {e}"));
        for entry in entries {
            let entry = entry.unwrap();
            let name = format!("{dir}/{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                stack.push(name);
            } else if extensions.iter().any(|ext| name.ends_with(ext)) {
                out.push(name);
            }
        }
    }
    out.sort();
    out
}

/// A meshd service with its own gRPC listener (plaintext HTTP/2, health and reflection), which
/// every deployment gives its own port: `<name>.listen` in the config, `services.<name>.port`
/// in the chart.
struct GrpcService {
    /// The service (`meshd run <name>`) and its config section.
    name: &'static str,
    /// The name of its port in the chart's and the kustomize base's Deployments, Services and
    /// NetworkPolicies (`grpc` stayed the risk service's when the query service got its own).
    port_name: &'static str,
    /// Its `<name>.listen`.
    listen: fn(&MeshConfig) -> SocketAddr,
    /// Its `<name>.token_sha256`: empty, any caller is let in.
    tokens: fn(&MeshConfig) -> &[String],
}

const GRPC_SERVICES: &[GrpcService] = &[
    GrpcService {
        name: "risk",
        port_name: "grpc",
        listen: |c| c.risk.listen,
        tokens: |c| c.risk.token_sha256.as_slice(),
    },
    GrpcService {
        name: "query",
        port_name: "grpc-query",
        listen: |c| c.query.listen,
        tokens: |c| c.query.token_sha256.as_slice(),
    },
];

fn service_names() -> Vec<&'static str> {
    meshd::SERVICES.iter().map(|s| s.name).collect()
}

fn load_config(path: &Path) -> MeshConfig {
    MeshConfig::load(Some(path)).unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()))
}

// --- meshd TOML files ----------------------------------------------------------------------

const SHIPPED_TOML: &[&str] = &[
    "deploy/meshd/meshd.toml",
    "deploy/kustomize/base/meshd.toml",
];

#[test]
fn shipped_meshd_toml_files_load() {
    for rel in SHIPPED_TOML {
        let config = load_config(&root().join(rel));
        assert_eq!(
            config.admin.listen.port(),
            9464,
            "{rel}: the image's EXPOSE/HEALTHCHECK, the probes and the scrape targets use 9464"
        );
        assert_eq!(
            config.connector_agent.listen.port(),
            8080,
            "{rel}: SCIM port"
        );
        for (grpc, port) in GRPC_SERVICES.iter().zip([50052, 50051]) {
            assert_eq!(
                (grpc.listen)(&config).port(),
                port,
                "{rel}: the {} service's gRPC port (EXPOSE, compose, chart, kustomize use {port})",
                grpc.name
            );
        }
        assert!(
            config.shutdown.grace_period < Duration::from_secs(30),
            "{rel}: shutdown.grace_period must stay below the 30s stop/termination grace"
        );
    }
}

// --- Helm values -> meshd.toml ---------------------------------------------------------------

/// values.yaml with `overlay` merged over it, as Helm merges `-f` files: maps deeply, anything
/// else replaced.
fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

fn chart_values(overlay: Option<&str>) -> Value {
    let mut values = yaml(&format!("{CHART}/values.yaml"));
    if let Some(rel) = overlay {
        merge(&mut values, &yaml(rel));
    }
    values
}

fn chart_ci_files() -> Vec<String> {
    files_under(&format!("{CHART}/ci"), &[".yaml"])
}

/// One TOML value written by the chart's `identity-mesh.tomlValue` template, by the same rules:
/// Helm holds every number as a float64, and the template writes whole ones as integers;
/// strings as JSON strings; maps as inline tables with quoted keys; nulls left out.
fn toml_value(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{} = {}", Value::String(k.clone()), toml_value(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        Value::String(_) => value.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            let f = n.as_f64().unwrap();
            if f.fract() == 0.0 {
                format!("{}", f as i64)
            } else {
                format!("{f}")
            }
        }
        Value::Null => unreachable!("nulls are filtered"),
    }
}

/// What `identity-mesh.configToml` renders: `.Values.config` plus the chart-owned keys.
fn chart_config_toml(values: &Value) -> String {
    let mut config = values["config"].as_object().cloned().unwrap_or_default();
    let section = |config: &mut Map<String, Value>, name: &str| {
        config
            .entry(name)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap()
            .clone()
    };
    let mut admin = section(&mut config, "admin");
    admin.insert(
        "listen".into(),
        json!(format!("0.0.0.0:{}", values["adminPort"])),
    );
    config.insert("admin".into(), Value::Object(admin));
    let mut agent = section(&mut config, "connector_agent");
    let scim_port = values["services"]["connector-agent"]["port"]
        .as_u64()
        .unwrap_or(8080);
    agent.insert("listen".into(), json!(format!("0.0.0.0:{scim_port}")));
    config.insert("connector_agent".into(), Value::Object(agent));
    for grpc in GRPC_SERVICES {
        let mut listen = section(&mut config, grpc.name);
        let port = values["services"][grpc.name]["port"]
            .as_u64()
            .unwrap_or_else(|| u64::from((grpc.listen)(&MeshConfig::default()).port()));
        listen.insert("listen".into(), json!(format!("0.0.0.0:{port}")));
        config.insert(grpc.name.into(), Value::Object(listen));
    }
    let creds = &values["secrets"]["natsCredentials"];
    if creds["name"].as_str().is_some_and(|n| !n.is_empty()) {
        let mut nats = section(&mut config, "nats");
        let path = format!("/etc/identity-mesh/nats/{}", creds["key"].as_str().unwrap());
        nats.insert("credentials_file".into(), json!(path));
        config.insert("nats".into(), Value::Object(nats));
    }
    let mut out = String::from("# rendered as by the identity-mesh chart\n");
    for (section, keys) in &config {
        let keys = keys.as_object().expect("config sections are maps");
        if keys.is_empty() {
            continue;
        }
        out.push_str(&format!("\n[{section}]\n"));
        for (key, value) in keys.iter().filter(|(_, v)| !v.is_null()) {
            out.push_str(&format!("{key} = {}\n", toml_value(value)));
        }
    }
    out
}

#[test]
fn chart_values_render_a_config_meshd_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = vec![(format!("{CHART}/values.yaml"), chart_values(None))];
    for ci in chart_ci_files() {
        let values = chart_values(Some(&ci));
        cases.push((ci, values));
    }
    for (name, values) in cases {
        let toml = chart_config_toml(&values);
        let path = dir.path().join("meshd.toml");
        std::fs::write(&path, &toml).unwrap();
        let config = MeshConfig::load(Some(&path))
            .unwrap_or_else(|e| panic!("{name}: the rendered config does not load: {e}\n{toml}"));
        assert_eq!(
            u64::from(config.admin.listen.port()),
            values["adminPort"].as_u64().unwrap(),
            "{name}"
        );
        for grpc in GRPC_SERVICES {
            let service = grpc.name;
            assert_eq!(
                u64::from((grpc.listen)(&config).port()),
                values["services"][service]["port"].as_u64().unwrap(),
                "{name}: {service}.listen is rendered from services.{service}.port"
            );
        }
        let grace = values["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            config.shutdown.grace_period < Duration::from_secs(grace),
            "{name}: shutdown.grace_period must be below terminationGracePeriodSeconds"
        );
    }
}

// --- values.schema.json ----------------------------------------------------------------------

/// Validates `value` against the JSON Schema subset values.schema.json uses; a keyword outside
/// the subset fails the test rather than being ignored.
fn validate(
    schema: &Value,
    root_schema: &Value,
    value: &Value,
    at: &str,
    errors: &mut Vec<String>,
) {
    let Some(schema) = schema.as_object() else {
        if schema == &Value::Bool(false) {
            errors.push(format!("{at}: not allowed"));
        }
        return;
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
        return validate(
            &root_schema["definitions"][name],
            root_schema,
            value,
            at,
            errors,
        );
    }
    for keyword in schema.keys() {
        const KNOWN: &[&str] = &[
            "$schema",
            "title",
            "description",
            "default",
            "definitions",
            "type",
            "properties",
            "additionalProperties",
            "required",
            "enum",
            "pattern",
            "minimum",
            "maximum",
            "minLength",
            "maxLength",
            "minItems",
            "items",
            "anyOf",
            "propertyNames",
        ];
        assert!(
            KNOWN.contains(&keyword.as_str()),
            "schema keyword {keyword} at {at} is not checked by this test"
        );
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => panic!("bad type at {at}"),
        };
        let is = |t: &str| match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "number" => value.is_number(),
            "integer" => value.as_f64().is_some_and(|f| f.fract() == 0.0),
            "null" => value.is_null(),
            other => panic!("unknown type {other}"),
        };
        if !types.iter().any(|t| is(t)) {
            errors.push(format!("{at}: expected {types:?}, found {value}"));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {options:?}"));
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let ok = any.iter().any(|s| {
            let mut e = Vec::new();
            validate(s, root_schema, value, at, &mut e);
            e.is_empty()
        });
        if !ok {
            errors.push(format!("{at}: {value} matches none of anyOf"));
        }
    }
    if let Some(s) = value.as_str() {
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && !regex::Regex::new(pattern).unwrap().is_match(s)
        {
            errors.push(format!("{at}: {s:?} does not match {pattern}"));
        }
        let len = s.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
        {
            errors.push(format!("{at}: {s:?} is too short"));
        }
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len > m)
        {
            errors.push(format!("{at}: {s:?} is too long"));
        }
    }
    if let Some(n) = value.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            errors.push(format!("{at}: {n} is below the minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            errors.push(format!("{at}: {n} is above the maximum"));
        }
    }
    if let Some(items) = value.as_array() {
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| (items.len() as u64) < m)
        {
            errors.push(format!("{at}: too few items"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(
                    item_schema,
                    root_schema,
                    item,
                    &format!("{at}[{i}]"),
                    errors,
                );
            }
        }
    }
    if let Some(map) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !map.contains_key(required.as_str().unwrap()) {
                errors.push(format!("{at}: missing {required}"));
            }
        }
        for (key, item) in map {
            let here = format!("{at}.{key}");
            if let Some(names) = schema.get("propertyNames") {
                validate(
                    names,
                    root_schema,
                    &Value::String(key.clone()),
                    &here,
                    errors,
                );
            }
            match properties.and_then(|p| p.get(key)) {
                Some(s) => validate(s, root_schema, item, &here, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{here}: unknown key")),
                    Some(s @ Value::Object(_)) => validate(s, root_schema, item, &here, errors),
                    _ => {}
                },
            }
        }
    }
}

fn schema_errors(values: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(&read(&format!("{CHART}/values.schema.json")))
        .expect("values.schema.json is valid JSON");
    let mut errors = Vec::new();
    validate(&schema, &schema, values, "values", &mut errors);
    errors
}

#[test]
fn chart_values_match_the_schema() {
    assert_eq!(
        schema_errors(&chart_values(None)),
        Vec::<String>::new(),
        "values.yaml"
    );
    for ci in chart_ci_files() {
        assert_eq!(
            schema_errors(&chart_values(Some(&ci))),
            Vec::<String>::new(),
            "{ci}"
        );
    }
    // The schema refuses what meshd or the templates would refuse later.
    let bad = [
        ("mode", json!("hybrid")),
        ("config", json!({"nats": {"ulr": "nats://x:4222"}})),
        ("config", json!({"bus": {"batch_size": 0}})),
        ("config", json!({"bus": {"ack_wait": "thirty seconds"}})),
        ("config", json!({"postgres": {"url": "mysql://db/x"}})),
        ("config", json!({"admin": {"listen": "0.0.0.0:1"}})),
        (
            "config",
            json!({"connector_agent": {"rate_limit_per_second": -1}}),
        ),
        (
            "config",
            json!({"connector_agent": {"rate_limit_burst": 0}}),
        ),
        // The chart owns risk.listen (services.risk.port); meshd refuses what follows.
        ("config", json!({"risk": {"listen": "0.0.0.0:1"}})),
        ("config", json!({"risk": {"audit_allow_sample": 2}})),
        (
            "config",
            json!({"risk": {"token_sha256": ["not-a-digest"]}}),
        ),
        ("config", json!({"risk": {"redis_timeout": "fast"}})),
        ("services", json!({"risk": {"port": 0}})),
        // Likewise query.listen (services.query.port).
        ("config", json!({"query": {"listen": "0.0.0.0:1"}})),
        (
            "config",
            json!({"query": {"token_sha256": ["not-a-digest"]}}),
        ),
        ("config", json!({"query": {"max_page_size": 0}})),
        ("config", json!({"query": {"default_page_size": "many"}})),
        ("services", json!({"query": {"port": 70000}})),
        (
            "services",
            json!({"corelation": {"enabled": true, "replicas": 1}}),
        ),
        ("adminPort", json!(70000)),
        ("secrets", json!({"postgresUrl": {"name": "x", "key": ""}})),
        // NetworkPolicyEgressRules: `port` belongs in `ports`, protocols are Kubernetes'.
        (
            "networkPolicy",
            json!({"egress": {"provisioningTargets": [{"to": [], "port": 443}]}}),
        ),
        (
            "networkPolicy",
            json!({"egress": {"provisioningTargets": [{"ports": [{"port": 636, "protocol": "LDAPS"}]}]}}),
        ),
        (
            "networkPolicy",
            json!({"egress": {"to": [{"to": [{"ipBlock": {"except": ["10.0.0.0/8"]}}]}]}}),
        ),
        (
            "networkPolicy",
            json!({"egress": {"provisioningTargets": {"scim": {"ports": [{"port": 443}]}}}}),
        ),
        (
            "networkPolicy",
            json!({"queryFrom": [{"namespaceSelectr": {}}]}),
        ),
    ];
    for (key, value) in bad {
        let mut values = chart_values(None);
        merge(&mut values, &json!({ key: value }));
        assert!(
            !schema_errors(&values).is_empty(),
            "the schema accepts {key}: {value}"
        );
    }
}

/// The example values.yaml gives in comments under `networkPolicy.egress.provisioningTargets`,
/// uncommented: the lines after the key that start with `    #  `.
fn provisioning_targets_example() -> Value {
    let values = read(&format!("{CHART}/values.yaml"));
    let mut lines = values
        .lines()
        .skip_while(|l| l.trim() != "provisioningTargets: []")
        .skip(1)
        .map_while(|l| l.strip_prefix("    #  "))
        .peekable();
    assert!(
        lines.peek().is_some(),
        "values.yaml has no commented example under networkPolicy.egress.provisioningTargets"
    );
    let example = lines.collect::<Vec<_>>().join("\n");
    serde_saphyr::from_str(&example)
        .unwrap_or_else(|e| panic!("the provisioningTargets example is not YAML: {e}\n{example}"))
}

#[test]
fn provisioning_targets_example_is_valid_and_tested() {
    // The documented example must be what the schema accepts, and the ci/ overlay (which
    // chart-testing renders) carries the same rules, so both stay in step.
    let example = provisioning_targets_example();
    let rules = example
        .as_array()
        .expect("a list of NetworkPolicyEgressRules");
    assert!(
        rules.len() >= 3,
        "the example shows SCIM, PostgreSQL and LDAP"
    );
    let ports: BTreeSet<u64> = rules
        .iter()
        .flat_map(|r| r["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_u64())
        .collect();
    for port in [443, 5432, 389, 636] {
        assert!(
            ports.contains(&port),
            "the example has no rule for port {port}"
        );
    }
    let mut values = chart_values(None);
    merge(
        &mut values,
        &json!({"networkPolicy": {"enabled": true, "egress": {"restrict": true,
            "provisioningTargets": example.clone()}}}),
    );
    assert_eq!(schema_errors(&values), Vec::<String>::new());
    let ci = chart_values(Some(&format!("{CHART}/ci/microservices-values.yaml")));
    assert_eq!(
        ci["networkPolicy"]["egress"]["provisioningTargets"], example,
        "ci/microservices-values.yaml's provisioningTargets differ from values.yaml's example"
    );
    // The policy selects the pods that run the provisioning agent, by the component names the
    // workloads helper gives them: the service's own name and the monolith's.
    assert!(service_names().contains(&"provisioning-agent"));
    let policy = read(&format!("{CHART}/templates/networkpolicy.yaml"));
    assert!(
        policy.contains(r#"(list "mesh" "provisioning-agent")"#)
            && policy.contains(".Values.networkPolicy.egress.provisioningTargets"),
        "networkpolicy.yaml no longer renders provisioningTargets for the provisioning agent's pods"
    );
}

/// Follows `path` (`networkPolicy.egress.to`) through the schema; `Err` names the first key
/// the schema does not declare where it declares the keys of a map.
fn schema_declares(root_schema: &Value, path: &[&str]) -> Result<(), String> {
    let mut node = root_schema;
    for (i, key) in path.iter().enumerate() {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let name = reference.strip_prefix("#/definitions/").unwrap();
            node = &root_schema["definitions"][name];
        }
        match node.get("properties").and_then(|p| p.get(*key)) {
            Some(next) => node = next,
            None => match node.get("additionalProperties") {
                Some(Value::Bool(false)) => return Err(path[..=i].join(".")),
                Some(next @ Value::Object(_)) => node = next,
                // A free-form object: anything below is the user's.
                _ => return Ok(()),
            },
        }
    }
    Ok(())
}

#[test]
fn template_value_paths_are_declared_in_the_schema() {
    // A template reading a key the schema does not declare reads something no user can set
    // (the schema refuses it): a typo, or a key added to the templates but not to the schema.
    let schema: Value =
        serde_json::from_str(&read(&format!("{CHART}/values.schema.json"))).unwrap();
    let reference = regex::Regex::new(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)").unwrap();
    let mut undeclared = BTreeSet::new();
    let mut seen = 0;
    for rel in files_under(&format!("{CHART}/templates"), &[".yaml", ".tpl", ".txt"]) {
        for capture in reference.captures_iter(&read(&rel)) {
            seen += 1;
            let path: Vec<&str> = capture[1].trim_start_matches('.').split('.').collect();
            if let Err(key) = schema_declares(&schema, &path) {
                undeclared.insert(format!("{rel}: .Values.{key}"));
            }
        }
    }
    assert!(seen > 50, "found only {seen} .Values references");
    assert_eq!(undeclared, BTreeSet::new());
}

#[test]
fn every_alert_has_a_runbook() {
    // docs/operations.md has a section per alert: what it means and what to do.
    let runbooks = read("docs/operations.md");
    let headings: BTreeSet<&str> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.trim().trim_matches('`'))
        .collect();
    let mut missing = Vec::new();
    for group in yaml("deploy/prometheus/alerts.yml")["groups"]
        .as_array()
        .unwrap()
    {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            if !headings.contains(name) {
                missing.push(name.to_owned());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/operations.md has no `### <alert>` section for {missing:?}"
    );
}

// --- YAML, JSON, copies, metric names ------------------------------------------------------

#[test]
fn yaml_and_json_files_parse_and_chart_copies_match() {
    let mut yaml_files = vec!["docker-compose.yml".to_owned()];
    yaml_files.extend(files_under("deploy", &[".yaml", ".yml"]));
    // Templates are Go templates, not YAML; everything else in the chart is YAML.
    yaml_files.extend(
        files_under(CHART, &[".yaml", ".yml"])
            .into_iter()
            .filter(|f| !f.contains("/templates/")),
    );
    for rel in &yaml_files {
        let value = yaml(rel);
        assert!(value.is_object(), "{rel}: expected a mapping at the top");
    }
    for rel in files_under("deploy", &[".json"])
        .iter()
        .chain(&files_under(CHART, &[".json"]))
    {
        serde_json::from_str::<Value>(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
    assert_eq!(
        read(&format!("{CHART}/files/alerts.yml")),
        read("deploy/prometheus/alerts.yml"),
        "copy deploy/prometheus/alerts.yml to {CHART}/files/alerts.yml"
    );
    assert_eq!(
        read(&format!("{CHART}/files/identity-mesh.json")),
        read("deploy/grafana/dashboards/identity-mesh.json"),
        "copy deploy/grafana/dashboards/identity-mesh.json to {CHART}/files/"
    );
    // Every alert has the fields Prometheus and Alertmanager routes rely on.
    for group in yaml("deploy/prometheus/alerts.yml")["groups"]
        .as_array()
        .unwrap()
    {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().expect("alerting rules only");
            assert!(rule["expr"].is_string(), "{name}: expr");
            assert!(rule["labels"]["severity"].is_string(), "{name}: severity");
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{name}: summary"
            );
        }
    }
}

/// The `mesh_*` metric names in `text`.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("mesh_") {
        let start = i + pos;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_')
        };
        let end = start
            + text[start..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(text.len() - start);
        // `mesh_bus_*` in a comment names a family, not a metric.
        if boundary && !text[start..end].ends_with('_') {
            out.insert(text[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    out
}

#[test]
fn dashboards_and_alerts_query_metrics_that_exist_or_are_contracted() {
    let mut known: BTreeSet<String> = CONTRACT_METRICS.iter().map(|s| (*s).to_owned()).collect();
    for def in names::ALL {
        match def.kind {
            MetricKind::Counter | MetricKind::Gauge => {
                known.insert(def.exposed_name());
            }
            MetricKind::Histogram => {
                for suffix in ["", "_bucket", "_sum", "_count"] {
                    known.insert(format!("{}{suffix}", def.name));
                }
            }
        }
    }
    let observability = read("docs/observability.md");
    for name in CONTRACT_METRICS {
        assert!(
            observability.contains(name),
            "{name} is used by the dashboard or alerts but not in docs/observability.md's contract"
        );
    }
    for rel in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/dashboards/identity-mesh.json",
    ] {
        let used = metric_names_in(&read(rel));
        assert!(!used.is_empty(), "{rel} queries no mesh_ metric");
        let unknown: Vec<&String> = used.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "{rel} queries metrics meshd does not export and no contract names: {unknown:?}"
        );
    }
    // The core panels and alerts of the issue are there.
    let dashboard = read("deploy/grafana/dashboards/identity-mesh.json");
    for metric in [
        "mesh_bus_messages_consumed_total",
        "mesh_bus_messages_acked_total",
        "mesh_bus_consumer_pending",
        "mesh_bus_batch_duration_seconds_bucket",
        "mesh_bus_messages_dead_lettered_total",
        "mesh_provisioning_exports_total",
        "mesh_risk_decisions_total",
    ] {
        assert!(
            dashboard.contains(metric),
            "the dashboard has no panel on {metric}"
        );
    }
}

// --- commands, services, env vars --------------------------------------------------------------

/// Compose services that run the meshd image (they use the `x-meshd` anchor's build).
fn compose_meshd_services(compose: &Value) -> BTreeMap<String, Value> {
    compose["services"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| s["build"]["dockerfile"] == "deploy/Dockerfile")
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect()
}

fn args_of(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a list of arguments, found {value}"))
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// Checks a meshd command line from a deployment file: the subcommand exists and the services
/// of `run` resolve. Returns the services it runs.
fn check_meshd_args(origin: &str, args: &[String]) -> Vec<String> {
    match args.first().map(String::as_str) {
        Some("migrate") => {
            assert_eq!(args.len(), 1, "{origin}: meshd migrate takes no arguments");
            vec![]
        }
        Some("run") => {
            let services = args[1..].to_vec();
            assert!(!services.is_empty(), "{origin}: meshd run needs services");
            meshd::resolve_services(&services)
                .unwrap_or_else(|e| panic!("{origin}: meshd {}: {e:#}", args.join(" ")));
            services
        }
        other => panic!("{origin}: meshd has no subcommand {other:?}"),
    }
}

#[test]
fn meshd_subcommands_used_by_the_deployments_exist() {
    for subcommand in ["run", "migrate"] {
        let out = Command::new(env!("CARGO_BIN_EXE_meshd"))
            .args([subcommand, "--help"])
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success(), "meshd {subcommand} --help failed");
    }
}

#[test]
fn every_service_has_a_container_a_scrape_target_and_a_chart_entry() {
    let compose = yaml("docker-compose.yml");
    let meshd_services = compose_meshd_services(&compose);
    assert!(
        meshd_services.contains_key("migrate"),
        "compose needs the migrate step"
    );
    let mut run_by_compose = BTreeSet::new();
    for (name, service) in &meshd_services {
        let args = args_of(&service["command"]);
        for s in check_meshd_args(&format!("docker-compose.yml {name}"), &args) {
            run_by_compose.insert(s);
        }
        if args[0] == "run" {
            assert_eq!(
                service["depends_on"]["migrate"]["condition"], "service_completed_successfully",
                "compose {name} must wait for the migration"
            );
            // The risk service keeps its state in Redis (and its /readyz checks it).
            if args[1..].iter().any(|s| s == "risk" || s == "all") {
                assert_eq!(
                    service["depends_on"]["redis"]["condition"], "service_healthy",
                    "compose {name} runs risk: it must wait for Redis to be healthy"
                );
                assert!(
                    compose["services"]["redis"]["healthcheck"]["test"].is_array(),
                    "compose needs a redis service with a healthcheck"
                );
            }
        }
    }
    // Each service meshd can run gets its own container (and `all` goes then).
    for name in service_names() {
        assert!(
            run_by_compose.contains(name),
            "meshd can run {name}: give it a container in docker-compose.yml (`command: [\"run\", \"{name}\"]`), a target in deploy/prometheus/prometheus.yml, and enable it in {CHART}/values.yaml"
        );
    }
    // Every meshd container that serves is scraped.
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    let job = prometheus["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "identity-mesh")
        .expect("the identity-mesh scrape job (the alerts select job=\"identity-mesh\")");
    let scraped: BTreeSet<String> = job["dns_sd_configs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| {
            assert_eq!(d["port"], 9464);
            args_of(&d["names"])
        })
        .collect();
    for (name, service) in &meshd_services {
        if args_of(&service["command"])[0] == "run" {
            assert!(
                scraped.contains(name),
                "prometheus.yml does not scrape compose service {name}"
            );
        }
    }

    // The chart: an entry per service meshd runs, enabled by default exactly when meshd can run
    // it (meshd refuses an unknown name, so a service that has not landed stays disabled).
    let values = chart_values(None);
    let entries = values["services"].as_object().unwrap();
    for name in service_names() {
        assert!(
            entries.contains_key(name),
            "{CHART}/values.yaml has no services.{name}"
        );
    }
    for (name, entry) in entries {
        let enabled = entry["enabled"].as_bool().unwrap();
        assert_eq!(
            enabled,
            service_names().contains(&name.as_str()),
            "{CHART}/values.yaml services.{name}.enabled must be {} (meshd {} run it)",
            !enabled,
            if enabled { "cannot" } else { "can" }
        );
    }

    // Kustomize.
    let deployment = yaml("deploy/kustomize/base/deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    for container in pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pod["containers"].as_array().unwrap())
    {
        check_meshd_args("kustomize deployment", &args_of(&container["args"]));
    }
}

/// Runs meshd with exactly `env` and returns Err(stderr) when it refused the configuration.
fn meshd_accepts_env(env: &[(String, String)]) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(["run", NO_SUCH_SERVICE])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Whatever the deployment sets, do not try to reach a collector from the test.
        .env("OTEL_SDK_DISABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(1) if stderr.contains("unknown service") => Ok(()),
        _ => Err(format!("exit {:?}: {stderr}", out.status.code())),
    }
}

/// Sample values for the variables the chart and kustomize set from Secrets and values.
fn sample_value(name: &str, config_file: &Path) -> String {
    match name {
        "MESH_CONFIG_FILE" => config_file.display().to_string(),
        "MESH_POSTGRES__URL" => "postgres://mesh:secret@db.example:5432/identitymesh".into(),
        "MESH_NATS__URL" => "nats://mesh:secret@nats.example:4222".into(),
        "MESH_NATS__TOKEN" => "s3cret".into(),
        "MESH_REDIS__URL" => "redis://:secret@redis.example:6379".into(),
        "MESH_TELEMETRY__LOG_FORMAT" => "json".into(),
        // The documented shape of the scimEndpoints Secret (values.yaml).
        "MESH_CONNECTOR_AGENT__SCIM" => format!(
            "[{{ connector = \"saas-app\", token_sha256 = [\"{}\"] }}]",
            "de6c1ae695453d3881ce31347f07475f8fd7a894e5a17d1736c3560d6f7ab20e"
        ),
        other => panic!("{other} is set by a deployment file: add a sample value to this test"),
    }
}

/// The `MESH_*` names in a text (chart templates are not YAML).
fn mesh_env_names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (start, _) in text.match_indices("MESH_") {
        if start > 0 {
            let c = text.as_bytes()[start - 1];
            if c.is_ascii_alphanumeric() || c == b'_' {
                continue; // IDENTITY_MESH_IMAGE and the like
            }
        }
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |e| start + e);
        if end > start + "MESH_".len() {
            out.insert(text[start..end].to_owned()); // not the bare prefix of "MESH_*"
        }
    }
    out
}

#[test]
fn compose_environment_is_accepted_by_meshd() {
    let compose = yaml("docker-compose.yml");
    for (name, service) in compose_meshd_services(&compose) {
        let environment = service["environment"]
            .as_object()
            .unwrap_or_else(|| panic!("compose {name}: environment as a map"));
        let mut env = Vec::new();
        for (key, value) in environment {
            let mut value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if key == "MESH_CONFIG_FILE" {
                // The container path, through the service's volumes, to the file in the repo.
                let mount = args_of(&service["volumes"])
                    .into_iter()
                    .find_map(|v| {
                        let parts: Vec<&str> = v.split(':').collect();
                        (parts.get(1) == Some(&value.as_str())).then(|| parts[0].to_owned())
                    })
                    .unwrap_or_else(|| panic!("compose {name}: {value} is not mounted"));
                value = root().join(mount).display().to_string();
            }
            env.push((key.clone(), value));
        }
        assert!(
            env.iter().any(|(k, _)| k == "MESH_CONFIG_FILE"),
            "compose {name}"
        );
        if let Err(e) = meshd_accepts_env(&env) {
            panic!("meshd refuses the environment of compose service {name}: {e}");
        }
        // The healthcheck probes the admin port this configuration listens on.
        let config_path = &env.iter().find(|(k, _)| k == "MESH_CONFIG_FILE").unwrap().1;
        let port = load_config(Path::new(config_path)).admin.listen.port();
        if let Some(test) = service["healthcheck"]["test"].as_array() {
            let url = test
                .iter()
                .filter_map(Value::as_str)
                .find(|a| a.starts_with("http://"));
            let url = url.unwrap_or_else(|| panic!("compose {name}: healthcheck URL"));
            assert!(
                url == format!("http://127.0.0.1:{port}/readyz")
                    || url == format!("http://127.0.0.1:{port}/healthz"),
                "compose {name}: healthcheck {url} does not probe the admin port {port}"
            );
        }
    }
}

#[test]
fn chart_and_kustomize_env_vars_are_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("meshd.toml");
    std::fs::write(&config_file, chart_config_toml(&chart_values(None))).unwrap();

    let mut names = BTreeSet::new();
    for rel in files_under(&format!("{CHART}/templates"), &[".yaml", ".tpl", ".txt"]) {
        names.extend(mesh_env_names_in(&read(&rel)));
    }
    names.extend(mesh_env_names_in(&read(&format!("{CHART}/values.yaml"))));
    names.extend(mesh_env_names_in(&read(
        "deploy/kustomize/base/deployment.yaml",
    )));
    assert!(names.contains("MESH_POSTGRES__URL"), "{names:?}");
    for name in &names {
        let mut env = vec![(name.clone(), sample_value(name, &config_file))];
        if name != "MESH_CONFIG_FILE" {
            env.push(("MESH_CONFIG_FILE".into(), config_file.display().to_string()));
        }
        if let Err(e) = meshd_accepts_env(&env) {
            panic!("{name}, set by the chart or kustomize, is refused by meshd: {e}");
        }
    }
}

// --- ports and probe paths -----------------------------------------------------------------

#[test]
fn image_ports_and_probes_match_the_config_defaults() {
    let defaults = MeshConfig::default();
    let admin = defaults.admin.listen.port();
    let scim = defaults.connector_agent.listen.port();
    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile.contains(&format!("EXPOSE {admin}")),
        "Dockerfile EXPOSE {admin}"
    );
    assert!(
        dockerfile.contains(&format!("EXPOSE {scim}")),
        "Dockerfile EXPOSE {scim}"
    );
    for grpc in GRPC_SERVICES {
        let port = (grpc.listen)(&defaults).port();
        assert!(
            dockerfile.contains(&format!("EXPOSE {port}")),
            "Dockerfile EXPOSE {port} (the {} service's gRPC port)",
            grpc.name
        );
        assert_eq!(
            chart_values(None)["services"][grpc.name]["port"],
            json!(port),
            "{CHART}/values.yaml services.{0}.port is the default {0}.listen port",
            grpc.name
        );
    }
    assert!(
        dockerfile.contains(&format!("\"http://127.0.0.1:{admin}/healthz\"")),
        "the Dockerfile HEALTHCHECK probes /healthz on the default admin port"
    );
    assert!(dockerfile.contains("cargo build --release --locked -p meshd -p meshctl"));
    assert_eq!(chart_values(None)["adminPort"], json!(admin));
    assert_eq!(
        chart_values(None)["services"]["connector-agent"]["port"],
        json!(scim)
    );

    let deployment = read(&format!("{CHART}/templates/deployment.yaml"));
    for probe in ["path: /healthz", "path: /readyz"] {
        assert!(deployment.contains(probe), "chart deployment lacks {probe}");
    }
    // The probes stay on the admin port; the pods of each gRPC service (and the monolith's, all
    // of them) get its own port, in the Deployment, the Service and the NetworkPolicy.
    assert!(
        !deployment.contains("port: grpc"),
        "probes go to the admin port"
    );
    check_chart_grpc_helpers();
    for template in ["deployment.yaml", "service.yaml"] {
        let text = read(&format!("{CHART}/templates/{template}"));
        assert!(
            text.contains("{{- range $g := $w.grpc }}")
                && text.contains(r#"include "identity-mesh.grpcPortName" $g"#)
                && text.contains(
                    r#"include "identity-mesh.grpcPort" (dict "root" $root "service" $g)"#
                ),
            "{template} does not expose a port for each gRPC service of the workload"
        );
    }
    let policy = read(&format!("{CHART}/templates/networkpolicy.yaml"));
    for (grpc, from) in GRPC_SERVICES.iter().zip(["grpcFrom", "queryFrom"]) {
        assert!(
            policy.contains(&format!(
                r#"- port: {{{{ include "identity-mesh.grpcPortName" "{}" }}}}"#,
                grpc.name
            )) && policy.contains(&format!("$np.{from}")),
            "networkpolicy.yaml has no ingress rule for the {} service's gRPC port from \
             networkPolicy.{from}",
            grpc.name
        );
    }

    // Compose publishes each gRPC service's port as configured in its meshd.toml, on the
    // loopback only while no bearer token is configured.
    let compose = yaml("docker-compose.yml");
    let compose_config = load_config(&root().join("deploy/meshd/meshd.toml"));
    for grpc in GRPC_SERVICES {
        let port = (grpc.listen)(&compose_config).port();
        let published = args_of(&compose["services"][grpc.name]["ports"]);
        let mapping = published
            .iter()
            .find(|p| p.ends_with(&format!(":{port}")))
            .unwrap_or_else(|| {
                panic!(
                    "compose {} publishes {published:?}, not {}.listen's port {port}",
                    grpc.name, grpc.name
                )
            });
        if (grpc.tokens)(&compose_config).is_empty() {
            assert!(
                mapping.starts_with("127.0.0.1:"),
                "compose {} publishes {mapping} beyond the loopback, and {}.token_sha256 is \
                 empty: anyone who reaches the host could call it",
                grpc.name,
                grpc.name
            );
        }
    }
    let kustomize = yaml("deploy/kustomize/base/deployment.yaml");
    let container = &kustomize["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let kustomize_config = load_config(&root().join("deploy/kustomize/base/meshd.toml"));
    let ports: BTreeMap<String, u64> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports["admin"],
        u64::from(kustomize_config.admin.listen.port())
    );
    assert_eq!(
        ports["scim"],
        u64::from(kustomize_config.connector_agent.listen.port())
    );
    // `run all` includes every gRPC service: each has its port in the Deployment, the Service
    // and the NetworkPolicy.
    let service = yaml("deploy/kustomize/base/service.yaml");
    let policy = yaml("deploy/kustomize/base/networkpolicy.yaml");
    for grpc in GRPC_SERVICES {
        let name = grpc.port_name;
        assert_eq!(
            ports.get(name).copied(),
            Some(u64::from((grpc.listen)(&kustomize_config).port())),
            "the kustomize Deployment's {name} port is not {}.listen's",
            grpc.name
        );
        assert!(
            service["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == name
                    && p["port"] == json!(ports[name])
                    && p["targetPort"] == name),
            "the kustomize Service has no {name} port {}",
            ports[name]
        );
        assert!(
            policy["spec"]["ingress"]
                .as_array()
                .unwrap()
                .iter()
                .any(|rule| rule["ports"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["port"] == name))),
            "the kustomize NetworkPolicy has no ingress rule for the {name} port"
        );
    }
}

/// The chart's table of gRPC services (`identity-mesh.grpcServices` in _helpers.tpl, plain
/// YAML) names exactly [`GRPC_SERVICES`], with their port names and meshd's default ports, and
/// the workloads helper gives the monolith all of them and a service's Deployment its own.
fn check_chart_grpc_helpers() {
    let helpers = read(&format!("{CHART}/templates/_helpers.tpl"));
    let table = helpers
        .split_once(r#"{{- define "identity-mesh.grpcServices" -}}"#)
        .and_then(|(_, rest)| rest.split_once("{{- end }}"))
        .map(|(table, _)| table)
        .expect("_helpers.tpl defines identity-mesh.grpcServices");
    let table: Value = serde_saphyr::from_str(table)
        .unwrap_or_else(|e| panic!("identity-mesh.grpcServices is not YAML: {e}\n{table}"));
    let defaults = MeshConfig::default();
    let expected: Map<String, Value> = GRPC_SERVICES
        .iter()
        .map(|g| {
            let entry = &table[g.name];
            assert_eq!(
                entry["portName"], g.port_name,
                "identity-mesh.grpcServices {}",
                g.name
            );
            assert_eq!(
                entry["port"],
                json!((g.listen)(&defaults).port()),
                "identity-mesh.grpcServices {}: the default of {}.listen",
                g.name,
                g.name
            );
            (g.name.to_owned(), entry.clone())
        })
        .collect();
    assert_eq!(
        table,
        Value::Object(expected),
        "identity-mesh.grpcServices lists a service this test does not know: add it to \
         GRPC_SERVICES"
    );
    for line in [
        "grpc: {{ keys $grpc | sortAlpha | toJson }}",
        "grpc: {{ ternary (list $name) (list) (hasKey $grpc $name) | toJson }}",
    ] {
        assert!(
            helpers.contains(line),
            "the workloads helper no longer gives each pod the gRPC ports of the services it \
             runs ({line})"
        );
    }
}

async fn get_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The probe and scrape paths the deployments use are routes of meshd's admin server.
#[tokio::test]
async fn probe_and_scrape_paths_are_admin_routes() {
    let server = AdminServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Readiness::new(Duration::from_secs(1)),
        MetricsRegistry::new(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run_until_stopped(shutdown.clone()));
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get_status(addr, path).await, 200, "{path}");
    }
    assert_eq!(get_status(addr, "/no-such-path").await, 404);
    task.abort();
}
