//! The agent's typed settings, parsed from the `connector_agent` configuration section.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use mesh_model::{AttributeName, ConnectorId, ObjectType};
use mesh_runtime::config::{ConnectorAgentConfig, HrFormat};

use crate::scim::Endpoint;

/// A malformed setting, naming its key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingsError {
    /// The configuration key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn err(key: String, message: impl std::fmt::Display) -> SettingsError {
    SettingsError {
        key,
        message: message.to_string(),
    }
}

/// Parses a SHA-256 written as 64 hex digits.
pub fn parse_hash(key: &str, hex_digest: &str) -> Result<[u8; 32], SettingsError> {
    let bytes = hex::decode(hex_digest.trim()).map_err(|e| err(key.to_owned(), e))?;
    bytes
        .try_into()
        .map_err(|_| err(key.to_owned(), "a SHA-256 is 32 bytes (64 hex digits)"))
}

/// One HR feed.
#[derive(Debug, Clone)]
pub struct HrFeed {
    /// The connector.
    pub connector: ConnectorId,
    /// The file format.
    pub format: HrFormat,
    /// CSV delimiter.
    pub delimiter: u8,
    /// The object type of every record.
    pub object_type: ObjectType,
    /// The source column of the external id.
    pub external_id: String,
    /// Source column to attribute; empty means every column under its own name.
    pub columns: BTreeMap<String, AttributeName>,
    /// The watched drop directory.
    pub drop_dir: Option<PathBuf>,
    /// Its polling interval.
    pub poll_interval: Duration,
    /// Percentage threshold of leavers.
    pub max_leavers_percent: f64,
    /// Absolute threshold of leavers.
    pub max_leavers: Option<u64>,
}

/// Everything the agent serves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SCIM endpoints.
    pub scim: Vec<Endpoint>,
    /// HR feeds.
    pub hr: Vec<HrFeed>,
    /// Digests of the upload tokens.
    pub import_token_hashes: Vec<[u8; 32]>,
}

impl Settings {
    /// Parses the section.
    pub fn parse(config: &ConnectorAgentConfig) -> Result<Self, SettingsError> {
        let mut scim = Vec::new();
        for (i, s) in config.scim.iter().enumerate() {
            let key = format!("connector_agent.scim[{i}]");
            let connector =
                ConnectorId::parse(&s.connector).map_err(|e| err(format!("{key}.connector"), e))?;
            let token_hashes = s
                .token_sha256
                .iter()
                .map(|h| parse_hash(&format!("{key}.token_sha256"), h))
                .collect::<Result<Vec<_>, _>>()?;
            if token_hashes.is_empty() {
                return Err(err(
                    format!("{key}.token_sha256"),
                    "needs at least one token digest",
                ));
            }
            scim.push(Endpoint {
                connector,
                token_hashes,
            });
        }
        let mut hr = Vec::new();
        for (i, h) in config.hr.iter().enumerate() {
            let key = format!("connector_agent.hr[{i}]");
            let connector =
                ConnectorId::parse(&h.connector).map_err(|e| err(format!("{key}.connector"), e))?;
            let object_type = ObjectType::parse(&h.object_type)
                .map_err(|e| err(format!("{key}.object_type"), e))?;
            if h.external_id.is_empty() {
                return Err(err(format!("{key}.external_id"), "must name a column"));
            }
            let delimiter = u8::try_from(h.delimiter)
                .ok()
                .filter(u8::is_ascii)
                .ok_or_else(|| err(format!("{key}.delimiter"), "must be one ASCII character"))?;
            let columns = h
                .columns
                .iter()
                .map(|(source, attr)| {
                    AttributeName::parse(attr)
                        .map(|a| (source.clone(), a))
                        .map_err(|e| err(format!("{key}.columns.{source}"), e))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            hr.push(HrFeed {
                connector,
                format: h.format,
                delimiter,
                object_type,
                external_id: h.external_id.clone(),
                columns,
                drop_dir: h.drop_dir.clone(),
                poll_interval: h.poll_interval,
                max_leavers_percent: h.max_leavers_percent,
                max_leavers: h.max_leavers,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in scim
            .iter()
            .map(|s| &s.connector)
            .chain(hr.iter().map(|h| &h.connector))
        {
            if !seen.insert(name.clone()) {
                return Err(err(
                    "connector_agent".to_owned(),
                    format!("connector {name} is configured twice"),
                ));
            }
        }
        let import_token_hashes = config
            .import_token_sha256
            .iter()
            .map(|h| parse_hash("connector_agent.import_token_sha256", h))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            scim,
            hr,
            import_token_hashes,
        })
    }
}
