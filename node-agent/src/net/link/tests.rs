//! Pure tests of names and MACs, and root tests that run in throwaway network namespaces
//! (a fresh thread per namespace, `unshare(CLONE_NEWNET)`), leaving nothing on the host.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netlink_packet_route::link::{InfoBridgePort, InfoPortData, LinkFlags};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};
use nix::sched::{CloneFlags, unshare};

use super::*;

const GATEWAY: &str = "10.213.0.1/24";
const CONTAINER: &str = "10.213.0.2/24";
const TIMEOUT: Duration = Duration::from_secs(20);

fn needs_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    eprintln!("SKIPPED: {test}: needs root");
    true
}

/// Runs `body` on a fresh thread in a fresh network namespace, on its own current-thread
/// tokio runtime. The namespace dies with the thread.
fn in_netns<T, F, Fut>(body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        runtime().block_on(body())
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Names of the links in the host namespace (the test harness's main thread).
fn host_links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn assert_host_clean(before: &[String], bridge: &str) {
    let leftovers: Vec<_> = host_links()
        .into_iter()
        .filter(|n| !before.contains(n) && (n.starts_with(VETH_PREFIX) || n == bridge))
        .collect();
    assert!(
        leftovers.is_empty(),
        "links left on the host: {leftovers:?}"
    );
}

async fn link(links: &Links, name: &str) -> LinkMessage {
    links
        .get(name, "test lookup")
        .await
        .expect("get link")
        .unwrap_or_else(|| panic!("link {name} missing"))
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

fn controller_of(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

fn hairpin_of(link: &LinkMessage) -> Option<bool> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                port.iter().find_map(|p| match p {
                    InfoBridgePort::HairpinMode(on) => Some(*on),
                    _ => None,
                })
            }
            _ => None,
        }),
        _ => None,
    })
}

#[test]
fn veth_names_fit_ifnamsiz_and_are_stable() {
    let (host, peer) = veth_names("0123abcdEF99887766");
    assert_eq!(host, "bth0123abcd");
    assert_eq!(peer, "bth0123abcdc");
    for id in ["short", "not-hex-at-all-but-long", "ü-unicode-id", ""] {
        let (host, peer) = veth_names(id);
        assert_eq!((host.clone(), peer.clone()), veth_names(id));
        assert!(host.starts_with(VETH_PREFIX) && host.len() == 11, "{host}");
        assert!(peer.len() <= MAX_NAME_LEN, "{peer}");
        validate_name(&host).unwrap();
        validate_name(&peer).unwrap();
    }
    assert_ne!(veth_names("aaaaaaaa1").0, veth_names("bbbbbbbb1").0);
}

#[test]
fn names_are_validated() {
    for bad in ["", "sixteen-chars-xx", "a/b", "a b", "tab\t", ".", ".."] {
        assert!(
            matches!(validate_name(bad), Err(LinkError::InvalidName { .. })),
            "{bad:?} accepted"
        );
    }
    for good in ["berth0", "fifteen-chars-x", "br-1.2"] {
        validate_name(good).unwrap();
    }
}

#[test]
fn bridge_mac_is_stable_unicast_and_local() {
    let mac = bridge_mac("berth0");
    assert_eq!(mac, bridge_mac("berth0"));
    assert_ne!(mac, bridge_mac("berth1"));
    assert_eq!(mac[0] & 0x01, 0, "unicast");
    assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
}

