//! Runs the built `meshctl` binary: `meshctl rules validate` and `meshctl simulate` on the
//! examples/ estate and on broken rules.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn meshctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .output()
        .expect("meshctl runs")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn the_example_rules_validate() {
    let rules = examples().join("rules");
    let out = meshctl(&["rules", "validate", rules.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("files valid"), "{stdout}");

    // The same outcome as YAML, for scripts that prefer it.
    let out = meshctl(&["rules", "validate", rules.to_str().unwrap(), "-o", "yaml"]);
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{yaml}");
    assert!(yaml.contains("valid: true"), "{yaml}");
}

#[test]
fn validate_reports_every_problem_with_its_position() {
    let dir = std::env::temp_dir().join(format!("meshctl-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.yaml");
    std::fs::write(
        &file,
        "kind: JoinRule\nmetadata: { name: a }\nspec: { connector: nowhere, sourceAttribute: x, targetAttribute: X, priority: 1 }\n---\nkind: MeshComposerRule\nmetadata: { name: b }\nspec: { objectType: User, targetAttribute: A, confidence: 150, transformScript: 'Lefft(x)' }\n",
    )
    .unwrap();
    let out = meshctl(&[
        "rules",
        "validate",
        "-o",
        "json",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    // The composer's own problems are reported; its cross-document checks (the object type)
    // wait until the document itself is sound.
    assert_eq!(
        codes,
        ["unknown-connector", "confidence-out-of-range", "E020"]
    );
    assert_eq!(report["problems"][0]["line"], 3);
    assert_eq!(report["problems"][0]["column"], 20);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn simulate_prints_the_issue_json_shape() {
    let rules = examples().join("rules");
    let data = examples().join("data");
    let out = meshctl(&[
        "simulate",
        "--rules",
        rules.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "meshObjects",
        "disconnectors",
        "ambiguous",
        "exports",
        "transformErrors",
    ] {
        assert!(report.get(key).is_some(), "{key} missing");
    }
    let ada = report["meshObjects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["anchor"] == "1001")
        .unwrap();
    for key in [
        "id",
        "objectType",
        "attributes",
        "lineage",
        "connectors",
        "state",
    ] {
        assert!(ada.get(key).is_some(), "{key} missing");
    }
    assert_eq!(ada["lineage"]["DisplayName"]["connector"], "hr");
    assert_eq!(ada["lineage"]["DisplayName"]["confidence"], 95);
    let export = &report["exports"][0];
    for key in [
        "target",
        "op",
        "container",
        "objectType",
        "attributes",
        "key",
        "anchor",
    ] {
        assert!(export.get(key).is_some(), "{key} missing");
    }
}
