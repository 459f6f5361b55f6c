//! Who is asking: shoppers carry a bearer token naming their user id, signed by the platform
//! (HMAC-SHA256 over the user id with a server secret); operators carry the operator key. The
//! token is checked without a lookup, so authorization costs a hash, not a round trip.
//!
//! Token format: `v1.<user id, base64url>.<HMAC-SHA256(secret, "v1." + user id), base64url>`.
//! `emporium token --user ID` mints one. A token never expires in this version (a shop would add
//! an expiry and a key id for rotation: see ADR 0007).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Shopper(String),
    Operator,
}

impl Principal {
    /// May this principal read what belongs to `user_id`?
    pub fn may_read(&self, user_id: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Shopper(me) => me == user_id,
        }
    }
}

/// Why a request is not authenticated (always a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header: expected `Authorization: Bearer <token>`")]
    Missing,
    #[error("Authorization header: expected `Bearer <token>`")]
    NotBearer,
    #[error("bearer token: expected `v1.<user>.<signature>` signed by this platform")]
    Invalid,
}

/// Mints and checks tokens.
#[derive(Clone)]
pub struct Authenticator {
    /// HMAC keyed with the secret once: each token then costs a copy of this state and the
    /// hashing of its user id, not the two extra key-pad compressions of keying it again.
    keyed: HmacSha256,
    operator_key: String,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    /// `secret` signs shopper tokens; `operator_key` is the operators' bearer token.
    pub fn new(secret: impl Into<Vec<u8>>, operator_key: impl Into<String>) -> Self {
        Self {
            keyed: HmacSha256::new_from_slice(&secret.into())
                .expect("invariant: HMAC takes a key of any length"),
            operator_key: operator_key.into(),
        }
    }

    fn mac(&self, user_id: &str) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(b"v1.");
        mac.update(user_id.as_bytes());
        mac
    }

    /// The operators' bearer token.
    pub fn operator_key(&self) -> &str {
        &self.operator_key
    }

    /// A shopper token for `user_id`.
    pub fn token_for(&self, user_id: &str) -> String {
        let sig = self.mac(user_id).finalize().into_bytes();
        format!(
            "v1.{}.{}",
            URL_SAFE_NO_PAD.encode(user_id),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    /// The principal of an `Authorization` header value (`None`: no header).
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::NotBearer)?
            .trim();
        if constant_time_eq(token.as_bytes(), self.operator_key.as_bytes()) {
            return Ok(Principal::Operator);
        }
        let mut parts = token.split('.');
        let (Some("v1"), Some(user), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Invalid);
        };
        let user = URL_SAFE_NO_PAD
            .decode(user)
            .ok()
            .and_then(|u| String::from_utf8(u).ok())
            .ok_or(AuthError::Invalid)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| AuthError::Invalid)?;
        // `verify_slice` compares in constant time.
        self.mac(&user)
            .verify_slice(&sig)
            .map_err(|_| AuthError::Invalid)?;
        Ok(Principal::Shopper(user))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random secret or key: 32 bytes from the OS, base64url.
pub fn random_key() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new("s3cret", "op-key")
    }

    #[test]
    fn a_minted_token_names_its_user() {
        let a = auth();
        let t = a.token_for("u-42");
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {t}"))),
            Ok(Principal::Shopper("u-42".into()))
        );
        assert_eq!(
            a.authenticate(Some("Bearer op-key")),
            Ok(Principal::Operator)
        );
    }

    #[test]
    fn forged_or_malformed_tokens_are_refused() {
        let a = auth();
        let other = Authenticator::new("other secret", "op-key").token_for("u-42");
        let t = a.token_for("u-42");
        // Same signature, another user.
        let sig = t.rsplit('.').next().unwrap_or_default();
        let swapped = format!("v1.{}.{sig}", URL_SAFE_NO_PAD.encode("u-43"));
        assert_eq!(a.authenticate(None), Err(AuthError::Missing));
        assert_eq!(a.authenticate(Some(&t)), Err(AuthError::NotBearer));
        for bad in [
            other,
            swapped,
            "v1.x".into(),
            format!("{t}.x"),
            "op-ke".into(),
        ] {
            assert_eq!(
                a.authenticate(Some(&format!("Bearer {bad}"))),
                Err(AuthError::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn shoppers_read_only_their_own() {
        assert!(Principal::Shopper("a".into()).may_read("a"));
        assert!(!Principal::Shopper("a".into()).may_read("b"));
        assert!(Principal::Operator.may_read("b"));
    }
}
