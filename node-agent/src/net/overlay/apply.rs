//! The overlay's netlink shell: reads what is installed (berth's routes, the vxlan device,
//! its FDB and neighbour entries) and carries out [`Op`]s. No decisions beyond "is this
//! ours".

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use super::plan::{Entries, FdbEntry, NeighEntry, Op, RouteEntry, vtep_ip, vtep_mac};
use super::{OverlayConfig, OverlayError, ROUTE_PROTOCOL, VXLAN_OVERHEAD};

/// The link that holds this node's underlay address.
#[derive(Clone, Debug)]
pub(super) struct Underlay {
    pub index: u32,
    pub mtu: u32,
}

/// A route with berth's protocol as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct InstalledRoute {
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

/// The errno of a netlink error, as a positive number.
fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}

fn nl(
    op: impl Into<String>,
    subject: impl Into<String>,
) -> impl FnOnce(rtnetlink::Error) -> OverlayError {
    let (op, subject) = (op.into(), subject.into());
    move |source| OverlayError::Netlink {
        subject,
        op,
        source,
    }
}

/// Treats "already gone" (`codes`) as success.
fn gone_ok(result: Result<(), rtnetlink::Error>, codes: &[i32]) -> Result<(), rtnetlink::Error> {
    match result {
        Err(e) if errno(&e).is_some_and(|c| codes.contains(&c)) => Ok(()),
        other => other,
    }
}

pub(super) struct Netlink {
    handle: Handle,
}

impl Netlink {
    pub fn new(handle: Handle) -> Netlink {
        Netlink { handle }
    }

