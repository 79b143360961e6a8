//! An LDAP directory as a target (written against OpenLDAP; Active Directory differences are
//! in docs/provisioning.md).
//!
//! The container is the DN of the OU that holds the entries; an entry's DN is
//! `<rdnAttribute>=<value>,<container>` (`uid` by default), the value taken from the command's
//! attributes and escaped (RFC 4514). The DN is the target object id. Target attributes are
//! LDAP attribute descriptions; a list is a multi-valued attribute, a boolean is `TRUE` or
//! `FALSE`, a timestamp is GeneralizedTime (`20240131120000Z`).
//!
//! - create: add the entry with `objectClasses` (default `inetOrgPerson` and its superiors);
//!   if it exists (`entryAlreadyExists`), adopt it: replace the attributes whose values
//!   differ, delete the ones the create carries as null, enable it.
//! - update: read the entry, replace the attributes whose values differ, delete the ones set
//!   to null; a new RDN value renames the entry (modify DN) first. Nothing differing is
//!   already applied.
//! - disable: set `disableAttribute` to `disableValue` (by default OpenLDAP's permanent
//!   ppolicy lock, `pwdAccountLockedTime: 000001010000Z`, which the ppolicy overlay enforces
//!   at bind when the entry's policy has `pwdLockout: TRUE`). Enable deletes that value.
//! - delete: delete the entry; `noSuchObject` means already deleted.
//!
//! Errors: a connection that cannot be opened or breaks, a timeout, `busy`, `unavailable`,
//! `timeLimitExceeded` and `adminLimitExceeded` are retryable; every other result code
//! (`objectClassViolation`, `invalidCredentials`, `insufficientAccessRights`, ...) is
//! permanent.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Mod, Scope, SearchEntry,
};
use mesh_model::{AttributeName, ExportOperation, Value};

use super::{Common, Outcome, Request, Target, not_known_yet, text_of};
use crate::settings::{Settings, SettingsError};

/// The object classes of a created entry, the default of `objectClasses`.
pub const DEFAULT_OBJECT_CLASSES: &[&str] =
    &["top", "person", "organizationalPerson", "inetOrgPerson"];
/// The default of `disableAttribute`: OpenLDAP ppolicy's lock time.
pub const DEFAULT_DISABLE_ATTRIBUTE: &str = "pwdAccountLockedTime";
/// The default of `disableValue`: locked until an administrator unlocks it.
pub const DEFAULT_DISABLE_VALUE: &str = "000001010000Z";

/// An entry as read: lowercased attribute name -> values.
type Entry = HashMap<String, Vec<String>>;

/// An LDAP directory.
#[derive(Debug)]
pub struct LdapTarget {
    url: String,
    bind_dn: Option<String>,
    password: Option<String>,
    start_tls: bool,
    timeout: Duration,
    container: Option<String>,
    rdn_attribute: String,
    object_classes: Vec<String>,
    disable_attribute: String,
    disable_value: String,
    connection: tokio::sync::Mutex<Option<Ldap>>,
}

/// How to reach and write a directory.
#[derive(Debug, Clone)]
pub struct LdapOptions {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// The DN to bind as; anonymous when none.
    pub bind_dn: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub start_tls: bool,
    /// Connect and operation timeout.
    pub timeout: Duration,
    /// The container of commands that carry none.
    pub container: Option<String>,
    /// The naming attribute (`uid`).
    pub rdn_attribute: String,
    /// The object classes of created entries.
    pub object_classes: Vec<String>,
    /// The attribute disable sets.
    pub disable_attribute: String,
    /// The value disable sets it to.
    pub disable_value: String,
}

impl LdapOptions {
    /// Options with the defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            bind_dn: None,
            password: None,
            start_tls: false,
            timeout: super::DEFAULT_TIMEOUT,
            container: None,
            rdn_attribute: "uid".to_owned(),
            object_classes: DEFAULT_OBJECT_CLASSES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            disable_attribute: DEFAULT_DISABLE_ATTRIBUTE.to_owned(),
            disable_value: DEFAULT_DISABLE_VALUE.to_owned(),
        }
    }
}

