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
//!
//! # The service mesh
//!
//! [`ServiceFirewall`] gives each service a virtual IP that every node load-balances over
//! the service's tasks on any node (kube-proxy's iptables mode with Swarm's semantics: every
//! port of the VIP goes to the same port of a task), and publishes its ingress ports on
//! every node. The pure core is [`mesh`]. Its rules carry the comment `berth:/mesh` (the
//! mesh's own) or `berth:/svc/<name>` (one service's): reserved owners, so
//! [`Firewall::owners`] never lists them and [`Firewall::remove_owners`] never removes them.
//!
//! The node's subnet (`node_subnet`, its bridge having the first host address, the
//! *gateway*) and every other node's lie in one `cluster_range`, and node subnets reach each
//! other without NAT (an overlay device or routes, set up elsewhere).
//!
//! `nat` table:
//!
//! * `PREROUTING` and `OUTPUT`: `-j BERTH-SERVICES` (inserted first).
//! * `BERTH-SERVICES`: `-m addrtype --dst-type LOCAL -j BERTH-INGRESS` (inserted first),
//!   then per service with a VIP `-d <vip>/32 -j BERTH-SVC-<h>`, whatever the protocol and
//!   port.
//! * `BERTH-INGRESS`: per ingress port `-p <proto> -m <proto> --dport <published> -j
//!   BERTH-SVC-<h>`: every local address of the node (its LAN address, `127.0.0.1`, ...).
//! * `BERTH-SVC-<h>` (`<h>`: 16 hex digits of the SHA-256 of the name), one per service:
//!   endpoint `i` of `n` (sorted by address) `-m statistic --mode random --probability
//!   1/(n-i) -j BERTH-SEP-<h'>`, the last without the match: a uniform choice, made once per
//!   connection (only a connection's first packet goes through `nat`). Empty without
//!   endpoints.
//! * `BERTH-SEP-<h'>` (of the name and the address), one per endpoint: `-d <vip>/32 -j DNAT
//!   --to-destination <task>` (no port: every port), then per ingress port `-p <proto> -m
//!   <proto> --dport <published> -j DNAT --to-destination <task>:<target>`.
//! * `BERTH-POSTROUTING`: `-j BERTH-MESH-POSTROUTING`, inserted first, so ahead of the
//!   networks' MASQUERADE rules (which are appended).
//! * `BERTH-MESH-POSTROUTING`: whether a connection needs its source rewritten, decided from
//!   addresses after DNAT (so the service rules are the same on every node, and no mark bit
//!   is taken that another program may use):
//!   1. `-d <node_subnet> -j RETURN`: to this node's containers, the network's rules apply:
//!      none from outside (a client's source is kept), hairpin and localhost MASQUERADE
//!      from the node (a task reaching itself, or another task on the bridge, through the
//!      VIP is masqueraded by the network's `--ctstate DNAT` hairpin rule).
//!   2. `! -d <cluster_range> -j RETURN`: to the outside world: the network's rules.
//!   3. `-s <node_subnet> -j ACCEPT`: this node's containers (or the node by its gateway
//!      address) to another node's containers, directly or through a VIP: the source is
//!      kept, and the network's `-s <subnet> ! -o <bridge> -j MASQUERADE` is not reached.
//!      The reply comes back here since the source's subnet routes here.
//!   4. `! -s <cluster_range> -j SNAT --to-source <gateway>`: the node itself (including
//!      `127.0.0.1`) or a LAN client, DNATed to another node's task (or routed to another
//!      node's container): the task's reply must come back through this node, so the
//!      source becomes the gateway, which the other node routes back here and accepts as
//!      cluster traffic (MASQUERADE could pick an address outside the cluster range).
//!   5. `-m conntrack --ctstate DNAT -j SNAT --to-source <gateway>`: a container of another
//!      node that reached this node's ingress port (on one of its cluster addresses) and
//!      was sent to a third node: the same.
//!
//! `filter` table:
//!
//! * `BERTH-FORWARD`: `-j BERTH-MESH-FORWARD`, inserted first.
//! * `BERTH-MESH-FORWARD`:
//!   * `-m conntrack --ctstate NEW -j BERTH-NO-ENDPOINTS`: only a connection's first
//!     packet walks the list (as kube-proxy does), not every packet.
//!   * `-s <cluster_range> -d <cluster_range> -j ACCEPT`: container to container across
//!     nodes, both ways (the overlay device is not the bridge, so the network's rules do
//!     not cover it), and replies of connections SNATed to the gateway on another node.
//!   * `-m conntrack --ctstate DNAT --ctreplsrc <cluster_range> -j ACCEPT`: connections
//!     DNATed to a task (the reply source is the task), both ways: a LAN client's
//!     connection to an ingress port sent to another node, and its replies.
//! * `INPUT` and `OUTPUT`: `-m conntrack --ctstate NEW -j BERTH-NO-ENDPOINTS` (inserted
//!   first).
//! * `BERTH-NO-ENDPOINTS`: per service without endpoints, `-d <vip>/32 -j REJECT` and per
//!   ingress port `-p <proto> -m addrtype --dst-type LOCAL -m <proto> --dport <published>
//!   -j REJECT` (`--reject-with icmp-port-unreachable`): a connection is refused at once
//!   instead of hanging (from a container through `FORWARD`, from the node through
//!   `OUTPUT`, from outside through `INPUT`).
//!
//! The jumps from `POSTROUTING` and `FORWARD` into `BERTH-POSTROUTING` and `BERTH-FORWARD`
//! are the networks' shared ones (`berth:/jump`); [`ServiceFirewall::setup_mesh`] adds them
//! (and the chains) if missing, and [`ServiceFirewall::teardown_mesh`] leaves them.
//!
//! ## Changing one service
//!
//! [`ServiceFirewall::apply_service`] writes one batch that touches only that service:
//! declaring an existing chain in `iptables-restore --noflush` input flushes just that
//! chain (kube-proxy's trick), so its `BERTH-SVC-` chain, and the `BERTH-SEP-` chains whose
//! rules changed, are declared and written whole; the jump and `REJECT` rules that differ
//! between the caller's `previous` and `next` are deleted and added one by one; the
//! `BERTH-SEP-` chains of endpoints that went are flushed and deleted. It trusts
//! `previous` (no `iptables-save`), and falls back to the exact path computed from
//! `iptables-save` when iptables refuses the batch, as [`Firewall::add_new_ports`] does.
//!
//! ## Wiring the mesh up
//!
//! * Sysctls, set by the caller: `net.ipv4.ip_forward=1`; `route_localnet=1` on the bridge
//!   *and on the device(s) towards other nodes* (or on `all`), for connections from the
//!   node's `127.0.0.1` to an ingress port served on another node (the kernel refuses to
//!   route a `127.0.0.0/8` source out of a device without it); `send_redirects=0` on `all`
//!   *and* on the bridge (the kernel ORs them). A container's connection to a VIP that is
//!   DNATed to another container on the same bridge leaves through the interface it came
//!   in by, so the kernel sends the container an ICMP redirect naming that task as the
//!   gateway for the VIP: wrong (a container that accepts it sends VIP traffic straight to
//!   a task that drops it), and it drains the per-host ICMP rate limit, so the container's
//!   next `REJECT` of a service without endpoints is sent no ICMP and its connection is
//!   refused only on the SYN's retransmission, a second later (seen in the tests).
//! * Order: [`Firewall::setup_network`], then [`ServiceFirewall::setup_mesh`] (its
//!   `BERTH-MESH-POSTROUTING` jump must stand above the network's MASQUERADE rules: both
//!   keep that order whichever runs first, since the mesh inserts and the network appends),
//!   then [`ServiceFirewall::apply_service`] per change. After an agent restart,
//!   [`ServiceFirewall::sync_services`] with every service makes the rules exactly those
//!   (one read, one batch), or [`ServiceFirewall::services`] and
//!   [`ServiceFirewall::remove_service_named`] remove the stale ones. Host-mode ports stay
//!   the per-container rules in `BERTH-DNAT`.

