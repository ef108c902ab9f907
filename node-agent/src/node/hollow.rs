//! Hollow nodes, for scale benchmarks and tests: an [`Executor`] that runs nothing
//! ([`HollowExecutor`]: a task "runs" as soon as it is started, with an address from the
//! node's subnet), and a fleet of such nodes in one process ([`HollowFleet`]), each with its
//! own identity (its own key and certificate, joined with the agent token) and its own
//! mutual-TLS session with the leader, all in the caller's tokio runtime.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_proto::v1::Assignment;
use ipnet::Ipv4Net;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::identity::{self, NodeIdentity};
use super::session::{Counters, NodeOptions, Probe, SessionState, run_node};
use super::{ExecError, Executor, NodeError, Observed, Phase};

/// An executor that keeps its tasks in memory.
#[derive(Debug, Default)]
pub struct HollowExecutor {
    state: Mutex<Hollow>,
    start_delay: Duration,
    starts: AtomicU64,
    stops: AtomicU64,
    removes: AtomicU64,
    /// Shared across a fleet: how many tasks run.
    running: Option<Arc<AtomicI64>>,
}

#[derive(Debug, Default)]
struct Hollow {
    subnet: Option<Ipv4Net>,
    tasks: HashMap<String, Observed>,
    /// Addresses handed out, and freed ones to reuse.
    next_host: u32,
    free: Vec<Ipv4Addr>,
    /// Tasks whose next start fails, and why.
    fail: HashMap<String, String>,
}

impl HollowExecutor {
    /// An executor whose starts take no time.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same, each start taking `delay`.
    pub fn with_start_delay(mut self, delay: Duration) -> Self {
        self.start_delay = delay;
        self
    }

