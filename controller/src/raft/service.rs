//! The `berth.v1.Raft` gRPC service: receives openraft's messages from the other members.
//!
//! Each call decodes openraft's request (AppendEntries in binary, [`super::codec`], or JSON;
//! the others JSON), hands it to the local [`openraft::Raft`] and answers with the JSON of
//! `Result<Response, RaftError>` exactly as openraft returned it (see [`super::network`] for
//! the other end). Only callers whose
//! certificate names the `controller` role may call it; the connection must come through
//! [`crate::transport::MtlsListener`], which puts the caller's identity into the request.
//!
//! Messages are limited to [`MAX_RAFT_MESSAGE_BYTES`] in both directions by tonic: a larger
//! request is refused before it is decoded (status `OUT_OF_RANGE`).

use berth_proto::v1::raft_server::{Raft as RaftRpc, RaftServer};
use berth_proto::v1::{RaftReply, RaftRequest};
use openraft::Raft;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};
use tracing::debug;

use super::codec;
use super::types::{MAX_BATCH_BYTES, TypeConfig};
use crate::pki::Role;
use crate::transport::authorize_peer;

/// The largest Raft message accepted or sent, in bytes. One log entry may carry a batch of
/// [`MAX_BATCH_BYTES`] of keys and values, and a member of an earlier version sends values hex
/// in JSON (twice their size), so a single entry must fit in twice that plus room for keys and
/// framing; a request of several entries that exceeds it is split by openraft (see
/// `PayloadTooLarge` in the network). Snapshot chunks are JSON arrays of numbers.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 2 * MAX_BATCH_BYTES + 16 * 1024 * 1024;

/// The roles allowed to call the Raft service.
const ALLOWED: &[Role] = &[Role::Controller];

/// Serves openraft's RPCs for one local Raft member.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft<TypeConfig>,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService").finish_non_exhaustive()
    }
}

impl RaftService {
    /// A service delivering calls to `raft`.
    pub fn new(raft: Raft<TypeConfig>) -> Self {
        Self { raft }
    }

    /// This service wrapped for a tonic server, with the message size limits set.
    pub fn into_server(self) -> RaftServer<Self> {
        RaftServer::new(self)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
    }
}

/// Checks the caller and decodes the request's payload (JSON) as `what`.
fn accept<T: DeserializeOwned>(
    request: &Request<RaftRequest>,
    what: &'static str,
) -> Result<T, Status> {
    check_caller(request, what)?;
    serde_json::from_slice(&request.get_ref().payload)
        .map_err(|e| Status::invalid_argument(format!("cannot parse the {what} payload: {e}")))
}

fn check_caller(request: &Request<RaftRequest>, what: &'static str) -> Result<(), Status> {
    let caller = authorize_peer(request, ALLOWED)?;
    debug!(%caller, rpc = what, "Raft RPC");
    Ok(())
}

/// Encodes openraft's result as the reply.
fn reply<T: Serialize, E: Serialize + std::fmt::Display>(
    result: Result<T, E>,
    what: &'static str,
) -> Result<Response<RaftReply>, Status> {
    let error = match &result {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    let payload = serde_json::to_vec(&result)
        .map_err(|e| Status::internal(format!("cannot encode the {what} reply: {e}")))?;
    Ok(Response::new(RaftReply { payload, error }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        check_caller(&request, "AppendEntries")?;
        let rpc = codec::decode_append(&request.get_ref().payload).map_err(|e| {
            Status::invalid_argument(format!("cannot parse the AppendEntries payload: {e}"))
        })?;
        reply(self.raft.append_entries(rpc).await, "AppendEntries")
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = accept(&request, "Vote")?;
        reply(self.raft.vote(rpc).await, "Vote")
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = accept(&request, "InstallSnapshot")?;
        reply(self.raft.install_snapshot(rpc).await, "InstallSnapshot")
    }
}
