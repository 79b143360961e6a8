//! Bearer tokens checked against stored SHA-256 digests: the SCIM endpoints and HR uploads of
//! the connector agent (HTTP), AccessDecision and MeshQuery/RuleAdmin (gRPC, [`GrpcBearer`])
//! share this.
//!
//! A token is never stored, only its digest; every digest is compared, in time independent of
//! where they differ, so the answer does not reveal which one matched or how close a guess was.

use sha2::{Digest, Sha256};

/// Returns the token of an `Authorization` value `Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Returns true when the SHA-256 of `token` is one of `digests`.
pub fn token_matches(token: &str, digests: &[[u8; 32]]) -> bool {
    matching_digest(token, digests).is_some()
}

/// Returns the configured digest `token` matches, if any: what identifies a caller (a rate
/// limit's key, say) without keeping the token. Every digest is compared, as in
/// [`token_matches`].
pub fn matching_digest(token: &str, digests: &[[u8; 32]]) -> Option<[u8; 32]> {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let found = digests.iter().fold(false, |found, d| {
        let diff = d.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        found | (diff == 0)
    });
    found.then_some(digest)
}

/// Reads hex SHA-256 digests from the setting named `setting` (`risk.token_sha256`);
/// refuses a malformed one, naming its index.
pub fn parse_digests(hex_digests: &[String], setting: &str) -> Result<Vec<[u8; 32]>, String> {
    hex_digests
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut digest)
                .map(|()| digest)
                .map_err(|_| {
                    format!("{setting}[{i}] is not a SHA-256 digest in hex (64 characters)")
                })
        })
        .collect()
}

/// A gRPC interceptor that requires `authorization: Bearer <token>` whose SHA-256 is one of
/// the configured digests; with none configured, every call passes.
#[derive(Debug, Clone)]
pub struct GrpcBearer {
    digests: std::sync::Arc<Vec<[u8; 32]>>,
    setting: &'static str,
}

impl GrpcBearer {
    /// Checks against `hex_digests`, read from the setting `setting` (named in errors).
    pub fn new(hex_digests: &[String], setting: &'static str) -> Result<Self, String> {
        Ok(Self {
            digests: std::sync::Arc::new(parse_digests(hex_digests, setting)?),
            setting,
        })
    }

    /// True when no token is required.
    pub fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    /// Passes `request` when it carries an accepted token.
    #[allow(clippy::result_large_err)]
    pub fn check(&self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if self.digests.is_empty() {
            return Ok(request);
        }
        let Some(token) = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
        else {
            return Err(tonic::Status::unauthenticated(format!(
                "missing `authorization: Bearer <token>`; the server requires one of the tokens in {}",
                self.setting
            )));
        };
        if token_matches(token, &self.digests) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated(format!(
                "the bearer token is not accepted (its SHA-256 is not in {})",
                self.setting
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_token_matches_and_others_do_not() {
        let digests = [
            Sha256::digest(b"secret").into(),
            Sha256::digest(b"other").into(),
        ];
        assert!(token_matches("secret", &digests));
        assert!(!token_matches("secre", &digests));
        assert!(!token_matches("secret", &[]));
        assert_eq!(matching_digest("other", &digests), Some(digests[1]));
        assert_eq!(matching_digest("none", &digests), None);
    }

    #[test]
    fn digests_are_64_hex_characters() {
        let good = "ab".repeat(32);
        assert_eq!(parse_digests(&[good], "x").unwrap()[0], [0xab; 32]);
        let error = parse_digests(&["zz".repeat(32)], "query.token_sha256").unwrap_err();
        assert!(error.contains("query.token_sha256[0]"), "{error}");
        assert!(parse_digests(&["ab".into()], "x").is_err());
    }

    #[test]
    fn only_the_bearer_scheme_gives_a_token() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("  bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
