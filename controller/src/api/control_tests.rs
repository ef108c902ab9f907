//! The `Control` service on three in-process members over mutual TLS on 127.0.0.1 (the set-up
//! of `raft/cluster_tests.rs`, with the Raft and Control services on one router per member):
//! forwarding, linearizable and stale reads, optimistic concurrency, refusals.

use std::net::SocketAddr;
use std::time::Duration;

use berth_proto::v1;
use berth_proto::v1::control_client::ControlClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::control::MAX_RESPONSE_BYTES;
use crate::pki::{ClusterCa, Role, client_config};
use crate::raft::NodeId;
pub(super) use crate::test_support::{TestMember, WAIT, start_member};
use crate::test_support::{cert_for, initialize};
use crate::transport::MtlsConnector;

/// Starts three members and initialises them; returns them and the leader's id.
pub(super) async fn start_cluster(ca: &ClusterCa) -> (Vec<TestMember>, NodeId) {
    let mut members = Vec::new();
    for id in 1..=3 {
        members.push(start_member(ca, id).await);
    }
    initialize(&members).await;
    let leader = wait_for_leader(&members).await;
    (members, leader)
}

/// Waits until every member agrees on one leader (shared by the API tests).
pub(super) async fn wait_for_leader(members: &[TestMember]) -> NodeId {
    let all: Vec<&TestMember> = members.iter().collect();
    crate::test_support::wait_for_leader(&all, None).await
}

