//! Each filter, and the reason a task that fits nowhere gives.

use super::*;

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
            mode: PortMode::Host,
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
