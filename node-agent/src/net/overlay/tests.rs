//! Configuration parsing, and root tests that build small networks of throwaway network
//! namespaces and prove packets cross the overlay. Every namespace is held only by a file
//! descriptor ([`Netns`]) and worked in from a fresh thread that `setns`es into it, so
//! everything vanishes with the descriptors, also when a test fails; the host's namespace is
//! never touched and traffic only goes to addresses inside the namespaces.
//!
//! The network of [`Cluster::build`]: a router namespace with two bridges, `lan1`
//! (10.10.1.1/24, MTU 1500) and `lan2` (10.10.2.1/24, MTU 1400), forwarding on and no
//! route to any container subnet; hosts A (10.10.1.2) and B (10.10.1.3) on `lan1`, host C
//! (10.10.2.2) on `lan2`, each with a default route via the router. Each host has berth's
//! bridge `berth0` with the gateway of its container subnet (10.42.1.0/24, .2, .3) and one
//! container namespace behind it at `.2`, made with `net::link` as the agent does.

use std::fs::File;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::link::{InfoVxlan, LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
use nix::sched::{CloneFlags, setns, unshare};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::apply::{Netlink, vxlan_infos};
use super::plan::{Entries, FdbEntry, NeighEntry, RouteEntry};
use super::*;
use crate::net::link::{Links, configure_container_side};

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection that must fail is given.
const REFUSED_WITHIN: Duration = Duration::from_secs(1);
const ECHO_PORT: u16 = 7000;
/// Bytes sent each way per connection: many full-size segments.
const PAYLOAD: usize = 256 * 1024;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

// ---- configuration (no root) ----

#[test]
fn modes_parse_and_display() {
    assert_eq!("vxlan".parse::<OverlayMode>().unwrap(), OverlayMode::Vxlan);
    assert_eq!(
        "routed".parse::<OverlayMode>().unwrap(),
        OverlayMode::Routed
    );
    for mode in [OverlayMode::Vxlan, OverlayMode::Routed] {
        assert_eq!(mode.to_string().parse::<OverlayMode>().unwrap(), mode);
    }
    let err = "VXLAN".parse::<OverlayMode>().unwrap_err();
    assert!(
        matches!(&err, OverlayError::InvalidMode { value } if value == "VXLAN"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid overlay mode \"VXLAN\": expected \"vxlan\" or \"routed\""
    );
}

#[test]
fn config_defaults_and_validation() {
    let cfg = OverlayConfig::new(OverlayMode::Vxlan, ip("10.10.1.2"), net("10.42.1.0/24"));
    assert_eq!(
        (cfg.device.as_str(), cfg.vni, cfg.port),
        ("berth.vx", 4242, 4789)
    );
    cfg.validate().unwrap();
    let bad = [
        OverlayConfig {
            device: "much-too-long-name".into(),
            ..cfg.clone()
        },
        OverlayConfig {
            vni: 1 << 24,
            ..cfg.clone()
        },
        OverlayConfig {
            port: 0,
            ..cfg.clone()
        },
        OverlayConfig {
            local: Ipv4Addr::UNSPECIFIED,
            ..cfg.clone()
        },
    ];
    for (bad, field) in bad.iter().zip(["device", "vni", "port", "local"]) {
        let err = bad.validate().unwrap_err();
        assert!(
            matches!(&err, OverlayError::InvalidConfig { field: f, .. } if *f == field),
            "{err:?}"
        );
    }
}

// ---- namespaces ----

fn skip(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: {test}: needs root");
        return true;
    }
    if let Err(reason) = vxlan_supported() {
        eprintln!("SKIPPED: {test}: {reason}");
        return true;
    }
    false
}

/// Whether this kernel can create a vxlan device (tried in a throwaway namespace).
fn vxlan_supported() -> Result<(), String> {
    let ns = Netns::new("probe");
    ns.block_on(|handle| async move {
        let msg = rtnetlink::LinkVxlan::new("probe.vx", 1).port(4789).build();
        handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| format!("the kernel cannot create vxlan devices: {e}"))
    })
}

