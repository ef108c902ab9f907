//! Membership changes through the `Control` API on in-process members over mutual TLS (the
//! set-up of `control_tests.rs`): a member added and another removed while a writer keeps
//! applying, and the refusals.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use berth_proto::v1;
use berth_proto::v1::control_client::ControlClient;
use openraft::BasicNode;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::control_tests::{
    TestMember, WAIT, admin, apply_request, assert_code, client, get, spec, start_member,
    wait_for_leader,
};
use crate::pki::{ClusterCa, Role};
use crate::raft::NodeId;

/// What the writer saw: how many applies it sent, the versions acknowledged, the failures.
struct Written {
    attempts: u64,
    acked: Vec<u64>,
    failures: Vec<Status>,
}

/// Applies the service `counter` with a new image again and again through `client` until
/// `stop`; each acknowledged apply is one new version.
async fn write_until(
    mut client: ControlClient<Channel>,
    stop: Arc<AtomicBool>,
    successes: Arc<AtomicU64>,
) -> Written {
    let mut written = Written {
        attempts: 0,
        acked: Vec::new(),
        failures: Vec::new(),
    };
    while !stop.load(Ordering::SeqCst) {
        written.attempts += 1;
        let image = format!("counter:{}", written.attempts);
        match client
            .apply_service(apply_request(spec("counter", &image), None))
            .await
        {
            Ok(response) => {
                let service = response.into_inner().service.expect("a service");
                written.acked.push(service.version);
                successes.fetch_add(1, Ordering::SeqCst);
            }
            Err(status) => {
                written.failures.push(status);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    written
}

/// Waits until the writer has `more` acknowledged writes beyond `from`.
async fn wait_for_writes(successes: &AtomicU64, from: u64, more: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = successes.load(Ordering::SeqCst);
        if now >= from + more {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer made no progress: {now} writes, waiting for {}",
            from + more
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `check` holds for the status of the member at `addr`; returns that status.
async fn wait_for_status(
    ca: &ClusterCa,
    addr: SocketAddr,
    what: &str,
    check: impl Fn(&v1::ControlStatus) -> bool,
) -> v1::ControlStatus {
    let mut on_member = client(ca, Role::Admin, "alice", addr);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = on_member.status(v1::Empty {}).await.unwrap().into_inner();
        if check(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never held: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(members: &[v1::ControllerMember]) -> Vec<NodeId> {
    members.iter().map(|m| m.id).collect()
}

/// A linearizable read, retried while the cluster has no leader.
async fn read_counter(on_member: &mut ControlClient<Channel>) -> v1::Service {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match get(on_member, "counter", false).await {
            Ok(service) => return service,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(tokio::time::Instant::now() < deadline, "{status:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Starts `count` members and initialises the first `voters` of them as the membership.
async fn start(ca: &ClusterCa, count: NodeId, voters: usize) -> Vec<TestMember> {
    let mut members = Vec::new();
    for id in 1..=count {
        members.push(start_member(ca, id).await);
    }
    let nodes: BTreeMap<NodeId, BasicNode> = members[..voters]
        .iter()
        .map(|m| (m.id, BasicNode::new(m.addr.to_string())))
        .collect();
    members[0].raft.initialize(nodes).await.unwrap();
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_are_added_and_removed_while_writes_go_on() {
    let ca = ClusterCa::generate("test").unwrap();
    let mut members = start(&ca, 4, 3).await;
    let leader = wait_for_leader(&members[..3]).await;
    let follower = members[..3]
        .iter()
        .position(|m| m.id != leader)
        .expect("a follower");

    // TestMember 2 is never removed: the writer goes through it (forwarded unless it leads).
    let stop = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_until(
        admin(&ca, &members[1]),
        stop.clone(),
        successes.clone(),
    ));
    let seen = wait_for_writes(&successes, 0, 3).await;

    // TestMember 4 joins through a follower: a learner first, then a voter.
    let add_4 = v1::AddMemberRequest {
        id: 4,
        addr: members[3].addr.to_string(),
    };
    let added = admin(&ca, &members[follower])
        .add_member(add_4.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&added.voters), [1, 2, 3, 4], "{added:?}");
    assert!(added.learners.is_empty(), "{added:?}");
    let on_4 = wait_for_status(&ca, members[3].addr, "4 sees itself a voter", |s| {
        ids(&s.voters) == [1, 2, 3, 4] && s.leader_id.is_some()
    })
    .await;
    assert_eq!(on_4.id, 4);
    assert_eq!(on_4.state, "follower", "{on_4:?}");
    assert_eq!(
        on_4.voters
            .iter()
            .find(|m| m.id == 4)
            .map(|m| m.addr.as_str()),
        Some(add_4.addr.as_str())
    );
    let on_2 = admin(&ca, &members[1])
        .status(v1::Empty {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(on_4.leader_id, on_2.leader_id, "{on_4:?} {on_2:?}");

    // Adding it again is a no-op; at another address it is refused.
    let again = admin(&ca, &members[2])
        .add_member(add_4.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&again.voters), [1, 2, 3, 4], "{again:?}");
    assert_code(
        admin(&ca, &members[1])
            .add_member(v1::AddMemberRequest {
                id: 4,
                addr: "127.0.0.1:1".to_owned(),
            })
            .await,
        Code::FailedPrecondition,
        &["member 4", &add_4.addr, "127.0.0.1:1"],
    );
    let seen = wait_for_writes(&successes, seen, 3).await;

    // TestMember 1 (the first leader, as a rule: removing the leader is allowed) leaves.
    let leader_before = wait_for_leader(&members).await;
    admin(&ca, &members[1])
        .remove_member(v1::RemoveMemberRequest { id: 1 })
        .await
        .unwrap();
    for member in &members[1..] {
        let status = wait_for_status(&ca, member.addr, "1 is gone", |s| {
            ids(&s.voters) == [2, 3, 4]
                && s.learners.is_empty()
                && s.leader_id.is_some_and(|l| l != 1)
        })
        .await;
        assert!(
            !status.voters.iter().any(|m| m.id == 1),
            "{status:?} (the leader was {leader_before})"
        );
    }
    members[0].stop().await;
    let leader_after = wait_for_leader(&members[1..]).await;
    assert_ne!(leader_after, 1);
    wait_for_writes(&successes, seen, 3).await;

    // Every acknowledged write survived: the writer is sequential, so each success is one
    // new version; a failure may or may not have committed.
    stop.store(true, Ordering::SeqCst);
    let written = tokio::time::timeout(WAIT * 2, writer)
        .await
        .expect("the writer stops")
        .expect("the writer did not panic");
    let mut on_3 = admin(&ca, &members[2]);
    let last = read_counter(&mut on_3).await;
    let acked = written.acked.len() as u64;
    assert!(
        written.acked.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        written.acked
    );
    assert!(
        written.acked.last().is_some_and(|v| *v <= last.version),
        "last acknowledged {:?}, read {}",
        written.acked.last(),
        last.version
    );
    assert!(
        acked <= last.version && last.version <= acked + written.failures.len() as u64,
        "{acked} acknowledged, {} failed, {} attempts, version {}: {:?}",
        written.failures.len(),
        written.attempts,
        last.version,
        written.failures
    );
    for status in &written.failures {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    // The new member holds the same state.
    let mut on_4 = admin(&ca, &members[3]);
    let deadline = tokio::time::Instant::now() + WAIT;
    while get(&mut on_4, "counter", true)
        .await
        .ok()
        .map(|s| s.version)
        != Some(last.version)
    {
        assert!(tokio::time::Instant::now() < deadline, "4 never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for member in &mut members[1..] {
        member.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_changes_refuse_bad_input_and_other_roles() {
    let ca = ClusterCa::generate("test").unwrap();
    let mut members = start(&ca, 1, 1).await;
    wait_for_leader(&members).await;
    let mut on_1 = admin(&ca, &members[0]);
    let add = |id: NodeId, addr: &str| v1::AddMemberRequest {
        id,
        addr: addr.to_owned(),
    };

    assert_code(
        on_1.add_member(add(0, "127.0.0.1:7000")).await,
        Code::InvalidArgument,
        &["id 0"],
    );
    for bad in ["", "nope", "127.0.0.1:0", "http://x:1", "::1:7000"] {
        assert_code(
            on_1.add_member(add(2, bad)).await,
            Code::InvalidArgument,
            &["not host:port"],
        );
    }
    assert_code(
        on_1.add_member(add(1, "127.0.0.1:1")).await,
        Code::FailedPrecondition,
        &["member 1", "already", "127.0.0.1:1"],
    );
    // The same address is the idempotent no-op.
    let same = on_1
        .add_member(add(1, &members[0].addr.to_string()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&same.voters), [1]);

    assert_code(
        on_1.remove_member(v1::RemoveMemberRequest { id: 9 }).await,
        Code::NotFound,
        &["member 9", "not in the membership"],
    );
    assert_code(
        on_1.remove_member(v1::RemoveMemberRequest { id: 1 }).await,
        Code::FailedPrecondition,
        &["member 1", "last voter"],
    );

    // Only an admin: an agent never, a controller only when forwarding.
    let mut agent = client(&ca, Role::Agent, "node-7", members[0].addr);
    assert_code(
        agent.add_member(add(2, "127.0.0.1:7000")).await,
        Code::PermissionDenied,
        &["agent", "node-7"],
    );
    let mut controller = client(&ca, Role::Controller, "2", members[0].addr);
    assert_code(
        controller
            .remove_member(v1::RemoveMemberRequest { id: 1 })
            .await,
        Code::PermissionDenied,
        &["RemoveMember", "admin certificate"],
    );

    let status = on_1.status(v1::Empty {}).await.unwrap().into_inner();
    assert_eq!(ids(&status.voters), [1], "{status:?}");
    assert!(status.learners.is_empty(), "{status:?}");
    members[0].stop().await;
}
