//! The node's assignments against what its executor runs.
//!
//! A pure core ([`Core`]) takes events (a full assignment set with a listing of the
//! executor, a change to the set, a listing from a poll, the result of an executor call) and
//! answers [`Command`]s: start, stop or remove a task, or report a task's state. The shell
//! ([`run`]) carries the commands out: executor calls off the async threads
//! (`spawn_blocking`), at most `max_concurrent_starts` starts at a time, and reports into
//! [`Reports`], which the session drains.
//!
//! The rules, per task (level-triggered: re-evaluated after every event that touches it):
//! - desired RUNNING, no container, never started here: report STARTING and start it (an
//!   assignment without a spec is not started: it is reported FAILED);
//! - desired RUNNING and a container that ended: its end state is reported, nothing is
//!   restarted (a restart is a new task, made by the controller);
//! - desired SHUTDOWN: a running container is stopped; the end state is reported;
//! - not in the set: its container is removed. Until the first full set arrives nothing is
//!   done at all, so that an agent that restarts never removes what it does not know yet;
//!   after a full set, containers the set does not name are removed, the others are kept.
//!
//! Calls for one task are serialized: a task with a call in flight is left alone until the
//! call answers. A listing taken while a call was in flight, or before the last call on a
//! task answered, does not override what that call answered (the core's clock).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_proto::v1::{
    Assignment, AssignmentsUpdate, TaskDesiredState, TaskHealth, TaskState, TaskStatus,
};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::health::{self, Health, HealthCheck};
use super::{ExecError, Executor, Observed, Phase};

/// Why a task with no spec is not started.
pub const NO_SPEC: &str = "the controller no longer has this task's spec";
/// Why a task whose container vanished is failed.
pub const GONE: &str = "the task's container is gone from the node";
/// Why a task stopped before it started here is shut down.
pub const NEVER_STARTED: &str = "stopped before it was started on this node";

/// What the core asks the shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start the task's container.
    Start(Box<Assignment>),
    /// Stop the task's container.
    Stop(String),
    /// Remove the task's container.
    Remove(String),
    /// Report the task's state to the controller.
    Report(Observed),
    /// Start the task's health check: its container runs at `address`.
    Watch {
        /// The task.
        task_id: String,
        /// Its check.
        check: Box<HealthCheck>,
        /// Its address, for HTTP and TCP probes.
        address: Option<Ipv4Addr>,
    },
    /// Stop the task's health check.
    Unwatch(String),
}

/// What an executor call answered.
#[derive(Debug)]
pub enum Done {
    /// `start`.
    Started(Result<Observed, ExecError>),
    /// `stop`.
    Stopped(Result<Observed, ExecError>),
    /// `remove`.
    Removed(Result<(), ExecError>),
}

/// What was last reported of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reported {
    phase: Phase,
    exit_code: Option<i32>,
    address: Option<Ipv4Addr>,
    health: Option<Health>,
}

impl Reported {
    fn of(o: &Observed) -> Self {
        Self {
            phase: o.phase,
            exit_code: o.exit_code,
            address: o.address,
            health: o.health,
        }
    }
}

/// What the node knows of one task.
#[derive(Debug, Default)]
struct Local {
    /// The container's state, as last listed or answered; `None`: no container.
    observed: Option<Observed>,
    /// The core's clock when a call last answered for this task.
    answered_at: u64,
    /// A call is in flight.
    busy: bool,
    /// Started (or found) on this node: never started again.
    started: bool,
    /// What was last reported.
    reported: Option<Reported>,
    /// Its health check runs.
    watching: bool,
    /// Its health, from its check.
    health: Option<Health>,
    /// Stopped because its check found it unhealthy: why, for its end report.
    unhealthy: Option<String>,
}

/// The worker's pure state: the assignment set and what the executor runs.
#[derive(Debug, Default)]
pub struct Core {
    /// A full set was received: until then nothing is done.
    synced: bool,
    desired: HashMap<String, Assignment>,
    tasks: HashMap<String, Local>,
    /// Counts executor answers.
    clock: u64,
}

fn observed(task_id: &str, phase: Phase, reason: &str) -> Observed {
    Observed {
        task_id: task_id.to_owned(),
        phase,
        address: None,
        exit_code: None,
        reason: Some(reason.to_owned()),
        health: None,
    }
}

impl Core {
    /// The clock to take before a listing, and to pass with it.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Whether a full set was received.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// A full set (`set`), with a listing of the executor taken at `clock`: replaces the
    /// set; every container outside it is removed.
    pub fn full(
        &mut self,
        set: Vec<Assignment>,
        listing: Vec<Observed>,
        clock: u64,
    ) -> Vec<Command> {
        self.desired = set.into_iter().map(|a| (a.task_id.clone(), a)).collect();
        self.synced = true;
        self.observe(listing, clock);
        self.reconcile_all()
    }

