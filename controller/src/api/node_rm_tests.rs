//! `RemoveNode` on an orchestrating in-process member with agents registered over the real
//! Dispatcher (mutual TLS): refused while a node is ready unless forced, its record and
//! subnet claim deleted, its tasks replaced elsewhere (the orphaned ones kept as history),
//! its session ended and its agent refused, its subnet given to the next new node.

use std::collections::HashMap;
use std::time::Duration;

use berth_proto::v1;
use berth_proto::v1::dispatcher_client::DispatcherClient;
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Channel;

use super::control_tests::{admin, apply_request, assert_code, spec};
use crate::pki::{ClusterCa, Role, client_config};
use crate::raft::{Command, Expect, Op};
use crate::state::{
    Availability, DesiredState, Node, NodeResources, NodeStatus, ObservedState, Task, keys,
};
use crate::test_support::{
    TestMember, WAIT, cert_for, initialize, start_orchestrating_member, wait_for_leader,
};
use crate::transport::MtlsConnector;

/// An agent registered with a member, heartbeating until dropped or refused.
struct Agent {
    client: DispatcherClient<Channel>,
    subnet: String,
    /// The status that ended its heartbeats, once one did.
    refused: watch::Receiver<Option<tonic::Status>>,
    heartbeats: tokio::task::JoinHandle<()>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}

fn register_request(id: &str) -> v1::RegisterRequest {
    v1::RegisterRequest {
        hostname: format!("host-{id}"),
        address: "127.0.0.1".into(),
        cpus: 2.0,
        memory_bytes: 4 << 30,
        agent_version: "test".into(),
        ..Default::default()
    }
}

