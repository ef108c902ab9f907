//! The `berth.v1.Dispatcher` service: the agents' sessions with the leader (register,
//! heartbeat, assignments, status reports). The contract and its error codes are documented
//! in `proto/berth/v1/dispatch.proto`.
//!
//! Callers must present an agent certificate; the node is the certificate's id. Only the
//! leader serves: a heartbeat is kept in the leader's memory ([`session`]), not in Raft, and
//! a member that is not the leader answers UNAVAILABLE with the leader's address so the agent
//! reconnects there (sessions are not forwarded).
//!
//! - `register.rs`: the node's record, its subnet, a new session;
//! - `session.rs`: the session table (pure);
//! - `liveness.rs`: the leader's background check that marks silent nodes down, live ones
//!   ready, and commits `last_seen` coarsely;
//! - `assign.rs`: the assignments index and streams;
//! - `report.rs`: task status reports, batched into Raft through a [`Proposer`];
//! - `error.rs`: [`DispatchError`] and its one mapping to gRPC statuses.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use berth_proto::v1::dispatcher_server::{Dispatcher, DispatcherServer};
use berth_proto::v1::{
    AssignmentsRequest, AssignmentsUpdate, AttachUp, HeartbeatRequest, HeartbeatResponse,
    NetworkRequest, NetworkUpdate, NodeRequest, RegisterRequest, RegisterResponse,
    ReportStatusRequest, ReportStatusResponse, RequestsRequest,
};
use ipnet::Ipv4Net;
use openraft::Raft;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use crate::api::control::ControlError;
use crate::api::leadership::{Leadership, leadership};
use crate::api::linearizer::Linearizer;
use crate::api::relay::Relay;
use crate::api::store::{WRITE_TIMEOUT, Written};
use crate::pki::Role;
use crate::raft::{CommandResponse, KvReader, NodeId, Op, Proposer, TypeConfig, blocking};
use crate::transport::authorize_peer;
use session::Ended;

mod assign;
mod error;
mod liveness;
mod netmap;
mod network;
mod node_io;
mod register;
mod report;
mod session;

pub use assign::{MIN_SCAN_INTERVAL, POLL};
pub use error::{DispatchError, LEADER_METADATA};
pub use report::MAX_REPORTS;
pub use session::SessionSettings;

/// The largest request accepted, in bytes (a full `ReportStatus` fits).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// The largest message sent (a node's full assignment set), in bytes.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The only role allowed to call the Dispatcher.
const ALLOWED: &[Role] = &[Role::Agent];

/// What the Dispatcher of a member needs besides Raft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchParts {
    /// The cluster range node subnets are cut from.
    pub node_range: Ipv4Net,
    /// The prefix length of each node's subnet.
    pub node_prefix: u8,
    /// The session timings.
    pub session: SessionSettings,
}

/// What the handlers and the background tasks share.
pub(crate) struct Inner {
    raft: Raft<TypeConfig>,
    reader: KvReader,
    proposer: Proposer,
    id: NodeId,
    settings: SessionSettings,
    node_range: Ipv4Net,
    node_prefix: u8,
    sessions: Mutex<session::SessionTable>,
    /// Subnets being written by registrations in flight.
    reserved: Mutex<BTreeSet<Ipv4Net>>,
    hub: assign::Hub,
    /// Leadership confirmations shared by concurrent registrations and streams.
    linearizer: Linearizer,
    /// Clients' requests to nodes, over the nodes' sessions.
    relay: Relay,
}

/// Serves the `Dispatcher` API of one member.
#[derive(Clone)]
pub struct DispatchService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DispatchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchService")
            .field("id", &self.inner.id)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Now, in Unix nanoseconds.
pub(crate) fn now_wall() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// Every record under `prefix` of the local store with its version, in key order.
pub(crate) async fn list_versioned<T: DeserializeOwned>(
    reader: &KvReader,
    prefix: &'static str,
) -> Result<Vec<(u64, T)>, ControlError> {
    let reader = reader.clone();
    let found = blocking(move || reader.list(prefix)).await?;
    found
        .into_iter()
        .map(|(key, version, bytes)| {
            serde_json::from_slice(&bytes)
                .map(|value| (version, value))
                .map_err(|source| ControlError::Corrupt { key, source })
        })
        .collect()
}

