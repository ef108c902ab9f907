//! The overlay's pure core: what the kernel should hold for a peer list ([`wanted`]) and the
//! operations that turn what it holds into that ([`plan`]). No I/O; the netlink shell in
//! `apply.rs` reads the installed entries and carries the operations out.
//!
//! Entries (per peer other than this node):
//!
//! - vxlan mode: an FDB entry `peer_mac dst peer.address` on the vxlan device, a neighbour
//!   `peer_vtep lladdr peer_mac` on it, and a route `peer.subnet via peer_vtep dev <vxlan>
//!   onlink`; the peer's VTEP address and MAC are derived from its subnet ([`vtep_ip`],
//!   [`vtep_mac`]), so the controller distributes only `(address, subnet)` pairs.
//! - routed mode: a route `peer.subnet via peer.address`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{OverlayMode, Peer};

#[cfg(test)]
mod tests;

/// First two bytes of every VTEP MAC: locally administered (bit 1 set), unicast (bit 0
/// clear), and `be` for berth.
pub const VTEP_MAC_PREFIX: [u8; 2] = [0x0e, 0xbe];

/// The MAC of the vxlan device of the node owning `subnet`: [`VTEP_MAC_PREFIX`] followed by
/// the four bytes of the subnet's network address (`10.42.3.0/24` → `0e:be:0a:2a:03:00`).
/// Every node computes every peer's MAC itself, so MACs need no distribution; subnets do
/// not overlap, so neither do the MACs.
pub fn vtep_mac(subnet: Ipv4Net) -> [u8; 6] {
    let [a, b, c, d] = subnet.network().octets();
    [VTEP_MAC_PREFIX[0], VTEP_MAC_PREFIX[1], a, b, c, d]
}

/// The address of the vxlan device of the node owning `subnet`: the subnet's network address
/// (flannel's VTEP address; `10.42.3.0` for `10.42.3.0/24`), held as a /32.
pub fn vtep_ip(subnet: Ipv4Net) -> Ipv4Addr {
    subnet.network()
}

/// A route berth installed (or wants): `dst via via`, through the vxlan device with `onlink`
/// when `vxlan` is set, else through whatever link the kernel picks for `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteEntry {
    pub dst: Ipv4Net,
    pub via: Ipv4Addr,
    pub vxlan: bool,
}

/// A forwarding entry on the vxlan device: frames for `mac` go to the VTEP at `dst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FdbEntry {
    pub mac: [u8; 6],
    pub dst: Ipv4Addr,
}

/// A permanent neighbour on the vxlan device: `ip lladdr mac`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NeighEntry {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// A set of overlay entries: what is installed, or what is wanted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entries {
    pub routes: Vec<RouteEntry>,
    pub fdb: Vec<FdbEntry>,
    pub neigh: Vec<NeighEntry>,
}

/// One change to the kernel's state. `replace` overwrites the entry with the same key (route
/// destination, neighbour address, FDB MAC) in place, without a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    DelRoute(RouteEntry),
    DelNeigh(NeighEntry),
    DelFdb(FdbEntry),
    AddFdb { entry: FdbEntry, replace: bool },
    AddNeigh { entry: NeighEntry, replace: bool },
    AddRoute { entry: RouteEntry, replace: bool },
}

impl Op {
    /// The peer subnet this operation belongs to, when it can be told from the entry: a
    /// route's destination; a neighbour or FDB entry only when `subnets` has a wanted peer
    /// with that VTEP address or MAC.
    pub fn subnet(&self, subnets: &[Ipv4Net]) -> Option<Ipv4Net> {
        match self {
            Op::DelRoute(r) | Op::AddRoute { entry: r, .. } => Some(r.dst),
            Op::DelNeigh(n) | Op::AddNeigh { entry: n, .. } => {
                subnets.iter().copied().find(|s| vtep_ip(*s) == n.ip)
            }
            Op::DelFdb(f) | Op::AddFdb { entry: f, .. } => {
                subnets.iter().copied().find(|s| vtep_mac(*s) == f.mac)
            }
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::DelRoute(r) => write!(f, "deleting route {r}"),
            Op::DelNeigh(n) => write!(f, "deleting neighbour {n}"),
            Op::DelFdb(e) => write!(f, "deleting fdb entry {e}"),
            Op::AddFdb { entry, replace } => write!(f, "{} fdb entry {entry}", verb(*replace)),
            Op::AddNeigh { entry, replace } => {
                write!(f, "{} neighbour {entry}", verb(*replace))
            }
            Op::AddRoute { entry, replace } => write!(f, "{} route {entry}", verb(*replace)),
        }
    }
}

