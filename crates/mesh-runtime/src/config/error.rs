//! Configuration errors that name the bad key and where its value came from.

use std::fmt;
use std::path::PathBuf;

use figment::error::{Actual, Kind};
use figment::{Figment, Metadata, Source};

use super::ENV_PREFIX;

/// Why the configuration could not be loaded. The service must not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file given explicitly does not exist or is not a file.
    #[error("config: file {} does not exist", path.display())]
    MissingFile {
        /// The path that was given.
        path: PathBuf,
    },
    /// One or more keys are unknown, have the wrong type or an invalid value.
    #[error("{}", render(problems))]
    Invalid {
        /// Every problem found, in the order figment reported them.
        problems: Vec<ConfigProblem>,
    },
}

fn render(problems: &[ConfigProblem]) -> String {
    let parts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    format!("config: {}", parts.join("; "))
}

/// One problem in the configuration, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key (`bus.batch_size`); empty when the problem is about a whole source.
    pub key: String,
    /// Where the value came from: `/etc/mesh.toml`, `MESH_BUS__BATCH_SIZE`, ...
    pub origin: Option<String>,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// What is wrong with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The key is not part of the configuration; `expected` lists the keys of its section.
    UnknownKey {
        /// The keys the section accepts.
        expected: Vec<String>,
    },
    /// The value has the wrong type (a string where an integer belongs).
    InvalidType {
        /// What was expected.
        expected: String,
        /// What was found, `None` when the key is secret and the value must not be shown.
        found: Option<String>,
    },
    /// The value has the right type but is not acceptable (an unknown log format).
    InvalidValue {
        /// What was expected.
        expected: String,
        /// What was found, `None` when the key is secret and the value must not be shown.
        found: Option<String>,
    },
    /// Anything else (a TOML syntax error, a failed cross-field check).
    Other(String),
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = |prep: &str| match &self.origin {
            Some(origin) => format!(" {prep} {origin}"),
            None => String::new(),
        };
        match &self.kind {
            ProblemKind::UnknownKey { expected } => {
                write!(f, "unknown key {:?}{}", self.key, origin("in"))?;
                if !expected.is_empty() {
                    write!(f, "; expected one of {}", expected.join(", "))?;
                }
                Ok(())
            }
            ProblemKind::InvalidType { expected, found }
            | ProblemKind::InvalidValue { expected, found } => {
                let what = match self.kind {
                    ProblemKind::InvalidType { .. } => "type",
                    _ => "value",
                };
                write!(
                    f,
                    "invalid {what} for {:?}{}: expected {expected}",
                    self.key,
                    origin("from")
                )?;
                match found {
                    Some(found) => write!(f, ", found {found}"),
                    None => write!(f, " (value not shown: secret)"),
                }
            }
            ProblemKind::Other(message) if self.key.is_empty() => {
                write!(
                    f,
                    "{}{message}",
                    self.origin
                        .as_ref()
                        .map(|o| format!("{o}: "))
                        .unwrap_or_default()
                )
            }
            ProblemKind::Other(message) => {
                write!(f, "{:?}{}: {message}", self.key, origin("from"))
            }
        }
    }
}

/// Key names whose values are never echoed in errors.
fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    ["token", "password", "secret", "url", "seed"]
        .iter()
        .any(|s| last.contains(s))
}

impl ConfigError {
    /// Turns every error figment chained together into a [`ConfigProblem`].
    pub(crate) fn from_figment(error: figment::Error) -> Self {
        let problems = error.into_iter().map(problem_from_figment).collect();
        ConfigError::Invalid { problems }
    }

    /// Builds the error for failed cross-field checks, looking up where each key came from.
    pub(crate) fn from_checks(figment: &Figment, checks: Vec<(String, String)>) -> Self {
        let problems = checks
            .into_iter()
            .map(|(key, message)| ConfigProblem {
                origin: figment
                    .find_metadata(&key)
                    .and_then(|md| origin_of(md, &key)),
                key,
                kind: ProblemKind::Other(message),
            })
            .collect();
        ConfigError::Invalid { problems }
    }

    /// Returns the problems, empty for [`ConfigError::MissingFile`].
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid { problems } => problems,
            ConfigError::MissingFile { .. } => &[],
        }
    }
}

fn problem_from_figment(error: figment::Error) -> ConfigProblem {
    let mut path = error.path.clone();
    let kind = match &error.kind {
        Kind::UnknownField(field, expected) => {
            // figment already ends the path with the unknown field; serde alone would not.
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            ProblemKind::UnknownKey {
                expected: expected.iter().map(|s| (*s).to_owned()).collect(),
            }
        }
        Kind::UnknownVariant(variant, expected) => ProblemKind::InvalidValue {
            expected: format!("one of {}", expected.join(", ")),
            found: Some(format!("{variant:?}")),
        },
        Kind::InvalidType(actual, expected) => ProblemKind::InvalidType {
            expected: expected.clone(),
            found: Some(describe(actual)),
        },
        Kind::InvalidValue(actual, expected) => ProblemKind::InvalidValue {
            expected: expected.clone(),
            found: Some(describe(actual)),
        },
        Kind::InvalidLength(len, expected) => ProblemKind::InvalidValue {
            expected: expected.clone(),
            found: Some(format!("{len} elements")),
        },
        Kind::MissingField(field) => {
            if path.last().map(String::as_str) != Some(field.as_ref()) {
                path.push(field.to_string());
            }
            ProblemKind::Other("missing".to_owned())
        }
        other => ProblemKind::Other(other.to_string()),
    };
    let key = path.join(".");
    let kind = match kind {
        ProblemKind::InvalidType { expected, .. } if is_secret_key(&key) => {
            ProblemKind::InvalidType {
                expected,
                found: None,
            }
        }
        ProblemKind::InvalidValue { expected, .. } if is_secret_key(&key) => {
            ProblemKind::InvalidValue {
                expected,
                found: None,
            }
        }
        kind => kind,
    };
    ConfigProblem {
        origin: error.metadata.as_ref().and_then(|md| origin_of(md, &key)),
        key,
        kind,
    }
}

/// Names a value's origin: the file path, or the environment variable that holds the key.
fn origin_of(metadata: &Metadata, key: &str) -> Option<String> {
    match &metadata.source {
        Some(Source::File(path)) => Some(path.display().to_string()),
        Some(Source::Code(_)) => None,
        Some(Source::Custom(custom)) => Some(custom.clone()),
        Some(_) => Some(metadata.name.to_string()),
        None if metadata.name.contains("environment") => Some(env_var_for(key)),
        None => Some(metadata.name.to_string()),
    }
}

/// Returns the environment variable that sets `key` (`bus.batch_size` -> `MESH_BUS__BATCH_SIZE`).
pub fn env_var_for(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

fn describe(actual: &Actual) -> String {
    match actual {
        Actual::Str(s) => format!("{s:?}"),
        Actual::Bool(b) => format!("boolean {b}"),
        Actual::Unsigned(n) => format!("integer {n}"),
        Actual::Signed(n) => format!("integer {n}"),
        Actual::Float(n) => format!("float {n}"),
        Actual::Seq => "a list".to_owned(),
        Actual::Map => "a table".to_owned(),
        other => other.to_string(),
    }
}
