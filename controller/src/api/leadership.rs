//! What a member's Raft node knows of the leader, for the services that only the leader
//! serves (sessions, the relay) and say where the leader is otherwise.

use openraft::Raft;

use crate::raft::{NodeId, TypeConfig};

/// Who leads, as member `id` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// This member leads.
    Leading,
    /// Another member leads, or none is known.
    Elsewhere {
        /// The leader, if known.
        leader_id: Option<NodeId>,
        /// Its address in the membership, if known.
        addr: Option<String>,
    },
}

/// What member `id`'s `raft` knows of the leader now.
pub fn leadership(raft: &Raft<TypeConfig>, id: NodeId) -> Leadership {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    if m.current_leader == Some(id) && m.state.is_leader() {
        return Leadership::Leading;
    }
    let leader_id = m.current_leader.filter(|l| *l != id);
    let addr = leader_id.and_then(|l| {
        m.membership_config
            .membership()
            .get_node(&l)
            .map(|n| n.addr.clone())
    });
    Leadership::Elsewhere { leader_id, addr }
}
