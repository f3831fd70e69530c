//! API tokens: `pk_` followed by 256 random bits (base64url, 43 characters). A token is
//! shown once, by `patchkeeper token new`; the fleet repo's Settings (`api.tokens`) hold
//! only its SHA-256, name, scopes and expiry, so access is granted and revoked by reviewed
//! commits.
//!
//! Knows nothing of HTTP: [`Keyring::authenticate`] takes the presented string and the
//! current instant and says who the caller is, or why not. Hashes are compared in constant
//! time (`subtle`) against every entry, never stopping at the first match. A token's value
//! never appears in an error, a log line or a `Debug` output: only its name does.

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::{ApiSettings, Scope};

/// Every token starts with this, so a leaked one is recognizable (secret scanners).
pub const PREFIX: &str = "pk_";

/// Random bytes in a token.
const RANDOM_BYTES: usize = 32;

/// Characters after the prefix: base64url without padding of 32 bytes.
const ENCODED_LEN: usize = 43;

/// Errors of making a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The operating system's random source failed.
    #[error("cannot read random bytes from the operating system: {0}")]
    Random(String),
}

/// Why a presented token is refused (all of them mean HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not of the `pk_` + 43 base64url characters form.
    #[error("the token is malformed (expected `pk_` and 43 base64url characters)")]
    Malformed,
    /// Well formed, but no Settings entry has its hash.
    #[error("the token is not known")]
    Unknown,
    /// Known, but past its expiry.
    #[error("token `{name}` expired at {expired}")]
    Expired {
        /// The token's name.
        name: String,
        /// When it expired.
        expired: Timestamp,
    },
}

/// A freshly made token: the secret (shown once) and what Settings store.
pub struct NewToken {
    /// The token itself; never stored by patchkeeper.
    pub secret: String,
    /// Its SHA-256, lowercase hex: the `sha256` of the Settings entry.
    pub sha256: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("secret", &"<redacted>")
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// Makes a new token from the operating system's random source.
pub fn generate() -> Result<NewToken, TokenError> {
    let mut bytes = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    let secret = format!("{PREFIX}{}", data_encoding::BASE64URL_NOPAD.encode(&bytes));
    let sha256 = hex(&hash(&secret));
    Ok(NewToken { secret, sha256 })
}

/// SHA-256 of a token's full text (prefix included).
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Whether `token` has the form of a patchkeeper token.
pub fn is_well_formed(token: &str) -> bool {
    token.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == ENCODED_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Whether a token holding `held` may do what needs `needed`: `admin` implies `request`,
/// which implies `read`.
pub fn grants(held: &[Scope], needed: Scope) -> bool {
    held.iter().any(|s| *s >= needed)
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name from Settings.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// Whether the caller may do what needs `scope`.
    pub fn may(&self, scope: Scope) -> bool {
        grants(&self.scopes, scope)
    }
}

#[derive(Clone)]
struct Entry {
    name: String,
    hash: [u8; 32],
    scopes: Vec<Scope>,
    expires: Option<Timestamp>,
}

/// The accepted tokens of one desired commit's Settings.
#[derive(Clone, Default)]
pub struct Keyring {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.name))
            .finish()
    }
}

