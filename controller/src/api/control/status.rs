//! `Status`: this member's view of Raft, from its metrics.

use berth_proto::v1::{ControlStatus, ControllerMember};
use openraft::ServerState;

use super::ControlService;

impl ControlService {
    /// The Raft status as this member sees it.
    pub(super) fn status_local(&self) -> ControlStatus {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let member = |id: u64| ControllerMember {
            id,
            addr: membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default(),
        };
        let leader_addr = metrics
            .current_leader
            .and_then(|id| membership.get_node(&id))
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        ControlStatus {
            id: metrics.id,
            leader_id: metrics.current_leader,
            leader_addr,
            state: match metrics.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .to_owned(),
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            last_applied: metrics.last_applied.map(|l| l.index),
            voters: membership.voter_ids().map(member).collect(),
            learners: membership.learner_ids().map(member).collect(),
            version: Some(berth_proto::version_info()),
        }
    }
}