fn verb(replace: bool) -> &'static str {
    if replace { "replacing" } else { "adding" }
}

/// `0e:be:0a:2a:03:00`
pub struct Mac<'a>(pub &'a [u8]);

impl fmt::Display for Mac<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for RouteEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.dst, self.via)?;
        if self.vxlan {
            f.write_str(" onlink over the vxlan device")?;
        }
        Ok(())
    }
}

impl fmt::Display for FdbEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} dst {}", Mac(&self.mac), self.dst)
    }
}

impl fmt::Display for NeighEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} lladdr {}", self.ip, Mac(&self.mac))
    }
}

/// Why a peer list was refused (nothing is changed then).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("peers {first} and {second} both claim subnet {subnet}")]
    DuplicateSubnet {
        subnet: Ipv4Net,
        first: Ipv4Addr,
        second: Ipv4Addr,
    },
    #[error("peer {peer}'s subnet {subnet} overlaps {other}")]
    Overlap {
        peer: Ipv4Addr,
        subnet: Ipv4Net,
        other: Ipv4Net,
    },
}

/// The peers that get entries: host bits cleared, the one owning `own` (this node) left out,
/// exact duplicates merged, sorted by subnet. Refuses two peers claiming one subnet and
/// subnets that overlap each other or `own`.
pub fn effective_peers(own: Ipv4Net, peers: &[Peer]) -> Result<Vec<Peer>, PlanError> {
    let own = own.trunc();
    let mut by_subnet: BTreeMap<Ipv4Net, Ipv4Addr> = BTreeMap::new();
    for peer in peers {
        let subnet = peer.subnet.trunc();
        if subnet == own {
            continue;
        }
        if own.contains(&subnet) || subnet.contains(&own) {
            return Err(PlanError::Overlap {
                peer: peer.address,
                subnet,
                other: own,
            });
        }
        match by_subnet.get(&subnet) {
            Some(first) if *first != peer.address => {
                return Err(PlanError::DuplicateSubnet {
                    subnet,
                    first: *first,
                    second: peer.address,
                });
            }
            _ => {
                by_subnet.insert(subnet, peer.address);
            }
        }
    }
    // Sorted by network then prefix, so an overlap is always between neighbours in the order
    // or caught by the running widest subnet.
    let mut out: Vec<Peer> = Vec::with_capacity(by_subnet.len());
    let mut widest: Option<(Ipv4Net, Ipv4Addr)> = None;
    for (subnet, address) in by_subnet {
        if let Some((w, _)) = widest
            && w.contains(&subnet)
        {
            return Err(PlanError::Overlap {
                peer: address,
                subnet,
                other: w,
            });
        }
        if widest.is_none_or(|(w, _)| subnet.broadcast() > w.broadcast()) {
            widest = Some((subnet, address));
        }
        out.push(Peer { address, subnet });
    }
    Ok(out)
}

/// The entries `mode` needs for `peers` ([`effective_peers`]).
pub fn wanted(mode: OverlayMode, own: Ipv4Net, peers: &[Peer]) -> Result<Entries, PlanError> {
    let peers = effective_peers(own, peers)?;
    let mut out = Entries::default();
    for peer in &peers {
        match mode {
            OverlayMode::Vxlan => {
                let (ip, mac) = (vtep_ip(peer.subnet), vtep_mac(peer.subnet));
                out.fdb.push(FdbEntry {
                    mac,
                    dst: peer.address,
                });
                out.neigh.push(NeighEntry { ip, mac });
                out.routes.push(RouteEntry {
                    dst: peer.subnet,
                    via: ip,
                    vxlan: true,
                });
            }
            OverlayMode::Routed => out.routes.push(RouteEntry {
                dst: peer.subnet,
                via: peer.address,
                vxlan: false,
            }),
        }
    }
    Ok(out)
}

