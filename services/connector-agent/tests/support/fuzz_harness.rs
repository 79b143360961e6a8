// The bodies of the connector agent's fuzz targets (fuzz/fuzz_targets/scim_*.rs, hr_csv.rs),
// shared through `include!` with the regression test that replays their inputs
// (tests/fuzz_inputs.rs), so the two never drift. Each must never panic: a bad input is an
// error value (a SCIM error with its scimType, a malformed HR row with its line), nothing else.

use connector_agent::scim::schema::RESOURCE_TYPES;
use connector_agent::scim::{filter, patch, resource};
use serde_json::{Map, Value as Json};

/// A stored User to match filters and apply patches against.
fn sample() -> Map<String, Json> {
    let user = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ada",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
        "active": true,
    });
    match user {
        Json::Object(map) => map,
        _ => Map::new(),
    }
}

/// A SCIM filter (RFC 7644 §3.4.2.2): parsed, resolved against every resource type, and
/// matched against a User.
pub fn scim_filter(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(parsed) = filter::parse(&text) else {
        return;
    };
    let object = sample();
    for rt in RESOURCE_TYPES {
        if let Ok(expr) = filter::resolve(rt, &parsed) {
            let _ = filter::matches(&expr, &object);
            let _ = filter::index_hint(&expr);
        }
    }
}

/// A PATCH request: the first line is tried as a PATCH path on every resource type; the
/// whole input, when it is JSON, as a PatchOp body applied to a User.
pub fn scim_patch(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = text.lines().next().unwrap_or_default();
    for rt in RESOURCE_TYPES {
        let _ = filter::parse_patch_path(rt, path);
    }
    if let Ok(body) = serde_json::from_slice::<Json>(data) {
        let object = sample();
        for rt in RESOURCE_TYPES {
            let _ = patch::apply(rt, &object, &body);
        }
    }
}

/// A SCIM resource body (POST/PUT): normalized as each resource type.
pub fn scim_body(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Json>(data) else {
        return;
    };
    for rt in RESOURCE_TYPES {
        if let Ok(stored) = resource::normalize(rt, &body) {
            let _ = resource::check_required(rt, &stored);
            let _ = resource::unique_key(rt, &stored);
            let _ = resource::flatten(rt, "fuzz", &stored);
        }
    }
}

/// An HR extract: read as CSV, JSON and NDJSON with a mapping of three columns.
pub fn hr_extract(data: &[u8]) {
    use connector_agent::hr::parse;
    use mesh_runtime::config::HrFormat;
    for format in [HrFormat::Csv, HrFormat::Json, HrFormat::Ndjson] {
        let feed = connector_agent::settings::HrFeed {
            connector: mesh_model::ConnectorId::parse("hr").unwrap(),
            format,
            delimiter: b',',
            object_type: mesh_model::ObjectType::parse("User").unwrap(),
            external_id: "employee_id".into(),
            columns: [
                ("employee_id", "EmployeeId"),
                ("name", "DisplayName"),
                ("start", "StartDate"),
            ]
            .into_iter()
            .map(|(c, a)| (c.to_owned(), mesh_model::AttributeName::parse(a).unwrap()))
            .collect(),
            drop_dir: None,
            poll_interval: std::time::Duration::from_secs(1),
            max_leavers_percent: 5.0,
            max_leavers: None,
        };
        let mut seen = 0u32;
        let _ = parse::read(&feed, data, &mut |_item| {
            seen += 1;
            seen < 10_000
        });
    }
}

/// Runs every target on one input (the regression test's use).
pub fn run_all(data: &[u8]) {
    scim_filter(data);
    scim_patch(data);
    scim_body(data);
    hr_extract(data);
}
