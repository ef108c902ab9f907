use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};

use ipnet::Ipv4Net;

use super::{Ipam, IpamError};

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn table_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("net").join("ipam.json")
}

#[test]
fn gateway_network_and_broadcast_are_never_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(&table_path(&dir), net("10.88.0.0/29")).unwrap();
    assert_eq!(ipam.gateway(), ip("10.88.0.1"));
    assert_eq!(ipam.subnet(), net("10.88.0.0/29"));
    let got: Vec<_> = (0..5)
        .map(|i| ipam.allocate(&format!("c{i}")).unwrap())
        .collect();
    assert_eq!(
        got,
        [
            "10.88.0.2",
            "10.88.0.3",
            "10.88.0.4",
            "10.88.0.5",
            "10.88.0.6"
        ]
        .map(ip)
    );
}

#[test]
fn allocation_is_idempotent_per_owner() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(&table_path(&dir), net("10.88.0.0/16")).unwrap();
    let a = ipam.allocate("a").unwrap();
    assert_eq!(ipam.allocate("a").unwrap(), a);
    assert_ne!(ipam.allocate("b").unwrap(), a);
    assert_eq!(ipam.allocations().unwrap().len(), 2);
}

#[test]
fn freed_address_is_not_reused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(&table_path(&dir), net("10.88.0.0/16")).unwrap();
    let a = ipam.allocate("a").unwrap();
    ipam.release("a").unwrap();
    ipam.release("a").unwrap(); // no error the second time
    let b = ipam.allocate("b").unwrap();
    assert_ne!(a, b);
    assert_eq!(b, ip("10.88.0.3"));
}

#[test]
fn round_robin_wraps_around_to_freed_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(&table_path(&dir), net("10.0.0.0/29")).unwrap();
    for i in 0..5 {
        ipam.allocate(&format!("c{i}")).unwrap();
    }
    ipam.release("c3").unwrap(); // 10.0.0.5
    ipam.release("c1").unwrap(); // 10.0.0.3
    assert_eq!(ipam.allocate("x").unwrap(), ip("10.0.0.3"));
    assert_eq!(ipam.allocate("y").unwrap(), ip("10.0.0.5"));
}

#[test]
fn full_subnet_is_exhausted_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(&table_path(&dir), net("10.0.0.0/29")).unwrap();
    for i in 0..5 {
        ipam.allocate(&format!("c{i}")).unwrap();
    }
    let err = ipam.allocate("late").unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("10.0.0.0/29") && msg.contains("late"), "{msg}");
    // An owner already holding an address still gets it.
    assert_eq!(ipam.allocate("c0").unwrap(), ip("10.0.0.2"));
}

#[test]
fn reconcile_drops_dead_owners() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(&table_path(&dir), net("10.88.0.0/16")).unwrap();
    let a = ipam.allocate("a").unwrap();
    let b = ipam.allocate("b").unwrap();
    let c = ipam.allocate("c").unwrap();
    let live: HashSet<String> = ["b".to_owned(), "z".to_owned()].into();
    let released = ipam.reconcile(&live).unwrap();
    assert_eq!(released, vec![("a".to_owned(), a), ("c".to_owned(), c)]);
    assert_eq!(ipam.allocations().unwrap(), [("b".to_owned(), b)].into());
    assert!(ipam.reconcile(&live).unwrap().is_empty());
}

#[test]
fn table_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = table_path(&dir);
    let first = {
        let ipam = Ipam::open(&path, net("10.88.0.0/16")).unwrap();
        ipam.allocate("a").unwrap();
        ipam.allocate("b").unwrap()
    };
    let ipam = Ipam::open(&path, net("10.88.0.0/16")).unwrap();
    assert_eq!(ipam.allocate("b").unwrap(), first);
    // Round-robin state persisted too.
    ipam.release("a").unwrap();
    assert_eq!(ipam.allocate("c").unwrap(), ip("10.88.0.4"));
}

#[test]
fn subnet_mismatch_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = table_path(&dir);
    Ipam::open(&path, net("10.88.0.0/16")).unwrap();
    let err = Ipam::open(&path, net("10.89.0.0/16")).unwrap_err();
    assert!(matches!(err, IpamError::SubnetMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("10.88.0.0/16") && msg.contains("10.89.0.0/16") && msg.contains("ipam.json"),
        "{msg}"
    );
}

