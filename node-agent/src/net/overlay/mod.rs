//! The overlay between nodes (issue 7): every node's container subnet reachable from every
//! other node, programmed by each agent from the node list the controller distributes.
//!
//! Two modes ([`OverlayMode`]):
//!
//! - **vxlan** (flannel's vxlan backend, all over rtnetlink): one vxlan device per node
//!   ([`DEFAULT_DEVICE`], VNI [`DEFAULT_VNI`], UDP port [`DEFAULT_PORT`]) with this node's
//!   underlay address as `local`, learning off and no multicast group: every forwarding
//!   (FDB) and neighbour entry is written by the agent, so it works across L3 subnets. The
//!   device's MAC and address come from the node's subnet ([`vtep_mac`], [`vtep_ip`]:
//!   `10.42.3.0/24` → `0e:be:0a:2a:03:00` and `10.42.3.0/32`), so a peer is fully described
//!   by its underlay address and subnet. Its MTU is the underlay link's minus
//!   [`VXLAN_OVERHEAD`]; [`Overlay::mtu`] is what the bridge and containers must use.
//! - **routed**: a plain route to each peer's subnet via its underlay address, no
//!   encapsulation; only for nodes on one L2 segment.
//!
//! Routes are marked with route protocol [`ROUTE_PROTOCOL`] (`proto 184` in `ip route`), so
//! [`Overlay::set_peers`] and [`teardown`] find exactly berth's routes and never touch
//! another. [`Overlay::set_peers`] is incremental: it reads what is installed, computes the
//! difference in pure code ([`plan`]) and changes only that.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use rtnetlink::Handle;

mod apply;
pub mod plan;

#[cfg(test)]
mod tests;

pub use plan::{PlanError, vtep_ip, vtep_mac};

/// The vxlan device's default name.
pub const DEFAULT_DEVICE: &str = "berth.vx";
/// The default VXLAN network identifier.
pub const DEFAULT_VNI: u32 = 4242;
/// The IANA VXLAN port.
pub const DEFAULT_PORT: u16 = 4789;
/// Bytes VXLAN adds to every packet over IPv4: outer IPv4 (20), UDP (8), VXLAN (8) and
/// inner Ethernet (14) headers.
pub const VXLAN_OVERHEAD: u32 = 50;
/// The route protocol (`rtm_protocol`) of every route berth's overlay installs. 184 is in
/// neither the kernel's list nor iproute2's `rt_protos`, and below the block FRR's zebra
/// claims (186–199, which zebra sweeps at start: 190, say, is its RIPng).
pub const ROUTE_PROTOCOL: u8 = 184;
/// Largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// How node subnets reach each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OverlayMode {
    /// VXLAN encapsulation between the nodes' underlay addresses; any L3 topology.
    Vxlan,
    /// Plain routes via the peers' underlay addresses; nodes must share an L2 segment.
    Routed,
}

impl OverlayMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OverlayMode::Vxlan => "vxlan",
            OverlayMode::Routed => "routed",
        }
    }
}

impl fmt::Display for OverlayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OverlayMode {
    type Err = OverlayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vxlan" => Ok(OverlayMode::Vxlan),
            "routed" => Ok(OverlayMode::Routed),
            _ => Err(OverlayError::InvalidMode {
                value: s.to_owned(),
            }),
        }
    }
}

/// This node's side of the overlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayConfig {
    pub mode: OverlayMode,
    /// The vxlan device's name (unused in routed mode, except to remove a leftover device).
    pub device: String,
    pub vni: u32,
    /// UDP destination port of the encapsulated packets.
    pub port: u16,
    /// This node's underlay address; the link holding it carries the overlay.
    pub local: Ipv4Addr,
    /// This node's container subnet (host bits are ignored).
    pub subnet: Ipv4Net,
}

impl OverlayConfig {
    /// A configuration with the default device, VNI and port.
    pub fn new(mode: OverlayMode, local: Ipv4Addr, subnet: Ipv4Net) -> OverlayConfig {
        OverlayConfig {
            mode,
            device: DEFAULT_DEVICE.to_owned(),
            vni: DEFAULT_VNI,
            port: DEFAULT_PORT,
            local,
            subnet,
        }
    }

