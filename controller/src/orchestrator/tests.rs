//! Tests of the orchestrator: passes as pure code over a view, and the leader's loop on an
//! in-process member with agents registered over the real Dispatcher (mutual TLS).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use berth_proto::v1;
use berth_proto::v1::dispatcher_client::DispatcherClient;

use super::pass::{self, Pass, Write};
use super::view::View;
use crate::api::control_tests::{admin, apply_request, spec};
use crate::pki::{ClusterCa, Role, client_config};
use crate::raft::{Change, Command, Expect, Op};
use crate::state::{
    Availability, DesiredState, Node, NodeResources, NodeStatus, ObservedState, RestartPolicy,
    Service, ServiceMode, ServiceSpec, Task, keys,
};
use crate::test_support::{
    TestMember, WAIT, cert_for, initialize, start_orchestrating_member, wait_for_leader,
};
use crate::transport::MtlsConnector;

const MS: i128 = 1_000_000;

fn service(name: &str, mode: ServiceMode) -> Service {
    Service {
        spec: ServiceSpec {
            name: name.into(),
            image: "busybox:1".into(),
            entrypoint: None,
            command: vec![],
            env: vec![],
            mode,
            ports: vec![],
            links: vec![],
            resources: Default::default(),
            constraints: vec![],
            labels: Default::default(),
            restart: RestartPolicy::default(),
            max_replicas_per_node: None,
            preferences: vec![],
            healthcheck: None,
            update_config: None,
            rollback_config: None,
            force_update: 0,
        },
        version: 1,
        created_at: 0,
        updated_at: 0,
        history: vec![],
        vip: None,
        ingress: Vec::new(),
        update: None,
    }
}

fn node(id: &str, status: NodeStatus) -> Node {
    Node {
        id: id.into(),
        hostname: format!("host-{id}"),
        address: "192.0.2.1".into(),
        labels: BTreeMap::from([(
            "disk".to_owned(),
            if id == "n1" { "ssd" } else { "hdd" }.to_owned(),
        )]),
        resources: NodeResources {
            cpus: 2.0,
            memory_bytes: 1 << 30,
        },
        status,
        availability: Availability::Active,
        last_seen: None,
        subnet: None,
        agent_version: None,
    }
}

fn record<T: serde::Serialize>(key: String, version: u64, v: &T) -> (String, u64, Vec<u8>) {
    (key, version, serde_json::to_vec(v).unwrap())
}

fn view(services: &[Service], tasks: &[Task], nodes: &[Node]) -> View {
    View::load(
        services
            .iter()
            .map(|s| record(keys::service(&s.spec.name), 1, s))
            .collect(),
        tasks
            .iter()
            .map(|t| record(keys::task(&t.id), 2, t))
            .collect(),
        nodes
            .iter()
            .map(|n| record(keys::node(&n.id), 3, n))
            .collect(),
    )
}

fn run(v: &mut View, now: i128) -> Pass {
    let dirty = v.take_dirty();
    let mut n = 0;
    pass::run(v, &dirty, now, &mut || {
        n += 1;
        format!("new{n}")
    })
}

