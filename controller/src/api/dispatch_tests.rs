//! The `Dispatcher` over real mutual TLS on in-process members (100 ms heartbeats, down after
//! three missed; see `test_support::dispatch_parts`): registration and subnets, heartbeats and
//! down-marking, the assignments stream, status reports, refusals that change nothing, and
//! followers sending agents to the leader.

use std::time::Duration;

use berth_proto::v1;
use berth_proto::v1::dispatcher_client::DispatcherClient;
use ipnet::Ipv4Net;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use super::control_tests::{TestMember, WAIT, assert_code, wait_for_leader};
use super::dispatch::{LEADER_METADATA, MAX_REQUEST_BYTES};
use crate::init::StoredTokens;
use crate::join::join_as_agent;
use crate::pki::{ClusterCa, IssuedCert, JoinToken, Role, client_config};
use crate::raft::{Command, Expect, Op};
use crate::state::{
    Availability, DesiredState, Node, NodeResources, NodeStatus, ObservedState, Service,
    ServiceMode, ServiceSpec, Task, keys,
};
use crate::test_support::{cert_for, initialize, start_joinable_member, start_member};
use crate::transport::MtlsConnector;

type Client = DispatcherClient<Channel>;

/// A Dispatcher client of `member` with `cert`.
fn client_with(ca: &ClusterCa, cert: &IssuedCert, member: &TestMember) -> Client {
    let channel = MtlsConnector::new(client_config(ca.cert_pem(), cert).unwrap())
        .channel(&member.addr.to_string())
        .unwrap();
    DispatcherClient::new(channel)
        .max_encoding_message_size(2 * MAX_REQUEST_BYTES)
        .max_decoding_message_size(64 << 20)
}

/// A Dispatcher client of `member` presenting a certificate of `role`/`id`.
fn client(ca: &ClusterCa, role: Role, id: &str, member: &TestMember) -> Client {
    client_with(ca, &cert_for(ca, role, id), member)
}

/// One member, initialised and leading.
async fn single(ca: &ClusterCa) -> TestMember {
    let m = start_member(ca, 1).await;
    initialize(std::slice::from_ref(&m)).await;
    wait_for_leader(std::slice::from_ref(&m)).await;
    m
}

fn register_request(hostname: &str, address: &str) -> v1::RegisterRequest {
    v1::RegisterRequest {
        hostname: hostname.into(),
        address: address.into(),
        labels: [("zone".to_owned(), "a".to_owned())].into(),
        cpus: 2.0,
        memory_bytes: 4 << 30,
        agent_version: "0.1.0-test".into(),
        running_tasks: vec![],
    }
}

async fn register(c: &mut Client, hostname: &str) -> v1::RegisterResponse {
    c.register(register_request(hostname, "127.0.0.1"))
        .await
        .unwrap()
        .into_inner()
}

async fn heartbeat(c: &mut Client, session: &str) -> Result<v1::HeartbeatResponse, tonic::Status> {
    c.heartbeat(v1::HeartbeatRequest {
        session_id: session.into(),
    })
    .await
    .map(|r| r.into_inner())
}

fn read<T: serde::de::DeserializeOwned>(m: &TestMember, key: &str) -> Option<(u64, T)> {
    m.reader
        .get(key)
        .unwrap()
        .map(|(v, bytes)| (v, serde_json::from_slice(&bytes).unwrap()))
}

fn node(m: &TestMember, id: &str) -> Node {
    read::<Node>(m, &keys::node(id)).expect("a node record").1
}

async fn put<T: serde::Serialize>(m: &TestMember, key: &str, value: &T) {
    let op = Op::Put {
        key: key.into(),
        value: serde_json::to_vec(value).unwrap(),
        expect: Expect::Any,
    };
    m.raft.client_write(Command::Batch(vec![op])).await.unwrap();
}

