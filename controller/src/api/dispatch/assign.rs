//! The `Assignments` stream: each node's tasks, the full set first, then changes.
//!
//! How changes are noticed: one [`Hub`] per member keeps an index of every task's
//! assignment (what the node must do: service, slot, spec version, desired state, the spec)
//! and each node's set of them. It follows the state machine's change feed
//! ([`KvReader::subscribe`]): each applied write of a task or a service updates the index in
//! place (a service's change re-derives the spec of its own tasks only), so the cost of a
//! change does not grow with the number of tasks. The index is loaded from a listing of
//! `services/` and `tasks/` when the first stream opens, and again when the feed says it
//! lagged or a snapshot was installed; a listing is diffed against the index by store
//! versions, so a reload publishes only what changed. While no stream is open the hub
//! drops the feed (so the state machine need not collect changes for it) and reloads when
//! one opens.
//!
//! The changed nodes' new sets are published on per-node watch channels, at most once per
//! [`MIN_SCAN_INTERVAL`] (the changes meanwhile are taken together); each stream diffs the set
//! it last sent against the new one. Watch channels keep only the newest set, so a slow
//! stream never queues up changes: it sends the difference to whatever is newest when it
//! gets to it.
//!
//! The first message of a stream waits until the index has caught up with at least the log
//! index the leader had applied after confirming its leadership, so it includes every task
//! committed before the stream was opened. (The state machine sends an apply's changes to the
//! feed before openraft counts the entries applied, so once the hub has taken everything the
//! feed holds, it has seen every change up to the applied index it read before.)

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_proto::v1::{Assignment, AssignmentsUpdate};
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::{debug, warn};

use super::Inner;
use super::error::DispatchError;
use super::netmap::{NetIndex, NetMap};
use super::session::Ended;
use crate::api::control::ControlError;
use crate::api::store::READ_TIMEOUT;
use crate::raft::{Change, KvReader, StoreEvent, blocking};
use crate::state::wire::{assignment_to_wire, spec_at, spec_to_wire};
use crate::state::{ObservedState, Service, Task, keys};

/// The shortest time between two publications of changed sets: changes meanwhile are
/// taken together.
pub const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(5);
/// The longest time without a check of the subscribers while the feed is quiet.
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

