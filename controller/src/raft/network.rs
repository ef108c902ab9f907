//! openraft's network over gRPC with mutual TLS: how a member calls the others.
//!
//! [`GrpcNetworkFactory`] keeps one lazily connected tonic channel per target member (the
//! address is the target's `BasicNode.addr`, `host:port`), and hands openraft a
//! [`GrpcNetwork`] per replication stream over it. Requests travel in `berth.v1.Raft` (see
//! [`super::service`]): AppendEntries in binary ([`super::codec`]), the others as JSON; the
//! remote's `Result<Response, RaftError>` comes
//! back intact, so a higher vote or a fatal error reaches openraft as
//! [`RPCError::RemoteError`], exactly as openraft would see it in-process.
//!
//! Failures are mapped the way openraft expects: a member that cannot be reached (refused
//! connection, failed TLS handshake: gRPC `UNAVAILABLE` or a transport error) is
//! [`RPCError::Unreachable`], so openraft backs off before retrying it; a call that outlives
//! openraft's deadline is [`RPCError::Timeout`]; an append request of several entries larger
//! than [`APPEND_TARGET_BYTES`] is [`RPCError::PayloadTooLarge`], so openraft sends fewer
//! entries (openraft gives an append request only one heartbeat interval to complete, so a
//! follower catching up on many grouped entries must get them in pieces it can write in time);
//! anything else (a caller refused as not a controller, an undecodable reply) is
//! [`RPCError::Network`].
//!
//! Snapshots are sent in chunks through `InstallSnapshot` by openraft's default
//! `full_snapshot` (the `generic-snapshot-data` feature is off).

use std::collections::HashMap;
use std::future::Future;

use berth_proto::v1::raft_client::RaftClient;
use berth_proto::v1::{RaftReply, RaftRequest};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::codec;
use super::service::MAX_RAFT_MESSAGE_BYTES;
use super::types::{Entry, NodeId, TypeConfig, estimated_bytes};
use crate::transport::MtlsConnector;

/// The error of a Raft RPC whose remote side may answer with `RaftError<NodeId, E>`.
/// The most bytes sent in one append request of several entries; a larger one is split (a
/// single entry goes whole, up to the message limit).
pub const APPEND_TARGET_BYTES: usize = 1024 * 1024;

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

/// Creates the clients openraft uses to reach the other members.
#[derive(Debug)]
pub struct GrpcNetworkFactory {
    id: NodeId,
    connector: MtlsConnector,
    /// One channel per target, with the address it was made for.
    channels: HashMap<NodeId, (String, Channel)>,
}

impl GrpcNetworkFactory {
    /// A factory for member `id`, dialling with `connector` (see
    /// [`crate::pki::client_config`] for the TLS configuration it needs).
    pub fn new(id: NodeId, connector: MtlsConnector) -> Self {
        Self {
            id,
            connector,
            channels: HashMap::new(),
        }
    }

