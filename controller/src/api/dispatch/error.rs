//! The errors of the `Dispatcher` service and their one mapping to gRPC statuses.

use tonic::Status;
use tonic::metadata::MetadataValue;

use crate::api::control::ControlError;
use crate::raft::NodeId;
use crate::state::StateError;

/// The response metadata key naming the leader's address on an UNAVAILABLE answer from a
/// member that is not the leader.
pub const LEADER_METADATA: &str = "x-berth-leader";

/// Why a `Dispatcher` call failed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// This member is not the leader: the agent reconnects to the leader.
    #[error(
        "this controller (member {id}) is not the leader; {}",
        match (leader_id, addr) {
            (Some(l), Some(a)) => format!("connect to the leader, member {l} at {a}"),
            (Some(l), None) => format!("the leader is member {l} (address not known); retry"),
            (None, _) => "no leader is known; retry".to_owned(),
        }
    )]
    NotLeader {
        /// This member.
        id: NodeId,
        /// The leader it knows of.
        leader_id: Option<NodeId>,
        /// The leader's address, if known.
        addr: Option<String>,
    },
    /// The session is not known to this leader.
    #[error("session {session} is not known to this leader ({why}); register again")]
    UnknownSession {
        /// The session id sent.
        session: String,
        /// Expired, replaced, or never seen (leader changed).
        why: &'static str,
    },
    /// The caller's certificate names a node the state does not hold (never joined, or
    /// removed).
    #[error(
        "node {node} is not a node of this cluster (unknown node id): join it with an agent \
         token first"
    )]
    UnknownNode {
        /// The node the certificate names.
        node: String,
    },
    /// The session belongs to another node than the caller's certificate names.
    #[error("session {session} belongs to another node, not to node {node}")]
    NotYourSession {
        /// The session id sent.
        session: String,
        /// The caller.
        node: String,
    },
    /// A field of the request is missing or invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The request field (with its index for repeated ones).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No container subnet can be given to the node.
    #[error("cannot give node {node} a container subnet: {source}")]
    Subnet {
        /// The node.
        node: String,
        /// Why.
        source: StateError,
    },
    /// Concurrent writes to the record won every attempt.
    #[error("the record {key} kept changing during {attempts} attempts to write it; retry")]
    Contended {
        /// The record's key.
        key: String,
        /// How many read-decide-write rounds were tried.
        attempts: usize,
    },
    /// The leader is shutting its sessions down (it lost leadership or stops).
    #[error("this controller stopped serving sessions (it is no longer the leader); reconnect")]
    Closed,
    /// The store, Raft, or no quorum.
    #[error(transparent)]
    Control(#[from] ControlError),
}

impl DispatchError {
    /// An invalid field.
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<DispatchError> for Status {
    fn from(e: DispatchError) -> Self {
        let message = e.to_string();
        match e {
            DispatchError::NotLeader { addr, .. } => {
                let mut status = Status::unavailable(message);
                if let Some(value) = addr.and_then(|a| MetadataValue::try_from(a).ok()) {
                    status.metadata_mut().insert(LEADER_METADATA, value);
                }
                status
            }
            DispatchError::Closed => Status::unavailable(message),
            DispatchError::UnknownSession { .. } | DispatchError::UnknownNode { .. } => {
                Status::not_found(message)
            }
            DispatchError::NotYourSession { .. } => Status::permission_denied(message),
            DispatchError::Invalid { .. } => Status::invalid_argument(message),
            DispatchError::Subnet { .. } => Status::resource_exhausted(message),
            DispatchError::Contended { .. } => Status::aborted(message),
            DispatchError::Control(c) => c.into(),
        }
    }
}
