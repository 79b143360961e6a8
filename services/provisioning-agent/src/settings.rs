//! Reading a target connector's settings: the keys of its `spec` beyond the ones every
//! connector has (`type`, `objectTypes`, ...), which the rule loader keeps untyped in
//! [`Connector::settings`].
//!
//! Secrets are never read from the rules: a setting such as `tokenEnv` names an environment
//! variable, read once when the target is built. Names starting with `MESH_` are refused,
//! because meshd reads every `MESH_*` variable as a configuration key and refuses unknown ones.

use std::collections::BTreeSet;
use std::time::Duration;

use mesh_engine::rules::Connector;
use mesh_engine::yaml::{Node, NodeKind};
use mesh_model::ConnectorId;

/// Why a target connector's settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("connector {connector} ({origin}): {problem}")]
pub struct SettingsError {
    /// The connector.
    pub connector: ConnectorId,
    /// Where it is defined, `file:line:column`.
    pub origin: String,
    /// What is wrong, naming the setting.
    pub problem: String,
    /// The environment variable a secret setting names, when that is what is missing: the
    /// rules are fine and the process's environment is not.
    pub missing_variable: Option<String>,
}

/// Looks up an environment variable; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The settings of one connector, read key by key; [`Settings::finish`] refuses keys nobody
/// read, so that a misspelt optional setting is not silently ignored.
pub(crate) struct Settings<'a> {
    connector: &'a Connector,
    env: EnvLookup<'a>,
    read: BTreeSet<&'static str>,
}

impl<'a> Settings<'a> {
    pub(crate) fn new(connector: &'a Connector, env: EnvLookup<'a>) -> Self {
        Self {
            connector,
            env,
            read: BTreeSet::new(),
        }
    }

    /// An error about this connector.
    pub(crate) fn error(&self, problem: impl Into<String>) -> SettingsError {
        SettingsError {
            connector: self.connector.name.clone(),
            origin: self.connector.origin.to_string(),
            problem: problem.into(),
            missing_variable: None,
        }
    }

    /// Accepts `key` as known without reading it: a setting another service reads (the
    /// projection service's `massDeletionGuard`).
    pub(crate) fn belongs_elsewhere(&mut self, key: &'static str) {
        self.read.insert(key);
    }

    fn node(&mut self, key: &'static str) -> Option<&'a Node> {
        self.read.insert(key);
        self.connector.settings.get(key)
    }

    /// An optional string setting.
    pub(crate) fn string(&mut self, key: &'static str) -> Result<Option<String>, SettingsError> {
        match self.node(key).map(|n| &n.kind) {
            None | Some(NodeKind::Null) => Ok(None),
            Some(NodeKind::String(s)) if s.trim().is_empty() => {
                Err(self.error(format!("`{key}` is empty")))
            }
            Some(NodeKind::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(other) => Err(self.error(format!(
                "`{key}` must be a string, found {}",
                other.describe()
            ))),
        }
    }

    /// A required string setting.
    pub(crate) fn required_string(&mut self, key: &'static str) -> Result<String, SettingsError> {
        self.string(key)?
            .ok_or_else(|| self.error(format!("`{key}` is required")))
    }

    /// An optional boolean setting.
    pub(crate) fn bool(&mut self, key: &'static str) -> Result<Option<bool>, SettingsError> {
        match self.node(key).map(|n| &n.kind) {
            None | Some(NodeKind::Null) => Ok(None),
            Some(NodeKind::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(format!(
                "`{key}` must be true or false, found {}",
                other.describe()
            ))),
        }
    }

    /// An optional positive integer setting.
    pub(crate) fn positive(&mut self, key: &'static str) -> Result<Option<u32>, SettingsError> {
        match self.node(key).map(|n| &n.kind) {
            None | Some(NodeKind::Null) => Ok(None),
            Some(NodeKind::Integer(i)) => match u32::try_from(*i) {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(self.error(format!("`{key}` must be a positive integer, found {i}"))),
            },
            Some(other) => Err(self.error(format!(
                "`{key}` must be a positive integer, found {}",
                other.describe()
            ))),
        }
    }

    /// An optional duration setting: `500ms`, `10s`, `2m`.
    pub(crate) fn duration(
        &mut self,
        key: &'static str,
    ) -> Result<Option<Duration>, SettingsError> {
        match self.string(key)? {
            None => Ok(None),
            Some(text) => parse_duration(&text).map(Some).ok_or_else(|| {
                self.error(format!(
                    "`{key}` must be a duration such as 500ms, 10s or 2m, found `{text}`"
                ))
            }),
        }
    }

    /// An optional list of strings; a single string reads as a list of one.
    pub(crate) fn strings(
        &mut self,
        key: &'static str,
    ) -> Result<Option<Vec<String>>, SettingsError> {
        match self.node(key).map(|n| &n.kind) {
            None | Some(NodeKind::Null) => Ok(None),
            Some(NodeKind::String(s)) => Ok(Some(vec![s.trim().to_owned()])),
            Some(NodeKind::Seq(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match &item.kind {
                        NodeKind::String(s) if !s.trim().is_empty() => {
                            out.push(s.trim().to_owned());
                        }
                        other => {
                            return Err(self.error(format!(
                                "`{key}` must be a list of non-empty strings, found {} in it",
                                other.describe()
                            )));
                        }
                    }
                }
                Ok(Some(out))
            }
            Some(other) => Err(self.error(format!(
                "`{key}` must be a list of strings, found {}",
                other.describe()
            ))),
        }
    }

    /// A secret read from the environment variable that the setting `key` names.
    pub(crate) fn secret_env(
        &mut self,
        key: &'static str,
    ) -> Result<Option<String>, SettingsError> {
        let Some(variable) = self.string(key)? else {
            return Ok(None);
        };
        if variable.starts_with(mesh_runtime::config::ENV_PREFIX) {
            return Err(self.error(format!(
                "`{key}` names {variable}, but meshd reads every {}* variable as a configuration \
                 key; choose a name without that prefix",
                mesh_runtime::config::ENV_PREFIX
            )));
        }
        match (self.env)(&variable) {
            Some(value) if !value.is_empty() => Ok(Some(value)),
            _ => Err(SettingsError {
                missing_variable: Some(variable.clone()),
                ..self.error(format!(
                    "`{key}` names the environment variable {variable}, which is not set"
                ))
            }),
        }
    }

    /// Refuses a setting that would put a secret in the rules.
    pub(crate) fn forbid_inline_secret(
        &mut self,
        key: &'static str,
        instead: &str,
    ) -> Result<(), SettingsError> {
        if self.node(key).is_some() {
            return Err(self.error(format!(
                "`{key}` would put a secret in the rules; put it in an environment variable and \
                 name that with `{instead}`"
            )));
        }
        Ok(())
    }

    /// Refuses every key that no reader asked for.
    pub(crate) fn finish(self) -> Result<(), SettingsError> {
        let unknown: Vec<&str> = self
            .connector
            .settings
            .keys()
            .map(String::as_str)
            .filter(|k| !self.read.contains(k))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let known: Vec<&str> = self.read.iter().copied().collect();
        Err(self.error(format!(
            "unknown setting{} {} (a {} target reads {})",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", "),
            self.connector.kind.as_str(),
            known.join(", ")
        )))
    }
}

/// Parses `500ms`, `10s`, `2m` or `1h`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (!duration.is_zero()).then_some(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("soon"), None);
    }
}