impl LdapTarget {
    /// Reads `url`, `bindDn`, `passwordEnv`, `startTls`, `rdnAttribute`, `objectClasses`,
    /// `disableAttribute` and `disableValue`.
    pub(crate) fn from_settings(
        settings: &mut Settings<'_>,
        common: &Common,
    ) -> Result<Self, SettingsError> {
        let url = settings.required_string("url")?;
        if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
            return Err(settings.error(format!("`url` is not an ldap:// or ldaps:// URL: {url}")));
        }
        settings.forbid_inline_secret("password", "passwordEnv")?;
        settings.forbid_inline_secret("bindPassword", "passwordEnv")?;
        let mut options = LdapOptions::new(url);
        options.bind_dn = settings.string("bindDn")?;
        options.password = settings.secret_env("passwordEnv")?;
        if options.bind_dn.is_some() != options.password.is_some() {
            return Err(settings.error("`bindDn` and `passwordEnv` go together"));
        }
        options.start_tls = settings.bool("startTls")?.unwrap_or(false);
        options.timeout = common.timeout;
        options.container = common.container.clone();
        if let Some(rdn) = settings.string("rdnAttribute")? {
            check_attribute(&rdn).map_err(|e| settings.error(format!("`rdnAttribute`: {e}")))?;
            options.rdn_attribute = rdn;
        }
        if let Some(classes) = settings.strings("objectClasses")? {
            options.object_classes = classes;
        }
        if let Some(attribute) = settings.string("disableAttribute")? {
            check_attribute(&attribute)
                .map_err(|e| settings.error(format!("`disableAttribute`: {e}")))?;
            options.disable_attribute = attribute;
        }
        if let Some(value) = settings.string("disableValue")? {
            options.disable_value = value;
        }
        Ok(Self::new(options))
    }

    /// A target with `options`; connects on first use.
    pub fn new(options: LdapOptions) -> Self {
        Self {
            url: options.url,
            bind_dn: options.bind_dn,
            password: options.password,
            start_tls: options.start_tls,
            timeout: options.timeout,
            container: options.container,
            rdn_attribute: options.rdn_attribute,
            object_classes: options.object_classes,
            disable_attribute: options.disable_attribute,
            disable_value: options.disable_value,
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// The open connection, or a new bound one.
    async fn ldap(&self) -> Result<Ldap, Outcome> {
        let mut slot = self.connection.lock().await;
        if let Some(ldap) = slot.as_mut()
            && !ldap.is_closed()
        {
            return Ok(ldap.clone());
        }
        *slot = None;
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.start_tls);
        let (connection, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|e| failure(&format!("connecting to {}", self.url), e))?;
        let url = self.url.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.drive().await {
                tracing::warn!(url = %url, error = %error, "ldap connection closed");
            }
        });
        if let (Some(dn), Some(password)) = (&self.bind_dn, &self.password) {
            let result = ldap
                .with_timeout(self.timeout)
                .simple_bind(dn, password)
                .await
                .map_err(|e| failure(&format!("binding as {dn}"), e))?;
            if result.rc != 0 {
                return Err(result_failure(&format!("binding as {dn}"), &result));
            }
        }
        *slot = Some(ldap.clone());
        Ok(ldap)
    }

    /// Reads `attributes` of the entry `dn`; none when it does not exist.
    async fn read(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        attributes: &[&str],
    ) -> Result<Option<Entry>, Outcome> {
        let mut wanted: Vec<&str> = vec!["objectClass", self.rdn_attribute.as_str()];
        wanted.extend_from_slice(attributes);
        let ldap3::SearchResult(entries, result) = ldap
            .with_timeout(self.timeout)
            .search(dn, Scope::Base, "(objectClass=*)", wanted)
            .await
            .map_err(|e| failure(&format!("reading {dn}"), e))?;
        match result.rc {
            0 => Ok(entries.into_iter().next().map(|entry| {
                SearchEntry::construct(entry)
                    .attrs
                    .into_iter()
                    .map(|(name, values)| (name.to_ascii_lowercase(), values))
                    .collect()
            })),
            NO_SUCH_OBJECT => Ok(None),
            _ => Err(result_failure(&format!("reading {dn}"), &result)),
        }
    }

    fn container<'a>(&'a self, request: &'a Request<'a>) -> Result<&'a str, Outcome> {
        request.container(self.container.as_deref()).ok_or_else(|| {
            Outcome::Permanent(
                "the command names no container (OU) and the connector sets no `container`"
                    .to_owned(),
            )
        })
    }

    /// The DN the command's RDN attribute names in `container`, if it carries one.
    fn dn_for(&self, request: &Request<'_>, container: &str) -> Result<Option<String>, Outcome> {
        match request.command.attributes.get_str(&self.rdn_attribute) {
            None => Ok(None),
            Some(value) => match text_of(value) {
                Some(v) if !v.is_empty() => Ok(Some(format!(
                    "{}={},{container}",
                    self.rdn_attribute,
                    ldap3::dn_escape(v)
                ))),
                _ => Err(Outcome::Permanent(format!(
                    "the naming attribute {} must have a single non-empty value",
                    self.rdn_attribute
                ))),
            },
        }
    }

    /// The carried attributes other than the naming one, validated.
    fn carried<'a>(
        &self,
        request: &'a Request<'a>,
    ) -> Result<Vec<(&'a AttributeName, &'a Value)>, Outcome> {
        let mut out = Vec::with_capacity(request.command.attributes.len());
        for (name, value) in &request.command.attributes {
            check_attribute(name.as_str()).map_err(Outcome::Permanent)?;
            if !name.as_str().eq_ignore_ascii_case(&self.rdn_attribute) {
                out.push((name, value));
            }
        }
        Ok(out)
    }

    /// Replacements for the carried attributes whose values differ from `current`.
    fn modifications(
        &self,
        carried: &[(&AttributeName, &Value)],
        current: &Entry,
    ) -> Vec<Mod<String>> {
        let mut mods = Vec::new();
        for (name, value) in carried {
            let wanted: HashSet<String> = ldap_values(value).into_iter().collect();
            let have: HashSet<String> = current
                .get(&name.as_str().to_ascii_lowercase())
                .map(|values| values.iter().cloned().collect())
                .unwrap_or_default();
            if wanted != have {
                // Replace with no values deletes the attribute, and is no error if it is absent.
                mods.push(Mod::Replace(name.as_str().to_owned(), wanted));
            }
        }
        mods
    }

    async fn modify(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        mods: Vec<Mod<String>>,
    ) -> Result<(), Outcome> {
        let result = ldap
            .with_timeout(self.timeout)
            .modify(dn, mods)
            .await
            .map_err(|e| failure(&format!("modifying {dn}"), e))?;
        match result.rc {
            0 => Ok(()),
            _ => Err(result_failure(&format!("modifying {dn}"), &result)),
        }
    }

    async fn create(&self, request: Request<'_>) -> Outcome {
        let container = match self.container(&request) {
            Ok(container) => container,
            Err(outcome) => return outcome,
        };
        let dn = match self.dn_for(&request, container) {
            Ok(Some(dn)) => dn,
            Ok(None) => {
                return Outcome::Permanent(format!(
                    "a create needs the naming attribute {} among its attributes (an outbound \
                     flow rule targeting it)",
                    self.rdn_attribute
                ));
            }
            Err(outcome) => return outcome,
        };
        let carried = match self.carried(&request) {
            Ok(carried) => carried,
            Err(outcome) => return outcome,
        };
        let mut ldap = match self.ldap().await {
            Ok(ldap) => ldap,
            Err(outcome) => return outcome,
        };
        let mut entry: Vec<(String, HashSet<String>)> = vec![(
            "objectClass".to_owned(),
            self.object_classes.iter().cloned().collect(),
        )];
        for (name, value) in request.command.attributes.iter() {
            let values: HashSet<String> = ldap_values(value).into_iter().collect();
            if !values.is_empty() {
                entry.push((name.as_str().to_owned(), values));
            }
        }
        let result = match ldap.with_timeout(self.timeout).add(&dn, entry).await {
            Ok(result) => result,
            Err(error) => return failure(&format!("adding {dn}"), error),
        };
        match result.rc {
            0 => Outcome::applied(dn),
            ENTRY_ALREADY_EXISTS => self.adopt(&mut ldap, dn, &carried).await,
            _ => result_failure(&format!("adding {dn}"), &result),
        }
    }

    /// Brings an existing entry to the create's values and enables it.
    async fn adopt(
        &self,
        ldap: &mut Ldap,
        dn: String,
        carried: &[(&AttributeName, &Value)],
    ) -> Outcome {
        let mut names: Vec<&str> = carried.iter().map(|(n, _)| n.as_str()).collect();
        names.push(&self.disable_attribute);
        let current = match self.read(ldap, &dn, &names).await {
            Ok(Some(current)) => current,
            Ok(None) => {
                return Outcome::Retryable(format!("{dn} was deleted while it was being adopted"));
            }
            Err(outcome) => return outcome,
        };
        let mut mods = self.modifications(carried, &current);
        mods.extend(self.enable_modification(&current));
        if !mods.is_empty()
            && let Err(outcome) = self.modify(ldap, &dn, mods).await
        {
            return outcome;
        }
        Outcome::already(dn)
    }

    async fn update(&self, request: Request<'_>) -> Outcome {
        let container = match self.container(&request) {
            Ok(container) => container,
            Err(outcome) => return outcome,
        };
        let named = match self.dn_for(&request, container) {
            Ok(named) => named,
            Err(outcome) => return outcome,
        };
        let Some(dn) = request
            .target_object_id
            .map(str::to_owned)
            .or_else(|| named.clone())
        else {
            return not_known_yet();
        };
        let carried = match self.carried(&request) {
            Ok(carried) => carried,
            Err(outcome) => return outcome,
        };
        let mut ldap = match self.ldap().await {
            Ok(ldap) => ldap,
            Err(outcome) => return outcome,
        };
        let (dn, renamed) = match self.rename(&mut ldap, &dn, &request).await {
            Ok(renamed) => renamed,
            Err(outcome) => return outcome,
        };
        let names: Vec<&str> = carried.iter().map(|(n, _)| n.as_str()).collect();
        let current = match self.read(&mut ldap, &dn, &names).await {
            Ok(Some(current)) => current,
            Ok(None) => {
                return Outcome::Permanent(format!("the directory has no entry {dn}"));
            }
            Err(outcome) => return outcome,
        };
        let mods = self.modifications(&carried, &current);
        if mods.is_empty() {
            return if renamed {
                Outcome::applied(dn)
            } else {
                Outcome::already(dn)
            };
        }
        match self.modify(&mut ldap, &dn, mods).await {
            Ok(()) => Outcome::applied(dn),
            Err(outcome) => outcome,
        }
    }

    /// Renames `dn` when the command carries a new value of the naming attribute; returns the
    /// DN to work on and whether this call renamed it.
    async fn rename(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        request: &Request<'_>,
    ) -> Result<(String, bool), Outcome> {
        let Some(value) = request.command.attributes.get_str(&self.rdn_attribute) else {
            return Ok((dn.to_owned(), false));
        };
        let Some(value) = text_of(value).filter(|v| !v.is_empty()) else {
            return Err(Outcome::Permanent(format!(
                "the naming attribute {} cannot be removed",
                self.rdn_attribute
            )));
        };
        let Some((_, parent)) = split_rdn(dn) else {
            return Err(Outcome::Permanent(format!("`{dn}` is not a DN")));
        };
        let rdn = format!("{}={}", self.rdn_attribute, ldap3::dn_escape(value));
        let new_dn = format!("{rdn},{parent}");
        if new_dn.eq_ignore_ascii_case(dn) {
            return Ok((new_dn, false));
        }
        let result = ldap
            .with_timeout(self.timeout)
            .modifydn(dn, &rdn, true, None)
            .await
            .map_err(|e| failure(&format!("renaming {dn}"), e))?;
        match result.rc {
            0 => Ok((new_dn, true)),
            // Renamed before a crash: carry on with the new name.
            NO_SUCH_OBJECT if self.read(ldap, &new_dn, &[]).await?.is_some() => Ok((new_dn, false)),
            _ => Err(result_failure(&format!("renaming {dn} to {rdn}"), &result)),
        }
    }

    /// The modification that enables `current`, if it is disabled.
    fn enable_modification(&self, current: &Entry) -> Option<Mod<String>> {
        let values = current.get(&self.disable_attribute.to_ascii_lowercase())?;
        let disabled = values
            .iter()
            .find(|v| v.eq_ignore_ascii_case(&self.disable_value))?;
        Some(Mod::Delete(
            self.disable_attribute.clone(),
            HashSet::from([disabled.clone()]),
        ))
    }

    async fn set_active(&self, request: Request<'_>, active: bool) -> Outcome {
        let Some(dn) = request.target_object_id else {
            return not_known_yet();
        };
        let mut ldap = match self.ldap().await {
            Ok(ldap) => ldap,
            Err(outcome) => return outcome,
        };
        let current = match self.read(&mut ldap, dn, &[&self.disable_attribute]).await {
            Ok(Some(current)) => current,
            // An entry that is gone gives no access.
            Ok(None) if !active => return Outcome::already(dn),
            Ok(None) => return Outcome::Permanent(format!("the directory has no entry {dn}")),
            Err(outcome) => return outcome,
        };
        let enable = self.enable_modification(&current);
        let modification = match (active, enable) {
            (true, None) | (false, Some(_)) => return Outcome::already(dn),
            (true, Some(enable)) => enable,
            (false, None) => Mod::Replace(
                self.disable_attribute.clone(),
                HashSet::from([self.disable_value.clone()]),
            ),
        };
        match self.modify(&mut ldap, dn, vec![modification]).await {
            Ok(()) => Outcome::applied(dn),
            Err(outcome) => outcome,
        }
    }

    async fn delete(&self, request: Request<'_>) -> Outcome {
        let Some(dn) = request.target_object_id else {
            return not_known_yet();
        };
        let mut ldap = match self.ldap().await {
            Ok(ldap) => ldap,
            Err(outcome) => return outcome,
        };
        match ldap.with_timeout(self.timeout).delete(dn).await {
            Err(error) => failure(&format!("deleting {dn}"), error),
            Ok(result) => match result.rc {
                0 => Outcome::applied(dn),
                NO_SUCH_OBJECT => Outcome::already(dn),
                _ => result_failure(&format!("deleting {dn}"), &result),
            },
        }
    }
}

