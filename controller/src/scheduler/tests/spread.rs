//! The spread of a service's tasks over nodes and label values, and a large batch.

use super::*;

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
