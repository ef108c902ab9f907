//! Join tokens: `BERTH-1-<CA fingerprint>-<role letter>-<secret>`, as Docker Swarm's.
//!
//! The fingerprint (64 lowercase hex digits) lets a joining node check the CA it is shown;
//! the role letter is `a` (agent) or `c` (controller); the secret is 32 random bytes as 64
//! lowercase hex digits. The controller keeps a [`StoredToken`] with only the SHA-256 of the
//! secret: rotating a role's token is replacing its stored token.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{PkiError, excerpt};
use super::fingerprint::{CaFingerprint, decode_lower_hex, is_lower_hex};
use super::identity::Role;
use super::random::random_bytes;

const PREFIX: &str = "BERTH";
const VERSION: &str = "1";
/// Longer input is refused before it is looked at.
const MAX_LEN: usize = 256;

/// Why a join token is malformed or does not verify. No message includes the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is empty.
    #[error("join token is empty")]
    Empty,
    /// The token is far longer than any valid token.
    #[error("join token is {len} bytes long; a valid token has 139")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The token does not start with `BERTH-`.
    #[error("join token must start with `BERTH-`")]
    BadPrefix,
    /// The token's format version is not 1.
    #[error("join token version `{version}` is not supported (expected 1)")]
    UnsupportedVersion {
        /// The version found (truncated).
        version: String,
    },
    /// The token does not have five `-`-separated parts.
    #[error(
        "join token has {found} `-`-separated parts, expected 5: BERTH-1-<CA fingerprint>-<a|c>-<secret>"
    )]
    WrongPartCount {
        /// How many parts it has.
        found: usize,
    },
    /// The CA fingerprint part is not 64 lowercase hex digits.
    #[error("join token CA fingerprint must be 64 lowercase hex digits, found {len} characters{}", if *.not_hex { " that are not all lowercase hex" } else { "" })]
    BadFingerprint {
        /// Its length in characters.
        len: usize,
        /// Whether it holds characters other than lowercase hex digits.
        not_hex: bool,
    },
    /// The role letter is not `a` or `c`.
    #[error("join token role must be `a` (agent) or `c` (controller), found `{letter}`")]
    BadRoleLetter {
        /// The role part found (truncated).
        letter: String,
    },
    /// The secret part is not 64 lowercase hex digits.
    #[error("join token secret must be 64 lowercase hex digits, found {len} characters{}", if *.not_hex { " that are not all lowercase hex" } else { "" })]
    BadSecret {
        /// Its length in characters.
        len: usize,
        /// Whether it holds characters other than lowercase hex digits.
        not_hex: bool,
    },
    /// Join tokens exist only for agents and controllers.
    #[error("there are no join tokens for the {role} role")]
    NoTokenForRole {
        /// The role asked for.
        role: Role,
    },
    /// The token is for another role than the one the node joins as.
    #[error("this is {} {token_role} join token, but the node is joining as {expected}", article(*.token_role))]
    WrongRole {
        /// The token's role.
        token_role: Role,
        /// The role the node joins as.
        expected: Role,
    },
    /// The token pins another CA: it belongs to another cluster, or the CA was replaced.
    #[error("join token pins CA fingerprint {token}, but the cluster CA's is {actual}")]
    CaMismatch {
        /// The fingerprint in the token.
        token: CaFingerprint,
        /// The fingerprint of the CA actually seen.
        actual: CaFingerprint,
    },
    /// The secret does not match: the token is forged or was rotated.
    #[error("join token secret is not valid (forged, or the token was rotated)")]
    BadSecretValue,
}

fn article(role: Role) -> &'static str {
    match role {
        Role::Admin | Role::Agent => "an",
        Role::Controller => "a",
    }
}

/// A join token as a joining node presents it. `Display` gives the token string;
/// `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    role: Role,
    ca_fingerprint: CaFingerprint,
    secret: [u8; 32],
}

impl JoinToken {
    /// A new token with a random secret for nodes joining as `role` (agent or controller)
    /// a cluster whose CA has the fingerprint `ca_fingerprint`.
    pub fn generate(role: Role, ca_fingerprint: CaFingerprint) -> Result<Self, PkiError> {
        if role == Role::Admin {
            return Err(TokenError::NoTokenForRole { role }.into());
        }
        Ok(JoinToken {
            role,
            ca_fingerprint,
            secret: random_bytes()?,
        })
    }

