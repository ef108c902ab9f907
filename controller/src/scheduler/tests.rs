//! Tests of the scheduler: each filter, the spread, preferences, reasons, and one large
//! batch.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::state::{
    Availability, DesiredState, Node, NodeResources, NodeStatus, PortSpec, Protocol, RestartPolicy,
    ServiceMode,
};

const GIB: u64 = 1 << 30;

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        hostname: format!("h-{id}"),
        address: format!("{id}:1"),
        labels: BTreeMap::new(),
        resources: NodeResources {
            cpus: 4.0,
            memory_bytes: 8 * GIB,
        },
        status: NodeStatus::Ready,
        availability: Availability::Active,
        last_seen: None,
        subnet: None,
        agent_version: None,
    }
}

fn labelled(id: &str, labels: &[(&str, &str)]) -> Node {
    Node {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..node(id)
    }
}

fn nodes(ids: &[&str]) -> Vec<Node> {
    ids.iter().map(|id| node(id)).collect()
}

fn spec(name: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        image: "img:1".into(),
        entrypoint: None,
        command: vec![],
        env: vec![],
        mode: ServiceMode::Replicated { replicas: 1 },
        ports: vec![],
        links: vec![],
        resources: Default::default(),
        constraints: vec![],
        labels: Default::default(),
        restart: RestartPolicy::default(),
        max_replicas_per_node: None,
        preferences: vec![],
    }
}

fn services(specs: impl IntoIterator<Item = ServiceSpec>) -> HashMap<String, ServiceSpec> {
    specs.into_iter().map(|s| (s.name.clone(), s)).collect()
}

fn task(id: &str, service: &str, node: Option<&str>, observed: ObservedState) -> Task {
    Task {
        id: id.into(),
        service: service.into(),
        slot: 1,
        spec_version: 1,
        node: node.map(Into::into),
        desired: DesiredState::Running,
        observed,
        address: None,
        exit_code: None,
        reason: None,
        created_at: 0,
        updated_at: 0,
    }
}

/// `n` pending tasks of `service`, ids `service.from` onwards.
fn pending(service: &str, from: usize, n: usize) -> Vec<Task> {
    (from..from + n)
        .map(|i| {
            task(
                &format!("{service}.{i}"),
                service,
                None,
                ObservedState::Pending,
            )
        })
        .collect()
}

/// Running tasks of `service`: `n` on each listed node.
fn running(service: &str, on: &[(&str, usize)]) -> Vec<Task> {
    on.iter()
        .flat_map(|&(node, n)| {
            (0..n).map(move |i| {
                task(
                    &format!("{service}@{node}.{i}"),
                    service,
                    Some(node),
                    ObservedState::Running,
                )
            })
        })
        .collect()
}

/// Assigned tasks per node.
fn per_node(ds: &[Decision]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in ds {
        if let Decision::Assign { node_id, .. } = d {
            *m.entry(node_id.clone()).or_insert(0) += 1;
        }
    }
    m
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|&(n, c)| (n.to_string(), c)).collect()
}

/// The reasons of the pending decisions.
fn reasons(ds: &[Decision]) -> Vec<String> {
    ds.iter()
        .filter_map(|d| match d {
            Decision::Pending { reason, .. } => Some(reason.to_string()),
            Decision::Assign { .. } => None,
        })
        .collect()
}

/// The decisions as tasks placed on their nodes (for a fresh scheduler to start from).
fn as_running(ds: &[Decision], service: &str) -> Vec<Task> {
    ds.iter()
        .filter_map(|d| match d {
            Decision::Assign { task_id, node_id } => Some(task(
                task_id,
                service,
                Some(node_id),
                ObservedState::Running,
            )),
            Decision::Pending { .. } => None,
        })
        .collect()
}

