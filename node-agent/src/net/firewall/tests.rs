//! Tests: the exact generated text (pure), a conformance suite run against the in-memory
//! model and, as root, against real iptables in a throwaway network namespace per test.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use super::iptables::Commands;
use super::rules::{self, Batch, State, Table};
use super::{
    Firewall, FirewallError, IptablesFirewall, MemoryRunner, NetworkRules, Proto, Publish, Runner,
};

pub(super) fn net() -> NetworkRules {
    NetworkRules {
        bridge: "berth0".to_owned(),
        subnet: "10.88.0.1/16".parse().unwrap(),
    }
}

fn tcp_on(host_ip: Option<Ipv4Addr>) -> Publish {
    Publish {
        host_ip,
        host_port: 8080,
        container_ip: Ipv4Addr::new(10, 88, 0, 2),
        container_port: 80,
        proto: Proto::Tcp,
    }
}

fn udp() -> Publish {
    Publish {
        host_ip: None,
        host_port: 5353,
        container_ip: Ipv4Addr::new(10, 88, 0, 2),
        container_port: 53,
        proto: Proto::Udp,
    }
}

fn lines(batch: &Batch) -> Vec<String> {
    batch.render().lines().map(str::to_owned).collect()
}

fn expect(lines_: &[&str]) -> Vec<String> {
    lines_.iter().map(|s| (*s).to_owned()).collect()
}

const SETUP: &[&str] = &[
    "*nat",
    ":BERTH-DNAT - [0:0]",
    ":BERTH-POSTROUTING - [0:0]",
    "-I PREROUTING 1 -m addrtype --dst-type LOCAL -m comment --comment \"berth:/jump\" -j BERTH-DNAT",
    "-I OUTPUT 1 -m addrtype --dst-type LOCAL -m comment --comment \"berth:/jump\" -j BERTH-DNAT",
    "-I POSTROUTING 1 -m comment --comment \"berth:/jump\" -j BERTH-POSTROUTING",
    "-A BERTH-POSTROUTING -s 10.88.0.0/16 ! -o berth0 -m comment --comment \"berth:/net/berth0\" -j MASQUERADE",
    "-A BERTH-POSTROUTING -s 10.88.0.0/16 -o berth0 -m conntrack --ctstate DNAT -m comment --comment \"berth:/net/berth0\" -j MASQUERADE",
    "-A BERTH-POSTROUTING -s 127.0.0.0/8 -o berth0 -m comment --comment \"berth:/net/berth0\" -j MASQUERADE",
    "COMMIT",
    "*filter",
    ":BERTH-FORWARD - [0:0]",
    "-I FORWARD 1 -m comment --comment \"berth:/jump\" -j BERTH-FORWARD",
    "-A BERTH-FORWARD -o berth0 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"berth:/net/berth0\" -j ACCEPT",
    "-A BERTH-FORWARD -o berth0 -m conntrack --ctstate DNAT -m comment --comment \"berth:/net/berth0\" -j ACCEPT",
    "-A BERTH-FORWARD -i berth0 -m comment --comment \"berth:/net/berth0\" -j ACCEPT",
    "COMMIT",
];

/// The state after applying `batches` to an empty model.
pub(super) fn model(batches: &[&Batch]) -> State {
    let mut s = State::default();
    for b in batches {
        s.apply(&b.render()).unwrap();
    }
    s
}

#[test]
fn setup_text() {
    let batch = rules::setup(&net(), &State::default()).unwrap();
    assert_eq!(lines(&batch), expect(SETUP));
}

#[test]
fn setup_is_empty_when_done() {
    let setup = rules::setup(&net(), &State::default()).unwrap();
    let done = model(&[&setup]);
    assert!(rules::setup(&net(), &done).unwrap().is_empty());
    // A second network adds only its own rules, no chain and no jump.
    let other = NetworkRules {
        bridge: "berth1".to_owned(),
        subnet: "10.89.0.0/16".parse().unwrap(),
    };
    let text = rules::setup(&other, &done).unwrap().render();
    assert!(!text.contains(":BERTH"), "{text}");
    assert!(!text.contains("/jump"), "{text}");
    assert_eq!(text.matches("berth:/net/berth1").count(), 6, "{text}");
}

#[test]
fn tcp_with_host_ip_text() {
    let p = tcp_on(Some(Ipv4Addr::new(192, 168, 1, 5)));
    let batch = rules::add(&net(), "c1", &[p], &State::default()).unwrap();
    assert_eq!(
        lines(&batch),
        expect(&[
            "*nat",
            "-A BERTH-DNAT -d 192.168.1.5/32 -p tcp -m tcp --dport 8080 -m comment --comment \"berth:c1\" -j DNAT --to-destination 10.88.0.2:80",
            "COMMIT",
        ])
    );
}