/// What [`plan`] decided, per peer subnet, besides the operations themselves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// In order: deletions (routes, neighbours, FDB entries), then additions (FDB entries,
    /// neighbours, routes), so a route never points at a missing neighbour.
    pub ops: Vec<Op>,
    /// Wanted subnets that had no route.
    pub added: Vec<Ipv4Net>,
    /// Routed subnets no longer wanted.
    pub removed: Vec<Ipv4Net>,
    /// Wanted subnets that had a route, with at least one of their entries changed.
    pub changed: Vec<Ipv4Net>,
}

/// The operations that turn `installed` into `wanted`, touching nothing that is already
/// right. Per key (route destination, neighbour address, FDB MAC): a missing entry is added;
/// a single wrong one is replaced in place; several where one is wanted (someone appended)
/// are all deleted unless one of them is right, and the right one kept or added; a key not
/// wanted is deleted.
pub fn plan(installed: &Entries, wanted: &Entries) -> Plan {
    let mut dels = Vec::new();
    let mut adds = Vec::new();

    let routes = diff(&installed.routes, &wanted.routes, |r| r.dst);
    let neigh = diff(&installed.neigh, &wanted.neigh, |n| n.ip);
    let fdb = diff(&installed.fdb, &wanted.fdb, |f| f.mac);

    dels.extend(routes.dels.iter().copied().map(Op::DelRoute));
    dels.extend(neigh.dels.iter().copied().map(Op::DelNeigh));
    dels.extend(fdb.dels.iter().copied().map(Op::DelFdb));
    adds.extend(
        fdb.adds
            .iter()
            .map(|&(entry, replace)| Op::AddFdb { entry, replace }),
    );
    adds.extend(
        neigh
            .adds
            .iter()
            .map(|&(entry, replace)| Op::AddNeigh { entry, replace }),
    );
    adds.extend(
        routes
            .adds
            .iter()
            .map(|&(entry, replace)| Op::AddRoute { entry, replace }),
    );

    let installed_dsts: BTreeSet<Ipv4Net> = installed.routes.iter().map(|r| r.dst).collect();
    let wanted_dsts: BTreeSet<Ipv4Net> = wanted.routes.iter().map(|r| r.dst).collect();
    let wanted_list: Vec<Ipv4Net> = wanted_dsts.iter().copied().collect();
    let added: Vec<Ipv4Net> = wanted_dsts.difference(&installed_dsts).copied().collect();
    let removed: Vec<Ipv4Net> = installed_dsts.difference(&wanted_dsts).copied().collect();
    let touched: BTreeSet<Ipv4Net> = dels
        .iter()
        .chain(&adds)
        .filter_map(|op| op.subnet(&wanted_list))
        .collect();
    let changed = touched
        .into_iter()
        .filter(|s| wanted_dsts.contains(s) && installed_dsts.contains(s))
        .collect();

    dels.extend(adds);
    Plan {
        ops: dels,
        added,
        removed,
        changed,
    }
}

struct Diff<T> {
    dels: Vec<T>,
    adds: Vec<(T, bool)>,
}

fn diff<T, K>(installed: &[T], wanted: &[T], key: impl Fn(&T) -> K) -> Diff<T>
where
    T: Copy + Ord,
    K: Ord,
{
    let mut have: BTreeMap<K, BTreeSet<T>> = BTreeMap::new();
    for entry in installed {
        have.entry(key(entry)).or_default().insert(*entry);
    }
    let mut want: BTreeMap<K, T> = BTreeMap::new();
    for entry in wanted {
        want.entry(key(entry)).or_insert(*entry);
    }
    let mut out = Diff {
        dels: Vec::new(),
        adds: Vec::new(),
    };
    for (k, present) in &have {
        match want.get(k) {
            None => out.dels.extend(present.iter().copied()),
            Some(w) if present.contains(w) => {
                out.dels.extend(present.iter().copied().filter(|e| e != w));
            }
            Some(w) if present.len() == 1 => out.adds.push((*w, true)),
            Some(_) => out.dels.extend(present.iter().copied()),
        }
    }
    for (k, w) in &want {
        match have.get(k) {
            None => out.adds.push((*w, false)),
            Some(present) if present.len() > 1 && !present.contains(w) => {
                out.adds.push((*w, false))
            }
            Some(_) => {}
        }
    }
    out.adds.sort();
    out
}