    /// A change to the set.
    pub fn change(&mut self, assigned: Vec<Assignment>, removed: Vec<String>) -> Vec<Command> {
        let mut touched = Vec::with_capacity(assigned.len() + removed.len());
        for id in removed {
            self.desired.remove(&id);
            touched.push(id);
        }
        for a in assigned {
            touched.push(a.task_id.clone());
            self.desired.insert(a.task_id.clone(), a);
        }
        if !self.synced {
            return Vec::new();
        }
        let mut out = Vec::new();
        for id in touched {
            self.reconcile(&id, &mut out);
        }
        out
    }

    /// A listing of the executor taken at `clock` (a poll).
    pub fn listed(&mut self, listing: Vec<Observed>, clock: u64) -> Vec<Command> {
        self.observe(listing, clock);
        if self.synced {
            self.reconcile_all()
        } else {
            Vec::new()
        }
    }

    /// An executor call on `task_id` answered.
    pub fn done(&mut self, task_id: &str, done: Done) -> Vec<Command> {
        self.clock += 1;
        let clock = self.clock;
        let mut out = Vec::new();
        let local = self.tasks.entry(task_id.to_owned()).or_default();
        local.busy = false;
        local.answered_at = clock;
        match done {
            Done::Started(Ok(o)) => local.observed = Some(o),
            Done::Stopped(Ok(mut o)) => {
                // Stopped for failing its health check: a failure, whatever the exit code
                // (the restart policy replaces it).
                if let Some(why) = &local.unhealthy {
                    o.phase = Phase::Failed;
                    o.reason = Some(why.clone());
                }
                local.observed = Some(o);
            }
            Done::Started(Err(e)) => {
                local.observed = Some(observed(task_id, Phase::Failed, &e.0));
            }
            Done::Stopped(Err(e)) => {
                // What runs is unknown until the next listing (which tries again if it
                // still runs); the failure is reported.
                local.observed = None;
                let failed = observed(task_id, Phase::Failed, &e.0);
                local.reported = Some(Reported::of(&failed));
                out.push(Command::Report(failed));
            }
            Done::Removed(Ok(())) => local.observed = None,
            // Unknown until the next listing, which tries again if it is still there.
            Done::Removed(Err(_)) => local.observed = None,
        }
        if self.synced {
            self.reconcile(task_id, &mut out);
        }
        out
    }

    /// The health check of `task_id` says `health` (`output`: what its last probe printed).
    /// An unhealthy task that runs is stopped and reported failed, so that its restart
    /// policy replaces it.
    pub fn health(&mut self, task_id: &str, health: Health, output: &str) -> Vec<Command> {
        let mut out = Vec::new();
        let Some(local) = self.tasks.get_mut(task_id) else {
            return out;
        };
        if !local.watching {
            return out;
        }
        local.health = Some(health);
        if health == Health::Unhealthy && local.unhealthy.is_none() {
            let output = output.trim();
            local.unhealthy = Some(if output.is_empty() {
                "unhealthy: its health check failed".to_owned()
            } else {
                format!("unhealthy: {output}")
            });
            if !local.busy
                && local
                    .observed
                    .as_ref()
                    .is_some_and(|o| o.phase == Phase::Running)
            {
                local.busy = true;
                local.watching = false;
                out.push(Command::Unwatch(task_id.to_owned()));
                if let Some(mut o) = local.observed.clone() {
                    o.health = local.health;
                    o.reason.clone_from(&local.unhealthy);
                    report(local, o, &mut out);
                }
                out.push(Command::Stop(task_id.to_owned()));
                return out;
            }
        }
        if self.synced {
            self.reconcile(task_id, &mut out);
        }
        out
    }

    /// Takes in what a listing at `clock` shows, except for tasks with a call in flight or
    /// answered after the listing was taken.
    fn observe(&mut self, listing: Vec<Observed>, clock: u64) {
        let mut seen = HashSet::with_capacity(listing.len());
        for o in listing {
            seen.insert(o.task_id.clone());
            let local = self.tasks.entry(o.task_id.clone()).or_default();
            if local.busy || local.answered_at > clock {
                continue;
            }
            local.started = true;
            local.observed = Some(o);
        }
        for (id, local) in &mut self.tasks {
            if !seen.contains(id) && !local.busy && local.answered_at <= clock {
                local.observed = None;
            }
        }
    }