    /// The same, counting its running tasks into `running` (shared by a fleet).
    pub fn with_running_gauge(mut self, running: Arc<AtomicI64>) -> Self {
        self.running = Some(running);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Hollow> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn gauge(&self, delta: i64) {
        if let Some(r) = &self.running {
            r.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// How many times `start` was called.
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed)
    }

    /// How many times `stop` was called.
    pub fn stops(&self) -> u64 {
        self.stops.load(Ordering::Relaxed)
    }

    /// How many times `remove` was called.
    pub fn removes(&self) -> u64 {
        self.removes.load(Ordering::Relaxed)
    }

    /// The task's state, if it has a "container".
    pub fn task(&self, task_id: &str) -> Option<Observed> {
        self.lock().tasks.get(task_id).cloned()
    }

    /// How many tasks run.
    pub fn running(&self) -> usize {
        self.lock()
            .tasks
            .values()
            .filter(|o| o.phase == Phase::Running)
            .count()
    }

    /// The subnet `prepare` was given.
    pub fn subnet(&self) -> Option<Ipv4Net> {
        self.lock().subnet
    }

    /// Makes a running task exit by itself with `code` (COMPLETE for 0, FAILED otherwise),
    /// as a process would. Returns false if it does not run.
    pub fn exit(&self, task_id: &str, code: i32) -> bool {
        let mut h = self.lock();
        let Some(o) = h.tasks.get_mut(task_id) else {
            return false;
        };
        if o.phase != Phase::Running {
            return false;
        }
        o.phase = if code == 0 {
            Phase::Complete
        } else {
            Phase::Failed
        };
        o.exit_code = Some(code);
        o.reason = (code != 0).then(|| format!("exited with code {code}"));
        drop(h);
        self.gauge(-1);
        true
    }

    /// Makes the next start of `task_id` fail with `reason`.
    pub fn fail_next_start(&self, task_id: &str, reason: &str) {
        self.lock()
            .fail
            .insert(task_id.to_owned(), reason.to_owned());
    }

    /// Puts a task in as if it ran before the agent (re)started.
    pub fn adopt(&self, observed: Observed) {
        let running = observed.phase == Phase::Running;
        self.lock().tasks.insert(observed.task_id.clone(), observed);
        if running {
            self.gauge(1);
        }
    }
}

impl Hollow {
    fn address(&mut self) -> Option<Ipv4Addr> {
        if let Some(a) = self.free.pop() {
            return Some(a);
        }
        let net = self.subnet?;
        // The first host is the bridge's.
        let host = self.next_host.max(1) + 1;
        let base = u32::from(net.network());
        let addr = Ipv4Addr::from(base.checked_add(host)?);
        if !net.contains(&addr) || addr == net.broadcast() {
            return None;
        }
        self.next_host = host;
        Some(addr)
    }
}

impl Executor for HollowExecutor {
    fn prepare(&self, net: &super::NodeNetInfo) -> Result<(), ExecError> {
        let subnet = net.subnet;
        let mut h = self.lock();
        if h.subnet != Some(subnet) {
            h.subnet = Some(subnet);
            h.next_host = 0;
            h.free.clear();
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<Observed>, ExecError> {
        Ok(self.lock().tasks.values().cloned().collect())
    }

    fn start(&self, task: &Assignment) -> Result<Observed, ExecError> {
        self.starts.fetch_add(1, Ordering::Relaxed);
        if !self.start_delay.is_zero() {
            std::thread::sleep(self.start_delay);
        }
        let mut h = self.lock();
        if let Some(reason) = h.fail.remove(&task.task_id) {
            return Err(ExecError(reason));
        }
        if let Some(o) = h.tasks.get(&task.task_id) {
            return Ok(o.clone());
        }
        let address = h
            .address()
            .ok_or_else(|| ExecError("no address left in the node's subnet".into()))?;
        let o = Observed {
            task_id: task.task_id.clone(),
            phase: Phase::Running,
            address: Some(address),
            exit_code: None,
            reason: None,
            health: None,
        };
        h.tasks.insert(task.task_id.clone(), o.clone());
        drop(h);
        self.gauge(1);
        Ok(o)
    }

    fn stop(&self, task_id: &str) -> Result<Observed, ExecError> {
        self.stops.fetch_add(1, Ordering::Relaxed);
        let mut h = self.lock();
        let Some(o) = h.tasks.get_mut(task_id) else {
            return Ok(Observed {
                task_id: task_id.to_owned(),
                phase: Phase::Shutdown,
                address: None,
                exit_code: None,
                reason: Some("no container".into()),
                health: None,
            });
        };
        let was_running = o.phase == Phase::Running;
        if !o.phase.is_end() {
            o.phase = Phase::Shutdown;
            o.exit_code = Some(143);
            o.reason = Some("stopped".into());
        }
        let o = o.clone();
        drop(h);
        if was_running {
            self.gauge(-1);
        }
        Ok(o)
    }

    fn remove(&self, task_id: &str) -> Result<(), ExecError> {
        self.removes.fetch_add(1, Ordering::Relaxed);
        let mut h = self.lock();
        if let Some(o) = h.tasks.remove(task_id) {
            if let Some(a) = o.address
                && h.subnet.is_some_and(|net| net.contains(&a))
                && !h.free.contains(&a)
            {
                h.free.push(a);
            }
            drop(h);
            if o.phase == Phase::Running {
                self.gauge(-1);
            }
        }
        Ok(())
    }
}

/// How to run a fleet of hollow nodes.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// How many nodes.
    pub count: usize,
    /// A controller's join listener, `host:port`.
    pub join_addr: String,
    /// The agent join token.
    pub token: String,
    /// The controllers' addresses, instead of the ones the join answers.
    pub controllers: Option<Vec<String>>,
    /// Node `i` is named `<prefix>-<i>`.
    pub hostname_prefix: String,
    /// Label sets given to the nodes round-robin (none: no labels).
    pub labels: Vec<BTreeMap<String, String>>,
    /// The address the nodes register with.
    pub address: IpAddr,
    /// Heartbeat at this period instead of the controller's.
    pub heartbeat_period: Option<Duration>,
    /// How long each start takes.
    pub start_delay: Duration,
    /// How often each node lists its executor.
    pub poll_interval: Duration,
    /// How many joins run at once.
    pub join_concurrency: usize,
}

impl FleetOptions {
    /// `count` nodes joining through `join_addr` with `token`, with the defaults.
    pub fn new(count: usize, join_addr: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            count,
            join_addr: join_addr.into(),
            token: token.into(),
            controllers: None,
            hostname_prefix: "hollow".into(),
            labels: Vec::new(),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            heartbeat_period: None,
            start_delay: Duration::ZERO,
            poll_interval: Duration::from_secs(1),
            join_concurrency: 64,
        }
    }

