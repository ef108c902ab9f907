//! Why a relayed request could not reach its node.

use std::time::Duration;

use tonic::Status;

/// Why [`super::Relay`] could not connect a request to its node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The node has no session with this leader.
    #[error(
        "node {node} is not connected to the leader (it is down, or has not registered since the last leader change)"
    )]
    NotConnected {
        /// The node's id.
        node: String,
    },
    /// The node did not answer the request in time.
    #[error("node {node} did not answer within {waited:?}")]
    Timeout {
        /// The node's id.
        node: String,
        /// How long the relay waited.
        waited: Duration,
    },
    /// An `Attach` named a request the relay does not wait for.
    #[error(
        "request {request} is unknown to this controller, belongs to another node, or is no longer waited for"
    )]
    UnknownRequest {
        /// The request id.
        request: String,
    },
}

impl From<RelayError> for Status {
    fn from(e: RelayError) -> Self {
        match e {
            RelayError::NotConnected { .. } => Status::failed_precondition(e.to_string()),
            RelayError::Timeout { .. } => Status::deadline_exceeded(e.to_string()),
            RelayError::UnknownRequest { .. } => Status::not_found(e.to_string()),
        }
    }
}
