//! The node's side of the cluster network: the overlay to the other nodes, the services'
//! virtual IPs and ingress ports in the node's rules, and the DNS resolver, all kept equal to
//! the network map the controller streams ([`berth_proto::v1::NetworkUpdate`]).
//!
//! One worker thread owns every change, in order: [`NodeNetwork::update`] only queues a
//! message, and the worker takes every queued message before it acts, so a burst of changes
//! to one service costs one rewrite of its rules. A whole map (a new session) is applied with
//! one exact sync of every service's rules (what an earlier agent left is removed); a change
//! rewrites only the services it names ([`ServiceFirewall::apply_service`]).
//!
//! The executor asks the map for what a task's container needs
//! ([`NodeNetwork::task_network`]): the resolver's address and the VIPs of the services it
//! links to, waiting (boundedly) for the first map after a (re)connect.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth_proto::v1::{NetworkService, NetworkUpdate, Protocol};
use ipnet::Ipv4Net;
use tracing::{debug, info, warn};

use super::NodeNetInfo;
use super::runtime::task_spec::{LinkedService, TaskNetwork};
use crate::net::dns::{DnsRecords, DnsServer, ServiceEntry, upstreams_from_resolv_conf};
use crate::net::files::{ExposedPort, LinkProto};
use crate::net::firewall::{
    IngressPort, MeshConfig, Proto, ServiceChange, ServiceFirewall, ServiceRules,
};
use crate::net::overlay::{self, Overlay, OverlayConfig, OverlayMode, Peer};

/// How long a start waits for the network map to name the services its task links to.
pub const LINK_WAIT: Duration = Duration::from_secs(5);
/// How often the worker retries what failed (binding the resolver, a refused rule batch).
const RETRY: Duration = Duration::from_secs(2);
/// Where the resolver's upstreams come from.
const HOST_RESOLV: &str = "/etc/resolv.conf";

enum Msg {
    Prepare(NodeNetInfo, Sender<Result<Option<u32>, String>>),
    Bridge(Ipv4Addr),
    Update(NetworkUpdate),
}

/// What starts read: the resolver and every service's VIP and ports.
#[derive(Debug, Default)]
struct View {
    /// A whole map arrived since the session began.
    full: bool,
    dns: Option<Ipv4Addr>,
    services: HashMap<String, LinkedService>,
    /// Every task address this node's rules send traffic to, as applied.
    endpoints: std::collections::HashSet<Ipv4Addr>,
}

#[derive(Debug, Default)]
struct Shared {
    view: Mutex<View>,
    changed: Condvar,
}