/// The nodes' assignment sets, kept up to date from the store's changes or listings. Pure:
/// the caller reads the records.
#[derive(Debug, Default)]
pub(crate) struct Index {
    services: HashMap<String, (u64, Service)>,
    /// By store key.
    tasks: HashMap<String, Cached>,
    /// Each service's tasks' store keys.
    by_service: HashMap<String, HashSet<String>>,
    sets: HashMap<String, BTreeMap<String, Arc<Assignment>>>,
    /// The network map, fed by the same changes.
    pub(crate) net: NetIndex,
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
    /// `(key, version, value)`: records whose version the index holds are not decoded.
    pub(crate) fn update(
        &mut self,
        services: Vec<(String, u64, Vec<u8>)>,
        tasks: Vec<(String, u64, Vec<u8>)>,
        nodes: Vec<(String, u64, Vec<u8>)>,
    ) -> Updated {
        let mut out = Updated::default();
        let mut seen = HashSet::with_capacity(nodes.len());
        for (key, _, bytes) in nodes {
            let id = key.strip_prefix(keys::NODES).unwrap_or(&key).to_owned();
            self.put_node(&key, &id, &bytes, &mut out);
            seen.insert(id);
        }
        for id in self.net.node_ids() {
            if !seen.contains(&id) {
                self.net.node(&id, None);
            }
        }
        let mut seen = HashSet::with_capacity(services.len());
        for (key, version, bytes) in services {
            let name = key.strip_prefix(keys::SERVICES).unwrap_or(&key).to_owned();
            seen.insert(name.clone());
            if self.services.get(&name).is_none_or(|(v, _)| *v != version) {
                self.put_service(&key, name, version, &bytes, &mut out);
            }
        }
        let gone: Vec<String> = self
            .services
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.remove_service(&name, &mut out);
        }
        let mut seen = HashSet::with_capacity(tasks.len());
        for (key, version, bytes) in tasks {
            if self.tasks.get(&key).is_none_or(|c| c.version != version) {
                self.put_task(&key, version, &bytes, &mut out);
            }
            seen.insert(key);
        }
        let gone: Vec<String> = self
            .tasks
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.remove_task(&key, &mut out);
        }
        out
    }

    /// Applies changes of the store, in log order. A change the index already holds (its
    /// record is at that version or later, as after a reload) is skipped.
    pub(crate) fn apply<'a>(&mut self, changes: impl IntoIterator<Item = &'a Change>) -> Updated {
        let mut out = Updated::default();
        for c in changes {
            if let Some(name) = c.key.strip_prefix(keys::SERVICES) {
                if self.services.get(name).is_some_and(|(v, _)| *v >= c.index) {
                    continue;
                }
                match &c.value {
                    Some(bytes) => {
                        self.put_service(&c.key, name.to_owned(), c.index, bytes, &mut out)
                    }
                    None => self.remove_service(name, &mut out),
                }
            } else if let Some(id) = c.key.strip_prefix(keys::NODES) {
                match &c.value {
                    Some(bytes) => self.put_node(&c.key, id, bytes, &mut out),
                    None => self.net.node(id, None),
                }
            } else if c.key.starts_with(keys::TASKS) {
                if self.tasks.get(&c.key).is_some_and(|t| t.version >= c.index) {
                    continue;
                }
                match &c.value {
                    Some(bytes) => self.put_task(&c.key, c.index, bytes, &mut out),
                    None => self.remove_task(&c.key, &mut out),
                }
            }
        }
        out
    }

    fn put_node(&mut self, key: &str, id: &str, bytes: &[u8], out: &mut Updated) {
        match serde_json::from_slice::<crate::state::Node>(bytes) {
            Ok(n) => self.net.node(id, Some(&n)),
            Err(e) => out.corrupt.push((key.to_owned(), e.to_string())),
        }
    }

    fn put_service(
        &mut self,
        key: &str,
        name: String,
        version: u64,
        bytes: &[u8],
        out: &mut Updated,
    ) {
        match serde_json::from_slice::<Service>(bytes) {
            Ok(s) => {
                self.net.service(&name, Some(&s));
                self.services.insert(name.clone(), (version, s));
                self.respec(&name, out);
            }
            Err(e) => out.corrupt.push((key.to_owned(), e.to_string())),
        }
    }

    fn remove_service(&mut self, name: &str, out: &mut Updated) {
        self.net.service(name, None);
        if self.services.remove(name).is_some() {
            self.respec(name, out);
        }
    }

    /// Gives the tasks of service `name` the spec they run as the index now knows it.
    fn respec(&mut self, name: &str, out: &mut Updated) {
        let Some(keys) = self.by_service.get(name) else {
            return;
        };
        let service = self.services.get(name).map(|(_, s)| s);
        let mut specs = HashMap::new();
        let mut moved = Vec::new();
        for key in keys {
            let Some(c) = self.tasks.get(key) else {
                continue;
            };
            let spec = specs
                .entry(c.assignment.spec_version)
                .or_insert_with(|| {
                    service
                        .and_then(|s| spec_at(s, c.assignment.spec_version))
                        .map(spec_to_wire)
                })
                .clone();
            if c.assignment.spec == spec {
                continue;
            }
            let mut next = c.clone();
            next.assignment = Arc::new(Assignment {
                spec,
                ..(*c.assignment).clone()
            });
            moved.push((key.clone(), next));
        }
        for (key, next) in moved {
            let old = self.tasks.insert(key, next.clone());
            self.place(old.as_ref(), Some(&next), &mut out.changed);
        }
    }

    fn put_task(&mut self, key: &str, version: u64, bytes: &[u8], out: &mut Updated) {
        let task = match serde_json::from_slice::<Task>(bytes) {
            Ok(t) => t,
            Err(e) => {
                out.corrupt.push((key.to_owned(), e.to_string()));
                return;
            }
        };
        self.net.task(&task.id, Some(&task));
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
        let old = self.tasks.insert(key.to_owned(), cached.clone());
        if let Some(o) = &old
            && o.service != cached.service
        {
            self.unlink(&o.service, key);
        }
        self.by_service
            .entry(cached.service.clone())
            .or_default()
            .insert(key.to_owned());
        self.place(old.as_ref(), Some(&cached), &mut out.changed);
    }

    fn remove_task(&mut self, key: &str, out: &mut Updated) {
        if let Some(old) = self.tasks.remove(key) {
            self.net.task(&old.id, None);
            self.unlink(&old.service, key);
            self.place(Some(&old), None, &mut out.changed);
        }
    }

    fn unlink(&mut self, service: &str, key: &str) {
        if let Some(keys) = self.by_service.get_mut(service) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_service.remove(service);
            }
        }
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
    /// The newest network map.
    pub(crate) net: watch::Sender<Arc<NetMap>>,
    /// The log index the index has scanned at least.
    scanned: watch::Sender<u64>,
    wake: Notify,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            net: watch::channel(Arc::default()).0,
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

    /// Wakes the hub's loop (a stream opened).
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// A channel of the log index the index has scanned.
    pub(super) fn scanned_watch(&self) -> watch::Receiver<u64> {
        self.scanned.subscribe()
    }

    fn has_subscribers(&self) -> bool {
        let mut st = self.state();
        st.subscribers.retain(|_, tx| tx.receiver_count() > 0);
        !st.subscribers.is_empty() || self.net.receiver_count() > 0
    }

    /// Reloads the index from a listing of the store (which has applied at least
    /// `applied`) and publishes the sets that changed.
    async fn reload(&self, reader: &KvReader, applied: u64) -> Result<(), ControlError> {
        let reader = reader.clone();
        let (services, tasks, nodes) = blocking(move || {
            Ok((
                reader.list(keys::SERVICES)?,
                reader.list(keys::TASKS)?,
                reader.list(keys::NODES)?,
            ))
        })
        .await?;
        let mut st = self.state();
        let updated = st.index.update(services, tasks, nodes);
        self.publish(st, &updated, applied);
        Ok(())
    }

    /// Applies the changes of `events` (each [`StoreEvent::Applied`]) and publishes the sets
    /// that changed; the store has applied at least `applied` and every change up to it is
    /// in `events` or was before.
    fn apply(&self, events: &[Arc<[Change]>], applied: u64) {
        let mut st = self.state();
        let updated = st.index.apply(events.iter().flat_map(|e| e.iter()));
        self.publish(st, &updated, applied);
    }

    fn publish(&self, mut st: MutexGuard<'_, HubState>, updated: &Updated, applied: u64) {
        if let Some(map) = st.index.net.publish() {
            self.net.send_replace(map);
        }
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
    }
}

