//! `UpdateNode`: a node's labels and availability, as an administrator sets them. One
//! read-decide-write round on the leader like the service writes (`ops.rs`): the decision is
//! the pure [`update`], the write expects the record version that was read, so a concurrent
//! heartbeat or registration makes it read and decide again rather than be overwritten.

use berth_proto::v1;
use tracing::{debug, info};

use super::ControlService;
use super::error::ControlError;
use super::ops::WRITE_ATTEMPTS;
use crate::api::store::{self, Written, encode};
use crate::raft::{Expect, Op};
use crate::state::{Availability, Node, keys, wire};

/// `node` with `request`'s changes, or `None` when they change nothing.
pub fn update(node: &Node, request: &v1::UpdateNodeRequest) -> Result<Option<Node>, ControlError> {
    if request.label_add.keys().any(|k| k.trim().is_empty())
        || request.label_rm.iter().any(|k| k.trim().is_empty())
    {
        return Err(ControlError::InvalidNodeUpdate(
            "a label key is empty".to_owned(),
        ));
    }
    let mut next = node.clone();
    for (k, v) in &request.label_add {
        next.labels.insert(k.clone(), v.clone());
    }
    for k in &request.label_rm {
        next.labels.remove(k);
    }
    match request.availability() {
        v1::NodeAvailability::Unspecified => {}
        v1::NodeAvailability::Active => next.availability = Availability::Active,
        v1::NodeAvailability::Drain => next.availability = Availability::Drain,
        v1::NodeAvailability::Pause => next.availability = Availability::Pause,
    }
    Ok((next != *node).then_some(next))
}

impl ControlService {
    /// `UpdateNode` on the leader.
    pub(super) async fn update_node_local(
        &self,
        request: &v1::UpdateNodeRequest,
    ) -> Result<v1::UpdateNodeResponse, ControlError> {
        let key = keys::node(&request.node);
        let mut linearized = false;
        for attempt in 1..=WRITE_ATTEMPTS {
            let found: Option<(u64, Node)> = store::read(&self.reader, &key).await?;
            let decided = match &found {
                None => Err(ControlError::NodeNotFound(request.node.clone())),
                Some((_, node)) => update(node, request),
            };
            if !linearized && matches!(decided, Ok(None) | Err(_)) {
                // Nothing to write: confirm on a linearized read before answering.
                self.linearizer.linearize().await?;
                linearized = true;
                continue;
            }
            let Some((version, node)) = found else {
                return Err(ControlError::NodeNotFound(request.node.clone()));
            };
            let Some(next) = decided? else {
                return Ok(v1::UpdateNodeResponse {
                    node: Some(wire::node_to_wire(&node)),
                    changed: false,
                });
            };
            let op = Op::Put {
                key: key.clone(),
                value: encode(&key, &next)?,
                expect: Expect::Version(version),
            };
            match store::propose(&self.proposer, op).await? {
                Written::Applied => {
                    info!(node = %request.node, availability = ?next.availability, labels = ?next.labels, "node updated");
                    return Ok(v1::UpdateNodeResponse {
                        node: Some(wire::node_to_wire(&next)),
                        changed: true,
                    });
                }
                Written::Conflict { actual } => {
                    debug!(node = %request.node, attempt, ?actual, "node update lost a race; reading again");
                }
            }
        }
        Err(ControlError::Contended {
            key,
            attempts: WRITE_ATTEMPTS,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::{NodeResources, NodeStatus};

    fn node() -> Node {
        Node {
            id: "n1".into(),
            hostname: "h1".into(),
            address: "10.0.0.1".into(),
            labels: BTreeMap::from([("disk".into(), "ssd".into())]),
            resources: NodeResources::default(),
            status: NodeStatus::Ready,
            availability: Availability::Active,
            last_seen: None,
            subnet: None,
            agent_version: None,
        }
    }

    #[test]
    fn labels_are_added_then_removed_and_availability_set() {
        let request = v1::UpdateNodeRequest {
            node: "n1".into(),
            label_add: [("zone".into(), "a".into())].into(),
            label_rm: vec!["disk".into()],
            availability: v1::NodeAvailability::Drain as i32,
        };
        let next = update(&node(), &request).expect("valid").expect("a change");
        assert_eq!(next.labels, BTreeMap::from([("zone".into(), "a".into())]));
        assert_eq!(next.availability, Availability::Drain);
    }

    #[test]
    fn no_change_is_none() {
        let request = v1::UpdateNodeRequest {
            node: "n1".into(),
            label_add: [("disk".into(), "ssd".into())].into(),
            label_rm: vec!["absent".into()],
            availability: v1::NodeAvailability::Active as i32,
        };
        assert_eq!(update(&node(), &request).expect("valid"), None);
    }

    #[test]
    fn an_empty_key_is_refused() {
        let request = v1::UpdateNodeRequest {
            node: "n1".into(),
            label_rm: vec![" ".into()],
            ..Default::default()
        };
        assert!(matches!(
            update(&node(), &request),
            Err(ControlError::InvalidNodeUpdate(_))
        ));
    }
}