/// Writes the node record a join would have made for `id` (through the leader `m`).
async fn join_record(m: &TestMember, id: &str) {
    let record = Node {
        id: id.into(),
        hostname: id.into(),
        address: String::new(),
        labels: Default::default(),
        resources: Default::default(),
        status: NodeStatus::Unknown,
        availability: Availability::Active,
        last_seen: None,
        subnet: None,
        agent_version: None,
    };
    put(m, &keys::node(id), &record).await;
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn service(image: &str) -> Service {
    Service {
        spec: ServiceSpec {
            name: "web".into(),
            image: image.into(),
            entrypoint: None,
            command: vec!["serve".into()],
            env: vec![],
            mode: ServiceMode::Replicated { replicas: 3 },
            ports: vec![],
            links: vec![],
            resources: Default::default(),
            constraints: vec![],
            labels: Default::default(),
            max_replicas_per_node: None,
            preferences: vec![],
            healthcheck: None,
            restart: Default::default(),
            update_config: None,
            rollback_config: None,
            force_update: 0,
        },
        version: 1,
        created_at: 1,
        updated_at: 1,
        history: vec![],
        vip: None,
        ingress: Vec::new(),
        update: None,
    }
}

fn task(id: &str, node: &str, slot: u32) -> Task {
    Task {
        id: id.into(),
        service: "web".into(),
        slot,
        spec_version: 1,
        node: Some(node.into()),
        desired: DesiredState::Running,
        observed: ObservedState::Assigned,
        address: None,
        exit_code: None,
        reason: None,
        created_at: 1,
        updated_at: 1,
        health: None,
    }
}

async fn next(stream: &mut Streaming<v1::AssignmentsUpdate>) -> v1::AssignmentsUpdate {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("an update in time")
        .expect("no stream error")
        .expect("the stream goes on")
}

fn ids(update: &v1::AssignmentsUpdate) -> Vec<&str> {
    update.assigned.iter().map(|a| a.task_id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_register_and_keep_distinct_subnets() {
    let ca = ClusterCa::generate("test").unwrap();
    let agent_token = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    let controller_token = JoinToken::generate(Role::Controller, ca.fingerprint()).unwrap();
    let tokens = StoredTokens {
        agent: agent_token.stored(),
        controller: controller_token.stored(),
    };
    let mut m = start_joinable_member(&ca, 1, Some(tokens)).await;
    initialize(std::slice::from_ref(&m)).await;
    wait_for_leader(std::slice::from_ref(&m)).await;
    wait_until("tokens seeded", || {
        m.reader.get(&keys::token(Role::Agent)).unwrap().is_some()
    })
    .await;

    // An agent that joined with the token registers with its new certificate.
    let join_addr = m.join_addr.unwrap().to_string();
    let (cert, _) = join_as_agent(&join_addr, &agent_token, "node-a")
        .await
        .unwrap();
    let joined: Vec<(String, u64, Vec<u8>)> = m.reader.list(keys::NODES).unwrap();
    let id_a = joined[0].0.strip_prefix(keys::NODES).unwrap().to_owned();
    assert_eq!(node(&m, &id_a).status, NodeStatus::Unknown);
    let mut a = client_with(&ca, &cert, &m);
    let first = register(&mut a, "node-a").await;
    assert_eq!(first.node_id, id_a);
    assert_eq!(
        (first.heartbeat_period_ms, first.missed_heartbeats),
        (100, 3)
    );
    let subnet: Ipv4Net = first.subnet.parse().unwrap();
    assert_eq!(subnet.prefix_len(), 24);
    assert!(
        "10.200.0.0/16"
            .parse::<Ipv4Net>()
            .unwrap()
            .contains(&subnet)
    );
    let record = node(&m, &id_a);
    assert_eq!(record.status, NodeStatus::Ready);
    assert_eq!(record.subnet, Some(subnet));
    assert_eq!(record.address, "127.0.0.1");
    assert_eq!(record.labels["zone"], "a");
    assert_eq!(record.resources.cpus, 2.0);
    assert_eq!(record.agent_version.as_deref(), Some("0.1.0-test"));
    assert!(record.last_seen.is_some());
    // The subnet is claimed in the store for the node.
    let claim: (u64, String) = read(&m, &keys::subnet(&subnet)).unwrap();
    assert_eq!(claim.1, id_a);

    // Registering again keeps the subnet, ends the first session.
    let second = register(&mut a, "node-a").await;
    assert_eq!(second.subnet, first.subnet);
    assert_ne!(second.session_id, first.session_id);
    assert_code(
        heartbeat(&mut a, &first.session_id).await,
        Code::NotFound,
        &["replaced", "register again"],
    );
    heartbeat(&mut a, &second.session_id).await.unwrap();

    // A node with a record (drained by an operator) keeps its availability; nodes get
    // different subnets, also when they register at once.
    let drained = Node {
        id: "b".into(),
        hostname: "old".into(),
        address: "10.0.0.9".into(),
        labels: Default::default(),
        resources: NodeResources::default(),
        status: NodeStatus::Unknown,
        availability: Availability::Drain,
        last_seen: None,
        subnet: None,
        agent_version: None,
    };
    put(&m, &keys::node("b"), &drained).await;
    for id in ["c", "d"] {
        join_record(&m, id).await;
    }
    let mut b = client(&ca, Role::Agent, "b", &m);
    let mut c = client(&ca, Role::Agent, "c", &m);
    let mut d = client(&ca, Role::Agent, "d", &m);
    let (rb, rc, rd) = tokio::join!(
        register(&mut b, "node-b"),
        register(&mut c, "node-c"),
        register(&mut d, "node-d")
    );
    let mut subnets = vec![first.subnet.clone(), rb.subnet, rc.subnet, rd.subnet];
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 4, "{subnets:?}");
    let b_record = node(&m, "b");
    assert_eq!(
        (
            b_record.status,
            b_record.availability,
            b_record.hostname.as_str()
        ),
        (NodeStatus::Ready, Availability::Drain, "node-b")
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeats_keep_a_node_ready_and_silence_marks_it_down() {
    let ca = ClusterCa::generate("test").unwrap();
    let mut m = single(&ca).await;
    join_record(&m, "a").await;
    let mut a = client(&ca, Role::Agent, "a", &m);
    let session = register(&mut a, "node-a").await.session_id;
    let registered_at = node(&m, "a").last_seen.unwrap();

    // 1.2 s of heartbeats every 50 ms: four times the deadline, still ready; last_seen was
    // committed again (every 500 ms in these tests), not at every heartbeat.
    let version_before = m.reader.get(&keys::node("a")).unwrap().unwrap().0;
    for _ in 0..24 {
        let answer = heartbeat(&mut a, &session).await.unwrap();
        assert_eq!(answer.heartbeat_period_ms, 100);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (version_after, record) = read::<Node>(&m, &keys::node("a")).unwrap();
    assert_eq!(record.status, NodeStatus::Ready);
    assert!(record.last_seen.unwrap() > registered_at, "{record:?}");
    assert_ne!(version_after, version_before);
    let last_seen_writes = (version_after - version_before) as usize;
    assert!(last_seen_writes <= 24, "a write per heartbeat?");

    // Silence: down within the deadline (300 ms) plus a check period, with some slack.
    let stopped = tokio::time::Instant::now();
    wait_until("node a marked down", || {
        node(&m, "a").status == NodeStatus::Down
    })
    .await;
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    let down = node(&m, "a");
    assert!(down.last_seen.unwrap() >= record.last_seen.unwrap());
    // Written once: the record stays at the same version while the node stays silent.
    let version_down = m.reader.get(&keys::node("a")).unwrap().unwrap().0;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        m.reader.get(&keys::node("a")).unwrap().unwrap().0,
        version_down
    );

    // Its session is gone; registering again brings it back ready.
    assert_code(
        heartbeat(&mut a, &session).await,
        Code::NotFound,
        &["expired", "register again"],
    );
    let again = register(&mut a, "node-a").await;
    assert_eq!(node(&m, "a").status, NodeStatus::Ready);
    heartbeat(&mut a, &again.session_id).await.unwrap();
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_assignments_stream_sends_the_full_set_then_changes() {
    let ca = ClusterCa::generate("test").unwrap();
    let mut m = single(&ca).await;
    join_record(&m, "a").await;
    let mut a = client(&ca, Role::Agent, "a", &m);
    let session = register(&mut a, "node-a").await.session_id;
    put(&m, &keys::service("web"), &service("nginx:1")).await;
    put(&m, &keys::task("t1"), &task("t1", "a", 1)).await;
    put(&m, &keys::task("t2"), &task("t2", "b", 2)).await;

    // Keep the session alive meanwhile.
    let mut beat = a.clone();
    let beat_session = session.clone();
    let beating = tokio::spawn(async move {
        loop {
            let _ = heartbeat(&mut beat, &beat_session).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let mut stream = a
        .assignments(v1::AssignmentsRequest {
            session_id: session.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let full = next(&mut stream).await;
    assert!(full.full);
    assert_eq!(ids(&full), ["t1"]);
    let t1 = &full.assigned[0];
    assert_eq!(
        (t1.service.as_str(), t1.slot, t1.spec_version),
        ("web", 1, 1)
    );
    assert_eq!(t1.desired(), v1::TaskDesiredState::Running);
    let spec = t1.spec.as_ref().expect("the spec at the task's version");
    assert_eq!(
        (spec.image.as_str(), spec.command.as_slice()),
        ("nginx:1", &["serve".to_owned()][..])
    );
    assert!(full.revision > 0);

    // A new task for the node.
    put(&m, &keys::task("t3"), &task("t3", "a", 3)).await;
    let update = next(&mut stream).await;
    assert!(!update.full);
    assert_eq!(ids(&update), ["t3"]);
    assert!(update.removed.is_empty());
    assert!(update.revision >= full.revision);

    // The node's own status report is not a change of its assignments: the next message
    // is the following change only.
    let report = a
        .report_status(v1::ReportStatusRequest {
            session_id: session.clone(),
            statuses: vec![v1::TaskStatus {
                task_id: "t1".into(),
                state: v1::TaskState::Running.into(),
                timestamp: 5,
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.results[0].outcome(), v1::ReportOutcome::Applied);
    let mut stop_t1 = task("t1", "a", 1);
    stop_t1.desired = DesiredState::Shutdown;
    stop_t1.observed = ObservedState::Running;
    put(&m, &keys::task("t1"), &stop_t1).await;
    let update = next(&mut stream).await;
    assert_eq!(ids(&update), ["t1"]);
    assert_eq!(update.assigned[0].desired(), v1::TaskDesiredState::Shutdown);

    // Moved to another node, and removed: both are removals for this node.
    put(&m, &keys::task("t3"), &task("t3", "b", 3)).await;
    let update = next(&mut stream).await;
    assert_eq!(
        (ids(&update).len(), update.removed.as_slice()),
        (0, &["t3".to_owned()][..])
    );
    let op = Op::Delete {
        key: keys::task("t1"),
        expect: Expect::Any,
    };
    m.raft.client_write(Command::Batch(vec![op])).await.unwrap();
    let update = next(&mut stream).await;
    assert_eq!(update.removed, ["t1"]);

    // A new registration ends the stream: the session was replaced.
    register(&mut a, "node-a").await;
    let end = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("the stream ends in time");
    let status = end.expect_err("the stream ends with an error");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("replaced"), "{status:?}");

    // A stream for an unknown session is refused.
    let refused = a
        .assignments(v1::AssignmentsRequest {
            session_id: "nope".into(),
        })
        .await;
    assert_code(refused, Code::NotFound, &["register again"]);
    beating.abort();
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_reports_update_own_tasks_and_refuse_others() {
    let ca = ClusterCa::generate("test").unwrap();
    let mut m = single(&ca).await;
    join_record(&m, "a").await;
    let mut a = client(&ca, Role::Agent, "a", &m);
    let registered = register(&mut a, "node-a").await;
    let subnet: Ipv4Net = registered.subnet.parse().unwrap();
    let address = subnet.hosts().nth(1).unwrap();
    put(&m, &keys::task("t1"), &task("t1", "a", 1)).await;
    put(&m, &keys::task("t2"), &task("t2", "b", 2)).await;
    let t2_before = read::<Task>(&m, &keys::task("t2")).unwrap();

    let running = |id: &str| v1::TaskStatus {
        task_id: id.into(),
        state: v1::TaskState::Running.into(),
        address: address.to_string(),
        timestamp: 10,
        ..Default::default()
    };
    let answer = a
        .report_status(v1::ReportStatusRequest {
            session_id: registered.session_id.clone(),
            statuses: vec![running("t1"), running("t2"), running("t9")],
        })
        .await
        .unwrap()
        .into_inner();
    let outcomes: Vec<_> = answer
        .results
        .iter()
        .map(|r| (r.task_id.as_str(), r.outcome()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("t1", v1::ReportOutcome::Applied),
            ("t2", v1::ReportOutcome::Refused),
            ("t9", v1::ReportOutcome::Refused),
        ]
    );
    assert!(
        answer.results[1].reason.contains("assigned to node b"),
        "{answer:?}"
    );
    assert!(
        answer.results[2].reason.contains("no task t9"),
        "{answer:?}"
    );
    let t1 = read::<Task>(&m, &keys::task("t1")).unwrap().1;
    assert_eq!(
        (t1.observed, t1.address),
        (ObservedState::Running, Some(address))
    );
    assert!(t1.updated_at > 1);
    assert_eq!(read::<Task>(&m, &keys::task("t2")).unwrap(), t2_before);

    // Again: unchanged. Starting after running: stale. Then it fails with an exit code.
    let report = |statuses: Vec<v1::TaskStatus>| {
        let mut a = a.clone();
        let session_id = registered.session_id.clone();
        async move {
            a.report_status(v1::ReportStatusRequest {
                session_id,
                statuses,
            })
            .await
            .unwrap()
            .into_inner()
            .results
        }
    };
    let again = report(vec![running("t1")]).await;
    assert_eq!(again[0].outcome(), v1::ReportOutcome::Unchanged);
    let starting = v1::TaskStatus {
        state: v1::TaskState::Starting.into(),
        ..running("t1")
    };
    let stale = report(vec![starting]).await;
    assert_eq!(stale[0].outcome(), v1::ReportOutcome::Stale);
    assert!(stale[0].reason.contains("Running"), "{stale:?}");
    let failed = v1::TaskStatus {
        state: v1::TaskState::Failed.into(),
        has_exit_code: true,
        exit_code: 137,
        reason: "OOM killed".into(),
        timestamp: 20,
        ..running("t1")
    };
    let done = report(vec![failed]).await;
    assert_eq!(done[0].outcome(), v1::ReportOutcome::Applied);
    let t1 = read::<Task>(&m, &keys::task("t1")).unwrap().1;
    assert_eq!(
        (t1.observed, t1.exit_code, t1.reason.as_deref()),
        (ObservedState::Failed, Some(137), Some("OOM killed"))
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_agents_may_call_and_malformed_requests_change_nothing() {
    let ca = ClusterCa::generate("test").unwrap();
    let mut m = single(&ca).await;

    // Admin and controller certificates are refused, and nothing is written.
    for (role, id) in [(Role::Admin, "alice"), (Role::Controller, "7")] {
        let mut c = client(&ca, role, id, &m);
        let refused = c.register(register_request("x", "127.0.0.1")).await;
        assert_code(refused, Code::PermissionDenied, &[]);
        assert_code(heartbeat(&mut c, "s").await, Code::PermissionDenied, &[]);
    }
    assert!(m.reader.list(keys::NODES).unwrap().is_empty());

    // A certificate whose node never joined (or was removed) is an unknown node id.
    let mut a = client(&ca, Role::Agent, "a", &m);
    let unknown = a.register(register_request("node-a", "127.0.0.1")).await;
    assert_code(unknown, Code::NotFound, &["unknown node id", "join"]);
    assert!(m.reader.list(keys::NODES).unwrap().is_empty());

    // A bad registration names the field and writes nothing.
    join_record(&m, "a").await;
    let as_joined = m.reader.get(&keys::node("a")).unwrap();
    let bad = a.register(register_request("node-a", "not-an-ip")).await;
    assert_code(
        bad,
        Code::InvalidArgument,
        &["invalid address", "not-an-ip"],
    );
    assert_eq!(m.reader.get(&keys::node("a")).unwrap(), as_joined);

    let registered = register(&mut a, "node-a").await;
    put(&m, &keys::task("t1"), &task("t1", "a", 1)).await;
    let before = m.reader.get(&keys::task("t1")).unwrap();
    let reporter = a.clone();
    let report = |session: &str, statuses: Vec<v1::TaskStatus>| {
        let mut a = reporter.clone();
        let session_id = session.to_owned();
        async move {
            a.report_status(v1::ReportStatusRequest {
                session_id,
                statuses,
            })
            .await
        }
    };
    let ok = v1::TaskStatus {
        task_id: "t1".into(),
        state: v1::TaskState::Running.into(),
        timestamp: 1,
        ..Default::default()
    };

    // Unknown session.
    assert_code(
        heartbeat(&mut a, "no-such-session").await,
        Code::NotFound,
        &["no-such-session", "register again"],
    );
    assert_code(
        report("no-such-session", vec![ok.clone()]).await,
        Code::NotFound,
        &["register again"],
    );
    // Another node's session.
    let mut b = client(&ca, Role::Agent, "b", &m);
    assert_code(
        heartbeat(&mut b, &registered.session_id).await,
        Code::PermissionDenied,
        &["another node"],
    );
    // A bad state value, a state only the controller sets, a valid item next to a bad one.
    let bad_state = v1::TaskStatus {
        state: 42,
        ..ok.clone()
    };
    assert_code(
        report(&registered.session_id, vec![ok.clone(), bad_state]).await,
        Code::InvalidArgument,
        &["statuses[1].state", "42"],
    );
    let orphaned = v1::TaskStatus {
        state: v1::TaskState::Orphaned.into(),
        ..ok.clone()
    };
    assert_code(
        report(&registered.session_id, vec![orphaned]).await,
        Code::InvalidArgument,
        &["TASK_STATE_ORPHANED"],
    );
    // Too many items, and too many bytes.
    let many = vec![ok.clone(); super::dispatch::MAX_REPORTS + 1];
    assert_code(
        report(&registered.session_id, many).await,
        Code::InvalidArgument,
        &["more than 1000"],
    );
    let huge = v1::TaskStatus {
        reason: "x".repeat(MAX_REQUEST_BYTES),
        ..ok.clone()
    };
    let status = report(&registered.session_id, vec![huge])
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");
    assert_eq!(m.reader.get(&keys::task("t1")).unwrap(), before);
    // The session still works.
    heartbeat(&mut a, &registered.session_id).await.unwrap();
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_send_agents_to_the_leader() {
    let ca = ClusterCa::generate("test").unwrap();
    let mut members = Vec::new();
    for id in 1..=3 {
        members.push(start_member(&ca, id).await);
    }
    initialize(&members).await;
    let leader = wait_for_leader(&members).await;
    let leader_addr = members
        .iter()
        .find(|m| m.id == leader)
        .unwrap()
        .addr
        .to_string();
    for m in members.iter().filter(|m| m.id != leader) {
        let mut c = client(&ca, Role::Agent, "a", m);
        let status = c
            .register(register_request("node-a", "127.0.0.1"))
            .await
            .expect_err("a follower does not register");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains(&leader_addr), "{status:?}");
        let hint = status
            .metadata()
            .get(LEADER_METADATA)
            .expect("the leader's address");
        assert_eq!(hint.to_str().unwrap(), leader_addr);
        assert_code(
            heartbeat(&mut c, "s").await,
            Code::Unavailable,
            &["not the leader"],
        );
    }
    assert!(
        members
            .iter()
            .all(|m| m.reader.list(keys::NODES).unwrap().is_empty())
    );
    let on_leader = members.iter().find(|m| m.id == leader).unwrap();
    join_record(on_leader, "a").await;
    let mut c = client(&ca, Role::Agent, "a", on_leader);
    register(&mut c, "node-a").await;
    for m in &mut members {
        m.stop().await;
    }
}
