//! The registry client's error type.
//!
//! Every variant names the registry (`host[:port]`) and, where there is one, the repository
//! and the digest or tag; a refusal carries the HTTP status and the registry's own
//! `errors[].code` / `message`.

use std::fmt;
use std::io;

use serde::Deserialize;

/// One entry of a registry's error body, `{"errors": [{"code": ..., "message": ...}]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    /// `MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `UNAUTHORIZED`, `DENIED`, ...
    #[serde(default)]
    pub code: String,
    /// The registry's message.
    #[serde(default)]
    pub message: String,
}

/// The errors of a response body, for display: `: CODE: message; CODE: message`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiErrors(pub Vec<ApiError>);

impl ApiErrors {
    /// Parses a registry's error body; anything else gives no errors.
    pub(crate) fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            errors: Vec<ApiError>,
        }
        ApiErrors(
            serde_json::from_slice::<Body>(body)
                .map(|b| b.errors)
                .unwrap_or_default(),
        )
    }
}

impl fmt::Display for ApiErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => write!(f, "{}: {}", e.code, e.message)?,
                (false, true) => f.write_str(&e.code)?,
                _ => f.write_str(&e.message)?,
            }
        }
        Ok(())
    }
}

/// An error talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference names no registry host, and berth has no default registry.
    #[error(
        "image reference {reference:?} names no registry host: write it as HOST[:PORT]/REPOSITORY[:TAG] (e.g. registry.example:5000/{reference}, or docker.io/library/{reference} for Docker Hub)"
    )]
    NoRegistryHost {
        /// The reference as written.
        reference: String,
    },

    /// The registry configuration cannot be used (a bad CA file, say).
    #[error("registry {registry}: {reason}")]
    Config {
        /// The registry host.
        registry: String,
        /// What is wrong.
        reason: String,
    },

    /// No connection could be made.
    #[error("cannot connect to registry {registry} ({url}): {source}")]
    Connect {
        /// The registry host.
        registry: String,
        /// The URL asked for.
        url: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The TLS handshake failed: an unknown CA, a wrong name, or a server speaking plain HTTP.
    #[error(
        "TLS handshake with registry {registry}{} failed: {source} (a registry with a CA of its own needs that CA configured; one without TLS must be marked insecure to be reached over plain HTTP)",
        if host == registry { String::new() } else { format!(" (at {host})") }
    )]
    Tls {
        /// The registry host.
        registry: String,
        /// The host the handshake was with (a redirect may lead elsewhere).
        host: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The HTTP exchange broke off (connection reset, a body cut short).
    #[error("registry {registry}: {method} {url}: {source}")]
    Http {
        /// The registry host.
        registry: String,
        /// GET, HEAD, PUT, ...
        method: String,
        /// The URL asked for.
        url: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The registry answered with a status that means failure.
    #[error("registry {registry}: {what} in repository {repository}: HTTP {status}{errors}")]
    Status {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// What was asked: `manifest v1`, `blob sha256:...`, `upload of blob sha256:...`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error body.
        errors: ApiErrors,
    },

    /// The registry (or its token service) refused the credentials, or wants some.
    #[error(
        "registry {registry}: {what} in repository {repository}: {reason} (HTTP {status}{errors})"
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// What was asked.
        what: String,
        /// "no credentials given", "the credentials of user U were refused", ...
        reason: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error body.
        errors: ApiErrors,
    },

    /// A `WWW-Authenticate` challenge or a token answer berth cannot use.
    #[error("registry {registry}: authentication: {reason}")]
    Auth {
        /// The registry host.
        registry: String,
        /// What is wrong.
        reason: String,
    },

    /// A redirect berth will not follow.
    #[error("registry {registry}: {what}: {reason}")]
    Redirect {
        /// The registry host.
        registry: String,
        /// What was asked.
        what: String,
        /// Why the redirect is not followed.
        reason: String,
    },

    /// Content does not hash to the digest it was asked by.
    #[error(
        "registry {registry}: {what} {expected} in repository {repository}: digest mismatch: the content received hashes to {actual}"
    )]
    DigestMismatch {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// "blob", "manifest", "config".
        what: &'static str,
        /// The digest asked for.
        expected: String,
        /// The digest of what came.
        actual: String,
    },

    /// Content is longer or shorter than its descriptor says.
    #[error(
        "registry {registry}: {what} {digest} in repository {repository}: size mismatch: expected {expected} bytes, received {actual}"
    )]
    SizeMismatch {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// "blob", "manifest", "config".
        what: &'static str,
        /// The digest asked for.
        digest: String,
        /// The size in the descriptor.
        expected: u64,
        /// The bytes received (at least, when the body was too long).
        actual: u64,
    },

    /// A manifest or index berth cannot use.
    #[error("registry {registry}: manifest {reference} in repository {repository}: {reason}")]
    Manifest {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The tag or digest.
        reference: String,
        /// What is wrong.
        reason: String,
    },

    /// Writing a download to the store's disk failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}