#[test]
fn six_replicas_spread_two_per_node_and_scaling_to_nine_three_per_node() {
    let ns = nodes(&["a", "b", "c"]);
    let svcs = services([spec("web")]);
    let mut s = Scheduler::new(&ns, &[], &svcs);
    let first = s.schedule(&pending("web", 0, 6));
    assert_eq!(per_node(&first), counts(&[("a", 2), ("b", 2), ("c", 2)]));
    // The same scheduler remembers its placements...
    let more = s.schedule(&pending("web", 6, 3));
    assert_eq!(per_node(&more), counts(&[("a", 1), ("b", 1), ("c", 1)]));
    assert_eq!(s.service_tasks_on("web", "a"), 3);
    assert_eq!(s.load("c"), Some(3));
    // ...and a new one reads them from the tasks.
    let placed = as_running(&first, "web");
    let mut fresh = Scheduler::new(&ns, &placed, &svcs);
    let more = fresh.schedule(&pending("web", 6, 3));
    assert_eq!(per_node(&more), counts(&[("a", 1), ("b", 1), ("c", 1)]));
}

#[test]
fn existing_tasks_of_the_service_are_evened_out_and_loaded_nodes_get_fewer() {
    let ns = nodes(&["a", "b", "c"]);
    let svcs = services([spec("web"), spec("db")]);
    // a already runs two of web's tasks: the next four go to b and c.
    let mut s = Scheduler::new(&ns, &running("web", &[("a", 2)]), &svcs);
    let d = s.schedule(&pending("web", 0, 4));
    assert_eq!(per_node(&d), counts(&[("b", 2), ("c", 2)]));
    // a runs three tasks of another service: of five new tasks it gets the fewest.
    let mut s = Scheduler::new(&ns, &running("db", &[("a", 3)]), &svcs);
    let d = s.schedule(&pending("web", 0, 5));
    assert_eq!(per_node(&d), counts(&[("a", 1), ("b", 2), ("c", 2)]));
}

#[test]
fn ties_go_to_the_least_loaded_node_then_the_smallest_id() {
    // Given out of order: the ids decide, not the input order.
    let ns = nodes(&["c", "b", "a"]);
    let svcs = services([spec("web"), spec("db")]);
    let mut s = Scheduler::new(&ns, &[], &svcs);
    assert_eq!(
        per_node(&s.schedule(&pending("web", 0, 1))),
        counts(&[("a", 1)])
    );
    let mut s = Scheduler::new(&ns, &running("db", &[("a", 2), ("b", 1)]), &svcs);
    assert_eq!(
        per_node(&s.schedule(&pending("web", 0, 1))),
        counts(&[("c", 1)])
    );
    // The same snapshot gives the same decisions.
    let run = || Scheduler::new(&ns, &[], &svcs).schedule(&pending("web", 0, 7));
    assert_eq!(run(), run());
}

#[test]
fn decisions_come_in_the_order_of_the_pending_tasks() {
    let ns = nodes(&["a", "b"]);
    let svcs = services([spec("web"), spec("db")]);
    let mut batch = pending("web", 0, 2);
    batch.insert(1, pending("db", 0, 1).remove(0));
    batch.push(task("x.0", "nope", None, ObservedState::Pending));
    let ids: Vec<String> = Scheduler::new(&ns, &[], &svcs)
        .schedule(&batch)
        .iter()
        .map(|d| d.task_id().to_owned())
        .collect();
    assert_eq!(ids, ["web.0", "db.0", "web.1", "x.0"]);
}

