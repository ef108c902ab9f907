//! `RemoveNode`: deletes a node's record and the claim of its container subnet, as
//! `docker node rm`. One read-decide-write round on the leader like `UpdateNode`
//! (`nodes.rs`): the decision is the pure [`designate`] and [`check_removable`], the write one
//! batch that deletes `nodes/<id>` and `subnets/<cidr>`, each expecting the version that was
//! read, so a registration or a liveness mark racing with the removal makes it read and
//! decide again (a node that just came back READY is then refused without `force`).
//!
//! Nothing else is written here: the orchestrator sees the record go and orphans the node's
//! tasks (`reconcile/nodes.rs`: "left the cluster"), which the reconcilers replace elsewhere;
//! the liveness check ends the session of a node without a record, and `Register` refuses
//! its agent from then on (an unknown node id).

use berth_proto::v1;
use tracing::{debug, info};

use super::ControlService;
use super::error::ControlError;
use super::ops::WRITE_ATTEMPTS;
use crate::api::store::{self, Written};
use crate::raft::{Expect, Op, blocking};
use crate::state::{Node, NodeStatus, keys, wire};

/// The node `name` designates among `nodes` (each with its store version): the one whose id
/// it is, else the only one with that hostname.
pub fn designate<'a>(
    nodes: &'a [(u64, Node)],
    name: &str,
) -> Result<&'a (u64, Node), ControlError> {
    if let Some(found) = nodes.iter().find(|(_, n)| n.id == name) {
        return Ok(found);
    }
    let by_hostname: Vec<&(u64, Node)> = nodes.iter().filter(|(_, n)| n.hostname == name).collect();
    match by_hostname.as_slice() {
        [one] => Ok(one),
        [] => Err(ControlError::NodeNotFound(name.to_owned())),
        many => Err(ControlError::AmbiguousNode {
            hostname: name.to_owned(),
            ids: many.iter().map(|(_, n)| n.id.clone()).collect(),
        }),
    }
}

/// Whether `node` may be removed: not while it is READY, unless `force`.
pub fn check_removable(node: &Node, force: bool) -> Result<(), ControlError> {
    if node.status == NodeStatus::Ready && !force {
        return Err(ControlError::NodeReady {
            id: node.id.clone(),
            hostname: node.hostname.clone(),
        });
    }
    Ok(())
}

impl ControlService {
    /// `RemoveNode` on the leader.
    pub(super) async fn remove_node_local(
        &self,
        request: &v1::RemoveNodeRequest,
    ) -> Result<v1::RemoveNodeResponse, ControlError> {
        if request.node.trim().is_empty() {
            return Err(ControlError::InvalidNodeUpdate(
                "the node to remove is not named".to_owned(),
            ));
        }
        // Every decision is made on a linearized read: a removal acts on what is committed.
        self.linearizer.linearize().await?;
        let mut last_key = keys::node(&request.node);
        for attempt in 1..=WRITE_ATTEMPTS {
            let nodes = self.nodes_versioned().await?;
            let (version, node) = designate(&nodes, &request.node)?;
            check_removable(node, request.force)?;
            let key = keys::node(&node.id);
            let mut ops = vec![Op::Delete {
                key: key.clone(),
                expect: Expect::Version(*version),
            }];
            if let Some(net) = node.subnet {
                let claim = keys::subnet(&net);
                // The claim names the node; one naming another (which the store's checks
                // make impossible) is left alone.
                if let Some((claim_version, owner)) =
                    store::read::<String>(&self.reader, &claim).await?
                    && owner == node.id
                {
                    ops.push(Op::Delete {
                        key: claim,
                        expect: Expect::Version(claim_version),
                    });
                }
            }
            match store::propose_batch(&self.proposer, ops).await? {
                Written::Applied => {
                    info!(node = %node.id, hostname = %node.hostname, status = ?node.status, subnet = ?node.subnet, force = request.force, "node removed");
                    return Ok(v1::RemoveNodeResponse {
                        node: Some(wire::node_to_wire(node)),
                    });
                }
                Written::Conflict { actual } => {
                    debug!(node = %node.id, attempt, ?actual, "node removal lost a race; reading again");
                }
            }
            last_key = key;
        }
        Err(ControlError::Contended {
            key: last_key,
            attempts: WRITE_ATTEMPTS,
        })
    }

    /// Every node record of the local store, with its version.
    async fn nodes_versioned(&self) -> Result<Vec<(u64, Node)>, ControlError> {
        let reader = self.reader.clone();
        let found = blocking(move || reader.list(keys::NODES)).await?;
        found
            .into_iter()
            .map(|(key, version, bytes)| {
                serde_json::from_slice(&bytes)
                    .map(|node| (version, node))
                    .map_err(|source| ControlError::Corrupt { key, source })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Availability, NodeResources};

    fn node(id: &str, hostname: &str, status: NodeStatus) -> (u64, Node) {
        (
            7,
            Node {
                id: id.into(),
                hostname: hostname.into(),
                address: "10.0.0.1".into(),
                labels: Default::default(),
                resources: NodeResources::default(),
                status,
                availability: Availability::Active,
                last_seen: None,
                subnet: None,
                agent_version: None,
            },
        )
    }

    #[test]
    fn a_node_is_designated_by_id_first_then_by_a_unique_hostname() {
        let nodes = [
            node("n1", "web", NodeStatus::Ready),
            node("n2", "n1", NodeStatus::Down),
            node("n3", "db", NodeStatus::Down),
            node("n4", "db", NodeStatus::Down),
        ];
        assert_eq!(designate(&nodes, "n1").unwrap().1.id, "n1");
        assert_eq!(designate(&nodes, "web").unwrap().1.id, "n1");
        let e = designate(&nodes, "db").unwrap_err();
        assert!(
            matches!(&e, ControlError::AmbiguousNode { ids, .. } if ids == &["n3", "n4"]),
            "{e}"
        );
        assert!(matches!(
            designate(&nodes, "nope"),
            Err(ControlError::NodeNotFound(_))
        ));
    }

    #[test]
    fn a_ready_node_is_removed_only_with_force() {
        let (_, ready) = node("n1", "web", NodeStatus::Ready);
        let e = check_removable(&ready, false).unwrap_err();
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        for words in ["web", "drain", "--force"] {
            assert!(status.message().contains(words), "{words}: {status:?}");
        }
        check_removable(&ready, true).unwrap();
        for status in [NodeStatus::Down, NodeStatus::Unknown] {
            let (_, n) = node("n1", "web", status);
            check_removable(&n, false).unwrap();
        }
    }
}
