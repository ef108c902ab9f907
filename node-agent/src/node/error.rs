//! [`NodeError`]: why joining, loading the node's identity or starting its session failed.
//!
//! Once a session runs it never fails: every error of the controllers or of the network is
//! retried (see `session.rs`), and every executor error becomes a task's FAILED report.

use std::path::PathBuf;

use berth_controller::join::JoinClientError;
use berth_controller::pki::PkiError;
use berth_controller::transport::TransportError;

/// Why joining, reading the node's identity or setting up its session failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The join token does not parse.
    #[error("invalid join token: {0}")]
    Token(#[source] PkiError),
    /// The join failed (refused, unreachable, or an untrusted controller).
    #[error(transparent)]
    Join(#[from] JoinClientError),
    /// The node has joined already: its identity is in `path`.
    #[error(
        "this node has joined a cluster already: {} exists (remove the node's identity \
         directory, or pass --force, to join again)",
        path.display()
    )]
    AlreadyJoined {
        /// The identity file found.
        path: PathBuf,
    },
    /// The node has not joined: no identity in `dir`.
    #[error(
        "this node has not joined a cluster: no identity in {} (run `berth-agent join` first)",
        dir.display()
    )]
    NotJoined {
        /// The identity directory.
        dir: PathBuf,
    },
    /// A file of the identity could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file of the identity could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file of the identity is not what it should be.
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The node's certificate, key or CA cannot make a TLS configuration.
    #[error("the node's credentials are not usable")]
    Tls(#[source] PkiError),
    /// A controller address is not `host:port`.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// An option is invalid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which option.
        what: &'static str,
        /// Why.
        reason: String,
    },
}
