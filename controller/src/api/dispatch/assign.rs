//! The `Assignments` stream: each node's tasks, the full set first, then changes.
//!
//! How changes are noticed: one [`Hub`] per member keeps an index of every task's
//! assignment (what the node must do: service, slot, spec version, desired state, the spec),
//! built from the member's local store. It rescans `tasks/` and `services/` when openraft's
//! metrics say the applied log index moved (a watch channel openraft feeds after every apply
//! on this member), at most once per [`MIN_SCAN_INTERVAL`] and at least every [`POLL`], and
//! only while some stream is open. A rescan decodes only the records whose store version
//! changed (and the tasks of a service whose record changed), so its cost is one key-range
//! read plus the changes. It then publishes each node's new set on that node's watch
//! channel, only if it changed; each stream diffs the set it last sent against the new one.
//! Watch channels keep only the newest set, so a slow stream never queues up changes: it
//! sends the difference to whatever is newest when it gets to it.
//!
//! Why not a feed of applied keys out of the state machine: it would need the state
//! machine's apply path changed and a resynchronisation path for lagging readers and
//! installed snapshots; diffing versions of the store is robust to all of that (a snapshot is
//! just a larger diff) and cheap at the cluster sizes berth aims at.
//!
//! The first message of a stream waits until the index has scanned at least the log index
//! the leader had applied after confirming its leadership, so it includes every task
//! committed before the stream was opened.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_proto::v1::{Assignment, AssignmentsUpdate};
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::{debug, warn};

use super::Inner;
use super::error::DispatchError;
use super::session::Ended;
use crate::api::control::ControlError;
use crate::api::store::READ_TIMEOUT;
use crate::raft::{KvReader, blocking};
use crate::state::wire::assignment_to_wire;
use crate::state::{ObservedState, Service, Task, keys};

/// The shortest time between two rescans.
pub const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(20);
/// The longest time without a rescan check while streams are open.
pub const POLL: Duration = Duration::from_secs(1);
/// How many messages a stream buffers before it waits for its agent.
const STREAM_BUFFER: usize = 8;

/// One node's assignments, by task id.
pub(crate) type NodeSet = Arc<BTreeMap<String, Arc<Assignment>>>;

/// A task as the index remembers it.
#[derive(Debug, Clone)]
struct Cached {
    version: u64,
    id: String,
    node: Option<String>,
    service: String,
    assignment: Arc<Assignment>,
}

/// The nodes' assignment sets, kept up to date from listings of the store. Pure: the
/// caller lists the records.
#[derive(Debug, Default)]
pub(crate) struct Index {
    services: HashMap<String, (u64, Service)>,
    tasks: HashMap<String, Cached>,
    sets: HashMap<String, BTreeMap<String, Arc<Assignment>>>,
}

/// What an update of the index found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Updated {
    /// The nodes whose sets changed.
    pub changed: BTreeSet<String>,
    /// Records that do not decode (key, why); skipped.
    pub corrupt: Vec<(String, String)>,
}