impl DispatchService {
    /// The service of member `id` (`raft` and `reader` are its Raft node and store).
    /// Refuses settings or a cluster range that cannot work.
    pub fn new(
        raft: Raft<TypeConfig>,
        reader: KvReader,
        id: NodeId,
        parts: DispatchParts,
    ) -> Result<Self, String> {
        parts.session.validate()?;
        crate::state::subnets::allocate(parts.node_range, parts.node_prefix, &BTreeSet::new())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            inner: Arc::new(Inner {
                proposer: Proposer::start(raft.clone()),
                linearizer: Linearizer::new(raft.clone()),
                raft,
                reader,
                id,
                settings: parts.session,
                node_range: parts.node_range,
                node_prefix: parts.node_prefix,
                sessions: Mutex::default(),
                reserved: Mutex::default(),
                hub: assign::Hub::default(),
                relay: Relay::default(),
            }),
        })
    }

    /// Starts the background tasks (the liveness check and the assignments index); the
    /// caller aborts them when the member stops.
    pub fn spawn_background(&self) -> Vec<JoinHandle<()>> {
        vec![
            tokio::spawn(liveness::run(self.inner.clone())),
            tokio::spawn(assign::run(self.inner.clone())),
        ]
    }

    /// The relay of clients' requests to the nodes connected to this member, for the
    /// `Control` service.
    pub fn relay(&self) -> Relay {
        self.inner.relay.clone()
    }

    /// This service wrapped for a tonic server, with the message size limits set.
    pub fn into_server(self) -> DispatcherServer<Self> {
        DispatcherServer::new(self)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// Checks the caller; answers its node id.
    fn accept<T>(&self, request: &Request<T>, rpc: &'static str) -> Result<String, Status> {
        let caller = authorize_peer(request, ALLOWED)?;
        debug!(%caller, rpc, "Dispatcher call");
        Ok(caller.id)
    }

    /// The status of `e`, with the leader's address when this member is not the leader.
    fn status(&self, e: DispatchError) -> Status {
        self.inner.lift(e).into()
    }
}

impl Inner {
    /// Whether this member is the leader, as far as its Raft node knows.
    fn is_leader(&self) -> bool {
        leadership(&self.raft, self.id) == Leadership::Leading
    }

    /// The error a session's stream ends with: where the leader is now, or why the
    /// session ended.
    fn stream_ended(&self, why: Ended, session: &str) -> DispatchError {
        match why {
            Ended::LeadershipLost => self.not_leader(),
            other => other.error(session),
        }
    }

    /// [`DispatchError::NotLeader`] with what this member knows of the leader.
    fn not_leader(&self) -> DispatchError {
        let (leader_id, addr) = match leadership(&self.raft, self.id) {
            Leadership::Leading => (None, None),
            Leadership::Elsewhere { leader_id, addr } => (leader_id, addr),
        };
        DispatchError::NotLeader {
            id: self.id,
            leader_id,
            addr,
        }
    }

    fn ensure_leader(&self) -> Result<(), DispatchError> {
        match leadership(&self.raft, self.id) {
            Leadership::Leading => Ok(()),
            Leadership::Elsewhere { leader_id, addr } => Err(DispatchError::NotLeader {
                id: self.id,
                leader_id,
                addr,
            }),
        }
    }

    /// Confirms leadership and waits until everything committed before is applied.
    async fn linearize(&self) -> Result<(), DispatchError> {
        self.linearizer
            .linearize()
            .await
            .map_err(|e| self.lift(e.into()))
    }

    /// A store error saying "not the leader" becomes [`DispatchError::NotLeader`] naming
    /// the leader's address.
    fn lift(&self, e: DispatchError) -> DispatchError {
        match e {
            DispatchError::Control(ControlError::NotLeader { .. } | ControlError::NoLeader) => {
                self.not_leader()
            }
            other => other,
        }
    }

