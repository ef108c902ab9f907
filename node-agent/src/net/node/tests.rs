//! Root tests of the whole attach / detach / reconcile cycle, each in a throwaway network
//! namespace (a fresh thread that `unshare`s), with its state in a temporary directory.

use std::collections::HashSet;
use std::process::Command;

use nix::sched::{CloneFlags, unshare};

use super::*;

fn needs_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    eprintln!("\n*** SKIPPED: {test}: needs root ***\n");
    true
}

/// Runs `body` on a fresh thread in a fresh network namespace, which dies with the thread.
fn in_netns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        body()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn config() -> NetConfig {
    NetConfig {
        bridge: "bt0".into(),
        subnet: "10.214.0.0/24".parse().unwrap(),
        mtu: 1500,
    }
}

fn links() -> Vec<String> {
    berth_tests::netns::links_here()
}

fn rule_owners() -> BTreeSet<String> {
    let out = Command::new("iptables-save")
        .output()
        .expect("iptables-save");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("--comment \"berth:").nth(1))
        .filter_map(|r| r.split('"').next())
        .filter(|o| !o.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

fn id(prefix: &str, n: u8) -> String {
    format!("{prefix}{}", format!("{n:02x}").repeat(28))
}

#[test]
fn attach_wires_and_detach_removes_everything() {
    if needs_root("attach_wires_and_detach_removes_everything") {
        return;
    }
    in_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = NodeNet::open(dir.path(), config()).unwrap();
        let a = id("aaaa0001", 1);
        let specs = ports::parse_publish("8080:80/udp").unwrap();
        let (att, ns) = net.attach(&a, &specs).unwrap();
        assert_eq!(att.ip, "10.214.0.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(att.gateway, "10.214.0.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(att.veth, "bthaaaa0001");
        assert_eq!(att.ports[0].host_port, 8080);
        assert!(links().contains(&"bthaaaa0001".to_string()));
        assert_eq!(rule_owners(), BTreeSet::from([a.clone()]));
        assert_eq!(
            fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .unwrap()
                .trim(),
            "1"
        );
        // Inside: eth0 with the address, up.
        let inside = std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
                Command::new("ip")
                    .args(["-o", "-4", "addr", "show", "eth0"])
                    .output()
                    .unwrap()
            })
            .join()
            .unwrap()
        });
        let inside = String::from_utf8_lossy(&inside.stdout).into_owned();
        assert!(inside.contains("10.214.0.2/24"), "{inside}");
        drop(ns);
        net.detach(&a).unwrap();
        assert!(!links().contains(&"bthaaaa0001".to_string()));
        assert!(rule_owners().is_empty());
        assert!(net.addresses().unwrap().is_empty());
        assert!(net.published().unwrap().is_empty());
        // Idempotent.
        net.detach(&a).unwrap();
    });
}

#[test]
fn a_veth_name_shared_by_two_ids_is_refused_and_never_taken() {
    if needs_root("a_veth_name_shared_by_two_ids_is_refused_and_never_taken") {
        return;
    }
    in_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = NodeNet::open(dir.path(), config()).unwrap();
        let (a, b) = (id("bbbb0002", 1), id("bbbb0002", 2));
        let (_att, _ns) = net.attach(&a, &[]).unwrap();
        let err = net.attach(&b, &[]).unwrap_err().to_string();
        assert!(err.contains("bthbbbb0002") && err.contains(&a), "{err}");
        assert!(
            links().contains(&"bthbbbb0002".to_string()),
            "a's veth was taken"
        );
        net.detach(&b).unwrap();
        assert!(
            links().contains(&"bthbbbb0002".to_string()),
            "b's detach removed a's veth"
        );
        assert_eq!(net.addresses().unwrap().len(), 1);
        net.detach(&a).unwrap();
    });
}

#[test]
fn reconcile_removes_only_what_dead_containers_left() {
    if needs_root("reconcile_removes_only_what_dead_containers_left") {
        return;
    }
    in_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = NodeNet::open(dir.path(), config()).unwrap();
        let (live, dead) = (id("cccc0003", 1), id("dddd0004", 2));
        let (_l, _lns) = net
            .attach(&live, &ports::parse_publish("9000:80").unwrap())
            .unwrap();
        let (_d, _dns) = net
            .attach(&dead, &ports::parse_publish("9001:80").unwrap())
            .unwrap();
        let r = net.reconcile(&HashSet::from([live.clone()])).unwrap();
        assert_eq!(r.addresses.len(), 1);
        assert_eq!(r.addresses[0].0, dead);
        assert_eq!(r.rule_owners, vec![dead.clone()]);
        assert_eq!(r.veths, vec!["bthdddd0004".to_string()]);
        assert_eq!(rule_owners(), BTreeSet::from([live.clone()]));
        assert!(links().contains(&"bthcccc0003".to_string()));
        assert_eq!(
            net.published().unwrap().keys().cloned().collect::<Vec<_>>(),
            vec![live.clone()]
        );
        // Nothing more to do the second time.
        assert!(
            net.reconcile(&HashSet::from([live.clone()]))
                .unwrap()
                .is_empty()
        );
        net.detach(&live).unwrap();
    });
}

fn bridge_addresses(bridge: &str) -> String {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", bridge])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nat_rules() -> String {
    let out = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .expect("iptables-save");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ensure_subnet_creates_keeps_refuses_in_use_and_moves_a_free_bridge() {
    if needs_root("ensure_subnet_creates_keeps_refuses_in_use_and_moves_a_free_bridge") {
        return;
    }
    in_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let a = config();
        let b = NetConfig {
            subnet: "10.215.3.0/24".parse().unwrap(),
            ..config()
        };
        let (net, change) = NodeNet::ensure_subnet(dir.path(), a.clone()).unwrap();
        assert_eq!(change, SubnetChange::Created);
        assert!(bridge_addresses("bt0").contains("10.214.0.1/24"));
        assert!(nat_rules().contains("-s 10.214.0.0/24"));
        let (_, change) = NodeNet::ensure_subnet(dir.path(), a.clone()).unwrap();
        assert_eq!(change, SubnetChange::Unchanged);

        // A container holds an address: refused, both subnets named, nothing changed.
        let c = id("eeee0005", 1);
        let (_att, ns) = net.attach(&c, &[]).unwrap();
        let err = NodeNet::ensure_subnet(dir.path(), b.clone())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("10.214.0.0/24") && err.contains("10.215.3.0/24"),
            "{err}"
        );
        assert!(bridge_addresses("bt0").contains("10.214.0.1/24"));
        assert!(links().contains(&"btheeee0005".to_string()));
        drop(ns);
        net.detach(&c).unwrap();

        // Free: the bridge is re-created with the new subnet, and the rules follow.
        let (moved, change) = NodeNet::ensure_subnet(dir.path(), b.clone()).unwrap();
        assert_eq!(
            change,
            SubnetChange::Replaced {
                old: "10.214.0.0/24".parse().unwrap()
            }
        );
        let addrs = bridge_addresses("bt0");
        assert!(
            addrs.contains("10.215.3.1/24") && !addrs.contains("10.214.0.1"),
            "{addrs}"
        );
        let nat = nat_rules();
        assert!(
            nat.contains("-s 10.215.3.0/24") && !nat.contains("-s 10.214.0.0/24"),
            "{nat}"
        );
        let (att, ns) = moved.attach(&c, &[]).unwrap();
        assert_eq!(att.ip, "10.215.3.2".parse::<Ipv4Addr>().unwrap());
        drop(ns);
        moved.detach(&c).unwrap();
    });
}