/// A network namespace held only by this descriptor: it goes when the descriptor (and any
/// socket or link in it) does.
struct Netns {
    name: &'static str,
    fd: File,
}

impl Netns {
    fn new(name: &'static str) -> Netns {
        let fd = std::thread::spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            File::open("/proc/thread-self/ns/net").expect("open /proc/thread-self/ns/net")
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
        Netns { name, fd }
    }

    /// Runs `f` on a fresh thread inside this namespace.
    fn run<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let fd = self.fd.try_clone().expect("dup namespace fd");
        let name = self.name;
        std::thread::spawn(move || {
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns into {name}: {e}"));
            drop(fd);
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// Runs `f` with a netlink handle of this namespace, on a current-thread runtime.
    fn block_on<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(Handle) -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        self.run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let (conn, handle, _) = rtnetlink::new_connection().expect("netlink socket");
                tokio::spawn(conn);
                f(handle).await
            })
        })
    }

    fn sysctl(&self, path: &'static str, value: &'static str) {
        self.run(move || {
            std::fs::write(path, value).unwrap_or_else(|e| panic!("write {path}: {e}"))
        });
    }
}

/// A node of the test network: its namespace and one container's.
struct Host {
    name: &'static str,
    ns: Netns,
    container: Netns,
    underlay: Ipv4Addr,
    subnet: Ipv4Net,
}

impl Host {
    fn peer(&self) -> Peer {
        Peer {
            address: self.underlay,
            subnet: self.subnet,
        }
    }

    fn container_ip(&self) -> Ipv4Addr {
        nth(self.subnet, 2)
    }

    fn config(&self, mode: OverlayMode) -> OverlayConfig {
        OverlayConfig::new(mode, self.underlay, self.subnet)
    }

    fn ensure(&self, mode: OverlayMode) -> Result<OverlaySnapshot, OverlayError> {
        let cfg = self.config(mode);
        self.ns.block_on(move |h| async move {
            let overlay = Overlay::ensure_with(h, cfg).await?;
            Ok(OverlaySnapshot {
                mtu: overlay.mtu(),
                device_index: overlay.device_index,
            })
        })
    }

    fn set_peers(&self, mode: OverlayMode, peers: &[Peer]) -> Result<PeerChange, OverlayError> {
        let cfg = self.config(mode);
        let peers = peers.to_vec();
        self.ns.block_on(move |h| async move {
            Overlay::ensure_with(h, cfg).await?.set_peers(&peers).await
        })
    }

    fn installed(&self) -> Entries {
        self.ns.block_on(|h| async move {
            let nl = Netlink::new(h.clone());
            let index = link(&h, DEFAULT_DEVICE).await.map(|l| l.header.index);
            let mut e = nl.installed(index).await.expect("read installed entries");
            e.routes.sort();
            e.fdb.sort();
            e.neigh.sort();
            e
        })
    }

    fn device(&self) -> Option<LinkMessage> {
        self.ns
            .block_on(|h| async move { link(&h, DEFAULT_DEVICE).await })
    }

    /// Berth's bridge (the container subnet's gateway) and one container behind it, with
    /// `mtu` as the agent would set from [`Overlay::mtu`].
    fn attach_container(&self, mtu: u32) {
        let gateway = Ipv4Net::new(nth(self.subnet, 1), self.subnet.prefix_len()).unwrap();
        let address = Ipv4Net::new(self.container_ip(), self.subnet.prefix_len()).unwrap();
        let ctr_fd = self.container.fd.try_clone().unwrap();
        self.ns.block_on(move |h| async move {
            let links = Links::from_handle(h);
            links.ensure_bridge("berth0", gateway, mtu).await.unwrap();
            links
                .add_veth("berth0", "bthtest0", "bthtest0c", mtu, ctr_fd.as_fd())
                .await
                .unwrap();
        });
        self.container.block_on(move |h| async move {
            let links = Links::from_handle(h);
            configure_container_side(&links, "bthtest0c", address, gateway.addr())
                .await
                .unwrap();
        });
    }
}

