//! Hosts as network namespaces on one LAN: a bridge `lanbr` (192.168.100.1/24) in a
//! namespace of its own (the "switch"), and per host a veth whose end in the host is `eth0`
//! with 192.168.100.<n+2>/24 and a default route via the bridge. Everything goes with the
//! namespaces; no traffic leaves them.

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;

use berth_agent::net::link::{Links, configure_container_side};

use crate::netns::NetNs;

/// The LAN bridge's address and the hosts' gateway.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);

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
        assert!(n <= 200, "at most 200 hosts on a LAN");
        let switch = NetNs::new().expect("switch netns");
        let mut hosts = Vec::new();
        for i in 0..n {
            let host = Arc::new(NetNs::new().expect("host netns"));
            let ip = Ipv4Addr::new(192, 168, 100, 2 + i as u8);
            let (outer, inner) = (Self::port_name(i), format!("lan{i}peer"));
            switch.run(|| {
                runtime().block_on(async {
                    let links = Links::spawn().expect("netlink");
                    links
                        .ensure_bridge("lanbr", format!("{GATEWAY}/24").parse().unwrap(), 1500)
                        .await
                        .expect("LAN bridge");
                    links
                        .add_veth("lanbr", &outer, &inner, 1500, host.fd())
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
                        GATEWAY,
                    )
                    .await
                    .expect("host side of the LAN");
                })
            });
            hosts.push((host, ip));
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
