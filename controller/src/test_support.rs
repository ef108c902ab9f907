//! In-process members for the controller's tests: each a real [`Member`] (Raft and Control
//! over mutual TLS) on an ephemeral port of 127.0.0.1, with its store in a temporary
//! directory and a controller certificate from a test CA, and fast Raft timings.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use openraft::BasicNode;
use tempfile::TempDir;

use crate::api::dispatch::{DispatchParts, SessionSettings};
use crate::api::join::ClusterFacts;
use crate::init::StoredTokens;
use crate::member::{JoinParts, Member, MemberParts};
use crate::pki::{ClusterCa, DEFAULT_LEAF_VALIDITY, Identity, IssuedCert, Role, SubjectName};
use crate::raft::{NodeId, RaftSettings};

/// The only address the tests use.
pub(crate) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How long any single wait in these tests may take.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// The defaults (heartbeat 100 ms, elections 150–300 ms): tests fail over in under a second.
pub(crate) fn settings() -> RaftSettings {
    RaftSettings::default()
}

/// Agent sessions for tests: 100 ms heartbeats, down after 3 missed (300 ms), `last_seen`
/// committed every 500 ms; subnets /24 of 10.200.0.0/16.
pub(crate) fn dispatch_parts() -> DispatchParts {
    DispatchParts {
        node_range: "10.200.0.0/16".parse().unwrap(),
        node_prefix: 24,
        session: SessionSettings {
            heartbeat_period: Duration::from_millis(100),
            missed_heartbeats: 3,
            last_seen_interval: Duration::from_millis(500),
        },
    }
}

/// A certificate for `role`/`id` from `ca`; controllers and agents are valid for 127.0.0.1,
/// an admin's names no host (it is a client's only).
pub(crate) fn cert_for(ca: &ClusterCa, role: Role, id: &str) -> IssuedCert {
    let names: &[SubjectName] = match role {
        Role::Admin => &[],
        Role::Controller | Role::Agent => &[SubjectName::Ip(LOCALHOST)],
    };
    ca.issue(
        &Identity::new(role, id).unwrap(),
        names,
        DEFAULT_LEAF_VALIDITY,
    )
    .unwrap()
}

/// A running member and the directory of its store.
pub(crate) struct TestMember {
    member: Member,
    _dir: TempDir,
}

impl Deref for TestMember {
    type Target = Member;
    fn deref(&self) -> &Member {
        &self.member
    }
}

impl DerefMut for TestMember {
    fn deref_mut(&mut self) -> &mut Member {
        &mut self.member
    }
}

impl TestMember {
    /// Stops the member within [`WAIT`].
    pub(crate) async fn stop(&mut self) {
        tokio::time::timeout(WAIT, self.member.stop())
            .await
            .expect("member stops in time")
            .expect("member stopped cleanly");
    }
}

/// Starts member `id`.
pub(crate) async fn start_member(ca: &ClusterCa, id: NodeId) -> TestMember {
    start_member_with(ca, id, None, settings(), false).await
}

/// Starts member `id` running the orchestrator (it places and reconciles tasks while it
/// leads).
pub(crate) async fn start_orchestrating_member(ca: &ClusterCa, id: NodeId) -> TestMember {
    start_member_with(ca, id, None, settings(), true).await
}

/// Starts member `id` with Raft `settings` of the test's own.
pub(crate) async fn start_member_with_settings(
    ca: &ClusterCa,
    id: NodeId,
    settings: RaftSettings,
) -> TestMember {
    start_member_with(ca, id, None, settings, false).await
}

/// Starts member `id` with a join listener on an ephemeral port, signing with `ca`, and
/// seeding `tokens` when it leads.
pub(crate) async fn start_joinable_member(
    ca: &ClusterCa,
    id: NodeId,
    tokens: Option<StoredTokens>,
) -> TestMember {
    let join = JoinParts {
        listen: SocketAddr::new(LOCALHOST, 0),
        ca_key_pem: ca.to_pem().1,
        cluster: ClusterFacts {
            name: "test".into(),
            node_range: "10.200.0.0/16".parse().unwrap(),
            node_prefix: 24,
            service_range: crate::state::default_service_range(),
            overlay: Default::default(),
        },
        seed_tokens: tokens,
    };
    start_member_with(ca, id, Some(join), settings(), false).await
}

async fn start_member_with(
    ca: &ClusterCa,
    id: NodeId,
    join: Option<JoinParts>,
    settings: RaftSettings,
    orchestrate: bool,
) -> TestMember {
    let dir = tempfile::tempdir().unwrap();
    let member = Member::serve(MemberParts {
        id,
        ca_pem: ca.cert_pem().to_owned(),
        cert: cert_for(ca, Role::Controller, &id.to_string()),
        listen: SocketAddr::new(LOCALHOST, 0),
        store_dir: dir.path().to_path_buf(),
        settings,
        connect_timeout: Some(Duration::from_millis(500)),
        join,
        dispatch: Some(dispatch_parts()),
        orchestrate,
    })
    .await
    .unwrap();
    TestMember { member, _dir: dir }
}

/// Initialises the membership of `members` (all voters) on the first.
pub(crate) async fn initialize(members: &[TestMember]) {
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .iter()
        .map(|m| (m.id, BasicNode::new(m.addr.to_string())))
        .collect();
    members[0].raft.initialize(nodes).await.unwrap();
    // `initialize` returns once the membership is written, before the election ends: wait
    // until the first member knows a leader so that a write right after is not refused.
    let deadline = tokio::time::Instant::now() + WAIT;
    while members[0].raft.metrics().borrow().current_leader.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader elected after initialising the membership"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every member in `members` agrees on one leader other than `not`.
pub(crate) async fn wait_for_leader(members: &[&TestMember], not: Option<NodeId>) -> NodeId {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leaders: Vec<Option<NodeId>> = members
            .iter()
            .map(|m| m.raft.metrics().borrow().current_leader)
            .collect();
        if let Some(Some(leader)) = leaders.first()
            && leaders.iter().all(|l| *l == Some(*leader))
            && Some(*leader) != not
            && members.iter().any(|m| m.id == *leader)
        {
            return *leader;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed leader among the members in time: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
