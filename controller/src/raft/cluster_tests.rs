//! A three-member cluster in one process, over gRPC with mutual TLS on 127.0.0.1: election,
//! replication, failover, and the Raft service refusing callers that are not controllers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::RaftRequest;
use berth_proto::v1::raft_client::RaftClient;
use openraft::Vote;
use openraft::raft::VoteRequest;
use rustls::{ClientConfig, RootCertStore};
use tonic::Code;

use super::{Command, CommandResponse, Expect, NodeId, Op};
use crate::pki::{ClusterCa, DEFAULT_LEAF_VALIDITY, Identity, Role, SubjectName, client_config};
use crate::test_support::{LOCALHOST, TestMember, WAIT, initialize, start_member, wait_for_leader};
use crate::transport::MtlsConnector;

fn controller_identity(id: NodeId) -> Identity {
    Identity::new(Role::Controller, id.to_string()).unwrap()
}

fn put(key: &str, value: &[u8]) -> Command {
    Command::Batch(vec![Op::Put {
        key: key.to_owned(),
        value: value.to_vec(),
        expect: Expect::Any,
    }])
}

/// Writes through `leader` and checks that every member in `members` applies it.
async fn write_and_read_back(
    leader: &TestMember,
    members: &[&TestMember],
    key: &str,
    value: &[u8],
) {
    let response = leader.raft.client_write(put(key, value)).await.unwrap();
    let index = response.log_id.index;
    assert_eq!(
        response.data,
        CommandResponse::Ok {
            versions: vec![(key.to_owned(), index)]
        }
    );
    for member in members {
        member
            .raft
            .wait(Some(WAIT))
            .applied_index_at_least(Some(index), "the write is applied")
            .await
            .unwrap_or_else(|e| panic!("member {} did not apply {key}: {e}", member.id));
        assert_eq!(
            member.reader.get(key).unwrap(),
            Some((index, value.to_vec())),
            "member {} has the written value",
            member.id
        );
    }
}

/// Calls `Vote` on `addr` with a client using `config`, with a time limit.
async fn call_vote(config: Arc<ClientConfig>, addr: SocketAddr) -> Result<(), tonic::Status> {
    let channel = MtlsConnector::new(config)
        .with_connect_timeout(Duration::from_secs(2))
        .channel(&addr.to_string())
        .unwrap();
    // A vote for term 0: harmless even if it were accepted.
    let vote = VoteRequest::<NodeId>::new(Vote::new(0, 99), None);
    let payload = serde_json::to_vec(&vote).unwrap();
    tokio::time::timeout(WAIT, RaftClient::new(channel).vote(RaftRequest { payload }))
        .await
        .expect("the call ends in time")
        .map(|_| ())
}

/// A client configuration that trusts the cluster CA but presents no certificate.
fn anonymous_client(ca: &ClusterCa) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Checks that a call failed in the transport, not in a handler. The server ends the
/// handshake; the client sees the TLS alert (`CertificateRequired`, `UnknownCA`) or, if the
/// server closed the connection first, a broken pipe.
fn assert_refused_by_tls(status: &tonic::Status) {
    let source = std::error::Error::source(status);
    assert!(
        source.is_some_and(|e| e.is::<tonic::transport::Error>()),
        "not a transport failure: {status:?}"
    );
}

/// Checks who the Raft service on `addr` lets in.
async fn check_refusals(ca: &ClusterCa, addr: SocketAddr) {
    let names = [SubjectName::Ip(LOCALHOST)];

    let refused = call_vote(anonymous_client(ca), addr).await;
    let status = refused.expect_err("a client without a certificate was served");
    assert_refused_by_tls(&status);

    let other_ca = ClusterCa::generate("other").unwrap();
    let foreign = other_ca
        .issue(&controller_identity(7), &names, DEFAULT_LEAF_VALIDITY)
        .unwrap();
    // Trusts the cluster CA, so that only the server's check can fail.
    let refused = call_vote(client_config(ca.cert_pem(), &foreign).unwrap(), addr).await;
    let status = refused.expect_err("a client with another CA's certificate was served");
    assert_refused_by_tls(&status);

    let agent = ca
        .issue(
            &Identity::new(Role::Agent, "node-1").unwrap(),
            &names,
            DEFAULT_LEAF_VALIDITY,
        )
        .unwrap();
    let status = call_vote(client_config(ca.cert_pem(), &agent).unwrap(), addr)
        .await
        .expect_err("an agent was served");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("agent") && status.message().contains("controller"),
        "{status:?}"
    );

    // A controller is let in, but a payload that is not a vote request is refused.
    let controller = ca
        .issue(&controller_identity(8), &names, DEFAULT_LEAF_VALIDITY)
        .unwrap();
    let channel = MtlsConnector::new(client_config(ca.cert_pem(), &controller).unwrap())
        .channel(&addr.to_string())
        .unwrap();
    let status = RaftClient::new(channel)
        .vote(RaftRequest {
            payload: b"not json".to_vec(),
        })
        .await
        .expect_err("a bad payload was accepted");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("Vote payload"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_elect_replicate_fail_over_and_refuse_strangers() {
    let ca = ClusterCa::generate("test").unwrap();
    let mut members = Vec::new();
    for id in 1..=3 {
        members.push(start_member(&ca, id).await);
    }
    initialize(&members).await;

    let all: Vec<&TestMember> = members.iter().collect();
    let leader = wait_for_leader(&all, None).await;
    let leader_member = all.iter().find(|m| m.id == leader).unwrap();
    write_and_read_back(leader_member, &all, "services/web", b"first").await;

    // Stop the leader; the other two elect a new one and keep committing.
    let index = members.iter().position(|m| m.id == leader).unwrap();
    let mut old = members.remove(index);
    old.stop().await;
    let rest: Vec<&TestMember> = members.iter().collect();
    let new_leader = wait_for_leader(&rest, Some(leader)).await;
    let new_leader_member = rest.iter().find(|m| m.id == new_leader).unwrap();
    write_and_read_back(new_leader_member, &rest, "services/db", b"second").await;
    assert_eq!(
        new_leader_member
            .reader
            .get("services/web")
            .unwrap()
            .map(|(_, v)| v),
        Some(b"first".to_vec())
    );

    check_refusals(&ca, members[0].addr).await;

    for member in &mut members {
        member.stop().await;
    }
}