    fn validate(&self) -> Result<(), OverlayError> {
        crate::net::link::validate_name(&self.device).map_err(|e| OverlayError::InvalidConfig {
            field: "device",
            value: self.device.clone(),
            reason: e.to_string(),
        })?;
        if self.vni > MAX_VNI {
            return Err(OverlayError::InvalidConfig {
                field: "vni",
                value: self.vni.to_string(),
                reason: format!("larger than {MAX_VNI} (24 bits)"),
            });
        }
        if self.port == 0 {
            return Err(OverlayError::InvalidConfig {
                field: "port",
                value: "0".to_owned(),
                reason: "must not be 0".to_owned(),
            });
        }
        if self.local.is_unspecified() || self.local.is_multicast() || self.local.is_broadcast() {
            return Err(OverlayError::InvalidConfig {
                field: "local",
                value: self.local.to_string(),
                reason: "not a unicast address".to_owned(),
            });
        }
        Ok(())
    }
}

/// Another node: its underlay address and its container subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    pub address: Ipv4Addr,
    pub subnet: Ipv4Net,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.subnet, self.address)
    }
}

/// What [`Overlay::set_peers`] changed, by peer subnet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerChange {
    /// Peers that had no entries before.
    pub added: Vec<Ipv4Net>,
    /// Peers whose entries were removed.
    pub removed: Vec<Ipv4Net>,
    /// Peers kept whose entries changed (a new underlay address, a damaged entry).
    pub changed: Vec<Ipv4Net>,
    /// Kernel operations carried out (including cleanups not tied to a peer).
    pub operations: usize,
}

impl PeerChange {
    /// Whether nothing had to be changed.
    pub fn is_empty(&self) -> bool {
        self.operations == 0
    }
}

/// A failed overlay operation, naming what it was done to.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("invalid overlay mode {value:?}: expected \"vxlan\" or \"routed\"")]
    InvalidMode { value: String },
    #[error("invalid overlay {field} {value:?}: {reason}")]
    InvalidConfig {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid peer list")]
    InvalidPeers(#[source] PlanError),
    #[error("opening a netlink route socket")]
    Connect(#[source] std::io::Error),
    #[error("{op} {subject}")]
    Netlink {
        subject: String,
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("no link holds the local address {address}")]
    NoUnderlay { address: Ipv4Addr },
    #[error("link {device} exists but is not a vxlan device")]
    NotVxlan { device: String },
    #[error("link {device} disappeared while being configured")]
    Vanished { device: String },
    /// Some of `total` changes failed; every one was tried.
    #[error(
        "{failed} of {total} overlay changes failed; the first: {first}",
        failed = errors.len(),
        first = first_error(errors)
    )]
    Incomplete {
        total: usize,
        errors: Vec<OverlayError>,
    },
}

/// The first error with its causes, as `Incomplete` has no single source.
fn first_error(errors: &[OverlayError]) -> String {
    let Some(first) = errors.first() else {
        return String::new();
    };
    let mut out = first.to_string();
    let mut cause = std::error::Error::source(first);
    while let Some(e) = cause {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cause = e.source();
    }
    out
}

/// This node's overlay, set up by [`Overlay::ensure`].
#[derive(Clone, Debug)]
pub struct Overlay {
    handle: Handle,
    config: OverlayConfig,
    /// The vxlan device's ifindex (vxlan mode only).
    device_index: Option<u32>,
    underlay_mtu: u32,
}

impl Overlay {
    /// [`Overlay::ensure_with`] over a new netlink connection spawned on the current tokio
    /// runtime (in the calling thread's network namespace).
    pub async fn ensure(config: OverlayConfig) -> Result<Overlay, OverlayError> {
        Overlay::ensure_with(spawn_handle()?, config).await
    }

    /// Sets this node's side up, idempotently. Vxlan mode: the device is created, or adopted
    /// and fixed (VNI, port, `local`, underlay link, learning or a group that differ mean it
    /// is recreated; MTU, MAC, address and up are set in place), and routed-mode routes are
    /// removed. Routed mode: a leftover vxlan device of that name is removed (its routes go
    /// with it). A link of that name that is not a vxlan device is never touched.
    pub async fn ensure_with(
        handle: Handle,
        config: OverlayConfig,
    ) -> Result<Overlay, OverlayError> {
        config.validate()?;
        let nl = apply::Netlink::new(handle.clone());
        let underlay = nl.underlay(config.local).await?;
        let device_index = match config.mode {
            OverlayMode::Vxlan => {
                let index = nl.ensure_vxlan(&config, &underlay).await?;
                nl.remove_routes_not_via(Some(index)).await?;
                Some(index)
            }
            OverlayMode::Routed => {
                nl.delete_vxlan(&config.device).await?;
                None
            }
        };
        Ok(Overlay {
            handle,
            config,
            device_index,
            underlay_mtu: underlay.mtu,
        })
    }

