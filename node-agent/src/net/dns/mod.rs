//! The node's DNS resolver for containers (issue 7): containers' `/etc/resolv.conf` points
//! at it. It runs inside the agent, in the host's network namespace, on the node bridge's
//! gateway address, port 53, UDP and TCP; being on the host it can forward to a host
//! resolver on loopback (systemd-resolved's 127.0.0.53), which Docker's in-container
//! resolver cannot.
//!
//! [`DnsRecords`] holds the names it answers itself; the server comes next.

mod records;

pub use records::{DnsRecords, Found, ServiceEntry, TASKS_TTL, VIP_TTL};

/// An error of the node's DNS resolver.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A service name that cannot be a DNS label.
    #[error("{name:?} is not a DNS service name: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}
