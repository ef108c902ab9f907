//! Published ports: Docker's `-p` syntax ([`parse_publish`]) and choosing and checking host
//! ports ([`assign`]).
//!
//! IPv4 only for now; an IPv6 host address is refused with a message saying so. A host range
//! for a single container port (Docker's "any port in 8000-8010") is refused too, with a
//! message suggesting one host port or none.

mod assign;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use assign::{TakenPort, assign};
pub use parse::parse_publish;

/// A transport protocol a port is published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One container port to publish, as written by the user: the host port may still be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSpec {
    /// The host address to publish on; `None` is every address (`0.0.0.0` is normalised to it).
    pub host_ip: Option<Ipv4Addr>,
    /// The host port; `None` asks for one from the ephemeral range.
    pub host_port: Option<u16>,
    /// The port inside the container.
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

/// A published port with every part decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// The host address to publish on; `None` is every address.
    pub host_ip: Option<Ipv4Addr>,
    /// The host port.
    pub host_port: u16,
    /// The port inside the container.
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

/// Who holds a port that cannot be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortHolder {
    /// Another container (or an earlier spec of the same request) already publishes it.
    Berth,
    /// A process on the host has it bound.
    Host,
}

impl fmt::Display for PortHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortHolder::Berth => "already published by berth",
            PortHolder::Host => "in use by a process on the host",
        })
    }
}

/// Shows an optional host address, `None` as `0.0.0.0`.
pub(crate) struct HostIp(pub(crate) Option<Ipv4Addr>);

impl fmt::Display for HostIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("0.0.0.0"),
        }
    }
}

/// An error from parsing or assigning published ports.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The spec is empty.
    #[error("empty port spec; expected [ip:][host-port:]container-port[/tcp|udp]")]
    Empty,

    /// The spec does not have the `[ip:][host:]container[/proto]` shape.
    #[error("invalid port spec {spec:?}: {reason}")]
    Malformed {
        /// The whole spec.
        spec: String,
        /// What is wrong.
        reason: &'static str,
    },

    /// A port number is not a number, is 0, or is above 65535.
    #[error("invalid port spec {spec:?}: {text:?} {reason}")]
    InvalidPort {
        /// The whole spec.
        spec: String,
        /// The offending number as written.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A range whose start is above its end.
    #[error("invalid port spec {spec:?}: range {range:?} is reversed (write low-high)")]
    ReversedRange {
        /// The whole spec.
        spec: String,
        /// The range as written.
        range: String,
    },

    /// Host and container ranges of different lengths.
    #[error(
        "invalid port spec {spec:?}: host ports {host:?} and container ports {container:?} \
         are ranges of different lengths"
    )]
    RangeMismatch {
        /// The whole spec.
        spec: String,
        /// The host part as written.
        host: String,
        /// The container part as written.
        container: String,
    },

    /// A host range for one container port ("any port in the range"), not supported.
    #[error(
        "invalid port spec {spec:?}: picking any host port of range {host:?} for container \
         port {container} is not supported; give one host port, or omit it to get a free one"
    )]
    HostRangeUnsupported {
        /// The whole spec.
        spec: String,
        /// The host range as written.
        host: String,
        /// The container port.
        container: String,
    },

    /// A protocol other than tcp or udp.
    #[error("invalid port spec {spec:?}: unknown protocol {protocol:?} (expected tcp or udp)")]
    UnknownProtocol {
        /// The whole spec.
        spec: String,
        /// The protocol as written.
        protocol: String,
    },

    /// The host address is not an IPv4 address.
    #[error("invalid port spec {spec:?}: {ip:?} is not an IPv4 address")]
    InvalidIp {
        /// The whole spec.
        spec: String,
        /// The address as written.
        ip: String,
    },

    /// An IPv6 host address.
    #[error(
        "invalid port spec {spec:?}: IPv6 host address {ip:?} is not supported yet; \
         use an IPv4 address or omit it"
    )]
    Ipv6Unsupported {
        /// The whole spec.
        spec: String,
        /// The address as written.
        ip: String,
    },

    /// The host port is taken.
    #[error(
        "host port {}:{port}/{protocol} is {holder}; choose another host port, or omit it to \
         get a free one",
        HostIp(*ip)
    )]
    InUse {
        /// The host address (`None` is every address).
        ip: Option<Ipv4Addr>,
        /// The host port.
        port: u16,
        /// The protocol.
        protocol: Protocol,
        /// Who holds it.
        holder: PortHolder,
    },

    /// The host address is not one of this node's.
    #[error("cannot publish on {ip}: it is not an address of this node ({source})")]
    HostIpUnavailable {
        /// The host address.
        ip: Ipv4Addr,
        /// The bind error.
        #[source]
        source: io::Error,
    },

    /// Binding the host port failed for another reason (e.g. a privileged port without the
    /// capability).
    #[error("cannot bind host port {}:{port}/{protocol}: {source}", HostIp(*ip))]
    Bind {
        /// The host address (`None` is every address).
        ip: Option<Ipv4Addr>,
        /// The host port.
        port: u16,
        /// The protocol.
        protocol: Protocol,
        /// The bind error.
        #[source]
        source: io::Error,
    },

    /// No port of the ephemeral range is free.
    #[error("no free {protocol} host port on {} in the range {low}-{high}", HostIp(*ip))]
    NoFreePort {
        /// The host address (`None` is every address).
        ip: Option<Ipv4Addr>,
        /// The protocol.
        protocol: Protocol,
        /// The range's first port.
        low: u16,
        /// The range's last port.
        high: u16,
    },
}
