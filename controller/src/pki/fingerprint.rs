//! The CA fingerprint that join tokens pin.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{PkiError, excerpt};

/// The SHA-256 of the CA certificate's DER; shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaFingerprint([u8; 32]);

impl CaFingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_der(cert_der: &[u8]) -> Self {
        CaFingerprint(Sha256::digest(cert_der).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether two fingerprints are equal, in constant time.
    pub fn ct_matches(&self, other: &CaFingerprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    pub(super) fn from_bytes(bytes: [u8; 32]) -> Self {
        CaFingerprint(bytes)
    }
}

impl fmt::Display for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaFingerprint({self})")
    }
}

impl FromStr for CaFingerprint {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = decode_lower_hex::<32>(s).ok_or_else(|| PkiError::InvalidInput {
            what: "CA fingerprint",
            reason: format!("`{}` is not 64 lowercase hex digits", excerpt(s)),
        })?;
        Ok(CaFingerprint(bytes))
    }
}

impl TryFrom<String> for CaFingerprint {
    type Error = PkiError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<CaFingerprint> for String {
    fn from(fp: CaFingerprint) -> String {
        fp.to_string()
    }
}

/// `N` bytes from exactly `2 * N` lowercase hex digits.
pub(super) fn decode_lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Whether every character is a lowercase hex digit.
pub(super) fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
