//! The node's session with the controllers' leader, over mutual TLS, as
//! `proto/berth/v1/dispatch.proto` describes it.
//!
//! One connection at a time, to one controller: the last known leader first. On it, the
//! node registers (facts, and the tasks its executor runs), readies its executor for the
//! subnet it was given, opens the assignments stream (whose messages go to the worker),
//! heartbeats at the period the controller asks for and sends the worker's status reports in
//! batches. Then:
//! - NOT_FOUND (session expired, replaced, or a new leader): register again on the same
//!   connection; a clean end of the assignments stream does the same;
//! - UNAVAILABLE: connect to the leader the answer names (`x-berth-leader`), else to the
//!   next controller;
//! - any other failure (a timeout, a broken connection): connect again, to the same
//!   controller first.
//!
//! Reconnections wait 50 ms, doubling to 1 s, with jitter; a registration resets the wait.
//! Moving on to another controller waits only the first step until a whole round of the
//! list has failed, so a node finds a new leader as soon as it is elected.
//! The session never gives up while it runs. A reconnection never restarts a task: the
//! worker reconciles the new full set with what runs. Reports whose call failed are sent
//! again on the next session.

use std::collections::BTreeMap;
use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use berth_controller::api::dispatch::{LEADER_METADATA, MAX_REPORTS};
use berth_controller::transport::MtlsConnector;
use berth_proto::v1::dispatcher_client::DispatcherClient;
use berth_proto::v1::{
    AssignmentsRequest, AssignmentsUpdate, HeartbeatRequest, NetworkRequest, RegisterRequest,
    RegisterResponse, ReportOutcome, ReportStatusRequest, RequestsRequest,
};
use ipnet::Ipv4Net;
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::{debug, info, warn};

use super::identity::NodeIdentity;
use super::worker::{self, Reports, WorkerOptions, stopped};
use super::{Executor, NodeError, io};

/// The first wait before reconnecting.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait before reconnecting.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a `Register`, the opening of the stream or a `ReportStatus` may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest assignments message accepted (the controller's limit).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// What the session is doing, for tests and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    /// A session is open (registered and not lost since).
    pub registered: bool,
    /// The node's id, once registered.
    pub node_id: String,
    /// The node's container subnet, once registered.
    pub subnet: Option<Ipv4Net>,
    /// The controller the session is (or was last) with.
    pub leader_addr: Option<String>,
    /// How many registrations succeeded.
    pub sessions_started: u64,
    /// How many assignment messages arrived.
    pub updates_received: u64,
}

/// Counters shared by any number of nodes (a hollow fleet shares one).
#[derive(Debug, Default)]
pub struct Counters {
    /// Nodes registered now.
    pub registered: AtomicU64,
    /// Registrations that succeeded.
    pub sessions_started: AtomicU64,
    /// Status reports sent and answered.
    pub reports_sent: AtomicU64,
    /// `ReportStatus` calls answered.
    pub report_calls: AtomicU64,
    /// Calls to the controllers that failed.
    pub errors: AtomicU64,
}

/// Where a node's session state and counters go.
#[derive(Debug, Clone)]
pub struct Probe {
    state: Arc<watch::Sender<SessionState>>,
    /// The counters (shared with other nodes when made by [`Probe::with_counters`]).
    pub counters: Arc<Counters>,
}

impl Default for Probe {
    fn default() -> Self {
        Self::with_counters(Arc::default())
    }
}

impl Probe {
    /// A probe with counters of its own.
    pub fn new() -> Self {
        Self::default()
    }

    /// A probe counting into `counters`.
    pub fn with_counters(counters: Arc<Counters>) -> Self {
        Self {
            state: Arc::new(watch::channel(SessionState::default()).0),
            counters,
        }
    }

