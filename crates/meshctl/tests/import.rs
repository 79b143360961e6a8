//! `meshctl import` against a stand-in agent: the request it sends (path, token, body) and how
//! it reports applied and held imports. The agent side is tested in services/connector-agent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;

/// Serves one request with `reply`, returning (request line, headers, body).
fn serve_once(
    reply: &'static str,
) -> (u16, std::thread::JoinHandle<(String, Vec<String>, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mut headers = Vec::new();
        let mut len = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            headers.push(h.trim().to_owned());
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        )
        .unwrap();
        (line, headers, String::from_utf8(body).unwrap())
    });
    (port, handle)
}

fn meshctl(port: u16, file: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(["import", "--connector", "workday"])
        .arg(file)
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .args(extra)
        .env("MESHCTL_IMPORT_TOKEN", "tok")
        .output()
        .unwrap()
}

#[test]
fn uploads_the_file_and_prints_the_report() {
    let dir = tempfile_dir();
    let file = dir.join("day1.csv");
    std::fs::write(&file, "employee_id,name\n1,Ada\n").unwrap();
    let (port, server) = serve_once(
        r#"{"status":"applied","records":1,"joiners":1,"movers":0,"leavers":0,"unchanged":0,"malformed":1,"elapsedMs":3,"errors":[{"line":3,"column":1,"reason":"the external id is empty"}]}"#,
    );
    let out = meshctl(port, &file, &[]);
    let (line, headers, body) = server.join().unwrap();
    assert!(
        line.starts_with("POST /hr/v1/workday/imports?source=day1.csv HTTP/1.1"),
        "{line}"
    );
    assert!(
        headers.iter().any(|h| h == "Authorization: Bearer tok"),
        "{headers:?}"
    );
    assert_eq!(body, "employee_id,name\n1,Ada\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("applied workday: 1 records: 1 joiners"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 3 column 1: the external id is empty"),
        "{stdout}"
    );
}

#[test]
fn a_held_import_exits_1_and_confirm_is_sent() {
    let dir = tempfile_dir();
    let file = dir.join("day2.csv");
    std::fs::write(&file, "employee_id\n").unwrap();
    let (port, server) = serve_once(
        r#"{"status":"held","records":0,"joiners":0,"movers":0,"leavers":9,"unchanged":0,"malformed":0,"elapsedMs":1,"errors":[],"heldBecause":"9 leavers exceed the threshold"}"#,
    );
    let out = meshctl(port, &file, &["--confirm-leavers"]);
    let (line, _, _) = server.join().unwrap();
    assert!(line.contains("confirmLeavers=true"), "{line}");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("held: 9 leavers"));
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "meshctl-import-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
