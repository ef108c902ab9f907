//! `RotateToken`: replaces the stored join token of a role with a new one.
//!
//! Admin certificates only (a controller certificate on a call another member forwarded).
//! The leader makes a new token pinning the cluster CA, writes its stored form (the SHA-256
//! of its secret) over the current one, expecting the version it read, and answers the token
//! once: from the commit on, every controller refuses the old token, since joins read the
//! stored token linearizably on the leader.

use berth_proto::v1::{JoinRole, RotateTokenRequest, RotateTokenResponse};
use tonic::{Request, Response, Status};
use tracing::info;

use super::ControlService;
use super::error::ControlError;
use super::ops::WRITE_ATTEMPTS;
use crate::api::join::JoinError;
use crate::api::store::{self, Written};
use crate::pki::{JoinToken, Role, StoredToken};
use crate::raft::{Expect, Op};
use crate::state::keys;

impl ControlService {
    /// The `RotateToken` rpc: carried out here on the leader, forwarded to it elsewhere.
    pub(super) async fn rotate_token_rpc(
        &self,
        request: Request<RotateTokenRequest>,
    ) -> Result<Response<RotateTokenResponse>, Status> {
        let forwarded = self.accept_member_change(&request, "RotateToken", None)?;
        let message = request.into_inner();
        let role = match message.role() {
            JoinRole::Agent => Role::Agent,
            JoinRole::Controller => Role::Controller,
            JoinRole::Unspecified => {
                return Err(JoinError::Invalid {
                    field: "role",
                    reason: "give the role whose token to rotate: agent or controller".into(),
                }
                .into());
            }
        };
        match self.rotate_local(role).await {
            Err(e @ ControlError::NotLeader { .. }) => {
                let forward = self.forward_to(e, forwarded)?;
                let request = self.forwarded(message);
                forward
                    .call(|mut client| async move { client.rotate_token(request).await })
                    .await
            }
            result => Ok(Response::new(result?)),
        }
    }

    /// `RotateToken` on the leader.
    async fn rotate_local(&self, role: Role) -> Result<RotateTokenResponse, ControlError> {
        store::linearize(&self.raft).await?;
        let key = keys::token(role);
        for _ in 0..WRITE_ATTEMPTS {
            let current: Option<(u64, StoredToken)> = store::read(&self.reader, &key).await?;
            let fingerprint = self
                .ca_fingerprint
                .or_else(|| current.as_ref().map(|(_, t)| t.ca_fingerprint))
                .ok_or_else(|| {
                    ControlError::InvalidWrite(
                        "this member does not know the CA fingerprint for a new token".into(),
                    )
                })?;
            let token = JoinToken::generate(role, fingerprint)
                .map_err(|e| ControlError::InvalidWrite(e.to_string()))?;
            let op = Op::Put {
                value: store::encode(&key, &token.stored())?,
                key: key.clone(),
                expect: current.map_or(Expect::Absent, |(v, _)| Expect::Version(v)),
            };
            match store::write(&self.raft, op).await? {
                Written::Applied => {
                    info!(%role, "join token rotated");
                    return Ok(RotateTokenResponse {
                        token: token.to_string(),
                    });
                }
                Written::Conflict { .. } => continue,
            }
        }
        Err(ControlError::Contended {
            key,
            attempts: WRITE_ATTEMPTS,
        })
    }
}