    fn reconcile_all(&mut self) -> Vec<Command> {
        let mut ids: Vec<String> = self.desired.keys().cloned().collect();
        ids.extend(
            self.tasks
                .keys()
                .filter(|id| !self.desired.contains_key(*id))
                .cloned(),
        );
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            self.reconcile(&id, &mut out);
        }
        out
    }

    /// What to do about `id` now.
    fn reconcile(&mut self, id: &str, out: &mut Vec<Command>) {
        let Some(assignment) = self.desired.get(id) else {
            if let Some(local) = self.tasks.get_mut(id)
                && local.watching
            {
                local.watching = false;
                out.push(Command::Unwatch(id.to_owned()));
            }
            match self.tasks.get_mut(id) {
                Some(local) if local.busy => {}
                Some(local) if local.observed.is_some() => {
                    local.busy = true;
                    out.push(Command::Remove(id.to_owned()));
                }
                Some(_) => {
                    self.tasks.remove(id);
                }
                None => {}
            }
            return;
        };
        let local = self.tasks.entry(id.to_owned()).or_default();
        if local.busy {
            return;
        }
        let run = assignment.desired() == TaskDesiredState::Running;
        let running = run
            && local
                .observed
                .as_ref()
                .is_some_and(|o| o.phase == Phase::Running);
        if local.watching && !running {
            local.watching = false;
            out.push(Command::Unwatch(id.to_owned()));
        } else if running
            && !local.watching
            && local.health.is_none()
            && let Some(check) = check_of(assignment)
        {
            local.watching = true;
            local.health = Some(Health::Starting);
            out.push(Command::Watch {
                task_id: id.to_owned(),
                check: Box::new(check),
                address: local.observed.as_ref().and_then(|o| o.address),
            });
        }
        match (&local.observed, run) {
            (Some(o), false) if !o.phase.is_end() => {
                local.busy = true;
                out.push(Command::Stop(id.to_owned()));
            }
            (Some(o), _) => {
                let mut o = o.clone();
                o.health = local.health;
                report(local, o, out);
            }
            (None, true) if !local.started => {
                local.started = true;
                if assignment.spec.is_none() {
                    report(local, observed(id, Phase::Failed, NO_SPEC), out);
                } else {
                    local.busy = true;
                    report(local, observed_starting(id), out);
                    out.push(Command::Start(Box::new(assignment.clone())));
                }
            }
            (None, true) => {
                if !local.reported.as_ref().is_some_and(|r| r.phase.is_end()) {
                    report(local, observed(id, Phase::Failed, GONE), out);
                }
            }
            (None, false) => {
                if !local.reported.as_ref().is_some_and(|r| r.phase.is_end()) {
                    report(local, observed(id, Phase::Shutdown, NEVER_STARTED), out);
                }
            }
        }
    }
}

/// The health check of `assignment`'s spec, if it has a usable one.
fn check_of(assignment: &Assignment) -> Option<HealthCheck> {
    let wire = assignment.spec.as_ref()?.healthcheck.as_ref()?;
    match health::monitor::from_wire(wire) {
        Ok(check) => check,
        Err(e) => {
            warn!(task = %assignment.task_id, error = %e, "the health check is not usable; the task runs without it");
            None
        }
    }
}

fn observed_starting(id: &str) -> Observed {
    Observed {
        task_id: id.to_owned(),
        phase: Phase::Starting,
        address: None,
        exit_code: None,
        reason: None,
        health: None,
    }
}

/// Reports `o` unless it is what was last reported.
fn report(local: &mut Local, o: Observed, out: &mut Vec<Command>) {
    let key = Reported::of(&o);
    if local.reported.as_ref() != Some(&key) {
        local.reported = Some(key);
        out.push(Command::Report(o));
    }
}

/// The reports waiting to be sent: the newest per task, oldest first; the batch in flight
/// is kept until it is acknowledged, and put back if its call failed.
#[derive(Debug, Default)]
pub struct Reports {
    inner: Mutex<ReportsInner>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct ReportsInner {
    /// Task → (order, report).
    pending: HashMap<String, (u64, TaskStatus)>,
    seq: u64,
    inflight: Vec<TaskStatus>,
}

impl Reports {
    fn lock(&self) -> MutexGuard<'_, ReportsInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a report, replacing an older one of the same task.
    pub fn push(&self, status: TaskStatus) {
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        inner.pending.insert(status.task_id.clone(), (seq, status));
        drop(inner);
        self.notify.notify_one();
    }

