//! Who is asking, on every HTTP surface of Emporium, and what they may do.
//!
//! Three kinds of caller:
//! - **shoppers** carry a token for the read API (audience `emporium-read`) naming their user id:
//!   they read their own orders;
//! - **producers** — the storefront, the order service, the catalog service — carry a token for
//!   ingest (audience `emporium-ingest`) whose scopes name the event types they may append
//!   (ingest maps scopes to types: `ingest/src/producers.rs`);
//! - **operators** carry the operator key: every order, the dead-letter log, SQL.
//!
//! Tokens are JWTs (RFC 7519, HS256) made and checked by the `jsonwebtoken` crate: a key id
//! (`kid`) in the header picks the key (so keys rotate without downtime, [`keys`]), and the
//! claims carry the issuer, the subject, the audience, the issue time and an expiry. A token is
//! checked without a lookup: authorization costs a hash, not a round trip. See
//! `specs/adr/0007-read-api-and-auth.md`.
//!
//! This crate does no I/O: the binary hands it the keys (from `auth.json` or the environment).

pub mod keys;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub use keys::{KeyError, KeySet, SigningKey, random_key};

/// The issuer every Emporium token names.
pub const ISSUER: &str = "emporium";

/// How far a token's expiry may trail this server's clock (clock skew between machines).
const LEEWAY_SECS: u64 = 30;

/// Which surface a token is for: a token for one is refused by the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The read API: shoppers.
    Read,
    /// `POST /v1/events`: producers.
    Ingest,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Read => "emporium-read",
            Audience::Ingest => "emporium-ingest",
        }
    }
}

/// What a producer token allows: one service's event types (ingest maps each to its types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Shopper events: views, searches, cart changes, reviews.
    Storefront,
    /// Order events: placed, cancelled, paid, failed, shipped, delivered, returned.
    Orders,
    /// Catalog and stock events: products, prices, stock received and adjusted.
    Catalog,
    /// Account events: erasure requests (`user_erased`).
    Accounts,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::Storefront,
        Scope::Orders,
        Scope::Catalog,
        Scope::Accounts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Storefront => "storefront",
            Scope::Orders => "orders",
            Scope::Catalog => "catalog",
            Scope::Accounts => "accounts",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Shopper(String),
    Producer { name: String, scopes: Vec<Scope> },
    Operator,
}

impl Principal {
    /// May this principal read what belongs to `user_id`?
    pub fn may_read(&self, user_id: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Shopper(me) => me == user_id,
            Principal::Producer { .. } => false,
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
    #[error("bearer token: not a token this platform issued (a JWT signed with HS256)")]
    Invalid,
    #[error(
        "bearer token: the signature does not match (forged, altered, or signed by another deployment)"
    )]
    BadSignature,
    #[error(
        "bearer token: signed with key {0:?}, which this deployment no longer has (rotated out: mint a new token)"
    )]
    UnknownKey(String),
    #[error("bearer token: expired; mint a new one with `emporium token`")]
    Expired,
    #[error("bearer token: made for {found}, not for {expected}")]
    WrongAudience {
        expected: &'static str,
        found: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    /// Producer scopes, space-separated (OAuth's `scope` claim).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    scope: String,
}

/// Mints and checks tokens; cheap to clone (the keys are shared, and can be replaced while the
/// server runs: [`Authenticator::replace_keys`]).
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<RwLock<Arc<Inner>>>,
}

struct Inner {
    signing: (String, EncodingKey),
    checking: HashMap<String, DecodingKey>,
    operator_key: String,
    /// What every token must satisfy besides its signature: made once, not per request.
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Inner {
    fn new(keys: &KeySet, operator_key: &str) -> Result<Self, KeyError> {
        keys.check()?;
        keys::check_operator_key(operator_key)?;
        let signing = keys.signing().ok_or(KeyError::NoKeys)?;
        // Checked above: every secret is long enough, which is all HMAC needs.
        let short = |k: &SigningKey| KeyError::ShortSecret {
            kid: k.kid.clone(),
            len: k.secret.len(),
        };
        let checking = keys
            .keys
            .iter()
            .map(|k| {
                DecodingKey::from_secret(k.secret.as_bytes())
                    .map(|key| (k.kid.clone(), key))
                    .map_err(|_| short(k))
            })
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(Self {
            signing: (
                signing.kid.clone(),
                EncodingKey::from_secret(signing.secret.as_bytes()).map_err(|_| short(signing))?,
            ),
            checking,
            operator_key: operator_key.to_owned(),
            validation: {
                let mut validation = Validation::new(Algorithm::HS256);
                validation.leeway = LEEWAY_SECS;
                validation.set_issuer(&[ISSUER]);
                // The audience is compared in `authenticate`, to name the one found in the error.
                validation.validate_aud = false;
                validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
                validation
            },
        })
    }
}

impl Authenticator {
    /// `keys` sign and check tokens; `operator_key` is the operators' bearer token. Refuses
    /// empty or short secrets.
    pub fn new(keys: &KeySet, operator_key: &str) -> Result<Self, KeyError> {
        Ok(Self {
            inner: Arc::new(RwLock::new(Arc::new(Inner::new(keys, operator_key)?))),
        })
    }