fn created(p: &Pass) -> Vec<&Task> {
    p.writes
        .iter()
        .filter_map(|w| match w {
            Write::Create(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn updated(p: &Pass) -> Vec<&Task> {
    p.writes
        .iter()
        .filter_map(|w| match w {
            Write::Update { task, .. } => Some(task),
            _ => None,
        })
        .collect()
}

fn per_node(tasks: &[&Task]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for t in tasks {
        *out.entry(t.node.clone().unwrap_or_default()).or_default() += 1;
    }
    out
}

fn three_nodes() -> Vec<Node> {
    ["n1", "n2", "n3"]
        .iter()
        .map(|id| node(id, NodeStatus::Ready))
        .collect()
}

#[test]
fn a_pass_creates_tasks_already_placed_and_spread() {
    let web = service("web", ServiceMode::Replicated { replicas: 6 });
    let mut v = view(&[web], &[], &three_nodes());
    let p = run(&mut v, 10);
    let new = created(&p);
    assert_eq!(new.len(), 6);
    assert!(new.iter().all(|t| t.observed == ObservedState::Assigned
        && t.desired == DesiredState::Running
        && t.created_at == 10));
    let slots: BTreeSet<u32> = new.iter().map(|t| t.slot).collect();
    assert_eq!(slots, (1..=6).collect());
    assert_eq!(
        per_node(&new).into_values().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    assert_eq!((p.placed, p.unplaced), (6, 0));
    // Nothing is dirty any more: the next pass writes nothing.
    assert!(run(&mut v, 11).writes.is_empty());
}

#[test]
fn a_lost_node_orphans_its_tasks_and_they_are_replaced_elsewhere() {
    let web = service("web", ServiceMode::Replicated { replicas: 3 });
    let mut nodes = three_nodes();
    let task = |id: &str, slot, node: &str| Task {
        id: id.into(),
        service: "web".into(),
        slot,
        spec_version: 1,
        node: Some(node.into()),
        desired: DesiredState::Running,
        observed: ObservedState::Running,
        address: None,
        exit_code: None,
        reason: None,
        created_at: 0,
        updated_at: 0,
        health: None,
    };
    let tasks = [task("a", 1, "n1"), task("b", 2, "n2"), task("c", 3, "n3")];
    nodes[1].status = NodeStatus::Down;
    let mut v = view(&[web], &tasks, &nodes);
    let p = run(&mut v, 50);
    let orphaned = updated(&p);
    assert_eq!(orphaned.len(), 1);
    assert_eq!(orphaned[0].id, "b");
    assert_eq!(
        (orphaned[0].observed, orphaned[0].desired),
        (ObservedState::Orphaned, DesiredState::Shutdown)
    );
    assert_eq!(
        orphaned[0].reason.as_deref(),
        Some("its node host-n2 is down")
    );
    let new = created(&p);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].slot, 2);
    assert_ne!(new[0].node.as_deref(), Some("n2"));
}

#[test]
fn a_removed_nodes_tasks_are_orphaned_and_replaced_like_a_down_nodes() {
    let web = service("web", ServiceMode::Replicated { replicas: 2 });
    let task = |id: &str, slot, node: &str| Task {
        id: id.into(),
        service: "web".into(),
        slot,
        spec_version: 1,
        node: Some(node.into()),
        desired: DesiredState::Running,
        observed: ObservedState::Running,
        address: None,
        exit_code: None,
        reason: None,
        created_at: 0,
        updated_at: 0,
        health: None,
    };
    let mut v = view(
        &[web],
        &[task("a", 1, "n1"), task("b", 2, "n2")],
        &three_nodes(),
    );
    assert!(run(&mut v, 10).writes.is_empty());
    // `RemoveNode` deletes the record: the feed's delete wakes every service.
    v.apply(&Change {
        key: keys::node("n2"),
        index: 60,
        value: None,
        existed: true,
    });
    let p = run(&mut v, 70);
    let orphaned = updated(&p);
    assert_eq!(orphaned.len(), 1);
    assert_eq!(
        (
            orphaned[0].id.as_str(),
            orphaned[0].observed,
            orphaned[0].desired
        ),
        ("b", ObservedState::Orphaned, DesiredState::Shutdown)
    );
    assert_eq!(
        orphaned[0].reason.as_deref(),
        Some("its node n2 left the cluster")
    );
    let new = created(&p);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].slot, 2);
    assert!(
        matches!(new[0].node.as_deref(), Some("n1" | "n3")),
        "{new:?}"
    );
}

#[test]
fn unplaceable_tasks_stay_pending_with_the_reason_and_restarts_wait_for_their_delay() {
    let mut pinned = service("db", ServiceMode::Replicated { replicas: 1 });
    pinned.spec.constraints = vec!["node.labels.disk==nvme".into()];
    let mut v = view(&[pinned], &[], &three_nodes());
    let p = run(&mut v, 1);
    let new = created(&p);
    assert_eq!(new[0].observed, ObservedState::Pending);
    assert_eq!(new[0].node, None);
    let reason = new[0].reason.as_deref().unwrap();
    assert!(reason.contains("no suitable node"), "{reason}");
    assert!(reason.contains("constraints"), "{reason}");
    assert_eq!(p.unplaced, 1);

    let mut web = service("web", ServiceMode::Replicated { replicas: 1 });
    web.spec.restart.delay_ms = 100;
    let failed = Task {
        id: "f".into(),
        service: "web".into(),
        slot: 1,
        spec_version: 1,
        node: Some("n1".into()),
        desired: DesiredState::Running,
        observed: ObservedState::Failed,
        address: None,
        exit_code: Some(2),
        reason: None,
        created_at: 0,
        updated_at: 10 * MS,
        health: None,
    };
    let mut v = view(&[web], &[failed], &three_nodes());
    let p = run(&mut v, 20 * MS);
    assert!(p.writes.is_empty(), "{:?}", p.writes);
    assert_eq!(p.due, vec![(110 * MS, "web".to_owned())]);
    v.dirty.insert("web".into());
    assert_eq!(created(&run(&mut v, 110 * MS)).len(), 1);
}

#[test]
fn global_services_follow_nodes_and_removed_services_lose_their_tasks() {
    let agent = service("agent", ServiceMode::Global);
    let mut v = view(&[agent], &[], &three_nodes());
    let p = run(&mut v, 1);
    let new = created(&p);
    assert_eq!(per_node(&new).len(), 3);
    assert!(
        new.iter()
            .all(|t| t.slot == 0 && t.observed == ObservedState::Assigned)
    );

    // A node joins: only it gets a task. The change comes through the feed.
    let written: Vec<Task> = new.into_iter().cloned().collect();
    for (i, t) in written.iter().enumerate() {
        v.apply(&Change {
            key: keys::task(&t.id),
            index: 10 + i as u64,
            value: Some(serde_json::to_vec(t).unwrap()),
            existed: false,
        });
    }
    assert!(run(&mut v, 2).writes.is_empty());
    v.apply(&Change {
        key: keys::node("n4"),
        index: 20,
        value: Some(serde_json::to_vec(&node("n4", NodeStatus::Ready)).unwrap()),
        existed: false,
    });
    let p = run(&mut v, 3);
    let new = created(&p);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].node.as_deref(), Some("n4"));

    // The service is removed: its tasks are removed.
    v.apply(&Change {
        key: keys::service("agent"),
        index: 30,
        value: None,
        existed: true,
    });
    let p = run(&mut v, 4);
    assert_eq!(p.writes.len(), 3);
    assert!(p.writes.iter().all(|w| matches!(w, Write::Delete { .. })));
}