/// Joins node `id` (its record, as a join writes it) and registers its agent.
async fn agent(ca: &ClusterCa, m: &TestMember, id: &str) -> Agent {
    let record = Node {
        id: id.into(),
        hostname: format!("host-{id}"),
        address: "127.0.0.1".into(),
        labels: Default::default(),
        resources: NodeResources::default(),
        status: NodeStatus::Unknown,
        availability: Availability::Active,
        last_seen: None,
        subnet: None,
        agent_version: None,
    };
    let op = Op::Put {
        key: keys::node(id),
        value: serde_json::to_vec(&record).unwrap(),
        expect: Expect::Absent,
    };
    m.raft.client_write(Command::Batch(vec![op])).await.unwrap();
    let cert = cert_for(ca, Role::Agent, id);
    let channel = MtlsConnector::new(client_config(ca.cert_pem(), &cert).unwrap())
        .channel(&m.addr.to_string())
        .unwrap();
    let mut client = DispatcherClient::new(channel);
    let registered = client
        .register(register_request(id))
        .await
        .unwrap()
        .into_inner();
    let (tx, refused) = watch::channel(None);
    let mut beating = client.clone();
    let session = registered.session_id;
    let heartbeats = tokio::spawn(async move {
        loop {
            let beat = beating
                .heartbeat(v1::HeartbeatRequest {
                    session_id: session.clone(),
                })
                .await;
            if let Err(status) = beat {
                tx.send_replace(Some(status));
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    Agent {
        client,
        subnet: registered.subnet,
        refused,
        heartbeats,
    }
}

fn tasks(m: &TestMember) -> Vec<Task> {
    m.reader
        .list(keys::TASKS)
        .unwrap()
        .into_iter()
        .map(|(_, _, b)| serde_json::from_slice(&b).unwrap())
        .collect()
}

fn node(m: &TestMember, id: &str) -> Option<Node> {
    m.reader
        .get(&keys::node(id))
        .unwrap()
        .map(|(_, b)| serde_json::from_slice(&b).unwrap())
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The live (desired running) tasks of `web`, per node.
fn live_per_node(ts: &[Task]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for t in ts
        .iter()
        .filter(|t| t.service == "web" && t.desired == DesiredState::Running)
    {
        *out.entry(t.node.clone().unwrap_or_default()).or_default() += 1;
    }
    out
}

fn remove(node: &str, force: bool) -> v1::RemoveNodeRequest {
    v1::RemoveNodeRequest {
        node: node.into(),
        force,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_node_frees_its_subnet_loses_its_session_and_its_tasks_move() {
    let ca = ClusterCa::generate("test").unwrap();
    let m = start_orchestrating_member(&ca, 1).await;
    initialize(std::slice::from_ref(&m)).await;
    wait_for_leader(&[&m], None).await;
    let mut a1 = agent(&ca, &m, "a1").await;
    let _a2 = agent(&ca, &m, "a2").await;
    let a3 = agent(&ca, &m, "a3").await;
    let mut control = admin(&ca, &m);
    let mut web = spec("web", "busybox:1");
    web.replicas = 3;
    control
        .apply_service(apply_request(web, None))
        .await
        .unwrap();
    eventually("web 1/1/1", || {
        let per = live_per_node(&tasks(&m));
        (per.len() == 3 && per.values().all(|n| *n == 1)).then_some(())
    })
    .await;

    // Refused while ready, unless forced; an unknown node is NOT_FOUND.
    assert_code(
        control.remove_node(remove("a2", false)).await,
        Code::FailedPrecondition,
        &["host-a2", "is ready", "drain", "--force"],
    );
    assert_code(
        control.remove_node(remove("nope", false)).await,
        Code::NotFound,
        &["nope"],
    );
    assert!(node(&m, "a2").is_some());

    // Forced, by hostname: the record and the subnet claim go in one batch.
    let claim = keys::subnet(&a1.subnet.parse().unwrap());
    assert!(m.reader.get(&claim).unwrap().is_some());
    let removed = control
        .remove_node(remove("host-a1", true))
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(removed.id, "a1");
    assert!(node(&m, "a1").is_none());
    assert!(
        m.reader.get(&claim).unwrap().is_none(),
        "claim {claim} kept"
    );
    let listed = control
        .list_nodes(v1::ListNodesRequest { stale: false })
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert!(listed.iter().all(|n| n.id != "a1"), "{listed:?}");

    // Its task is orphaned (kept, as history) and replaced on another node.
    let ts = eventually("a1's task replaced", || {
        let ts = tasks(&m);
        let per = live_per_node(&ts);
        (!per.contains_key("a1") && per.values().sum::<usize>() == 3).then_some(ts)
    })
    .await;
    let old: Vec<&Task> = ts
        .iter()
        .filter(|t| t.node.as_deref() == Some("a1"))
        .collect();
    assert_eq!(old.len(), 1, "{ts:#?}");
    assert_eq!(
        (old[0].observed, old[0].desired),
        (ObservedState::Orphaned, DesiredState::Shutdown)
    );
    assert_eq!(
        old[0].reason.as_deref(),
        Some("its node a1 left the cluster")
    );

    // Its session ends, and its agent is refused when it registers again.
    let mut refused = a1.refused.clone();
    let status = tokio::time::timeout(WAIT, refused.wait_for(Option::is_some))
        .await
        .expect("the removed node's session ends")
        .unwrap()
        .clone()
        .unwrap();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("removed"), "{status:?}");
    assert_code(
        a1.client.register(register_request("a1")).await,
        Code::NotFound,
        &["unknown node id"],
    );

    // Its subnet is free: the next new node gets it.
    let a4 = agent(&ca, &m, "a4").await;
    assert_eq!(a4.subnet, a1.subnet);

    // A node that went down is removed without force, by id.
    drop(a3);
    eventually("a3 down", || {
        node(&m, "a3").filter(|n| n.status == NodeStatus::Down)
    })
    .await;
    control.remove_node(remove("a3", false)).await.unwrap();
    assert!(node(&m, "a3").is_none());
    assert_code(
        control.remove_node(remove("a3", false)).await,
        Code::NotFound,
        &["a3"],
    );
}
