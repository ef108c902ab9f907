//! The `berth.v1.Join` service: a node with a join token but no certificate gets one.
//!
//! It is served on each member's join listener, whose TLS lets a client without a
//! certificate through and which serves nothing else ([`crate::transport::MtlsListener::serve_join`]),
//! and, for calls forwarded by another member only, on the mutual-TLS listener.
//!
//! A join is decided on the leader (`leader.rs`): the request's fields are checked
//! (`check.rs`, pure), the leader confirms its leadership so that its read of the stored token
//! is linearizable (a token refused everywhere as soon as its rotation commits, even by a
//! partitioned follower, which cannot forward), the token is verified against the stored
//! token of the role (`tokens/<role>`: the SHA-256 of its secret, compared in constant time),
//! then the CA signs the public key of the node's CSR. An agent gets a fresh random id and a
//! node record `nodes/<id>` (written with `Expect::Absent`, so ids never collide); a
//! controller gets the Raft id it asked for unless the membership holds it at another
//! address, and the CA key with its certificate (every controller signs joins). A member
//! that is not the leader forwards the call to the leader's mutual-TLS listener with its own
//! certificate (`forward.rs`). A refused join writes nothing.
//!
//! The stored tokens are seeded into the replicated state from the first member's
//! `join-tokens.json` by whichever member holding that file is leader (`seed.rs`).

use std::sync::Arc;

use berth_proto::v1::join_server::{Join, JoinServer};
use berth_proto::v1::{JoinClusterRequest, JoinClusterResponse};
use ipnet::Ipv4Net;
use openraft::Raft;
use tonic::{Request, Response, Status};
use tracing::{debug, info};

use crate::api::control::{ControlError, FORWARDED_BY};
use crate::pki::{ClusterCa, Role};
use crate::raft::{KvReader, NodeId, TypeConfig};
use crate::transport::{MtlsConnector, peer_info};

mod check;
mod error;
mod forward;
mod leader;
mod seed;

#[cfg(test)]
mod tests;

pub use check::MAX_HOSTNAMES;
pub use error::JoinError;
pub use seed::{SEED_RETRY, SeedRecord, seed_records, spawn_seeder};

/// The largest join request accepted, in bytes.
pub const MAX_JOIN_REQUEST_BYTES: usize = 64 * 1024;

/// What a joining node is told about the cluster, besides its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFacts {
    /// The cluster's name.
    pub name: String,
    /// The range node subnets are cut from.
    pub node_range: Ipv4Net,
    /// The prefix length of each node's subnet.
    pub node_prefix: u8,
    /// The range services' virtual IPs are allocated from.
    pub service_range: Ipv4Net,
    /// How node subnets reach each other.
    pub overlay: crate::state::OverlayMode,
}

/// Serves `Join` for one member.
#[derive(Clone)]
pub struct JoinService {
    raft: Raft<TypeConfig>,
    reader: KvReader,
    connector: MtlsConnector,
    id: NodeId,
    ca: Arc<ClusterCa>,
    cluster: Arc<ClusterFacts>,
}

impl std::fmt::Debug for JoinService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinService")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl JoinService {
    /// The service of member `id`: `raft` and `reader` are its Raft node and store,
    /// `connector` dials the leader with its controller certificate, `ca` (with its key)
    /// signs the joining nodes' certificates.
    pub fn new(
        raft: Raft<TypeConfig>,
        reader: KvReader,
        connector: MtlsConnector,
        id: NodeId,
        ca: Arc<ClusterCa>,
        cluster: ClusterFacts,
    ) -> Self {
        Self {
            raft,
            reader,
            connector,
            id,
            ca,
            cluster: Arc::new(cluster),
        }
    }

    /// This service wrapped for a tonic server, with the request size limit set.
    pub fn into_server(self) -> JoinServer<Self> {
        JoinServer::new(self).max_decoding_message_size(MAX_JOIN_REQUEST_BYTES)
    }

    /// Checks where the call came from; returns whether another member forwarded it. On the
    /// join listener anyone may call (the token is the credential); on the mutual-TLS
    /// listener only a member forwarding a join.
    fn accept<T>(&self, request: &Request<T>) -> Result<bool, JoinError> {
        let Some(peer) = peer_info(request) else {
            return Ok(false);
        };
        if peer.identity.role == Role::Controller && request.metadata().contains_key(FORWARDED_BY) {
            debug!(from = %peer, "join forwarded by a member");
            return Ok(true);
        }
        Err(JoinError::NotForwarded(format!(
            "{} may not call Join on the mutual-TLS listener: joining nodes use the join listener",
            peer.identity
        )))
    }
}

#[tonic::async_trait]
impl Join for JoinService {
    async fn join_cluster(
        &self,
        request: Request<JoinClusterRequest>,
    ) -> Result<Response<JoinClusterResponse>, Status> {
        let forwarded = self.accept(&request)?;
        let message = request.into_inner();
        match self.join_local(&message).await {
            Err(JoinError::Control(e @ ControlError::NotLeader { .. })) => {
                self.forward(e, forwarded, message).await
            }
            Err(e) => {
                info!(role = ?message.role(), name = %message.name, error = %e, "join refused");
                Err(e.into())
            }
            Ok(answer) => Ok(Response::new(answer)),
        }
    }
}
