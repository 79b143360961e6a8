//! `meshctl import --connector NAME FILE`: upload an HR extract to the connector agent, which
//! diffs it against the previous extract and publishes joiners, movers and leavers.
//!
//! The file streams to `POST <server>/hr/v1/<connector>/imports` (memory stays flat for any
//! size) with a progress bar on a terminal; the agent answers with the import report. Exit
//! status: 0 when applied, 1 when held (too many leavers: re-run with `--confirm-leavers`
//! after checking the extract) or refused.
//!
//! The server is `--server` or `MESHCTL_AGENT_URL` (default `http://127.0.0.1:8080`); the
//! bearer token is read from `--token-file` or `MESHCTL_IMPORT_TOKEN`. Only `http://` is
//! spoken: reach a TLS endpoint through a port-forward or a sidecar.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::output::{OutputFormat, print_structured};

/// `meshctl import …`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The HR feed connector, as configured in the agent's `connector_agent.hr`.
    #[arg(long)]
    connector: String,
    /// The extract: CSV, a JSON array or NDJSON, as the connector's format says.
    file: PathBuf,
    /// The connector agent's base URL.
    #[arg(
        long,
        env = "MESHCTL_AGENT_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// A file holding the import bearer token (else `MESHCTL_IMPORT_TOKEN`).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Apply the extract even if its leavers exceed the connector's threshold.
    #[arg(long)]
    confirm_leavers: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: OutputFormat,
}

fn host_port(server: &str) -> anyhow::Result<(String, String)> {
    let Some(rest) = server.strip_prefix("http://") else {
        bail!("--server must be an http:// URL, found {server:?}");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        bail!("--server {server:?} has no host");
    }
    let addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority.to_owned(), addr))
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs the command.
pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned(),
        None => std::env::var("MESHCTL_IMPORT_TOKEN")
            .context("set --token-file or MESHCTL_IMPORT_TOKEN")?,
    };
    let (host, addr) = host_port(&args.server)?;
    let mut file =
        File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let size = file.metadata()?.len();
    let source = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut stream =
        TcpStream::connect(&addr).with_context(|| format!("connecting to {}", args.server))?;
    stream.set_read_timeout(Some(Duration::from_secs(3600)))?;
    let head = format!(
        "POST /hr/v1/{}/imports?source={}{} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {size}\r\n\r\n",
        query_escape(&args.connector),
        query_escape(&source),
        if args.confirm_leavers {
            "&confirmLeavers=true"
        } else {
            ""
        },
    );
    stream.write_all(head.as_bytes())?;
    // Drawn on stderr only when it is a terminal.
    let bar = indicatif::ProgressBar::new(size).with_style(
        indicatif::ProgressStyle::with_template(
            "upload [{bar:25}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("#>-"),
    );
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        stream.write_all(buf.get(..n).unwrap_or_default())?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let applying = super::client::spinner("the agent is diffing and applying the extract");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    applying.finish_and_clear();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut response = String::new();
    reader.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body)
        .with_context(|| format!("the agent answered {status} with {body:?}"))?;
    if status != 200 {
        let detail = json["detail"].as_str().unwrap_or(body);
        bail!("the agent refused the import ({status}): {detail}");
    }
    let held = json["status"] == "held";
    match args.output {
        OutputFormat::Json | OutputFormat::Yaml => print_structured(args.output, &json)?,
        OutputFormat::Text => {
            println!(
                "{} {}: {} records: {} joiners, {} movers, {} leavers, {} unchanged, {} malformed ({} ms)",
                json["status"].as_str().unwrap_or("?"),
                args.connector,
                json["records"],
                json["joiners"],
                json["movers"],
                json["leavers"],
                json["unchanged"],
                json["malformed"],
                json["elapsedMs"],
            );
            for e in json["errors"].as_array().into_iter().flatten() {
                println!(
                    "  line {} column {}: {}",
                    e["line"],
                    e["column"],
                    e["reason"].as_str().unwrap_or_default()
                );
            }
            if let Some(why) = json["heldBecause"].as_str() {
                println!("held: {why}");
                println!("check the extract, then re-run with --confirm-leavers");
            }
        }
    }
    Ok(if held {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
