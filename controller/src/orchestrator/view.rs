//! The leader's in-memory view of the records the orchestrator decides from: services,
//! tasks (indexed by service) and nodes, each with its store version. It is loaded once when
//! the member becomes the leader and then kept current from the state machine's change feed
//! ([`crate::raft::KvReader::subscribe`]); every change marks what it touches dirty, so a
//! pass reconciles only the services that may need it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::de::DeserializeOwned;
use tracing::warn;

use crate::raft::Change;
use crate::state::{Node, Service, Task, keys};

/// A record with its store version.
#[derive(Debug, Clone)]
pub(crate) struct Versioned<T> {
    pub version: u64,
    pub value: T,
}

/// Services, tasks and nodes as the store has them, and what changed since the last pass.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub services: BTreeMap<String, Versioned<Service>>,
    pub tasks: HashMap<String, Versioned<Task>>,
    /// Task ids by service name (services that no longer exist included).
    pub by_service: HashMap<String, BTreeSet<String>>,
    pub nodes: BTreeMap<String, Versioned<Node>>,
    /// Services to reconcile at the next pass.
    pub dirty: HashSet<String>,
    /// Whether a node changed since the last pass (every service is then reconciled).
    pub nodes_changed: bool,
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Option<T> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(key, error = %e, "orchestrator: a record does not decode; ignored");
            None
        }
    }
}

impl View {
    /// A view of these records (`(key, version, bytes)` as the store lists them), every
    /// service dirty.
    pub fn load(
        services: Vec<(String, u64, Vec<u8>)>,
        tasks: Vec<(String, u64, Vec<u8>)>,
        nodes: Vec<(String, u64, Vec<u8>)>,
    ) -> View {
        let mut v = View::default();
        for (key, version, bytes) in services.into_iter().chain(tasks).chain(nodes) {
            v.put(&key, version, &bytes);
        }
        v.nodes_changed = true;
        v
    }

    /// Applies one change of the feed. A change no newer than what the view has (it was
    /// read by the load already) is skipped.
    pub fn apply(&mut self, c: &Change) {
        match &c.value {
            Some(bytes) => {
                if self.version_of(&c.key).is_some_and(|v| v >= c.index) {
                    return;
                }
                self.put(&c.key, c.index, bytes);
            }
            None => {
                if self.version_of(&c.key).is_some_and(|v| v > c.index) {
                    return;
                }
                self.delete(&c.key);
            }
        }
    }

    fn version_of(&self, key: &str) -> Option<u64> {
        if let Some(name) = key.strip_prefix(keys::SERVICES) {
            self.services.get(name).map(|s| s.version)
        } else if let Some(id) = key.strip_prefix(keys::TASKS) {
            self.tasks.get(id).map(|t| t.version)
        } else if let Some(id) = key.strip_prefix(keys::NODES) {
            self.nodes.get(id).map(|n| n.version)
        } else {
            None
        }
    }

    fn put(&mut self, key: &str, version: u64, bytes: &[u8]) {
        if let Some(name) = key.strip_prefix(keys::SERVICES) {
            if let Some(value) = decode::<Service>(key, bytes) {
                self.dirty.insert(name.to_owned());
                self.services
                    .insert(name.to_owned(), Versioned { version, value });
            }
        } else if let Some(id) = key.strip_prefix(keys::TASKS) {
            if let Some(value) = decode::<Task>(key, bytes) {
                self.dirty.insert(value.service.clone());
                self.by_service
                    .entry(value.service.clone())
                    .or_default()
                    .insert(id.to_owned());
                self.tasks
                    .insert(id.to_owned(), Versioned { version, value });
            }
        } else if let Some(id) = key.strip_prefix(keys::NODES)
            && let Some(value) = decode::<Node>(key, bytes)
        {
            // Only a change that can move tasks counts: `last_seen` alone does not.
            let relevant = self.nodes.get(id).is_none_or(|old| {
                let mut old = old.value.clone();
                old.last_seen = value.last_seen;
                old != value
            });
            self.nodes_changed |= relevant;
            self.nodes
                .insert(id.to_owned(), Versioned { version, value });
        }
    }

    fn delete(&mut self, key: &str) {
        if let Some(name) = key.strip_prefix(keys::SERVICES) {
            self.services.remove(name);
            self.dirty.insert(name.to_owned());
        } else if let Some(id) = key.strip_prefix(keys::TASKS) {
            if let Some(t) = self.tasks.remove(id) {
                let service = t.value.service;
                if let Some(ids) = self.by_service.get_mut(&service) {
                    ids.remove(id);
                    if ids.is_empty() {
                        self.by_service.remove(&service);
                    }
                }
                self.dirty.insert(service);
            }
        } else if let Some(id) = key.strip_prefix(keys::NODES) {
            self.nodes.remove(id);
            self.nodes_changed = true;
        }
    }

    /// The tasks of `service`, with their versions.
    pub fn tasks_of(&self, service: &str) -> Vec<&Versioned<Task>> {
        self.by_service
            .get(service)
            .map(|ids| ids.iter().filter_map(|id| self.tasks.get(id)).collect())
            .unwrap_or_default()
    }

    /// Takes the set of services to reconcile (all of them, and every service that still
    /// has tasks, when a node changed) and clears the marks.
    pub fn take_dirty(&mut self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.dirty.drain().collect();
        if std::mem::take(&mut self.nodes_changed) {
            out.extend(self.services.keys().cloned());
            out.extend(self.by_service.keys().cloned());
        }
        out
    }
}
