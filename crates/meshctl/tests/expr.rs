//! Runs the built `meshctl` binary: `meshctl expr check|eval|functions`.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

fn meshctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .output()
        .expect("meshctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn eval_prints_the_result_as_a_literal() {
    let out = meshctl(&[
        "expr",
        "eval",
        "ToLower(Concat(Left(FirstName, 1), LastName))",
        "--attr",
        "FirstName=John",
        "--attr",
        "lastname=Smith",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "\"jsmith\"\n");
}

#[test]
fn eval_types_attributes_by_flag_and_uses_now() {
    let out = meshctl(&[
        "expr",
        "eval",
        r#"Concat(Format(n, "000000"), " ", Format(Now(), "%Y-%m-%d"), " ", Format(t, "%H:%M"), " ", s == "42")"#,
        "--attr-json",
        "n=42",
        "--attr",
        "s=42",
        "--attr-time",
        "t=2026-05-01T12:30:00Z",
        "--now",
        "2026-03-14T09:26:53Z",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "\"000042 2026-03-14 12:30 true\"\n");
}

#[test]
fn eval_json_output() {
    let out = meshctl(&[
        "expr",
        "eval",
        "Split(x, \",\")",
        "--attr",
        "x=a,b",
        "-o",
        "json",
    ]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["type"], "list");
    assert_eq!(json["value"], serde_json::json!(["a", "b"]));
}

#[test]
fn check_fails_with_the_rendered_diagnostic() {
    let out = meshctl(&["expr", "check", "ToLowr(x)"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("error[E020]: unknown function `ToLowr`"),
        "{err}"
    );
    assert!(err.contains("^^^^^^"), "{err}");
    assert!(err.contains("did you mean `ToLower`?"), "{err}");
}

#[test]
fn check_with_schema_reports_warnings_and_succeeds() {
    let out = meshctl(&[
        "expr",
        "check",
        "Concat(givenName, sn)",
        "--schema",
        "givenName:string",
        "--schema",
        "surname",
        "-o",
        "json",
    ]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["diagnostics"][0]["code"], "W001");
    assert_eq!(json["diagnostics"][0]["column"], 19);
}

#[test]
fn eval_runtime_error_exits_non_zero() {
    let out = meshctl(&["expr", "eval", "Left(x, 1)", "--attr-json", "x=[1]"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("error[R001]"), "{}", stderr(&out));
    let json = meshctl(&[
        "expr",
        "eval",
        "Left(x, 1)",
        "--attr-json",
        "x=5",
        "-o",
        "json",
    ]);
    assert_eq!(json.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(json["error"]["code"], "R001");
}

#[test]
fn filters_and_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args([
            "expr",
            "eval",
            "-",
            "--filter",
            "--attr",
            "department=Sales",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"department != \"Contractors\"\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), "true\n");
    let refused = meshctl(&["expr", "check", "--filter", "Trim(department)"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("E025"));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = meshctl(&["expr", "eval", "x", "--attr", "novalue"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("expected NAME=VALUE"));
    let out = meshctl(&["expr", "eval", "x", "--now", "yesterday"]);
    assert_eq!(out.status.code(), Some(1));
    let out = meshctl(&["expr", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn functions_lists_every_function() {
    let out = meshctl(&["expr", "functions"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for name in [
        "ToLower",
        "ToUpper",
        "Trim",
        "Replace",
        "Concat",
        "Left",
        "Right",
        "Substring",
        "Split",
        "Join",
        "Now",
        "Format",
        "Coalesce",
        "If",
        "Switch",
    ] {
        assert!(text.contains(&format!("{name}(")), "{name} missing");
    }
}
