//! The `berth.v1.Control` service: the client-facing API of the controllers (services, tasks,
//! nodes, the Raft status).
//!
//! Callers must present a certificate of the `admin` role (the CLI) or the `controller` role
//! (another member forwarding a call). Reads are linearizable unless the request asks for a
//! stale read: the leader confirms its leadership ([`openraft::Raft::ensure_linearizable`])
//! and answers from its store. Writes are one read-decide-write round on the leader
//! (`ops.rs`): the decision is [`crate::state::apply_service`]'s, the write one batch whose
//! operation expects the key version that was read, so two concurrent writes cannot both win;
//! the loser reads again and decides again. Writes go through a [`Proposer`], which groups
//! concurrent ones into one Raft entry. A member
//! that is not the leader forwards the call to it (`forward.rs`). Errors map to gRPC statuses
//! in one place ([`ControlError`]).
//!
//! Requests are limited to [`MAX_REQUEST_BYTES`] by tonic: a larger one is refused before it
//! is decoded.

use std::sync::{Arc, Mutex};

use berth_proto::v1::control_server::{Control, ControlServer};
use berth_proto::v1::{
    AddMemberRequest, ApplyServiceRequest, ApplyServiceResponse, ApplyServicesRequest,
    ApplyServicesResponse, ControlStatus, Empty, ExecRequest, GetServiceRequest,
    GetServiceResponse, ImagesResponse, ImportImageRequest, ListImagesRequest, ListNodesRequest,
    ListNodesResponse, ListServicesRequest, ListServicesResponse, ListTasksRequest,
    ListTasksResponse, LogsRequest, RemoveImageRequest, RemoveMemberRequest, RemoveServiceRequest,
    RemoveServiceResponse, RotateTokenRequest, RotateTokenResponse, ScaleServiceRequest,
    UpdateNodeRequest, UpdateNodeResponse, WatchEventsRequest,
};
use openraft::Raft;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use crate::api::linearizer::Linearizer;
use crate::api::relay::Relay;
use crate::pki::{CaFingerprint, Role};
use crate::raft::{KvReader, NodeId, Proposer, TypeConfig};
use crate::transport::{MtlsConnector, authorize_peer};

mod batch;
mod claims;
mod error;
mod events;
mod forward;
mod members;
mod node_io;
mod node_rm;
mod nodes;
mod ops;
mod status;
mod tokens;

pub use batch::MAX_BATCH;
pub use error::ControlError;
pub use forward::{FORWARD_TIMEOUT, FORWARDED_BY};
pub use members::{MEMBER_CHANGE_TIMEOUT, MemberError};

/// The largest request accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// The largest response sent (and accepted from the leader when forwarding), in bytes: a
/// listing of the whole cluster may be larger than any single request.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The roles allowed to call the Control service.
const ALLOWED: &[Role] = &[Role::Admin, Role::Controller];

/// Serves the `Control` API of one member.
#[derive(Clone)]
pub struct ControlService {
    raft: Raft<TypeConfig>,
    /// Writes go through it, grouped with concurrent ones.
    proposer: Proposer,
    /// Linearizable reads go through it, sharing leadership rounds with concurrent ones.
    linearizer: Linearizer,
    reader: KvReader,
    connector: MtlsConnector,
    id: NodeId,
    /// The channel to the leader last forwarded to, by address.
    channels: Arc<Mutex<Option<(String, Channel)>>>,
    /// The cluster CA's fingerprint, which new join tokens pin.
    ca_fingerprint: Option<CaFingerprint>,
    /// The relay to the nodes whose sessions this member serves (logs, exec, images).
    relay: Option<Relay>,
}

impl std::fmt::Debug for ControlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlService")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ControlService {
    /// The service of member `id`: `raft` and `reader` are its Raft node and store;
    /// `connector` dials the leader with this member's controller certificate.
    pub fn new(
        raft: Raft<TypeConfig>,
        reader: KvReader,
        connector: MtlsConnector,
        id: NodeId,
    ) -> Self {
        Self {
            proposer: Proposer::start(raft.clone()),
            linearizer: Linearizer::new(raft.clone()),
            raft,
            reader,
            connector,
            id,
            channels: Arc::new(Mutex::new(None)),
            ca_fingerprint: None,
            relay: None,
        }
    }

    /// The same service, reaching nodes through `relay` (the Dispatcher's of this member).
    pub fn with_relay(mut self, relay: Relay) -> Self {
        self.relay = Some(relay);
        self
    }

    /// The same service, knowing the cluster CA's fingerprint for the join tokens that
    /// `RotateToken` makes (without it, the fingerprint of the token being replaced).
    pub fn with_ca_fingerprint(mut self, fingerprint: CaFingerprint) -> Self {
        self.ca_fingerprint = Some(fingerprint);
        self
    }

    /// This service wrapped for a tonic server, with the message size limits set.
    pub fn into_server(self) -> ControlServer<Self> {
        ControlServer::new(self)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// Checks the caller; returns whether the call was forwarded by another member.
    fn accept<T>(&self, request: &Request<T>, rpc: &'static str) -> Result<bool, Status> {
        let caller = authorize_peer(request, ALLOWED)?;
        let forwarded = forward::is_forwarded(request);
        debug!(%caller, rpc, forwarded, "Control call");
        Ok(forwarded)
    }
}