impl Target for LdapTarget {
    fn apply<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Outcome> {
        async move {
            match request.command.operation {
                ExportOperation::Create => self.create(request).await,
                ExportOperation::Update => self.update(request).await,
                ExportOperation::Disable => self.set_active(request, false).await,
                ExportOperation::Enable => self.set_active(request, true).await,
                ExportOperation::Delete => self.delete(request).await,
            }
        }
        .boxed()
    }
}

const NO_SUCH_OBJECT: u32 = 32;
const ENTRY_ALREADY_EXISTS: u32 = 68;

/// timeLimitExceeded, adminLimitExceeded, busy, unavailable, and the client-side codes for a
/// server that is down or did not answer (serverDown, timeout, connectError).
const RETRYABLE_CODES: &[u32] = &[3, 11, 51, 52, 81, 85, 91];

/// Classifies a result code other than success.
fn result_failure(what: &str, result: &LdapResult) -> Outcome {
    let message = format!("{what}: {result}");
    if RETRYABLE_CODES.contains(&result.rc) {
        Outcome::Retryable(message)
    } else {
        Outcome::Permanent(message)
    }
}

/// Classifies a client error: a bad URL is permanent, a failed or broken connection retryable.
fn failure(what: &str, error: LdapError) -> Outcome {
    match error {
        LdapError::LdapResult { result } => result_failure(what, &result),
        LdapError::UrlParsing { .. }
        | LdapError::UnknownScheme(_)
        | LdapError::EmptyUnixPath
        | LdapError::PortInUnixPath
        | LdapError::AddNoValues
        | LdapError::FilterParsing
        | LdapError::InvalidScopeString(_)
        | LdapError::UnrecognizedCriticalExtension(_) => {
            Outcome::Permanent(format!("{what}: {error}"))
        }
        other => Outcome::Retryable(format!("{what}: {other}")),
    }
}

