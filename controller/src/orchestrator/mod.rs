//! The orchestrator: the leader's loop that turns services into placed tasks and keeps them
//! so (issue 5).
//!
//! It runs on every member and acts only while the member leads. On becoming the leader it
//! confirms its leadership and that everything committed is applied, loads services, tasks
//! and nodes into a [`view::View`], and keeps the view current from the state machine's
//! change feed. Each change marks what it touches dirty; a pass ([`pass::run`]) reconciles
//! the dirty services — the node rules, the replicated or global reconciler, the scheduler
//! for every task to place — and its writes are committed through a [`Proposer`], one
//! batch per task, so that a conflict (an agent's report that raced with the pass) rejects
//! only that task's write; the change it raced with marks the service dirty again and the
//! next pass decides from the new record. A pass waits for its writes; their changes come
//! back through the feed before the next pass, so nothing is decided twice.
//!
//! Passes are debounced ([`DEBOUNCE`]): a burst of changes (an apply, a node's reports)
//! makes one pass. A task whose restart delay has not passed is made when it is due.
//! Leadership lost (a write refused, or the metrics say so) ends the loop until the member
//! leads again; a lagging feed or an installed snapshot reloads the view.

mod pass;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use openraft::Raft;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::api::dispatch::now_wall;
use crate::api::store::linearize;
use crate::pki::random_id;
use crate::raft::{
    CommandResponse, Expect, KvReader, NodeId, Op, ProposeError, Proposer, StoreEvent, TypeConfig,
    blocking,
};
use crate::state::keys;
use pass::Write;
use view::View;

/// The leader's view of Raft's metrics.
type Metrics = tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, openraft::BasicNode>>;

/// How long a pass waits after a change for the changes that come with it.
pub const DEBOUNCE: Duration = Duration::from_millis(2);
/// How many of a pass's writes are queued at the proposer at once.
const WRITES_IN_FLIGHT: usize = 2048;

