//! Certificate signing requests: a joining node makes its key pair and a CSR
//! ([`generate_csr`]); the CA reads back only the public key of a request whose signature
//! verifies ([`requested_key`]). The node's private key never leaves it.

use rcgen::{CertificateParams, PKCS_ECDSA_P256_SHA256, PublicKeyData};
use rcgen::{CertificateSigningRequestParams, PublicKey};

use super::ca::generate_key;
use super::error::PkiError;

/// The largest CSR accepted, in bytes of PEM (a P-256 request is under 1 KiB).
pub const MAX_CSR_PEM_BYTES: usize = 16 * 1024;

/// A new ECDSA P-256 key pair and a CSR signed with it, both PEM: `(csr_pem, key_pem)`.
/// The CSR names nothing: the CA sets the certificate's subject and names itself.
pub fn generate_csr() -> Result<(String, String), PkiError> {
    let key = generate_key("node key")?;
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|source| PkiError::Generate {
            what: "certificate signing request",
            source,
        })?;
    Ok((csr, key.serialize_pem()))
}

/// The public key of the CSR `pem`, after checking that it parses, that its signature
/// verifies (the requester holds the private key) and that the key is ECDSA P-256.
pub(super) fn requested_key(pem: &str) -> Result<PublicKey, PkiError> {
    let invalid = |reason: String| PkiError::InvalidCsr { reason };
    if pem.trim().is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    if pem.len() > MAX_CSR_PEM_BYTES {
        return Err(invalid(format!(
            "it is {} bytes long, more than the limit of {MAX_CSR_PEM_BYTES}",
            pem.len()
        )));
    }
    let csr = CertificateSigningRequestParams::from_pem(pem).map_err(|e| {
        invalid(match e {
            rcgen::Error::CouldNotParseCertificationRequest => {
                "it is not a PEM PKCS#10 certificate signing request".to_owned()
            }
            rcgen::Error::InvalidCertificationRequestSignature => {
                "its signature does not verify".to_owned()
            }
            other => other.to_string(),
        })
    })?;
    // The signature algorithm names the hash, not the curve: a P-256 point is 65 bytes.
    if PublicKeyData::algorithm(&csr.public_key) != &PKCS_ECDSA_P256_SHA256
        || csr.public_key.der_bytes().len() != 65
    {
        return Err(invalid(format!(
            "its key is {:?}, not ECDSA P-256",
            csr.public_key.algorithm()
        )));
    }
    Ok(csr.public_key)
}