/// Runs a call locally, or forwards it to the leader when this member is not the leader.
macro_rules! local_or_leader {
    ($self:ident, $request:ident, $rpc:literal, $local:ident, $remote:ident) => {{
        let forwarded = $self.accept(&$request, $rpc)?;
        let message = $request.into_inner();
        match $self.$local(&message).await {
            Err(e @ ControlError::NotLeader { .. }) => {
                let forward = $self.forward_to(e, forwarded)?;
                let request = $self.forwarded(message);
                forward
                    .call(|mut client| async move { client.$remote(request).await })
                    .await
            }
            result => Ok(Response::new(result?)),
        }
    }};
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn apply_service(
        &self,
        request: Request<ApplyServiceRequest>,
    ) -> Result<Response<ApplyServiceResponse>, Status> {
        local_or_leader!(self, request, "ApplyService", apply_local, apply_service)
    }

    async fn get_service(
        &self,
        request: Request<GetServiceRequest>,
    ) -> Result<Response<GetServiceResponse>, Status> {
        local_or_leader!(self, request, "GetService", get_local, get_service)
    }

    async fn list_services(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        local_or_leader!(
            self,
            request,
            "ListServices",
            list_services_local,
            list_services
        )
    }

    async fn remove_service(
        &self,
        request: Request<RemoveServiceRequest>,
    ) -> Result<Response<RemoveServiceResponse>, Status> {
        local_or_leader!(self, request, "RemoveService", remove_local, remove_service)
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        local_or_leader!(self, request, "ListTasks", list_tasks_local, list_tasks)
    }

    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        local_or_leader!(self, request, "ListNodes", list_nodes_local, list_nodes)
    }

    async fn status(&self, request: Request<Empty>) -> Result<Response<ControlStatus>, Status> {
        self.accept(&request, "Status")?;
        Ok(Response::new(self.status_local()))
    }

    async fn add_member(
        &self,
        request: Request<AddMemberRequest>,
    ) -> Result<Response<ControlStatus>, Status> {
        self.add_member_rpc(request).await
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<ControlStatus>, Status> {
        self.remove_member_rpc(request).await
    }

    async fn rotate_token(
        &self,
        request: Request<RotateTokenRequest>,
    ) -> Result<Response<RotateTokenResponse>, Status> {
        self.rotate_token_rpc(request).await
    }

    async fn scale_service(
        &self,
        request: Request<ScaleServiceRequest>,
    ) -> Result<Response<ApplyServiceResponse>, Status> {
        local_or_leader!(self, request, "ScaleService", scale_local, scale_service)
    }

    async fn rollout_service(
        &self,
        request: Request<berth_proto::v1::RolloutServiceRequest>,
    ) -> Result<Response<ApplyServiceResponse>, Status> {
        local_or_leader!(
            self,
            request,
            "RolloutService",
            rollout_local,
            rollout_service
        )
    }

    async fn update_node(
        &self,
        request: Request<UpdateNodeRequest>,
    ) -> Result<Response<UpdateNodeResponse>, Status> {
        local_or_leader!(self, request, "UpdateNode", update_node_local, update_node)
    }

    async fn remove_node(
        &self,
        request: Request<berth_proto::v1::RemoveNodeRequest>,
    ) -> Result<Response<berth_proto::v1::RemoveNodeResponse>, Status> {
        local_or_leader!(self, request, "RemoveNode", remove_node_local, remove_node)
    }

    type WatchEventsStream = events::EventStream;

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        self.watch_events_rpc(request)
    }

    type LogsStream = node_io::LogsStream;

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        self.logs_rpc(request).await
    }

    type ExecStream = node_io::ExecStream;

    async fn exec(
        &self,
        request: Request<Streaming<ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        self.exec_rpc(request).await
    }

    async fn apply_services(
        &self,
        request: Request<ApplyServicesRequest>,
    ) -> Result<Response<ApplyServicesResponse>, Status> {
        local_or_leader!(
            self,
            request,
            "ApplyServices",
            apply_many_local,
            apply_services
        )
    }

    async fn import_image(
        &self,
        request: Request<Streaming<ImportImageRequest>>,
    ) -> Result<Response<ImagesResponse>, Status> {
        self.import_image_rpc(request).await
    }

    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ImagesResponse>, Status> {
        self.list_images_rpc(request).await
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<ImagesResponse>, Status> {
        self.remove_image_rpc(request).await
    }
}