#[test]
fn a_last_seen_update_does_not_wake_every_service() {
    let web = service("web", ServiceMode::Replicated { replicas: 1 });
    let nodes = three_nodes();
    let mut v = view(&[web], &[], &nodes);
    let _ = v.take_dirty();
    let mut seen = nodes[0].clone();
    seen.last_seen = Some(99);
    v.apply(&Change {
        key: keys::node("n1"),
        index: 50,
        value: Some(serde_json::to_vec(&seen).unwrap()),
        existed: true,
    });
    assert!(v.take_dirty().is_empty());
    seen.status = NodeStatus::Down;
    v.apply(&Change {
        key: keys::node("n1"),
        index: 51,
        value: Some(serde_json::to_vec(&seen).unwrap()),
        existed: true,
    });
    assert_eq!(v.take_dirty(), BTreeSet::from(["web".to_owned()]));
}

// ---- The loop on a member, with agents over the real Dispatcher ----

type Dispatcher = DispatcherClient<tonic::transport::Channel>;

/// An agent registered with `m` that heartbeats until dropped.
struct FakeAgent {
    heartbeats: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}

async fn put<T: serde::Serialize>(m: &TestMember, key: &str, value: &T) {
    let op = Op::Put {
        key: key.into(),
        value: serde_json::to_vec(value).unwrap(),
        expect: Expect::Any,
    };
    m.raft.client_write(Command::Batch(vec![op])).await.unwrap();
}