    /// The link holding `local`, and its MTU.
    pub async fn underlay(&self, local: Ipv4Addr) -> Result<Underlay, OverlayError> {
        let addrs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing addresses", "to find the underlay link"))?;
        let index = addrs
            .iter()
            .filter(|m| m.header.family == AddressFamily::Inet)
            .find(|m| {
                m.attributes.iter().any(|a| {
                    matches!(a, AddressAttribute::Local(IpAddr::V4(ip))
                        | AddressAttribute::Address(IpAddr::V4(ip)) if *ip == local)
                })
            })
            .map(|m| m.header.index)
            .ok_or(OverlayError::NoUnderlay { address: local })?;
        let link = self
            .link_by_index(index)
            .await?
            .ok_or(OverlayError::NoUnderlay { address: local })?;
        let mtu = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            })
            .ok_or(OverlayError::NoUnderlay { address: local })?;
        Ok(Underlay { index, mtu })
    }

    async fn link_by_index(&self, index: u32) -> Result<Option<LinkMessage>, OverlayError> {
        let mut links = self.handle.link().get().match_index(index).execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl("looking up link", format!("#{index}"))(e)),
        }
    }

    async fn link(&self, name: &str) -> Result<Option<LinkMessage>, OverlayError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl("looking up link", name)(e)),
        }
    }

    /// Creates the vxlan device, or adopts and fixes it; returns its ifindex.
    pub async fn ensure_vxlan(
        &self,
        cfg: &OverlayConfig,
        underlay: &Underlay,
    ) -> Result<u32, OverlayError> {
        let name = cfg.device.as_str();
        let mac = vtep_mac(cfg.subnet).to_vec();
        let mtu = underlay.mtu.saturating_sub(VXLAN_OVERHEAD);
        if let Some(link) = self.link(name).await? {
            let infos = vxlan_infos(&link).ok_or_else(|| OverlayError::NotVxlan {
                device: name.to_owned(),
            })?;
            if let Some(reason) = mismatch(infos, cfg, underlay.index) {
                tracing::info!(device = name, reason, "recreating the vxlan device");
                let del = self.handle.link().del(link.header.index).execute().await;
                gone_ok(del, &[libc::ENODEV]).map_err(nl("deleting vxlan device", name))?;
            }
        }
        if self.link(name).await?.is_none() {
            let msg = LinkVxlan::new(name, cfg.vni)
                .dev(underlay.index)
                .local(cfg.local)
                .port(cfg.port)
                .learning(false)
                .mtu(mtu)
                .address(mac.clone())
                .up()
                .build();
            match self.handle.link().add(msg).execute().await {
                Ok(()) => {}
                // Created concurrently: checked below.
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(nl("creating vxlan device", name)(e)),
            }
        }
        let link = self
            .link(name)
            .await?
            .ok_or_else(|| OverlayError::Vanished {
                device: name.to_owned(),
            })?;
        let infos = vxlan_infos(&link).ok_or_else(|| OverlayError::NotVxlan {
            device: name.to_owned(),
        })?;
        if let Some(reason) = mismatch(infos, cfg, underlay.index) {
            return Err(OverlayError::InvalidConfig {
                field: "device",
                value: name.to_owned(),
                reason: format!("recreated concurrently with another configuration: {reason}"),
            });
        }
        let index = link.header.index;

        let mut set = LinkUnspec::new_with_index(index);
        let mut fix = false;
        if mtu_of(&link) != Some(mtu) {
            set = set.mtu(mtu);
            fix = true;
        }
        if mac_of(&link) != Some(mac.as_slice()) {
            set = set.address(mac);
            fix = true;
        }
        if !link.header.flags.contains(LinkFlags::Up) {
            set = set.up();
            fix = true;
        }
        if fix {
            self.handle
                .link()
                .set(set.build())
                .execute()
                .await
                .map_err(nl("setting mtu, mac and up on", name))?;
        }
        self.ensure_only_address(index, name, vtep_ip(cfg.subnet))
            .await?;
        Ok(index)
    }

    /// `ip/32` on the link, and no other IPv4 address.
    async fn ensure_only_address(
        &self,
        index: u32,
        name: &str,
        ip: Ipv4Addr,
    ) -> Result<(), OverlayError> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing addresses of", name))?;
        let mut present = false;
        for msg in msgs {
            if msg.header.family != AddressFamily::Inet || msg.header.index != index {
                continue;
            }
            let addr = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if addr == Some(ip) && msg.header.prefix_len == 32 {
                present = true;
                continue;
            }
            let del = self.handle.address().del(msg).execute().await;
            gone_ok(del, &[libc::EADDRNOTAVAIL])
                .map_err(nl("removing a stale address from", name))?;
        }
        if !present {
            let add = self
                .handle
                .address()
                .add(index, IpAddr::V4(ip), 32)
                .execute()
                .await;
            gone_ok(add, &[libc::EEXIST])
                .map_err(nl(format!("adding address {ip}/32 to"), name))?;
        }
        Ok(())
    }

    /// Deletes `name` if it is a vxlan device; a missing link or another kind is left alone.
    pub async fn delete_vxlan(&self, name: &str) -> Result<(), OverlayError> {
        let Some(link) = self.link(name).await? else {
            return Ok(());
        };
        if vxlan_infos(&link).is_none() {
            tracing::warn!(
                device = name,
                "not deleting a link that is not a vxlan device"
            );
            return Ok(());
        }
        let del = self.handle.link().del(link.header.index).execute().await;
        gone_ok(del, &[libc::ENODEV]).map_err(nl("deleting vxlan device", name))
    }

    /// Every IPv4 route in the main table with berth's protocol.
    pub async fn berth_routes(&self) -> Result<Vec<InstalledRoute>, OverlayError> {
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing routes", "with berth's protocol"))?;
        Ok(msgs.iter().filter_map(parse_berth_route).collect())
    }

    /// Deletes berth's routes whose output link is not `index` (another mode's leftovers).
    pub async fn remove_routes_not_via(&self, index: Option<u32>) -> Result<(), OverlayError> {
        for route in self.berth_routes().await? {
            if route.oif != index {
                self.delete_route(&route).await?;
            }
        }
        Ok(())
    }

    /// Deletes exactly this route, with berth's protocol; a missing route is fine.
    pub async fn delete_route(&self, route: &InstalledRoute) -> Result<(), OverlayError> {
        let msg = route_del_message(route.dst, route.gateway, route.oif);
        let del = self.handle.route().del(msg).execute().await;
        gone_ok(del, &[libc::ESRCH, libc::ENOENT])
            .map_err(nl(format!("deleting route {}", route.dst), MAIN_TABLE))
    }

    /// What is installed: berth's routes (a route through `device` counts as a vxlan route),
    /// and the permanent neighbours and FDB entries on `device`.
    pub async fn installed(&self, device: Option<u32>) -> Result<Entries, OverlayError> {
        let mut out = Entries {
            routes: self
                .berth_routes()
                .await?
                .into_iter()
                .map(|r| RouteEntry {
                    dst: r.dst,
                    via: r.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    vxlan: device.is_some() && r.oif == device,
                })
                .collect(),
            ..Entries::default()
        };
        let Some(index) = device else {
            return Ok(out);
        };
        for msg in self.neighbours(AddressFamily::Inet).await? {
            if msg.header.ifindex != index || msg.header.state != NeighbourState::Permanent {
                continue;
            }
            if let (Some(ip), Some(mac)) = (neigh_ip(&msg), neigh_mac(&msg)) {
                out.neigh.push(NeighEntry { ip, mac });
            }
        }
        for msg in self.neighbours(AddressFamily::Bridge).await? {
            if msg.header.ifindex != index {
                continue;
            }
            if let (Some(dst), Some(mac)) = (neigh_ip(&msg), neigh_mac(&msg)) {
                out.fdb.push(FdbEntry { mac, dst });
            }
        }
        Ok(out)
    }

    async fn neighbours(
        &self,
        family: AddressFamily,
    ) -> Result<Vec<NeighbourMessage>, OverlayError> {
        let what = if family == AddressFamily::Bridge {
            "listing fdb entries"
        } else {
            "listing neighbours"
        };
        self.handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_collect()
            .await
            .map_err(nl(what, "for the overlay"))
    }

    /// Carries out one planned operation. `device` is the vxlan device (vxlan mode).
    pub async fn apply(
        &self,
        op: &Op,
        device: Option<u32>,
        device_name: &str,
    ) -> Result<(), OverlayError> {
        let on_device = format!("on {device_name}");
        let need_device = || {
            device.ok_or_else(|| OverlayError::Vanished {
                device: device_name.to_owned(),
            })
        };
        let result = match *op {
            Op::DelRoute(r) => {
                let gateway = (!r.via.is_unspecified()).then_some(r.via);
                let oif = if r.vxlan { device } else { None };
                let msg = route_del_message(r.dst, gateway, oif);
                let del = self.handle.route().del(msg).execute().await;
                gone_ok(del, &[libc::ESRCH, libc::ENOENT]).map_err(nl(op.to_string(), MAIN_TABLE))
            }
            Op::AddRoute { entry, replace } => {
                let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(entry.dst.network(), entry.dst.prefix_len())
                    .gateway(entry.via)
                    .protocol(RouteProtocol::from(ROUTE_PROTOCOL));
                if entry.vxlan {
                    builder = builder.output_interface(need_device()?).onlink();
                }
                let add = self.handle.route().add(builder.build());
                let add = if replace { add.replace() } else { add };
                add.execute().await.map_err(nl(op.to_string(), MAIN_TABLE))
            }
            Op::DelNeigh(n) => {
                let mut msg = NeighbourMessage::default();
                msg.header.family = AddressFamily::Inet;
                msg.header.ifindex = need_device()?;
                msg.attributes
                    .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                        n.ip,
                    )));
                let del = self.handle.neighbours().del(msg).execute().await;
                gone_ok(del, &[libc::ENOENT]).map_err(nl(op.to_string(), on_device))
            }
            Op::AddNeigh { entry, .. } => self
                .handle
                .neighbours()
                .add(need_device()?, IpAddr::V4(entry.ip))
                .link_layer_address(&entry.mac)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await
                .map_err(nl(op.to_string(), on_device)),
            Op::DelFdb(f) => {
                let mut msg = NeighbourMessage::default();
                msg.header.family = AddressFamily::Bridge;
                msg.header.ifindex = need_device()?;
                msg.header.flags = NeighbourFlags::Own;
                msg.attributes
                    .push(NeighbourAttribute::LinkLayerAddress(f.mac.to_vec()));
                msg.attributes
                    .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                        f.dst,
                    )));
                let del = self.handle.neighbours().del(msg).execute().await;
                gone_ok(del, &[libc::ENOENT]).map_err(nl(op.to_string(), on_device))
            }
            Op::AddFdb { entry, .. } => self
                .handle
                .neighbours()
                .add_bridge(need_device()?, &entry.mac)
                .destination(IpAddr::V4(entry.dst))
                .flags(NeighbourFlags::Own)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await
                .map_err(nl(op.to_string(), on_device)),
        };
        if result.is_ok() {
            tracing::debug!(device = device_name, op = %op, "overlay entry changed");
        }
        result
    }
}

