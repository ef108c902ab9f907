//! The pure core: derived MACs and addresses, peer list checks, and the exact operations for
//! installed vs wanted entries.

use super::*;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn peer(address: &str, subnet: &str) -> Peer {
    Peer {
        address: ip(address),
        subnet: net(subnet),
    }
}

const OWN: &str = "10.42.1.0/24";

fn vx_route(subnet: &str) -> RouteEntry {
    RouteEntry {
        dst: net(subnet),
        via: vtep_ip(net(subnet)),
        vxlan: true,
    }
}

fn fdb(subnet: &str, dst: &str) -> FdbEntry {
    FdbEntry {
        mac: vtep_mac(net(subnet)),
        dst: ip(dst),
    }
}

fn neigh(subnet: &str) -> NeighEntry {
    NeighEntry {
        ip: vtep_ip(net(subnet)),
        mac: vtep_mac(net(subnet)),
    }
}

#[test]
fn vtep_mac_and_ip_come_from_the_subnet() {
    assert_eq!(
        vtep_mac(net("10.42.3.0/24")),
        [0x0e, 0xbe, 10, 42, 3, 0],
        "0e:be + network address"
    );
    assert_eq!(vtep_mac(net("10.42.3.7/24")), vtep_mac(net("10.42.3.0/24")));
    assert_eq!(vtep_ip(net("10.42.3.9/24")), ip("10.42.3.0"));
    let mac = vtep_mac(net("192.168.0.0/16"));
    assert_eq!(mac[0] & 0x01, 0, "unicast");
    assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
    assert_eq!(Mac(&mac).to_string(), "0e:be:c0:a8:00:00");
}

#[test]
fn vxlan_wants_fdb_neigh_and_onlink_route_per_peer_but_not_for_itself() {
    let peers = [
        peer("10.10.2.2", "10.42.3.0/24"),
        peer("10.10.1.2", OWN),
        peer("10.10.1.3", "10.42.2.0/24"),
    ];
    let w = wanted(OverlayMode::Vxlan, net(OWN), &peers).unwrap();
    assert_eq!(
        w,
        Entries {
            routes: vec![vx_route("10.42.2.0/24"), vx_route("10.42.3.0/24")],
            fdb: vec![
                fdb("10.42.2.0/24", "10.10.1.3"),
                fdb("10.42.3.0/24", "10.10.2.2")
            ],
            neigh: vec![neigh("10.42.2.0/24"), neigh("10.42.3.0/24")],
        }
    );
}

#[test]
fn routed_wants_only_routes_via_the_peer() {
    let peers = [peer("10.10.1.3", "10.42.2.0/24"), peer("10.10.1.2", OWN)];
    let w = wanted(OverlayMode::Routed, net(OWN), &peers).unwrap();
    assert_eq!(
        w,
        Entries {
            routes: vec![RouteEntry {
                dst: net("10.42.2.0/24"),
                via: ip("10.10.1.3"),
                vxlan: false
            }],
            ..Entries::default()
        }
    );
}

#[test]
fn peer_lists_are_checked() {
    // Exact duplicates merge; host bits are cleared.
    let ok = effective_peers(
        net(OWN),
        &[
            peer("10.10.1.3", "10.42.2.0/24"),
            peer("10.10.1.3", "10.42.2.5/24"),
        ],
    )
    .unwrap();
    assert_eq!(ok, vec![peer("10.10.1.3", "10.42.2.0/24")]);

    let err = effective_peers(
        net(OWN),
        &[
            peer("10.10.1.3", "10.42.2.0/24"),
            peer("10.10.1.4", "10.42.2.0/24"),
        ],
    )
    .unwrap_err();
    assert!(matches!(err, PlanError::DuplicateSubnet { .. }), "{err:?}");
    assert!(err.to_string().contains("10.10.1.4"), "{err}");

    // Overlapping this node's subnet, either way round.
    for bad in ["10.42.1.128/25", "10.42.0.0/16"] {
        let err = effective_peers(net(OWN), &[peer("10.10.1.9", bad)]).unwrap_err();
        assert!(matches!(err, PlanError::Overlap { .. }), "{bad}: {err:?}");
    }
    // Overlapping each other, in any order, also past a non-overlapping one in between.
    for order in [
        ["10.42.8.0/22", "10.42.9.0/24", "10.42.20.0/24"],
        ["10.42.20.0/24", "10.42.9.0/24", "10.42.8.0/22"],
        ["10.42.9.0/24", "10.42.20.0/24", "10.42.8.0/21"],
    ] {
        let peers: Vec<Peer> = order
            .iter()
            .enumerate()
            .map(|(i, s)| peer(&format!("10.10.1.{}", 10 + i), s))
            .collect();
        let err = effective_peers(net(OWN), &peers).unwrap_err();
        assert!(
            matches!(err, PlanError::Overlap { .. }),
            "{order:?}: {err:?}"
        );
    }
    let err = effective_peers(
        net(OWN),
        &[
            peer("10.10.1.10", "10.42.0.0/23"),
            peer("10.10.1.11", "10.42.2.0/24"),
            peer("10.10.1.12", "10.42.0.0/24"),
        ],
    );
    // 10.42.0.0/23 holds 10.42.1.0/24, this node's.
    assert!(matches!(err, Err(PlanError::Overlap { .. })), "{err:?}");
    let fine = effective_peers(
        net(OWN),
        &[
            peer("10.10.1.10", "10.42.4.0/22"),
            peer("10.10.1.11", "10.42.8.0/24"),
            peer("10.10.1.12", "10.42.0.0/24"),
        ],
    )
    .unwrap();
    assert_eq!(fine.len(), 3);
}