async fn agent(ca: &ClusterCa, m: &TestMember, id: &str, labels: &[(&str, &str)]) -> FakeAgent {
    let mut record = node(id, NodeStatus::Unknown);
    record.labels.clear();
    put(m, &keys::node(id), &record).await;
    let cert = cert_for(ca, Role::Agent, id);
    let channel = MtlsConnector::new(client_config(ca.cert_pem(), &cert).unwrap())
        .channel(&m.addr.to_string())
        .unwrap();
    let mut c = Dispatcher::new(channel);
    let session = c
        .register(v1::RegisterRequest {
            hostname: id.into(),
            address: "127.0.0.1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            cpus: 2.0,
            memory_bytes: 4 << 30,
            agent_version: "test".into(),
            running_tasks: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .session_id;
    let heartbeats = tokio::spawn(async move {
        loop {
            let _ = c
                .heartbeat(v1::HeartbeatRequest {
                    session_id: session.clone(),
                })
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    FakeAgent { heartbeats }
}

fn tasks(m: &TestMember) -> Vec<Task> {
    m.reader
        .list(keys::TASKS)
        .unwrap()
        .into_iter()
        .map(|(_, _, b)| serde_json::from_slice(&b).unwrap())
        .collect()
}

async fn wait_for(what: &str, m: &TestMember, check: impl Fn(&[Task]) -> bool) -> Vec<Task> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ts = tasks(m);
        if check(&ts) {
            return ts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never: {what}; tasks: {ts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn running_per_node(ts: &[Task], service: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for t in ts.iter().filter(|t| {
        t.service == service
            && t.desired == DesiredState::Running
            && t.observed == ObservedState::Assigned
    }) {
        *out.entry(t.node.clone().unwrap()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_places_scales_and_moves_tasks_off_a_silent_node() {
    let ca = ClusterCa::generate("test").unwrap();
    let m = start_orchestrating_member(&ca, 1).await;
    initialize(std::slice::from_ref(&m)).await;
    wait_for_leader(&[&m], None).await;
    let a1 = agent(&ca, &m, "a1", &[("disk", "ssd")]).await;
    let _a2 = agent(&ca, &m, "a2", &[]).await;
    let _a3 = agent(&ca, &m, "a3", &[]).await;

    let mut control = admin(&ca, &m);
    let mut web = spec("web", "busybox:1");
    web.replicas = 6;
    control
        .apply_service(apply_request(web.clone(), None))
        .await
        .unwrap();
    let ts = wait_for("6 tasks placed 2/2/2", &m, |ts| {
        let per = running_per_node(ts, "web");
        per.len() == 3 && per.values().all(|n| *n == 2)
    })
    .await;
    assert_eq!(ts.len(), 6);

    // Scale to 9, then to 3: 3/3/3, then the extra slots stopped.
    control
        .scale_service(v1::ScaleServiceRequest {
            name: "web".into(),
            replicas: 9,
            ..Default::default()
        })
        .await
        .unwrap();
    wait_for("9 tasks 3/3/3", &m, |ts| {
        let per = running_per_node(ts, "web");
        per.len() == 3 && per.values().all(|n| *n == 3)
    })
    .await;
    control
        .scale_service(v1::ScaleServiceRequest {
            name: "web".into(),
            replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let ts = wait_for("3 live tasks, one per slot", &m, |ts| {
        running_per_node(ts, "web").values().sum::<usize>() == 3
    })
    .await;
    let live_slots: BTreeSet<u32> = ts
        .iter()
        .filter(|t| t.desired == DesiredState::Running)
        .map(|t| t.slot)
        .collect();
    assert_eq!(live_slots, BTreeSet::from([1, 2, 3]));

    // A constraint pins a service to the labelled node.
    let mut db = spec("db", "busybox:1");
    db.constraints = vec!["node.labels.disk==ssd".into()];
    control
        .apply_service(apply_request(db, None))
        .await
        .unwrap();
    wait_for("db on a1", &m, |ts| {
        running_per_node(ts, "db") == HashMap::from([("a1".to_owned(), 2)])
    })
    .await;

    // A node that stops heartbeating: its tasks are orphaned and replaced on the others.
    drop(a1);
    let ts = wait_for("a1's tasks replaced", &m, |ts| {
        let web = running_per_node(ts, "web");
        !web.contains_key("a1") && web.values().sum::<usize>() == 3
    })
    .await;
    assert!(
        ts.iter()
            .filter(|t| t.node.as_deref() == Some("a1") && t.service == "web")
            .all(|t| t.observed == ObservedState::Orphaned && t.desired == DesiredState::Shutdown),
        "{ts:#?}"
    );
    // db fits nowhere else: pending, saying why.
    let ts = wait_for("db pending with a reason", &m, |ts| {
        ts.iter()
            .filter(|t| t.service == "db" && t.observed == ObservedState::Pending)
            .count()
            == 2
    })
    .await;
    let reason = ts
        .iter()
        .find(|t| t.service == "db" && t.observed == ObservedState::Pending)
        .and_then(|t| t.reason.clone())
        .unwrap();
    assert!(reason.contains("no suitable node"), "{reason}");
    eprintln!("pending db task: {reason}");
}

#[test]
fn task_ids_sort_by_creation_and_are_valid_identity_ids() {
    let a = super::task_id_at(5);
    // The same instant (or a clock that went back) still gives a larger id.
    let b = super::task_id_at(5);
    let c = super::new_task_id();
    assert!(a < b && b < c, "{a} {b} {c}");
    for id in [&a, &b, &c] {
        assert_eq!(id.len(), 32, "{id}");
        crate::pki::Identity::new(Role::Agent, id.as_str()).unwrap();
    }
    // The random halves differ.
    assert_ne!(a[16..], b[16..]);
}