    /// The labels of node `i`.
    fn labels_of(&self, i: usize) -> BTreeMap<String, String> {
        if self.labels.is_empty() {
            BTreeMap::new()
        } else {
            self.labels[i % self.labels.len()].clone()
        }
    }
}

/// Parses `zone=a,zone=b,disk=ssd` into label sets given round-robin: each `key=value` is
/// one set; `zone=a+disk=ssd` puts two labels in one set.
pub fn parse_label_sets(s: &str) -> Result<Vec<BTreeMap<String, String>>, NodeError> {
    s.split(',')
        .filter(|set| !set.trim().is_empty())
        .map(|set| {
            set.split('+')
                .map(|kv| {
                    let (k, v) = kv
                        .trim()
                        .split_once('=')
                        .ok_or_else(|| NodeError::Invalid {
                            what: "--labels",
                            reason: format!("{kv:?} is not KEY=VALUE"),
                        })?;
                    if k.is_empty() {
                        return Err(NodeError::Invalid {
                            what: "--labels",
                            reason: format!("{kv:?} has an empty key"),
                        });
                    }
                    Ok((k.to_owned(), v.to_owned()))
                })
                .collect()
        })
        .collect()
}

/// What a fleet counts, across its nodes.
#[derive(Debug, Default)]
pub struct FleetCounters {
    /// Nodes joined.
    pub joined: AtomicU64,
    /// Joins that failed for good.
    pub join_errors: AtomicU64,
    /// Tasks running now.
    pub tasks_running: Arc<AtomicI64>,
    /// The sessions' counters (registered nodes, reports sent, errors).
    pub sessions: Arc<Counters>,
}

/// One line of what a fleet does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetStatus {
    /// Nodes joined.
    pub joined: u64,
    /// Nodes registered now.
    pub registered: u64,
    /// Tasks running.
    pub tasks_running: i64,
    /// Sessions started (registrations).
    pub sessions_started: u64,
    /// Status reports sent.
    pub reports_sent: u64,
    /// Errors of calls to the controllers.
    pub errors: u64,
}

impl std::fmt::Display for FleetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "joined {} registered {} tasks running {} sessions {} reports {} errors {}",
            self.joined,
            self.registered,
            self.tasks_running,
            self.sessions_started,
            self.reports_sent,
            self.errors
        )
    }
}

impl FleetCounters {
    /// A snapshot.
    pub fn status(&self) -> FleetStatus {
        let s = &self.sessions;
        FleetStatus {
            joined: self.joined.load(Ordering::Relaxed),
            registered: s.registered.load(Ordering::Relaxed),
            tasks_running: self.tasks_running.load(Ordering::Relaxed),
            sessions_started: s.sessions_started.load(Ordering::Relaxed),
            reports_sent: s.reports_sent.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
        }
    }
}

/// One hollow node of a fleet.
#[derive(Debug)]
pub struct HollowNode {
    /// Its identity.
    pub identity: NodeIdentity,
    /// Its executor.
    pub executor: Arc<HollowExecutor>,
    /// Its session's state.
    pub state: watch::Receiver<SessionState>,
    shutdown: watch::Sender<bool>,
}

