//! The node's links over rtnetlink (no shelling out to `ip`): the node bridge, one veth pair
//! per container, and the container side of that pair (`eth0`, its address, the default
//! route), in the spirit of netavark's netlink module.
//!
//! A [`Links`] wraps one rtnetlink [`Handle`]. A netlink socket lives in the network namespace
//! of the thread that opened it, so the container side is configured through a second
//! [`Links`] opened from a thread that has `setns`'ed into the container's namespace.
//!
//! Hairpin mode is set over netlink (`IFLA_LINKINFO` / `IFLA_INFO_SLAVE_DATA` /
//! `IFLA_BRPORT_MODE`, i.e. `ip link set NAME type bridge_slave hairpin on`), not via sysfs.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};
use sha2::{Digest, Sha256};

#[cfg(test)]
mod tests;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_NAME_LEN: usize = 15;

/// Prefix of every host-side link berth creates for a container.
pub const VETH_PREFIX: &str = "bth";

/// A failed link operation, naming the link and what was being done to it.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid link name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("opening a netlink route socket")]
    Connect(#[source] std::io::Error),
    #[error("{op} {name}")]
    Netlink {
        name: String,
        op: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{op} {name}: no such link")]
    NotFound { name: String, op: &'static str },
    #[error("link {name} exists but is not a bridge")]
    NotABridge { name: String },
    #[error("{op} {name} failed ({source}), and removing what was created failed too")]
    Cleanup {
        name: String,
        op: &'static str,
        source: Box<LinkError>,
        #[source]
        cleanup: Box<LinkError>,
    },
}

fn nl(name: &str, op: &'static str) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let name = name.to_owned();
    move |source| LinkError::Netlink { name, op, source }
}

/// The errno of a netlink error, as a positive number.
fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}

/// Checks a link name: 1..=15 bytes, no '/', no whitespace, not "." or "..".
pub fn validate_name(name: &str) -> Result<(), LinkError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 15 bytes")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("contains whitespace")
    } else if name == "." || name == ".." {
        Some("reserved name")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LinkError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The host-side and temporary peer names of a container's veth pair: `bth` + 8 hex chars
/// (the id's first 8 when it starts with 8 hex digits, else a hash of it), and the same with
/// a `c` suffix for the peer (renamed to `eth0` inside the container).
pub fn veth_names(container_id: &str) -> (String, String) {
    let prefix = container_id
        .get(..8)
        .filter(|p| p.bytes().all(|b| b.is_ascii_hexdigit()));
    let hex8 = match prefix {
        Some(p) => p.to_ascii_lowercase(),
        None => {
            let digest = Sha256::digest(container_id.as_bytes());
            digest[..4].iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    (
        format!("{VETH_PREFIX}{hex8}"),
        format!("{VETH_PREFIX}{hex8}c"),
    )
}

/// The bridge's pinned MAC: derived from its name, unicast and locally administered, so it
/// never changes when ports come and go.
pub fn bridge_mac(name: &str) -> [u8; 6] {
    let digest = Sha256::digest(format!("berth-bridge:{name}").as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// The node's links, over one rtnetlink handle in the namespace where it was opened.
#[derive(Clone, Debug)]
pub struct Links {
    handle: Handle,
}

impl Links {
    /// Opens a netlink route socket in the calling thread's network namespace. The returned
    /// connection future must be polled (spawned) for any request to complete. Must be called
    /// inside a tokio runtime.
    pub fn new() -> Result<(Links, impl Future<Output = ()> + Send + 'static), LinkError> {
        let (conn, handle, _messages) = rtnetlink::new_connection().map_err(LinkError::Connect)?;
        Ok((Links { handle }, conn))
    }

    /// [`Links::new`], with the connection spawned on the current tokio runtime.
    pub fn spawn() -> Result<Links, LinkError> {
        let (links, conn) = Links::new()?;
        tokio::spawn(conn);
        Ok(links)
    }

    /// Wraps an existing handle.
    pub fn from_handle(handle: Handle) -> Links {
        Links { handle }
    }

    /// The link named `name`, if any.
    async fn get(&self, name: &str, op: &'static str) -> Result<Option<LinkMessage>, LinkError> {
        validate_name(name)?;
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl(name, op)(e)),
        }
    }

    async fn index_of(&self, name: &str, op: &'static str) -> Result<u32, LinkError> {
        match self.get(name, op).await? {
            Some(link) => Ok(link.header.index),
            None => Err(LinkError::NotFound {
                name: name.to_owned(),
                op,
            }),
        }
    }

    pub async fn exists(&self, name: &str) -> Result<bool, LinkError> {
        Ok(self.get(name, "looking up link").await?.is_some())
    }

    /// Deletes a link by name; a missing link is not an error (idempotent teardown).
    pub async fn delete(&self, name: &str) -> Result<(), LinkError> {
        validate_name(name)?;
        let msg = LinkUnspec::new_with_name(name).build();
        match self.handle.link().del_with_message(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(nl(name, "deleting link")(e)),
        }
    }

    /// Creates the bridge if missing (idempotent), with `mtu`, a pinned MAC ([`bridge_mac`]),
    /// the address `gateway` (address/prefix) and up. Returns its ifindex.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Net,
        mtu: u32,
    ) -> Result<u32, LinkError> {
        validate_name(name)?;
        let mac = bridge_mac(name).to_vec();
        if self.get(name, "looking up bridge").await?.is_none() {
            let msg = LinkBridge::new(name).mtu(mtu).address(mac.clone()).build();
            match self.handle.link().add(msg).execute().await {
                Ok(()) => {}
                // Created concurrently by someone else: checked below.
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(nl(name, "creating bridge")(e)),
            }
        }
        let link =
            self.get(name, "looking up bridge")
                .await?
                .ok_or_else(|| LinkError::NotFound {
                    name: name.to_owned(),
                    op: "looking up bridge",
                })?;
        if !is_bridge(&link) {
            return Err(LinkError::NotABridge {
                name: name.to_owned(),
            });
        }
        let index = link.header.index;
        let msg = LinkUnspec::new_with_index(index)
            .mtu(mtu)
            .address(mac)
            .up()
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(nl(name, "setting bridge mtu, mac and up"))?;

        self.ensure_ipv4_address(index, name, gateway, "adding bridge address")
            .await?;
        Ok(index)
    }

    /// Adds `address` to link `index` unless it is there already (idempotent, also when
    /// another process adds it at the same moment).
    async fn ensure_ipv4_address(
        &self,
        index: u32,
        name: &str,
        address: Ipv4Net,
        op: &'static str,
    ) -> Result<(), LinkError> {
        if self.ipv4_addresses(index, name).await?.contains(&address) {
            return Ok(());
        }
        let add = self
            .handle
            .address()
            .add(index, IpAddr::V4(address.addr()), address.prefix_len())
            .execute()
            .await;
        match add {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(nl(name, op)(e)),
        }
    }

    /// The IPv4 addresses (with prefix) on the link named `name`; `None` if there is no such
    /// link.
    pub async fn ipv4_addresses_of(&self, name: &str) -> Result<Option<Vec<Ipv4Net>>, LinkError> {
        match self.get(name, "looking up link").await? {
            Some(link) => Ok(Some(self.ipv4_addresses(link.header.index, name).await?)),
            None => Ok(None),
        }
    }

    /// The IPv4 addresses (with prefix) on link `index`.
    pub async fn ipv4_addresses(&self, index: u32, name: &str) -> Result<Vec<Ipv4Net>, LinkError> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(nl(name, "listing addresses"))?;
        let mut out = Vec::new();
        for msg in msgs {
            if msg.header.family != AddressFamily::Inet {
                continue;
            }
            let addr = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let addr = addr.or_else(|| {
                msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(ip) = addr
                && let Ok(net) = Ipv4Net::new(ip, msg.header.prefix_len)
            {
                out.push(net);
            }
        }
        Ok(out)
    }

    /// Creates the veth pair `host_name` <-> `peer_name` (both with `mtu`), the peer directly
    /// in the namespace `netns`, attaches the host end to `bridge` with hairpin on and sets it
    /// up. On failure, deletes the pair again (the peer goes with the host end).
    pub async fn add_veth(
        &self,
        bridge: &str,
        host_name: &str,
        peer_name: &str,
        mtu: u32,
        netns: BorrowedFd<'_>,
    ) -> Result<(), LinkError> {
        validate_name(host_name)?;
        validate_name(peer_name)?;
        let bridge_index = self.index_of(bridge, "attaching veth to bridge").await?;

        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer_name.to_owned())
            .mtu(mtu)
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(host_name, peer_name)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .mtu(mtu)
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(nl(host_name, "creating veth pair"))?;

        if let Err(err) = self.attach_port(bridge_index, host_name).await {
            return match self.delete(host_name).await {
                Ok(()) => Err(err),
                Err(cleanup) => Err(LinkError::Cleanup {
                    name: host_name.to_owned(),
                    op: "attaching veth",
                    source: Box::new(err),
                    cleanup: Box::new(cleanup),
                }),
            };
        }
        Ok(())
    }

    async fn attach_port(&self, bridge_index: u32, host_name: &str) -> Result<(), LinkError> {
        let index = self.index_of(host_name, "attaching veth").await?;
        let msg = LinkUnspec::new_with_index(index)
            .controller(bridge_index)
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(nl(host_name, "setting bridge as master"))?;
        let msg = LinkBridgePort::new(index).hairpin(true).build();
        self.handle
            .link()
            .set_port(msg)
            .execute()
            .await
            .map_err(nl(host_name, "setting hairpin mode"))?;
        self.set_up(index, host_name).await
    }

    /// The names of every link in the namespace that start with `prefix`.
    pub async fn names_with_prefix(&self, prefix: &str) -> Result<Vec<String>, LinkError> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl(prefix, "listing links"))?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) if n.starts_with(prefix) => Some(n.clone()),
                    _ => None,
                })
            })
            .collect())
    }

    async fn set_up(&self, index: u32, name: &str) -> Result<(), LinkError> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(nl(name, "setting link up"))
    }
}