#[test]
fn unusable_subnets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for s in ["10.0.0.0/31", "10.0.0.0/32", "10.88.0.5/16"] {
        let err = Ipam::open(&table_path(&dir), net(s)).unwrap_err();
        assert!(
            matches!(err, IpamError::InvalidSubnet { .. }),
            "{s}: {err:?}"
        );
        assert!(err.to_string().contains(s), "{err}");
    }
    // A /30 holds the gateway and one container.
    let ipam = Ipam::open(&table_path(&dir), net("10.0.0.0/30")).unwrap();
    assert_eq!(ipam.allocate("a").unwrap(), ip("10.0.0.2"));
    assert!(ipam.allocate("b").is_err());
}

#[test]
fn empty_owner_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(&table_path(&dir), net("10.88.0.0/16")).unwrap();
    let err = ipam.allocate("").unwrap_err();
    assert!(matches!(err, IpamError::InvalidOwner { .. }), "{err:?}");
}

#[test]
fn corrupt_table_is_a_clear_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = table_path(&dir);
    let ipam = Ipam::open(&path, net("10.88.0.0/16")).unwrap();
    std::fs::write(&path, b"{\"subnet\": \"10.88.0.0/16\", \"allocations\": ").unwrap();
    let err = ipam.allocate("a").unwrap_err();
    assert!(matches!(err, IpamError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // Well-formed JSON holding the gateway is corrupt too.
    std::fs::write(
        &path,
        br#"{"subnet": "10.88.0.0/16", "allocations": {"a": "10.88.0.1"}}"#,
    )
    .unwrap();
    let err = Ipam::open(&path, net("10.88.0.0/16")).unwrap_err();
    assert!(err.to_string().contains("10.88.0.1"), "{err}");
}

#[test]
fn separate_opens_never_hand_out_one_address_twice() {
    // flock is per open file description: an Ipam per thread contends as processes do.
    const THREADS: usize = 8;
    const PER_THREAD: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let path = table_path(&dir);
    Ipam::open(&path, net("10.88.0.0/24")).unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let ipam = Ipam::open(&path, net("10.88.0.0/24")).unwrap();
                barrier.wait();
                (0..PER_THREAD)
                    .map(|i| {
                        let owner = format!("t{t}-c{i}");
                        (owner.clone(), ipam.allocate(&owner).unwrap())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    let distinct: HashSet<Ipv4Addr> = all.iter().map(|(_, a)| *a).collect();
    assert_eq!(distinct.len(), THREADS * PER_THREAD);
    let table = Ipam::open(&path, net("10.88.0.0/24"))
        .unwrap()
        .allocations()
        .unwrap();
    assert_eq!(table.len(), THREADS * PER_THREAD);
    for (owner, addr) in all {
        assert_eq!(table[&owner], addr);
    }
}

#[test]
fn retarget_moves_an_empty_table_and_refuses_a_used_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = table_path(&dir);
    // No table yet: created for the subnet, nothing changed.
    assert_eq!(Ipam::retarget(&path, net("10.1.0.0/24")).unwrap(), None);
    assert_eq!(Ipam::retarget(&path, net("10.1.0.0/24")).unwrap(), None);
    let ipam = Ipam::open(&path, net("10.1.0.0/24")).unwrap();
    ipam.allocate("c1").unwrap();
    // In use: refused with both subnets named, the table untouched.
    let err = Ipam::retarget(&path, net("10.2.0.0/24")).unwrap_err();
    assert!(matches!(err, IpamError::SubnetInUse { owners: 1, .. }));
    let text = err.to_string();
    assert!(
        text.contains("10.1.0.0/24") && text.contains("10.2.0.0/24"),
        "{text}"
    );
    assert!(ipam.allocations().unwrap().contains_key("c1"));
    // Empty again: moved, and the old subnet's handle now refuses the table.
    ipam.release("c1").unwrap();
    assert_eq!(
        Ipam::retarget(&path, net("10.2.0.0/24")).unwrap(),
        Some(net("10.1.0.0/24"))
    );
    assert!(matches!(
        ipam.allocate("c2"),
        Err(IpamError::SubnetMismatch { .. })
    ));
    let moved = Ipam::open(&path, net("10.2.0.0/24")).unwrap();
    assert_eq!(moved.allocate("c2").unwrap(), ip("10.2.0.2"));
}