    /// Takes new keys while serving (after `emporium token rotate`): tokens signed by a key
    /// still in `keys` keep working.
    pub fn replace_keys(&self, keys: &KeySet, operator_key: &str) -> Result<(), KeyError> {
        let inner = Arc::new(Inner::new(keys, operator_key)?);
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = inner;
        Ok(())
    }

    fn current(&self) -> Arc<Inner> {
        Arc::clone(&self.inner.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The operators' bearer token.
    pub fn operator_key(&self) -> String {
        self.current().operator_key.clone()
    }

    /// A read-API token for shopper `user_id`, valid for `ttl`.
    pub fn shopper_token(&self, user_id: &str, ttl: Duration) -> String {
        self.mint(Audience::Read, user_id, &[], now_secs(), ttl)
    }

    /// An ingest token for producer `name`, allowed the event types of `scopes`, valid for `ttl`.
    pub fn producer_token(&self, name: &str, scopes: &[Scope], ttl: Duration) -> String {
        self.mint(Audience::Ingest, name, scopes, now_secs(), ttl)
    }

    fn mint(
        &self,
        audience: Audience,
        subject: &str,
        scopes: &[Scope],
        issued_at: i64,
        ttl: Duration,
    ) -> String {
        let inner = self.current();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(inner.signing.0.clone());
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: subject.to_owned(),
            aud: audience.as_str().to_owned(),
            iat: issued_at,
            exp: issued_at.saturating_add(ttl.as_secs().min(i64::MAX as u64) as i64),
            scope: scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        };
        // Claims of strings and integers always serialize, and HMAC takes any key.
        jsonwebtoken::encode(&header, &claims, &inner.signing.1)
            .expect("invariant: HS256 signs any claims that serialize")
    }

    /// The principal of an `Authorization` header value (`None`: no header), for `audience`.
    /// The operator key is accepted on both surfaces; what it may do there is the route's
    /// decision.
    pub fn authenticate(
        &self,
        header: Option<&str>,
        audience: Audience,
    ) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::NotBearer)?
            .trim();
        let inner = self.current();
        if constant_time_eq(token.as_bytes(), inner.operator_key.as_bytes()) {
            return Ok(Principal::Operator);
        }
        let head = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        if head.alg != Algorithm::HS256 {
            return Err(AuthError::Invalid);
        }
        let kid = head.kid.ok_or(AuthError::Invalid)?;
        let key = inner
            .checking
            .get(&kid)
            .ok_or_else(|| AuthError::UnknownKey(kid.chars().take(64).collect()))?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &inner.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })?
            .claims;
        if claims.aud != audience.as_str() {
            return Err(AuthError::WrongAudience {
                expected: audience.as_str(),
                found: claims.aud.chars().take(64).collect(),
            });
        }
        Ok(match audience {
            Audience::Read => Principal::Shopper(claims.sub),
            Audience::Ingest => Principal::Producer {
                name: claims.sub,
                scopes: claims
                    .scope
                    .split_whitespace()
                    .filter_map(Scope::parse)
                    .collect(),
            },
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses a lifetime such as `90m`, `12h`, `30d` or `3600s` (a bare number is seconds).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a lifetime such as 90m, 12h or 30d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    if secs == 0 {
        return Err(format!("{s:?}: a token must live longer than 0 s"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const HOUR: Duration = Duration::from_secs(3600);

    fn auth() -> Authenticator {
        Authenticator::new(
            &KeySet::single("k1", "0123456789abcdef-secret"),
            "operator-key-0123456",
        )
        .expect("keys")
    }

    fn bearer(t: &str) -> String {
        format!("Bearer {t}")
    }

    #[test]
    fn a_minted_token_names_its_user_or_producer() {
        let a = auth();
        let t = a.shopper_token("u-42", HOUR);
        assert_eq!(
            a.authenticate(Some(&bearer(&t)), Audience::Read),
            Ok(Principal::Shopper("u-42".into()))
        );
        let p = a.producer_token("storefront", &[Scope::Storefront, Scope::Orders], HOUR);
        assert_eq!(
            a.authenticate(Some(&bearer(&p)), Audience::Ingest),
            Ok(Principal::Producer {
                name: "storefront".into(),
                scopes: vec![Scope::Storefront, Scope::Orders]
            })
        );
        for audience in [Audience::Read, Audience::Ingest] {
            assert_eq!(
                a.authenticate(Some("Bearer operator-key-0123456"), audience),
                Ok(Principal::Operator)
            );
        }
    }

    #[test]
    fn a_token_for_one_surface_is_refused_by_the_other() {
        let a = auth();
        let shopper = a.shopper_token("u-1", HOUR);
        assert!(matches!(
            a.authenticate(Some(&bearer(&shopper)), Audience::Ingest),
            Err(AuthError::WrongAudience { .. })
        ));
        let producer = a.producer_token("orders", &[Scope::Orders], HOUR);
        assert!(matches!(
            a.authenticate(Some(&bearer(&producer)), Audience::Read),
            Err(AuthError::WrongAudience { .. })
        ));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let a = auth();
        let long_ago = now_secs() - 2 * 3600;
        let t = a.mint(Audience::Read, "u-1", &[], long_ago, HOUR);
        assert_eq!(
            a.authenticate(Some(&bearer(&t)), Audience::Read),
            Err(AuthError::Expired)
        );
        // Within the leeway it still passes.
        let t = a.mint(Audience::Read, "u-1", &[], now_secs() - 3600 - 10, HOUR);
        assert!(a.authenticate(Some(&bearer(&t)), Audience::Read).is_ok());
    }

    #[test]
    fn forged_or_malformed_tokens_are_refused() {
        let a = auth();
        let other = Authenticator::new(
            &KeySet::single("k1", "another-secret-of-16+"),
            "operator-key-0123456",
        )
        .expect("keys")
        .shopper_token("u-42", HOUR);
        assert_eq!(
            a.authenticate(Some(&bearer(&other)), Audience::Read),
            Err(AuthError::BadSignature)
        );
        let t = a.shopper_token("u-42", HOUR);
        assert_eq!(
            a.authenticate(None, Audience::Read),
            Err(AuthError::Missing)
        );
        assert_eq!(
            a.authenticate(Some(&t), Audience::Read),
            Err(AuthError::NotBearer)
        );
        // Same signature, another user in the claims.
        let parts: Vec<&str> = t.split('.').collect();
        let claims =
            String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("utf8");
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.replace("u-42", "u-43")),
            parts[2]
        );
        assert_eq!(
            a.authenticate(Some(&bearer(&swapped)), Audience::Read),
            Err(AuthError::BadSignature)
        );
        // alg "none" and an unknown key id.
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert_eq!(
            a.authenticate(Some(&bearer(&unsigned)), Audience::Read),
            Err(AuthError::Invalid)
        );
        // Another algorithm, even one the same key could compute, is refused.
        let hs512 = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512","typ":"JWT","kid":"k1"}"#);
        let other_alg = format!("{hs512}.{}.{}", parts[1], parts[2]);
        assert_eq!(
            a.authenticate(Some(&bearer(&other_alg)), Audience::Read),
            Err(AuthError::Invalid)
        );
        let other_kid = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT","kid":"k9"}"#);
        let foreign = format!("{other_kid}.{}.{}", parts[1], parts[2]);
        assert_eq!(
            a.authenticate(Some(&bearer(&foreign)), Audience::Read),
            Err(AuthError::UnknownKey("k9".into()))
        );
        for bad in ["v1.x", "a.b.c", "operator-key-012345", ""] {
            assert!(
                a.authenticate(Some(&bearer(bad)), Audience::Read).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn rotated_keys_keep_checking_old_tokens_until_they_are_dropped() {
        let mut keys = KeySet::generate(now_secs());
        let a = Authenticator::new(&keys, "operator-key-0123456").expect("keys");
        let old = a.shopper_token("u-1", HOUR);
        keys.rotate(now_secs(), 3600);
        a.replace_keys(&keys, "operator-key-0123456").expect("keys");
        let new = a.shopper_token("u-1", HOUR);
        for t in [&old, &new] {
            assert!(a.authenticate(Some(&bearer(t)), Audience::Read).is_ok());
        }
        keys.prune(now_secs() + 3601);
        a.replace_keys(&keys, "operator-key-0123456").expect("keys");
        assert!(matches!(
            a.authenticate(Some(&bearer(&old)), Audience::Read),
            Err(AuthError::UnknownKey(_))
        ));
        assert!(a.authenticate(Some(&bearer(&new)), Audience::Read).is_ok());
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(Authenticator::new(&KeySet::single("k", ""), "operator-key-0123456").is_err());
        assert!(Authenticator::new(&KeySet::single("k", "0123456789abcdef"), "").is_err());
    }

    #[test]
    fn lifetimes_parse() {
        assert_eq!(parse_ttl("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_ttl("45"), Ok(Duration::from_secs(45)));
        assert!(parse_ttl("0h").is_err());
        assert!(parse_ttl("3w").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn shoppers_read_only_their_own() {
        assert!(Principal::Shopper("a".into()).may_read("a"));
        assert!(!Principal::Shopper("a".into()).may_read("b"));
        assert!(Principal::Operator.may_read("b"));
        assert!(
            !Principal::Producer {
                name: "a".into(),
                scopes: vec![]
            }
            .may_read("a")
        );
    }
}
