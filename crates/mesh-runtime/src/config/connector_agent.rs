//! The `connector_agent` section: the SCIM 2.0 endpoints and HR feeds one connector agent
//! serves (docs/connector-agent.md describes every key and how it maps to the `Connector`
//! documents of the rule set).
//!
//! Values are kept as written (strings, paths); the agent parses them into its typed settings
//! at start and refuses to start, naming the key, when one is malformed.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// The connector agent: one HTTP listener for SCIM and HR uploads, the outbox relay, and the
/// drop-directory watchers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConnectorAgentConfig {
    /// Listen address of the SCIM and HR upload server. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Absolute base URL clients reach the server at (`https://scim.example.com`), used in
    /// `meta.location`; when unset, it is built from the request's `Host` header over http.
    pub public_url: Option<String>,
    /// Largest request body accepted on SCIM endpoints, in bytes. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most resources one SCIM list or search returns (`filter.maxResults`). Default 1000.
    pub max_results: usize,
    /// How often the outbox relay looks for unpublished change events when no write woke it.
    /// Default 1s.
    #[serde(deserialize_with = "duration::deserialize")]
    pub relay_interval: Duration,
    /// Change events the relay publishes per transaction (a framed row, one import batch, is
    /// taken whole). Default 1000.
    pub relay_batch: usize,
    /// Where uploaded HR extracts are spooled before import. Default: the system temp dir.
    pub spool_dir: Option<PathBuf>,
    /// SHA-256 (hex) of the bearer tokens allowed to upload HR extracts (`meshctl import`).
    pub import_token_sha256: Vec<String>,
    /// Requests per second one bearer token may make, SCIM and HR uploads together, before
    /// it is answered 429; 0 turns the limit off. Counted per agent process. Default 1000.
    pub rate_limit_per_second: u32,
    /// Requests one token may make at once above its steady rate (the token bucket's size).
    /// At least 1 while the limit is on. Default 2000.
    pub rate_limit_burst: u32,
    /// Inbound SCIM connectors, one endpoint each.
    pub scim: Vec<ScimEndpointConfig>,
    /// HR feed connectors.
    pub hr: Vec<HrFeedConfig>,
}

impl Default for ConnectorAgentConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8080)),
            public_url: None,
            max_body_bytes: 1 << 20,
            max_results: 1000,
            relay_interval: Duration::from_secs(1),
            relay_batch: 1000,
            spool_dir: None,
            import_token_sha256: Vec::new(),
            rate_limit_per_second: 1000,
            rate_limit_burst: 2000,
            scim: Vec::new(),
            hr: Vec::new(),
        }
    }
}

/// One inbound SCIM connector (`kind: Connector`, `spec.type: scim-inbound`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ScimEndpointConfig {
    /// The connector's name; its endpoint is `/scim/v2/<connector>/`.
    pub connector: String,
    /// SHA-256 (hex) of each bearer token accepted; several allow rotation.
    pub token_sha256: Vec<String>,
}

/// One HR feed connector (`spec.type: hr-csv` or `hr-json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HrFeedConfig {
    /// The connector's name.
    pub connector: String,
    /// `csv`, `json` (an array of objects) or `ndjson` (one object per line). Default `csv`.
    pub format: HrFormat,
    /// Field delimiter of CSV files, one ASCII character. Default `,`.
    pub delimiter: char,
    /// The object type of every record. Default `User`.
    pub object_type: String,
    /// The source column (CSV header or JSON key) holding each record's external id.
    pub external_id: String,
    /// Source column to attribute name. Empty: every column, under its own name.
    pub columns: BTreeMap<String, String>,
    /// A directory polled for extracts to import; none when unset.
    pub drop_dir: Option<PathBuf>,
    /// How often the drop directory is polled. Default 10s.
    #[serde(deserialize_with = "duration::deserialize")]
    pub poll_interval: Duration,
    /// Hold an extract whose leavers exceed this percentage of the previous extract's records.
    /// Default 5.
    pub max_leavers_percent: f64,
    /// Hold an extract whose leavers exceed this count, when set.
    pub max_leavers: Option<u64>,
}

impl Default for HrFeedConfig {
    fn default() -> Self {
        Self {
            connector: String::new(),
            format: HrFormat::Csv,
            delimiter: ',',
            object_type: "User".to_owned(),
            external_id: String::new(),
            columns: BTreeMap::new(),
            drop_dir: None,
            poll_interval: Duration::from_secs(10),
            max_leavers_percent: 5.0,
            max_leavers: None,
        }
    }
}

/// The file format of an HR feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HrFormat {
    /// Comma-separated values with a header row.
    #[default]
    Csv,
    /// A JSON array of objects.
    Json,
    /// Newline-delimited JSON: one object per line.
    Ndjson,
}

impl ConnectorAgentConfig {
    /// Returns the cross-field problems as `(key, message)` pairs.
    pub(crate) fn check(&self, problems: &mut Vec<(String, String)>) {
        let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.push((
                "connector_agent.public_url".to_owned(),
                format!("expected an http:// or https:// URL, found {url:?}"),
            ));
        }
        if !self.import_token_sha256.iter().all(|h| hex64(h)) {
            problems.push((
                "connector_agent.import_token_sha256".to_owned(),
                "each entry must be 64 hex digits (a SHA-256)".to_owned(),
            ));
        }
        if self.rate_limit_per_second > 0 && self.rate_limit_burst == 0 {
            problems.push((
                "connector_agent.rate_limit_burst".to_owned(),
                "must be at least 1 while rate_limit_per_second is set (0 turns the limit off)"
                    .to_owned(),
            ));
        }
        for (i, scim) in self.scim.iter().enumerate() {
            if scim.token_sha256.is_empty() || !scim.token_sha256.iter().all(|h| hex64(h)) {
                problems.push((
                    format!("connector_agent.scim[{i}].token_sha256"),
                    "needs at least one entry, each 64 hex digits (a SHA-256)".to_owned(),
                ));
            }
        }
        for (i, hr) in self.hr.iter().enumerate() {
            if hr.external_id.is_empty() {
                problems.push((
                    format!("connector_agent.hr[{i}].external_id"),
                    "must name the column holding the external id".to_owned(),
                ));
            }
            if !hr.delimiter.is_ascii() {
                problems.push((
                    format!("connector_agent.hr[{i}].delimiter"),
                    "must be one ASCII character".to_owned(),
                ));
            }
            if !(hr.max_leavers_percent >= 0.0 && hr.max_leavers_percent <= 100.0) {
                problems.push((
                    format!("connector_agent.hr[{i}].max_leavers_percent"),
                    "must be between 0 and 100".to_owned(),
                ));
            }
        }
    }
}