struct OverlaySnapshot {
    mtu: u32,
    device_index: Option<u32>,
}

fn nth(subnet: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + n)
}

async fn link(h: &Handle, name: &str) -> Option<LinkMessage> {
    let mut links = h.link().get().match_name(name.to_owned()).execute();
    links.try_next().await.unwrap_or_default()
}

fn mtu_of(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

fn mac_of(link: &LinkMessage) -> Option<Vec<u8>> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.clone()),
        _ => None,
    })
}

/// Router, A and B on one L2 segment, C on another L3 segment.
struct Cluster {
    router: Netns,
    hosts: Vec<Host>,
}

impl Cluster {
    fn build() -> Cluster {
        let router = Netns::new("router");
        let host = |name, underlay: &str, subnet: &str| Host {
            name,
            ns: Netns::new(name),
            container: Netns::new("container"),
            underlay: ip(underlay),
            subnet: net(subnet),
        };
        let hosts = vec![
            host("A", "10.10.1.2", "10.42.1.0/24"),
            host("B", "10.10.1.3", "10.42.2.0/24"),
            host("C", "10.10.2.2", "10.42.3.0/24"),
        ];
        // (router bridge, router-side veth, host-side peer name, mtu, host)
        let wiring = [
            ("lan1", "ra", "ua", 1500, 0),
            ("lan1", "rb", "ub", 1500, 1),
            ("lan2", "rc", "uc", 1400, 2),
        ];
        let fds: Vec<File> = hosts.iter().map(|h| h.ns.fd.try_clone().unwrap()).collect();
        router.block_on(move |h| async move {
            let links = Links::from_handle(h);
            links
                .ensure_bridge("lan1", net("10.10.1.1/24"), 1500)
                .await
                .unwrap();
            links
                .ensure_bridge("lan2", net("10.10.2.1/24"), 1400)
                .await
                .unwrap();
            for (bridge, veth, peer, mtu, host) in wiring {
                links
                    .add_veth(bridge, veth, peer, mtu, fds[host].as_fd())
                    .await
                    .unwrap();
            }
        });
        router.sysctl("/proc/sys/net/ipv4/ip_forward", "1");
        for (host, (_, _, peer, _, _)) in hosts.iter().zip(wiring) {
            let router_ip = nth(Ipv4Net::new(host.underlay, 24).unwrap().trunc(), 1);
            let address = Ipv4Net::new(host.underlay, 24).unwrap();
            host.ns.block_on(move |h| async move {
                let links = Links::from_handle(h);
                // The underlay link ends up as eth0, with a default route via the router.
                configure_container_side(&links, peer, address, router_ip)
                    .await
                    .unwrap();
            });
            host.ns.sysctl("/proc/sys/net/ipv4/ip_forward", "1");
        }
        Cluster { router, hosts }
    }

    fn peers(&self) -> Vec<Peer> {
        self.hosts.iter().map(Host::peer).collect()
    }
}

/// Echoes what each connection sends until it shuts down writing; stops and closes the
/// listener when dropped.
struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    fn start(ns: &Netns, addr: Ipv4Addr) -> EchoServer {
        let listener = ns.run(move || TcpListener::bind((addr, ECHO_PORT)).expect("bind"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
                        let mut buf = Vec::new();
                        if conn.read_to_end(&mut buf).is_ok() {
                            let _ = conn.write_all(&buf);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => return,
                }
            }
        });
        EchoServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// From inside `from`, connects to `to`'s container and has [`PAYLOAD`] bytes echoed.