#[test]
fn constraints_on_labels_hostname_and_id() {
    let ns = vec![
        labelled("n1", &[("disk", "ssd")]),
        labelled("n2", &[("disk", "hdd")]),
        node("n3"),
    ];
    let place = |constraints: &[&str]| {
        let svcs = services([ServiceSpec {
            constraints: constraints.iter().map(|c| c.to_string()).collect(),
            ..spec("web")
        }]);
        per_node(&Scheduler::new(&ns, &[], &svcs).schedule(&pending("web", 0, 4)))
    };
    assert_eq!(place(&["node.labels.disk==ssd"]), counts(&[("n1", 4)]));
    // Values compare without regard to case, as in Swarm.
    assert_eq!(place(&["node.labels.disk==SSD"]), counts(&[("n1", 4)]));
    // A node without the label satisfies != only.
    assert_eq!(
        place(&["node.labels.disk!=ssd"]),
        counts(&[("n2", 2), ("n3", 2)])
    );
    assert_eq!(
        place(&["node.hostname!=h-n2"]),
        counts(&[("n1", 2), ("n3", 2)])
    );
    assert_eq!(place(&["node.id==n3"]), counts(&[("n3", 4)]));
    assert_eq!(
        place(&["node.role==worker", "node.id!=n1"]),
        counts(&[("n2", 2), ("n3", 2)])
    );
    let svcs = services([ServiceSpec {
        constraints: vec!["node.labels.disk==nvme".into()],
        ..spec("web")
    }]);
    let d = Scheduler::new(&ns, &[], &svcs).schedule(&pending("web", 0, 1));
    assert_eq!(
        reasons(&d),
        ["no suitable node (scheduling constraints not satisfied on 3 nodes)"]
    );
}

#[test]
fn max_replicas_per_node_caps_each_node() {
    let ns = nodes(&["a", "b", "c"]);
    let svcs = services([ServiceSpec {
        max_replicas_per_node: Some(2),
        ..spec("web")
    }]);
    // a already holds one.
    let mut s = Scheduler::new(&ns, &running("web", &[("a", 1)]), &svcs);
    let d = s.schedule(&pending("web", 0, 7));
    assert_eq!(per_node(&d), counts(&[("a", 1), ("b", 2), ("c", 2)]));
    assert_eq!(
        reasons(&d),
        vec!["no suitable node (max replicas per node reached on 3 nodes)"; 2]
    );
}

fn publishing(name: &str, port: u16, protocol: Protocol) -> ServiceSpec {
    ServiceSpec {
        ports: vec![PortSpec {
            target: 80,
            published: Some(port),
            protocol,
        }],
        ..spec(name)
    }
}

#[test]
fn a_published_port_in_use_on_a_node_keeps_tasks_off_it() {
    let ns = nodes(&["a", "b", "c"]);
    let svcs = services([
        publishing("web", 8080, Protocol::Tcp),
        publishing("other", 8080, Protocol::Tcp),
        publishing("dns", 8080, Protocol::Udp),
    ]);
    let mut s = Scheduler::new(&ns, &running("other", &[("a", 1)]), &svcs);
    // One task of web per node (its own tasks conflict too), and not on a.
    let d = s.schedule(&pending("web", 0, 3));
    assert_eq!(per_node(&d), counts(&[("b", 1), ("c", 1)]));
    assert_eq!(
        reasons(&d),
        ["no suitable node (host-mode port already in use on 3 nodes)"]
    );
    // The same number over UDP is another port.
    let d = s.schedule(&pending("dns", 0, 3));
    assert_eq!(per_node(&d), counts(&[("a", 1), ("b", 1), ("c", 1)]));
    // A task that ended frees its port.
    let ended = vec![task("o", "other", Some("a"), ObservedState::Failed)];
    let d = Scheduler::new(&ns, &ended, &svcs).schedule(&pending("web", 0, 3));
    assert_eq!(per_node(&d), counts(&[("a", 1), ("b", 1), ("c", 1)]));
}