    /// Commits `ops` as one batch through the proposer.
    async fn write(&self, ops: Vec<Op>) -> Result<Written, DispatchError> {
        let answer = match tokio::time::timeout(WRITE_TIMEOUT, self.proposer.write(ops)).await {
            Err(_) => return Err(ControlError::WriteTimeout(WRITE_TIMEOUT).into()),
            Ok(answer) => answer.map_err(ControlError::from)?,
        };
        match answer {
            CommandResponse::Ok { .. } => Ok(Written::Applied),
            CommandResponse::Conflict { actual, .. } => Ok(Written::Conflict { actual }),
            CommandResponse::Invalid { reason } => Err(ControlError::InvalidWrite(reason).into()),
            CommandResponse::Group(_) => Err(ControlError::UnexpectedGroup.into()),
        }
    }

    fn sessions(&self) -> MutexGuard<'_, session::SessionTable> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reserved(&self) -> MutexGuard<'_, BTreeSet<Ipv4Net>> {
        self.reserved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Heartbeat` of session `session` of `node`.
    fn heartbeat(&self, node: &str, session: &str) -> Result<HeartbeatResponse, DispatchError> {
        self.ensure_leader()?;
        self.sessions()
            .heartbeat(session, node, Instant::now(), now_wall())?;
        Ok(HeartbeatResponse {
            heartbeat_period_ms: self.settings.period_ms(),
        })
    }
}

#[tonic::async_trait]
impl Dispatcher for DispatchService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let node = self.accept(&request, "Register")?;
        let result = self.inner.register(&node, request.get_ref()).await;
        result.map(Response::new).map_err(|e| self.status(e))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let node = self.accept(&request, "Heartbeat")?;
        let result = self.inner.heartbeat(&node, &request.get_ref().session_id);
        result.map(Response::new).map_err(|e| self.status(e))
    }

    type AssignmentsStream = ReceiverStream<Result<AssignmentsUpdate, Status>>;

    async fn assignments(
        &self,
        request: Request<AssignmentsRequest>,
    ) -> Result<Response<Self::AssignmentsStream>, Status> {
        let node = self.accept(&request, "Assignments")?;
        let result = self
            .inner
            .clone()
            .assignments(&node, &request.get_ref().session_id)
            .await;
        result.map(Response::new).map_err(|e| self.status(e))
    }

    type NetworkStream = ReceiverStream<Result<NetworkUpdate, Status>>;

    async fn network(
        &self,
        request: Request<NetworkRequest>,
    ) -> Result<Response<Self::NetworkStream>, Status> {
        let node = self.accept(&request, "Network")?;
        let result = self
            .inner
            .clone()
            .network(&node, &request.get_ref().session_id)
            .await;
        result.map(Response::new).map_err(|e| self.status(e))
    }

    async fn report_status(
        &self,
        request: Request<ReportStatusRequest>,
    ) -> Result<Response<ReportStatusResponse>, Status> {
        let node = self.accept(&request, "ReportStatus")?;
        let message = request.get_ref();
        let result = async {
            self.inner.ensure_leader()?;
            let view = self.inner.sessions().get(&message.session_id, &node)?;
            self.inner.report(&node, view.subnet, message).await
        }
        .await;
        result.map(Response::new).map_err(|e| self.status(e))
    }

    type RequestsStream = ReceiverStream<Result<NodeRequest, Status>>;

    async fn requests(
        &self,
        request: Request<RequestsRequest>,
    ) -> Result<Response<Self::RequestsStream>, Status> {
        let node = self.accept(&request, "Requests")?;
        let result = self
            .inner
            .clone()
            .requests(&node, &request.get_ref().session_id);
        result.map(Response::new).map_err(|e| self.status(e))
    }

    type AttachStream = node_io::AttachStream;

    async fn attach(
        &self,
        request: Request<Streaming<AttachUp>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let node = self.accept(&request, "Attach")?;
        self.inner
            .attach(&node, request.into_inner())
            .await
            .map(Response::new)
    }
}