/// Where every overlay route lives, for error messages.
const MAIN_TABLE: &str = "in the main table";

/// A deletion that matches exactly berth's route to `dst` (via `gateway`, out of `oif` when
/// given), whatever its scope and type.
fn route_del_message(dst: Ipv4Net, gateway: Option<Ipv4Addr>, oif: Option<u32>) -> RouteMessage {
    let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst.network(), dst.prefix_len())
        .protocol(RouteProtocol::from(ROUTE_PROTOCOL))
        .scope(RouteScope::NoWhere)
        .kind(RouteType::Unspec);
    if let Some(gw) = gateway {
        builder = builder.gateway(gw);
    }
    if let Some(oif) = oif {
        builder = builder.output_interface(oif);
    }
    builder.build()
}

fn parse_berth_route(msg: &RouteMessage) -> Option<InstalledRoute> {
    if u8::from(msg.header.protocol) != ROUTE_PROTOCOL
        || msg.header.address_family != AddressFamily::Inet
    {
        return None;
    }
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let dst_addr = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        })
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let dst = Ipv4Net::new(dst_addr, msg.header.destination_prefix_length).ok()?;
    let gateway = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    });
    let oif = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    });
    Some(InstalledRoute { dst, gateway, oif })
}

/// The IPv4 destination of a neighbour or FDB entry (in an FDB entry, `AF_BRIDGE`, it comes
/// as raw bytes).
fn neigh_ip(msg: &NeighbourMessage) -> Option<Ipv4Addr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        NeighbourAttribute::Destination(NeighbourAddress::Other(raw)) => {
            <[u8; 4]>::try_from(raw.as_slice()).ok().map(Ipv4Addr::from)
        }
        _ => None,
    })
}