#[test]
fn reservations_fill_nodes_exactly_and_count_running_tasks() {
    let mut small = node("a");
    small.resources = NodeResources {
        cpus: 1.0,
        memory_bytes: GIB,
    };
    let ns = vec![
        small.clone(),
        Node {
            id: "b".into(),
            ..small
        },
    ];
    let mut cpu = spec("cpu");
    cpu.resources.cpus_reserved = Some(0.1);
    let mut mem = spec("mem");
    mem.resources.memory_reserved = Some(GIB / 4);
    let svcs = services([cpu, mem]);
    // Ten reservations of 0.1 CPU fill one CPU exactly (no floating-point drift).
    let d = Scheduler::new(&ns, &[], &svcs).schedule(&pending("cpu", 0, 21));
    assert_eq!(per_node(&d), counts(&[("a", 10), ("b", 10)]));
    assert_eq!(
        reasons(&d),
        ["no suitable node (insufficient cpu on 2 nodes)"]
    );
    // Memory held by running tasks counts; by ended ones it does not.
    let mut held = running("mem", &[("a", 3)]);
    held.push(task("old", "mem", Some("b"), ObservedState::Complete));
    held.push(task("going", "mem", Some("b"), ObservedState::Starting));
    let d = Scheduler::new(&ns, &held, &svcs).schedule(&pending("mem", 0, 5));
    assert_eq!(per_node(&d), counts(&[("a", 1), ("b", 3)]));
    assert_eq!(
        reasons(&d),
        ["no suitable node (insufficient memory on 2 nodes)"]
    );
}

#[test]
fn down_unknown_drained_and_paused_nodes_take_nothing() {
    let mut ns = nodes(&["a", "b", "c", "d", "e"]);
    ns[0].status = NodeStatus::Down;
    ns[1].status = NodeStatus::Unknown;
    ns[2].availability = Availability::Drain;
    ns[3].availability = Availability::Pause;
    let svcs = services([spec("web")]);
    let d =
        Scheduler::new(&ns, &running("web", &[("a", 1)]), &svcs).schedule(&pending("web", 0, 3));
    assert_eq!(per_node(&d), counts(&[("e", 3)]));
    ns[4].availability = Availability::Drain;
    let d = Scheduler::new(&ns, &[], &svcs).schedule(&pending("web", 0, 1));
    assert_eq!(
        reasons(&d),
        ["no suitable node (node drained or paused on 3 nodes, node down or not ready on 2 nodes)"]
    );
    let d = Scheduler::new(&[], &[], &svcs).schedule(&pending("web", 0, 1));
    assert_eq!(reasons(&d), ["no suitable node (the cluster has no nodes)"]);
}

#[test]
fn an_unplaceable_task_says_why_node_by_node() {
    let mut ns = vec![
        labelled("a", &[("disk", "ssd")]),
        labelled("b", &[("disk", "ssd")]),
        labelled("c", &[("disk", "ssd")]),
        labelled("d", &[("disk", "ssd")]),
        node("e"),
        node("f"),
    ];
    for n in &mut ns[..3] {
        n.resources.memory_bytes = GIB;
    }
    let mut web = publishing("web", 80, Protocol::Tcp);
    web.constraints = vec!["node.labels.disk==ssd".into()];
    web.resources.memory_reserved = Some(2 * GIB);
    let svcs = services([web, publishing("lb", 80, Protocol::Tcp)]);
    let d = Scheduler::new(&ns, &running("lb", &[("d", 1)]), &svcs).schedule(&pending("web", 0, 1));
    let want = "no suitable node (insufficient memory on 3 nodes, scheduling constraints not \
                satisfied on 2 nodes, host-mode port already in use on 1 node)";
    assert_eq!(reasons(&d), [want]);
    let Decision::Pending { reason, .. } = &d[0] else {
        panic!("placed: {d:?}")
    };
    let Unplaced::NoSuitableNode(tally) = reason else {
        panic!("{reason:?}")
    };
    assert_eq!(
        (tally.count(Filter::Memory), tally.total()),
        (3, 6),
        "{tally:?}"
    );
    // A task of an unknown service.
    let d = Scheduler::new(&ns, &[], &svcs).schedule(&pending("gone", 0, 1));
    assert_eq!(reasons(&d), ["service \"gone\" does not exist"]);
}

fn zoned(ids_zones: &[(&str, Option<&str>)]) -> Vec<Node> {
    ids_zones
        .iter()
        .map(|&(id, zone)| match zone {
            Some(z) => labelled(id, &[("zone", z)]),
            None => node(id),
        })
        .collect()
}

fn spreading(prefs: &[&str]) -> HashMap<String, ServiceSpec> {
    services([ServiceSpec {
        preferences: prefs.iter().map(|p| p.to_string()).collect(),
        ..spec("web")
    }])
}