#[test]
fn ensure_bridge_is_idempotent() {
    if needs_root("ensure_bridge_is_idempotent") {
        return;
    }
    let before = host_links();
    in_netns(|| async {
        let links = Links::spawn().unwrap();
        let gateway: Ipv4Net = GATEWAY.parse().unwrap();
        let first = links.ensure_bridge("brtest0", gateway, 1400).await.unwrap();
        let second = links.ensure_bridge("brtest0", gateway, 1400).await.unwrap();
        assert_eq!(first, second);

        let br = link(&links, "brtest0").await;
        assert_eq!(br.header.index, first);
        assert!(is_bridge(&br));
        assert!(br.header.flags.contains(LinkFlags::Up), "bridge down");
        assert_eq!(mtu_of(&br), Some(1400));
        let mac = mac_of(&br).unwrap();
        assert_eq!(mac, bridge_mac("brtest0"));
        assert_eq!(mac[0] & 0x02, 0x02);
        let addrs = links.ipv4_addresses(first, "brtest0").await.unwrap();
        assert_eq!(addrs, vec![gateway], "address present exactly once");

        // A non-bridge under that name is refused, not adopted.
        links
            .handle
            .link()
            .add(LinkVeth::new("vethx0", "vethx1").build())
            .execute()
            .await
            .unwrap();
        let err = links
            .ensure_bridge("vethx0", gateway, 1400)
            .await
            .unwrap_err();
        assert!(matches!(err, LinkError::NotABridge { .. }), "{err}");
        let err = links
            .ensure_bridge("bad/name", gateway, 1400)
            .await
            .unwrap_err();
        assert!(matches!(err, LinkError::InvalidName { .. }), "{err}");
    });
    assert_host_clean(&before, "brtest0");
}

#[test]
fn delete_is_idempotent() {
    if needs_root("delete_is_idempotent") {
        return;
    }
    in_netns(|| async {
        let links = Links::spawn().unwrap();
        links.delete("nosuchlink").await.unwrap();
        assert!(!links.exists("nosuchlink").await.unwrap());
        links
            .ensure_bridge("brdel0", "10.213.0.1/24".parse().unwrap(), 1500)
            .await
            .unwrap();
        assert!(links.exists("brdel0").await.unwrap());
        links.delete("brdel0").await.unwrap();
        assert!(!links.exists("brdel0").await.unwrap());
        links.delete("brdel0").await.unwrap();
    });
}

#[test]
fn add_veth_removes_what_it_created_on_failure() {
    if needs_root("add_veth_removes_what_it_created_on_failure") {
        return;
    }
    let before = host_links();
    in_netns(|| async {
        let links = Links::spawn().unwrap();
        let ns = File::open("/proc/thread-self/ns/net").unwrap();
        let err = links
            .add_veth("nobridge", "bthfail0", "bthfail0c", 1500, ns.as_fd())
            .await
            .unwrap_err();
        assert!(matches!(err, LinkError::NotFound { .. }), "{err}");
        assert!(!links.exists("bthfail0").await.unwrap());

        // A veth cannot be a master: the veth is created, then attaching fails.
        links
            .handle
            .link()
            .add(LinkVeth::new("notabridge", "notabridge1").build())
            .execute()
            .await
            .unwrap();
        let err = links
            .add_veth("notabridge", "bthfail0", "bthfail0c", 1500, ns.as_fd())
            .await
            .unwrap_err();
        assert!(matches!(err, LinkError::Netlink { .. }), "{err}");
        assert!(!links.exists("bthfail0").await.unwrap());
        assert!(!links.exists("bthfail0c").await.unwrap());
    });
    assert_host_clean(&before, "notabridge");
}

