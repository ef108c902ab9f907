//! Random bytes from the ring provider's CSPRNG (the OS generator).

use rustls::crypto::ring::default_provider;

use super::error::PkiError;

/// `N` random bytes.
pub(super) fn random_bytes<const N: usize>() -> Result<[u8; N], PkiError> {
    let mut buf = [0u8; N];
    default_provider()
        .secure_random
        .fill(&mut buf)
        .map_err(|_| PkiError::Random)?;
    Ok(buf)
}

/// A new random id: 16 random bytes as 32 lowercase hex digits (valid as an identity id).
pub fn random_id() -> Result<String, PkiError> {
    Ok(hex::encode(random_bytes::<16>()?))
}