/// What the hub's loop woke up for.
enum Woken {
    /// An event of the feed (or why there was none).
    Feed(Result<StoreEvent, broadcast::error::RecvError>),
    /// Something else: a new stream, applied entries, the poll timer.
    Other,
    /// The Raft node stopped.
    Stopped,
}

/// The hub's loop: follows the change feed while streams are open; runs for the member's
/// life.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut metrics = inner.raft.metrics();
    // The feed, while streams are open; `None`: the index must be reloaded first.
    let mut feed: Option<broadcast::Receiver<StoreEvent>> = None;
    loop {
        let woken = match feed.as_mut() {
            Some(rx) => tokio::select! {
                ev = rx.recv() => Woken::Feed(ev),
                () = inner.hub.wake.notified() => Woken::Other,
                () = tokio::time::sleep(POLL) => Woken::Other,
            },
            None => tokio::select! {
                changed = metrics.changed() => if changed.is_err() { Woken::Stopped } else { Woken::Other },
                () = inner.hub.wake.notified() => Woken::Other,
                () = tokio::time::sleep(POLL) => Woken::Other,
            },
        };
        if !inner.hub.has_subscribers() {
            feed = None;
            if matches!(woken, Woken::Stopped) {
                return;
            }
            continue;
        }
        // Every change up to this index is in the feed already (see the module's doc).
        let applied = applied_index(&inner);
        let mut events = Vec::new();
        let mut reload = feed.is_none();
        match woken {
            Woken::Feed(Ok(StoreEvent::Applied(changes))) => events.push(changes),
            Woken::Feed(Ok(StoreEvent::Reset) | Err(broadcast::error::RecvError::Lagged(_))) => {
                reload = true;
            }
            Woken::Feed(Err(broadcast::error::RecvError::Closed)) | Woken::Stopped => return,
            Woken::Other => {}
        }
        if let Some(rx) = feed.as_mut() {
            while !reload {
                match rx.try_recv() {
                    Ok(StoreEvent::Applied(changes)) => events.push(changes),
                    Ok(StoreEvent::Reset) | Err(TryRecvError::Lagged(_)) => reload = true,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return,
                }
            }
        }
        if reload {
            // Subscribed before the listing: whatever it misses comes through the feed.
            feed = Some(inner.reader.subscribe());
            let applied = applied_index(&inner);
            if let Err(e) = inner.hub.reload(&inner.reader, applied).await {
                warn!(error = %e, "cannot list the tasks for assignments; retrying");
                feed = None;
            }
        } else {
            inner.hub.apply(&events, applied);
        }
        tokio::time::sleep(MIN_SCAN_INTERVAL).await;
    }
}

/// Why the session watched by `ended` ended, once it has.
pub(super) async fn wait_end(ended: &mut watch::Receiver<Option<Ended>>) -> Ended {
    match ended.wait_for(Option::is_some).await {
        Ok(why) => (*why).unwrap_or(Ended::LeadershipLost),
        Err(_) => Ended::LeadershipLost,
    }
}