    /// The session's state, as it changes.
    pub fn state(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    /// The session's state now.
    pub fn current(&self) -> SessionState {
        self.state.borrow().clone()
    }

    fn update(&self, f: impl FnOnce(&mut SessionState)) {
        self.state.send_modify(f);
    }

    fn set_registered(&self, registered: bool) {
        let mut was = false;
        self.state.send_modify(|s| {
            was = s.registered;
            s.registered = registered;
        });
        match (was, registered) {
            (false, true) => {
                self.counters.registered.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.counters.registered.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// How a node runs its session and its tasks.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The hostname it registers with.
    pub hostname: String,
    /// The address it registers with; `None`: the local address of the route to the
    /// first controller.
    pub address: Option<IpAddr>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its CPUs (default: the host's).
    pub cpus: f64,
    /// Its memory in bytes (default: the host's).
    pub memory_bytes: u64,
    /// The agent's version.
    pub agent_version: String,
    /// The controllers' addresses, instead of the identity's.
    pub controllers: Option<Vec<String>>,
    /// Heartbeat at this period instead of the controller's.
    pub heartbeat_period: Option<Duration>,
    /// The TCP connect plus TLS handshake limit.
    pub connect_timeout: Duration,
    /// The worker's settings.
    pub worker: WorkerOptions,
    /// Where the session's state and counters go.
    pub probe: Probe,
}

impl NodeOptions {
    /// The options of a node named `hostname`, with the host's CPUs and memory.
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            address: None,
            labels: BTreeMap::new(),
            cpus: host_cpus(),
            memory_bytes: host_memory().unwrap_or(0),
            agent_version: berth_proto::VERSION.to_owned(),
            controllers: None,
            heartbeat_period: None,
            connect_timeout: Duration::from_secs(3),
            worker: WorkerOptions::default(),
            probe: Probe::default(),
        }
    }
}

/// The host's CPUs.
pub fn host_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// The host's memory in bytes, from `/proc/meminfo`.
pub fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The local address the host would use to reach `addr` (`host:port`). Nothing is sent:
/// connecting a UDP socket only picks the route.
pub fn local_address_towards(addr: &str) -> Option<IpAddr> {
    let socket = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    socket.connect(addr).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Runs the node: its session with the leader and its worker, until `shutdown` turns true
/// (or its sender is dropped). Fails only if the identity or the options cannot work;
/// after that it keeps trying whatever the controllers answer. The tasks keep running when
/// it returns.
pub async fn run_node<E: Executor>(
    identity: NodeIdentity,
    opts: NodeOptions,
    executor: Arc<E>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let config = berth_controller::pki::client_config(&identity.ca_pem, &identity.cert)
        .map_err(NodeError::Tls)?;
    let connector = MtlsConnector::new(config).with_connect_timeout(opts.connect_timeout);
    let controllers = opts
        .controllers
        .clone()
        .unwrap_or_else(|| identity.controllers.clone());
    if controllers.is_empty() {
        return Err(NodeError::Invalid {
            what: "controllers",
            reason: "no controller address is known".into(),
        });
    }
    for addr in &controllers {
        // Checks the address only: the channel connects on first use.
        connector.channel(addr)?;
    }
    let address = match opts.address {
        Some(a) => a,
        None => local_address_towards(&controllers[0]).ok_or_else(|| NodeError::Invalid {
            what: "address",
            reason: format!(
                "cannot tell this node's address towards {}; give it",
                controllers[0]
            ),
        })?,
    };
    opts.probe.update(|s| s.node_id = identity.node_id.clone());
    let reports = Arc::new(Reports::default());
    let (to_worker, updates) = mpsc::channel(16);
    let worker = worker::run(
        executor.clone(),
        opts.worker,
        updates,
        reports.clone(),
        shutdown.clone(),
    );
    let session = Session {
        connector,
        controllers,
        next: 0,
        leader: None,
        address,
        opts,
        executor,
        to_worker,
        reports,
        shutdown,
        backoff: Backoff::new(),
        moves: 0,
    };
    tokio::join!(worker, session.run());
    Ok(())
}

/// Where to connect next.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The controller named as the leader.
    Leader(String),
    /// The next controller of the list.
    Next,
    /// The same controller again.
    Same,
}

/// How a session or a connection ended.
#[derive(Debug)]
enum Outcome {
    /// Shut down.
    Stop,
    /// Register again on the same connection.
    Register,
    /// Connect again.
    Reconnect(Target),
}

/// What to do after a call failed with `status`.
fn outcome_of(status: &Status) -> Outcome {
    match status.code() {
        Code::NotFound => Outcome::Register,
        Code::Unavailable => match status
            .metadata()
            .get(LEADER_METADATA)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
        {
            Some(leader) => Outcome::Reconnect(Target::Leader(leader.to_owned())),
            None => Outcome::Reconnect(Target::Next),
        },
        _ => Outcome::Reconnect(Target::Same),
    }
}

/// Whether a failed `Register` was answered by the controller for a reason of its own (not
/// "not the leader", not a broken connection): it is asked again on the same connection.
fn refused_here(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::ResourceExhausted
            | Code::Aborted
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::PermissionDenied
            | Code::Internal
    )
}

/// Exponential backoff with jitter.
#[derive(Debug)]
struct Backoff {
    current: Duration,
    seed: u64,
}

impl Backoff {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(u64::from(std::process::id()));
        Self {
            current: BACKOFF_MIN,
            seed: h.finish() | 1,
        }
    }

    fn reset(&mut self) {
        self.current = BACKOFF_MIN;
    }

    /// The next wait: between half and all of the current step; the step doubles.
    fn next(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(BACKOFF_MAX);
        self.jittered(step)
    }

    /// The shortest wait (between half and all of the first step); the step stays.
    fn short(&mut self) -> Duration {
        self.jittered(BACKOFF_MIN)
    }

    fn jittered(&mut self, step: Duration) -> Duration {
        // xorshift64
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(self.seed % nanos)
    }
}

/// Runs `call` with a time limit; a timeout is DEADLINE_EXCEEDED.
async fn timed<T>(
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(limit, call).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within {limit:?}"
        ))),
    }
}

