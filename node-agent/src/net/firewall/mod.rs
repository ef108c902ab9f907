//! The node's packet-filter rules for container networking, behind the [`Firewall`] trait
//! (netavark's `FirewallDriver` pattern): [`IptablesFirewall`] is the real back-end, and
//! [`rules`] is its pure core, which turns a request plus the current `iptables-save` state
//! into the exact `iptables-restore` input to apply.
//!
//! # Chains and rules
//!
//! berth only ever touches its own chains, the jump rules into them, and rules carrying a
//! `-m comment --comment "berth:<owner>"`. Port rules carry the container's owner string;
//! berth's own rules carry a reserved owner starting with `/` (`berth:/jump` for the jumps,
//! `berth:/net/<bridge>` for a network's rules), which a real owner may not contain.
//!
//! `nat` table:
//!
//! * `PREROUTING -m addrtype --dst-type LOCAL -j BERTH-DNAT` (inserted first): traffic
//!   arriving for one of the node's own addresses (from outside, or from a container for
//!   hairpin) goes through the published-port DNATs.
//! * `OUTPUT -m addrtype --dst-type LOCAL -j BERTH-DNAT` (inserted first): the same for
//!   connections the node itself opens, including to `127.0.0.1`.
//! * `POSTROUTING -j BERTH-POSTROUTING` (inserted first).
//! * `BERTH-DNAT`: one rule per published port, `[-d <host_ip>/32] -p <proto> -m <proto>
//!   --dport <host_port> -j DNAT --to-destination <container_ip>:<container_port>`; without a
//!   host IP the port is published on every local address.
//! * `BERTH-POSTROUTING`, per network:
//!   * `-s <subnet> ! -o <bridge> -j MASQUERADE`: containers reach the outside world with
//!     the node's address.
//!   * `-s <subnet> -o <bridge> -m conntrack --ctstate DNAT -j MASQUERADE`: hairpin. A
//!     container that reaches a published port of its own node (even its own port) is
//!     DNATed back onto the bridge; masquerading it to the bridge address makes the reply
//!     come back through the node, where conntrack undoes the DNAT, instead of going straight
//!     to the client with an address it does not expect.
//!   * `-s 127.0.0.0/8 -o <bridge> -j MASQUERADE`: connections from the node's own localhost
//!     (DNATed in `OUTPUT`) leave with the bridge address, since a container cannot answer
//!     127.0.0.1. The kernel only routes such packets if
//!     `net.ipv4.conf.<bridge>.route_localnet=1`, which the caller must set (this module
//!     sets no sysctls).
//!
//! `filter` table:
//!
//! * `FORWARD -j BERTH-FORWARD`, inserted at the top so that berth's traffic is still
//!   accepted when Docker (or anyone) sets the `FORWARD` policy to `DROP`.
//! * `BERTH-FORWARD`, per network:
//!   * `-o <bridge> -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`: replies.
//!   * `-o <bridge> -m conntrack --ctstate DNAT -j ACCEPT`: new connections that a DNAT rule
//!     sent to a container, i.e. to a published port. Nothing else reaches a container from
//!     outside. This one rule stands for every published port of the network, so a port
//!     mapping is a single `nat` rule and adding or removing one touches one table only. (It
//!     also accepts connections that another program's DNAT rule sends onto the bridge;
//!     whoever can add a DNAT rule is root and meant it.)
//!   * `-i <bridge> -j ACCEPT`: traffic from containers (outbound, container to container,
//!     hairpin).
//!
//! Every change is one `iptables-restore --noflush --wait` batch. Each table's `COMMIT`
//! applies on its own, with both the nft and the legacy variant (checked with iptables
//! 1.8.9 nf_tables: a batch failing in `*filter` keeps its `*nat` half), so a batch is
//! all-or-nothing per table. Port batches touch `nat` only, so they apply completely or not
//! at all; the two-table set-up and teardown batches are computed against one
//! `iptables-save` read, so repeating a half-applied one finishes it.
//!
//! # The fast path
//!
//! Reading `iptables-save` costs more than the change itself once there are many rules
//! (about 9 ms for 1,000 mappings with iptables-nft), so the calls the agent makes per
//! container, [`Firewall::add_new_ports`] and [`Firewall::remove_known_ports`], trust the
//! caller's record instead: they write the `-A` (or `-D`) lines blind, in one batch, and
//! only if iptables refuses it (a chain or rule is gone, because someone flushed or deleted
//! it) fall back to the exact, save-based path. A refused batch changed nothing, so the
//! fallback starts from the real state.
//!
//! # Wiring it up
//!
//! * Sysctls, set by the caller: `net.ipv4.ip_forward=1`, and
//!   `net.ipv4.conf.<bridge>.route_localnet=1` for ports reached from the node's localhost.
//! * Order: create the bridge, [`Firewall::setup_network`], then
//!   [`Firewall::add_new_ports`] per new container (or [`Firewall::add_ports`], which
//!   fails with [`FirewallError::NotSetUp`] before setup) and
//!   [`Firewall::remove_known_ports`] when it goes; at agent start, [`Firewall::owners`]
//!   minus the live containers are stale owners, for [`Firewall::remove_owners`].
//! * Setup checks that each rule exists, not where: if Docker or firewalld reloads and
//!   flushes `FORWARD`, call `setup_network` again. Docker's own chains and its `DROP`
//!   policy are left alone; berth's jump sits above them, and teardown removes only berth's.

