//! The node's DNS resolver for containers (issue 7): containers' `/etc/resolv.conf` points
//! at it. It runs inside the agent, in the host's network namespace, on the node bridge's
//! gateway address, port 53, UDP and TCP; being on the host it can forward to a host
//! resolver on loopback (systemd-resolved's 127.0.0.53), which Docker's in-container
//! resolver cannot.
//!
//! # What it answers
//!
//! Names are matched ignoring case, with or without the trailing dot, and only exactly:
//! `<service>` and `tasks.<service>`, nothing under a search domain (a client that tries
//! `web.corp.example` first gets the upstream's answer for it, then asks `web`).
//!
//! - `<service>` → its VIP, one A record, TTL [`VIP_TTL`] (5 s: the VIP lasts as long as
//!   the service, the TTL only bounds how long a removed and re-created service is
//!   remembered). A service without a VIP answers its tasks' addresses instead, as
//!   Docker's `dnsrr` endpoint mode and a Kubernetes headless service do.
//! - `tasks.<service>` → one A record per healthy task (the caller passes only healthy
//!   ones), rotated by one position per query for crude balancing, TTL [`TASKS_TTL`] (0:
//!   tasks change with every reschedule and a cached answer would defeat the rotation;
//!   CoreDNS uses 5 s, Docker 600 s).
//! - A known name asked for any type but A (or ANY) gets NOERROR without records (NODATA)
//!   and is never forwarded: the name exists, as an IPv4 service name. So does a known
//!   name with nothing to answer (`tasks.<service>` of a service without running tasks, a
//!   service with neither VIP nor tasks): forwarding a service's name to the host's
//!   resolvers would leak it and could resolve it to something else entirely, and NXDOMAIN
//!   would claim the service does not exist. No SOA goes with NODATA, so nobody caches
//!   the negative answer (RFC 2308 §5). Local answers are authoritative (AA) and carry
//!   RA; one that does not fit the client's UDP size (512, or its EDNS size up to 4,096)
//!   keeps the records that fit and sets TC.
//! - Every other name, and every class but IN, is forwarded (see `upstream.rs` for how).
//!   A removed service's names are forwarded from then on.
//! - A query that cannot be parsed, or has not exactly one question, gets FORMERR (a bare
//!   header: its id, opcode and RD) when it holds a whole 12-byte header, and is dropped
//!   otherwise; an opcode other than QUERY gets NOTIMP; a response (QR set) is never
//!   answered, so two servers cannot loop.
//!
//! The answering logic is a pure function (`handle.rs`); `server.rs` is the socket shell
//! around it and `upstream.rs` the forwarding.

mod handle;
mod records;
mod server;
#[cfg(test)]
mod tests;
mod upstream;

use std::io;
use std::net::SocketAddr;

pub use records::{DnsRecords, Found, ServiceEntry, TASKS_TTL, VIP_TTL};
pub use server::{DnsConfig, DnsServer};
pub use upstream::upstreams_from_resolv_conf;

/// An error of the node's DNS resolver.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The server could not bind its address.
    #[error("DNS server: cannot bind {proto} {addr}: {source}")]
    Bind {
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The cause (e.g. address in use, no permission for port 53).
        #[source]
        source: io::Error,
    },

    /// A service name that cannot be a DNS label.
    #[error("{name:?} is not a DNS service name: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// One exchange with an upstream resolver failed (only logged: the next upstream is
    /// tried, and the client gets SERVFAIL when none answers).
    #[error("upstream {upstream} over {proto}: {source}")]
    Upstream {
        /// The upstream resolver.
        upstream: SocketAddr,
        /// `udp` or `tcp`.
        proto: &'static str,
        /// What went wrong (a timeout is `TimedOut`, a wrong answer `InvalidData`).
        #[source]
        source: io::Error,
    },
}