fn neigh_mac(msg: &NeighbourMessage) -> Option<[u8; 6]> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(mac) => mac.as_slice().try_into().ok(),
        _ => None,
    })
}

pub(super) fn vxlan_infos(link: &LinkMessage) -> Option<&[InfoVxlan]> {
    let infos = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => Some(infos),
        _ => None,
    })?;
    if !infos
        .iter()
        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Vxlan)))
    {
        return None;
    }
    Some(
        infos
            .iter()
            .find_map(|i| match i {
                LinkInfo::Data(InfoData::Vxlan(v)) => Some(v.as_slice()),
                _ => None,
            })
            .unwrap_or(&[]),
    )
}

/// Why an existing vxlan device cannot be kept as it is (what cannot be changed in place).
fn mismatch(infos: &[InfoVxlan], cfg: &OverlayConfig, underlay: u32) -> Option<String> {
    let mut vni = None;
    let mut port = None;
    let mut local = None;
    let mut link = None;
    let mut learning = false;
    let mut group = false;
    let mut external = false;
    for info in infos {
        match info {
            InfoVxlan::Id(v) => vni = Some(*v),
            InfoVxlan::Port(p) => port = Some(*p),
            InfoVxlan::Local(ip) => local = Some(*ip),
            InfoVxlan::Link(i) => link = Some(*i),
            InfoVxlan::Learning(on) => learning = *on,
            InfoVxlan::Group(ip) => group |= !ip.is_unspecified(),
            InfoVxlan::Group6(ip) => group |= !ip.is_unspecified(),
            InfoVxlan::CollectMetadata(on) => external = *on,
            _ => {}
        }
    }
    if vni != Some(cfg.vni) {
        return Some(format!("VNI {vni:?}, want {}", cfg.vni));
    }
    if port != Some(cfg.port) {
        return Some(format!("port {port:?}, want {}", cfg.port));
    }
    if local != Some(cfg.local) {
        return Some(format!("local {local:?}, want {}", cfg.local));
    }
    if link != Some(underlay) {
        return Some(format!("underlay link {link:?}, want {underlay}"));
    }
    if learning {
        return Some("learning on".to_owned());
    }
    if group {
        return Some("a remote or group set".to_owned());
    }
    if external {
        return Some("external (collect metadata) mode".to_owned());
    }
    None
}

fn mtu_of(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

fn mac_of(link: &LinkMessage) -> Option<&[u8]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.as_slice()),
        _ => None,
    })
}
