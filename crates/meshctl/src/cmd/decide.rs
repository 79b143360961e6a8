//! `meshctl decide`: ask the risk service for an access decision and print why.
//!
//! `meshctl decide --subject aturing --resource app:payroll --sensitivity high --context
//! userAgent=curl` calls AccessDecision.Decide (`--risk-url`, or `MESHCTL_RISK_URL`; the token
//! from `MESHCTL_RISK_TOKEN`) and prints the decision, the policy rule that made it, the score
//! and each reason with the points it added. Exit status 0 whatever the decision: the command
//! worked; 1 when the service could not be asked.

use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use mesh_model::{AttributeName, Attributes, Value};
use mesh_proto::v1;
use mesh_proto::v1::access_decision_client::AccessDecisionClient;
use mesh_runtime::error_chain;
use serde_json::json;

use crate::output::{OutputFormat, print_structured};

/// How sensitive the resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sensitivity {
    Low,
    Medium,
    High,
    Critical,
}

/// `meshctl decide …`
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The identity as the application knows it (a userName, a UPN, a client id).
    #[arg(long)]
    subject: String,
    /// What is accessed, such as `app:payroll`.
    #[arg(long)]
    resource: String,
    /// What is done to it.
    #[arg(long, default_value = "read")]
    action: String,
    /// How sensitive the resource is.
    #[arg(long, value_enum, default_value = "low")]
    sensitivity: Sensitivity,
    /// The mesh object, when known (otherwise the service resolves the subject).
    #[arg(long)]
    mesh_object: Option<String>,
    /// A token or client-credentials flow rather than a person at a prompt.
    #[arg(long)]
    non_interactive: bool,
    /// The session completed MFA (now, unless --mfa-at says when).
    #[arg(long)]
    mfa: bool,
    /// When the session's MFA completed (RFC 3339).
    #[arg(long, requires = "mfa")]
    mfa_at: Option<DateTime<Utc>>,
    /// The client's IP address.
    #[arg(long)]
    ip: Option<String>,
    /// The device's id.
    #[arg(long)]
    device: Option<String>,
    /// Where the client is, as `LATITUDE,LONGITUDE`.
    #[arg(long, value_parser = parse_location, allow_hyphen_values = true)]
    location: Option<(f64, f64)>,
    /// When the request is made (RFC 3339); default now.
    #[arg(long)]
    at: Option<DateTime<Utc>>,
    /// A further fact for policies, read as `context.<name>` (repeatable): `name=value`, with
    /// `true`, `false` and integers typed.
    #[arg(long = "context", value_parser = parse_context)]
    context: Vec<(String, Value)>,
    /// The risk service's gRPC address.
    #[arg(
        long,
        env = "MESHCTL_RISK_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    risk_url: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: OutputFormat,
}

fn parse_location(text: &str) -> Result<(f64, f64), String> {
    let (lat, lon) = text
        .split_once(',')
        .ok_or("expected LATITUDE,LONGITUDE such as 51.5,-0.12")?;
    let lat: f64 = lat
        .trim()
        .parse()
        .map_err(|_| format!("latitude {lat:?} is not a number"))?;
    let lon: f64 = lon
        .trim()
        .parse()
        .map_err(|_| format!("longitude {lon:?} is not a number"))?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err("latitude is -90..90 and longitude -180..180".to_owned());
    }
    Ok((lat, lon))
}

fn parse_context(text: &str) -> Result<(String, Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or("expected name=value, such as userAgent=curl")?;
    AttributeName::parse(name.trim()).map_err(|e| e.to_string())?;
    let value = match value {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        v => v
            .parse::<i64>()
            .map_or_else(|_| Value::from(v), Value::Integer),
    };
    Ok((name.trim().to_owned(), value))
}

fn request(args: &DecideArgs) -> anyhow::Result<v1::DecideRequest> {
    let mut context = Attributes::new();
    for (name, value) in &args.context {
        context.insert(AttributeName::parse(name)?, value.clone());
    }
    let sensitivity = match args.sensitivity {
        Sensitivity::Low => v1::Sensitivity::Low,
        Sensitivity::Medium => v1::Sensitivity::Medium,
        Sensitivity::High => v1::Sensitivity::High,
        Sensitivity::Critical => v1::Sensitivity::Critical,
    };
    Ok(v1::DecideRequest {
        subject: args.subject.clone(),
        mesh_object_id: args.mesh_object.clone(),
        resource: args.resource.clone(),
        action: args.action.clone(),
        sensitivity: sensitivity as i32,
        context: Some(v1::RequestContext {
            ip: args.ip.clone(),
            device_id: args.device.clone(),
            location: args.location.map(|(latitude, longitude)| v1::GeoLocation {
                latitude,
                longitude,
                country: None,
                city: None,
            }),
            mfa: args.mfa.then(|| v1::MfaInfo {
                completed: true,
                method: None,
                completed_at: Some(mesh_proto::timestamp_to_pb(
                    args.mfa_at.unwrap_or_else(Utc::now),
                )),
            }),
            interactive: !args.non_interactive,
            time: args.at.map(mesh_proto::timestamp_to_pb),
            attributes: mesh_proto::attributes_to_pb(context).into_iter().collect(),
        }),
    })
}