impl Shared {
    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The node's network worker; see the module documentation.
#[derive(Debug)]
pub struct NodeNetwork {
    tx: Mutex<Sender<Msg>>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl NodeNetwork {
    /// Starts the worker, which changes rules through `firewall`.
    pub fn start(firewall: Arc<dyn ServiceFirewall>) -> std::io::Result<NodeNetwork> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("berth-net")
            .enable_all()
            .build()?;
        let worker = Worker {
            rt,
            firewall,
            shared: shared.clone(),
            info: None,
            overlay: None,
            mesh: None,
            gateway: None,
            dns: None,
            records: DnsRecords::new(),
            nodes: BTreeMap::new(),
            services: BTreeMap::new(),
            applied: HashMap::new(),
            dirty: Vec::new(),
            resync: false,
        };
        let thread = std::thread::Builder::new()
            .name("berth-net-worker".into())
            .spawn(move || worker.run(rx))?;
        Ok(NodeNetwork {
            tx: Mutex::new(tx),
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, msg: Msg) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if tx.send(msg).is_err() {
            warn!("the node network worker is gone; the change is lost");
        }
    }

    /// Readies the overlay and the mesh for the node's place in the cluster. Returns the
    /// MTU containers must not exceed (the overlay's), if there is an overlay.
    pub fn prepare(&self, info: &NodeNetInfo) -> Result<Option<u32>, String> {
        let (tx, rx) = mpsc::channel();
        self.send(Msg::Prepare(info.clone(), tx));
        rx.recv()
            .unwrap_or_else(|_| Err("the node network worker is gone".into()))
    }

    /// The node bridge is up with `gateway`: the resolver listens there.
    pub fn bridge_ready(&self, gateway: Ipv4Addr) {
        self.send(Msg::Bridge(gateway));
    }

    /// Queues one message of the network map.
    pub fn update(&self, update: NetworkUpdate) {
        if update.full {
            // Until it is applied, starts wait for it rather than read the old view.
            self.shared.view().full = false;
        }
        self.send(Msg::Update(update));
    }

    /// Whether this node's rules send traffic to `address` now.
    pub fn is_endpoint(&self, address: Ipv4Addr) -> bool {
        self.shared.view().endpoints.contains(&address)
    }

    /// Waits until this node's rules no longer send traffic to `address` (the controller took
    /// its task out of its services), for at most `wait`; whether they stopped. The other
    /// nodes apply the same change at about the same time.
    pub fn drained(&self, address: Ipv4Addr, wait: Duration) -> bool {
        let view = self.wait_view(wait, |v| !v.endpoints.contains(&address));
        !view.endpoints.contains(&address)
    }

    /// What a container of a task linking to `links` (service names) needs: the resolver
    /// and the linked services' VIPs. Waits up to `wait` for a map naming them all; `Err`
    /// names the missing ones.
    pub fn task_network(&self, links: &[&str], wait: Duration) -> Result<TaskNetwork, String> {
        let view = self.wait_view(wait, |v| {
            (v.full || links.is_empty()) && links.iter().all(|l| v.services.contains_key(*l))
        });
        let missing: Vec<&str> = links
            .iter()
            .copied()
            .filter(|l| !view.services.contains_key(*l))
            .collect();
        if (view.full || links.is_empty()) && missing.is_empty() {
            return Ok(TaskNetwork {
                dns: view.dns.into_iter().collect(),
                links: links
                    .iter()
                    .filter_map(|l| Some((l.to_string(), view.services.get(*l)?.clone())))
                    .collect(),
            });
        }
        Err(if view.full {
            format!(
                "linked service(s) {} unknown to the cluster's network map (removed?)",
                missing.join(", ")
            )
        } else {
            "the node has not received the cluster's network map yet".to_owned()
        })
    }

    /// The view once `ready` holds of it, or as it is after `wait`.
    fn wait_view(
        &self,
        wait: Duration,
        mut ready: impl FnMut(&View) -> bool,
    ) -> MutexGuard<'_, View> {
        let deadline = Instant::now() + wait;
        let mut view = self.shared.view();
        loop {
            let now = Instant::now();
            if ready(&view) || now >= deadline {
                return view;
            }
            view = self
                .shared
                .changed
                .wait_timeout(view, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for NodeNetwork {
    fn drop(&mut self) {
        // Closing the channel ends the worker; its rules and the overlay stay (containers
        // keep running across agent restarts).
        let (dead, _) = mpsc::channel();
        *self.tx.lock().unwrap_or_else(|e| e.into_inner()) = dead;
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    rt: tokio::runtime::Runtime,
    firewall: Arc<dyn ServiceFirewall>,
    shared: Arc<Shared>,
    info: Option<NodeNetInfo>,
    overlay: Option<Overlay>,
    mesh: Option<MeshConfig>,
    gateway: Option<Ipv4Addr>,
    dns: Option<DnsServer>,
    records: DnsRecords,
    nodes: BTreeMap<String, (Ipv4Addr, Ipv4Net)>,
    services: BTreeMap<String, NetworkService>,
    /// What the rules hold now, by service.
    applied: HashMap<String, ServiceRules>,
    /// Services whose rules must be rewritten.
    dirty: Vec<String>,
    /// Every service's rules must be synced exactly (a whole map arrived, or a batch failed).
    resync: bool,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut peers_dirty = false;
        loop {
            let wait = if self.resync || !self.dirty.is_empty() || self.wants_dns() {
                RETRY
            } else {
                Duration::from_secs(3600)
            };
            let first = match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut msgs: Vec<Msg> = first.into_iter().collect();
            msgs.extend(rx.try_iter());
            let mut map_changed = false;
            for msg in msgs {
                match msg {
                    Msg::Prepare(info, reply) => {
                        let r = self.prepare(info);
                        peers_dirty = true;
                        let _ = reply.send(r);
                    }
                    Msg::Bridge(gateway) => {
                        if self.gateway != Some(gateway) {
                            self.gateway = Some(gateway);
                            if let Some(old) = self.dns.take() {
                                self.rt.block_on(old.shutdown());
                            }
                        }
                    }
                    Msg::Update(u) => {
                        peers_dirty |= !u.nodes.is_empty() || !u.nodes_removed.is_empty() || u.full;
                        self.merge(u);
                        map_changed = true;
                    }
                }
            }
            if self.wants_dns() {
                self.start_dns();
            }
            if peers_dirty && self.overlay.is_some() {
                peers_dirty = !self.set_peers();
            }
            self.apply_rules();
            if map_changed {
                self.publish_view();
            }
            self.publish_endpoints();
        }
    }

    fn wants_dns(&self) -> bool {
        self.dns.is_none() && self.gateway.is_some()
    }

    /// The overlay and the mesh for `info`; the overlay's MTU.
    fn prepare(&mut self, info: NodeNetInfo) -> Result<Option<u32>, String> {
        let (Some(cluster_range), IpAddr::V4(local)) = (info.cluster_range, info.address) else {
            self.info = Some(info);
            warn!(
                "the controller gave no cluster range, or the node's address is not IPv4: no overlay nor service addresses"
            );
            return Ok(None);
        };
        let mode: OverlayMode = if info.overlay.is_empty() {
            OverlayMode::Vxlan
        } else {
            info.overlay.parse().map_err(|e| format!("{e}"))?
        };
        let config = OverlayConfig::new(mode, local, info.subnet);
        let mtu = if self.overlay.as_ref().is_some_and(|o| *o.config() == config) {
            self.overlay.as_ref().map(Overlay::mtu)
        } else {
            match self.rt.block_on(Overlay::ensure(config)) {
                Err(e) => {
                    // The node keeps its service addresses and DNS without an overlay; only
                    // other nodes' tasks are out of reach.
                    warn!(mode = %mode, error = %e, "cannot set up the overlay; other nodes' containers are unreachable");
                    None
                }
                Ok(o) => {
                    info!(mode = %mode, mtu = o.mtu(), "node overlay ready");
                    if mode == OverlayMode::Vxlan {
                        // The node's 127.0.0.1 reaching an ingress port served on another
                        // node leaves through the overlay device.
                        let path = format!(
                            "/proc/sys/net/ipv4/conf/{}/route_localnet",
                            o.config().device
                        );
                        if let Err(e) = std::fs::write(&path, "1") {
                            warn!(%path, error = %e, "cannot set route_localnet on the overlay");
                        }
                    }
                    let mtu = o.mtu();
                    self.overlay = Some(o);
                    Some(mtu)
                }
            }
        };
        let mesh = MeshConfig {
            cluster_range,
            node_subnet: info.subnet,
        };
        if self.mesh.as_ref() != Some(&mesh) {
            self.firewall
                .setup_mesh(&mesh)
                .map_err(|e| format!("setting up the service mesh's rules: {e}"))?;
            self.mesh = Some(mesh);
            self.resync = true;
        }
        self.info = Some(info);
        Ok(mtu)
    }

    fn start_dns(&mut self) {
        let Some(gateway) = self.gateway else { return };
        let upstreams = std::fs::read_to_string(HOST_RESOLV)
            .map(|t| upstreams_from_resolv_conf(&t))
            .unwrap_or_default();
        let listen = SocketAddr::new(IpAddr::V4(gateway), 53);
        match self
            .rt
            .block_on(DnsServer::start(listen, self.records.clone(), upstreams))
        {
            Ok(server) => {
                info!(%listen, "node DNS resolver listening");
                self.dns = Some(server);
                self.shared.view().dns = Some(gateway);
                self.shared.changed.notify_all();
            }
            Err(e) => warn!(%listen, error = %e, "cannot start the node's DNS resolver; retrying"),
        }
    }

    fn merge(&mut self, u: NetworkUpdate) {
        if u.full {
            self.nodes.clear();
            self.services.clear();
            self.resync = true;
        }
        for id in &u.nodes_removed {
            self.nodes.remove(id);
        }
        for n in u.nodes {
            match (n.address.parse::<Ipv4Addr>(), n.subnet.parse::<Ipv4Net>()) {
                (Ok(a), Ok(s)) => {
                    self.nodes.insert(n.id, (a, s));
                }
                _ => {
                    warn!(node = %n.id, address = %n.address, subnet = %n.subnet, "a node of the network map has no IPv4 address or subnet; left out of the overlay")
                }
            }
        }
        for name in u.services_removed {
            self.services.remove(&name);
            self.dirty.push(name);
        }
        for s in u.services {
            self.dirty.push(s.name.clone());
            self.services.insert(s.name.clone(), s);
        }
    }

    /// Returns whether the peers are in place.
    fn set_peers(&mut self) -> bool {
        let Some(overlay) = &self.overlay else {
            return true;
        };
        let own = self.info.as_ref().map(|i| i.subnet);
        let peers: Vec<Peer> = self
            .nodes
            .values()
            .filter(|(_, s)| Some(s.trunc()) != own.map(|o| o.trunc()))
            .map(|(address, subnet)| Peer {
                address: *address,
                subnet: *subnet,
            })
            .collect();
        match self.rt.block_on(overlay.set_peers(&peers)) {
            Ok(change) => {
                if !change.is_empty() {
                    info!(peers = peers.len(), added = ?change.added, removed = ?change.removed, changed = ?change.changed, "overlay peers updated");
                }
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot update the overlay's peers; retrying");
                false
            }
        }
    }

    fn rules_of(&self, s: &NetworkService) -> ServiceRules {
        ServiceRules {
            name: s.name.clone(),
            vip: s.vip.parse().ok(),
            endpoints: s
                .endpoints
                .iter()
                .filter_map(|e| e.address.parse().ok())
                .collect(),
            ingress: s
                .ingress
                .iter()
                .filter_map(|p| {
                    Some(IngressPort {
                        protocol: match p.protocol() {
                            Protocol::Udp => Proto::Udp,
                            Protocol::Tcp | Protocol::Unspecified => Proto::Tcp,
                        },
                        published: u16::try_from(p.published).ok().filter(|p| *p != 0)?,
                        target: u16::try_from(p.target).ok().filter(|p| *p != 0)?,
                    })
                })
                .collect(),
        }
    }

    fn apply_rules(&mut self) {
        if self.mesh.is_none() {
            return;
        }
        if self.resync {
            let all: Vec<ServiceRules> = self.services.values().map(|s| self.rules_of(s)).collect();
            let started = Instant::now();
            match self.firewall.sync_services(&all) {
                Ok(()) => {
                    info!(services = all.len(), took = ?started.elapsed(), "service rules synced");
                    self.applied = all.into_iter().map(|r| (r.name.clone(), r)).collect();
                    self.resync = false;
                    self.dirty.clear();
                }
                Err(e) => warn!(error = %e, "cannot sync the service rules; retrying"),
            }
            return;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort();
        dirty.dedup();
        if dirty.len() > 1 {
            self.apply_batch(dirty);
            return;
        }
        for name in dirty {
            let started = Instant::now();
            let result = match self.services.get(&name) {
                Some(s) => {
                    let next = self.rules_of(s);
                    if self.applied.get(&name) == Some(&next) {
                        continue;
                    }
                    self.firewall
                        .apply_service(self.applied.get(&name), &next)
                        .map(|()| Some(next))
                }
                None => match self.applied.get(&name) {
                    Some(prev) => self.firewall.remove_service(prev).map(|()| None),
                    None => continue,
                },
            };
            match result {
                Ok(Some(next)) => {
                    debug!(service = %name, endpoints = next.endpoints.len(), took = ?started.elapsed(), "service rules applied");
                    self.applied.insert(name, next);
                }
                Ok(None) => {
                    debug!(service = %name, took = ?started.elapsed(), "service rules removed");
                    self.applied.remove(&name);
                }
                Err(e) => {
                    warn!(service = %name, error = %e, "cannot apply the service's rules; syncing them all");
                    self.resync = true;
                }
            }
        }
    }

    /// Several services changed at once (a deploy, a node lost): their changes go in one
    /// `iptables-restore` instead of one each; if it is refused, everything is synced.
    fn apply_batch(&mut self, names: Vec<String>) {
        let started = Instant::now();
        let next: Vec<(String, Option<ServiceRules>)> = names
            .into_iter()
            .map(|name| {
                let rules = self.services.get(&name).map(|s| self.rules_of(s));
                (name, rules)
            })
            .filter(|(name, rules)| self.applied.get(name) != rules.as_ref())
            .collect();
        if next.is_empty() {
            return;
        }
        let changes: Vec<ServiceChange<'_>> = next
            .iter()
            .map(|(name, rules)| ServiceChange {
                previous: self.applied.get(name),
                next: rules.as_ref(),
            })
            .collect();
        match self.firewall.apply_services(&changes) {
            Ok(()) => {
                debug!(services = next.len(), took = ?started.elapsed(), "service rules applied");
                for (name, rules) in next {
                    match rules {
                        Some(r) => self.applied.insert(name, r),
                        None => self.applied.remove(&name),
                    };
                }
            }
            Err(e) => {
                warn!(services = next.len(), error = %e, "cannot apply the services' rules; syncing them all");
                self.resync = true;
            }
        }
    }

    /// Publishes the task addresses the applied rules send traffic to, for
    /// [`NodeNetwork::drained`].
    fn publish_endpoints(&self) {
        let endpoints: std::collections::HashSet<Ipv4Addr> = self
            .applied
            .values()
            .flat_map(|r| r.endpoints.iter().copied())
            .collect();
        let mut view = self.shared.view();
        if view.endpoints != endpoints {
            view.endpoints = endpoints;
            drop(view);
            self.shared.changed.notify_all();
        }
    }

    fn publish_view(&mut self) {
        let entries = self.services.values().map(|s| ServiceEntry {
            name: s.name.clone(),
            vip: s.vip.parse().ok(),
            tasks: s
                .endpoints
                .iter()
                .filter_map(|e| e.address.parse().ok())
                .collect(),
        });
        if let Err(e) = self.records.replace_all(entries) {
            warn!(error = %e, "a service name cannot be served by DNS");
        }
        let services = self
            .services
            .values()
            .filter_map(|s| {
                Some((
                    s.name.clone(),
                    LinkedService {
                        vip: s.vip.parse().ok()?,
                        ports: exposed(s),
                    },
                ))
            })
            .collect();
        let mut view = self.shared.view();
        view.services = services;
        view.full = true;
        drop(view);
        self.shared.changed.notify_all();
    }
}

/// Removes what the cluster network put on the node: the mesh's and services' rules (through
/// `firewall`) and the overlay device and routes (`berth-agent teardown`, after the agent
/// stopped). Keeps going past errors and returns them.
pub fn teardown(firewall: &dyn ServiceFirewall) -> Vec<String> {
    let mut errors = Vec::new();
    if let Err(e) = firewall.teardown_mesh() {
        errors.push(format!("removing the service mesh's rules: {e}"));
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            if let Err(e) = rt.block_on(overlay::teardown(overlay::DEFAULT_DEVICE)) {
                errors.push(format!("removing the overlay: {e}"));
            }
        }
        Err(e) => errors.push(format!("removing the overlay: no runtime: {e}")),
    }
    errors
}

/// A service's ports as link variables count them.
fn exposed(s: &NetworkService) -> Vec<ExposedPort> {
    let mut ports: Vec<ExposedPort> = s
        .ports
        .iter()
        .filter_map(|p| {
            Some(ExposedPort {
                port: u16::try_from(p.target).ok()?,
                proto: match p.protocol() {
                    Protocol::Udp => LinkProto::Udp,
                    Protocol::Tcp | Protocol::Unspecified => LinkProto::Tcp,
                },
            })
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}
