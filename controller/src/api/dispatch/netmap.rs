//! The cluster's network map for the `Network` stream: every node's address and subnet, and
//! every service's VIP, ingress ports and running tasks.
//!
//! [`NetIndex`] is fed by the assignments [`super::assign::Index`] as it follows the store
//! (the same change feed, the same reloads) and keeps one [`NetMap`] snapshot; a change marks
//! only its service (or the node list) dirty, and [`NetIndex::publish`] rebuilds just those
//! entries, sharing the rest with the previous snapshot. Each stream diffs the snapshot it
//! last sent against the newest one by pointer first, so a change to one service costs one
//! service's worth of work per stream, whatever the size of the cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use berth_proto::v1::{NetworkEndpoint, NetworkNode, NetworkService, NetworkUpdate};

use crate::state::wire::port_to_wire;
use crate::state::{DesiredState, Health, Node, ObservedState, PortSpec, Service, Task};

/// One snapshot of the map.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct NetMap {
    /// By node id.
    pub nodes: BTreeMap<String, Arc<NetworkNode>>,
    /// By service name.
    pub services: BTreeMap<String, Arc<NetworkService>>,
}

impl NetMap {
    /// The whole map as a stream's first message.
    pub(crate) fn full(&self, revision: u64) -> NetworkUpdate {
        NetworkUpdate {
            full: true,
            nodes: self.nodes.values().map(|n| (**n).clone()).collect(),
            nodes_removed: Vec::new(),
            services: self.services.values().map(|s| (**s).clone()).collect(),
            services_removed: Vec::new(),
            revision,
        }
    }
}

/// What changed from `old` to `new`; `None` when nothing did.
pub(crate) fn diff(old: &NetMap, new: &NetMap, revision: u64) -> Option<NetworkUpdate> {
    fn changed<T: Clone + PartialEq>(
        old: &BTreeMap<String, Arc<T>>,
        new: &BTreeMap<String, Arc<T>>,
    ) -> (Vec<T>, Vec<String>) {
        let set = new
            .iter()
            .filter(|(k, v)| {
                old.get(*k)
                    .is_none_or(|o| !Arc::ptr_eq(o, v) && **o != ***v)
            })
            .map(|(_, v)| (**v).clone())
            .collect();
        let gone = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        (set, gone)
    }
    let (nodes, nodes_removed) = changed(&old.nodes, &new.nodes);
    let (services, services_removed) = changed(&old.services, &new.services);
    if nodes.is_empty()
        && nodes_removed.is_empty()
        && services.is_empty()
        && services_removed.is_empty()
    {
        return None;
    }
    Some(NetworkUpdate {
        full: false,
        nodes,
        nodes_removed,
        services,
        services_removed,
        revision,
    })
}

/// A running task, as a backend of its service.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    service: String,
    address: Ipv4Addr,
    node: String,
}

/// What the map shows of a service record: its VIP, ingress ports and spec's ports.
type Entry = (Option<Ipv4Addr>, Vec<PortSpec>, Vec<PortSpec>);

/// The map's sources, kept as the store changes.
#[derive(Debug, Default)]
pub(crate) struct NetIndex {
    /// By node id: (address, subnet).
    nodes: BTreeMap<String, (String, String)>,
    /// By service name.
    services: HashMap<String, Entry>,
    /// Running tasks by task id.
    endpoints: HashMap<String, Endpoint>,
    /// Each service's running tasks' ids.
    by_service: HashMap<String, BTreeSet<String>>,
    dirty: BTreeSet<String>,
    nodes_dirty: bool,
    map: Arc<NetMap>,
}

impl NetIndex {
    /// The service `name` was written (`Some`) or removed (`None`).
    pub(crate) fn service(&mut self, name: &str, service: Option<&Service>) {
        let next = service.map(|s| (s.vip, s.ingress.clone(), s.spec.ports.clone()));
        let changed = match next {
            Some(n) => self.services.insert(name.to_owned(), n.clone()) != Some(n),
            None => self.services.remove(name).is_some(),
        };
        if changed {
            self.dirty.insert(name.to_owned());
        }
    }