#[test]
fn preferences_even_out_over_zones_first_then_nodes() {
    let ns = zoned(&[
        ("a1", Some("a")),
        ("a2", Some("a")),
        ("a3", Some("a")),
        ("b1", Some("b")),
    ]);
    let svcs = spreading(&["spread: node.labels.zone"]);
    let d = Scheduler::new(&ns, &[], &svcs).schedule(&pending("web", 0, 4));
    assert_eq!(per_node(&d), counts(&[("a1", 1), ("a2", 1), ("b1", 2)]));
    // Eight: four per zone, zone a's evened out over its nodes.
    let d = Scheduler::new(&ns, &[], &svcs).schedule(&pending("web", 0, 8));
    assert_eq!(
        per_node(&d),
        counts(&[("a1", 2), ("a2", 1), ("a3", 1), ("b1", 4)])
    );
    // Existing tasks count: zone b already holds three.
    let d =
        Scheduler::new(&ns, &running("web", &[("b1", 3)]), &svcs).schedule(&pending("web", 0, 5));
    assert_eq!(
        per_node(&d),
        counts(&[("a1", 2), ("a2", 1), ("a3", 1), ("b1", 1)])
    );
}

#[test]
fn nodes_without_the_label_form_their_own_group() {
    let ns = zoned(&[
        ("a1", Some("a")),
        ("a2", Some("a")),
        ("b1", Some("b")),
        ("x1", None),
        ("x2", None),
    ]);
    let svcs = spreading(&["node.labels.zone"]);
    let d = Scheduler::new(&ns, &[], &svcs).schedule(&pending("web", 0, 6));
    assert_eq!(
        per_node(&d),
        counts(&[("a1", 1), ("a2", 1), ("b1", 2), ("x1", 1), ("x2", 1)])
    );
}

#[test]
fn a_full_zone_leaves_the_rest_to_the_others_and_nested_preferences_apply() {
    let ns = zoned(&[("a1", Some("a")), ("b1", Some("b")), ("b2", Some("b"))]);
    let svcs = services([ServiceSpec {
        preferences: vec!["spread: node.labels.zone".into()],
        max_replicas_per_node: Some(1),
        ..spec("web")
    }]);
    let d = Scheduler::new(&ns, &[], &svcs).schedule(&pending("web", 0, 4));
    assert_eq!(per_node(&d), counts(&[("a1", 1), ("b1", 1), ("b2", 1)]));
    assert_eq!(
        reasons(&d),
        ["no suitable node (max replicas per node reached on 3 nodes)"]
    );
    // zone, then rack inside each zone.
    let racked = |id: &str, z: &str, r: &str| labelled(id, &[("zone", z), ("rack", r)]);
    let ns = vec![
        racked("n1", "a", "r1"),
        racked("n2", "a", "r1"),
        racked("n3", "a", "r1"),
        racked("n4", "a", "r2"),
        racked("n5", "b", "r1"),
    ];
    let svcs = spreading(&["spread: node.labels.zone", "spread: node.labels.rack"]);
    let d = Scheduler::new(&ns, &[], &svcs).schedule(&pending("web", 0, 4));
    assert_eq!(per_node(&d), counts(&[("n1", 1), ("n4", 1), ("n5", 2)]));
}