struct Session<E> {
    connector: MtlsConnector,
    controllers: Vec<String>,
    /// The next controller of the list to try.
    next: usize,
    /// The controller to try first.
    leader: Option<String>,
    address: IpAddr,
    opts: NodeOptions,
    executor: Arc<E>,
    to_worker: mpsc::Sender<AssignmentsUpdate>,
    reports: Arc<Reports>,
    shutdown: watch::Receiver<bool>,
    backoff: Backoff,
    /// Controllers moved on to since the last registration or the last full round.
    moves: usize,
}

impl<E: Executor> Session<E> {
    fn probe(&self) -> &Probe {
        &self.opts.probe
    }

    /// The controller to connect to now.
    fn pick(&mut self) -> String {
        if let Some(l) = self.leader.take() {
            return l;
        }
        let addr = self.controllers[self.next % self.controllers.len()].clone();
        self.next = (self.next + 1) % self.controllers.len();
        addr
    }

    async fn run(mut self) {
        loop {
            let addr = self.pick();
            let outcome = match self.connector.channel(&addr) {
                Ok(channel) => {
                    let client = DispatcherClient::new(channel)
                        .max_decoding_message_size(MAX_MESSAGE)
                        .max_encoding_message_size(MAX_MESSAGE);
                    self.connection(&addr, client).await
                }
                Err(e) => {
                    warn!(controller = %addr, error = %e, "skipping a controller address");
                    Outcome::Reconnect(Target::Next)
                }
            };
            self.probe().set_registered(false);
            let target = match outcome {
                Outcome::Stop => break,
                Outcome::Reconnect(t) => t,
                // `connection` registers again itself.
                Outcome::Register => Target::Same,
            };
            let same = matches!(target, Target::Same);
            self.leader = match target {
                Target::Leader(l) if l != addr => Some(l),
                Target::Same => Some(addr.clone()),
                Target::Leader(_) | Target::Next => None,
            };
            let wait = self.wait_before(same);
            debug!(controller = %addr, next = ?self.leader, ?wait, "reconnecting");
            tokio::select! {
                () = stopped(&mut self.shutdown) => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.probe().set_registered(false);
        debug!("session stopped");
    }

    /// How long to wait before the next connection. Moving on to another controller (one
    /// named as the leader, or the next of the list) waits the shortest step until a whole
    /// round of the list has failed, so that after a leader change the node finds the new
    /// leader within a few tens of milliseconds of its election; retrying the same
    /// controller, or a new round, backs off.
    fn wait_before(&mut self, same: bool) -> Duration {
        if same {
            return self.backoff.next();
        }
        self.moves += 1;
        if self.moves < self.controllers.len() {
            self.backoff.short()
        } else {
            self.moves = 0;
            self.backoff.next()
        }
    }

    /// Registers on `addr` (again after a NOT_FOUND) and runs sessions until the
    /// connection must change.
    async fn connection(&mut self, addr: &str, mut client: DispatcherClient<Channel>) -> Outcome {
        loop {
            let ex = self.executor.clone();
            let running: Vec<String> = tokio::task::spawn_blocking(move || ex.list())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|l| l.into_iter().map(|o| o.task_id).collect())
                .unwrap_or_default();
            let request = RegisterRequest {
                hostname: self.opts.hostname.clone(),
                address: self.address.to_string(),
                labels: self.opts.labels.clone().into_iter().collect(),
                cpus: self.opts.cpus,
                memory_bytes: self.opts.memory_bytes,
                agent_version: self.opts.agent_version.clone(),
                running_tasks: running,
            };
            let answer = tokio::select! {
                () = stopped(&mut self.shutdown) => return Outcome::Stop,
                r = timed(CALL_TIMEOUT, client.register(request)) => r,
            };
            let reg = match answer {
                Ok(reg) => reg,
                Err(status) => {
                    self.probe().counters.errors.fetch_add(1, Ordering::Relaxed);
                    if refused_here(&status) {
                        // The controller answered: the connection is fine, the request was
                        // not (no subnet left, a contended write, a bad field). Ask again
                        // later on the same connection rather than open new ones.
                        warn!(controller = %addr, code = ?status.code(), error = %status.message(), "registration refused; retrying");
                        let wait = self.backoff.next();
                        tokio::select! {
                            () = stopped(&mut self.shutdown) => return Outcome::Stop,
                            () = tokio::time::sleep(wait) => continue,
                        }
                    }
                    return match outcome_of(&status) {
                        // The node is not known: another controller will not know it either,
                        // but it may be re-added; keep trying, slowly.
                        Outcome::Register => {
                            warn!(controller = %addr, error = %status.message(), "registration refused");
                            Outcome::Reconnect(Target::Next)
                        }
                        other => {
                            debug!(controller = %addr, code = ?status.code(), error = %status.message(), "cannot register");
                            other
                        }
                    };
                }
            };
            let subnet: Option<Ipv4Net> = reg.subnet.parse().ok();
            if let Some(net) = subnet {
                let ex = self.executor.clone();
                let info = super::NodeNetInfo {
                    subnet: net,
                    address: self.address,
                    cluster_range: reg.cluster_range.parse().ok(),
                    service_range: reg.service_range.parse().ok(),
                    overlay: reg.overlay.clone(),
                };
                let prepared = tokio::task::spawn_blocking(move || ex.prepare(&info)).await;
                match prepared {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        warn!(%net, error = %e, "cannot ready the node for its subnet");
                        return Outcome::Reconnect(Target::Same);
                    }
                    Err(e) => {
                        warn!(%net, error = %e, "readying the node failed");
                        return Outcome::Reconnect(Target::Same);
                    }
                }
            } else {
                warn!(subnet = %reg.subnet, "the controller gave no usable subnet");
            }
            self.backoff.reset();
            self.moves = 0;
            self.probe()
                .counters
                .sessions_started
                .fetch_add(1, Ordering::Relaxed);
            self.probe().update(|s| {
                s.node_id = reg.node_id.clone();
                s.subnet = subnet;
                s.leader_addr = Some(addr.to_owned());
                s.sessions_started += 1;
            });
            self.probe().set_registered(true);
            info!(controller = %addr, node = %reg.node_id, subnet = %reg.subnet, "registered");
            match self.session(&mut client, &reg).await {
                Outcome::Register => {
                    self.probe().set_registered(false);
                    continue;
                }
                other => return other,
            }
        }
    }

