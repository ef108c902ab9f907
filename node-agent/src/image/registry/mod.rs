//! Images from and to OCI Distribution (v2 API) registries: [`ImageStore::pull`] and
//! [`ImageStore::push`].
//!
//! A pull resolves `host[:port]/repository[:tag|@digest]` to an image manifest (OCI or Docker
//! schema 2; through an OCI index or Docker manifest list to this host's platform), fetches
//! the config and only the layer blobs the store lacks, checks each blob's size and sha256
//! while it streams to `<root>/downloads/`, and then stages and commits the image as an
//! import does (the same layer checks and unpacking). A blob two pulls want is fetched once
//! (`download`). A push sends the blobs the registry lacks (HEAD first) and the manifest as
//! the store keeps it, so the image pulled back is the same image.
//!
//! HTTPS with the system's CAs and the registry's own ([`RegistryConfig::ca_pem`]); plain
//! HTTP only for a registry marked [`RegistryConfig::insecure`]; Basic or Bearer-token
//! authentication as the registry asks (`WWW-Authenticate`).
//!
//! Files, one idea each:
//! - `reference`: remote references; `config`: per-registry settings
//! - `client`: HTTP, redirects, authentication flow; `auth`: challenges, tokens, Basic;
//!   `tls`: the rustls configuration; `body`: request and response bodies
//! - `pull`, `push`; `download`: one verified, deduplicated blob fetch; `progress`
//! - `error`: [`RegistryError`]

mod auth;
mod body;
mod client;
mod config;
mod download;
mod error;
mod hosts;
mod progress;
mod pull;
mod push;
mod reference;
mod tls;

#[cfg(test)]
mod tests;

pub use config::RegistryConfig;
pub(crate) use download::clean_downloads;
pub use error::{ApiError, ApiErrors, RegistryError};
pub use hosts::{HostsError, Registries};

/// The registry host of `reference` (`host[:port]/repo…`), when it names one.
pub fn registry_of(reference: &str) -> Option<String> {
    reference::RemoteRef::parse(reference)
        .ok()
        .map(|r| r.registry)
}
pub use progress::{LayerProgress, LayerState, ProgressFn};
pub use push::PushReport;
