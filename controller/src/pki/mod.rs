//! The cluster PKI: the cluster CA, node identities, join tokens and rustls configurations.
//!
//! Every connection between controllers, agents and the CLI is mutual TLS. `init` creates a
//! [`ClusterCa`]; each certificate it issues names one [`Identity`] (a [`Role`] and an id) in
//! a SAN URI `berth://<role>/<id>`, which [`peer_identity`] reads back from a peer's
//! certificate. A node joins with a [`JoinToken`] that pins the CA by its fingerprint and
//! carries a secret; the controller keeps only a [`StoredToken`] (a SHA-256 of the secret),
//! so rotating a token is replacing that hash. [`server_config`] and [`client_config`] build
//! rustls configurations that accept only peers whose certificates the cluster CA signed.
//!
//! A joining node has a token but no certificate yet: [`join_client_config`] trusts the CA
//! the token pins, and a controller's join listener uses [`join_server_config`], which lets
//! a client without a certificate finish the handshake (to call nothing but the join RPC).
//!
//! A joining node makes its own key pair and sends a certificate signing request
//! ([`generate_csr`]); the CA signs its public key ([`ClusterCa::issue_for_csr`]).
//!
//! Layout: identities and roles in `identity.rs`, the CA in `ca.rs`, CSRs in `csr.rs`, its fingerprint in
//! `fingerprint.rs`, tokens in `token.rs`, rustls configurations in `tls.rs` and `join.rs`,
//! errors in `error.rs`, tests in `tests/`.

mod ca;
mod csr;
mod error;
mod fingerprint;
mod identity;
mod join;
mod random;
mod tls;
mod token;

#[cfg(test)]
mod tests;

pub use ca::{CA_VALIDITY, ClusterCa, DEFAULT_LEAF_VALIDITY, IssuedCert, SubjectName};
pub use csr::{MAX_CSR_PEM_BYTES, generate_csr};
pub use error::PkiError;
pub use fingerprint::CaFingerprint;
pub use identity::{Identity, Role, authorize, peer_identity};
pub use join::{join_client_config, join_server_config};
pub use random::random_id;
pub use tls::{client_config, peer_identity_from_certs, server_config};
pub use token::{JoinToken, StoredToken, TokenError, verify_ca_fingerprint};