    /// The channel to `target` at `addr`: reused while the address stays the same.
    fn channel(&mut self, target: NodeId, addr: &str) -> Result<Channel, String> {
        if let Some((known, channel)) = self.channels.get(&target)
            && known == addr
        {
            return Ok(channel.clone());
        }
        let channel = self.connector.channel(addr).map_err(|e| e.to_string())?;
        self.channels
            .insert(target, (addr.to_owned(), channel.clone()));
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetworkFactory {
    type Network = GrpcNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> GrpcNetwork {
        let client = self.channel(target, &node.addr).map(|channel| {
            RaftClient::new(channel)
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        });
        GrpcNetwork {
            id: self.id,
            target,
            node: node.clone(),
            client,
        }
    }
}

/// openraft's client for one target member.
#[derive(Debug)]
pub struct GrpcNetwork {
    id: NodeId,
    target: NodeId,
    node: BasicNode,
    /// The gRPC client, or why the target's address is unusable.
    client: Result<RaftClient<Channel>, String>,
}

impl GrpcNetwork {
    /// Sends `payload` (the encoded request) with `call` and decodes the remote's result.
    async fn call<Resp, E, F, Fut>(
        &self,
        kind: RPCTypes,
        payload: Result<Vec<u8>, String>,
        entries: usize,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, RpcError<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(RaftClient<Channel>, RaftRequest) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftReply>, Status>>,
    {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(reason) => {
                let e = AnyError::error(format!("bad address of member {}: {reason}", self.target));
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let payload = payload.map_err(|e| {
            let e = AnyError::error(format!("cannot encode the {kind:?} request: {e}"));
            RPCError::Network(NetworkError::new(&e))
        })?;
        // A request of several entries over the target (or the limit) is split; a lone entry
        // goes whole if it fits the message limit, which leaves room for the protobuf field
        // header around the payload.
        let target = if kind == RPCTypes::AppendEntries {
            APPEND_TARGET_BYTES
        } else {
            MAX_RAFT_MESSAGE_BYTES - 16
        };
        if entries > 1 && payload.len() > target {
            // Let openraft send fewer entries at a time.
            let hint = (entries / 2) as u64;
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        if payload.len() > MAX_RAFT_MESSAGE_BYTES - 16 {
            let e = AnyError::error(format!(
                "{kind:?} request of {} bytes exceeds the limit of {MAX_RAFT_MESSAGE_BYTES} bytes",
                payload.len()
            ));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let timeout = option.hard_ttl();
        let reply = tokio::time::timeout(timeout, call(client, RaftRequest { payload }))
            .await
            .map_err(|_| {
                RPCError::Timeout(Timeout {
                    action: kind,
                    id: self.id,
                    target: self.target,
                    timeout,
                })
            })?
            .map_err(|status| status_error(&status))?
            .into_inner();
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.payload)
            .map_err(|e| {
                let e = AnyError::error(format!(
                    "cannot parse the {kind:?} reply of member {}: {e}",
                    self.target
                ));
                RPCError::Network(NetworkError::new(&e))
            })?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

/// When `entries` (several) are estimated over `target` bytes: how many of the first fit
/// (at least one).
fn entries_that_fit(entries: &[Entry], target: usize) -> Option<usize> {
    if entries.len() < 2 {
        return None;
    }
    let mut total = 0;
    for (i, entry) in entries.iter().enumerate() {
        total += estimated_bytes(entry);
        if total > target {
            return Some(i.max(1));
        }
    }
    None
}

/// Maps a gRPC failure: no connection (`UNAVAILABLE`, or a transport error such as a refused
/// TLS handshake) is unreachable, anything else a network error.
fn status_error<E: std::error::Error>(status: &Status) -> RpcError<E> {
    let transport = std::error::Error::source(status)
        .is_some_and(|source| source.is::<tonic::transport::Error>());
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let e = AnyError::error(text);
    if transport || status.code() == Code::Unavailable {
        RPCError::Unreachable(Unreachable::new(&e))
    } else {
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for GrpcNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        let entries = rpc.entries.len();
        // Refuse an oversized request before spending the time to encode it, with the number
        // of entries that fit, so that openraft's next try is the right size at once.
        if let Some(fit) = entries_that_fit(&rpc.entries, APPEND_TARGET_BYTES) {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit as u64),
            ));
        }
        self.call(
            RPCTypes::AppendEntries,
            codec::encode_append(&rpc).map_err(|e| e.to_string()),
            entries,
            &option,
            |mut client, req| async move { client.append_entries(req).await },
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.call(
            RPCTypes::InstallSnapshot,
            serde_json::to_vec(&rpc).map_err(|e| e.to_string()),
            0,
            &option,
            |mut client, req| async move { client.install_snapshot(req).await },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        self.call(
            RPCTypes::Vote,
            serde_json::to_vec(&rpc).map_err(|e| e.to_string()),
            0,
            &option,
            |mut client, req| async move { client.vote(req).await },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;
    use crate::raft::Expect;
    use crate::raft::types::{Command, Op};

    fn entry(index: u64, value_bytes: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::Group(vec![vec![Op::Put {
                key: format!("k{index}"),
                value: vec![7; value_bytes],
                expect: Expect::Any,
            }]])),
        }
    }

    #[test]
    fn the_estimate_bounds_the_encoded_size_and_splits_before_encoding() {
        for bytes in [0, 10, 1000, 100_000] {
            let e = entry(1, bytes);
            let encoded = codec::encode_entry(&e).len();
            let estimate = estimated_bytes(&e);
            assert!(
                estimate >= encoded,
                "{estimate} < {encoded} for {bytes} bytes"
            );
            assert!(estimate < encoded + 256, "{estimate} far above {encoded}");
        }
        // 600 KB values: one fits 1 MiB, two do not.
        let big: Vec<Entry> = (1..=5).map(|i| entry(i, 600_000)).collect();
        assert_eq!(entries_that_fit(&big, APPEND_TARGET_BYTES), Some(1));
        let small: Vec<Entry> = (1..=8).map(|i| entry(i, 1000)).collect();
        assert_eq!(entries_that_fit(&small, APPEND_TARGET_BYTES), None);
        // A lone entry is never split, whatever its size.
        assert_eq!(entries_that_fit(&big[..1], 10), None);
        let mixed = vec![entry(1, 1000), entry(2, 1000), entry(3, 1_100_000)];
        assert_eq!(entries_that_fit(&mixed, APPEND_TARGET_BYTES), Some(2));
    }
}
