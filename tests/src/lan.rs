//! Hosts as network namespaces on one LAN, or on several L3 segments joined by a router: a
//! namespace of its own (the "switch", a router when there are several segments) holds per
//! segment `k` a bridge `lanbr<k>` with 192.168.<100+k>.1/24, and per host a veth whose end
//! in the host is `eth0` with 192.168.<100+k>.<n+2>/24 (n: the host's place in its segment)
//! and a default route via its segment's bridge. Everything goes with the namespaces; no
//! traffic leaves them.

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;

use berth_agent::net::link::{Links, configure_container_side};

use crate::netns::NetNs;

/// The LAN bridge's address and the hosts' gateway (of the first segment).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);

/// The gateway of segment `k`: 192.168.<100+k>.1.
pub fn segment_gateway(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 100 + k as u8, 1)
}

/// A LAN of hosts.
#[derive(Debug)]
pub struct Lan {
    switch: NetNs,
    /// The hosts and their LAN addresses, in order.
    pub hosts: Vec<(Arc<NetNs>, Ipv4Addr)>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime")
}

impl Lan {
    /// A LAN of `n` hosts (at most 200).
    pub fn new(n: usize) -> Lan {
        Lan::segmented(&[n])
    }

    /// Hosts on `sizes.len()` L3 segments (at most 100), `sizes[k]` of them on segment `k`
    /// (at most 200 each), numbered in segment order; the switch routes between segments.
    pub fn segmented(sizes: &[usize]) -> Lan {
        assert!(sizes.len() <= 100, "at most 100 segments");
        let switch = NetNs::new().expect("switch netns");
        if sizes.len() > 1 {
            switch.run(|| {
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("router forwarding")
            });
        }
        let mut hosts = Vec::new();
        for (k, &n) in sizes.iter().enumerate() {
            assert!(n <= 200, "at most 200 hosts on a segment");
            let gateway = segment_gateway(k);
            let bridge = format!("lanbr{k}");
            for j in 0..n {
                let i = hosts.len();
                let host = Arc::new(NetNs::new().expect("host netns"));
                let [a, b, c, _] = gateway.octets();
                let ip = Ipv4Addr::new(a, b, c, 2 + j as u8);
                let (outer, inner) = (Self::port_name(i), format!("lan{i}peer"));
                switch.run(|| {
                    runtime().block_on(async {
                        let links = Links::spawn().expect("netlink");
                        links
                            .ensure_bridge(&bridge, format!("{gateway}/24").parse().unwrap(), 1500)
                            .await
                            .expect("LAN bridge");
                        links
                            .add_veth(&bridge, &outer, &inner, 1500, host.fd())
                            .await
                            .expect("LAN veth");
                    })
                });
                host.run(|| {
                    runtime().block_on(async {
                        let links = Links::spawn().expect("netlink");
                        configure_container_side(
                            &links,
                            &inner,
                            ipnet::Ipv4Net::new(ip, 24).unwrap(),
                            gateway,
                        )
                        .await
                        .expect("host side of the LAN");
                    })
                });
                hosts.push((host, ip));
            }
        }
        Lan { switch, hosts }
    }

    /// The switch-side name of host `i`'s cable.
    fn port_name(i: usize) -> String {
        format!("lan{i}")
    }

    /// Unplugs (`false`) or plugs back (`true`) host `i`'s cable: a partition that neither
    /// side can tell from a dead peer.
    pub fn set_connected(&self, i: usize, connected: bool) -> io::Result<()> {
        let mut ip = self.switch.command("ip");
        ip.args(["link", "set", "dev", &Self::port_name(i)])
            .arg(if connected { "up" } else { "down" });
        let out = ip.output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ip link set {}: {}",
                Self::port_name(i),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// A command run on the switch (for inspection).
    pub fn switch_command(&self, program: &str) -> Command {
        self.switch.command(program)
    }
}
