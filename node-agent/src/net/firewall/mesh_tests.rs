//! Tests of the service mesh's rules: the exact generated text (pure), the fast change
//! against the exact sync, and a conformance suite for [`ServiceFirewall`] back-ends run
//! against the in-memory model and, as root, against real iptables in a throwaway network
//! namespace.

use std::net::Ipv4Addr;

use super::mesh::{self, Scope, ServicePlan};
use super::rules::{self, Batch, State, Table};
use super::tests::{Counting, berth_leftovers, in_fresh_netns, model, net, read_real};
use super::{
    Commands, Firewall, FirewallError, IngressPort, IptablesFirewall, MemoryRunner, MeshConfig,
    Proto, Runner, ServiceChange, ServiceFirewall, ServiceRules,
};

pub(super) fn mesh_config() -> MeshConfig {
    MeshConfig {
        cluster_range: "10.42.0.0/16".parse().unwrap(),
        node_subnet: "10.42.1.0/24".parse().unwrap(),
    }
}

/// `state` as iptables-save groups it: per table, the user chains sorted, each chain's rules
/// in order, except the mesh's shared chains, whose rules' order does not matter (their
/// matches are disjoint), sorted.
pub(super) fn canon(state: &State) -> Vec<String> {
    let mut out = Vec::new();
    for table in [Table::Nat, Table::Filter] {
        out.push(format!("*{}", table.as_str()));
        let builtin = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
        let mut chains = state.chains(table);
        chains.retain(|c| !builtin.contains(&c.as_str()));
        chains.sort();
        out.extend(chains.iter().map(|c| format!(":{c}")));
        let lines = state.rule_lines(table);
        for chain in builtin.iter().map(|c| (*c).to_owned()).chain(chains) {
            let prefix = format!("-A {chain} ");
            let mut rules: Vec<&String> = lines.iter().filter(|l| l.starts_with(&prefix)).collect();
            if [
                mesh::SERVICES_CHAIN,
                mesh::INGRESS_CHAIN,
                mesh::NO_ENDPOINTS_CHAIN,
            ]
            .contains(&chain.as_str())
            {
                rules.sort();
            }
            out.extend(rules.into_iter().cloned());
        }
    }
    out
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn tcp(published: u16, target: u16) -> IngressPort {
    IngressPort {
        protocol: Proto::Tcp,
        published,
        target,
    }
}

fn udp(published: u16, target: u16) -> IngressPort {
    IngressPort {
        protocol: Proto::Udp,
        published,
        target,
    }
}

fn web(endpoints: &[&str]) -> ServiceRules {
    ServiceRules {
        name: "web".to_owned(),
        vip: Some(ip("10.96.0.10")),
        endpoints: endpoints.iter().map(|e| ip(e)).collect(),
        ingress: vec![tcp(30080, 80)],
    }
}

fn lines(batch: &Batch) -> Vec<String> {
    batch.render().lines().map(str::to_owned).collect()
}

fn expect(lines_: &[&str]) -> Vec<String> {
    lines_.iter().map(|s| (*s).to_owned()).collect()
}

const MESH_SETUP: &[&str] = &[
    "*nat",
    ":BERTH-POSTROUTING - [0:0]",
    ":BERTH-SERVICES - [0:0]",
    ":BERTH-INGRESS - [0:0]",
    ":BERTH-MESH-POSTROUTING - [0:0]",
    "-A BERTH-MESH-POSTROUTING -d 10.42.1.0/24 -m comment --comment \"berth:/mesh\" -j RETURN",
    "-A BERTH-MESH-POSTROUTING ! -d 10.42.0.0/16 -m comment --comment \"berth:/mesh\" -j RETURN",
    "-A BERTH-MESH-POSTROUTING -s 10.42.1.0/24 -m comment --comment \"berth:/mesh\" -j ACCEPT",
    "-A BERTH-MESH-POSTROUTING ! -s 10.42.0.0/16 -m comment --comment \"berth:/mesh\" -j SNAT --to-source 10.42.1.1",
    "-A BERTH-MESH-POSTROUTING -m conntrack --ctstate DNAT -m comment --comment \"berth:/mesh\" -j SNAT --to-source 10.42.1.1",
    "-I POSTROUTING 1 -m comment --comment \"berth:/jump\" -j BERTH-POSTROUTING",
    "-I PREROUTING 1 -m comment --comment \"berth:/mesh\" -j BERTH-SERVICES",
    "-I OUTPUT 1 -m comment --comment \"berth:/mesh\" -j BERTH-SERVICES",
    "-I BERTH-SERVICES 1 -m addrtype --dst-type LOCAL -m comment --comment \"berth:/mesh\" -j BERTH-INGRESS",
    "-I BERTH-POSTROUTING 1 -m comment --comment \"berth:/mesh\" -j BERTH-MESH-POSTROUTING",
    "COMMIT",
    "*filter",
    ":BERTH-FORWARD - [0:0]",
    ":BERTH-MESH-FORWARD - [0:0]",
    ":BERTH-NO-ENDPOINTS - [0:0]",
    "-A BERTH-MESH-FORWARD -m conntrack --ctstate NEW -m comment --comment \"berth:/mesh\" -j BERTH-NO-ENDPOINTS",
    "-A BERTH-MESH-FORWARD -s 10.42.0.0/16 -d 10.42.0.0/16 -m comment --comment \"berth:/mesh\" -j ACCEPT",
    "-A BERTH-MESH-FORWARD -m conntrack --ctstate DNAT --ctreplsrc 10.42.0.0/16 -m comment --comment \"berth:/mesh\" -j ACCEPT",
    "-I FORWARD 1 -m comment --comment \"berth:/jump\" -j BERTH-FORWARD",
    "-I BERTH-FORWARD 1 -m comment --comment \"berth:/mesh\" -j BERTH-MESH-FORWARD",
    "-I INPUT 1 -m conntrack --ctstate NEW -m comment --comment \"berth:/mesh\" -j BERTH-NO-ENDPOINTS",
    "-I OUTPUT 1 -m conntrack --ctstate NEW -m comment --comment \"berth:/mesh\" -j BERTH-NO-ENDPOINTS",
    "COMMIT",
];

#[test]
fn mesh_setup_text() {
    let batch = mesh::setup(&mesh_config(), &State::default()).unwrap();
    assert_eq!(lines(&batch), expect(MESH_SETUP));
}

#[test]
fn mesh_setup_is_idempotent_and_ordered_with_the_network() {
    let cfg = mesh_config();
    // Mesh first, then the network: the network appends, so the mesh's jump stays first.
    let m = mesh::setup(&cfg, &State::default()).unwrap();
    let mut s = model(&[&m]);
    assert!(mesh::setup(&cfg, &s).unwrap().is_empty());
    s.apply(&rules::setup(&net(), &s).unwrap().render())
        .unwrap();
    assert!(mesh::setup(&cfg, &s).unwrap().is_empty());
    let first = |s: &State, table, chain: &str| {
        s.rule_lines(table)
            .into_iter()
            .find(|l| l.starts_with(&format!("-A {chain} ")))
            .unwrap()
    };
    assert!(first(&s, Table::Nat, "BERTH-POSTROUTING").ends_with("-j BERTH-MESH-POSTROUTING"));
    assert!(first(&s, Table::Filter, "BERTH-FORWARD").ends_with("-j BERTH-MESH-FORWARD"));
    // The shared jumps are the network's own: one of each.
    let jumps = s
        .rule_lines(Table::Nat)
        .into_iter()
        .filter(|l| l.ends_with("-j BERTH-POSTROUTING"))
        .count();
    assert_eq!(jumps, 1);
    for hook in mesh::hook_rules()
        .into_iter()
        .filter(|h| h.spec.contains("berth:/jump"))
    {
        assert!(
            rules::network_rules(&net()).unwrap().contains(&hook),
            "{hook:?} differs from the network's"
        );
    }

    // Network first, then the mesh: the mesh inserts, so its jump is first too.
    let n = rules::setup(&net(), &State::default()).unwrap();
    let mut s2 = model(&[&n]);
    s2.apply(&mesh::setup(&cfg, &s2).unwrap().render()).unwrap();
    assert!(first(&s2, Table::Nat, "BERTH-POSTROUTING").ends_with("-j BERTH-MESH-POSTROUTING"));
    assert!(rules::setup(&net(), &s2).unwrap().is_empty());

    // Another node subnet: only the mesh's own chains are rewritten.
    let moved = MeshConfig {
        node_subnet: "10.42.7.0/24".parse().unwrap(),
        ..cfg.clone()
    };
    let text = mesh::setup(&moved, &s2).unwrap().render();
    assert!(text.contains(":BERTH-MESH-POSTROUTING - [0:0]"), "{text}");
    assert!(text.contains("SNAT --to-source 10.42.7.1"), "{text}");
    assert!(!text.contains("-I "), "{text}");
    s2.apply(&text).unwrap();
    assert!(mesh::setup(&moved, &s2).unwrap().is_empty());
    let nat = s2.rule_lines(Table::Nat);
    assert!(
        !nat.iter()
            .any(|l| l.contains("10.42.1.0/24") && l.contains("/mesh"))
    );
}

const WEB_SVC: &str = "BERTH-SVC-4B5E57F6EB2F42B9";
const SEP_1_2: &str = "BERTH-SEP-CAB332473E0D74AE";
const SEP_1_3: &str = "BERTH-SEP-16B871DA166C2929";
const SEP_2_2: &str = "BERTH-SEP-FEB10263B4B46D8B";

#[test]
fn chain_names_are_stable_and_short() {
    assert_eq!(mesh::svc_chain("web"), WEB_SVC);
    assert_eq!(mesh::sep_chain("web", ip("10.42.1.2")), SEP_1_2);
    let long = "x".repeat(200);
    assert!(mesh::svc_chain(&long).len() <= 28);
    assert!(mesh::sep_chain(&long, ip("255.255.255.255")).len() <= 28);
    assert_ne!(mesh::svc_chain("web"), mesh::svc_chain("web2"));
}

#[test]
fn probabilities_are_printed_as_iptables_save_prints_them() {
    assert_eq!(mesh::probability(2), "0.50000000000");
    assert_eq!(mesh::probability(3), "0.33333333349");
    assert_eq!(mesh::probability(10), "0.10000000009");
    for n in 1..2000 {
        // Read back as libxt_statistic does (lround(2^31 * p)): the stored value again.
        let p: f64 = mesh::probability(n).parse().unwrap();
        let stored = (2_147_483_648.0 * p).round();
        assert_eq!(stored, (2_147_483_648.0 / n as f64).round(), "{n}");
    }
}

#[test]
fn service_text() {
    let s = ServiceRules {
        ingress: vec![tcp(30080, 80), udp(30053, 53)],
        ..web(&["10.42.2.2", "10.42.1.3", "10.42.1.2"])
    };
    let plan = mesh::service_plan(&s).unwrap();
    let batch = mesh::change(&ServicePlan::empty("web"), &plan);
    let c = "-m comment --comment \"berth:/svc/web\"";
    let want: Vec<String> = [
        "*nat".to_owned(),
        format!(":{WEB_SVC} - [0:0]"),
        format!(":{SEP_1_2} - [0:0]"),
        format!(":{SEP_1_3} - [0:0]"),
        format!(":{SEP_2_2} - [0:0]"),
        format!(
            "-A {WEB_SVC} {c} -m statistic --mode random --probability 0.33333333349 -j {SEP_1_2}"
        ),
        format!(
            "-A {WEB_SVC} {c} -m statistic --mode random --probability 0.50000000000 -j {SEP_1_3}"
        ),
        format!("-A {WEB_SVC} {c} -j {SEP_2_2}"),
        format!("-A {SEP_1_2} -d 10.96.0.10/32 {c} -j DNAT --to-destination 10.42.1.2"),
        format!(
            "-A {SEP_1_2} -p tcp -m tcp --dport 30080 {c} -j DNAT --to-destination 10.42.1.2:80"
        ),
        format!(
            "-A {SEP_1_2} -p udp -m udp --dport 30053 {c} -j DNAT --to-destination 10.42.1.2:53"
        ),
        format!("-A {SEP_1_3} -d 10.96.0.10/32 {c} -j DNAT --to-destination 10.42.1.3"),
        format!(
            "-A {SEP_1_3} -p tcp -m tcp --dport 30080 {c} -j DNAT --to-destination 10.42.1.3:80"
        ),
        format!(
            "-A {SEP_1_3} -p udp -m udp --dport 30053 {c} -j DNAT --to-destination 10.42.1.3:53"
        ),
        format!("-A {SEP_2_2} -d 10.96.0.10/32 {c} -j DNAT --to-destination 10.42.2.2"),
        format!(
            "-A {SEP_2_2} -p tcp -m tcp --dport 30080 {c} -j DNAT --to-destination 10.42.2.2:80"
        ),
        format!(
            "-A {SEP_2_2} -p udp -m udp --dport 30053 {c} -j DNAT --to-destination 10.42.2.2:53"
        ),
        format!("-A BERTH-SERVICES -d 10.96.0.10/32 {c} -j {WEB_SVC}"),
        format!("-A BERTH-INGRESS -p tcp -m tcp --dport 30080 {c} -j {WEB_SVC}"),
        format!("-A BERTH-INGRESS -p udp -m udp --dport 30053 {c} -j {WEB_SVC}"),
        "COMMIT".to_owned(),
    ]
    .into();
    assert_eq!(lines(&batch), want);

    // Order and duplicates do not matter.
    let shuffled = ServiceRules {
        endpoints: vec![
            ip("10.42.1.2"),
            ip("10.42.2.2"),
            ip("10.42.1.3"),
            ip("10.42.1.2"),
        ],
        ingress: vec![udp(30053, 53), tcp(30080, 80), udp(30053, 53)],
        ..s.clone()
    };
    assert_eq!(mesh::service_plan(&shuffled).unwrap(), plan);
}

#[test]
fn service_without_endpoints_rejects() {
    let plan = mesh::service_plan(&web(&[])).unwrap();
    let batch = mesh::change(&ServicePlan::empty("web"), &plan);
    let c = "-m comment --comment \"berth:/svc/web\"";
    assert_eq!(
        lines(&batch),
        [
            "*nat".to_owned(),
            format!(":{WEB_SVC} - [0:0]"),
            format!("-A BERTH-SERVICES -d 10.96.0.10/32 {c} -j {WEB_SVC}"),
            format!("-A BERTH-INGRESS -p tcp -m tcp --dport 30080 {c} -j {WEB_SVC}"),
            "COMMIT".to_owned(),
            "*filter".to_owned(),
            format!(
                "-A BERTH-NO-ENDPOINTS -d 10.96.0.10/32 {c} -j REJECT --reject-with icmp-port-unreachable"
            ),
            format!(
                "-A BERTH-NO-ENDPOINTS -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 30080 {c} -j REJECT --reject-with icmp-port-unreachable"
            ),
            "COMMIT".to_owned(),
        ]
    );
    // No VIP and no ingress port: nothing to install.
    let bare = ServiceRules {
        vip: None,
        ingress: vec![],
        ..web(&["10.42.1.2"])
    };
    assert_eq!(
        mesh::service_plan(&bare).unwrap(),
        ServicePlan::empty("web")
    );
    // Ingress only: no VIP rules.
    let ingress_only = ServiceRules {
        vip: None,
        ..web(&["10.42.1.2"])
    };
    let text = mesh::change(
        &ServicePlan::empty("web"),
        &mesh::service_plan(&ingress_only).unwrap(),
    )
    .render();
    assert!(!text.contains("10.96.0.10"), "{text}");
    assert!(text.contains("--to-destination 10.42.1.2:80"), "{text}");
}

#[test]
fn invalid_services_and_configs_are_refused() {
    for name in ["", "a b", "x\"y", "a/b", &"x".repeat(201)] {
        let s = ServiceRules {
            name: name.to_owned(),
            ..web(&[])
        };
        assert!(
            matches!(
                mesh::service_plan(&s),
                Err(FirewallError::Invalid {
                    what: "service",
                    ..
                })
            ),
            "{name:?}"
        );
    }
    for ports in [
        vec![tcp(0, 80)],
        vec![tcp(80, 0)],
        vec![tcp(80, 80), tcp(80, 81)],
    ] {
        let s = ServiceRules {
            ingress: ports.clone(),
            ..web(&[])
        };
        assert!(mesh::service_plan(&s).is_err(), "{ports:?}");
    }
    // The same published port over TCP and UDP is fine.
    let both = ServiceRules {
        ingress: vec![tcp(53, 53), udp(53, 53)],
        ..web(&[])
    };
    mesh::service_plan(&both).unwrap();
    for (cluster, node) in [
        ("10.42.0.0/16", "10.43.1.0/24"),
        ("10.42.0.0/16", "10.42.1.0/31"),
    ] {
        let cfg = MeshConfig {
            cluster_range: cluster.parse().unwrap(),
            node_subnet: node.parse().unwrap(),
        };
        assert!(mesh::setup(&cfg, &State::default()).is_err(), "{node}");
    }
}

/// Sets up the network and the mesh in a fresh model.
fn set_up_model() -> State {
    let mut s = State::default();
    s.apply(&rules::setup(&net(), &s).unwrap().render())
        .unwrap();
    s.apply(&mesh::setup(&mesh_config(), &s).unwrap().render())
        .unwrap();
    s
}

#[test]
fn an_endpoint_change_touches_only_that_service() {
    let before = web(&["10.42.1.2", "10.42.1.3", "10.42.2.2"]);
    let after = web(&["10.42.1.2", "10.42.2.2", "10.42.2.9"]);
    let batch = mesh::change(
        &mesh::service_plan(&before).unwrap(),
        &mesh::service_plan(&after).unwrap(),
    );
    let text = batch.render();
    // The service chain and the new endpoint's chain are written; the gone endpoint's chain
    // is deleted; the unchanged endpoints' chains and the jumps are not touched.
    let new_sep = mesh::sep_chain("web", ip("10.42.2.9"));
    assert!(text.contains(&format!(":{WEB_SVC} - [0:0]")), "{text}");
    assert!(text.contains(&format!(":{new_sep} - [0:0]")), "{text}");
    assert!(
        text.contains(&format!("-F {SEP_1_3}\n-X {SEP_1_3}\n")),
        "{text}"
    );
    assert!(!text.contains(&format!(":{SEP_1_2}")), "{text}");
    assert!(!text.contains(&format!(":{SEP_2_2}")), "{text}");
    assert!(!text.contains("BERTH-SERVICES"), "{text}");
    assert!(!text.contains("*filter"), "{text}");
    assert_eq!(batch.ops.len(), 1 + 3 + 1 + 2 + 2, "{text}");
    // Nothing changed: nothing to do.
    let plan = mesh::service_plan(&after).unwrap();
    assert!(mesh::change(&plan, &plan).is_empty());
    // A VIP change: its jump is replaced and the endpoints' chains rewritten.
    let moved = ServiceRules {
        vip: Some(ip("10.96.0.11")),
        ..after.clone()
    };
    let text = mesh::change(&plan, &mesh::service_plan(&moved).unwrap()).render();
    assert!(
        text.contains("-D BERTH-SERVICES -d 10.96.0.10/32"),
        "{text}"
    );
    assert!(
        text.contains("-A BERTH-SERVICES -d 10.96.0.11/32"),
        "{text}"
    );
    assert!(!text.contains("BERTH-INGRESS"), "{text}");
    assert!(!text.contains(&format!(":{WEB_SVC}")), "{text}");
    // Losing every endpoint: REJECTs come, the endpoints' chains go, the jumps stay.
    let text = mesh::change(&plan, &mesh::service_plan(&web(&[])).unwrap()).render();
    assert!(
        text.contains("-A BERTH-NO-ENDPOINTS -d 10.96.0.10/32"),
        "{text}"
    );
    assert!(!text.contains("BERTH-SERVICES"), "{text}");
    assert_eq!(text.matches("-X BERTH-SEP-").count(), 3, "{text}");
}

/// A sequence of versions of two services, each applied fast and compared with the exact
/// path: the state after the fast change is what sync makes, and sync then has nothing to do.
#[test]
fn the_fast_change_is_the_exact_one() {
    let other = ServiceRules {
        name: "db".to_owned(),
        vip: Some(ip("10.96.0.20")),
        endpoints: vec![ip("10.42.3.4")],
        ingress: vec![],
    };
    let versions = [
        web(&["10.42.1.2"]),
        web(&["10.42.1.2", "10.42.1.3", "10.42.2.2"]),
        web(&["10.42.1.3", "10.42.2.2"]),
        web(&[]),
        ServiceRules {
            ingress: vec![tcp(30080, 8080), udp(30053, 53)],
            ..web(&["10.42.2.2"])
        },
        ServiceRules {
            vip: None,
            ..web(&["10.42.2.2", "10.42.1.9"])
        },
        ServiceRules {
            vip: None,
            ingress: vec![],
            ..web(&["10.42.2.2"])
        },
        ServiceRules {
            vip: Some(ip("10.96.0.99")),
            ..web(&["10.42.1.2"])
        },
    ];
    let mut s = set_up_model();
    let db = mesh::service_plan(&other).unwrap();
    s.apply(&mesh::change(&ServicePlan::empty("db"), &db).render())
        .unwrap();
    let with_db = s.clone();
    let mut prev = ServicePlan::empty("web");
    for v in &versions {
        let next = mesh::service_plan(v).unwrap();
        let fast = mesh::change(&prev, &next);
        let mut exact_state = s.clone();
        let exact = mesh::sync(std::slice::from_ref(&next), Scope::Service("web"), &s).unwrap();
        exact_state.apply(&exact.render()).unwrap();
        s.apply(&fast.render())
            .unwrap_or_else(|e| panic!("{v:?}: {e}\n{}", fast.render()));
        assert_eq!(canon(&s), canon(&exact_state), "{v:?}");
        assert!(
            mesh::sync(std::slice::from_ref(&next), Scope::Service("web"), &s)
                .unwrap()
                .is_empty(),
            "{v:?}"
        );
        prev = next;
    }
    // Removing it, fast or exactly, leaves the other service as it was.
    let mut exact_state = s.clone();
    exact_state
        .apply(&mesh::sync(&[], Scope::Service("web"), &s).unwrap().render())
        .unwrap();
    s.apply(&mesh::change(&prev, &ServicePlan::empty("web")).render())
        .unwrap();
    assert_eq!(canon(&s), canon(&exact_state));
    assert_eq!(canon(&s), canon(&with_db));
}

#[test]
fn sync_all_removes_what_is_not_listed() {
    let mut s = set_up_model();
    let a = web(&["10.42.1.2", "10.42.2.2"]);
    let b = ServiceRules {
        name: "db".to_owned(),
        vip: Some(ip("10.96.0.20")),
        endpoints: vec![],
        ingress: vec![tcp(30306, 3306)],
    };
    let plans = [
        mesh::service_plan(&a).unwrap(),
        mesh::service_plan(&b).unwrap(),
    ];
    s.apply(&mesh::sync(&plans, Scope::All, &s).unwrap().render())
        .unwrap();
    assert_eq!(
        mesh::services(&s).into_iter().collect::<Vec<_>>(),
        ["db", "web"]
    );
    assert!(mesh::sync(&plans, Scope::All, &s).unwrap().is_empty());
    // An orphaned chain (someone deleted the rule jumping to it) goes too.
    s.apply("*nat\n:BERTH-SEP-0000000000000000 - [0:0]\nCOMMIT\n")
        .unwrap();
    let only_web = &plans[..1];
    let batch = mesh::sync(only_web, Scope::All, &s).unwrap();
    let text = batch.render();
    assert!(text.contains("-X BERTH-SEP-0000000000000000"), "{text}");
    assert!(text.contains("-D BERTH-NO-ENDPOINTS"), "{text}");
    s.apply(&text).unwrap();
    assert_eq!(mesh::services(&s).into_iter().collect::<Vec<_>>(), ["web"]);
    assert!(mesh::sync(only_web, Scope::All, &s).unwrap().is_empty());
    // Before the mesh is set up, a plan cannot be synced.
    let err = mesh::sync(only_web, Scope::All, &State::default()).unwrap_err();
    assert!(matches!(err, FirewallError::NotSetUp { .. }), "{err}");
}

#[test]
fn fast_service_calls_skip_the_read_and_fall_back() {
    let fw = IptablesFirewall::with_runner(Counting::default());
    fw.setup_network(&net()).unwrap();
    fw.setup_mesh(&mesh_config()).unwrap();
    let set_up = fw.runner().inner.state();
    fw.runner().take();

    let v1 = web(&["10.42.1.2", "10.42.2.2"]);
    let v2 = web(&["10.42.1.3"]);
    fw.apply_service(None, &v1).unwrap();
    assert_eq!(fw.runner().take(), (0, 1));
    fw.apply_service(Some(&v1), &v2).unwrap();
    assert_eq!(fw.runner().take(), (0, 1));
    // Nothing changed: no call at all.
    fw.apply_service(Some(&v2), &v2).unwrap();
    assert_eq!(fw.runner().take(), (0, 0));
    let want = {
        let mut s = set_up.clone();
        let plan = mesh::service_plan(&v2).unwrap();
        s.apply(&mesh::change(&ServicePlan::empty("web"), &plan).render())
            .unwrap();
        s
    };
    assert_eq!(canon(&fw.runner().inner.state()), canon(&want));

    // The caller's `previous` is wrong (it says v1, v2 is there): refused, then exact.
    let v3 = web(&["10.42.2.2"]);
    fw.apply_service(Some(&v1), &v3).unwrap();
    assert_eq!(fw.runner().take(), (1, 2));
    let plan3 = mesh::service_plan(&v3).unwrap();
    let state = fw.runner().inner.state();
    assert!(
        mesh::sync(std::slice::from_ref(&plan3), Scope::Service("web"), &state)
            .unwrap()
            .is_empty()
    );
    // A rename: the old name's rules go.
    let renamed = ServiceRules {
        name: "www".to_owned(),
        ..v3.clone()
    };
    fw.apply_service(Some(&v1), &renamed).unwrap();
    assert_eq!(
        fw.services().unwrap().into_iter().collect::<Vec<_>>(),
        ["www"]
    );

    // Removal, fast; then again (nothing there): refused, then nothing to do.
    fw.runner().take();
    fw.remove_service(&renamed).unwrap();
    assert_eq!(fw.runner().take(), (0, 1));
    assert_eq!(canon(&fw.runner().inner.state()), canon(&set_up));
    fw.remove_service(&renamed).unwrap();
    assert_eq!(fw.runner().take(), (1, 1));
    assert_eq!(canon(&fw.runner().inner.state()), canon(&set_up));

    // The mesh torn down: the fast add is refused, the exact one says so.
    fw.teardown_mesh().unwrap();
    let err = fw.apply_service(None, &v1).unwrap_err();
    assert!(matches!(err, FirewallError::NotSetUp { .. }), "{err}");

    // Invalid input is refused before anything runs.
    fw.runner().take();
    let bad = ServiceRules {
        name: "a b".to_owned(),
        ..v1.clone()
    };
    assert!(fw.apply_service(None, &bad).is_err());
    assert!(fw.apply_service(Some(&bad), &v1).is_err());
    assert!(fw.remove_service(&bad).is_err());
    assert!(fw.remove_service_named("a b").is_err());
    assert!(fw.sync_services(&[v1.clone(), v1.clone()]).is_err());
    assert!(
        fw.setup_mesh(&MeshConfig {
            node_subnet: "10.9.0.0/24".parse().unwrap(),
            ..mesh_config()
        })
        .is_err()
    );
    assert_eq!(fw.runner().take(), (0, 0));
}

/// The conformance suite every [`ServiceFirewall`] back-end must pass (and which must not
/// disturb the [`Firewall`] side). `read` returns the current tables; `other` applies
/// `iptables-restore --noflush` input as another program would.
pub(super) fn mesh_conformance<F: Firewall + ServiceFirewall>(
    fw: &F,
    read_state: &dyn Fn() -> State,
    other: &dyn Fn(&str),
) {
    let read = || canon(&read_state());
    let cfg = mesh_config();
    fw.setup_network(&net()).unwrap();
    let network_only = read();

    // Setup, twice: the exact rules, once.
    fw.setup_mesh(&cfg).unwrap();
    let s1 = read();
    fw.setup_mesh(&cfg).unwrap();
    assert_eq!(read(), s1, "setup_mesh is not idempotent");
    assert!(
        mesh::setup(&cfg, &read_state()).unwrap().is_empty(),
        "setup text differs from iptables-save"
    );
    assert!(fw.services().unwrap().is_empty());

    // Services, fast: what the exact path computes, to the word (so the generated text is
    // what iptables-save prints).
    let v1 = web(&["10.42.1.2", "10.42.1.3", "10.42.2.2"]);
    let db = ServiceRules {
        name: "db".to_owned(),
        vip: Some(ip("10.96.0.20")),
        endpoints: vec![],
        ingress: vec![udp(30053, 53)],
    };
    fw.apply_service(None, &v1).unwrap();
    fw.apply_service(None, &db).unwrap();
    let plans = [
        mesh::service_plan(&v1).unwrap(),
        mesh::service_plan(&db).unwrap(),
    ];
    let s2 = read();
    let batch = mesh::sync(&plans, Scope::All, &read_state()).unwrap();
    assert!(
        batch.is_empty(),
        "installed rules differ from the plan: {}",
        batch.render()
    );
    assert_eq!(
        fw.services().unwrap().into_iter().collect::<Vec<_>>(),
        ["db", "web"]
    );
    // The container reconcile never sees service rules as owners.
    assert!(fw.owners(&net()).unwrap().is_empty());

    // Change and back: the same tables.
    let v2 = ServiceRules {
        vip: Some(ip("10.96.0.11")),
        ingress: vec![tcp(30080, 80), tcp(30443, 443)],
        ..web(&["10.42.1.3", "10.42.2.9"])
    };
    fw.apply_service(Some(&v1), &v2).unwrap();
    fw.apply_service(Some(&v2), &v1).unwrap();
    assert_eq!(read(), s2, "a change and its inverse");

    // Someone deleted web's VIP jump: the fast change (which deletes it) is refused, and the
    // exact path repairs it.
    let jump = plans[0].shared[0].clone();
    other(
        &Batch {
            ops: vec![rules::Op::Delete(jump)],
        }
        .render(),
    );
    fw.apply_service(Some(&v1), &v2).unwrap();
    fw.apply_service(Some(&v2), &v1).unwrap();
    assert_eq!(read(), s2, "the fallback did not repair");

    // Remove, fast and by name (twice): exactly the state without it.
    fw.remove_service(&db).unwrap();
    let without_db = read();
    fw.apply_service(None, &db).unwrap();
    fw.remove_service_named("db").unwrap();
    fw.remove_service_named("db").unwrap();
    assert_eq!(read(), without_db);
    assert_eq!(
        fw.services().unwrap().into_iter().collect::<Vec<_>>(),
        ["web"]
    );
    for table in [Table::Nat, Table::Filter] {
        assert!(
            !read_state()
                .rule_lines(table)
                .iter()
                .any(|l| l.contains("berth:/svc/db")),
            "db left rules"
        );
    }

    // Several services at once, in one batch: a change, an addition and a removal give what
    // the one-by-one calls give; an empty change list does nothing.
    fw.apply_services(&[
        ServiceChange {
            previous: Some(&v1),
            next: Some(&v2),
        },
        ServiceChange {
            previous: None,
            next: Some(&db),
        },
    ])
    .unwrap();
    let batched = read();
    fw.apply_services(&[
        ServiceChange {
            previous: Some(&v2),
            next: Some(&v1),
        },
        ServiceChange {
            previous: Some(&db),
            next: None,
        },
    ])
    .unwrap();
    assert_eq!(read(), without_db, "a batch and its inverse");
    fw.apply_service(Some(&v1), &v2).unwrap();
    fw.apply_service(None, &db).unwrap();
    assert_eq!(read(), batched, "a batch and the same calls one by one");
    fw.apply_services(&[]).unwrap();
    assert_eq!(read(), batched);
    // A wrong `previous` (web is v2, not v1) is refused as a whole: db's valid removal in
    // the same batch did not happen either.
    let err = fw.apply_services(&[
        ServiceChange {
            previous: Some(&db),
            next: None,
        },
        ServiceChange {
            previous: Some(&v1),
            next: Some(&v2),
        },
    ]);
    assert!(err.is_err(), "a batch with a wrong previous was accepted");
    assert_eq!(read(), batched, "a refused batch changed something");
    fw.apply_service(Some(&v2), &v1).unwrap();
    fw.remove_service(&db).unwrap();
    assert_eq!(read(), without_db);

    // Sync: the listed services exactly.
    fw.sync_services(std::slice::from_ref(&db)).unwrap();
    assert_eq!(
        fw.services().unwrap().into_iter().collect::<Vec<_>>(),
        ["db"]
    );
    fw.sync_services(&[v1.clone(), db.clone()]).unwrap();
    assert_eq!(read(), s2);
    fw.sync_services(&[]).unwrap();
    assert_eq!(read(), s1);

    // The network's own calls leave the mesh alone.
    fw.apply_service(None, &v1).unwrap();
    let s3 = read();
    fw.setup_network(&net()).unwrap();
    assert_eq!(read(), s3);

    // Teardown of the mesh, twice: the network's rules exactly as before the mesh.
    fw.teardown_mesh().unwrap();
    fw.teardown_mesh().unwrap();
    assert_eq!(read(), network_only);
    assert!(fw.services().unwrap().is_empty());

    // Set up again, then the whole teardown leaves nothing of berth's.
    fw.setup_mesh(&cfg).unwrap();
    fw.apply_service(None, &v1).unwrap();
    fw.teardown(&net()).unwrap();
    assert_eq!(berth_leftovers(&read_state()), Vec::<String>::new());
}

#[test]
fn mesh_conformance_in_memory() {
    let fw = IptablesFirewall::with_runner(MemoryRunner::default());
    let read = || fw.runner().state();
    let other = |input: &str| fw.runner().restore(input).unwrap();
    mesh_conformance(&fw, &read, &other);
}

#[test]
fn root_mesh_conformance_in_netns() {
    in_fresh_netns("root_mesh_conformance_in_netns", || {
        let fw = IptablesFirewall::new();
        let other = |input: &str| Commands::system().restore(input).unwrap();
        mesh_conformance(&fw, &read_real, &other);
    });
}
