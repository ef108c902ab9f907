//! Shared by the end-to-end test files of `berth-agent`.
#![allow(dead_code)]

use berth_tests::TestAgent;

/// A test agent using this package's freshly built binaries.
pub fn agent() -> TestAgent {
    TestAgent::new(
        env!("CARGO_BIN_EXE_berth-agent"),
        env!("CARGO_BIN_EXE_berth-monitor"),
    )
}

/// A test agent with a busybox image tagged `bb`; `None` (after a loud SKIPPED) when the
/// test cannot run here.
pub fn agent_with_busybox(test: &str) -> Option<TestAgent> {
    if !berth_tests::require_root_and_busybox(test) {
        return None;
    }
    let a = agent();
    a.busybox_image("bb");
    Some(a)
}

/// Stdout and stderr of an output, for assertion messages.
pub fn show(o: &std::process::Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Hosts as network namespaces on one LAN: a bridge `lanbr` (192.168.100.1/24) in a namespace
/// of its own, and per host a veth whose end in the host is `eth0` with 192.168.100.<n+2>/24
/// and a default route via the bridge. Everything goes with the namespaces.
pub struct Lan {
    _switch: berth_tests::netns::NetNs,
    /// The hosts and their LAN addresses.
    pub hosts: Vec<(
        std::sync::Arc<berth_tests::netns::NetNs>,
        std::net::Ipv4Addr,
    )>,
}

impl Lan {
    /// A LAN of `n` hosts.
    pub fn new(n: usize) -> Lan {
        use berth_agent::net::link::{Links, configure_container_side};
        use std::net::Ipv4Addr;
        use std::sync::Arc;
        let switch = berth_tests::netns::NetNs::new().expect("switch netns");
        let rt = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .expect("tokio runtime")
        };
        let mut hosts = Vec::new();
        for i in 0..n {
            let host = Arc::new(berth_tests::netns::NetNs::new().expect("host netns"));
            let ip = Ipv4Addr::new(192, 168, 100, 2 + i as u8);
            let (outer, inner) = (format!("lan{i}"), format!("lan{i}peer"));
            switch.run(|| {
                rt().block_on(async {
                    let links = Links::spawn().expect("netlink");
                    links
                        .ensure_bridge("lanbr", "192.168.100.1/24".parse().unwrap(), 1500)
                        .await
                        .expect("LAN bridge");
                    links
                        .add_veth("lanbr", &outer, &inner, 1500, host.fd())
                        .await
                        .expect("LAN veth");
                })
            });
            host.run(|| {
                rt().block_on(async {
                    let links = Links::spawn().expect("netlink");
                    configure_container_side(
                        &links,
                        &inner,
                        ipnet::Ipv4Net::new(ip, 24).unwrap(),
                        Ipv4Addr::new(192, 168, 100, 1),
                    )
                    .await
                    .expect("host side of the LAN");
                })
            });
            hosts.push((host, ip));
        }
        Lan {
            _switch: switch,
            hosts,
        }
    }
}

/// `iptables-save` in `ns`, without counters and comments (which change with traffic and
/// time), for before/after comparisons.
pub fn iptables_rules(ns: &berth_tests::netns::NetNs) -> String {
    let out = ns
        .command("iptables-save")
        .output()
        .expect("run iptables-save");
    assert!(out.status.success(), "iptables-save: {}", show(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.find(" [") {
            Some(i) if l.starts_with(':') => l[..i].to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names of the links in `ns`.
pub fn links_in(ns: &berth_tests::netns::NetNs) -> Vec<String> {
    ns.links()
}