fn decision_name(decision: i32) -> &'static str {
    match v1::Decision::try_from(decision) {
        Ok(v1::Decision::Allow) => "allow",
        Ok(v1::Decision::Deny) => "deny",
        Ok(v1::Decision::RequireMfa) => "require_mfa",
        Ok(v1::Decision::Limit) => "limit",
        _ => "unspecified",
    }
}

fn level(score: u32) -> &'static str {
    match score {
        0..=24 => "low",
        25..=49 => "medium",
        50..=74 => "high",
        _ => "critical",
    }
}

/// Explains a gRPC failure in terms of what the user can do.
fn explain(status: &tonic::Status, url: &str) -> anyhow::Error {
    match status.code() {
        tonic::Code::Unauthenticated => anyhow!(
            "the risk service at {url} refused the call: {}\nset MESHCTL_RISK_TOKEN to a token whose SHA-256 is listed in the service's risk.token_sha256",
            status.message()
        ),
        tonic::Code::InvalidArgument => anyhow!("the request is invalid: {}", status.message()),
        tonic::Code::Unavailable => anyhow!(
            "the risk service at {url} is unavailable: {}\nis it running (`meshd run risk`)? set --risk-url or MESHCTL_RISK_URL to its gRPC address",
            status.message()
        ),
        _ => anyhow!("the risk service at {url} failed: {status}"),
    }
}

/// Runs `meshctl decide`.
pub fn run(args: DecideArgs) -> anyhow::Result<ExitCode> {
    let request = request(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = args.risk_url.clone();
    let response = runtime.block_on(async {
        let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
            .with_context(|| format!("--risk-url {url:?} is not a URL such as http://127.0.0.1:50052"))?
            .connect_timeout(std::time::Duration::from_secs(5));
        let channel = endpoint.connect().await.map_err(|e| {
            anyhow!(
                "cannot reach the risk service at {url}: {}\nis it running (`meshd run risk`)? set --risk-url or MESHCTL_RISK_URL to its gRPC address",
                error_chain(&e)
            )
        })?;
        let mut call = tonic::Request::new(request);
        if let Ok(token) = std::env::var("MESHCTL_RISK_TOKEN") {
            let value = format!("Bearer {}", token.trim())
                .parse()
                .context("MESHCTL_RISK_TOKEN is not valid in a header")?;
            call.metadata_mut().insert("authorization", value);
        }
        AccessDecisionClient::new(channel)
            .decide(call)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| explain(&status, &url))
    })?;
    print(&args, &response)?;
    Ok(ExitCode::SUCCESS)
}

fn print(args: &DecideArgs, r: &v1::DecideResponse) -> anyhow::Result<()> {
    let decision = decision_name(r.decision);
    if decision == "unspecified" {
        bail!("the risk service answered without a decision");
    }
    match args.output {
        OutputFormat::Json | OutputFormat::Yaml => print_structured(
            args.output,
            &json!({
                "decision": decision,
                "limitScope": (!r.limit_scope.is_empty()).then_some(&r.limit_scope),
                "score": r.score,
                "level": level(r.score),
                "policy": r.policy,
                "degraded": r.degraded,
                "decisionId": r.decision_id,
                "policyVersion": r.policy_version.to_string(),
                "reasons": r.reasons.iter().map(|reason| json!({
                    "code": reason.code,
                    "message": reason.message,
                    "weight": reason.weight,
                })).collect::<Vec<_>>(),
            }),
        ),
        OutputFormat::Text => {
            let scope = if r.limit_scope.is_empty() {
                String::new()
            } else {
                format!(" to {}", r.limit_scope)
            };
            println!(
                "{}{scope}  {} {} on {}",
                decision.to_uppercase(),
                args.subject,
                args.action,
                args.resource
            );
            println!(
                "policy {}, risk score {}/100 ({}){}",
                r.policy,
                r.score,
                level(r.score),
                if r.degraded {
                    ", DEGRADED: the risk state was unavailable, the safe default applied"
                } else {
                    ""
                }
            );
            if !r.reasons.is_empty() {
                println!("why:");
                let width = r.reasons.iter().map(|x| x.code.len()).max().unwrap_or(0);
                for reason in &r.reasons {
                    let points = if reason.weight > 0 {
                        format!("+{}", reason.weight)
                    } else {
                        String::new()
                    };
                    println!("  {:width$}  {points:>4}  {}", reason.code, reason.message);
                }
            }
            println!("decision {}", r.decision_id);
            Ok(())
        }
    }
}