impl Index {
    /// Brings the index to `services` and `tasks`, each a full listing of its prefix as
    /// `(key, version, value)`.
    pub(crate) fn update(
        &mut self,
        services: Vec<(String, u64, Vec<u8>)>,
        tasks: Vec<(String, u64, Vec<u8>)>,
    ) -> Updated {
        let mut out = Updated::default();
        let mut changed_services = HashSet::new();
        let mut next_services = HashMap::with_capacity(services.len());
        for (key, version, bytes) in services {
            let name = key.strip_prefix(keys::SERVICES).unwrap_or(&key).to_owned();
            match self.services.remove(&name) {
                Some((v, s)) if v == version => {
                    next_services.insert(name, (v, s));
                }
                _ => match serde_json::from_slice::<Service>(&bytes) {
                    Ok(s) => {
                        changed_services.insert(name.clone());
                        next_services.insert(name, (version, s));
                    }
                    Err(e) => out.corrupt.push((key, e.to_string())),
                },
            }
        }
        changed_services.extend(self.services.drain().map(|(name, _)| name));
        self.services = next_services;

        let mut seen = HashSet::with_capacity(tasks.len());
        for (key, version, bytes) in tasks {
            seen.insert(key.clone());
            if let Some(c) = self.tasks.get(&key)
                && c.version == version
                && !changed_services.contains(&c.service)
            {
                continue;
            }
            let task = match serde_json::from_slice::<Task>(&bytes) {
                Ok(t) => t,
                Err(e) => {
                    out.corrupt.push((key, e.to_string()));
                    continue;
                }
            };
            let service = self.services.get(&task.service).map(|(_, s)| s);
            let cached = Cached {
                version,
                id: task.id.clone(),
                // A pending task is not the node's yet, even when it names the node (a global
                // service's task that does not fit there).
                node: task
                    .node
                    .clone()
                    .filter(|_| task.observed != ObservedState::Pending),
                service: task.service.clone(),
                assignment: Arc::new(assignment_to_wire(&task, service)),
            };
            let old = self.tasks.insert(key, cached.clone());
            self.place(old.as_ref(), Some(&cached), &mut out.changed);
        }
        let gone: Vec<String> = self
            .tasks
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            let old = self.tasks.remove(&key);
            self.place(old.as_ref(), None, &mut out.changed);
        }
        out
    }

    /// Moves a task from where `old` had it to where `new` has it.
    fn place(
        &mut self,
        old: Option<&Cached>,
        new: Option<&Cached>,
        changed: &mut BTreeSet<String>,
    ) {
        if let (Some(o), Some(n)) = (old, new)
            && o.node == n.node
            && o.id == n.id
            && o.assignment == n.assignment
        {
            return;
        }
        if let Some(o) = old
            && let Some(node) = &o.node
            && let Some(set) = self.sets.get_mut(node)
        {
            set.remove(&o.id);
            if set.is_empty() {
                self.sets.remove(node);
            }
            changed.insert(node.clone());
        }
        if let Some(n) = new
            && let Some(node) = &n.node
        {
            self.sets
                .entry(node.clone())
                .or_default()
                .insert(n.id.clone(), n.assignment.clone());
            changed.insert(node.clone());
        }
    }

    /// The set of `node`.
    pub(crate) fn set(&self, node: &str) -> NodeSet {
        Arc::new(self.sets.get(node).cloned().unwrap_or_default())
    }
}

/// What changed from `old` to `new`: assignments new or different, and ids gone.
pub(crate) fn diff(
    old: &BTreeMap<String, Arc<Assignment>>,
    new: &BTreeMap<String, Arc<Assignment>>,
) -> (Vec<Assignment>, Vec<String>) {
    let assigned = new
        .iter()
        .filter(|(id, a)| old.get(*id).is_none_or(|o| o != *a))
        .map(|(_, a)| (**a).clone())
        .collect();
    let removed = old
        .keys()
        .filter(|id| !new.contains_key(*id))
        .cloned()
        .collect();
    (assigned, removed)
}

#[derive(Debug, Default)]
struct HubState {
    index: Index,
    subscribers: HashMap<String, watch::Sender<NodeSet>>,
}

/// The member's assignment index and the streams' channels.
#[derive(Debug)]
pub(crate) struct Hub {
    state: Mutex<HubState>,
    /// The log index the index has scanned at least.
    scanned: watch::Sender<u64>,
    wake: Notify,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            scanned: watch::channel(0).0,
            wake: Notify::new(),
        }
    }
}

impl Hub {
    fn state(&self) -> MutexGuard<'_, HubState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A channel of `node`'s set, holding its current one.
    fn subscribe(&self, node: &str) -> watch::Receiver<NodeSet> {
        let mut st = self.state();
        let rx = match st.subscribers.get(node) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(st.index.set(node));
                st.subscribers.insert(node.to_owned(), tx);
                rx
            }
        };
        drop(st);
        self.wake.notify_one();
        rx
    }

    fn has_subscribers(&self) -> bool {
        let mut st = self.state();
        st.subscribers.retain(|_, tx| tx.receiver_count() > 0);
        !st.subscribers.is_empty()
    }

    /// Rescans the store (which has applied at least `applied`) and publishes the sets
    /// that changed.
    async fn scan(&self, reader: &KvReader, applied: u64) -> Result<(), ControlError> {
        let reader = reader.clone();
        let (services, tasks) =
            blocking(move || Ok((reader.list(keys::SERVICES)?, reader.list(keys::TASKS)?))).await?;
        let mut st = self.state();
        let updated = st.index.update(services, tasks);
        for (key, why) in &updated.corrupt {
            warn!(%key, %why, "a stored record does not decode; left out of assignments");
        }
        for node in &updated.changed {
            if let Some(tx) = st.subscribers.get(node) {
                tx.send_replace(st.index.set(node));
            }
        }
        drop(st);
        self.scanned.send_if_modified(|s| {
            let moved = applied > *s;
            *s = (*s).max(applied);
            moved
        });
        Ok(())
    }
}