/// A Control client of `addr` presenting a certificate of `role`.
pub(crate) fn client(
    ca: &ClusterCa,
    role: Role,
    id: &str,
    addr: SocketAddr,
) -> ControlClient<Channel> {
    let cert = cert_for(ca, role, id);
    let channel = MtlsConnector::new(client_config(ca.cert_pem(), &cert).unwrap())
        .channel(&addr.to_string())
        .unwrap();
    ControlClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

pub(crate) fn admin(ca: &ClusterCa, member: &TestMember) -> ControlClient<Channel> {
    client(ca, Role::Admin, "alice", member.addr)
}

pub(crate) fn spec(name: &str, image: &str) -> v1::ServiceSpec {
    v1::ServiceSpec {
        name: name.to_owned(),
        image: image.to_owned(),
        replicas: 2,
        ..v1::ServiceSpec::default()
    }
}

pub(crate) fn apply_request(
    spec: v1::ServiceSpec,
    expected: Option<u64>,
) -> v1::ApplyServiceRequest {
    v1::ApplyServiceRequest {
        spec: Some(spec),
        expected_version: expected,
    }
}

pub(super) async fn get(
    client: &mut ControlClient<Channel>,
    name: &str,
    stale: bool,
) -> Result<v1::Service, Status> {
    let response = client
        .get_service(v1::GetServiceRequest {
            name: name.to_owned(),
            stale,
        })
        .await?;
    Ok(response.into_inner().service.expect("a service"))
}

pub(super) fn assert_code<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    words: &[&str],
) {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    for word in words {
        assert!(
            status.message().contains(word),
            "{word:?} not in {status:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_forwards_reads_writes_and_checks_versions() {
    let ca = ClusterCa::generate("test").unwrap();
    let (mut members, leader) = start_cluster(&ca).await;
    let leader_at = members.iter().position(|m| m.id == leader).unwrap();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader_at).collect();
    let mut on_leader = admin(&ca, &members[leader_at]);
    let mut on_a = admin(&ca, &members[followers[0]]);
    let mut on_b = admin(&ca, &members[followers[1]]);

    // Status names the same leader on every member.
    for member in &members {
        let status = admin(&ca, member)
            .status(v1::Empty {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.id, member.id);
        assert_eq!(status.leader_id, Some(leader), "{status:?}");
        assert_eq!(
            status.leader_addr,
            members[leader_at].addr.to_string(),
            "{status:?}"
        );
        assert_eq!(status.voters.len(), 3, "{status:?}");
        assert!(status.learners.is_empty(), "{status:?}");
        assert!(status.term >= 1, "{status:?}");
    }

    // Applied through a follower (forwarded), read back linearizably from the other one.
    let created = on_a
        .apply_service(apply_request(spec("web", "nginx:1"), Some(0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.outcome, "created");
    assert_eq!(created.service.as_ref().unwrap().version, 1);
    let read = get(&mut on_b, "web", false).await.unwrap();
    assert_eq!(read.version, 1);
    assert_eq!(read.spec.unwrap().image, "nginx:1");

    // A stale read on a follower sees it once applied there.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match get(&mut on_b, "web", true).await {
            Ok(service) => {
                assert_eq!(service.version, 1);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::NotFound, "{status:?}");
                assert!(tokio::time::Instant::now() < deadline, "never applied");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    // The same spec again: unchanged, same version.
    let again = on_b
        .apply_service(apply_request(spec("web", "nginx:1"), None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.outcome, "unchanged");
    assert_eq!(again.service.unwrap().version, 1);

    // A stale expected version changes nothing.
    let stale = on_a
        .apply_service(apply_request(spec("web", "nginx:2"), Some(5)))
        .await;
    assert_code(stale, Code::FailedPrecondition, &["version 1", "not 5"]);
    let read = get(&mut on_leader, "web", false).await.unwrap();
    assert_eq!(read.version, 1);
    assert_eq!(read.spec.unwrap().image, "nginx:1");

    // Two concurrent applies expecting the same version: exactly one wins.
    let (first, second) = tokio::join!(
        on_a.apply_service(apply_request(spec("web", "nginx:2"), Some(1))),
        on_leader.apply_service(apply_request(spec("web", "nginx:3"), Some(1))),
    );
    let results = [first, second];
    let winners: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for loser in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(loser.code(), Code::FailedPrecondition | Code::Aborted),
            "{loser:?}"
        );
    }
    let winner = winners[0].as_ref().unwrap().get_ref();
    let read = get(&mut on_b, "web", false).await.unwrap();
    assert_eq!(read.version, 2);
    assert_eq!(read.history.len(), 1);
    assert_eq!(Some(&read), winner.service.as_ref());

    // Concurrent applies without an expected version race in the store: the losers read
    // again and re-decide, so no update is lost (each success is one version).
    let calls = (1..=8).map(|n| {
        let mut client = on_leader.clone();
        async move {
            client
                .apply_service(apply_request(spec("api", &format!("api:{n}")), None))
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut successes = 0;
    for result in &results {
        match result {
            Ok(response) => {
                assert!(
                    ["created", "updated"].contains(&response.get_ref().outcome.as_str()),
                    "{response:?}"
                );
                successes += 1;
            }
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
        }
    }
    assert!(successes >= 1, "{results:?}");
    let read = get(&mut on_a, "api", false).await.unwrap();
    assert_eq!(read.version, successes, "{results:?}");
    let removed = on_b
        .remove_service(v1::RemoveServiceRequest {
            name: "api".to_owned(),
            expected_version: Some(successes),
        })
        .await;
    assert!(removed.is_ok(), "{removed:?}");

    // A malformed spec and a missing spec are refused; nothing changes.
    assert_code(
        on_a.apply_service(apply_request(spec("Bad_Name", "nginx"), None))
            .await,
        Code::InvalidArgument,
        &["Bad_Name", "name"],
    );
    assert_code(
        on_a.apply_service(v1::ApplyServiceRequest::default()).await,
        Code::InvalidArgument,
        &["no service spec"],
    );
    // An oversized request is refused by tonic before it is decoded.
    let mut huge = spec("huge", "nginx");
    huge.env = vec![format!("A={}", "x".repeat(5 * 1024 * 1024))];
    let status = on_leader
        .apply_service(apply_request(huge, None))
        .await
        .expect_err("an oversized request was served");
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    let listed = on_b
        .list_services(v1::ListServicesRequest { stale: false })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed
        .services
        .iter()
        .map(|s| s.spec.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(names, ["web"]);

    // No tasks or nodes yet; the listings work everywhere.
    let tasks = on_a
        .list_tasks(v1::ListTasksRequest {
            service: "web".to_owned(),
            stale: false,
        })
        .await
        .unwrap();
    assert!(tasks.into_inner().tasks.is_empty());
    let nodes = on_b
        .list_nodes(v1::ListNodesRequest { stale: true })
        .await
        .unwrap();
    assert!(nodes.into_inner().nodes.is_empty());

    // Removal: a stale expected version is refused, then it goes, then it is not found.
    assert_code(
        on_a.remove_service(v1::RemoveServiceRequest {
            name: "web".to_owned(),
            expected_version: Some(1),
        })
        .await,
        Code::FailedPrecondition,
        &["version 2", "not 1"],
    );
    let removed = on_a
        .remove_service(v1::RemoveServiceRequest {
            name: "web".to_owned(),
            expected_version: Some(2),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.service.unwrap().version, 2);
    assert_code(get(&mut on_b, "web", false).await, Code::NotFound, &["web"]);
    assert_code(
        on_b.remove_service(v1::RemoveServiceRequest {
            name: "web".to_owned(),
            expected_version: None,
        })
        .await,
        Code::NotFound,
        &["web"],
    );

    // An agent's certificate is refused, naming its role and id.
    let mut agent = client(&ca, Role::Agent, "node-7", members[followers[0]].addr);
    assert_code(
        agent.status(v1::Empty {}).await,
        Code::PermissionDenied,
        &["agent", "node-7"],
    );
    assert_code(
        agent
            .list_services(v1::ListServicesRequest { stale: true })
            .await,
        Code::PermissionDenied,
        &["agent", "node-7"],
    );

    for member in &mut members {
        member.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_without_a_leader_is_unavailable_but_stale_reads_work() {
    let ca = ClusterCa::generate("test").unwrap();
    let mut member = start_member(&ca, 1).await;
    let mut on_member = admin(&ca, &member);
    assert_code(
        get(&mut on_member, "web", false).await,
        Code::Unavailable,
        &["no leader elected yet; retry"],
    );
    assert_code(
        on_member
            .apply_service(apply_request(spec("web", "nginx"), None))
            .await,
        Code::Unavailable,
        &["no leader elected yet; retry"],
    );
    assert_code(
        get(&mut on_member, "web", true).await,
        Code::NotFound,
        &["web"],
    );
    let status = on_member.status(v1::Empty {}).await.unwrap().into_inner();
    assert_eq!(status.leader_id, None);
    assert_eq!(status.state, "learner");
    member.stop().await;
}