    /// How many reports wait (not counting the batch in flight).
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Waits until some report waits.
    pub async fn wait(&self) {
        loop {
            if !self.lock().pending.is_empty() {
                return;
            }
            self.notify.notified().await;
        }
    }

    /// Takes the oldest `max` reports as the batch in flight (after putting back an
    /// unacknowledged one).
    pub fn take(&self, max: usize) -> Vec<TaskStatus> {
        self.restore();
        let mut inner = self.lock();
        let mut all: Vec<(u64, String)> = inner
            .pending
            .iter()
            .map(|(id, (seq, _))| (*seq, id.clone()))
            .collect();
        all.sort_unstable();
        let batch: Vec<TaskStatus> = all
            .into_iter()
            .take(max)
            .filter_map(|(_, id)| inner.pending.remove(&id).map(|(_, s)| s))
            .collect();
        inner.inflight = batch.clone();
        batch
    }

    /// The batch in flight was answered.
    pub fn ack(&self) {
        self.lock().inflight.clear();
    }

    /// Puts the batch in flight back, first in line, unless a newer report of its task
    /// waits.
    pub fn restore(&self) {
        let mut inner = self.lock();
        let inflight = std::mem::take(&mut inner.inflight);
        let back = !inflight.is_empty();
        for s in inflight {
            inner.pending.entry(s.task_id.clone()).or_insert((0, s));
        }
        drop(inner);
        if back {
            self.notify.notify_one();
        }
    }
}

/// Now, Unix nanoseconds.
fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The wire form of a report of `o`, seen now.
pub fn status_of(o: &Observed) -> TaskStatus {
    let state = match o.phase {
        Phase::Starting => TaskState::Starting,
        Phase::Running => TaskState::Running,
        Phase::Complete => TaskState::Complete,
        Phase::Failed => TaskState::Failed,
        Phase::Shutdown => TaskState::Shutdown,
    };
    let mut reason = o.reason.clone().unwrap_or_default();
    if reason.len() > 4096 {
        let mut end = 4096;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    TaskStatus {
        task_id: o.task_id.clone(),
        state: state.into(),
        address: o.address.map(|a| a.to_string()).unwrap_or_default(),
        has_exit_code: o.exit_code.is_some(),
        exit_code: o.exit_code.unwrap_or(0),
        reason,
        timestamp: now_nanos(),
        health: match o.health {
            None => TaskHealth::Unspecified,
            Some(Health::Starting) => TaskHealth::Starting,
            Some(Health::Healthy) => TaskHealth::Healthy,
            Some(Health::Unhealthy) => TaskHealth::Unhealthy,
        }
        .into(),
    }
}

/// How the worker runs.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// How often the executor is listed to notice exits.
    pub poll_interval: Duration,
    /// How many starts may run at once.
    pub max_concurrent_starts: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            max_concurrent_starts: 32,
        }
    }
}

/// Runs `f` off the async threads; a panic becomes an error.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ExecError> + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ExecError(format!("the executor call failed: {e}"))))
}