fn is_bridge(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

/// Inside a container's network namespace (from a thread that has `setns`'ed into it, with
/// its own [`Links`]): renames `peer_name` to `eth0`, sets `address` on it, sets it and `lo`
/// up, and makes `gateway` the default route.
pub async fn configure_container_side(
    links: &Links,
    peer_name: &str,
    address: Ipv4Net,
    gateway: Ipv4Addr,
) -> Result<(), LinkError> {
    const ETH0: &str = "eth0";
    let handle = &links.handle;
    let index = match links.get(peer_name, "configuring container side").await? {
        Some(link) => link.header.index,
        // Already renamed by an earlier, interrupted attempt.
        None => links.index_of(ETH0, "configuring container side").await?,
    };
    // A link must be down to be renamed; the peer is created down.
    let msg = LinkUnspec::new_with_index(index).name(ETH0).build();
    handle
        .link()
        .set(msg)
        .execute()
        .await
        .map_err(nl(peer_name, "renaming to eth0"))?;

    links
        .ensure_ipv4_address(index, ETH0, address, "adding address")
        .await?;
    links.set_up(index, ETH0).await?;
    let lo = links.index_of("lo", "setting loopback up").await?;
    links.set_up(lo, "lo").await?;

    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(nl(ETH0, "adding default route"))?;
    Ok(())
}