impl Keyring {
    /// The tokens of `api`. Entries that validation would reject (a hash that is not 64 hex
    /// digits, an expiry that does not parse) are left out: they can never authenticate.
    pub fn from_settings(api: &ApiSettings) -> Keyring {
        let entries = api
            .tokens
            .iter()
            .filter_map(|t| {
                let expires = match &t.expires {
                    Some(e) => Some(e.parse::<Timestamp>().ok()?),
                    None => None,
                };
                Some(Entry {
                    name: t.name.clone(),
                    hash: unhex(&t.sha256.to_ascii_lowercase())?,
                    scopes: t.scopes.clone(),
                    expires,
                })
            })
            .collect();
        Keyring { entries }
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is accepted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Who presents `token` at `now`, or why it is refused.
    pub fn authenticate(&self, token: &str, now: Timestamp) -> Result<Caller, Refused> {
        if !is_well_formed(token) {
            return Err(Refused::Malformed);
        }
        let presented = hash(token);
        // Every entry is compared, in constant time each, whatever matched before.
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            let equal: bool = e.hash.ct_eq(&presented).into();
            if equal && found.is_none() {
                found = Some(e);
            }
        }
        let e = found.ok_or(Refused::Unknown)?;
        match e.expires {
            Some(at) if now >= at => Err(Refused::Expired {
                name: e.name.clone(),
                expired: at,
            }),
            _ => Ok(Caller {
                name: e.name.clone(),
                scopes: e.scopes.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ApiToken;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn keyring(tokens: &[(&str, &str, &[Scope], Option<&str>)]) -> Keyring {
        Keyring::from_settings(&ApiSettings {
            tokens: tokens
                .iter()
                .map(|(name, secret, scopes, expires)| ApiToken {
                    name: (*name).into(),
                    sha256: hex(&hash(secret)),
                    scopes: scopes.to_vec(),
                    expires: expires.map(str::to_owned),
                })
                .collect(),
            ..ApiSettings::default()
        })
    }

    #[test]
    fn generated_tokens_are_well_formed_distinct_and_hash_as_stored() {
        let a = generate().expect("random");
        let b = generate().expect("random");
        assert!(is_well_formed(&a.secret), "{}", a.secret);
        assert_eq!(a.secret.len(), PREFIX.len() + ENCODED_LEN);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.sha256, hex(&hash(&a.secret)));
        assert_eq!(a.sha256.len(), 64);
        assert!(!format!("{a:?}").contains(&a.secret));
    }

    #[test]
    fn malformed_tokens_are_refused_before_hashing() {
        let ring = keyring(&[]);
        let now = at("2026-12-01T00:00:00Z");
        for bad in [
            "",
            "pk_",
            "Bearer pk_x",
            "xx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+A",
        ] {
            assert_eq!(
                ring.authenticate(bad, now),
                Err(Refused::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn known_unknown_and_expired_tokens() {
        let ci = generate().expect("random").secret;
        let old = generate().expect("random").secret;
        let other = generate().expect("random").secret;
        let ring = keyring(&[
            ("ci", &ci, &[Scope::Request], None),
            ("old", &old, &[Scope::Read], Some("2026-11-30T00:00:00Z")),
        ]);
        let now = at("2026-12-01T00:00:00Z");
        assert_eq!(
            ring.authenticate(&ci, now),
            Ok(Caller {
                name: "ci".into(),
                scopes: vec![Scope::Request]
            })
        );
        assert_eq!(ring.authenticate(&other, now), Err(Refused::Unknown));
        let expired = ring.authenticate(&old, now).expect_err("expired");
        assert_eq!(
            expired,
            Refused::Expired {
                name: "old".into(),
                expired: at("2026-11-30T00:00:00Z")
            }
        );
        assert!(!expired.to_string().contains(&old));
        assert!(ring.authenticate(&old, at("2026-11-29T23:59:59Z")).is_ok());
    }

    #[test]
    fn scopes_imply_the_lesser_ones() {
        assert!(grants(&[Scope::Admin], Scope::Read));
        assert!(grants(&[Scope::Admin], Scope::Request));
        assert!(grants(&[Scope::Request], Scope::Read));
        assert!(!grants(&[Scope::Request], Scope::Admin));
        assert!(!grants(&[Scope::Read], Scope::Request));
        assert!(!grants(&[], Scope::Read));
    }

    #[test]
    fn entries_that_cannot_match_are_dropped() {
        let ring = Keyring::from_settings(&ApiSettings {
            tokens: vec![
                ApiToken {
                    name: "short".into(),
                    sha256: "abc".into(),
                    scopes: vec![Scope::Read],
                    expires: None,
                },
                ApiToken {
                    name: "bad-expiry".into(),
                    sha256: "0".repeat(64),
                    scopes: vec![Scope::Read],
                    expires: Some("soon".into()),
                },
            ],
            ..ApiSettings::default()
        });
        assert!(ring.is_empty());
        assert_eq!(format!("{ring:?}"), "[]");
    }
}