pub mod iptables;
pub mod mesh;
#[cfg(test)]
mod mesh_tests;
#[cfg(test)]
mod mesh_traffic_tests;
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

/// One service's change for [`ServiceFirewall::apply_services`]: what is installed for it
/// (`None`: nothing) and what it must become (`None`: nothing).
#[derive(Debug, Clone, Copy)]
pub struct ServiceChange<'a> {
    /// The rules last applied for the service.
    pub previous: Option<&'a ServiceRules>,
    /// The rules it must have now.
    pub next: Option<&'a ServiceRules>,
}

/// A back-end for service virtual IPs and the routing mesh (see the [module
/// documentation](self#the-service-mesh) for the rules). Every call is one
/// `iptables-restore --noflush --wait` batch (all or nothing per table), computed from
/// `iptables-save` except where the call says it trusts the caller.
pub trait ServiceFirewall: Send + Sync + fmt::Debug {
    /// Creates the mesh's chains and rules for `mesh`, and the shared jumps into
    /// `BERTH-POSTROUTING` and `BERTH-FORWARD` if missing (idempotent). Mesh rules of
    /// another configuration (another node subnet) are replaced. Services are kept.
    fn setup_mesh(&self, mesh: &MeshConfig) -> Result<(), FirewallError>;

    /// Makes one service's rules those of `next`, fast: `previous` is what the caller last
    /// applied for it (`None`: nothing is installed for `next.name`), so the current rules are
    /// not read; only this service's chains that change are rewritten, and only its jump
    /// and `REJECT` rules that change are deleted or added. If iptables refuses the batch
    /// (`previous` was wrong, someone removed a rule, the mesh is not set up), falls back to
    /// the exact path from `iptables-save` ([`sync_services`](Self::sync_services) for this
    /// service alone, and the removal of `previous` if it had another name). Fails with
    /// [`FirewallError::NotSetUp`] if the mesh is not set up.
    fn apply_service(
        &self,
        previous: Option<&ServiceRules>,
        next: &ServiceRules,
    ) -> Result<(), FirewallError>;