impl HollowNode {
    /// Stops this node's session (its tasks stay as they are).
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// Many hollow nodes running in the caller's runtime.
#[derive(Debug)]
pub struct HollowFleet {
    /// The nodes, in hostname order.
    pub nodes: Vec<HollowNode>,
    /// The shared counters.
    pub counters: Arc<FleetCounters>,
    sessions: JoinSet<()>,
}

impl HollowFleet {
    /// Joins `opts.count` nodes (at most `join_concurrency` at a time) and starts their
    /// sessions. Fails if any node cannot join.
    pub async fn start(opts: FleetOptions) -> Result<HollowFleet, NodeError> {
        if opts.count == 0 {
            return Err(NodeError::Invalid {
                what: "count",
                reason: "a fleet needs at least one node".into(),
            });
        }
        let counters = Arc::new(FleetCounters::default());
        let opts = Arc::new(opts);
        let limit = Arc::new(tokio::sync::Semaphore::new(opts.join_concurrency.max(1)));
        let mut joins = JoinSet::new();
        for i in 0..opts.count {
            let opts = opts.clone();
            let limit = limit.clone();
            let counters = counters.clone();
            joins.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let hostname = format!("{}-{i}", opts.hostname_prefix);
                let r = identity::request_retrying(&opts.join_addr, &opts.token, &hostname).await;
                match &r {
                    Ok(_) => counters.joined.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counters.join_errors.fetch_add(1, Ordering::Relaxed),
                };
                (i, r)
            });
        }
        let mut identities: Vec<Option<NodeIdentity>> = vec![None; opts.count];
        while let Some(joined) = joins.join_next().await {
            let (i, r) = joined.map_err(|e| NodeError::Invalid {
                what: "join",
                reason: e.to_string(),
            })?;
            identities[i] = Some(r?);
        }
        info!(count = opts.count, "hollow nodes joined");
        let mut fleet = HollowFleet {
            nodes: Vec::with_capacity(opts.count),
            counters,
            sessions: JoinSet::new(),
        };
        for (i, identity) in identities.into_iter().flatten().enumerate() {
            fleet.spawn_node(&opts, i, identity);
        }
        Ok(fleet)
    }

    fn spawn_node(&mut self, opts: &FleetOptions, i: usize, identity: NodeIdentity) {
        let executor = Arc::new(
            HollowExecutor::new()
                .with_start_delay(opts.start_delay)
                .with_running_gauge(self.counters.tasks_running.clone()),
        );
        let probe = Probe::with_counters(self.counters.sessions.clone());
        let mut node_opts = NodeOptions::new(identity.hostname.clone());
        node_opts.address = Some(opts.address);
        node_opts.labels = opts.labels_of(i);
        node_opts.controllers = opts.controllers.clone();
        node_opts.heartbeat_period = opts.heartbeat_period;
        node_opts.worker.poll_interval = opts.poll_interval;
        node_opts.probe = probe.clone();
        let (node_stop, stop_rx) = watch::channel(false);
        let ex = executor.clone();
        let id = identity.clone();
        self.sessions.spawn(async move {
            if let Err(e) = run_node(id, node_opts, ex, stop_rx).await {
                warn!(error = %e, "a hollow node could not run");
            }
        });
        self.nodes.push(HollowNode {
            identity,
            executor,
            state: probe.state(),
            shutdown: node_stop,
        });
    }

    /// A snapshot of the counters.
    pub fn status(&self) -> FleetStatus {
        self.counters.status()
    }

    /// Waits until every node is registered, or `timeout` passes; returns whether they are.
    pub async fn wait_registered(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        for node in &self.nodes {
            let mut state = node.state.clone();
            let r = tokio::time::timeout_at(deadline, state.wait_for(|s| s.registered)).await;
            if !matches!(r, Ok(Ok(_))) {
                return false;
            }
        }
        true
    }

    /// Stops every session and waits for them (the tasks stay as they are).
    pub async fn stop(mut self) {
        for node in &self.nodes {
            node.stop();
        }
        while self.sessions.join_next().await.is_some() {}
    }
}