    /// The task with id `id` was written (`Some`) or removed (`None`).
    pub(crate) fn task(&mut self, id: &str, task: Option<&Task>) {
        let next = task.and_then(|t| {
            // Traffic goes to a running task once its health check (if any) passed, as with
            // Swarm: never to one still starting or unhealthy.
            let running = t.desired == DesiredState::Running
                && t.observed == ObservedState::Running
                && matches!(t.health, None | Some(Health::Healthy));
            Some(Endpoint {
                service: t.service.clone(),
                address: t.address.filter(|_| running)?,
                node: t.node.clone()?,
            })
        });
        let old = match &next {
            Some(n) => self.endpoints.insert(id.to_owned(), n.clone()),
            None => self.endpoints.remove(id),
        };
        if old == next {
            return;
        }
        if let Some(o) = old {
            if let Some(ids) = self.by_service.get_mut(&o.service) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_service.remove(&o.service);
                }
            }
            self.dirty.insert(o.service);
        }
        if let Some(n) = next {
            self.by_service
                .entry(n.service.clone())
                .or_default()
                .insert(id.to_owned());
            self.dirty.insert(n.service);
        }
    }

    /// The node `id` was written (`Some`) or removed (`None`).
    pub(crate) fn node(&mut self, id: &str, node: Option<&Node>) {
        let next = node.and_then(|n| Some((n.address.clone(), n.subnet?.to_string())));
        let old = match &next {
            Some(n) => self.nodes.insert(id.to_owned(), n.clone()),
            None => self.nodes.remove(id),
        };
        if old != next {
            self.nodes_dirty = true;
        }
    }

    /// The ids of every node the index holds, for a reload to find what is gone.
    pub(crate) fn node_ids(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// A new snapshot if anything changed since the last one.
    pub(crate) fn publish(&mut self) -> Option<Arc<NetMap>> {
        if self.dirty.is_empty() && !self.nodes_dirty {
            return None;
        }
        let mut map = (*self.map).clone();
        let mut changed = false;
        if std::mem::take(&mut self.nodes_dirty) {
            map.nodes = self
                .nodes
                .iter()
                .map(|(id, (address, subnet))| {
                    let node = NetworkNode {
                        id: id.clone(),
                        address: address.clone(),
                        subnet: subnet.clone(),
                    };
                    let kept = self.map.nodes.get(id).filter(|o| ***o == node).cloned();
                    (id.clone(), kept.unwrap_or_else(|| Arc::new(node)))
                })
                .collect();
            changed |= map.nodes.len() != self.map.nodes.len()
                || map
                    .nodes
                    .iter()
                    .zip(self.map.nodes.iter())
                    .any(|((k, v), (ok, ov))| k != ok || !Arc::ptr_eq(v, ov));
        }
        for name in std::mem::take(&mut self.dirty) {
            match self.services.get(&name) {
                None => {
                    changed |= map.services.remove(&name).is_some();
                }
                Some((vip, ingress, ports)) => {
                    let endpoints = self
                        .by_service
                        .get(&name)
                        .into_iter()
                        .flatten()
                        .filter_map(|id| {
                            let e = self.endpoints.get(id)?;
                            Some(NetworkEndpoint {
                                task_id: id.clone(),
                                address: e.address.to_string(),
                                node: e.node.clone(),
                            })
                        })
                        .collect();
                    let service = NetworkService {
                        name: name.clone(),
                        vip: vip.map(|v| v.to_string()).unwrap_or_default(),
                        ingress: ingress.iter().map(port_to_wire).collect(),
                        endpoints,
                        ports: ports.iter().map(port_to_wire).collect(),
                    };
                    if self.map.services.get(&name).is_none_or(|o| **o != service) {
                        map.services.insert(name, Arc::new(service));
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            return None;
        }
        self.map = Arc::new(map);
        Some(self.map.clone())
    }
}

#[cfg(test)]
mod tests;
