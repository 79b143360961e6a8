//! Secret values in the configuration and the redaction of URLs.
//!
//! Invariant: no `Debug` or `Display` of a configuration value prints a password or a token. The
//! only way to the clear text is an explicit `expose()` at the place that hands it to a client.

use std::fmt;

use serde::Deserialize;

/// What a redacted secret prints as.
pub const REDACTED: &str = "***";

/// A secret value (a token, a password) whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// Returns the clear value; call it only where the value goes to the system that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED:?})")
    }
}

/// A connection URL that may carry credentials (`postgres://user:password@host/db`).
///
/// `Debug` and `Display` print [`redacted_url`] of it; [`SecretUrl::expose`] gives the clear text.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// Returns the URL with its credentials, for the client that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Returns the URL with its password, token-like query parameters and NATS token removed.
    pub fn redacted(&self) -> String {
        redacted_url(&self.0)
    }

    /// Returns the scheme (the part before `://`), if any.
    pub fn scheme(&self) -> Option<&str> {
        self.0.split_once("://").map(|(scheme, _)| scheme)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Query parameter names (case-insensitive substrings) whose values are secret.
const SECRET_PARAMS: &[&str] = &["pass", "token", "secret", "nkey", "seed", "auth"];

/// Returns `url` with every credential replaced by `***`, safe to log.
///
/// - the password of the user-info (`postgres://user:***@host`), keeping the user name;
/// - for NATS schemes (`nats`, `tls`, `ws`, `wss`) and URLs without a scheme, a user-info
///   without a colon, which NATS reads as a token (`nats://***@host`);
/// - the values of query parameters whose name contains `pass`, `token`, `secret`, `nkey`,
///   `seed` or `auth` (`?sslpassword=***`).
///
/// Each entry of a comma-separated list (`nats://a:4222,nats://u:p@b:4222`, as `nats.url`
/// allows) is redacted. Works on anything shaped like a URL without parsing it strictly, so
/// that a malformed URL in an error message is still redacted.
pub fn redacted_url(url: &str) -> String {
    // A comma may also sit inside a query value, so the query is redacted on the whole text
    // and the user-info of each entry after.
    let (head, tail) = match url.find('?') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let redacted = format!("{head}{}", redact_query(tail));
    redacted
        .split(',')
        .map(redact_userinfo)
        .collect::<Vec<_>>()
        .join(",")
}

/// Redacts the user-info of one URL (the part of its authority before the last `@`).
fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    // The authority ends at the first '/', '?' or '#'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let userinfo = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:{REDACTED}"),
        None if scheme.is_none_or(is_nats_scheme) => REDACTED.to_owned(),
        None => userinfo.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{userinfo}@{host}{tail}"),
        None => format!("{userinfo}@{host}{tail}"),
    }
}

fn is_nats_scheme(scheme: &str) -> bool {
    ["nats", "tls", "ws", "wss"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme.trim()))
}

fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if is_secret_param(name) => format!("{name}={REDACTED}"),
            _ => param.to_owned(),
        })
        .collect();
    let mut out = format!("{path}?{}", params.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_and_keeps_user() {
        assert_eq!(
            redacted_url("postgres://mesh:hunter2@db:5432/identitymesh"),
            "postgres://mesh:***@db:5432/identitymesh"
        );
        assert_eq!(
            redacted_url("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
    }

    #[test]
    fn leaves_urls_without_credentials_alone() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/identitymesh",
            "nats://127.0.0.1:4222",
            "redis://127.0.0.1:6379",
            "not a url",
        ] {
            assert_eq!(redacted_url(url), url);
        }
    }

    #[test]
    fn redacts_nats_token_userinfo() {
        assert_eq!(
            redacted_url("nats://s3cr3t@nats:4222"),
            "nats://***@nats:4222"
        );
        assert_eq!(redacted_url("tls://u:p@nats:4222"), "tls://u:***@nats:4222");
    }

    #[test]
    fn redacts_every_entry_of_a_server_list() {
        assert_eq!(
            redacted_url("nats://a:4222, nats://u:hunter2@b:4222,tok3n@c:4222,tls://d:1"),
            "nats://a:4222, nats://u:***@b:4222,***@c:4222,tls://d:1"
        );
        assert_eq!(
            redacted_url("postgres://u:hunter2@h1:5432,h2:5432/db"),
            "postgres://u:***@h1:5432,h2:5432/db"
        );
        // A comma inside a query value does not hide the parameters after it.
        assert_eq!(
            redacted_url("postgres://h/db?options=a,b&password=hunter2"),
            "postgres://h/db?options=a,b&password=***"
        );
    }

    #[test]
    fn redacts_secret_query_parameters() {
        assert_eq!(
            redacted_url("postgres://h/db?sslmode=require&password=x&sslpassword=y#frag"),
            "postgres://h/db?sslmode=require&password=***&sslpassword=***#frag"
        );
        // The '@' inside the query is not user-info.
        assert_eq!(
            redacted_url("postgres://h/db?application_name=a@b"),
            "postgres://h/db?application_name=a@b"
        );
    }

    #[test]
    fn debug_and_display_never_show_secrets() {
        let token = Secret::new("hunter2".to_owned());
        assert!(!format!("{token:?}").contains("hunter2"));
        let url = SecretUrl::new("postgres://u:hunter2@h/db");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(!format!("{url}").contains("hunter2"));
        assert_eq!(url.expose(), "postgres://u:hunter2@h/db");
        assert_eq!(url.scheme(), Some("postgres"));
    }
}