/// Why the orchestrator stopped leading for a while.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// The store could not be read.
    #[error("cannot read the store: {0}")]
    Store(#[from] crate::raft::StoreError),
    /// Leadership could not be confirmed.
    #[error("cannot confirm leadership: {0}")]
    Linearize(#[from] crate::api::control::ControlError),
    /// A write was refused by Raft (usually: no longer the leader).
    #[error("a write failed: {0}")]
    Propose(Box<ProposeError>),
    /// A task could not be encoded.
    #[error("cannot encode task {id}: {source}")]
    Encode {
        /// The task.
        id: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// Starts the orchestrator of member `id` on the current tokio runtime.
pub fn spawn(raft: Raft<TypeConfig>, reader: KvReader, id: NodeId) -> JoinHandle<()> {
    tokio::spawn(async move {
        let proposer = Proposer::start(raft.clone());
        let mut metrics = raft.metrics();
        loop {
            let term = loop {
                let m = metrics.borrow_and_update().clone();
                if m.current_leader == Some(id) && m.state.is_leader() {
                    break m.current_term;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            };
            let mut leader = Leader {
                raft: &raft,
                reader: &reader,
                proposer: &proposer,
                id,
                term,
            };
            match leader.lead(&mut metrics).await {
                Ok(()) => info!(term, "orchestrator: no longer leading"),
                Err(e) => {
                    warn!(term, error = %e, "orchestrator: stopped; starts again when leading");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

struct Leader<'a> {
    raft: &'a Raft<TypeConfig>,
    reader: &'a KvReader,
    proposer: &'a Proposer,
    id: NodeId,
    term: u64,
}

/// What draining the feed found.
enum Drained {
    /// Changes applied to the view (maybe none).
    Applied,
    /// The view must be loaded again.
    Reload,
    /// The member is stopping.
    Closed,
}

impl Leader<'_> {
    fn still_leading(&self, metrics: &Metrics) -> bool {
        let m = metrics.borrow();
        m.current_leader == Some(self.id) && m.state.is_leader() && m.current_term == self.term
    }

    async fn load(&self) -> Result<View, OrchestratorError> {
        linearize(self.raft).await?;
        let r = self.reader.clone();
        let (services, tasks, nodes) = blocking(move || {
            Ok((
                r.list(keys::SERVICES)?,
                r.list(keys::TASKS)?,
                r.list(keys::NODES)?,
            ))
        })
        .await?;
        Ok(View::load(services, tasks, nodes))
    }

    async fn lead(&mut self, metrics: &mut Metrics) -> Result<(), OrchestratorError> {
        // Subscribed before the load, so that no change falls between the two.
        let mut feed = self.reader.subscribe();
        let mut view = self.load().await?;
        info!(
            term = self.term,
            services = view.services.len(),
            tasks = view.tasks.len(),
            nodes = view.nodes.len(),
            "orchestrator: leading"
        );
        let mut due: BTreeMap<i128, BTreeSet<String>> = BTreeMap::new();
        loop {
            if !self.still_leading(metrics) {
                return Ok(());
            }
            match drain(&mut feed, &mut view) {
                Drained::Applied => {}
                Drained::Reload => {
                    view = self.load().await?;
                    continue;
                }
                Drained::Closed => return Ok(()),
            }
            let now = now_wall();
            while let Some(entry) = due.first_entry() {
                if *entry.key() > now {
                    break;
                }
                view.dirty.extend(entry.remove());
            }
            let dirty = view.take_dirty();
            if !dirty.is_empty() {
                let started = Instant::now();
                let pass = pass::run(&view, &dirty, now, &mut new_task_id);
                for (at, service) in pass.due {
                    due.entry(at).or_default().insert(service);
                }
                let decided = started.elapsed();
                if !pass.writes.is_empty() {
                    let n = pass.writes.len();
                    let conflicts = self.commit(pass.writes).await?;
                    debug!(
                        services = dirty.len(),
                        writes = n,
                        conflicts,
                        placed = pass.placed,
                        unplaced = pass.unplaced,
                        decide_ms = decided.as_secs_f64() * 1e3,
                        total_ms = started.elapsed().as_secs_f64() * 1e3,
                        "orchestrator: pass committed"
                    );
                    // The writes' own changes are in the feed by now: drain, then decide again.
                    continue;
                }
            }
            let next_due = due.first_key_value().map(|(at, _)| {
                let wait = u64::try_from((*at - now_wall()).max(0)).unwrap_or(u64::MAX);
                Duration::from_nanos(wait)
            });
            tokio::select! {
                ev = feed.recv() => {
                    match ev {
                        Ok(StoreEvent::Applied(changes)) => {
                            for c in changes.iter() {
                                view.apply(c);
                            }
                        }
                        Ok(StoreEvent::Reset) | Err(RecvError::Lagged(_)) => {
                            view = self.load().await?;
                        }
                        Err(RecvError::Closed) => return Ok(()),
                    }
                    tokio::time::sleep(DEBOUNCE).await;
                }
                _ = sleep_for(next_due) => {}
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Commits `writes`, each as its own batch; answers how many met a conflict.
    async fn commit(&self, writes: Vec<Write>) -> Result<usize, OrchestratorError> {
        let ops = writes
            .into_iter()
            .map(to_op)
            .collect::<Result<Vec<_>, _>>()?;
        let mut results = futures::stream::iter(ops)
            .map(|op| self.proposer.write(vec![op]))
            .buffer_unordered(WRITES_IN_FLIGHT);
        let mut conflicts = 0;
        let mut failed = None;
        while let Some(r) = results.next().await {
            match r {
                Ok(CommandResponse::Conflict { .. }) => conflicts += 1,
                Ok(CommandResponse::Invalid { reason }) => {
                    warn!(reason, "orchestrator: a write was refused as invalid");
                }
                Ok(_) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(OrchestratorError::Propose(Box::new(e))),
            None => Ok(conflicts),
        }
    }
}

async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Applies what the feed holds now, without waiting.
fn drain(feed: &mut tokio::sync::broadcast::Receiver<StoreEvent>, view: &mut View) -> Drained {
    use tokio::sync::broadcast::error::TryRecvError;
    loop {
        match feed.try_recv() {
            Ok(StoreEvent::Applied(changes)) => {
                for c in changes.iter() {
                    view.apply(c);
                }
            }
            Ok(StoreEvent::Reset) | Err(TryRecvError::Lagged(_)) => return Drained::Reload,
            Err(TryRecvError::Empty) => return Drained::Applied,
            Err(TryRecvError::Closed) => return Drained::Closed,
        }
    }
}

/// The last timestamp [`new_task_id`] used, so that ids made by this process only grow.
static LAST_TASK_STAMP: AtomicU64 = AtomicU64::new(0);

/// A new task id, 32 lowercase hex digits: a timestamp (Unix nanoseconds, strictly growing
/// within the process) then 64 random bits. Ids sort by creation, so new `tasks/<id>` keys
/// go to the end of the store's B-tree and of every ordered map keyed by them instead of
/// landing on random pages; the random half keeps ids of two leaders (clocks apart) unique.
/// The first 12 digits, which name a task's container on its node with the service and
/// slot, change every 65 µs, and a slot's tasks are made by different passes.
fn new_task_id() -> String {
    task_id_at(u64::try_from(now_wall()).unwrap_or(0))
}

fn task_id_at(now: u64) -> String {
    let prev = LAST_TASK_STAMP
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(0);
    let stamp = now.max(prev.saturating_add(1));
    // The OS generator does not fail on Linux; the stamp alone keeps the pass going if it did.
    let random = random_id().unwrap_or_default();
    let random = random.get(..16).unwrap_or("0000000000000000");
    format!("{stamp:016x}{random}")
}

fn to_op(w: Write) -> Result<Op, OrchestratorError> {
    let put = |task: &crate::state::Task, expect| {
        serde_json::to_vec(task)
            .map(|value| Op::Put {
                key: keys::task(&task.id),
                value,
                expect,
            })
            .map_err(|source| OrchestratorError::Encode {
                id: task.id.clone(),
                source,
            })
    };
    match w {
        Write::Create(t) => put(&t, Expect::Absent),
        Write::Update { version, task } => put(&task, Expect::Version(version)),
        Write::Service { version, service } => serde_json::to_vec(&*service)
            .map(|value| Op::Put {
                key: keys::service(&service.spec.name),
                value,
                expect: Expect::Version(version),
            })
            .map_err(|source| OrchestratorError::Encode {
                id: service.spec.name.clone(),
                source,
            }),
        Write::Delete { id, version } => Ok(Op::Delete {
            key: keys::task(&id),
            expect: Expect::Version(version),
        }),
    }
}

#[cfg(test)]
mod tests;