    /// Parses a token string; surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Self, PkiError> {
        Ok(parse(s)?)
    }

    /// The role the token admits.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The fingerprint of the CA the token pins.
    pub fn ca_fingerprint(&self) -> CaFingerprint {
        self.ca_fingerprint
    }

    /// What the controller keeps of this token: no secret, only its SHA-256.
    pub fn stored(&self) -> StoredToken {
        StoredToken {
            role: self.role,
            ca_fingerprint: self.ca_fingerprint,
            secret_sha256: Sha256::digest(self.secret).into(),
        }
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letter = match self.role {
            Role::Agent => "a",
            Role::Controller => "c",
            Role::Admin => "?",
        };
        write!(
            f,
            "{PREFIX}-{VERSION}-{}-{letter}-{}",
            self.ca_fingerprint,
            hex::encode(self.secret)
        )
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("role", &self.role)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("secret", &"[elided]")
            .finish()
    }
}

impl FromStr for JoinToken {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JoinToken::parse(s)
    }
}

fn parse(s: &str) -> Result<JoinToken, TokenError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(TokenError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(TokenError::TooLong { len: s.len() });
    }
    let parts: Vec<&str> = s.split('-').collect();
    if parts[0] != PREFIX {
        return Err(TokenError::BadPrefix);
    }
    match parts.get(1) {
        Some(&VERSION) => {}
        version => {
            return Err(TokenError::UnsupportedVersion {
                version: excerpt(version.unwrap_or(&"")),
            });
        }
    }
    let [_, _, fingerprint, letter, secret] = parts[..] else {
        return Err(TokenError::WrongPartCount { found: parts.len() });
    };
    let ca_fingerprint = decode_lower_hex::<32>(fingerprint)
        .map(CaFingerprint::from_bytes)
        .ok_or(TokenError::BadFingerprint {
            len: fingerprint.chars().count(),
            not_hex: !is_lower_hex(fingerprint),
        })?;
    let role = match letter {
        "a" => Role::Agent,
        "c" => Role::Controller,
        other => {
            return Err(TokenError::BadRoleLetter {
                letter: excerpt(other),
            });
        }
    };
    let secret = decode_lower_hex::<32>(secret).ok_or(TokenError::BadSecret {
        len: secret.chars().count(),
        not_hex: !is_lower_hex(secret),
    })?;
    Ok(JoinToken {
        role,
        ca_fingerprint,
        secret,
    })
}

/// What the controller keeps of a join token: its role, the CA fingerprint and the SHA-256
/// of its secret (hex). Replacing it rotates the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredToken {
    /// The role the token admits.
    pub role: Role,
    /// The fingerprint of the CA the token pins.
    pub ca_fingerprint: CaFingerprint,
    /// The SHA-256 of the token's secret; lowercase hex in serialized form.
    #[serde(with = "hex32")]
    pub secret_sha256: [u8; 32],
}

impl StoredToken {
    /// Checks a token presented by a node joining as `joining_as`: the token's role, then
    /// the CA it pins, then (in constant time) its secret.
    pub fn verify(&self, presented: &JoinToken, joining_as: Role) -> Result<(), PkiError> {
        if presented.role != joining_as {
            return Err(TokenError::WrongRole {
                token_role: presented.role,
                expected: joining_as,
            }
            .into());
        }
        if self.role != joining_as {
            return Err(TokenError::WrongRole {
                token_role: self.role,
                expected: joining_as,
            }
            .into());
        }
        if !presented.ca_fingerprint.ct_matches(&self.ca_fingerprint) {
            return Err(TokenError::CaMismatch {
                token: presented.ca_fingerprint,
                actual: self.ca_fingerprint,
            }
            .into());
        }
        let presented_hash: [u8; 32] = Sha256::digest(presented.secret).into();
        if bool::from(presented_hash.ct_eq(&self.secret_sha256)) {
            Ok(())
        } else {
            Err(TokenError::BadSecretValue.into())
        }
    }
}

/// Checks, on a joining node, that the CA certificate (DER) the controller showed is the one
/// the token pins.
pub fn verify_ca_fingerprint(token: &JoinToken, ca_cert_der: &[u8]) -> Result<(), PkiError> {
    let actual = CaFingerprint::of_der(ca_cert_der);
    if token.ca_fingerprint.ct_matches(&actual) {
        Ok(())
    } else {
        Err(TokenError::CaMismatch {
            token: token.ca_fingerprint,
            actual,
        }
        .into())
    }
}

/// Serde for a 32-byte digest as 64 lowercase hex digits.
mod hex32 {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::decode_lower_hex;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        decode_lower_hex(&s).ok_or_else(|| D::Error::custom("expected 64 lowercase hex digits"))
    }
}