/// A value as LDAP strings: none for null, one per item of a list.
fn ldap_values(value: &Value) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::List(items) => items.iter().flat_map(ldap_values).collect(),
        Value::Bool(true) => vec!["TRUE".to_owned()],
        Value::Bool(false) => vec!["FALSE".to_owned()],
        Value::Timestamp(t) => vec![t.format("%Y%m%d%H%M%SZ").to_string()],
        other => text_of(other).into_iter().collect(),
    }
}

/// Checks an attribute description: a name (letters, digits, `-`, starting with a letter) or
/// an OID, with options (`;lang-de`).
fn check_attribute(name: &str) -> Result<(), String> {
    let (base, options) = match name.split_once(';') {
        Some((base, options)) => (base, Some(options)),
        None => (name, None),
    };
    let descriptor = base.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let oid = !base.is_empty()
        && base
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let options_ok = options.is_none_or(|o| {
        o.split(';')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    });
    if (descriptor || oid) && options_ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not an LDAP attribute description"))
    }
}

/// Splits a DN into its first RDN and the parent DN, honouring `\,` escapes.
fn split_rdn(dn: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in dn.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => return Some((&dn[..i], dn[i + 1..].trim_start())),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_render_as_ldap_strings() {
        assert_eq!(ldap_values(&Value::Bool(true)), vec!["TRUE"]);
        assert_eq!(
            ldap_values(&Value::List(vec![Value::from("a"), Value::from(2_i64)])),
            vec!["a", "2"]
        );
        let t = chrono::DateTime::parse_from_rfc3339("2024-01-31T12:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(ldap_values(&Value::Timestamp(t)), vec!["20240131120000Z"]);
        assert!(ldap_values(&Value::Null).is_empty());
    }

    #[test]
    fn dns_split_at_the_first_unescaped_comma() {
        assert_eq!(
            split_rdn("uid=a\\,b,ou=people,dc=x"),
            Some(("uid=a\\,b", "ou=people,dc=x"))
        );
        assert_eq!(split_rdn("dc=x"), None);
    }

    #[test]
    fn attribute_descriptions_are_checked() {
        assert!(check_attribute("mail").is_ok());
        assert!(check_attribute("cn;lang-de").is_ok());
        assert!(check_attribute("2.5.4.3").is_ok());
        assert!(check_attribute("name.givenName").is_err());
        assert!(check_attribute("a b").is_err());
    }
}