/// Joins and runs a fleet until `shutdown`, calling `on_status` every `every`.
pub async fn run_fleet(
    opts: FleetOptions,
    mut shutdown: watch::Receiver<bool>,
    every: Duration,
    mut on_status: impl FnMut(FleetStatus),
) -> Result<(), NodeError> {
    let fleet = tokio::select! {
        fleet = HollowFleet::start(opts) => fleet?,
        () = super::worker::stopped(&mut shutdown) => return Ok(()),
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = super::worker::stopped(&mut shutdown) => break,
            _ = tick.tick() => on_status(fleet.status()),
        }
    }
    fleet.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ServiceSpec, TaskDesiredState};

    fn assignment(id: &str) -> Assignment {
        Assignment {
            task_id: id.into(),
            service: "web".into(),
            slot: 1,
            spec_version: 1,
            desired: TaskDesiredState::Running.into(),
            spec: Some(ServiceSpec::default()),
            created_at: 0,
        }
    }

    #[test]
    fn hollow_tasks_run_at_once_with_addresses_from_the_subnet() {
        let running = Arc::new(AtomicI64::new(0));
        let ex = HollowExecutor::new().with_running_gauge(running.clone());
        ex.prepare(&crate::node::NodeNetInfo::for_subnet(
            "10.200.3.0/24".parse().unwrap(),
        ))
        .unwrap();
        let a = ex.start(&assignment("t1")).unwrap();
        let b = ex.start(&assignment("t2")).unwrap();
        assert_eq!(a.phase, Phase::Running);
        assert_eq!(a.address, Some("10.200.3.2".parse().unwrap()));
        assert_eq!(b.address, Some("10.200.3.3".parse().unwrap()));
        assert_eq!(running.load(Ordering::Relaxed), 2);
        assert_eq!(ex.stop("t1").unwrap().phase, Phase::Shutdown);
        assert_eq!(running.load(Ordering::Relaxed), 1);
        ex.remove("t1").unwrap();
        ex.remove("t1").unwrap();
        assert!(ex.task("t1").is_none());
        // The freed address is reused.
        let c = ex.start(&assignment("t3")).unwrap();
        assert_eq!(c.address, Some("10.200.3.2".parse().unwrap()));
        assert!(ex.exit("t2", 3));
        assert_eq!(ex.task("t2").unwrap().phase, Phase::Failed);
        assert_eq!(running.load(Ordering::Relaxed), 1);
        assert_eq!(ex.list().unwrap().len(), 2);
    }

    #[test]
    fn a_hollow_start_fails_when_told_or_without_a_subnet() {
        let ex = HollowExecutor::new();
        let e = ex.start(&assignment("t1")).unwrap_err();
        assert!(e.0.contains("no address"), "{e}");
        ex.prepare(&crate::node::NodeNetInfo::for_subnet(
            "10.200.3.0/30".parse().unwrap(),
        ))
        .unwrap();
        ex.fail_next_start("t1", "image not found");
        assert_eq!(
            ex.start(&assignment("t1")).unwrap_err().0,
            "image not found"
        );
        ex.start(&assignment("t1")).unwrap();
        // /30: one host after the bridge's.
        assert!(ex.start(&assignment("t2")).is_err());
    }

    #[test]
    fn label_sets_parse_round_robin() {
        let sets = parse_label_sets("zone=a,zone=b+disk=ssd").unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[1]["disk"], "ssd");
        let mut o = FleetOptions::new(3, "127.0.0.1:1", "t");
        o.labels = sets;
        assert_eq!(o.labels_of(2)["zone"], "a");
        let e = parse_label_sets("zone").unwrap_err().to_string();
        assert!(e.contains("--labels"), "{e}");
    }
}
