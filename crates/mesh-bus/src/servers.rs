//! The server list of `nats.url`: comma-separated URLs, with their user-info taken out.
//!
//! async-nats (0.51) takes one address per string, so `nats://a:4222,nats://b:4222` has to be
//! split before it is handed over. It also ignores a URL's user-info when it authenticates (only
//! its options count), and logs each server address at debug level with `{:?}`, password
//! included. So the servers go to it without user-info, and the credentials as options:
//! `user:password@` as user and password, a lone `token@` as a token (the NATS URL convention),
//! both percent-decoded. One connection authenticates one way: servers that carry different
//! credentials are refused.

use std::fmt;

/// Credentials found in the user-info of the server URLs.
#[derive(Clone, PartialEq, Eq)]
pub enum UrlAuth {
    /// `user:password@host`.
    UserPassword(String, String),
    /// `token@host`.
    Token(String),
}

impl fmt::Debug for UrlAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UserPassword(user, _) => write!(f, "UserPassword({user:?}, \"***\")"),
            Self::Token(_) => f.write_str("Token(\"***\")"),
        }
    }
}

/// The servers of `urls` without user-info, and the credentials they carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Servers {
    /// One URL per server, as written minus the user-info.
    pub urls: Vec<String>,
    /// The credentials, when some server carried them.
    pub auth: Option<UrlAuth>,
}

/// Why a server list was refused. Carries no credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServersError {
    /// Nothing but commas and spaces.
    #[error("no NATS server URL given")]
    Empty,
    /// Two servers carry different credentials.
    #[error(
        "the NATS server URLs carry different credentials; one connection authenticates one way"
    )]
    MixedCredentials,
}

/// Splits `urls` (comma-separated) into servers and credentials.
pub fn parse(urls: &str) -> Result<Servers, ServersError> {
    let mut servers = Vec::new();
    let mut auth: Option<UrlAuth> = None;
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, url),
        };
        // The authority ends at the first '/', '?' or '#'; user-info ends at its last '@'.
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, authority),
        };
        let found =
            userinfo
                .filter(|u| !u.is_empty())
                .map(|userinfo| match userinfo.split_once(':') {
                    Some((user, password)) => {
                        UrlAuth::UserPassword(percent_decode(user), percent_decode(password))
                    }
                    None => UrlAuth::Token(percent_decode(userinfo)),
                });
        if let Some(found) = found {
            match &auth {
                Some(known) if *known != found => return Err(ServersError::MixedCredentials),
                _ => auth = Some(found),
            }
        }
        servers.push(match scheme {
            Some(scheme) => format!("{scheme}://{host}{tail}"),
            None => format!("{host}{tail}"),
        });
    }
    if servers.is_empty() {
        return Err(ServersError::Empty);
    }
    Ok(Servers {
        urls: servers,
        auth,
    })
}

/// Decodes `%XX` escapes; anything else (a stray `%` included) stays as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_lose_their_user_info_and_keep_the_rest() {
        let servers = parse(" nats://mesh:p%40ss%3Aw@a:4222, tls://b:4223/x ,c:4224,").unwrap();
        assert_eq!(servers.urls, ["nats://a:4222", "tls://b:4223/x", "c:4224"]);
        assert_eq!(
            servers.auth,
            Some(UrlAuth::UserPassword("mesh".into(), "p@ss:w".into()))
        );
        let token = parse("nats://s3cr3t@a:4222,nats://s3cr3t@b:4222").unwrap();
        assert_eq!(token.auth, Some(UrlAuth::Token("s3cr3t".into())));
        assert_eq!(token.urls, ["nats://a:4222", "nats://b:4222"]);
        let plain = parse("nats://127.0.0.1:4222").unwrap();
        assert_eq!(plain.auth, None);
        assert_eq!(plain.urls, ["nats://127.0.0.1:4222"]);
    }

    #[test]
    fn different_credentials_and_empty_lists_are_refused_without_echoing_them() {
        let error = parse("nats://u:pw-first@a:4222,nats://u:pw-second@b:4222").unwrap_err();
        assert_eq!(error, ServersError::MixedCredentials);
        assert!(!error.to_string().contains("pw-"), "{error}");
        assert_eq!(parse(" , ").unwrap_err(), ServersError::Empty);
    }

    #[test]
    fn debug_hides_the_secret_parts() {
        let shown = format!(
            "{:?} {:?}",
            UrlAuth::UserPassword("mesh".into(), "hunter2".into()),
            UrlAuth::Token("hunter3".into())
        );
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("mesh"), "{shown}");
    }

    #[test]
    fn percent_decoding_leaves_malformed_escapes_alone() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
    }
}