#[test]
fn nothing_to_do_when_installed_matches() {
    let peers = [peer("10.10.1.3", "10.42.2.0/24")];
    let w = wanted(OverlayMode::Vxlan, net(OWN), &peers).unwrap();
    assert_eq!(plan(&w, &w), Plan::default());
}

#[test]
fn a_new_peer_is_added_fdb_then_neigh_then_route() {
    let installed = wanted(
        OverlayMode::Vxlan,
        net(OWN),
        &[peer("10.10.1.3", "10.42.2.0/24")],
    )
    .unwrap();
    let w = wanted(
        OverlayMode::Vxlan,
        net(OWN),
        &[
            peer("10.10.1.3", "10.42.2.0/24"),
            peer("10.10.2.2", "10.42.3.0/24"),
        ],
    )
    .unwrap();
    let p = plan(&installed, &w);
    assert_eq!(
        p.ops,
        vec![
            Op::AddFdb {
                entry: fdb("10.42.3.0/24", "10.10.2.2"),
                replace: false
            },
            Op::AddNeigh {
                entry: neigh("10.42.3.0/24"),
                replace: false
            },
            Op::AddRoute {
                entry: vx_route("10.42.3.0/24"),
                replace: false
            },
        ]
    );
    assert_eq!(p.added, vec![net("10.42.3.0/24")]);
    assert!(p.removed.is_empty() && p.changed.is_empty());
}

#[test]
fn a_gone_peer_is_removed_route_then_neigh_then_fdb_and_nothing_else() {
    let installed = wanted(
        OverlayMode::Vxlan,
        net(OWN),
        &[
            peer("10.10.1.3", "10.42.2.0/24"),
            peer("10.10.2.2", "10.42.3.0/24"),
        ],
    )
    .unwrap();
    let w = wanted(
        OverlayMode::Vxlan,
        net(OWN),
        &[peer("10.10.1.3", "10.42.2.0/24")],
    )
    .unwrap();
    let p = plan(&installed, &w);
    assert_eq!(
        p.ops,
        vec![
            Op::DelRoute(vx_route("10.42.3.0/24")),
            Op::DelNeigh(neigh("10.42.3.0/24")),
            Op::DelFdb(fdb("10.42.3.0/24", "10.10.2.2")),
        ]
    );
    assert_eq!(p.removed, vec![net("10.42.3.0/24")]);
    assert!(p.added.is_empty() && p.changed.is_empty());
}

