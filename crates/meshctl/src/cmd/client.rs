//! The connection to the query service that every MeshQuery (and RuleAdmin) command shares.
//!
//! The address is `--query-url`, or `MESHCTL_QUERY_URL`, default `http://127.0.0.1:50051`; the
//! bearer token, when the service requires one (`query.token_sha256`), is `MESHCTL_QUERY_TOKEN`
//! and is never taken from the command line, where other users could read it. Failures are
//! explained in terms of what the user can do: start the service, point at it, set the token.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::Args;
use mesh_proto::v1::mesh_query_client::MeshQueryClient;
use mesh_proto::v1::rule_admin_client::RuleAdminClient;
use mesh_runtime::error_chain;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// The environment variable holding the bearer token.
pub const TOKEN_ENV: &str = "MESHCTL_QUERY_TOKEN";

/// Where the query service listens (flatten into a command's arguments).
#[derive(Debug, Clone, Args)]
pub struct QueryService {
    /// The query service's gRPC address.
    #[arg(
        long,
        env = "MESHCTL_QUERY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub query_url: String,
}

/// A connected client of the query service.
#[derive(Debug, Clone)]
pub struct QueryClient {
    url: String,
    channel: Channel,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl QueryService {
    /// Connects (within 5 s), reading the token from [`TOKEN_ENV`].
    pub async fn connect(&self) -> anyhow::Result<QueryClient> {
        let url = self.query_url.trim().to_owned();
        let endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| {
                format!("--query-url {url:?} is not a URL such as http://127.0.0.1:50051")
            })?
            .connect_timeout(Duration::from_secs(5));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| unreachable(&url, &error_chain(&e)))?;
        let token = match std::env::var(TOKEN_ENV) {
            Ok(token) if !token.trim().is_empty() => Some(
                format!("Bearer {}", token.trim())
                    .parse()
                    .with_context(|| format!("{TOKEN_ENV} is not valid in a header"))?,
            ),
            _ => None,
        };
        Ok(QueryClient {
            url,
            channel,
            token,
        })
    }
}

fn unreachable(url: &str, why: &str) -> anyhow::Error {
    anyhow!(
        "cannot reach the query service at {url}; start it with `meshd run query` or set \
         --query-url/MESHCTL_QUERY_URL ({why})"
    )
}

impl QueryClient {
    /// The RuleAdmin client.
    pub fn rule_admin(&self) -> RuleAdminClient<Channel> {
        RuleAdminClient::new(self.channel.clone())
    }

    /// The MeshQuery client.
    pub fn mesh_query(&self) -> MeshQueryClient<Channel> {
        MeshQueryClient::new(self.channel.clone())
    }

    /// A request carrying the bearer token, if one is set.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        request
    }

    /// The message of a call's response, or its failure explained.
    pub fn answer<T>(
        &self,
        result: Result<tonic::Response<T>, tonic::Status>,
    ) -> anyhow::Result<T> {
        result
            .map(tonic::Response::into_inner)
            .map_err(|status| self.explain(&status))
    }

    /// Explains a gRPC failure in terms of what the user can do.
    pub fn explain(&self, status: &tonic::Status) -> anyhow::Error {
        let url = &self.url;
        let message = status.message();
        match status.code() {
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => anyhow!(
                "the query service at {url} refused the call: {message}\nset {TOKEN_ENV} to a \
                 token whose SHA-256 is in query.token_sha256"
            ),
            tonic::Code::Unavailable => unreachable(url, message),
            tonic::Code::NotFound => anyhow!("{message}"),
            tonic::Code::InvalidArgument => anyhow!("the request is invalid: {message}"),
            tonic::Code::Aborted | tonic::Code::FailedPrecondition => anyhow!("{message}"),
            tonic::Code::Unimplemented => anyhow!(
                "the query service at {url} does not serve this call ({message}); upgrade it"
            ),
            _ => anyhow!("the query service at {url} failed: {status}"),
        }
    }
}

/// Runs `future` on a single-threaded runtime, as every command of this CLI does.
pub fn block_on<F: Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(future))
}

/// Fetches every page of a list (or the first `limit` items): `page` asks for one page given
/// the page token (empty for the first) and the page size, and returns the page's items and
/// the next token (empty after the last page).
pub async fn all_pages<T, F, Fut>(limit: Option<usize>, mut page: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(String, u32) -> Fut,
    Fut: Future<Output = anyhow::Result<(Vec<T>, String)>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let want = limit.map_or(0, |l| {
            u32::try_from(l.saturating_sub(items.len())).unwrap_or(u32::MAX)
        });
        let (mut got, next) = page(token, want).await?;
        if let Some(limit) = limit {
            got.truncate(limit.saturating_sub(items.len()));
        }
        items.append(&mut got);
        if next.is_empty() || limit.is_some_and(|l| items.len() >= l) {
            return Ok(items);
        }
        token = next;
    }
}

/// Who is acting: `--actor`, else the login name (`USER`), for the audit log.
#[derive(Debug, Clone, Args)]
pub struct Actor {
    /// Who makes the change, as the audit log records it (default: your login name).
    #[arg(long, env = "MESHCTL_ACTOR")]
    pub actor: Option<String>,
    /// Why, in your words (recorded in the audit log).
    #[arg(long, default_value = "")]
    pub reason: String,
}

impl Actor {
    /// The actor's name.
    pub fn name(&self) -> anyhow::Result<String> {
        self.actor
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| anyhow!("say who you are with --actor (or MESHCTL_ACTOR)"))
    }
}

/// A spinner on stderr while a long call runs (hidden when stderr is not a terminal).
pub fn spinner(message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
