//! The node's container network put together: the bridge and a container's veth pair
//! ([`super::link`]), its address ([`super::ipam`]), its published ports ([`super::ports`])
//! and their rules ([`super::firewall`]).
//!
//! [`NodeNet::attach`] wires one container: it allocates an address, creates a network
//! namespace (from a short-lived thread that `unshare`s, so the caller's own namespace never
//! changes), a veth pair with its peer created inside that namespace, configures `eth0`, `lo`
//! and the default route there, picks and publishes the host ports, and returns the
//! namespace as a file descriptor. The monitor holds that descriptor for the container's
//! life, so restarts keep address and ports, and when every holder is gone the namespace and
//! the veth pair go with it: a crash can leak an address or rules, never a link.
//!
//! [`NodeNet::detach`] undoes it and is idempotent. [`NodeNet::reconcile`] removes what a
//! crashed agent left: addresses, rules and veths whose container is not live.
//!
//! Published ports are recorded in `<net-dir>/ports.json` (owner, address, mappings, whether
//! the rules were applied), read and written under an exclusive `flock` held across choosing
//! the host ports and applying the rules, so concurrent agents never publish one port twice.
//! The record lets the firewall skip reading the whole rule set on every change (see
//! [`Firewall::add_new_ports`]); an entry left unapplied by a crash is removed by owner from
//! the real rules instead.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_runtime::timing::mark;
use ipnet::Ipv4Net;
use nix::sched::{CloneFlags, unshare};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

mod subnet;
#[cfg(test)]
mod tests;

pub use subnet::SubnetChange;

use super::firewall::{Firewall, FirewallError, IptablesFirewall, NetworkRules, Proto, Publish};
use super::ipam::{Ipam, IpamError};
use super::link::{self, LinkError, Links, configure_container_side, veth_names};
use super::ports::{self, PortError, PortMapping, PortSpec, Protocol, TakenPort};

/// The bridge's default name.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// The default container subnet.
pub const DEFAULT_SUBNET: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(10, 77, 0, 0), 16) {
    Ok(n) => n,
    Err(_) => panic!("valid subnet"),
};
/// The default MTU of the bridge and veths.
pub const DEFAULT_MTU: u32 = 1500;

/// The node network's configuration (from the command line now, from the controller later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// The bridge's name.
    pub bridge: String,
    /// The containers' subnet; the bridge has its first host address.
    pub subnet: Ipv4Net,
    /// MTU of the bridge and every veth.
    pub mtu: u32,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            bridge: DEFAULT_BRIDGE.into(),
            subnet: DEFAULT_SUBNET,
            mtu: DEFAULT_MTU,
        }
    }
}

impl NetConfig {
    /// Checks the bridge name and the MTU (the subnet is checked by the address allocator).
    pub fn validate(&self) -> Result<(), NetError> {
        link::validate_name(&self.bridge)
            .map_err(|e| NetError::Config(format!("bridge name: {e}")))?;
        if self.bridge.starts_with(link::VETH_PREFIX) {
            return Err(NetError::Config(format!(
                "bridge name {:?} starts with {:?}, which berth reserves for container veths",
                self.bridge,
                link::VETH_PREFIX
            )));
        }
        if !(1280..=65535).contains(&self.mtu) {
            return Err(NetError::Config(format!(
                "MTU {} is out of range (1280-65535)",
                self.mtu
            )));
        }
        Ok(())
    }

    /// The gateway: the subnet's first host address, the bridge's.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    fn rules(&self) -> NetworkRules {
        NetworkRules {
            bridge: self.bridge.clone(),
            subnet: self.subnet,
        }
    }
}

/// One container's network attachment, kept as `network.json` in its directory: what
/// [`NodeNet::detach`] needs, and what `ps`, `inspect` and links show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// The node network's state directory (`<state-dir>/net`).
    pub net_dir: PathBuf,
    /// The node network it is attached to.
    pub config: NetConfig,
    /// The container's address.
    pub ip: Ipv4Addr,
    /// Its default gateway (the bridge).
    pub gateway: Ipv4Addr,
    /// The host side of its veth pair.
    pub veth: String,
    /// Its published ports, host ports decided.
    pub ports: Vec<PortMapping>,
}

