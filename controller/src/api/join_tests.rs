//! Joins over real TLS on three in-process members with join listeners: an agent joins
//! through a follower (forwarded to the leader) and its certificate works on the mutual-TLS
//! listener; forged, wrong-role, other-CA, rotated tokens and a bad CSR are refused with a
//! clear error and write nothing; the mutual-TLS listener still refuses a client without a
//! certificate, and the join listener serves nothing but `Join`.

use std::time::Duration;

use berth_proto::v1;
use berth_proto::v1::join_client::JoinClient;
use tonic::Code;
use tonic::transport::Channel;

use super::control_tests::{TestMember, WAIT, admin, assert_code, client, wait_for_leader};
use crate::init::StoredTokens;
use crate::join::{JoinClientError, join_as_agent, join_cluster};
use crate::pki::{ClusterCa, JoinToken, Role, client_config, generate_csr, join_client_config};
use crate::state::keys;
use crate::test_support::{initialize, start_joinable_member};
use crate::transport::MtlsConnector;

struct Cluster {
    ca: ClusterCa,
    members: Vec<TestMember>,
    leader_at: usize,
    agent_token: JoinToken,
    controller_token: JoinToken,
}

impl Cluster {
    fn follower(&self) -> &TestMember {
        &self.members[(self.leader_at + 1) % self.members.len()]
    }

    fn join_addr(&self, m: &TestMember) -> String {
        m.join_addr.expect("a join listener").to_string()
    }
}