pub mod iptables;
pub mod rules;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

pub use iptables::{Commands, IptablesFirewall, MemoryRunner, Runner};

/// A firewall back-end: the rules that give a bridge network its NAT and publish container
/// ports.
pub trait Firewall: Send + Sync + fmt::Debug {
    /// Creates berth's own chains and the jump rules into them (idempotent), for the bridge
    /// `net.bridge` with subnet `net.subnet`: MASQUERADE for traffic from the subnet leaving
    /// through another interface, hairpin and localhost masquerade, forwarding accepts
    /// (replies, DNATed connections, traffic from the bridge).
    fn setup_network(&self, net: &NetworkRules) -> Result<(), FirewallError>;

    /// Adds the DNAT rules of one container's published ports, as one batch, after reading
    /// the current rules: rules that already exist are not added twice. Fails with
    /// [`FirewallError::NotSetUp`] before [`setup_network`](Firewall::setup_network).
    fn add_ports(
        &self,
        net: &NetworkRules,
        owner: &str,
        ports: &[Publish],
    ) -> Result<(), FirewallError>;

    /// Removes exactly those rules (idempotent: removing what is gone succeeds).
    fn remove_ports(
        &self,
        net: &NetworkRules,
        owner: &str,
        ports: &[Publish],
    ) -> Result<(), FirewallError>;

    /// Adds the DNAT rules of one container's published ports, fast: the caller guarantees
    /// (from its own record) that `owner` has no rules installed now, so the current rules
    /// are not read, and one batch of `-A` lines is written. If iptables refuses it (berth's
    /// chains are missing: the node was never set up, or someone flushed them), falls back
    /// to [`setup_network`](Firewall::setup_network) plus [`add_ports`](Firewall::add_ports),
    /// which read the rules and add only what is missing. If the guarantee is wrong, the
    /// fast path installs the rules a second time.
    fn add_new_ports(
        &self,
        net: &NetworkRules,
        owner: &str,
        ports: &[Publish],
    ) -> Result<(), FirewallError>;

    /// Removes the rules of one container's published ports, fast: the caller believes they
    /// exist, so the current rules are not read, and one batch of `-D` lines is written. If
    /// iptables refuses it (one of them is gone: someone removed it), falls back to
    /// [`remove_ports`](Firewall::remove_ports), which removes those that exist.
    fn remove_known_ports(
        &self,
        net: &NetworkRules,
        owner: &str,
        ports: &[Publish],
    ) -> Result<(), FirewallError>;

    /// Removes every rule, in any of berth's tables and chains, whose comment is
    /// `berth:<owner>` for one of `owners`, as one batch from one read (at agent start, the
    /// stale rules of a crashed agent). berth's own reserved owners are refused
    /// ([`FirewallError::Invalid`]); owners without rules are nothing to do.
    fn remove_owners(
        &self,
        net: &NetworkRules,
        owners: &BTreeSet<String>,
    ) -> Result<(), FirewallError>;

    /// Removes the network's own rules (MASQUERADE and ACCEPT rules of `net.bridge`, for
    /// whatever subnet they were written), keeping the shared jumps and every port rule:
    /// before the bridge is re-created with another subnet. Idempotent.
    fn remove_network(&self, net: &NetworkRules) -> Result<(), FirewallError>;

    /// Removes every berth rule and chain on the node, of every network (teardown). Collects
    /// every error and keeps going; repeating it is harmless.
    fn teardown(&self, net: &NetworkRules) -> Result<(), FirewallError>;

    /// Owners whose port rules exist now, on the whole node (to remove stale rules of a
    /// crashed agent at start).
    fn owners(&self, net: &NetworkRules) -> Result<BTreeSet<String>, FirewallError>;
}

/// The network a set of rules is for: a Linux bridge and the IPv4 subnet on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    /// The bridge interface name (at most 15 characters of `[A-Za-z0-9_.-]`).
    pub bridge: String,
    /// The containers' subnet on that bridge.
    pub subnet: Ipv4Net,
}

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The name iptables uses (`tcp`, `udp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port: `host_ip:host_port` on the node forwarded to
/// `container_ip:container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Publish {
    /// The node address to publish on; `None` publishes on every local address.
    pub host_ip: Option<Ipv4Addr>,
    /// The port on the node (not 0).
    pub host_port: u16,
    /// The container's address on the bridge.
    pub container_ip: Ipv4Addr,
    /// The port inside the container (not 0).
    pub container_port: u16,
    /// TCP or UDP.
    pub proto: Proto,
}

/// An error from a firewall back-end.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// A name, owner or port cannot be written into a rule.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// What was invalid ("owner", "bridge", "port").
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// Ports were added before [`Firewall::setup_network`] created berth's chains.
    #[error("berth's chain {chain} does not exist in table {table}; set up the network first")]
    NotSetUp {
        /// The table.
        table: &'static str,
        /// The missing chain.
        chain: &'static str,
    },

    /// A command could not be started or fed.
    #[error("{command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A command ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status, as printed by the standard library.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },

    /// Teardown finished, but some steps failed.
    #[error("teardown left {} error(s): {}", errors.len(), join_errors(errors))]
    Teardown {
        /// Every failed step, in order.
        errors: Vec<FirewallError>,
    },
}

fn join_errors(errors: &[FirewallError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