/// What [`NodeNet::reconcile`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Addresses released, with their owners.
    pub addresses: Vec<(String, Ipv4Addr)>,
    /// Owners whose port rules were removed.
    pub rule_owners: Vec<String>,
    /// Host-side veths deleted.
    pub veths: Vec<String>,
}

impl Reconciled {
    /// Whether nothing was left behind.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.rule_owners.is_empty() && self.veths.is_empty()
    }
}

/// An error of the node network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Address allocation failed.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A netlink operation failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Applying rules failed.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    /// A published port is invalid or taken.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The bridge has another subnet, which containers still use.
    #[error(
        "bridge {bridge} has subnet {current}, used by {containers} container(s), so it cannot \
         change to {requested}: remove those containers first"
    )]
    BridgeInUse {
        /// The bridge.
        bridge: String,
        /// The subnet it has.
        current: Ipv4Net,
        /// The subnet asked for.
        requested: Ipv4Net,
        /// How many containers hold an address.
        containers: usize,
    },
    /// The network cannot be removed: containers still use it.
    #[error(
        "the node network (bridge {bridge}) is used by {containers} running container(s): \
         stop and remove them first"
    )]
    InUse {
        /// The bridge.
        bridge: String,
        /// How many containers run with an address.
        containers: usize,
    },
    /// The configuration is invalid.
    #[error("invalid node network configuration: {0}")]
    Config(String),
    /// A file or system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl NetError {
    fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        NetError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The published ports of every owner on the node (`ports.json`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortsRecord {
    owners: BTreeMap<String, OwnerPorts>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerPorts {
    ip: Ipv4Addr,
    ports: Vec<PortMapping>,
    /// False between recording and applying: after a crash there, the rules are removed by
    /// owner from the real rule set, since nobody knows how far the batch got.
    applied: bool,
}

impl OwnerPorts {
    fn publishes(&self) -> Vec<Publish> {
        publishes(self.ip, &self.ports)
    }
}

fn publishes(ip: Ipv4Addr, ports: &[PortMapping]) -> Vec<Publish> {
    ports
        .iter()
        .map(|m| Publish {
            host_ip: m.host_ip,
            host_port: m.host_port,
            container_ip: ip,
            container_port: m.container_port,
            proto: match m.protocol {
                Protocol::Tcp => Proto::Tcp,
                Protocol::Udp => Proto::Udp,
            },
        })
        .collect()
}

/// The node's container network.
#[derive(Debug)]
pub struct NodeNet {
    config: NetConfig,
    dir: PathBuf,
    ipam: Ipam,
    firewall: Box<dyn Firewall>,
}

impl NodeNet {
    /// Opens the node network whose state lives in `dir`, with the iptables back-end.
    pub fn open(dir: &Path, config: NetConfig) -> Result<Self, NetError> {
        Self::with_firewall(dir, config, Box::new(IptablesFirewall::new()))
    }

    /// Opens it with a given firewall back-end.
    pub fn with_firewall(
        dir: &Path,
        config: NetConfig,
        firewall: Box<dyn Firewall>,
    ) -> Result<Self, NetError> {
        config.validate()?;
        let ipam = Ipam::open(&dir.join("ipam.json"), config.subnet)?;
        Ok(NodeNet {
            config,
            dir: dir.to_path_buf(),
            ipam,
            firewall,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Every address handed out, by owner.
    pub fn addresses(&self) -> Result<BTreeMap<String, Ipv4Addr>, NetError> {
        Ok(self.ipam.allocations()?)
    }

    /// Every port berth publishes on the node now, by owner.
    pub fn published(&self) -> Result<BTreeMap<String, Vec<PortMapping>>, NetError> {
        let _lock = self.lock_ports()?;
        Ok(self
            .load_ports()?
            .owners
            .into_iter()
            .map(|(o, p)| (o, p.ports))
            .collect())
    }

    /// Wires container `id` to the bridge and publishes `specs`; returns its attachment and
    /// its network namespace. Nothing is left behind when it fails.
    pub fn attach(&self, id: &str, specs: &[PortSpec]) -> Result<(Attachment, OwnedFd), NetError> {
        let pending = self.begin(id)?;
        let attachment = self.finish(&pending, specs)?;
        Ok((attachment, pending.netns))
    }

    /// The first half of [`NodeNet::attach`]: the bridge (created when missing), an address
    /// and an empty network namespace, so that the container can be started in it while
    /// [`NodeNet::finish`] wires it. On failure the address is released again.
    pub fn begin(&self, id: &str) -> Result<Pending, NetError> {
        let rt = runtime()?;
        let host = rt.block_on(async { Links::spawn() })?;
        let begun = (|| {
            self.ensure_node(&rt, &host)?;
            mark("net: node ensured");
            let ip = self.ipam.allocate(id)?;
            mark("net: address allocated");
            let (netns, inside) = new_netns(&rt)?;
            mark("net: namespace created");
            Ok((ip, netns, inside))
        })();
        match begun {
            Ok((ip, netns, inside)) => Ok(Pending {
                id: id.to_owned(),
                ip,
                netns,
                inside,
                host,
                rt,
            }),
            Err(e) => {
                self.unwire(&rt, &host, id);
                Err(e)
            }
        }
    }

    /// The second half of [`NodeNet::attach`]: the veth pair, `eth0`, its address and route,
    /// `lo`, and the published ports. On failure everything of the attach is undone (the
    /// namespace goes with its last holder).
    pub fn finish(&self, p: &Pending, specs: &[PortSpec]) -> Result<Attachment, NetError> {
        let done = self.wire(p).and_then(|()| self.publish(&p.id, p.ip, specs));
        match done {
            Ok(ports) => {
                mark("net: ports published");
                Ok(Attachment {
                    net_dir: self.dir.clone(),
                    config: self.config.clone(),
                    ip: p.ip,
                    gateway: self.config.gateway(),
                    veth: veth_names(&p.id).0,
                    ports,
                })
            }
            Err(e) => {
                self.unwire(&p.rt, &p.host, &p.id);
                Err(e)
            }
        }
    }

    /// Undoes a [`NodeNet::begin`] whose [`NodeNet::finish`] never ran.
    pub fn abort(&self, p: Pending) {
        self.unwire(&p.rt, &p.host, &p.id);
    }

    /// A configured veth pair between the bridge and the pending namespace.
    fn wire(&self, p: &Pending) -> Result<(), NetError> {
        let (host_name, peer) = veth_names(&p.id);
        let cfg = &self.config;
        let address = Ipv4Net::new(p.ip, self.config.subnet.prefix_len())
            .map_err(|e| NetError::Config(e.to_string()))?;
        if let Some(other) = self.veth_shared_with(&p.id)? {
            // Two ids sharing their first 8 hex digits: never take the other's veth.
            return Err(NetError::Config(format!(
                "veth name {host_name} is already used by container {other}; recreate this container to get another id"
            )));
        }
        p.rt.block_on(async {
            // A pair left by an interrupted attempt of this container (its namespace not yet
            // destroyed): the name is this id's and no other live container has it.
            if p.host.exists(&host_name).await? {
                p.host.delete(&host_name).await?;
            }
            p.host
                .add_veth(&cfg.bridge, &host_name, &peer, cfg.mtu, p.netns.as_fd())
                .await?;
            mark("net: veth added");
            configure_container_side(&p.inside, &peer, address, cfg.gateway()).await?;
            mark("net: container side configured");
            Ok::<(), LinkError>(())
        })?;
        debug!(id = p.id, ip = %p.ip, veth = host_name, "container wired to the bridge");
        Ok(())
    }

    /// Another container holding an address whose veth name is `id`'s (ids sharing their
    /// first 8 hex digits), if any.
    fn veth_shared_with(&self, id: &str) -> Result<Option<String>, NetError> {
        let name = veth_names(id).0;
        Ok(self
            .ipam
            .allocations()?
            .into_keys()
            .find(|o| o != id && veth_names(o).0 == name))
    }

    /// Best-effort undo of [`NodeNet::wire`]: the veth and the address.
    fn unwire(&self, rt: &tokio::runtime::Runtime, host: &Links, id: &str) {
        let (host_name, _) = veth_names(id);
        if matches!(self.veth_shared_with(id), Ok(None))
            && let Err(e) = rt.block_on(host.delete(&host_name))
        {
            warn!(id, error = %e, "removing the veth of a failed attach");
        }
        if let Err(e) = self.ipam.release(id) {
            warn!(id, error = %e, "releasing the address of a failed attach");
        }
    }

    /// The bridge, its sysctls and (when the bridge is new) berth's base rules.
    fn ensure_node(&self, rt: &tokio::runtime::Runtime, host: &Links) -> Result<(), NetError> {
        let cfg = &self.config;
        let created = rt.block_on(async {
            if host.exists(&cfg.bridge).await? {
                return Ok::<bool, LinkError>(false);
            }
            let gateway = Ipv4Net::new(cfg.gateway(), cfg.subnet.prefix_len())
                .expect("prefix of a valid subnet");
            host.ensure_bridge(&cfg.bridge, gateway, cfg.mtu).await?;
            Ok(true)
        })?;
        set_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        set_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", cfg.bridge),
            "1",
        )?;
        // A container reaching a task on its own bridge through a service VIP would get an
        // ICMP redirect naming the task as the VIP's gateway (and the redirects use up the
        // ICMP rate limit that fast "connection refused" answers need). The kernel ORs
        // `all` and the device's setting.
        set_sysctl("/proc/sys/net/ipv4/conf/all/send_redirects", "0")?;
        set_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/send_redirects", cfg.bridge),
            "0",
        )?;
        if created {
            info!(bridge = cfg.bridge, subnet = %cfg.subnet, "created the node bridge");
            self.firewall.setup_network(&cfg.rules())?;
        }
        Ok(())
    }

    /// Chooses the host ports of `specs` and applies their rules, under the ports lock.
    fn publish(
        &self,
        id: &str,
        ip: Ipv4Addr,
        specs: &[PortSpec],
    ) -> Result<Vec<PortMapping>, NetError> {
        let _lock = self.lock_ports()?;
        let mut record = self.load_ports()?;
        if let Some(old) = record.owners.remove(id) {
            // An earlier start of this container was never detached (a crash).
            self.remove_rules(id, &old)?;
            self.store_ports(&record)?;
        }
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let taken: HashSet<TakenPort> = record
            .owners
            .values()
            .flat_map(|o| &o.ports)
            .map(|m| (m.host_ip, m.host_port, m.protocol))
            .collect();
        let mappings = ports::assign(specs, &taken)?;
        let entry = OwnerPorts {
            ip,
            ports: mappings.clone(),
            applied: false,
        };
        let publishes = entry.publishes();
        record.owners.insert(id.to_owned(), entry);
        self.store_ports(&record)?;
        if let Err(e) = self
            .firewall
            .add_new_ports(&self.config.rules(), id, &publishes)
        {
            // The batch applied completely or not at all: nothing to remove.
            record.owners.remove(id);
            self.store_ports(&record)?;
            return Err(e.into());
        }
        if let Some(o) = record.owners.get_mut(id) {
            o.applied = true;
        }
        self.store_ports(&record)?;
        Ok(mappings)
    }

    fn remove_rules(&self, id: &str, entry: &OwnerPorts) -> Result<(), NetError> {
        let rules = self.config.rules();
        if entry.applied {
            self.firewall
                .remove_known_ports(&rules, id, &entry.publishes())?;
        } else {
            let owners = BTreeSet::from([id.to_owned()]);
            self.firewall.remove_owners(&rules, &owners)?;
        }
        Ok(())
    }

    /// Removes container `id`'s ports, veth and address (idempotent). Every step is tried;
    /// the first error is returned.
    pub fn detach(&self, id: &str) -> Result<(), NetError> {
        let mut first: Option<NetError> = None;
        let mut keep = |r: Result<(), NetError>| {
            if let Err(e) = r {
                warn!(id, error = %e, "detaching a container");
                first.get_or_insert(e);
            }
        };
        keep(self.unpublish(id));
        keep((|| {
            if self.veth_shared_with(id)?.is_some() {
                return Ok(());
            }
            let rt = runtime()?;
            rt.block_on(async {
                let host = Links::spawn()?;
                let (host_name, _) = veth_names(id);
                host.delete(&host_name).await
            })?;
            Ok(())
        })());
        keep(self.ipam.release(id).map_err(NetError::from));
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn unpublish(&self, id: &str) -> Result<(), NetError> {
        let _lock = self.lock_ports()?;
        let mut record = self.load_ports()?;
        if let Some(entry) = record.owners.remove(id) {
            self.remove_rules(id, &entry)?;
            self.store_ports(&record)?;
        }
        Ok(())
    }

    /// Removes what containers that are not in `live` left behind: addresses, port rules (in
    /// the record and in the real rule set) and host-side veths; then re-applies berth's
    /// base rules if the bridge exists (they may have been flushed by a firewall reload).
    pub fn reconcile(&self, live: &HashSet<String>) -> Result<Reconciled, NetError> {
        let mut out = Reconciled {
            addresses: self.ipam.reconcile(live)?,
            ..Reconciled::default()
        };
        let rules = self.config.rules();
        {
            let _lock = self.lock_ports()?;
            let mut record = self.load_ports()?;
            let stale: Vec<String> = record
                .owners
                .keys()
                .filter(|o| !live.contains(*o))
                .cloned()
                .collect();
            for owner in stale {
                if let Some(entry) = record.owners.remove(&owner) {
                    self.remove_rules(&owner, &entry)?;
                    out.rule_owners.push(owner);
                }
            }
            self.store_ports(&record)?;
            let foreign: BTreeSet<String> = self
                .firewall
                .owners(&rules)?
                .into_iter()
                .filter(|o| !live.contains(o))
                .collect();
            if !foreign.is_empty() {
                self.firewall.remove_owners(&rules, &foreign)?;
                out.rule_owners.extend(foreign);
            }
        }
        let rt = runtime()?;
        let live_veths: HashSet<String> = live.iter().map(|id| veth_names(id).0).collect();
        let bridge_exists = rt.block_on(async {
            let host = Links::spawn()?;
            for name in host.names_with_prefix(link::VETH_PREFIX).await? {
                if !live_veths.contains(&name) {
                    host.delete(&name).await?;
                    out.veths.push(name);
                }
            }
            host.exists(&self.config.bridge).await
        })?;
        if bridge_exists {
            self.firewall.setup_network(&rules)?;
        }
        if !out.is_empty() {
            info!(
                addresses = out.addresses.len(),
                rule_owners = out.rule_owners.len(),
                veths = out.veths.len(),
                "removed the network leftovers of containers that are gone"
            );
        }
        Ok(out)
    }

    /// Removes the node network: the leftovers of gone containers, every berth rule and
    /// chain (the jumps in the built-in chains included), the bridge, and the address and
    /// port records. Refused while a container of `live` runs. Idempotent: what is already
    /// gone is skipped.
    pub fn remove(&self, live: &HashSet<String>) -> Result<(), NetError> {
        if !live.is_empty() {
            return Err(NetError::InUse {
                bridge: self.config.bridge.clone(),
                containers: live.len(),
            });
        }
        self.reconcile(live)?;
        self.firewall.teardown(&self.config.rules())?;
        runtime()?.block_on(async {
            let host = Links::spawn()?;
            if host.exists(&self.config.bridge).await? {
                host.delete(&self.config.bridge).await?;
            }
            Ok::<_, LinkError>(())
        })?;
        for name in ["ipam.json", "ports.json"] {
            let path = self.dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(NetError::io("remove", &path, e)),
            }
        }
        info!(bridge = %self.config.bridge, "node network removed");
        Ok(())
    }

    fn ports_path(&self) -> PathBuf {
        self.dir.join("ports.json")
    }

    fn lock_ports(&self) -> Result<nix::fcntl::Flock<File>, NetError> {
        let path = self.dir.join("ports.json.lock");
        crate::durable::lock_exclusive(&path).map_err(|e| NetError::io(e.op, e.path, e.source))
    }

    fn load_ports(&self) -> Result<PortsRecord, NetError> {
        let path = self.ports_path();
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                NetError::io(
                    "parse",
                    &path,
                    io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PortsRecord::default()),
            Err(e) => Err(NetError::io("read", &path, e)),
        }
    }

    /// Written atomically but not fsynced: after a machine crash no container is live and
    /// [`NodeNet::reconcile`] rebuilds it anyway.
    fn store_ports(&self, record: &PortsRecord) -> Result<(), NetError> {
        let path = self.ports_path();
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| NetError::io("serialise", &path, io::Error::other(e.to_string())))?;
        berth_runtime::state::write_atomic(&path, &bytes)
            .map_err(|e| NetError::io("write", &path, io::Error::other(e.to_string())))
    }
}

/// An attach between [`NodeNet::begin`] and [`NodeNet::finish`]: the address is allocated
/// and the namespace exists, empty.
#[derive(Debug)]
pub struct Pending {
    id: String,
    ip: Ipv4Addr,
    netns: OwnedFd,
    inside: Links,
    host: Links,
    rt: tokio::runtime::Runtime,
}

impl Pending {
    /// The container's address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Its network namespace.
    pub fn netns(&self) -> &OwnedFd {
        &self.netns
    }
}

/// Reads `<container-dir>/network.json` and detaches the container it describes, then
/// removes the file. Used by the monitor after a container's final exit and by the agent
/// when the monitor is gone. A container without the file has nothing to release.
pub fn release_recorded(record: &Path, id: &str) -> Result<(), NetError> {
    let bytes = match fs::read(record) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(NetError::io("read", record, e)),
    };
    let att: Attachment = serde_json::from_slice(&bytes).map_err(|e| {
        NetError::io(
            "parse",
            record,
            io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        )
    })?;
    NodeNet::open(&att.net_dir, att.config)?.detach(id)?;
    match fs::remove_file(record) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::io("remove", record, e)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, NetError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| NetError::io("start", "a tokio runtime", e))
}

/// A new network namespace (created by a thread that `unshare`s and exits, so this one
/// stays where it is) and a netlink handle inside it, driven by `rt`.
fn new_netns(rt: &tokio::runtime::Runtime) -> Result<(OwnedFd, Links), NetError> {
    let handle = rt.handle().clone();
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetError::io("create", "a network namespace", io::Error::from(e)))?;
        let path = "/proc/thread-self/ns/net";
        let fd = OwnedFd::from(File::open(path).map_err(|e| NetError::io("open", path, e))?);
        let _guard = handle.enter();
        let links = Links::spawn()?;
        Ok((fd, links))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(NetError::Config(
            "the thread creating a network namespace panicked".into(),
        ))
    })
}

/// Writes `value` to a sysctl file unless it holds it already.
fn set_sysctl(path: &str, value: &str) -> Result<(), NetError> {
    if fs::read_to_string(path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    fs::write(path, value).map_err(|e| NetError::io("set", path, e))
}