    /// The MTU the node's bridge and containers must use: the underlay link's, less
    /// [`VXLAN_OVERHEAD`] in vxlan mode.
    pub fn mtu(&self) -> u32 {
        match self.config.mode {
            OverlayMode::Vxlan => self.underlay_mtu.saturating_sub(VXLAN_OVERHEAD),
            OverlayMode::Routed => self.underlay_mtu,
        }
    }

    pub fn config(&self) -> &OverlayConfig {
        &self.config
    }

    /// Makes the installed entries match `peers` (the whole node list; this node's own entry
    /// is recognised by its subnet and skipped): reads berth's routes and the vxlan device's
    /// FDB and neighbour entries, then adds what is missing, replaces what is wrong and
    /// removes what is no longer wanted, touching nothing else. A refused peer list
    /// ([`PlanError`]) changes nothing; otherwise every operation is tried, and the failures
    /// are returned together as [`OverlayError::Incomplete`].
    pub async fn set_peers(&self, peers: &[Peer]) -> Result<PeerChange, OverlayError> {
        let wanted = plan::wanted(self.config.mode, self.config.subnet, peers)
            .map_err(OverlayError::InvalidPeers)?;
        let nl = apply::Netlink::new(self.handle.clone());
        let installed = nl.installed(self.device_index).await?;
        let plan = plan::plan(&installed, &wanted);
        let total = plan.ops.len();
        let mut errors = Vec::new();
        for op in &plan.ops {
            if let Err(e) = nl.apply(op, self.device_index, &self.config.device).await {
                errors.push(e);
            }
        }
        if !errors.is_empty() {
            return Err(OverlayError::Incomplete { total, errors });
        }
        if total > 0 {
            tracing::info!(
                device = %self.config.device,
                mode = %self.config.mode,
                added = ?plan.added,
                removed = ?plan.removed,
                changed = ?plan.changed,
                operations = total,
                "overlay peers updated"
            );
        }
        Ok(PeerChange {
            added: plan.added,
            removed: plan.removed,
            changed: plan.changed,
            operations: total,
        })
    }

    /// Removes this overlay: berth's routes and the vxlan device ([`teardown_with`]).
    pub async fn teardown(self) -> Result<(), OverlayError> {
        teardown_with(self.handle, &self.config.device).await
    }
}

/// [`teardown_with`] over a new netlink connection on the current tokio runtime.
pub async fn teardown(device: &str) -> Result<(), OverlayError> {
    teardown_with(spawn_handle()?, device).await
}

/// Removes every route with berth's [`ROUTE_PROTOCOL`] and the vxlan device `device` (with
/// its FDB and neighbour entries); a link of that name that is not a vxlan device is left
/// alone. Idempotent, and fine when nothing exists; keeps going past a failure and returns
/// all of them ([`OverlayError::Incomplete`]).
pub async fn teardown_with(handle: Handle, device: &str) -> Result<(), OverlayError> {
    crate::net::link::validate_name(device).map_err(|e| OverlayError::InvalidConfig {
        field: "device",
        value: device.to_owned(),
        reason: e.to_string(),
    })?;
    let nl = apply::Netlink::new(handle);
    let mut errors = Vec::new();
    let mut total = 1;
    match nl.berth_routes().await {
        Ok(routes) => {
            total += routes.len();
            for route in routes {
                if let Err(e) = nl.delete_route(&route).await {
                    errors.push(e);
                }
            }
        }
        Err(e) => errors.push(e),
    }
    if let Err(e) = nl.delete_vxlan(device).await {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(OverlayError::Incomplete { total, errors })
    }
}

fn spawn_handle() -> Result<Handle, OverlayError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(OverlayError::Connect)?;
    tokio::spawn(conn);
    Ok(handle)
}