pub(super) fn applied_index(inner: &Inner) -> u64 {
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
                        let error = self.stream_ended(why, &session);
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
            healthcheck: None,
            restart: Default::default(),
            update_config: None,
            rollback_config: None,
            force_update: 0,
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
            vip: None,
            ingress: Vec::new(),
            update: None,
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
            health: None,
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
            vec![],
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
            vec![],
        );
        assert_eq!(u, Updated::default());
        // Placed on n2, and t1 moved from n1 to n2.
        let u = index.update(
            vec![service(1)],
            vec![
                task("t1", Some("n2"), ObservedState::Assigned, 4),
                task("t2", Some("n2"), ObservedState::Assigned, 5),
            ],
            vec![],
        );
        assert_eq!(changed(&u), ["n1", "n2"]);
        assert!(index.set("n1").is_empty());
        assert_eq!(index.set("n2").len(), 2);
        // Removed.
        let u = index.update(
            vec![service(1)],
            vec![task("t2", Some("n2"), ObservedState::Assigned, 5)],
            vec![],
        );
        assert_eq!(changed(&u), ["n2"]);
        assert_eq!(index.set("n2").keys().collect::<Vec<_>>(), ["t2"]);
    }

    #[test]
    fn a_service_change_reaches_its_tasks_only_when_their_spec_changes() {
        let mut index = Index::default();
        let tasks = || vec![task("t1", Some("n1"), ObservedState::Running, 1)];
        index.update(vec![], tasks(), vec![]);
        assert!(index.set("n1")["t1"].spec.is_none(), "no service yet");
        let u = index.update(vec![service(1)], tasks(), vec![]);
        assert_eq!(changed(&u), ["n1"]);
        // Version 2: the task still runs version 1, found in the history.
        let u = index.update(vec![service(2)], tasks(), vec![]);
        assert_eq!(u, Updated::default());
        assert_eq!(index.set("n1")["t1"].spec.as_ref().unwrap().image, "web:1");
        // Removed service: the spec is gone.
        let u = index.update(vec![], tasks(), vec![]);
        assert_eq!(changed(&u), ["n1"]);
        assert!(index.set("n1")["t1"].spec.is_none());
    }

    fn change(r: (String, u64, Vec<u8>)) -> Change {
        Change {
            key: r.0,
            index: r.1,
            value: Some(r.2),
            existed: true,
        }
    }

    #[test]
    fn changes_of_the_feed_update_the_index_in_place() {
        let mut index = Index::default();
        let u = index.apply(&[
            change(service(1)),
            change(task("t1", Some("n1"), ObservedState::Assigned, 102)),
            change(task("t2", None, ObservedState::Pending, 103)),
        ]);
        assert_eq!(changed(&u), ["n1"]);
        assert_eq!(index.set("n1")["t1"].spec.as_ref().unwrap().image, "web:1");
        // A change the index already holds (as after a reload) is skipped.
        let u = index.apply(&[change(task("t1", Some("n2"), ObservedState::Assigned, 102))]);
        assert_eq!(u, Updated::default());
        // Placed; then the node's report is no change of its assignment.
        let u = index.apply(&[
            change(task("t2", Some("n2"), ObservedState::Assigned, 104)),
            change(task("t1", Some("n1"), ObservedState::Running, 105)),
        ]);
        assert_eq!(changed(&u), ["n2"]);
        // A new spec version leaves the tasks on version 1 as they are; removing the
        // service takes their spec away.
        assert_eq!(index.apply(&[change(service(2))]), Updated::default());
        let removed = |key: String, index: u64| Change {
            key,
            index,
            value: None,
            existed: true,
        };
        let u = index.apply(&[removed(keys::service("web"), 200)]);
        assert_eq!(changed(&u), ["n1", "n2"]);
        assert!(index.set("n1")["t1"].spec.is_none());
        let u = index.apply(&[removed(keys::task("t1"), 201)]);
        assert_eq!(changed(&u), ["n1"]);
        assert!(index.set("n1").is_empty());
        // A listing agrees with what the changes built.
        let u = index.update(
            vec![],
            vec![task("t2", Some("n2"), ObservedState::Assigned, 104)],
            vec![],
        );
        assert_eq!(u, Updated::default());
    }

    #[test]
    fn corrupt_records_are_reported_and_skipped() {
        let mut index = Index::default();
        let u = index.update(vec![], vec![(keys::task("bad"), 1, b"{".to_vec())], vec![]);
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
