//! Forwarding a call that only the leader can answer: find the leader's address, dial its
//! `Control` service with this member's controller certificate and re-send the request,
//! marked as forwarded so that it is never forwarded twice.

use std::time::Duration;

use berth_proto::v1::control_client::ControlClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::debug;

use super::error::ControlError;
use super::{ControlService, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use crate::raft::NodeId;

/// The metadata key naming the member that forwarded a call.
pub const FORWARDED_BY: &str = "x-berth-forwarded-by";
/// How long a forwarded call may take.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

/// A client of the leader's `Control` service.
pub(super) struct Forward {
    client: ControlClient<Channel>,
    leader_id: NodeId,
    addr: String,
}

/// Whether `request` was forwarded by another member.
pub(super) fn is_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_BY)
}

impl ControlService {
    /// A client of the leader, given what openraft said about it. A call that was itself
    /// forwarded is not forwarded again: the leader changed meanwhile and the caller retries.
    pub(super) fn forward_to(
        &self,
        error: ControlError,
        forwarded: bool,
    ) -> Result<Forward, ControlError> {
        let ControlError::NotLeader { leader_id, addr } = error else {
            return Err(error);
        };
        if forwarded {
            return Err(ControlError::ForwardedToFollower {
                id: self.id,
                leader_id,
            });
        }
        let leader_id = leader_id.ok_or(ControlError::NoLeader)?;
        if leader_id == self.id {
            // Elected meanwhile, but not serving as leader yet.
            return Err(ControlError::NoLeader);
        }
        let addr = match addr {
            Some(addr) => addr,
            None => self.leader_addr(leader_id).ok_or(ControlError::NoLeader)?,
        };
        let channel = self
            .channel(&addr)
            .map_err(|reason| ControlError::LeaderUnreachable {
                leader_id,
                addr: addr.clone(),
                reason,
            })?;
        let client = ControlClient::new(channel)
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .max_encoding_message_size(MAX_REQUEST_BYTES);
        debug!(leader = leader_id, %addr, "forwarding to the leader");
        Ok(Forward {
            client,
            leader_id,
            addr,
        })
    }

    /// The address of member `id` in the current membership.
    fn leader_addr(&self, id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// A channel to `addr`, reused while the leader stays the same.
    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut cached = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cached_addr, channel)) = cached.as_ref()
            && cached_addr == addr
        {
            return Ok(channel.clone());
        }
        let channel = self.connector.channel(addr).map_err(|e| e.to_string())?;
        *cached = Some((addr.to_owned(), channel.clone()));
        Ok(channel)
    }

    /// `message` as a request marked as forwarded by this member.
    pub(super) fn forwarded<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(FORWARDED_BY, MetadataValue::from(self.id));
        request.set_timeout(FORWARD_TIMEOUT);
        request
    }
}

impl Forward {
    /// The leader's answer to `call` made with the leader's client; the leader's own errors
    /// pass through unchanged, a failure to reach it says which leader it was.
    pub(super) async fn call<T, F, Fut>(self, call: F) -> Result<Response<T>, Status>
    where
        F: FnOnce(ControlClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let unreachable = |reason: String| -> Status {
            ControlError::LeaderUnreachable {
                leader_id: self.leader_id,
                addr: self.addr.clone(),
                reason,
            }
            .into()
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, call(self.client.clone())).await {
            Err(_) => Err(unreachable(format!("no answer within {FORWARD_TIMEOUT:?}"))),
            Ok(Err(status)) if is_transport_failure(&status) => {
                Err(unreachable(status.to_string()))
            }
            Ok(result) => result,
        }
    }
}

/// Whether the call failed in the transport rather than in the leader's handler.
fn is_transport_failure(status: &Status) -> bool {
    std::error::Error::source(status).is_some_and(|e| e.is::<tonic::transport::Error>())
}