/// Waits until `shutdown` says stop (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Runs the node's assignments, from `updates`, against `executor` until `shutdown`;
/// reports go into `reports`. Containers are left as they are when it stops.
pub async fn run<E: Executor>(
    executor: Arc<E>,
    options: WorkerOptions,
    mut updates: mpsc::Receiver<AssignmentsUpdate>,
    reports: Arc<Reports>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut core = Core::default();
    let mut ops: JoinSet<(String, Done)> = JoinSet::new();
    let starts = Arc::new(Semaphore::new(options.max_concurrent_starts.max(1)));
    let mut tick = tokio::time::interval(options.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A full set that arrived when the executor could not be listed: applied at the next
    // successful listing (never without one, or running tasks could be started twice).
    let mut waiting_full: Option<Vec<Assignment>> = None;
    {
        // A start's progress goes out as a STARTING report saying it.
        let reports = reports.clone();
        executor.set_progress(Arc::new(move |task: &str, text: &str| {
            reports.push(status_of(&Observed {
                task_id: task.to_owned(),
                phase: Phase::Starting,
                address: None,
                exit_code: None,
                reason: Some(text.to_owned()),
                health: None,
            }));
        }));
    }
    let (health_tx, mut health_rx) = mpsc::channel(256);
    let mut shell = Shell {
        executor,
        reports,
        starts,
        monitors: HashMap::new(),
        health: health_tx,
    };
    let executor = shell.executor.clone();
    loop {
        let commands = tokio::select! {
            () = stopped(&mut shutdown) => break,
            Some(update) = updates.recv() => {
                if update.full {
                    waiting_full = Some(update.assigned);
                    apply_listing(&executor, &mut core, &mut waiting_full).await
                } else if let Some(full) = &mut waiting_full {
                    // Not applied yet: fold the change into it.
                    full.retain(|a| {
                        !update.removed.contains(&a.task_id)
                            && !update.assigned.iter().any(|b| b.task_id == a.task_id)
                    });
                    full.extend(update.assigned);
                    Vec::new()
                } else {
                    core.change(update.assigned, update.removed)
                }
            }
            Some(joined) = ops.join_next(), if !ops.is_empty() => match joined {
                Ok((id, done)) => core.done(&id, done),
                // Only aborts happen here (the calls' panics are caught inside).
                Err(e) => {
                    warn!(error = %e, "an executor call was lost");
                    Vec::new()
                }
            },
            Some(event) = health_rx.recv() => {
                core.health(&event.task_id, event.health, &event.output)
            }
            _ = tick.tick() => apply_listing(&executor, &mut core, &mut waiting_full).await,
        };
        for command in commands {
            shell.carry_out(command, &mut ops);
        }
    }
    for (_, monitor) in shell.monitors.drain() {
        monitor.abort();
    }
    debug!("worker stopped; containers are left running");
}

/// Lists the executor and hands the listing to the core (with the full set waiting, if
/// any).
async fn apply_listing<E: Executor>(
    executor: &Arc<E>,
    core: &mut Core,
    waiting_full: &mut Option<Vec<Assignment>>,
) -> Vec<Command> {
    let clock = core.clock();
    let ex = executor.clone();
    match blocking(move || ex.list()).await {
        Ok(listing) => match waiting_full.take() {
            Some(set) => core.full(set, listing, clock),
            None => core.listed(listing, clock),
        },
        Err(e) => {
            warn!(error = %e, "cannot list the node's tasks");
            Vec::new()
        }
    }
}

/// What carries the core's commands out.
struct Shell<E> {
    executor: Arc<E>,
    reports: Arc<Reports>,
    starts: Arc<Semaphore>,
    /// The health checks running, by task.
    monitors: HashMap<String, tokio::task::AbortHandle>,
    /// Where they send changes of health.
    health: mpsc::Sender<health::monitor::HealthEvent>,
}

impl<E: Executor> Shell<E> {
    fn carry_out(&mut self, command: Command, ops: &mut JoinSet<(String, Done)>) {
        let ex = self.executor.clone();
        match command {
            Command::Report(o) => {
                debug!(task = %o.task_id, phase = ?o.phase, health = ?o.health, "task state");
                self.reports.push(status_of(&o));
            }
            Command::Watch {
                task_id,
                check,
                address,
            } => {
                let events = self.health.clone();
                let id = task_id.clone();
                let started = std::time::Instant::now();
                let monitor = tokio::spawn(async move {
                    let task = id.clone();
                    let exec = match blocking(move || ex.probe_exec(&task)).await {
                        Ok(Some(exec)) => exec,
                        // This executor runs no health checks (hollow nodes).
                        Ok(None) => return,
                        Err(e) => {
                            warn!(task = %id, error = %e, "cannot run the health check");
                            return;
                        }
                    };
                    let target = health::probe::Target {
                        address: address.map(std::net::IpAddr::V4),
                        exec,
                    };
                    health::monitor::watch(id, *check, target, started, events).await;
                });
                if let Some(old) = self.monitors.insert(task_id, monitor.abort_handle()) {
                    old.abort();
                }
            }
            Command::Unwatch(task_id) => {
                if let Some(monitor) = self.monitors.remove(&task_id) {
                    monitor.abort();
                }
            }
            Command::Start(a) => {
                let starts = self.starts.clone();
                ops.spawn(async move {
                    let id = a.task_id.clone();
                    // Never closed: acquiring fails only if it were.
                    let _permit = starts.acquire_owned().await;
                    let r = blocking(move || ex.start(&a)).await;
                    if let Err(e) = &r {
                        warn!(task = %id, error = %e, "the task did not start");
                    }
                    (id, Done::Started(r))
                });
            }
            Command::Stop(id) => {
                ops.spawn(async move {
                    let task = id.clone();
                    let r = blocking(move || ex.stop(&task)).await;
                    if let Err(e) = &r {
                        warn!(task = %id, error = %e, "cannot stop the task");
                    }
                    (id, Done::Stopped(r))
                });
            }
            Command::Remove(id) => {
                ops.spawn(async move {
                    let task = id.clone();
                    let r = blocking(move || ex.remove(&task)).await;
                    if let Err(e) = &r {
                        warn!(task = %id, error = %e, "cannot remove the task's container");
                    }
                    (id, Done::Removed(r))
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