fn exchange(from: &Host, to: &Host, within: Duration) -> Result<(), String> {
    let target = SocketAddr::from((to.container_ip(), ECHO_PORT));
    let what = format!(
        "container {} -> container {} ({target})",
        from.name, to.name
    );
    from.container.run(move || {
        let mut stream = TcpStream::connect_timeout(&target, within)
            .map_err(|e| format!("{what}: connect: {e}"))?;
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        let data: Vec<u8> = (0..PAYLOAD).map(|i| (i % 251) as u8).collect();
        stream
            .write_all(&data)
            .map_err(|e| format!("{what}: write: {e}"))?;
        stream.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        stream
            .read_to_end(&mut back)
            .map_err(|e| format!("{what}: read: {e}"))?;
        if back != data {
            return Err(format!("{what}: echoed {} bytes, not the same", back.len()));
        }
        Ok(())
    })
}

fn must_cross(from: &Host, to: &Host) {
    exchange(from, to, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
}

fn must_not_cross(from: &Host, to: &Host) {
    let start = Instant::now();
    if exchange(from, to, REFUSED_WITHIN).is_ok() {
        panic!(
            "container {} reached container {} without the overlay",
            from.name, to.name
        );
    }
    assert!(start.elapsed() < TIMEOUT, "a failing connection hung");
}

/// Links in the namespace of the test harness itself, to prove nothing is made there.
fn host_links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn assert_host_untouched(before: &[String]) {
    let ours = [
        DEFAULT_DEVICE,
        "berth0",
        "lan1",
        "lan2",
        "ra",
        "rb",
        "rc",
        "probe.vx",
        "under0",
        "under1",
    ];
    let leaked: Vec<_> = host_links()
        .into_iter()
        .filter(|l| !before.contains(l) && (ours.contains(&l.as_str()) || l.starts_with("bth")))
        .collect();
    assert!(leaked.is_empty(), "links left on the host: {leaked:?}");
}

/// A route in the main table that berth does not own (protocol static), to check it
/// survives everything the overlay does.
fn add_foreign_route(host: &Host) {
    host.ns.block_on(|h| async move {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(ip("192.168.77.0"), 24)
            .gateway(ip("10.10.1.1"))
            .build();
        h.route().add(msg).execute().await.unwrap();
    });
}

fn has_foreign_route(host: &Host) -> bool {
    host.ns.block_on(|h| async move {
        let routes: Vec<_> = h
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .unwrap();
        routes.iter().any(|r| {
            r.header.protocol == RouteProtocol::Static
                && r.header.destination_prefix_length == 24
                && r.attributes
                    .contains(&RouteAttribute::Destination(RouteAddress::Inet(ip(
                        "192.168.77.0",
                    ))))
        })
    })
}

fn entries_for(host: &Host) -> Entries {
    let subnet = host.subnet;
    Entries {
        routes: vec![RouteEntry {
            dst: subnet,
            via: vtep_ip(subnet),
            vxlan: true,
        }],
        fdb: vec![FdbEntry {
            mac: vtep_mac(subnet),
            dst: host.underlay,
        }],
        neigh: vec![NeighEntry {
            ip: vtep_ip(subnet),
            mac: vtep_mac(subnet),
        }],
    }
}

fn union(parts: &[Entries]) -> Entries {
    let mut e = Entries::default();
    for p in parts {
        e.routes.extend(&p.routes);
        e.fdb.extend(&p.fdb);
        e.neigh.extend(&p.neigh);
    }
    e.routes.sort();
    e.fdb.sort();
    e.neigh.sort();
    e
}

// ---- the tests ----

/// Three nodes on two L3 segments: containers reach each other only through the overlay;
/// MTUs are lowered; removing a peer removes exactly its entries; teardown leaves nothing.
#[test]
fn vxlan_overlay_carries_traffic_across_l3_segments() {
    const TEST: &str = "vxlan_overlay_carries_traffic_across_l3_segments";
    if skip(TEST) {
        return;
    }
    let before = host_links();
    {
        let cluster = Cluster::build();
        let [a, b, c] = &cluster.hosts[..] else {
            unreachable!()
        };
        add_foreign_route(a);

        // Overlay up on every node: MTU from its underlay link, less 50.
        let mut mtus = Vec::new();
        for host in &cluster.hosts {
            let snap = host.ensure(OverlayMode::Vxlan).unwrap();
            host.attach_container(snap.mtu);
            mtus.push(snap.mtu);
        }
        assert_eq!(mtus, vec![1450, 1450, 1350], "underlay 1500, 1500, 1400");

        // The device on C, as the kernel reports it.
        let dev = c.device().expect("vxlan device on C");
        assert_eq!(mtu_of(&dev), Some(1350));
        assert_eq!(mac_of(&dev), Some(vtep_mac(c.subnet).to_vec()));
        assert!(dev.header.flags.contains(LinkFlags::Up));
        let infos = vxlan_infos(&dev).expect("a vxlan device").to_vec();
        for want in [
            InfoVxlan::Id(DEFAULT_VNI),
            InfoVxlan::Port(DEFAULT_PORT),
            InfoVxlan::Local(c.underlay),
            InfoVxlan::Learning(false),
        ] {
            assert!(infos.contains(&want), "{want:?} missing in {infos:?}");
        }
        assert!(
            !infos.iter().any(|i| matches!(i, InfoVxlan::Group(_))),
            "no group/remote: {infos:?}"
        );
        let index = dev.header.index;
        let addrs = c.ns.block_on(move |h| async move {
            Links::from_handle(h)
                .ipv4_addresses(index, DEFAULT_DEVICE)
                .await
                .unwrap()
        });
        assert_eq!(addrs, vec![net("10.42.3.0/32")], "the VTEP address");

        let servers: Vec<EchoServer> = cluster
            .hosts
            .iter()
            .map(|h| EchoServer::start(&h.container, h.container_ip()))
            .collect();

        // Without peers the router, which knows no container subnet, drops it all.
        must_not_cross(a, c);
        must_not_cross(a, b);

        // Every node gets the whole list, itself included.
        let peers = cluster.peers();
        for host in &cluster.hosts {
            let change = host.set_peers(OverlayMode::Vxlan, &peers).unwrap();
            let mut others: Vec<Ipv4Net> = cluster
                .hosts
                .iter()
                .filter(|o| o.subnet != host.subnet)
                .map(|o| o.subnet)
                .collect();
            others.sort();
            assert_eq!(change.added, others, "on {}", host.name);
            assert_eq!(change.operations, 6, "on {}", host.name);
        }
        assert_eq!(a.installed(), union(&[entries_for(b), entries_for(c)]));

        must_cross(a, c);
        must_cross(a, b);
        must_cross(c, b);
        must_cross(c, a);
        // Encapsulated: the router still knows no container subnet.
        let router_routes = cluster.router.block_on(|h| async move {
            let routes: Vec<_> = h
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute()
                .try_collect()
                .await
                .unwrap();
            routes
                .iter()
                .filter_map(|r| {
                    r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                        _ => None,
                    })
                })
                .collect::<Vec<_>>()
        });
        assert!(
            !router_routes
                .iter()
                .any(|d| net("10.42.0.0/16").contains(d)),
            "the router has a container route: {router_routes:?}"
        );

        // Again: nothing to do.
        let change = a.set_peers(OverlayMode::Vxlan, &peers).unwrap();
        assert!(change.is_empty(), "{change:?}");

        // B's underlay address changes: only its FDB entry on A changes.
        let moved = [
            a.peer(),
            Peer {
                address: ip("10.10.1.99"),
                subnet: b.subnet,
            },
            c.peer(),
        ];
        let change = a.set_peers(OverlayMode::Vxlan, &moved).unwrap();
        assert_eq!(change.changed, vec![b.subnet]);
        assert_eq!(change.operations, 1);
        let mut expect_b = entries_for(b);
        expect_b.fdb[0].dst = ip("10.10.1.99");
        assert_eq!(a.installed(), union(&[expect_b, entries_for(c)]));
        a.set_peers(OverlayMode::Vxlan, &peers).unwrap();

        // C leaves: A loses exactly C's route, neighbour and FDB entry.
        let change = a
            .set_peers(OverlayMode::Vxlan, &[a.peer(), b.peer()])
            .unwrap();
        assert_eq!(change.removed, vec![c.subnet]);
        assert_eq!(change.operations, 3);
        assert_eq!(a.installed(), union(&[entries_for(b)]));
        must_not_cross(a, c);
        must_cross(a, b);
        assert!(has_foreign_route(a), "another route was touched");

        // A refused peer list changes nothing.
        let clash = [
            b.peer(),
            Peer {
                address: ip("10.10.2.9"),
                subnet: b.subnet,
            },
        ];
        let err = a.set_peers(OverlayMode::Vxlan, &clash).unwrap_err();
        assert!(matches!(err, OverlayError::InvalidPeers(_)), "{err:?}");
        assert_eq!(a.installed(), union(&[entries_for(b)]));

        // Teardown: no device, no berth route; the other route stays. Twice is fine.
        a.ns.block_on(|h| async move { teardown_with(h, DEFAULT_DEVICE).await })
            .unwrap();
        assert!(a.device().is_none(), "device left");
        assert_eq!(a.installed(), Entries::default());
        assert!(has_foreign_route(a));
        a.ns.block_on(|h| async move { teardown_with(h, DEFAULT_DEVICE).await })
            .unwrap();
        must_not_cross(a, b);
        drop(servers);
    }
    assert_host_untouched(&before);
}