    /// One session: the assignments stream, heartbeats and reports, until one fails.
    async fn session(
        &mut self,
        client: &mut DispatcherClient<Channel>,
        reg: &RegisterResponse,
    ) -> Outcome {
        let session_id = reg.session_id.clone();
        self.reports.restore();
        let opened = tokio::select! {
            () = stopped(&mut self.shutdown) => return Outcome::Stop,
            r = timed(CALL_TIMEOUT, client.assignments(AssignmentsRequest {
                session_id: session_id.clone(),
            })) => r,
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(status) => {
                self.probe().counters.errors.fetch_add(1, Ordering::Relaxed);
                return outcome_of(&status);
            }
        };
        let probe = self.opts.probe.clone();
        let to_worker = self.to_worker.clone();
        let assignments = async {
            loop {
                match stream.message().await {
                    Ok(Some(update)) => {
                        debug!(
                            full = update.full,
                            assigned = update.assigned.len(),
                            removed = update.removed.len(),
                            revision = update.revision,
                            "assignments"
                        );
                        probe.update(|s| s.updates_received += 1);
                        if to_worker.send(update).await.is_err() {
                            return Outcome::Stop;
                        }
                    }
                    // The controller ended the session.
                    Ok(None) => return Outcome::Register,
                    Err(status) => return failed(&probe, "Assignments", &status),
                }
            }
        };
        let override_period = self.opts.heartbeat_period;
        let mut hb_client = client.clone();
        let hb_session = session_id.clone();
        let probe = self.opts.probe.clone();
        let mut period = override_period.unwrap_or(Duration::from_millis(u64::from(
            reg.heartbeat_period_ms.max(1),
        )));
        let heartbeats = async {
            loop {
                tokio::time::sleep(period).await;
                let limit = (period * 2).clamp(Duration::from_secs(1), CALL_TIMEOUT);
                let answer = timed(
                    limit,
                    hb_client.heartbeat(HeartbeatRequest {
                        session_id: hb_session.clone(),
                    }),
                )
                .await;
                match answer {
                    Ok(r) => {
                        period = override_period.unwrap_or(Duration::from_millis(u64::from(
                            r.heartbeat_period_ms.max(1),
                        )));
                    }
                    Err(status) => return failed(&probe, "Heartbeat", &status),
                }
            }
        };
        let mut rp_client = client.clone();
        let reports = self.reports.clone();
        let probe = self.opts.probe.clone();
        let sending = async {
            loop {
                reports.wait().await;
                let batch = reports.take(MAX_REPORTS);
                let n = batch.len();
                let answer = timed(
                    CALL_TIMEOUT,
                    rp_client.report_status(ReportStatusRequest {
                        session_id: session_id.clone(),
                        statuses: batch,
                    }),
                )
                .await;
                match answer {
                    Ok(r) => {
                        reports.ack();
                        probe.counters.report_calls.fetch_add(1, Ordering::Relaxed);
                        probe
                            .counters
                            .reports_sent
                            .fetch_add(n as u64, Ordering::Relaxed);
                        for result in r.results {
                            let outcome = result.outcome();
                            if matches!(outcome, ReportOutcome::Stale | ReportOutcome::Refused) {
                                debug!(task = %result.task_id, ?outcome, reason = %result.reason, "report dropped");
                            }
                        }
                    }
                    Err(status) => {
                        reports.restore();
                        return failed(&probe, "ReportStatus", &status);
                    }
                }
            }
        };
        let rq_client = client.clone();
        let executor = self.executor.clone();
        let probe = self.opts.probe.clone();
        let requests = async {
            if !executor.serves_io() {
                return std::future::pending().await;
            }
            let request = RequestsRequest {
                session_id: session_id.clone(),
            };
            let mut stream = match timed(CALL_TIMEOUT, rq_client.clone().requests(request)).await {
                Ok(s) => s,
                Err(status) if status.code() == Code::Unimplemented => {
                    warn!("the controller relays no requests (logs, exec, images) to nodes");
                    return std::future::pending().await;
                }
                Err(status) => return failed(&probe, "Requests", &status),
            };
            loop {
                match stream.message().await {
                    Ok(Some(request)) => {
                        tokio::spawn(io::serve_request(
                            rq_client.clone(),
                            session_id.clone(),
                            request,
                            executor.clone(),
                        ));
                    }
                    Ok(None) => return Outcome::Register,
                    Err(status) => return failed(&probe, "Requests", &status),
                }
            }
        };
        let nw_client = client.clone();
        let executor = self.executor.clone();
        let probe = self.opts.probe.clone();
        let nw_session = session_id.clone();
        let network = async {
            if !executor.wants_network() {
                return std::future::pending().await;
            }
            let request = NetworkRequest {
                session_id: nw_session,
            };
            let mut stream = match timed(CALL_TIMEOUT, nw_client.clone().network(request)).await {
                Ok(s) => s,
                Err(status) if status.code() == Code::Unimplemented => {
                    warn!("the controller sends no network map: no service addresses or overlay");
                    return std::future::pending().await;
                }
                Err(status) => return failed(&probe, "Network", &status),
            };
            loop {
                match stream.message().await {
                    Ok(Some(update)) => {
                        debug!(
                            full = update.full,
                            nodes = update.nodes.len(),
                            services = update.services.len(),
                            removed = update.services_removed.len(),
                            revision = update.revision,
                            "network map"
                        );
                        executor.network(update);
                    }
                    Ok(None) => return Outcome::Register,
                    Err(status) => return failed(&probe, "Network", &status),
                }
            }
        };
        let outcome = tokio::select! {
            () = stopped(&mut self.shutdown) => Outcome::Stop,
            o = assignments => o,
            o = network => o,
            o = requests => o,
            o = heartbeats => o,
            o = sending => o,
        };
        // A batch whose call was cut short is sent again on the next session.
        self.reports.restore();
        outcome
    }
}