/// The hub's loop: rescans while streams are open; runs for the member's life.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut metrics = inner.raft.metrics();
    let mut last: Option<u64> = None;
    loop {
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            () = inner.hub.wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
        if !inner.hub.has_subscribers() {
            continue;
        }
        let applied = applied_index(&inner);
        if last == Some(applied) {
            continue;
        }
        match inner.hub.scan(&inner.reader, applied).await {
            Ok(()) => last = Some(applied),
            Err(e) => warn!(error = %e, "cannot scan the tasks for assignments; retrying"),
        }
        tokio::time::sleep(MIN_SCAN_INTERVAL).await;
    }
}

/// Why the session watched by `ended` ended, once it has.
async fn wait_end(ended: &mut watch::Receiver<Option<Ended>>) -> Ended {
    match ended.wait_for(Option::is_some).await {
        Ok(why) => (*why).unwrap_or(Ended::LeadershipLost),
        Err(_) => Ended::LeadershipLost,
    }
}

fn applied_index(inner: &Inner) -> u64 {
    inner
        .raft
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |l| l.index)
}

impl Inner {
    /// Opens the assignments stream of session `session` of `node`.
    pub(crate) async fn assignments(
        self: Arc<Self>,
        node: &str,
        session: &str,
    ) -> Result<ReceiverStream<Result<AssignmentsUpdate, Status>>, DispatchError> {
        self.ensure_leader()?;
        let view = self.sessions().get(session, node)?;
        self.linearize().await?;
        let target = applied_index(&self);
        let mut sets = self.hub.subscribe(node);
        let mut scanned = self.hub.scanned.subscribe();
        match tokio::time::timeout(READ_TIMEOUT, scanned.wait_for(|s| *s >= target)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(DispatchError::Closed),
            Err(_) => return Err(ControlError::ReadTimeout(READ_TIMEOUT).into()),
        }
        let first = sets.borrow_and_update().clone();
        let revision = *scanned.borrow();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let full = AssignmentsUpdate {
            full: true,
            assigned: first.values().map(|a| (**a).clone()).collect(),
            removed: Vec::new(),
            revision,
        };
        debug!(
            node,
            tasks = first.len(),
            revision,
            "assignments stream opened"
        );
        let node = node.to_owned();
        let session = session.to_owned();
        let mut ended = view.ended;
        tokio::spawn(async move {
            if tx.send(Ok(full)).await.is_err() {
                return;
            }
            let mut sent = first;
            loop {
                tokio::select! {
                    changed = sets.changed() => {
                        if changed.is_err() {
                            let _ = tx.send(Err(DispatchError::Closed.into())).await;
                            return;
                        }
                        let now = sets.borrow_and_update().clone();
                        let (assigned, removed) = diff(&sent, &now);
                        sent = now;
                        if assigned.is_empty() && removed.is_empty() {
                            continue;
                        }
                        let update = AssignmentsUpdate {
                            full: false,
                            assigned,
                            removed,
                            revision: *scanned.borrow(),
                        };
                        if tx.send(Ok(update)).await.is_err() {
                            return;
                        }
                    }
                    why = wait_end(&mut ended) => {
                        let error = match why {
                            Ended::LeadershipLost => self.not_leader(),
                            other => other.error(&session),
                        };
                        debug!(node, ?why, "assignments stream ends");
                        let _ = tx.send(Err(error.into())).await;
                        return;
                    }
                    () = tx.closed() => return,
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DesiredState, ObservedState, ServiceMode, ServiceSpec, SpecVersion};

    fn spec(image: &str) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            image: image.into(),
            entrypoint: None,
            command: vec![],
            env: vec![],
            mode: ServiceMode::Replicated { replicas: 1 },
            ports: vec![],
            links: vec![],
            resources: Default::default(),
            constraints: vec![],
            labels: Default::default(),
            max_replicas_per_node: None,
            preferences: vec![],
            restart: Default::default(),
        }
    }

    fn service(version: u64) -> (String, u64, Vec<u8>) {
        let s = Service {
            spec: spec(&format!("web:{version}")),
            version,
            created_at: 0,
            updated_at: 0,
            history: (1..version)
                .map(|v| SpecVersion {
                    version: v,
                    spec: spec(&format!("web:{v}")),
                    replaced_at: 0,
                })
                .collect(),
        };
        (
            keys::service("web"),
            100 + version,
            serde_json::to_vec(&s).unwrap(),
        )
    }

    fn task(
        id: &str,
        node: Option<&str>,
        observed: ObservedState,
        at: u64,
    ) -> (String, u64, Vec<u8>) {
        let t = Task {
            id: id.into(),
            service: "web".into(),
            slot: 1,
            spec_version: 1,
            node: node.map(Into::into),
            desired: DesiredState::Running,
            observed,
            address: None,
            exit_code: None,
            reason: None,
            created_at: 0,
            updated_at: 0,
        };
        (keys::task(id), at, serde_json::to_vec(&t).unwrap())
    }

    fn changed(u: &Updated) -> Vec<&str> {
        u.changed.iter().map(String::as_str).collect()
    }

    #[test]
    fn the_index_tracks_tasks_moving_between_nodes_and_ignores_observed_states() {
        let mut index = Index::default();
        let u = index.update(
            vec![service(1)],
            vec![
                task("t1", Some("n1"), ObservedState::Assigned, 1),
                task("t2", None, ObservedState::Pending, 2),
            ],
        );
        assert_eq!(changed(&u), ["n1"]);
        let set = index.set("n1");
        let a = &set["t1"];
        assert_eq!(a.spec.as_ref().unwrap().image, "web:1");
        // The node's own report (observed state) is not a change of its assignment.
        let u = index.update(
            vec![service(1)],
            vec![
                task("t1", Some("n1"), ObservedState::Running, 3),
                task("t2", None, ObservedState::Pending, 2),
            ],
        );
        assert_eq!(u, Updated::default());
        // Placed on n2, and t1 moved from n1 to n2.
        let u = index.update(
            vec![service(1)],
            vec![
                task("t1", Some("n2"), ObservedState::Assigned, 4),
                task("t2", Some("n2"), ObservedState::Assigned, 5),
            ],
        );
        assert_eq!(changed(&u), ["n1", "n2"]);
        assert!(index.set("n1").is_empty());
        assert_eq!(index.set("n2").len(), 2);
        // Removed.
        let u = index.update(
            vec![service(1)],
            vec![task("t2", Some("n2"), ObservedState::Assigned, 5)],
        );
        assert_eq!(changed(&u), ["n2"]);
        assert_eq!(index.set("n2").keys().collect::<Vec<_>>(), ["t2"]);
    }

    #[test]
    fn a_service_change_reaches_its_tasks_only_when_their_spec_changes() {
        let mut index = Index::default();
        let tasks = || vec![task("t1", Some("n1"), ObservedState::Running, 1)];
        index.update(vec![], tasks());
        assert!(index.set("n1")["t1"].spec.is_none(), "no service yet");
        let u = index.update(vec![service(1)], tasks());
        assert_eq!(changed(&u), ["n1"]);
        // Version 2: the task still runs version 1, found in the history.
        let u = index.update(vec![service(2)], tasks());
        assert_eq!(u, Updated::default());
        assert_eq!(index.set("n1")["t1"].spec.as_ref().unwrap().image, "web:1");
        // Removed service: the spec is gone.
        let u = index.update(vec![], tasks());
        assert_eq!(changed(&u), ["n1"]);
        assert!(index.set("n1")["t1"].spec.is_none());
    }

    #[test]
    fn corrupt_records_are_reported_and_skipped() {
        let mut index = Index::default();
        let u = index.update(vec![], vec![(keys::task("bad"), 1, b"{".to_vec())]);
        assert_eq!(u.corrupt.len(), 1);
        assert!(u.changed.is_empty());
    }

    #[test]
    fn diffs_name_what_is_new_changed_or_gone() {
        let a = |id: &str, v: u64| {
            (
                id.to_owned(),
                Arc::new(Assignment {
                    task_id: id.into(),
                    spec_version: v,
                    ..Default::default()
                }),
            )
        };
        let old: BTreeMap<_, _> = [a("t1", 1), a("t2", 1)].into();
        let new: BTreeMap<_, _> = [a("t2", 2), a("t3", 1)].into();
        let (assigned, removed) = diff(&old, &new);
        let ids: Vec<_> = assigned.iter().map(|a| a.task_id.as_str()).collect();
        assert_eq!(ids, ["t2", "t3"]);
        assert_eq!(removed, ["t1"]);
        assert_eq!(diff(&new, &new), (vec![], vec![]));
    }
}