#[test]
fn a_peer_with_a_new_address_gets_its_fdb_entry_replaced_only() {
    let installed = wanted(
        OverlayMode::Vxlan,
        net(OWN),
        &[peer("10.10.2.2", "10.42.3.0/24")],
    )
    .unwrap();
    let w = wanted(
        OverlayMode::Vxlan,
        net(OWN),
        &[peer("10.10.2.9", "10.42.3.0/24")],
    )
    .unwrap();
    let p = plan(&installed, &w);
    assert_eq!(
        p.ops,
        vec![Op::AddFdb {
            entry: fdb("10.42.3.0/24", "10.10.2.9"),
            replace: true
        }]
    );
    assert_eq!(p.changed, vec![net("10.42.3.0/24")]);

    // Routed: the route is replaced in place.
    let installed = wanted(
        OverlayMode::Routed,
        net(OWN),
        &[peer("10.10.1.3", "10.42.2.0/24")],
    )
    .unwrap();
    let w = wanted(
        OverlayMode::Routed,
        net(OWN),
        &[peer("10.10.1.4", "10.42.2.0/24")],
    )
    .unwrap();
    let p = plan(&installed, &w);
    assert_eq!(
        p.ops,
        vec![Op::AddRoute {
            entry: RouteEntry {
                dst: net("10.42.2.0/24"),
                via: ip("10.10.1.4"),
                vxlan: false
            },
            replace: true
        }]
    );
    assert_eq!(p.changed, vec![net("10.42.2.0/24")]);
}

#[test]
fn extra_remotes_and_stale_entries_are_removed() {
    let w = wanted(
        OverlayMode::Vxlan,
        net(OWN),
        &[peer("10.10.2.2", "10.42.3.0/24")],
    )
    .unwrap();
    // Someone appended a second remote for the peer's MAC, and left a stray neighbour and
    // an FDB entry for a MAC no peer has.
    let mut installed = w.clone();
    installed.fdb.push(fdb("10.42.3.0/24", "10.10.9.9"));
    installed.neigh.push(NeighEntry {
        ip: ip("10.42.77.0"),
        mac: [0x0e, 0xbe, 10, 42, 77, 0],
    });
    installed.fdb.push(fdb("10.42.77.0/24", "10.10.7.7"));
    let p = plan(&installed, &w);
    assert_eq!(
        p.ops,
        vec![
            Op::DelNeigh(NeighEntry {
                ip: ip("10.42.77.0"),
                mac: [0x0e, 0xbe, 10, 42, 77, 0],
            }),
            Op::DelFdb(fdb("10.42.3.0/24", "10.10.9.9")),
            Op::DelFdb(fdb("10.42.77.0/24", "10.10.7.7")),
        ]
    );
    assert_eq!(p.changed, vec![net("10.42.3.0/24")]);
    assert!(p.added.is_empty() && p.removed.is_empty());

    // Two wrong remotes: both go and the right one is added.
    let mut installed = w.clone();
    installed.fdb = vec![
        fdb("10.42.3.0/24", "10.10.9.8"),
        fdb("10.42.3.0/24", "10.10.9.9"),
    ];
    let p = plan(&installed, &w);
    assert_eq!(
        p.ops,
        vec![
            Op::DelFdb(fdb("10.42.3.0/24", "10.10.9.8")),
            Op::DelFdb(fdb("10.42.3.0/24", "10.10.9.9")),
            Op::AddFdb {
                entry: fdb("10.42.3.0/24", "10.10.2.2"),
                replace: false
            },
        ]
    );
}

#[test]
fn switching_modes_replaces_routes_and_drops_vxlan_entries() {
    let peers = [peer("10.10.1.3", "10.42.2.0/24")];
    let vx = wanted(OverlayMode::Vxlan, net(OWN), &peers).unwrap();
    let routed = wanted(OverlayMode::Routed, net(OWN), &peers).unwrap();
    let p = plan(&vx, &routed);
    assert_eq!(
        p.ops,
        vec![
            Op::DelNeigh(neigh("10.42.2.0/24")),
            Op::DelFdb(fdb("10.42.2.0/24", "10.10.1.3")),
            Op::AddRoute {
                entry: routed.routes[0],
                replace: true
            },
        ]
    );
    let p = plan(&routed, &vx);
    assert_eq!(p.ops.len(), 3);
    assert_eq!(
        p.ops[2],
        Op::AddRoute {
            entry: vx.routes[0],
            replace: true
        }
    );
}

#[test]
fn ops_read_well() {
    let op = Op::AddFdb {
        entry: fdb("10.42.3.0/24", "10.10.2.2"),
        replace: false,
    };
    assert_eq!(
        op.to_string(),
        "adding fdb entry 0e:be:0a:2a:03:00 dst 10.10.2.2"
    );
    let op = Op::DelRoute(vx_route("10.42.3.0/24"));
    assert_eq!(
        op.to_string(),
        "deleting route 10.42.3.0/24 via 10.42.3.0 onlink over the vxlan device"
    );
}