#[test]
fn tcp_without_host_ip_text() {
    let batch = rules::add(&net(), "c1", &[tcp_on(None)], &State::default()).unwrap();
    assert_eq!(
        lines(&batch),
        expect(&[
            "*nat",
            "-A BERTH-DNAT -p tcp -m tcp --dport 8080 -m comment --comment \"berth:c1\" -j DNAT --to-destination 10.88.0.2:80",
            "COMMIT",
        ])
    );
}

#[test]
fn udp_text() {
    let batch = rules::add(&net(), "c1", &[udp()], &State::default()).unwrap();
    assert_eq!(
        lines(&batch),
        expect(&[
            "*nat",
            "-A BERTH-DNAT -p udp -m udp --dport 5353 -m comment --comment \"berth:c1\" -j DNAT --to-destination 10.88.0.2:53",
            "COMMIT",
        ])
    );
}

#[test]
fn remove_is_the_exact_inverse_of_add() {
    let ports = [
        tcp_on(Some(Ipv4Addr::new(192, 168, 1, 5))),
        tcp_on(None),
        udp(),
    ];
    let setup = rules::setup(&net(), &State::default()).unwrap();
    let add = rules::add(&net(), "c1", &ports, &model(&[&setup])).unwrap();
    let added = model(&[&setup, &add]);
    let remove = rules::remove(&net(), "c1", &ports, &added).unwrap();

    // Same sections; within each, the added lines reversed, `-A` turned into `-D`.
    let mut inverse = Vec::new();
    let mut section = Vec::new();
    for line in lines(&add) {
        if let Some(rule) = line.strip_prefix("-A ") {
            section.push(format!("-D {rule}"));
        } else if line == "COMMIT" {
            inverse.extend(section.drain(..).rev());
            inverse.push(line);
        } else {
            inverse.push(line);
        }
    }
    assert_eq!(lines(&remove), inverse);
    assert_eq!(remove.ops.len(), 3);

    let mut after = added.clone();
    after.apply(&remove.render()).unwrap();
    assert_eq!(after, model(&[&setup]));
    // Removing what is gone is nothing to do.
    assert!(
        rules::remove(&net(), "c1", &ports, &after)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn fast_batches_text() {
    let ports = [tcp_on(Some(Ipv4Addr::new(192, 168, 1, 5))), udp(), udp()];
    let add = rules::add_new(&net(), "c1", &ports).unwrap();
    assert_eq!(
        lines(&add),
        expect(&[
            "*nat",
            "-A BERTH-DNAT -d 192.168.1.5/32 -p tcp -m tcp --dport 8080 -m comment --comment \"berth:c1\" -j DNAT --to-destination 10.88.0.2:80",
            "-A BERTH-DNAT -p udp -m udp --dport 5353 -m comment --comment \"berth:c1\" -j DNAT --to-destination 10.88.0.2:53",
            "COMMIT",
        ])
    );
    let remove = rules::remove_known(&net(), "c1", &ports).unwrap();
    assert_eq!(
        lines(&remove),
        expect(&[
            "*nat",
            "-D BERTH-DNAT -p udp -m udp --dport 5353 -m comment --comment \"berth:c1\" -j DNAT --to-destination 10.88.0.2:53",
            "-D BERTH-DNAT -d 192.168.1.5/32 -p tcp -m tcp --dport 8080 -m comment --comment \"berth:c1\" -j DNAT --to-destination 10.88.0.2:80",
            "COMMIT",
        ])
    );
    // Against the state without the owner's rules, the fast add is what the exact add does,
    // and against the state with them the fast removal is what the exact removal does.
    let setup = rules::setup(&net(), &State::default()).unwrap();
    let before = model(&[&setup]);
    assert_eq!(add, rules::add(&net(), "c1", &ports, &before).unwrap());
    let after = model(&[&setup, &add]);
    assert_eq!(remove, rules::remove(&net(), "c1", &ports, &after).unwrap());
    assert!(rules::add_new(&net(), "c1", &[]).unwrap().is_empty());
    assert!(rules::add_new(&net(), "/jump", &ports).is_err());
    assert!(rules::remove_known(&net(), "a b", &ports).is_err());
}

#[test]
fn fast_batches_fail_as_iptables_does() {
    // Before setup: no chain to append to. Without the rules: nothing to delete. Either
    // way nothing is changed.
    let add = rules::add_new(&net(), "c1", &[udp()]).unwrap();
    let mut empty = State::default();
    assert!(empty.apply(&add.render()).is_err());
    assert_eq!(empty, State::default());
    let setup = rules::setup(&net(), &State::default()).unwrap();
    let mut s = model(&[&setup]);
    let remove = rules::remove_known(&net(), "c1", &[tcp_on(None), udp()]).unwrap();
    s.apply(&rules::add_new(&net(), "c1", &[udp()]).unwrap().render())
        .unwrap();
    let with_udp = s.clone();
    assert!(s.apply(&remove.render()).is_err());
    assert_eq!(s, with_udp);
}

const STALE: &str = "# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:BERTH-DNAT - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment \"berth:/jump\" -j BERTH-DNAT
-A PREROUTING -p tcp -m comment --comment berth:dead -j DNAT --to-destination 10.1.0.1:1
-A BERTH-DNAT -p tcp -m tcp --dport 1 -m comment --comment \"berth:dead\" -j DNAT --to-destination 10.88.0.2:80
-A BERTH-DNAT -p tcp -m tcp --dport 2 -m comment --comment \"berth:live\" -j DNAT --to-destination 10.88.0.3:80
-A BERTH-DNAT -p udp -m udp --dport 3 -m comment --comment \"berth:dead\" -j DNAT --to-destination 10.88.0.2:53
-A BERTH-DNAT -p tcp -m tcp --dport 1 -m comment --comment \"berth:dead\" -j DNAT --to-destination 10.88.0.2:80
-A BERTH-DNAT -p tcp -m tcp --dport 4 -m comment --comment \"berth:dead2\" -j DNAT --to-destination 10.88.0.4:80
-A BERTH-DNAT -p tcp -m tcp --dport 5 -m comment --comment \"berth:deadx\" -j DNAT --to-destination 10.88.0.5:80
COMMIT
*filter
:FORWARD ACCEPT [0:0]
:BERTH-FORWARD - [0:0]
-A FORWARD -m comment --comment \"berth:/jump\" -j BERTH-FORWARD
-A FORWARD -m comment --comment dead -j ACCEPT
-A BERTH-FORWARD -d 10.88.0.2/32 -o berth0 -p tcp -m tcp --dport 80 -m comment --comment \"berth:dead\" -j ACCEPT
-A BERTH-FORWARD -d 10.88.0.4/32 -o berth0 -p tcp -m tcp --dport 80 -m comment --comment \"berth:dead2\" -j ACCEPT
COMMIT
";

#[test]
fn remove_owners_text() {
    let state = State::parse(STALE);
    let owners = BTreeSet::from(["dead".to_owned(), "dead2".to_owned(), "gone".to_owned()]);
    let batch = rules::remove_owners(&state, &owners).unwrap();
    // Every rule of those owners, in any chain (a duplicate twice, an old-style filter
    // ACCEPT too), each table's in reverse order; `live`, `deadx`, the jumps and the
    // foreign rule without the `berth:` prefix stay.
    assert_eq!(
        lines(&batch),
        expect(&[
            "*nat",
            "-D BERTH-DNAT -p tcp -m tcp --dport 4 -m comment --comment \"berth:dead2\" -j DNAT --to-destination 10.88.0.4:80",
            "-D BERTH-DNAT -p tcp -m tcp --dport 1 -m comment --comment \"berth:dead\" -j DNAT --to-destination 10.88.0.2:80",
            "-D BERTH-DNAT -p udp -m udp --dport 3 -m comment --comment \"berth:dead\" -j DNAT --to-destination 10.88.0.2:53",
            "-D BERTH-DNAT -p tcp -m tcp --dport 1 -m comment --comment \"berth:dead\" -j DNAT --to-destination 10.88.0.2:80",
            "-D PREROUTING -p tcp -m comment --comment berth:dead -j DNAT --to-destination 10.1.0.1:1",
            "COMMIT",
            "*filter",
            "-D BERTH-FORWARD -d 10.88.0.4/32 -o berth0 -p tcp -m tcp --dport 80 -m comment --comment \"berth:dead2\" -j ACCEPT",
            "-D BERTH-FORWARD -d 10.88.0.2/32 -o berth0 -p tcp -m tcp --dport 80 -m comment --comment \"berth:dead\" -j ACCEPT",
            "COMMIT",
        ])
    );
    let mut after = state.clone();
    after.apply(&batch.render()).unwrap();
    assert_eq!(
        rules::owners(&after),
        BTreeSet::from(["deadx".to_owned(), "live".to_owned()])
    );
    assert_eq!(after.rule_lines(Table::Filter).len(), 2);
    // Nothing of those owners left: nothing to do.
    assert!(rules::remove_owners(&after, &owners).unwrap().is_empty());
    assert!(
        rules::remove_owners(&state, &BTreeSet::new())
            .unwrap()
            .is_empty()
    );
    // berth's own rules cannot be removed this way.
    for reserved in ["/jump", "/net/berth0", ""] {
        let err = rules::remove_owners(&state, &BTreeSet::from([reserved.to_owned()]));
        assert!(
            matches!(err, Err(FirewallError::Invalid { what: "owner", .. })),
            "{reserved:?}: {err:?}"
        );
    }
}

/// A [`MemoryRunner`] that counts the calls, to check which path a call took.
#[derive(Debug, Default)]
pub(super) struct Counting {
    pub(super) inner: MemoryRunner,
    saves: std::sync::atomic::AtomicUsize,
    restores: std::sync::atomic::AtomicUsize,
}

impl Counting {
    /// (saves, restores) since the last call, then zero.
    pub(super) fn take(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.saves.swap(0, Relaxed), self.restores.swap(0, Relaxed))
    }
}

impl Runner for Counting {
    fn save(&self) -> Result<String, FirewallError> {
        self.saves
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.save()
    }

    fn restore(&self, input: &str) -> Result<(), FirewallError> {
        self.restores
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.restore(input)
    }
}

#[test]
fn fast_paths_skip_the_read_and_fall_back() {
    let fw = IptablesFirewall::with_runner(Counting::default());
    let ports = [tcp_on(None), udp()];
    let setup = rules::setup(&net(), &State::default()).unwrap();
    let add = rules::add_new(&net(), "c1", &ports).unwrap();

    // Never set up: the fast add is refused, the fallback sets up and adds, in one batch.
    fw.add_new_ports(&net(), "c1", &ports).unwrap();
    assert_eq!(fw.runner().take(), (1, 2));
    assert_eq!(fw.runner().inner.state(), model(&[&setup, &add]));

    // The fast paths: one restore, no save.
    fw.remove_known_ports(&net(), "c1", &ports).unwrap();
    assert_eq!(fw.runner().take(), (0, 1));
    assert_eq!(fw.runner().inner.state(), model(&[&setup]));
    fw.add_new_ports(&net(), "c1", &ports).unwrap();
    assert_eq!(fw.runner().take(), (0, 1));
    assert_eq!(fw.runner().inner.state(), model(&[&setup, &add]));

    // Someone deleted one of the rules: the fast removal is refused and changes nothing,
    // the fallback removes what is left.
    let one = rules::remove_known(&net(), "c1", &ports[..1]).unwrap();
    fw.runner().inner.restore(&one.render()).unwrap();
    fw.remove_known_ports(&net(), "c1", &ports).unwrap();
    assert_eq!(fw.runner().take(), (1, 2));
    assert_eq!(fw.runner().inner.state(), model(&[&setup]));

    // Someone removed berth's chains: the fast add sets the network up again.
    fw.teardown(&net()).unwrap();
    fw.add_new_ports(&net(), "c1", &ports).unwrap();
    assert_eq!(fw.runner().inner.state(), model(&[&setup, &add]));

    // Invalid input is refused before anything runs.
    fw.runner().take();
    assert!(fw.add_new_ports(&net(), "a b", &ports).is_err());
    assert!(fw.remove_known_ports(&net(), "a b", &ports).is_err());
    assert_eq!(fw.runner().take(), (0, 0));
}

#[test]
fn remove_owners_through_the_back_end() {
    let fw = IptablesFirewall::with_runner(MemoryRunner::default());
    fw.runner().restore(STALE).unwrap();
    let owners = BTreeSet::from(["dead".to_owned(), "dead2".to_owned()]);
    fw.remove_owners(&net(), &owners).unwrap();
    assert_eq!(
        fw.owners(&net()).unwrap(),
        BTreeSet::from(["deadx".to_owned(), "live".to_owned()])
    );
    fw.remove_owners(&net(), &owners).unwrap();
}

#[test]
fn invalid_input_is_refused() {
    for owner in ["", "a b", "x\"y", "/jump", "a/b"] {
        let err = rules::add(&net(), owner, &[udp()], &State::default()).unwrap_err();
        assert!(
            matches!(err, FirewallError::Invalid { what: "owner", .. }),
            "{owner:?}: {err}"
        );
    }
    let long_bridge = NetworkRules {
        bridge: "a-very-long-bridge".to_owned(),
        ..net()
    };
    assert!(rules::setup(&long_bridge, &State::default()).is_err());
    let zero = Publish {
        host_port: 0,
        ..udp()
    };
    assert!(rules::add(&net(), "c1", &[zero], &State::default()).is_err());
}

#[test]
fn parse_and_owners_of_real_save_output() {
    let save = "# Generated by iptables-save v1.8.9 (nf_tables)\n\
        *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [12:345]\n:BERTH-FORWARD - [0:0]\n\
        -A FORWARD -m comment --comment \"berth:/jump\" -j BERTH-FORWARD\n\
        -A FORWARD -m comment --comment other -j ACCEPT\n\
        -A BERTH-FORWARD -d 10.88.0.2/32 -o berth0 -p tcp -m tcp --dport 80 -m comment --comment \"berth:c1\" -j ACCEPT\n\
        COMMIT\n*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m comment --comment \"berth:ignored\" -j ACCEPT\nCOMMIT\n\
        *nat\n:BERTH-DNAT - [0:0]\n\
        -A BERTH-DNAT -p udp -m udp --dport 5353 -m comment --comment berth:c2 -j DNAT --to-destination 10.88.0.3:53\n\
        COMMIT\n";
    let state = State::parse(save);
    assert!(state.has_chain(Table::Filter, "BERTH-FORWARD"));
    assert!(state.has_chain(Table::Nat, "BERTH-DNAT"));
    let owners: Vec<String> = rules::owners(&state).into_iter().collect();
    assert_eq!(owners, ["c1", "c2"]);
    // The unquoted comment compares equal to berth's quoted rendering.
    let p = Publish {
        container_ip: Ipv4Addr::new(10, 88, 0, 3),
        ..udp()
    };
    assert!(rules::remove(&net(), "c2", &[p], &state).unwrap().ops.len() == 1);
    // Teardown: berth's jump, then berth's chains; the foreign rule stays.
    let down = rules::teardown(&state).render();
    assert_eq!(
        down.lines().collect::<Vec<_>>(),
        [
            "*nat",
            "-F BERTH-DNAT",
            "-X BERTH-DNAT",
            "COMMIT",
            "*filter",
            "-D FORWARD -m comment --comment \"berth:/jump\" -j BERTH-FORWARD",
            "-F BERTH-FORWARD",
            "-X BERTH-FORWARD",
            "COMMIT",
        ]
    );
}

/// The rules berth owns in `state`: any `BERTH-` chain, or any rule naming one or marked
/// with a `berth:` comment.
pub(super) fn berth_leftovers(state: &State) -> Vec<String> {
    let mut out = Vec::new();
    for table in [Table::Nat, Table::Filter] {
        out.extend(
            state
                .chains(table)
                .into_iter()
                .filter(|c| c.starts_with("BERTH")),
        );
        out.extend(
            state
                .rule_lines(table)
                .into_iter()
                .filter(|l| l.contains("BERTH") || l.contains("berth:")),
        );
    }
    out
}

const FOREIGN: &str = "-A FORWARD -m comment --comment other -j ACCEPT";

/// The conformance suite every [`Firewall`] back-end must pass. `read` returns the current
/// tables; `other` applies `iptables-restore --noflush` input as another program would (to
/// add [`FOREIGN`], a rule that is not berth's, or to delete one of berth's by hand).
fn conformance(fw: &dyn Firewall, read: &dyn Fn() -> State, other: &dyn Fn(&str)) {
    let net = net();
    let ports = [
        tcp_on(Some(Ipv4Addr::new(192, 168, 1, 5))),
        tcp_on(None),
        udp(),
    ];

    // Ports before setup: refused, nothing changed.
    other(&format!("*filter\n{FOREIGN}\nCOMMIT\n"));
    let s0 = read();
    assert!(matches!(
        fw.add_ports(&net, "c1", &ports),
        Err(FirewallError::NotSetUp { .. })
    ));
    assert_eq!(read(), s0);

    // Setup, twice: every network rule, once; the FORWARD jump above the foreign rule.
    fw.setup_network(&net).unwrap();
    let s1 = read();
    fw.setup_network(&net).unwrap();
    assert_eq!(read(), s1, "setup is not idempotent");
    for r in rules::network_rules(&net).unwrap() {
        let line = format!("-A {} {}", r.chain, r.spec);
        let have = s1.rule_lines(r.table);
        assert_eq!(have.iter().filter(|l| **l == line).count(), 1, "{line}");
    }
    let forward = s1.rule_lines(Table::Filter);
    let forward: Vec<&String> = forward
        .iter()
        .filter(|l| l.starts_with("-A FORWARD "))
        .collect();
    assert!(forward[0].ends_with("-j BERTH-FORWARD"), "{forward:?}");
    assert!(forward.iter().any(|l| *l == FOREIGN), "{forward:?}");
    assert!(fw.owners(&net).unwrap().is_empty());

    // Add, twice: the exact lines, once.
    fw.add_ports(&net, "c1", &ports).unwrap();
    let s2 = read();
    fw.add_ports(&net, "c1", &ports).unwrap();
    assert_eq!(read(), s2, "add is not idempotent");
    for r in rules::port_rules(&net, "c1", &ports).unwrap() {
        let line = format!("-A {} {}", r.chain, r.spec);
        assert!(s2.rule_lines(r.table).contains(&line), "missing {line}");
    }
    assert_eq!(fw.owners(&net).unwrap(), BTreeSet::from(["c1".to_owned()]));

    // A second owner's rules are its own: removing them leaves c1's alone.
    let other_port = Publish {
        container_ip: Ipv4Addr::new(10, 88, 0, 9),
        ..udp()
    };
    fw.add_ports(&net, "c2", &[other_port]).unwrap();
    assert_eq!(
        fw.owners(&net).unwrap(),
        BTreeSet::from(["c1".to_owned(), "c2".to_owned()])
    );
    fw.remove_ports(&net, "c2", &[other_port]).unwrap();
    assert_eq!(read(), s2);

    // Remove, twice: exactly the state before the add.
    fw.remove_ports(&net, "c1", &ports).unwrap();
    assert_eq!(read(), s1, "remove is not the inverse of add");
    fw.remove_ports(&net, "c1", &ports).unwrap();
    assert_eq!(read(), s1);
    assert!(fw.owners(&net).unwrap().is_empty());

    // The fast paths: the same rules as the exact ones, and back.
    fw.add_new_ports(&net, "c1", &ports).unwrap();
    assert_eq!(read(), s2, "the fast add differs from the exact one");
    fw.remove_known_ports(&net, "c1", &ports).unwrap();
    assert_eq!(
        read(),
        s1,
        "the fast removal is not the inverse of the fast add"
    );

    // A rule deleted by hand: the fast removal falls back and removes the rest.
    fw.add_new_ports(&net, "c1", &ports).unwrap();
    let gone = rules::remove_known(&net, "c1", &ports[1..2]).unwrap();
    other(&gone.render());
    fw.remove_known_ports(&net, "c1", &ports).unwrap();
    assert_eq!(read(), s1);

    // Stale owners: exactly their rules go.
    fw.add_new_ports(&net, "c1", &ports).unwrap();
    fw.add_new_ports(&net, "c2", &[other_port]).unwrap();
    fw.add_new_ports(&net, "c3", &ports[..1]).unwrap();
    let stale = BTreeSet::from(["c1".to_owned(), "c3".to_owned(), "c9".to_owned()]);
    fw.remove_owners(&net, &stale).unwrap();
    assert_eq!(fw.owners(&net).unwrap(), BTreeSet::from(["c2".to_owned()]));
    fw.remove_known_ports(&net, "c2", &[other_port]).unwrap();
    assert_eq!(read(), s1);

    // The network re-made with another subnet: its old rules go (twice is harmless), the
    // jumps and the port rules stay, and setting it up again gives the new subnet's rules.
    fw.add_new_ports(&net, "c1", &ports).unwrap();
    fw.remove_network(&net).unwrap();
    fw.remove_network(&net).unwrap();
    let s_removed = read();
    let own = format!("berth:/net/{}", net.bridge);
    for t in [Table::Nat, Table::Filter] {
        assert!(
            !s_removed.rule_lines(t).iter().any(|l| l.contains(&own)),
            "{:?}",
            s_removed.rule_lines(t)
        );
    }
    assert!(
        s_removed
            .rule_lines(Table::Filter)
            .iter()
            .any(|l| l.contains("berth:/jump"))
    );
    assert_eq!(fw.owners(&net).unwrap(), BTreeSet::from(["c1".to_owned()]));
    let moved = NetworkRules {
        subnet: "10.90.0.0/24".parse().unwrap(),
        ..net.clone()
    };
    fw.setup_network(&moved).unwrap();
    let nat = read().rule_lines(Table::Nat);
    assert!(nat.iter().any(|l| l.contains("-s 10.90.0.0/24")), "{nat:?}");
    assert!(
        !nat.iter().any(|l| l.contains("-s 10.88.0.0/16")),
        "{nat:?}"
    );
    fw.remove_network(&moved).unwrap();
    fw.setup_network(&net).unwrap();
    fw.remove_known_ports(&net, "c1", &ports).unwrap();
    assert_eq!(read(), s1);

    // Teardown, twice: nothing of berth's left, the foreign rule kept.
    fw.add_ports(&net, "c3", &ports[..1]).unwrap();
    fw.teardown(&net).unwrap();
    fw.teardown(&net).unwrap();
    let s3 = read();
    assert_eq!(berth_leftovers(&s3), Vec::<String>::new());
    assert!(s3.rule_lines(Table::Filter).contains(&FOREIGN.to_owned()));
    assert!(fw.owners(&net).unwrap().is_empty());

    // The fast add after berth's chains are gone: it sets the network up again.
    fw.add_new_ports(&net, "c1", &ports).unwrap();
    assert_eq!(read(), s2);
    fw.teardown(&net).unwrap();
    assert_eq!(berth_leftovers(&read()), Vec::<String>::new());
}

#[test]
fn conformance_in_memory() {
    let fw = IptablesFirewall::with_runner(MemoryRunner::default());
    let read = || fw.runner().state();
    let other = |input: &str| fw.runner().restore(input).unwrap();
    conformance(&fw, &read, &other);
}

/// A runner that refuses some batches, to test that teardown keeps going.
#[derive(Debug, Default)]
struct Refusing {
    inner: MemoryRunner,
    /// Refuses any input containing this.
    refuse: &'static str,
}

impl Runner for Refusing {
    fn save(&self) -> Result<String, FirewallError> {
        self.inner.save()
    }

    fn restore(&self, input: &str) -> Result<(), FirewallError> {
        if input.contains(self.refuse) {
            return Err(FirewallError::Command {
                command: "refusing".to_owned(),
                status: "exit status: 1".to_owned(),
                stderr: format!("refused {:?}", self.refuse),
            });
        }
        self.inner.restore(input)
    }
}

#[test]
fn teardown_keeps_going_past_a_failing_step() {
    // The whole batch fails (it holds both -D and -X), every single step works: clean, Ok.
    let fw = IptablesFirewall::with_runner(Refusing {
        refuse: "-X BERTH-DNAT\n-X",
        ..Refusing::default()
    });
    fw.setup_network(&net()).unwrap();
    fw.add_ports(&net(), "c1", &[udp()]).unwrap();
    fw.teardown(&net()).unwrap();
    assert_eq!(
        berth_leftovers(&fw.runner().inner.state()),
        Vec::<String>::new()
    );

    // One step always fails: everything else is still removed, and the error names it.
    let fw = IptablesFirewall::with_runner(Refusing {
        refuse: "-X BERTH-DNAT",
        ..Refusing::default()
    });
    fw.setup_network(&net()).unwrap();
    fw.add_ports(&net(), "c1", &[udp()]).unwrap();
    let err = fw.teardown(&net()).unwrap_err();
    let FirewallError::Teardown { errors } = &err else {
        panic!("{err}");
    };
    assert_eq!(errors.len(), 1, "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
    let left = berth_leftovers(&fw.runner().inner.state());
    assert_eq!(left, ["BERTH-DNAT"]);
}

/// The host's whole `iptables-save` output, without comments and counters.
pub(super) fn host_tables() -> Result<Vec<String>, FirewallError> {
    let out = Command::new(super::iptables::find("iptables-save"))
        .output()
        .map_err(|source| FirewallError::Spawn {
            command: "iptables-save".to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(FirewallError::Command {
            command: "iptables-save".to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.rfind(" [") {
            Some(i) if l.starts_with(':') => l[..i].to_owned(),
            _ => l.to_owned(),
        })
        .collect())
}

/// Runs `body` as root in a network namespace of its own: on a new thread (namespaces are
/// per thread, and the iptables processes it starts inherit the thread's), so the host's
/// tables are never touched, which is checked. Skips, loudly, when it cannot.
pub(super) fn in_fresh_netns(test: &str, body: impl FnOnce() + Send + 'static) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: {test}: needs root");
        return;
    }
    let before = match host_tables() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIPPED: {test}: no usable iptables: {e}");
            return;
        }
    };
    let outcome = std::thread::spawn(move || -> Result<(), String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        body();
        Ok(())
    })
    .join();
    let after = host_tables().unwrap();
    match outcome {
        Err(panic) => std::panic::resume_unwind(panic),
        Ok(Err(why)) => eprintln!("SKIPPED: {test}: {why}"),
        Ok(Ok(())) => {}
    }
    assert_eq!(before, after, "{test} changed the host's tables");
}