/// Routed mode between A and B on one segment: container traffic crosses with plain routes
/// and no vxlan device; a peer on another segment is refused by the kernel and reported,
/// while the rest is applied; switching modes removes the other mode's leftovers.
#[test]
fn routed_mode_on_one_l2_segment() {
    const TEST: &str = "routed_mode_on_one_l2_segment";
    if skip(TEST) {
        return;
    }
    let before = host_links();
    {
        let cluster = Cluster::build();
        let [a, b, _] = &cluster.hosts[..] else {
            unreachable!()
        };
        // A starts in vxlan mode with peers, then switches.
        a.ensure(OverlayMode::Vxlan).unwrap();
        a.set_peers(OverlayMode::Vxlan, &cluster.peers()).unwrap();
        assert!(a.device().is_some());

        for host in [a, b] {
            let snap = host.ensure(OverlayMode::Routed).unwrap();
            assert_eq!(snap.mtu, 1500, "routed: the underlay MTU");
            assert_eq!(snap.device_index, None);
            assert!(host.device().is_none(), "vxlan device on {}", host.name);
            host.attach_container(snap.mtu);
        }
        assert_eq!(
            a.installed(),
            Entries::default(),
            "vxlan routes went with the device"
        );
        let servers = [
            EchoServer::start(&a.container, a.container_ip()),
            EchoServer::start(&b.container, b.container_ip()),
        ];
        must_not_cross(a, b);

        b.set_peers(OverlayMode::Routed, &[a.peer(), b.peer()])
            .unwrap();
        // C is behind the router: its address is no next hop on A's segment.
        let err = a
            .set_peers(OverlayMode::Routed, &cluster.peers())
            .unwrap_err();
        match &err {
            OverlayError::Incomplete { total, errors } => {
                assert_eq!((*total, errors.len()), (2, 1), "{err}");
                let msg = errors[0].to_string();
                assert!(msg.contains("10.42.3.0/24"), "{msg}");
                let full = err.to_string();
                assert!(full.contains("unreachable"), "the kernel's reason: {full}");
            }
            other => panic!("{other:?}"),
        }
        let routed_b = RouteEntry {
            dst: b.subnet,
            via: b.underlay,
            vxlan: false,
        };
        assert_eq!(a.installed().routes, vec![routed_b]);
        must_cross(a, b);
        must_cross(b, a);

        // Back to vxlan on A: the routed route is removed by ensure.
        a.ensure(OverlayMode::Vxlan).unwrap();
        assert_eq!(a.installed(), Entries::default());
        drop(servers);
    }
    assert_host_untouched(&before);
}