/// Counts and logs a failed call; what to do next.
fn failed(probe: &Probe, rpc: &'static str, status: &Status) -> Outcome {
    probe.counters.errors.fetch_add(1, Ordering::Relaxed);
    debug!(rpc, code = ?status.code(), error = %status.message(), "session call failed");
    outcome_of(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    #[test]
    fn answers_map_to_what_the_session_does_next() {
        let mut s = Status::unavailable("not the leader");
        s.metadata_mut()
            .insert(LEADER_METADATA, MetadataValue::from_static("10.0.0.2:7443"));
        assert!(matches!(
            outcome_of(&s),
            Outcome::Reconnect(Target::Leader(l)) if l == "10.0.0.2:7443"
        ));
        assert!(matches!(
            outcome_of(&Status::unavailable("no leader")),
            Outcome::Reconnect(Target::Next)
        ));
        assert!(matches!(
            outcome_of(&Status::not_found("session expired")),
            Outcome::Register
        ));
        assert!(matches!(
            outcome_of(&Status::deadline_exceeded("slow")),
            Outcome::Reconnect(Target::Same)
        ));
        assert!(refused_here(&Status::resource_exhausted("no subnet left")));
        assert!(!refused_here(&Status::unavailable("not the leader")));
        assert!(!refused_here(&Status::unknown("transport error")));
    }

    #[test]
    fn backoff_doubles_to_a_second_with_jitter() {
        let mut b = Backoff::new();
        let waits: Vec<Duration> = (0..8).map(|_| b.next()).collect();
        assert!(waits[0] >= Duration::from_millis(25) && waits[0] <= BACKOFF_MIN);
        assert!(waits[7] >= Duration::from_millis(500) && waits[7] <= BACKOFF_MAX);
        b.reset();
        assert!(b.next() <= BACKOFF_MIN);
        b.next();
        let short = b.short();
        assert!(
            short >= BACKOFF_MIN / 2 && short <= BACKOFF_MIN,
            "{short:?}"
        );
        assert!(
            b.next() > BACKOFF_MIN,
            "short() leaves the step where it was"
        );
    }

    #[test]
    fn host_facts_are_read() {
        assert_eq!(
            parse_meminfo("MemTotal:       16314384 kB\nMemFree: 1 kB\n"),
            Some(16_314_384 * 1024)
        );
        assert_eq!(parse_meminfo("nothing"), None);
        assert!(host_cpus() >= 1.0);
        assert_eq!(
            local_address_towards("127.0.0.1:7443"),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
    }

    #[test]
    fn the_registered_gauge_counts_transitions_only() {
        let counters = Arc::new(Counters::default());
        let a = Probe::with_counters(counters.clone());
        let b = Probe::with_counters(counters.clone());
        a.set_registered(true);
        a.set_registered(true);
        b.set_registered(true);
        assert_eq!(counters.registered.load(Ordering::Relaxed), 2);
        a.set_registered(false);
        a.set_registered(false);
        assert_eq!(counters.registered.load(Ordering::Relaxed), 1);
        assert!(b.current().registered);
    }
}
