//! `AddMember` and `RemoveMember`: changing the Raft membership at runtime.
//!
//! Only an admin may change the membership; a controller certificate is accepted on a call
//! another member forwarded, and on `AddMember` of the caller's own id (a controller that
//! joined with a token asks to be added). The leader carries the change out (a follower forwards it):
//! a new member is first added as a learner and the call waits until it has caught up with
//! the log ([`openraft::Raft::add_learner`] blocking), then it is promoted to a voter; a
//! removed member leaves the membership entirely. Both changes are relative to the current
//! membership ([`ChangeMembers::AddVoterIds`], [`ChangeMembers::RemoveVoters`]), so two
//! concurrent changes of different members cannot undo one another.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use berth_proto::v1::{AddMemberRequest, ControlStatus, RemoveMemberRequest};
use openraft::{BasicNode, ChangeMembers, Membership};
use tonic::{Request, Response, Status};
use tracing::{debug, info};

use super::error::ControlError;
use super::{ALLOWED, ControlService, FORWARD_TIMEOUT, forward};
use crate::api::store::READ_TIMEOUT;
use crate::pki::Role;
use crate::raft::NodeId;
use crate::transport::authorize_peer;

/// How long the leader may take to carry out a membership change, catching the new member
/// up included: less than [`FORWARD_TIMEOUT`], so that a forwarded call gets its answer.
pub const MEMBER_CHANGE_TIMEOUT: Duration = Duration::from_secs(12);

const _: () = assert!(MEMBER_CHANGE_TIMEOUT.as_secs() < FORWARD_TIMEOUT.as_secs());

/// Why a membership change failed.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// Raft ids start at 1.
    #[error("member id 0 is not valid (ids start at 1)")]
    InvalidId,
    /// The address is not `host:port`.
    #[error("member address {addr:?} is not host:port: {reason}")]
    InvalidAddr {
        /// The address given.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The id is already a member, reached at another address.
    #[error(
        "member {id} is already in the membership at {existing}, not {requested}; remove it first"
    )]
    AddressConflict {
        /// The member.
        id: NodeId,
        /// Its address in the membership.
        existing: String,
        /// The address asked for.
        requested: String,
    },
    /// Removing the only voter would leave no one to commit.
    #[error("member {id} is the last voter and cannot be removed")]
    LastVoter {
        /// The member.
        id: NodeId,
    },
    /// The id is neither a voter nor a learner.
    #[error("member {id} is not in the membership (voters {voters:?}, learners {learners:?})")]
    UnknownMember {
        /// The id asked for.
        id: NodeId,
        /// The current voters.
        voters: Vec<NodeId>,
        /// The current learners.
        learners: Vec<NodeId>,
    },
    /// The change did not finish in time.
    #[error(
        "changing member {id} did not finish within {after:?} and may still; read Status and retry"
    )]
    Timeout {
        /// The member.
        id: NodeId,
        /// How long it was given.
        after: Duration,
    },
    /// Not the leader, no quorum, a change already in progress, …
    #[error(transparent)]
    Control(#[from] ControlError),
}

impl From<MemberError> for Status {
    fn from(e: MemberError) -> Self {
        let message = e.to_string();
        match e {
            MemberError::InvalidId | MemberError::InvalidAddr { .. } => {
                Status::invalid_argument(message)
            }
            MemberError::AddressConflict { .. } | MemberError::LastVoter { .. } => {
                Status::failed_precondition(message)
            }
            MemberError::UnknownMember { .. } => Status::not_found(message),
            MemberError::Timeout { .. } => Status::unavailable(message),
            MemberError::Control(e) => e.into(),
        }
    }
}