    /// Applies several services' changes as one batch, fast (one `iptables-restore` for all
    /// of them): each change is `(previous, next)` as in [`apply_service`](Self::apply_service),
    /// and `next: None` removes `previous`. If iptables refuses the batch nothing changed;
    /// the error is returned and the caller syncs ([`sync_services`](Self::sync_services)).
    fn apply_services(&self, changes: &[ServiceChange<'_>]) -> Result<(), FirewallError>;

    /// Removes one service's rules and chains, fast (the caller says `service` is what is
    /// installed), falling back to [`remove_service_named`](Self::remove_service_named).
    fn remove_service(&self, service: &ServiceRules) -> Result<(), FirewallError>;

    /// Removes every rule and chain of the service called `name`, found in `iptables-save`
    /// (idempotent).
    fn remove_service_named(&self, name: &str) -> Result<(), FirewallError>;

    /// Makes the installed services exactly `services`, from one `iptables-save`, as one
    /// batch: what is up to date is left alone, other services' rules and unused
    /// `BERTH-SVC-`/`BERTH-SEP-` chains go (after an agent restart). Names must be unique.
    fn sync_services(&self, services: &[ServiceRules]) -> Result<(), FirewallError>;

    /// The names of the services that have rules now (from their `berth:/svc/<name>`
    /// comments).
    fn services(&self) -> Result<BTreeSet<String>, FirewallError>;

    /// Removes every mesh and service rule and chain, keeping the networks' rules and
    /// jumps. Collects every error and keeps going; repeating it is harmless.
    fn teardown_mesh(&self) -> Result<(), FirewallError>;
}

/// The node's place in the cluster's network, for the mesh's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfig {
    /// The range every node's container subnet is cut from.
    pub cluster_range: Ipv4Net,
    /// This node's container subnet (inside `cluster_range`); the bridge has its first host
    /// address, the [gateway](MeshConfig::gateway).
    pub node_subnet: Ipv4Net,
}

impl MeshConfig {
    /// The node's address on its subnet (the bridge's, the subnet's first host address):
    /// the source of connections the mesh sends to another node on a client's behalf.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.node_subnet.network()).wrapping_add(1))
    }
}

/// One service as the mesh sees it, the same on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRules {
    /// The service's name (1 to 200 characters of `[A-Za-z0-9_.-]`).
    pub name: String,
    /// Its virtual IP, outside the cluster range; `None`: no VIP (ingress ports only, or
    /// nothing).
    pub vip: Option<Ipv4Addr>,
    /// The addresses of its healthy tasks, on any node (order and duplicates do not
    /// matter). Whether one is local is told by the address (the node subnet), not here.
    pub endpoints: Vec<Ipv4Addr>,
    /// Its ingress ports, published on every node.
    pub ingress: Vec<IngressPort>,
}

/// A port published through the routing mesh: `published` on every node's local addresses
/// goes to `target` of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IngressPort {
    /// TCP or UDP.
    pub protocol: Proto,
    /// The port on every node (not 0).
    pub published: u16,
    /// The port of the task (not 0).
    pub target: u16,
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