fn iptables(args: &[&str]) {
    let out = Command::new(super::iptables::find("iptables"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "iptables {args:?}: {out:?}");
}

pub(super) fn read_real() -> State {
    State::parse(&Commands::system().save().unwrap())
}

#[test]
fn root_conformance_in_netns() {
    in_fresh_netns("root_conformance_in_netns", || {
        let fw = IptablesFirewall::new();
        let other = |input: &str| Commands::system().restore(input).unwrap();
        conformance(&fw, &read_real, &other);
    });
}

#[test]
fn root_coexists_with_docker_like_rules_in_netns() {
    in_fresh_netns("root_coexists_with_docker_like_rules_in_netns", || {
        // What Docker leaves: FORWARD policy DROP, its own chain jumped to first.
        iptables(&["-P", "FORWARD", "DROP"]);
        iptables(&["-N", "DOCKER-USER"]);
        iptables(&["-A", "FORWARD", "-j", "DOCKER-USER"]);
        iptables(&["-t", "nat", "-N", "DOCKER"]);
        iptables(&[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            "DOCKER",
        ]);
        let fw = IptablesFirewall::new();
        fw.setup_network(&net()).unwrap();
        fw.add_ports(&net(), "c1", &[tcp_on(None)]).unwrap();
        let s = read_real();
        let filter = s.rule_lines(Table::Filter);
        assert_eq!(
            filter[0],
            "-A FORWARD -m comment --comment \"berth:/jump\" -j BERTH-FORWARD"
        );
        assert_eq!(filter[1], "-A FORWARD -j DOCKER-USER");
        let nat = s.rule_lines(Table::Nat);
        assert!(nat[0].ends_with("-j BERTH-DNAT"), "{nat:?}");
        assert_eq!(
            fw.owners(&net()).unwrap(),
            BTreeSet::from(["c1".to_owned()])
        );

        fw.teardown(&net()).unwrap();
        let s = read_real();
        assert_eq!(berth_leftovers(&s), Vec::<String>::new());
        assert_eq!(s.rule_lines(Table::Filter), ["-A FORWARD -j DOCKER-USER"]);
        assert!(s.chains(Table::Nat).contains(&"DOCKER".to_owned()));
        let save = Commands::system().save().unwrap();
        assert!(save.contains(":FORWARD DROP"), "{save}");
    });
}

/// The `n`-th of many mappings, each of its own owner `o<n>`.
fn mapping(n: u16) -> Publish {
    Publish {
        host_ip: None,
        host_port: 10_000 + n,
        container_ip: Ipv4Addr::new(10, 88, (n / 250) as u8 + 1, (n % 250) as u8 + 2),
        container_port: 80,
        proto: Proto::Tcp,
    }
}

pub(super) fn p50(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

#[test]
fn root_fast_path_with_1000_mappings_in_netns() {
    in_fresh_netns("root_fast_path_with_1000_mappings_in_netns", || {
        let fw = IptablesFirewall::new();
        let net = net();
        fw.setup_network(&net).unwrap();
        let mut many = Batch::default();
        for n in 0..1000 {
            let owner = format!("o{n}");
            many.ops
                .extend(rules::add_new(&net, &owner, &[mapping(n)]).unwrap().ops);
        }
        Commands::system().restore(&many.render()).unwrap();
        let before = host_tables().unwrap();
        assert_eq!(fw.owners(&net).unwrap().len(), 1000);

        // Add then remove one container's ports, fast: exactly the tables before.
        let ports = [tcp_on(None), udp()];
        let (mut adds, mut removes) = (Vec::new(), Vec::new());
        for _ in 0..30 {
            let t = std::time::Instant::now();
            fw.add_new_ports(&net, "c1", &ports).unwrap();
            adds.push(t.elapsed().as_secs_f64() * 1e3);
            let t = std::time::Instant::now();
            fw.remove_known_ports(&net, "c1", &ports).unwrap();
            removes.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(host_tables().unwrap(), before);
        }
        let t = std::time::Instant::now();
        fw.add_ports(&net, "c1", &ports).unwrap();
        let exact_add = t.elapsed().as_secs_f64() * 1e3;
        let t = std::time::Instant::now();
        fw.remove_ports(&net, "c1", &ports).unwrap();
        let exact_remove = t.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "with 1,000 mappings: add_new_ports p50 {:.1} ms, remove_known_ports p50 {:.1} ms; \
             add_ports {exact_add:.1} ms, remove_ports {exact_remove:.1} ms",
            p50(adds),
            p50(removes)
        );
        assert_eq!(host_tables().unwrap(), before);

        // A rule deleted by hand: the fast removal falls back, and still succeeds.
        fw.add_new_ports(&net, "c1", &ports).unwrap();
        let gone = rules::remove_known(&net, "c1", &ports[..1]).unwrap();
        Commands::system().restore(&gone.render()).unwrap();
        fw.remove_known_ports(&net, "c1", &ports).unwrap();
        assert_eq!(host_tables().unwrap(), before);

        // Stale owners: exactly their rules go, one batch.
        let stale = BTreeSet::from(["o0".to_owned(), "o500".to_owned(), "o999".to_owned()]);
        let t = std::time::Instant::now();
        fw.remove_owners(&net, &stale).unwrap();
        eprintln!(
            "remove_owners of 3 among 1,000: {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        let after = host_tables().unwrap();
        let marks: Vec<String> = stale
            .iter()
            .map(|o| format!("--comment \"berth:{o}\" "))
            .collect();
        let expected: Vec<String> = before
            .iter()
            .filter(|l| !marks.iter().any(|m| l.contains(m.as_str())))
            .cloned()
            .collect();
        assert_eq!(before.len() - expected.len(), 3);
        assert_eq!(after, expected);
        let left = fw.owners(&net).unwrap();
        assert_eq!(left.len(), 997);
        assert!(stale.iter().all(|o| !left.contains(o)));
    });
}