/// Checks `addr` as `host:port` the way the members dial it: a host name or an IP address
/// (IPv6 in brackets) and a port from 1 to 65535.
fn check_addr(addr: &str) -> Result<(), MemberError> {
    let bad = |reason| MemberError::InvalidAddr {
        addr: addr.to_owned(),
        reason,
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    match port.parse::<u16>() {
        Ok(p) if p != 0 => {}
        _ => return Err(bad("the port is not 1-65535")),
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match v6.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => Ok(()),
            _ => Err(bad("the bracketed host is not an IPv6 address")),
        };
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if !crate::state::validate::is_host_name(host) {
        return Err(bad("the host is not a host name or an IP address"));
    }
    Ok(())
}

impl ControlService {
    /// Checks the caller of a membership change: an admin, a member forwarding the call, or
    /// (for `AddMember` of its own id, `self_id`) a controller that joined with a token and
    /// asks to be added. Returns whether the call was forwarded.
    pub(super) fn accept_member_change<T>(
        &self,
        request: &Request<T>,
        rpc: &'static str,
        self_id: Option<NodeId>,
    ) -> Result<bool, Status> {
        let caller = authorize_peer(request, ALLOWED)?;
        let forwarded = forward::is_forwarded(request);
        let adds_itself = caller.role == Role::Controller
            && self_id.is_some_and(|id| caller.id == id.to_string());
        if caller.role != Role::Admin && !forwarded && !adds_itself {
            return Err(Status::permission_denied(format!(
                "{rpc} needs an admin certificate, not {caller}"
            )));
        }
        debug!(%caller, rpc, forwarded, "Control call");
        Ok(forwarded)
    }

    /// The membership as this member knows it.
    fn membership(&self) -> Membership<NodeId, BasicNode> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone()
    }

    /// Makes sure this member is the leader before it decides on a change.
    async fn ensure_leader(&self) -> Result<(), ControlError> {
        match tokio::time::timeout(READ_TIMEOUT, self.raft.ensure_linearizable()).await {
            Err(_) => Err(ControlError::ReadTimeout(READ_TIMEOUT)),
            Ok(result) => result.map(|_| ()).map_err(ControlError::from),
        }
    }

    /// The `AddMember` rpc: carried out here on the leader, forwarded to it elsewhere.
    pub(super) async fn add_member_rpc(
        &self,
        request: Request<AddMemberRequest>,
    ) -> Result<Response<ControlStatus>, Status> {
        let forwarded =
            self.accept_member_change(&request, "AddMember", Some(request.get_ref().id))?;
        let message = request.into_inner();
        match self.add_member_local(&message).await {
            Err(MemberError::Control(e @ ControlError::NotLeader { .. })) => {
                let forward = self.forward_to(e, forwarded)?;
                let request = self.forwarded(message);
                forward
                    .call(|mut client| async move { client.add_member(request).await })
                    .await
            }
            result => Ok(Response::new(result?)),
        }
    }

    /// The `RemoveMember` rpc: carried out here on the leader, forwarded to it elsewhere.
    pub(super) async fn remove_member_rpc(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<ControlStatus>, Status> {
        let forwarded = self.accept_member_change(&request, "RemoveMember", None)?;
        let message = request.into_inner();
        match self.remove_member_local(&message).await {
            Err(MemberError::Control(e @ ControlError::NotLeader { .. })) => {
                let forward = self.forward_to(e, forwarded)?;
                let request = self.forwarded(message);
                forward
                    .call(|mut client| async move { client.remove_member(request).await })
                    .await
            }
            result => Ok(Response::new(result?)),
        }
    }

    /// `AddMember` on the leader: a learner first, caught up, then a voter. A voter already
    /// at the same address is left as it is.
    async fn add_member_local(
        &self,
        request: &AddMemberRequest,
    ) -> Result<ControlStatus, MemberError> {
        let (id, addr) = (request.id, request.addr.as_str());
        if id == 0 {
            return Err(MemberError::InvalidId);
        }
        check_addr(addr)?;
        self.ensure_leader().await?;
        let conflict = |existing: &BasicNode| MemberError::AddressConflict {
            id,
            existing: existing.addr.clone(),
            requested: addr.to_owned(),
        };
        let membership = self.membership();
        if let Some(node) = membership.get_node(&id) {
            if node.addr != addr {
                return Err(conflict(node));
            }
            if membership.voter_ids().any(|v| v == id) {
                debug!(member = id, addr, "already a voter");
                return Ok(self.status_local());
            }
        }
        let change = async {
            let added = self
                .raft
                .add_learner(id, BasicNode::new(addr), true)
                .await
                .map_err(ControlError::from)?;
            // A concurrent call may have added the id at another address first.
            if let Some(node) = added.membership.as_ref().and_then(|m| m.get_node(&id))
                && node.addr != addr
            {
                return Err(conflict(node));
            }
            info!(
                member = id,
                addr, "learner caught up; promoting it to voter"
            );
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(ControlError::from)?;
            Ok(())
        };
        tokio::time::timeout(MEMBER_CHANGE_TIMEOUT, change)
            .await
            .map_err(|_| MemberError::Timeout {
                id,
                after: MEMBER_CHANGE_TIMEOUT,
            })??;
        info!(member = id, addr, "member added as a voter");
        Ok(self.status_local())
    }

    /// `RemoveMember` on the leader: a voter or a learner leaves the membership.
    async fn remove_member_local(
        &self,
        request: &RemoveMemberRequest,
    ) -> Result<ControlStatus, MemberError> {
        let id = request.id;
        self.ensure_leader().await?;
        let membership = self.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(MemberError::LastVoter { id });
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if membership.get_node(&id).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(MemberError::UnknownMember {
                id,
                voters,
                learners: membership.learner_ids().collect(),
            });
        };
        tokio::time::timeout(
            MEMBER_CHANGE_TIMEOUT,
            self.raft.change_membership(change, false),
        )
        .await
        .map_err(|_| MemberError::Timeout {
            id,
            after: MEMBER_CHANGE_TIMEOUT,
        })?
        .map_err(ControlError::from)?;
        info!(member = id, "member removed");
        Ok(self.status_local())
    }
}

#[cfg(test)]
mod tests {
    use super::check_addr;

    #[test]
    fn addresses_are_host_and_port() {
        for good in [
            "127.0.0.1:7000",
            "[::1]:7000",
            "controller-2.example:443",
            "c2:1",
        ] {
            assert!(check_addr(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "host",
            "host:0",
            "host:70000",
            ":7000",
            "::1:7000",
            "[127.0.0.1]:7000",
            "http://host:7000",
            "ho st:7000",
            "-host:7000",
            "host..x:7000",
        ] {
            assert!(check_addr(bad).is_err(), "{bad}");
        }
    }
}
