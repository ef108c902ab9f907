//! The errors of the `Join` service and their one mapping to gRPC statuses.

use tonic::Status;

use crate::api::control::ControlError;
use crate::pki::{PkiError, Role, TokenError};
use crate::raft::NodeId;

/// Why a join was refused or failed. No message includes a token's secret.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// A field of the request is missing or invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The request field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The token is not a join token at all.
    #[error("malformed join token: {0}")]
    MalformedToken(TokenError),
    /// The token pins another CA, or its secret does not match the stored one.
    #[error("join token refused: {0}")]
    Unauthenticated(TokenError),
    /// The token is of another role than the node joins as.
    #[error("join token refused: {0}")]
    WrongRole(TokenError),
    /// The certificate signing request is unusable.
    #[error(transparent)]
    Csr(PkiError),
    /// The cluster has no stored token for the role yet (the first member seeds them).
    #[error(
        "the cluster has no {role} join token yet (it is seeded from the first member's join-tokens.json once a leader is elected); retry"
    )]
    NoToken {
        /// The role.
        role: Role,
    },
    /// A controller asked for a Raft id another address holds.
    #[error(
        "controller id {id} is already in the membership at {existing}, not {requested}; pick another --id or remove member {id} first"
    )]
    IdTaken {
        /// The id.
        id: NodeId,
        /// The address it has in the membership.
        existing: String,
        /// The address the joining controller advertises.
        requested: String,
    },
    /// A Join call reached the mutual-TLS listener without being forwarded by a controller.
    #[error("{0}")]
    NotForwarded(String),
    /// Signing failed.
    #[error("cannot issue the certificate: {0}")]
    Issue(PkiError),
    /// Not the leader, no quorum, the store, forwarding.
    #[error(transparent)]
    Control(#[from] ControlError),
}

impl From<JoinError> for Status {
    fn from(e: JoinError) -> Self {
        let message = e.to_string();
        match e {
            JoinError::Invalid { .. } | JoinError::MalformedToken(_) | JoinError::Csr(_) => {
                Status::invalid_argument(message)
            }
            JoinError::Unauthenticated(_) => Status::unauthenticated(message),
            JoinError::WrongRole(_) | JoinError::NotForwarded(_) => {
                Status::permission_denied(message)
            }
            JoinError::NoToken { .. } => Status::unavailable(message),
            JoinError::IdTaken { .. } => Status::failed_precondition(message),
            JoinError::Issue(_) => Status::internal(message),
            JoinError::Control(e) => e.into(),
        }
    }
}

/// Sorts a failed token check: a token of the other role is denied, a wrong CA or secret is
/// not authenticated.
pub(super) fn token_refused(e: PkiError) -> JoinError {
    match e {
        PkiError::Token(e @ TokenError::WrongRole { .. }) => JoinError::WrongRole(e),
        PkiError::Token(e) => JoinError::Unauthenticated(e),
        other => JoinError::Issue(other),
    }
}