/// Three members with join listeners, the tokens seeded everywhere.
async fn start() -> Cluster {
    let ca = ClusterCa::generate("test").unwrap();
    let agent_token = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    let controller_token = JoinToken::generate(Role::Controller, ca.fingerprint()).unwrap();
    let tokens = StoredTokens {
        agent: agent_token.stored(),
        controller: controller_token.stored(),
    };
    let mut members = Vec::new();
    for id in 1..=3 {
        members.push(start_joinable_member(&ca, id, Some(tokens.clone())).await);
    }
    initialize(&members).await;
    let leader = wait_for_leader(&members).await;
    let leader_at = members.iter().position(|m| m.id == leader).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    for m in &members {
        for role in [Role::Agent, Role::Controller] {
            while m.reader.get(&keys::token(role)).unwrap().is_none() {
                assert!(tokio::time::Instant::now() < deadline, "tokens not seeded");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // The cluster's own record, with the CA certificate, is seeded with them.
        let info = loop {
            if let Some((_, bytes)) = m.reader.get(keys::CLUSTER).unwrap() {
                break serde_json::from_slice::<crate::state::ClusterInfo>(&bytes).unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cluster record not seeded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(info.ca_cert_pem, ca.cert_pem());
        assert_eq!(info.node_prefix, 24);
    }
    Cluster {
        ca,
        members,
        leader_at,
        agent_token,
        controller_token,
    }
}

/// A raw Join client of `addr` over join TLS that trusts `trusted`'s CA.
fn raw_join(trusted: &JoinToken, addr: &str) -> JoinClient<Channel> {
    let channel = MtlsConnector::new(join_client_config(trusted).unwrap())
        .channel(addr)
        .unwrap();
    JoinClient::new(channel)
}

fn agent_request(token: &JoinToken, csr_pem: String) -> v1::JoinClusterRequest {
    v1::JoinClusterRequest {
        token: token.to_string(),
        role: v1::JoinRole::Agent.into(),
        csr_pem,
        name: "node-a".into(),
        hostnames: vec![],
        advertise: String::new(),
        controller_id: 0,
    }
}

async fn node_count(c: &Cluster) -> usize {
    admin(&c.ca, &c.members[c.leader_at])
        .list_nodes(v1::ListNodesRequest { stale: false })
        .await
        .unwrap()
        .into_inner()
        .nodes
        .len()
}

fn refused(e: JoinClientError) -> tonic::Status {
    match e {
        JoinClientError::Refused { status, .. } => status,
        other => panic!("not refused by the controller: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_joins_through_a_follower_and_its_certificate_works() {
    let mut c = start().await;
    let via = c.join_addr(c.follower());
    let (cert, ca_pem) = join_as_agent(&via, &c.agent_token, "node-a").await.unwrap();
    assert_eq!(ca_pem, c.ca.cert_pem());
    // Its certificate passes the mutual-TLS handshake of every member: Control answers, and
    // refuses an agent by its role, not for want of a certificate.
    let id = crate::pki::peer_identity_from_certs(Some(&[
        rustls::pki_types::pem::PemObject::from_pem_slice(cert.cert_pem.as_bytes()).unwrap(),
    ]))
    .unwrap();
    assert_eq!(id.role, Role::Agent);
    for m in &c.members {
        let channel = MtlsConnector::new(client_config(&ca_pem, &cert).unwrap())
            .channel(&m.addr.to_string())
            .unwrap();
        let status = v1::control_client::ControlClient::new(channel)
            .status(v1::Empty {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains(&id.id), "{status:?}");
    }
    // Its node record is in the state, under the id of its certificate.
    let nodes = admin(&c.ca, &c.members[c.leader_at])
        .list_nodes(v1::ListNodesRequest { stale: false })
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(
        (nodes[0].id.as_str(), nodes[0].hostname.as_str()),
        (id.id.as_str(), "node-a")
    );
    // A second agent gets another id.
    let (cert2, _) = join_as_agent(
        &c.join_addr(&c.members[c.leader_at]),
        &c.agent_token,
        "node-b",
    )
    .await
    .unwrap();
    assert_ne!(cert2.cert_pem, cert.cert_pem);
    assert_eq!(node_count(&c).await, 2);
    for m in &mut c.members {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_tokens_and_csrs_are_refused_clearly_and_write_nothing() {
    let mut c = start().await;
    let via = c.join_addr(c.follower());

    // Right CA, wrong secret.
    let forged = JoinToken::generate(Role::Agent, c.ca.fingerprint()).unwrap();
    let s = refused(join_as_agent(&via, &forged, "x").await.unwrap_err());
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("secret is not valid"), "{s:?}");

    // The controller token, joining as an agent.
    let s = refused(
        join_as_agent(&via, &c.controller_token, "x")
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("a controller join token"), "{s:?}");

    // A token pinning another CA: the joining node does not trust the controller ...
    let other = ClusterCa::generate("other").unwrap();
    let elsewhere = JoinToken::generate(Role::Agent, other.fingerprint()).unwrap();
    let e = join_as_agent(&via, &elsewhere, "x").await.unwrap_err();
    assert!(matches!(e, JoinClientError::Untrusted { .. }), "{e:?}");
    assert!(e.to_string().contains("pins CA fingerprint"), "{e}");
    // ... and the controller refuses it too, sent over a connection that trusts it.
    let (csr, _) = generate_csr().unwrap();
    let s = raw_join(&c.agent_token, &via)
        .join_cluster(agent_request(&elsewhere, csr.clone()))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("pins CA fingerprint"), "{s:?}");

    // A malformed CSR.
    for bad in ["not a csr", c.ca.cert_pem()] {
        let s = raw_join(&c.agent_token, &via)
            .join_cluster(agent_request(&c.agent_token, bad.to_owned()))
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains("certificate signing request"), "{s:?}");
    }

    // A rotated token: the old one is refused, the new one works.
    let rotated = admin(&c.ca, c.follower())
        .rotate_token(v1::RotateTokenRequest {
            role: v1::JoinRole::Agent.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let new = JoinToken::parse(&rotated).unwrap();
    assert_eq!(
        (new.role(), new.ca_fingerprint()),
        (Role::Agent, c.ca.fingerprint())
    );
    assert_eq!(node_count(&c).await, 0, "a refused join wrote a node");
    for m in &c.members {
        let s = refused(
            join_as_agent(&c.join_addr(m), &c.agent_token, "x")
                .await
                .unwrap_err(),
        );
        assert_eq!(s.code(), Code::Unauthenticated, "member {}: {s:?}", m.id);
    }
    assert_eq!(node_count(&c).await, 0, "a refused join wrote a node");
    join_as_agent(&via, &new, "x").await.unwrap();
    assert_eq!(node_count(&c).await, 1);

    // Only an admin rotates.
    assert_code(
        client(&c.ca, Role::Controller, "7", c.members[0].addr)
            .rotate_token(v1::RotateTokenRequest {
                role: v1::JoinRole::Controller.into(),
            })
            .await,
        Code::PermissionDenied,
        &["RotateToken"],
    );
    assert_code(
        admin(&c.ca, &c.members[0])
            .rotate_token(v1::RotateTokenRequest { role: 0 })
            .await,
        Code::InvalidArgument,
        &["role"],
    );
    for m in &mut c.members {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controllers_join_with_their_id_and_the_listeners_keep_to_their_roles() {
    let mut c = start().await;
    let via = c.join_addr(c.follower());
    let join = |id: u64, advertise: &str| crate::join::JoinRequest {
        token: c.controller_token.clone(),
        role: Role::Controller,
        name: String::new(),
        hostnames: vec![],
        advertise: advertise.to_owned(),
        controller_id: Some(id),
    };
    // An id the membership holds at another address is refused.
    let taken = c.members[0].id;
    let e = join_cluster(&via, join(taken, "127.0.0.1:1"))
        .await
        .unwrap_err();
    let s = refused(e);
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(s.message().contains("already in the membership"), "{s:?}");
    // A new id gets a controller certificate and the CA key.
    let joined = join_cluster(&via, join(9, "127.0.0.1:1")).await.unwrap();
    assert_eq!(joined.identity.id, "9");
    assert_eq!(joined.ca_key_pem.as_deref(), Some(c.ca.to_pem().1.as_str()));
    assert_eq!(joined.controllers.len(), 3);
    assert_eq!(joined.cluster_name, "test");

    // The mutual-TLS listener refuses a client without a certificate ...
    let s = raw_join(&c.agent_token, &c.members[0].addr.to_string())
        .join_cluster(agent_request(&c.agent_token, generate_csr().unwrap().0))
        .await
        .unwrap_err();
    // (TLS 1.3: the server's alert may arrive as an alert or as a closed connection.)
    assert!(
        std::error::Error::source(&s).is_some_and(|e| e.is::<tonic::transport::Error>()),
        "not refused at the handshake: {s:?}"
    );
    // ... and serves Join to a controller certificate only for forwarded calls.
    let channel = MtlsConnector::new(
        client_config(
            c.ca.cert_pem(),
            &crate::test_support::cert_for(&c.ca, Role::Controller, "5"),
        )
        .unwrap(),
    )
    .channel(&c.members[0].addr.to_string())
    .unwrap();
    let s = JoinClient::new(channel)
        .join_cluster(agent_request(&c.agent_token, generate_csr().unwrap().0))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("join listener"), "{s:?}");
    // The join listener serves nothing but Join, even to an admin certificate.
    let channel = MtlsConnector::new(
        client_config(
            c.ca.cert_pem(),
            &crate::test_support::cert_for(&c.ca, Role::Admin, "a"),
        )
        .unwrap(),
    )
    .channel(&via)
    .unwrap();
    let s = v1::control_client::ControlClient::new(channel)
        .status(v1::Empty {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented, "{s:?}");
    for m in &mut c.members {
        m.stop().await;
    }
}