/// One namespace with a dummy underlay: the device is adopted and fixed, recreated when an
/// immutable attribute differs, a foreign link of its name is refused and left alone, and
/// teardown is fine with nothing there.
#[test]
fn ensure_adopts_fixes_and_refuses() {
    const TEST: &str = "ensure_adopts_fixes_and_refuses";
    if skip(TEST) {
        return;
    }
    let before = host_links();
    let ns = Netns::new("single");
    ns.block_on(|h| async move {
        // Nothing there yet: teardown is fine; ensure needs the underlay address.
        teardown_with(h.clone(), DEFAULT_DEVICE).await.unwrap();
        let local = ip("10.10.9.1");
        let cfg = OverlayConfig::new(OverlayMode::Vxlan, local, net("10.42.9.0/24"));
        let err = Overlay::ensure_with(h.clone(), cfg.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, OverlayError::NoUnderlay { .. }), "{err:?}");

        h.link()
            .add(LinkVeth::new("under0", "under1").mtu(9000).up().build())
            .execute()
            .await
            .unwrap();
        let under = link(&h, "under0").await.unwrap().header.index;
        h.address()
            .add(under, local.into(), 24)
            .execute()
            .await
            .unwrap();

        let first = Overlay::ensure_with(h.clone(), cfg.clone()).await.unwrap();
        assert_eq!(first.mtu(), 8950);
        let index = first.device_index.unwrap();

        // Damage what can be fixed in place: MTU, MAC, down, a stray address.
        h.link()
            .set(
                LinkUnspec::new_with_index(index)
                    .mtu(1300)
                    .address(vec![0x02, 1, 2, 3, 4, 5])
                    .down()
                    .build(),
            )
            .execute()
            .await
            .unwrap();
        h.address()
            .add(index, ip("10.99.0.1").into(), 24)
            .execute()
            .await
            .unwrap();
        let again = Overlay::ensure_with(h.clone(), cfg.clone()).await.unwrap();
        assert_eq!(again.device_index, Some(index), "adopted, not recreated");
        let dev = link(&h, DEFAULT_DEVICE).await.unwrap();
        assert_eq!(mtu_of(&dev), Some(8950));
        assert_eq!(mac_of(&dev), Some(vtep_mac(cfg.subnet).to_vec()));
        assert!(dev.header.flags.contains(LinkFlags::Up));
        let addrs = Links::from_handle(h.clone())
            .ipv4_addresses(index, DEFAULT_DEVICE)
            .await
            .unwrap();
        assert_eq!(addrs, vec![net("10.42.9.0/32")]);

        // A different VNI cannot be changed in place: recreated.
        let other_vni = OverlayConfig {
            vni: 4343,
            ..cfg.clone()
        };
        let recreated = Overlay::ensure_with(h.clone(), other_vni).await.unwrap();
        assert_ne!(recreated.device_index, Some(index));
        let dev = link(&h, DEFAULT_DEVICE).await.unwrap();
        assert!(vxlan_infos(&dev).unwrap().contains(&InfoVxlan::Id(4343)));

        recreated.teardown().await.unwrap();
        assert!(link(&h, DEFAULT_DEVICE).await.is_none());

        // A link of that name that is not a vxlan device: refused, and never deleted.
        h.link()
            .add(LinkVeth::new(DEFAULT_DEVICE, "notours1").build())
            .execute()
            .await
            .unwrap();
        let err = Overlay::ensure_with(h.clone(), cfg.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, OverlayError::NotVxlan { .. }), "{err:?}");
        let routed = OverlayConfig {
            mode: OverlayMode::Routed,
            ..cfg.clone()
        };
        Overlay::ensure_with(h.clone(), routed).await.unwrap();
        teardown_with(h.clone(), DEFAULT_DEVICE).await.unwrap();
        assert!(
            link(&h, DEFAULT_DEVICE).await.is_some(),
            "foreign link deleted"
        );
    });
    drop(ns);
    assert_host_untouched(&before);
}
