//! The errors of the `Control` service and their one mapping to gRPC statuses.

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use tonic::Status;

use crate::raft::{NodeId, ProposeError, StoreError};
use crate::state::StateError;

/// Why a `Control` call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// This member is not the leader: the call is forwarded to `leader_id` (this variant
    /// reaches a caller only if forwarding is impossible).
    #[error("this member is not the leader (the leader is {})", leader_text(*leader_id, addr.as_deref()))]
    NotLeader {
        /// The leader this member knows of.
        leader_id: Option<NodeId>,
        /// Its address, if known.
        addr: Option<String>,
    },
    /// No leader is elected.
    #[error("no leader elected yet; retry")]
    NoLeader,
    /// A call forwarded by another member reached this one, which is not the leader either.
    #[error(
        "forwarded to member {id}, which is not the leader (the leader is {}); retry",
        leader_text(*leader_id, None)
    )]
    ForwardedToFollower {
        /// This member.
        id: NodeId,
        /// The leader it knows of.
        leader_id: Option<NodeId>,
    },
    /// The leader could not be reached to forward the call.
    #[error("cannot reach the leader, member {leader_id} at {addr}: {reason}")]
    LeaderUnreachable {
        /// The leader.
        leader_id: NodeId,
        /// Its address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The request carries no spec.
    #[error("the request carries no service spec")]
    MissingSpec,
    /// No such service.
    #[error("service {0:?} does not exist")]
    NotFound(String),
    /// No such node.
    #[error("node {0:?} does not exist")]
    NodeNotFound(String),
    /// A hostname names several nodes.
    #[error("{hostname:?} is the hostname of {} nodes ({}); name the node by its id", ids.len(), ids.join(", "))]
    AmbiguousNode {
        /// The hostname given.
        hostname: String,
        /// The nodes with that hostname.
        ids: Vec<String>,
    },
    /// A READY node cannot be removed without `force`.
    #[error(
        "node {hostname} ({id}) is ready: drain it (`berth node drain`) and stop its agent \
         (`berth cluster leave` on it) first, or remove it anyway with --force"
    )]
    NodeReady {
        /// The node.
        id: String,
        /// Its hostname.
        hostname: String,
    },
    /// A node update is malformed.
    #[error("invalid node update: {0}")]
    InvalidNodeUpdate(String),
    /// A rollout action that does not apply to the service as it is.
    #[error("{0}")]
    Rollout(String),
    /// A spec is invalid or the caller's expected version is not the current one.
    #[error(transparent)]
    State(#[from] StateError),
    /// The store refused the write as breaking a limit; nothing changed.
    #[error("the write was refused: {0}")]
    InvalidWrite(String),
    /// Concurrent writes to the same key won every attempt.
    #[error("the record {key} kept changing during {attempts} attempts to write it; retry")]
    Contended {
        /// The record's key.
        key: String,
        /// How many read-decide-write rounds were tried.
        attempts: usize,
    },
    /// Raft could not serve the call (no quorum, shutting down, …).
    #[error("Raft: {0}")]
    Raft(String),
    /// The leader did not confirm its leadership in time.
    #[error("the leader did not confirm its leadership within {0:?}; retry")]
    ReadTimeout(Duration),
    /// A write was not committed in time; it may still be.
    #[error("the write was not committed within {0:?} and may still be; read the state and retry")]
    WriteTimeout(Duration),
    /// Reading the local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record does not decode.
    #[error("cannot decode the stored record {key}: {source}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The store answered a single write with a group's answer (a bug).
    #[error("the store answered a single write with a group's answer")]
    UnexpectedGroup,
    /// This member serves no nodes, so it cannot reach any (logs, exec, images).
    #[error("this controller does not serve node sessions, so it cannot reach the nodes")]
    NoNodeSessions,
    /// No task or service matches a logs or exec target.
    #[error("no service or task named {0:?} (see `berth ls` and `berth ps`)")]
    NoSuchTarget(String),
    /// A task id prefix matches several tasks.
    #[error("{prefix:?} matches {count} tasks; give more of the task id")]
    AmbiguousTask {
        /// The prefix given.
        prefix: String,
        /// How many tasks it matches.
        count: usize,
    },
    /// The task has no running container to reach.
    #[error("task {task} is {state}, not running{}", service.as_ref().map(|s| format!(" (service {s:?} has no running task)")).unwrap_or_default())]
    NotRunning {
        /// The task.
        task: String,
        /// Its observed state, in words.
        state: String,
        /// The service named as the target, if one was.
        service: Option<String>,
    },
    /// The task was never placed on a node, so it has no logs.
    #[error("task {0} was never placed on a node, so it has no output")]
    NeverPlaced(String),
    /// A relayed request's stream is malformed.
    #[error("{0}")]
    BadStream(String),
    /// The relay could not reach the node.
    #[error(transparent)]
    Relay(#[from] crate::api::relay::RelayError),
    /// A record cannot be encoded.
    #[error("cannot encode the record {key}: {source}")]
    Encode {
        /// Its key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
}

fn leader_text(leader_id: Option<NodeId>, addr: Option<&str>) -> String {
    match (leader_id, addr) {
        (None, _) => "not known".to_owned(),
        (Some(id), None) => format!("member {id}"),
        (Some(id), Some(addr)) => format!("member {id} at {addr}"),
    }
}

impl From<ControlError> for Status {
    fn from(e: ControlError) -> Self {
        let message = e.to_string();
        match e {
            ControlError::NotLeader { .. }
            | ControlError::NoLeader
            | ControlError::ForwardedToFollower { .. }
            | ControlError::LeaderUnreachable { .. }
            | ControlError::Raft(_)
            | ControlError::ReadTimeout(_)
            | ControlError::WriteTimeout(_) => Status::unavailable(message),
            ControlError::MissingSpec
            | ControlError::InvalidWrite(_)
            | ControlError::InvalidNodeUpdate(_) => Status::invalid_argument(message),
            ControlError::NotFound(_)
            | ControlError::NodeNotFound(_)
            | ControlError::NoSuchTarget(_) => Status::not_found(message),
            ControlError::AmbiguousTask { .. }
            | ControlError::AmbiguousNode { .. }
            | ControlError::BadStream(_) => Status::invalid_argument(message),
            ControlError::NotRunning { .. }
            | ControlError::Rollout(_)
            | ControlError::NeverPlaced(_)
            | ControlError::NodeReady { .. }
            | ControlError::NoNodeSessions => Status::failed_precondition(message),
            ControlError::Relay(e) => e.into(),
            ControlError::State(
                StateError::StaleVersion { .. } | StateError::NoSuchService { .. },
            ) => Status::failed_precondition(message),
            ControlError::State(_) => Status::invalid_argument(message),
            ControlError::Contended { .. } => Status::aborted(message),
            ControlError::Store(_)
            | ControlError::Corrupt { .. }
            | ControlError::Encode { .. }
            | ControlError::UnexpectedGroup => Status::internal(message),
        }
    }
}

fn not_leader(f: ForwardToLeader<NodeId, BasicNode>) -> ControlError {
    ControlError::NotLeader {
        leader_id: f.leader_id,
        addr: f.leader_node.map(|n| n.addr),
    }
}

impl From<RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>> for ControlError {
    fn from(e: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => not_leader(f),
            RaftError::APIError(other) => ControlError::Raft(other.to_string()),
            RaftError::Fatal(f) => ControlError::Raft(f.to_string()),
        }
    }
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>> for ControlError {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
            RaftError::APIError(other) => ControlError::Raft(other.to_string()),
            RaftError::Fatal(f) => ControlError::Raft(f.to_string()),
        }
    }
}

impl From<ProposeError> for ControlError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::Invalid(reason) => ControlError::InvalidWrite(reason),
            ProposeError::Raft(e) => e.into(),
            ProposeError::Stopped => ControlError::Raft(e.to_string()),
        }
    }
}