/// The whole path: bridge, veth into a second namespace, the container side configured, and
/// a TCP connection from the container to a listener on the gateway address.
#[test]
fn a_packet_crosses_the_bridge() {
    if needs_root("a_packet_crosses_the_bridge") {
        return;
    }
    let before = host_links();
    let (host, peer) = veth_names("c0ffee0012345678");
    let (host2, peer2) = (host.clone(), peer.clone());
    in_netns(move || async move {
        let (host, peer) = (host2, peer2);
        let links = Links::spawn().unwrap();
        let gateway: Ipv4Net = GATEWAY.parse().unwrap();
        let bridge_index = links.ensure_bridge("brtest1", gateway, 1500).await.unwrap();
        let listener = TcpListener::bind((gateway.addr(), 0)).unwrap();
        let port = listener.local_addr().unwrap().port();

        // The "container": a second thread in its own namespace.
        let (fd_tx, fd_rx) = mpsc::channel::<File>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let container_peer = peer.clone();
        let container = std::thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            fd_tx
                .send(File::open("/proc/thread-self/ns/net").unwrap())
                .unwrap();
            go_rx.recv_timeout(TIMEOUT).expect("go signal");
            let gw = gateway.addr();
            runtime().block_on(async {
                let links = Links::spawn().unwrap();
                assert!(
                    links.exists(&container_peer).await.unwrap(),
                    "peer not moved"
                );
                let address: Ipv4Net = CONTAINER.parse().unwrap();
                configure_container_side(&links, &container_peer, address, gw)
                    .await
                    .unwrap();
                let eth0 = link(&links, "eth0").await;
                assert!(eth0.header.flags.contains(LinkFlags::Up));
                assert_eq!(mtu_of(&eth0), Some(1500));
                let addrs = links
                    .ipv4_addresses(eth0.header.index, "eth0")
                    .await
                    .unwrap();
                assert_eq!(addrs, vec![address]);
                assert!(!links.exists(&container_peer).await.unwrap());
                let routes: Vec<_> = links
                    .handle
                    .route()
                    .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                    .execute()
                    .try_collect()
                    .await
                    .unwrap();
                let default = routes.iter().any(|r| {
                    r.header.table == RouteHeader::RT_TABLE_MAIN
                        && r.header.destination_prefix_length == 0
                        && r.attributes
                            .contains(&RouteAttribute::Gateway(RouteAddress::Inet(gw)))
                });
                assert!(default, "no default route via {gw}: {routes:?}");
            });
            let target = SocketAddr::from((gw, port));
            let mut stream = TcpStream::connect_timeout(&target, TIMEOUT).expect("connect");
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            stream.write_all(b"ping").unwrap();
            let mut reply = [0u8; 4];
            stream.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"pong");
        });

        let ns = fd_rx.recv_timeout(TIMEOUT).expect("container namespace fd");
        links
            .add_veth("brtest1", &host, &peer, 1500, ns.as_fd())
            .await
            .unwrap();
        drop(ns);
        let port_link = link(&links, &host).await;
        assert_eq!(
            controller_of(&port_link),
            Some(bridge_index),
            "not a bridge port"
        );
        assert_eq!(hairpin_of(&port_link), Some(true), "hairpin off");
        assert!(port_link.header.flags.contains(LinkFlags::Up));
        assert!(
            !links.exists(&peer).await.unwrap(),
            "peer left in the node namespace"
        );
        let br = link(&links, "brtest1").await;
        assert_eq!(
            mac_of(&br),
            Some(bridge_mac("brtest1").to_vec()),
            "MAC changed with a port"
        );
        go_tx.send(()).unwrap();

        // Accept without blocking forever if the container thread fails.
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + TIMEOUT;
        let mut conn = loop {
            match listener.accept() {
                Ok((conn, from)) => {
                    assert_eq!(from.ip(), CONTAINER.parse::<Ipv4Net>().unwrap().addr());
                    break conn;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if container.is_finished() || Instant::now() > deadline {
                        container
                            .join()
                            .unwrap_or_else(|p| std::panic::resume_unwind(p));
                        panic!("no connection from the container");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        conn.write_all(b"pong").unwrap();
        container
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));

        links.delete(&host).await.unwrap();
        assert!(!links.exists(&host).await.unwrap());
        links.delete(&host).await.unwrap();
        links.delete("brtest1").await.unwrap();
        links.delete("brtest1").await.unwrap();
        assert!(!links.exists("brtest1").await.unwrap());
    });
    assert_host_clean(&before, "brtest1");
    assert!(!host_links().contains(&host));
}
