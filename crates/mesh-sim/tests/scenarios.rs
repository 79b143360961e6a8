//! Scenario goldens: every `tests/scenarios/*.yaml` runs through a fresh world and its report
//! (mesh objects, disconnectors, ambiguous matches, exports, transform errors and the trace)
//! must equal the committed `*.golden.json` next to it.
//!
//! After an intended change, regenerate with `UPDATE_GOLDEN=1 cargo test -p mesh-sim --test
//! scenarios` and review the diff like code.

use std::fs;
use std::path::{Path, PathBuf};

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

fn base(name: &str) -> Option<String> {
    fs::read_to_string(
        scenario_dir()
            .join("base")
            .join(format!("{name}.rules.yaml")),
    )
    .ok()
}

#[test]
fn scenarios_match_their_goldens() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut files: Vec<PathBuf> = fs::read_dir(scenario_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "only {} scenarios", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(file).unwrap();
        let report = match mesh_sim::scenario::run(&text, &name, &base) {
            Ok(report) => report,
            Err(error) => {
                failures.push(format!("{name}: {error}"));
                continue;
            }
        };
        let actual = serde_json::to_string_pretty(&report).unwrap() + "\n";
        let golden = file.with_extension("golden.json");
        if update {
            fs::write(&golden, &actual).unwrap();
            continue;
        }
        match fs::read_to_string(&golden) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => {
                let line = expected
                    .lines()
                    .zip(actual.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(expected.lines().count().min(actual.lines().count()));
                failures.push(format!(
                    "{name}: differs from {} from line {}: expected {:?}, got {:?}",
                    golden.display(),
                    line + 1,
                    expected.lines().nth(line).unwrap_or("<end>"),
                    actual.lines().nth(line).unwrap_or("<end>")
                ));
            }
            Err(_) => failures.push(format!("{name}: no golden; run with UPDATE_GOLDEN=1")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// Without explanations the world revisits only the attributes a change can affect: every
/// scenario must come out the same as its golden, but for the trace.
#[test]
fn scenarios_match_their_goldens_without_explanations() {
    let mut files: Vec<PathBuf> = fs::read_dir(scenario_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(file).unwrap();
        let report = mesh_sim::scenario::run_with(&text, &name, &base, false).unwrap();
        let mut actual = serde_json::to_value(&report).unwrap();
        let golden = fs::read_to_string(file.with_extension("golden.json")).unwrap();
        let mut expected: serde_json::Value = serde_json::from_str(&golden).unwrap();
        for report in [&mut actual, &mut expected] {
            report.as_object_mut().unwrap().remove("trace");
        }
        if actual != expected {
            failures.push(name);
        }
    }
    assert!(
        failures.is_empty(),
        "differ from their goldens without explanations: {failures:?}"
    );
}

#[test]
fn the_demo_runs_on_examples() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let report = mesh_sim::demo::run(&examples).unwrap();
    if std::env::var_os("SHOW_DEMO").is_some() {
        println!("{report}");
    }
    for expected in [
        "User 1001  Ada Lovelace  [active]",
        "User 1003  Alan Turing  [leaver]",
        "ServiceAccount svc-backup",
        "disconnector saas-app/User/",
        "disable hr-database",
    ] {
        assert!(
            report.contains(expected),
            "{expected:?} missing from:\n{report}"
        );
    }
}