/// A deterministic pseudo-random sequence (no dependency needed for tests).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn a_preference_over_a_label_no_node_has_places_as_no_preference_does() {
    // Both pickers order nodes by the same key: with one group they must agree exactly,
    // whatever the loads, counts, capacities and constraints.
    let mut rng = Lcg(7);
    let ns: Vec<Node> = (0..60)
        .map(|i| {
            let mut n = labelled(
                &format!("n{i:02}"),
                &[("disk", if i % 3 == 0 { "hdd" } else { "ssd" })],
            );
            n.resources.memory_bytes = (1 + rng.below(8)) * GIB;
            n
        })
        .collect();
    let mut existing = Vec::new();
    for i in 0..200 {
        let svc = ["web", "db", "cache"][rng.below(3) as usize];
        let n = format!("n{:02}", rng.below(60));
        existing.push(task(
            &format!("e{i}"),
            svc,
            Some(&n),
            ObservedState::Running,
        ));
    }
    let make = |prefs: Vec<String>| {
        let mut web = spec("web");
        web.resources.memory_reserved = Some(GIB / 2);
        web.constraints = vec!["node.labels.disk==ssd".into()];
        web.max_replicas_per_node = Some(5);
        web.preferences = prefs.clone();
        let mut db = spec("db");
        db.preferences = prefs;
        services([web, db, spec("cache")])
    };
    let batch: Vec<Task> = pending("web", 0, 300)
        .into_iter()
        .chain(pending("db", 0, 100))
        .collect();
    let flat_svcs = make(vec![]);
    let tree_svcs = make(vec!["spread: node.labels.nowhere".into()]);
    let flat = Scheduler::new(&ns, &existing, &flat_svcs).schedule(&batch);
    let tree = Scheduler::new(&ns, &existing, &tree_svcs).schedule(&batch);
    assert_eq!(flat, tree);
    assert!(!reasons(&flat).is_empty() && !per_node(&flat).is_empty());
}

#[test]
fn a_task_that_names_its_node_is_checked_against_that_node_only() {
    let mut ns = nodes(&["a", "b", "c"]);
    ns[1].status = NodeStatus::Down;
    let mut agent = publishing("agent", 9100, Protocol::Tcp);
    agent.mode = ServiceMode::Global;
    let svcs = services([agent]);
    let batch: Vec<Task> = ["a", "b", "c", "zz"]
        .iter()
        .map(|n| {
            task(
                &format!("agent.{n}"),
                "agent",
                Some(n),
                ObservedState::Pending,
            )
        })
        .collect();
    // Every task of the state may be given to `new`: the pending ones hold nothing yet.
    let mut all = running("agent", &[("c", 1)]);
    all.extend(batch.iter().cloned());
    let mut s = Scheduler::new(&ns, &all, &svcs);
    let d = s.schedule(&batch);
    assert_eq!(per_node(&d), counts(&[("a", 1)]));
    assert_eq!(
        reasons(&d),
        [
            "no suitable node (node down or not ready on 1 node)",
            "no suitable node (host-mode port already in use on 1 node)",
            "node \"zz\" is not in the cluster",
        ]
    );
}

#[test]
fn a_large_batch_is_placed_evenly() {
    // 1,000 nodes; 20 services of 900 tasks and 2,000 services of one task: 20,000 tasks.
    let ids: Vec<String> = (0..1000).map(|i| format!("node-{i:04}")).collect();
    let ns: Vec<Node> = ids.iter().map(|id| node(id)).collect();
    let mut specs: Vec<ServiceSpec> = (0..20).map(|i| spec(&format!("big{i}"))).collect();
    specs.extend((0..2000).map(|i| spec(&format!("small{i}"))));
    let svcs = services(specs);
    let mut batch = Vec::with_capacity(20_000);
    for i in 0..20 {
        batch.extend(pending(&format!("big{i}"), 0, 900));
    }
    for i in 0..2000 {
        batch.extend(pending(&format!("small{i}"), 0, 1));
    }
    let start = std::time::Instant::now();
    let mut s = Scheduler::new(&ns, &[], &svcs);
    let d = s.schedule(&batch);
    let elapsed = start.elapsed();
    eprintln!(
        "placed {} tasks on {} nodes in {elapsed:?}",
        d.len(),
        ns.len()
    );
    assert!(reasons(&d).is_empty());
    // Every node ends with exactly 20 tasks; no big service has two on a node.
    let loads = per_node(&d);
    assert_eq!(loads.len(), 1000);
    assert!(loads.values().all(|&n| n == 20), "{loads:?}");
    for i in 0..20 {
        let name = format!("big{i}");
        assert!(ids.iter().all(|id| s.service_tasks_on(&name, id) <= 1));
    }
}
