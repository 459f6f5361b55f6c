//! The keys that sign tokens, each with an id (`kid`) so that a token names the key that checks
//! it, and so that keys can rotate without downtime: a new key signs from now on, the old ones
//! keep checking the tokens they signed until those expire, then they are dropped.
//!
//! This module only holds and checks keys; reading them from `auth.json` or the environment is
//! the binary's work (`src/keys.rs`).

use serde::{Deserialize, Serialize};

/// A secret shorter than this is refused: an HMAC key must resist guessing.
pub const MIN_SECRET_BYTES: usize = 16;

/// One key that signs and checks tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    /// Named in each token's header (`kid`), so the checker picks this key.
    pub kid: String,
    /// The HMAC-SHA256 secret (any string of at least [`MIN_SECRET_BYTES`] bytes).
    pub secret: String,
    /// Unix seconds when the key was made.
    #[serde(default)]
    pub created_at: i64,
    /// Unix seconds after which the key checks nothing any more (set when a newer key takes
    /// over signing: the longest lifetime of a token it may have signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<i64>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("retire_at", &self.retire_at)
            .finish_non_exhaustive()
    }
}

/// The keys of a deployment: the first signs, all of them check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    pub keys: Vec<SigningKey>,
}

/// Why a set of keys, or the operator key, cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no token signing key: set EMPORIUM_TOKEN_SECRET, or let Emporium make one in auth.json"
    )]
    NoKeys,
    #[error(
        "token key {kid:?}: the secret is {len} bytes; at least {MIN_SECRET_BYTES} are needed (an empty or short secret would let anyone forge tokens)"
    )]
    ShortSecret { kid: String, len: usize },
    #[error("token key ids must be non-empty and unique; {0:?} is not")]
    BadKid(String),
    #[error(
        "the operator key is {0} bytes; at least {MIN_SECRET_BYTES} are needed (an empty key would let anyone in as an operator)"
    )]
    ShortOperatorKey(usize),
    #[error("{0}: expected `kid:secret` pairs separated by commas, the signing key first")]
    BadList(String),
}

impl KeySet {
    /// One key, e.g. from `EMPORIUM_TOKEN_SECRET`.
    pub fn single(kid: &str, secret: &str) -> Self {
        Self {
            keys: vec![SigningKey {
                kid: kid.to_owned(),
                secret: secret.to_owned(),
                created_at: 0,
                retire_at: None,
            }],
        }
    }

    /// `kid:secret,kid:secret,…` (the signing key first), as `EMPORIUM_TOKEN_KEYS` holds them
    /// in a deployment that rotates keys by rolling restarts.
    pub fn parse_list(list: &str) -> Result<Self, KeyError> {
        let keys = list
            .split(',')
            .map(|pair| {
                let (kid, secret) = pair
                    .split_once(':')
                    .ok_or_else(|| KeyError::BadList("EMPORIUM_TOKEN_KEYS".into()))?;
                Ok(SigningKey {
                    kid: kid.trim().to_owned(),
                    secret: secret.trim().to_owned(),
                    created_at: 0,
                    retire_at: None,
                })
            })
            .collect::<Result<Vec<_>, KeyError>>()?;
        let set = Self { keys };
        set.check()?;
        Ok(set)
    }

    /// A new key made from the OS's randomness.
    pub fn generate(now: i64) -> Self {
        Self {
            keys: vec![new_key(now)],
        }
    }

    /// Refuses an empty set, short secrets, and missing or repeated ids.
    pub fn check(&self) -> Result<(), KeyError> {
        if self.keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        let mut seen = std::collections::HashSet::new();
        for key in &self.keys {
            if key.kid.is_empty() || !seen.insert(key.kid.as_str()) {
                return Err(KeyError::BadKid(key.kid.clone()));
            }
            if key.secret.len() < MIN_SECRET_BYTES {
                return Err(KeyError::ShortSecret {
                    kid: key.kid.clone(),
                    len: key.secret.len(),
                });
            }
        }
        Ok(())
    }

    /// The key that signs new tokens.
    pub fn signing(&self) -> Option<&SigningKey> {
        self.keys.first()
    }

    /// A new signing key; the keys before it keep checking tokens for `keep_secs` more (the
    /// longest lifetime of a token they may have signed), then [`KeySet::prune`] drops them.
    pub fn rotate(&mut self, now: i64, keep_secs: i64) -> &SigningKey {
        let until = now.saturating_add(keep_secs);
        for key in &mut self.keys {
            key.retire_at = Some(key.retire_at.map_or(until, |at| at.min(until)));
        }
        self.keys.insert(0, new_key(now));
        &self.keys[0]
    }

    /// Drops the keys retired before `now` (never the signing key).
    pub fn prune(&mut self, now: i64) {
        let mut first = true;
        self.keys.retain(|key| {
            let keep = first || key.retire_at.is_none_or(|at| at > now);
            first = false;
            keep
        });
    }
}

fn new_key(now: i64) -> SigningKey {
    let id: [u8; 6] = rand::random();
    SigningKey {
        kid: format!("k-{}", hex(&id)),
        secret: random_key(),
        created_at: now,
        retire_at: None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random secret or key: 32 bytes from the OS, base64url.
pub fn random_key() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Refuses an empty or short operator key.
pub fn check_operator_key(key: &str) -> Result<(), KeyError> {
    if key.len() < MIN_SECRET_BYTES {
        return Err(KeyError::ShortOperatorKey(key.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_short_secrets_are_refused() {
        assert_eq!(KeySet { keys: vec![] }.check(), Err(KeyError::NoKeys));
        assert!(matches!(
            KeySet::single("env", "").check(),
            Err(KeyError::ShortSecret { len: 0, .. })
        ));
        assert!(KeySet::single("env", &"x".repeat(16)).check().is_ok());
        assert_eq!(check_operator_key(""), Err(KeyError::ShortOperatorKey(0)));
        assert!(KeySet::parse_list("a:0123456789abcdef,a:0123456789abcdef").is_err());
        assert!(KeySet::parse_list("no-colon").is_err());
        let set = KeySet::parse_list("new:0123456789abcdefXX, old:fedcba9876543210").expect("list");
        assert_eq!(set.signing().map(|k| k.kid.as_str()), Some("new"));
        assert_eq!(set.keys[1].secret, "fedcba9876543210");
    }

    #[test]
    fn rotation_keeps_old_keys_until_their_tokens_expire() {
        let mut set = KeySet::generate(1_000);
        let first = set.keys[0].kid.clone();
        let second = set.rotate(2_000, 500).kid.clone();
        assert_ne!(first, second);
        assert_eq!(set.signing().map(|k| k.kid.clone()), Some(second.clone()));
        set.prune(2_499);
        assert_eq!(set.keys.len(), 2, "the old key still checks its tokens");
        set.prune(2_500);
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].kid, second);
        set.check().expect("a generated set is usable");
    }
}
