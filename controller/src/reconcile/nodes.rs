//! What a node's state does to the tasks on it, as pure code: the tasks of a node that went
//! down or left the cluster are orphaned (their desired state set to shutdown, so that the
//! node stops them if it comes back: its stale tasks never run beside their replacements),
//! and the tasks of a drained node are stopped. The service reconcilers then replace them.

use std::collections::HashMap;

use super::replicated::ended;
use crate::state::{Availability, DesiredState, Node, NodeStatus, ObservedState, Task};

/// A change the node rules make to one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEffect {
    /// The task.
    pub task_id: String,
    /// Its new observed state, when it changes (orphaned).
    pub observed: Option<ObservedState>,
    /// Why, in words.
    pub reason: String,
}

impl NodeEffect {
    /// Applies the effect to `t` (desired state to shutdown, the observed state, the reason).
    pub fn apply(&self, t: &mut Task, now: i128) {
        t.desired = DesiredState::Shutdown;
        if let Some(o) = self.observed {
            t.observed = o;
        }
        t.reason = Some(self.reason.clone());
        t.updated_at = now;
    }
}

/// The effect of its node on task `t`, if any (`nodes` by id). A task that ended or was
/// never placed is not affected; a task being stopped is orphaned with its node all the same
/// (nobody will report that it stopped).
pub fn effect(t: &Task, nodes: &HashMap<&str, &Node>) -> Option<NodeEffect> {
    if ended(t) || t.observed == ObservedState::Pending {
        return None;
    }
    let node_id = t.node.as_deref()?;
    let orphan = |reason: String| NodeEffect {
        task_id: t.id.clone(),
        observed: Some(ObservedState::Orphaned),
        reason,
    };
    match nodes.get(node_id) {
        None => Some(orphan(format!("its node {node_id} left the cluster"))),
        Some(n) if n.status == NodeStatus::Down => {
            Some(orphan(format!("its node {} is down", n.hostname)))
        }
        Some(n) if n.availability == Availability::Drain && t.desired == DesiredState::Running => {
            Some(NodeEffect {
                task_id: t.id.clone(),
                observed: None,
                reason: format!("its node {} is drained", n.hostname),
            })
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::NodeResources;

    fn node(id: &str, status: NodeStatus, availability: Availability) -> Node {
        Node {
            id: id.into(),
            hostname: format!("host-{id}"),
            address: "192.0.2.1".into(),
            labels: Default::default(),
            resources: NodeResources::default(),
            status,
            availability,
            last_seen: None,
            subnet: None,
            agent_version: None,
        }
    }

    fn task(node: Option<&str>, observed: ObservedState) -> Task {
        Task {
            id: "t".into(),
            service: "web".into(),
            slot: 1,
            spec_version: 1,
            node: node.map(Into::into),
            desired: DesiredState::Running,
            observed,
            address: None,
            exit_code: None,
            reason: None,
            created_at: 0,
            updated_at: 0,
            health: None,
        }
    }

    #[test]
    fn down_and_departed_nodes_orphan_their_live_tasks_and_drained_ones_stop_them() {
        let (down, drained, fine) = (
            node("d", NodeStatus::Down, Availability::Active),
            node("r", NodeStatus::Ready, Availability::Drain),
            node("f", NodeStatus::Ready, Availability::Active),
        );
        let nodes: HashMap<&str, &Node> = [("d", &down), ("r", &drained), ("f", &fine)].into();
        let e = effect(&task(Some("d"), ObservedState::Running), &nodes).unwrap();
        assert_eq!(e.observed, Some(ObservedState::Orphaned));
        assert_eq!(e.reason, "its node host-d is down");
        let mut t = task(Some("d"), ObservedState::Running);
        e.apply(&mut t, 9);
        assert_eq!(
            (t.desired, t.observed, t.updated_at),
            (DesiredState::Shutdown, ObservedState::Orphaned, 9)
        );
        let e = effect(&task(Some("x"), ObservedState::Assigned), &nodes).unwrap();
        assert_eq!(e.reason, "its node x left the cluster");
        let e = effect(&task(Some("r"), ObservedState::Running), &nodes).unwrap();
        assert_eq!(
            (e.observed, e.reason.as_str()),
            (None, "its node host-r is drained")
        );
        // A task being stopped on a lost node is orphaned too.
        let mut stopping = task(Some("d"), ObservedState::Running);
        stopping.desired = DesiredState::Shutdown;
        assert!(effect(&stopping, &nodes).is_some());
        // Healthy nodes, ended tasks and pending ones are left alone.
        assert_eq!(
            effect(&task(Some("f"), ObservedState::Running), &nodes),
            None
        );
        assert_eq!(
            effect(&task(Some("d"), ObservedState::Failed), &nodes),
            None
        );
        assert_eq!(
            effect(&task(Some("d"), ObservedState::Pending), &nodes),
            None
        );
        assert_eq!(effect(&task(None, ObservedState::Pending), &nodes), None);
    }
}
