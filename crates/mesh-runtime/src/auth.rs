//! Bearer tokens checked against stored SHA-256 digests: the SCIM endpoints and HR uploads of
//! the connector agent (HTTP) and AccessDecision (gRPC) share this.
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
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    digests.iter().fold(false, |found, d| {
        let diff = d.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        found | (diff == 0)
    })
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
