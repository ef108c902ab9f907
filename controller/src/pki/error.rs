//! The PKI's error type.

use super::identity::Role;
use super::token::TokenError;

/// Why a PKI operation failed. Messages name the offending value, truncated when it came
/// from outside, and never include a token secret or a private key.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen could not generate a key or sign a certificate.
    #[error("cannot generate the {what}")]
    Generate {
        /// What was being generated, e.g. "CA certificate".
        what: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// A PEM or DER input could not be read.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What the input was meant to be, e.g. "CA private key".
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate signing request is malformed, its signature does not verify or its key
    /// is not ECDSA P-256.
    #[error("invalid certificate signing request: {reason}")]
    InvalidCsr {
        /// What is wrong with it.
        reason: String,
    },
    /// An identity's id is empty, too long or uses characters outside `[A-Za-z0-9._-]`.
    #[error("invalid identity id `{id}`: {reason}")]
    InvalidId {
        /// The id (truncated).
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A role name is not `admin`, `controller` or `agent`.
    #[error("unknown role `{role}`: expected admin, controller or agent")]
    UnknownRole {
        /// The role name (truncated).
        role: String,
    },
    /// Admin certificates are client-only and carry no DNS names or IP addresses.
    #[error("an admin certificate cannot carry DNS names or IP addresses")]
    AdminWithNames,
    /// The certificate carries no `berth://<role>/<id>` SAN URI, or more than one.
    #[error("certificate carries {found} berth:// SAN URIs, expected exactly one")]
    NoIdentity {
        /// How many berth:// URIs the certificate carries.
        found: usize,
    },
    /// A `berth://` SAN URI is not `berth://<role>/<id>`.
    #[error("SAN URI `{uri}` is not of the form berth://<role>/<id>")]
    BadIdentityUri {
        /// The URI (truncated).
        uri: String,
    },
    /// The TLS peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    /// The peer's role may not call this operation.
    #[error("{role} `{id}` is not allowed here (allowed: {allowed})")]
    NotAllowed {
        /// The peer's role.
        role: Role,
        /// The peer's id.
        id: String,
        /// The roles that are allowed, comma-separated.
        allowed: String,
    },
    /// A join token is malformed or does not verify.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// rustls rejected the configuration.
    #[error("cannot build the TLS configuration")]
    Tls(#[from] rustls::Error),
    /// rustls could not build the client certificate verifier.
    #[error("cannot build the client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// At most 64 characters of an untrusted string, for error messages.
pub(super) fn excerpt(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}
