//! Forwarding a join from a follower to the leader's mutual-TLS listener, marked as
//! forwarded and sent with this member's certificate, so that it is never forwarded twice.

use berth_proto::v1::join_client::JoinClient;
use berth_proto::v1::{JoinClusterRequest, JoinClusterResponse};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};
use tracing::debug;

use super::JoinService;
use crate::api::control::{ControlError, FORWARD_TIMEOUT, FORWARDED_BY};

impl JoinService {
    /// The leader's answer to `message`, given what openraft said about the leader.
    pub(super) async fn forward(
        &self,
        error: ControlError,
        forwarded: bool,
        message: JoinClusterRequest,
    ) -> Result<Response<JoinClusterResponse>, Status> {
        let ControlError::NotLeader { leader_id, addr } = error else {
            return Err(error.into());
        };
        if forwarded {
            return Err(ControlError::ForwardedToFollower {
                id: self.id,
                leader_id,
            }
            .into());
        }
        let leader_id = leader_id.ok_or(ControlError::NoLeader)?;
        if leader_id == self.id {
            return Err(ControlError::NoLeader.into());
        }
        let addr = match addr {
            Some(addr) => addr,
            None => {
                let metrics = self.raft.metrics();
                let metrics = metrics.borrow();
                metrics
                    .membership_config
                    .membership()
                    .get_node(&leader_id)
                    .map(|n| n.addr.clone())
                    .ok_or(ControlError::NoLeader)?
            }
        };
        let unreachable = |reason: String| -> Status {
            ControlError::LeaderUnreachable {
                leader_id,
                addr: addr.clone(),
                reason,
            }
            .into()
        };
        let channel = self
            .connector
            .channel(&addr)
            .map_err(|e| unreachable(e.to_string()))?;
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(FORWARDED_BY, MetadataValue::from(self.id));
        request.set_timeout(FORWARD_TIMEOUT);
        debug!(leader = leader_id, %addr, "forwarding a join to the leader");
        let mut client = JoinClient::new(channel);
        match tokio::time::timeout(FORWARD_TIMEOUT, client.join_cluster(request)).await {
            Err(_) => Err(unreachable(format!("no answer within {FORWARD_TIMEOUT:?}"))),
            Ok(Err(status))
                if std::error::Error::source(&status)
                    .is_some_and(|e| e.is::<tonic::transport::Error>()) =>
            {
                Err(unreachable(status.to_string()))
            }
            Ok(result) => result,
        }
    }
}
