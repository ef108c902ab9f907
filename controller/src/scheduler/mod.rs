//! The scheduler: places pending tasks on nodes. Pure code over a snapshot (nodes, the tasks
//! that hold resources, the services' specs): no I/O, no clock, no randomness.
//!
//! For each task, nodes are first **filtered** ([`filter::Filter`], in this order): ready,
//! active (not drained or paused), placement constraints ([`constraint`]), the service's
//! `max_replicas_per_node`, reserved memory, reserved CPU, published host ports already in
//! use. Among the nodes left, the task is **spread**: it goes to the node with
//! the fewest tasks of its service, ties going to the node with the fewest tasks overall,
//! then to the smallest node id, so the same snapshot always gives the same placement. With
//! placement preferences (`spread: node.labels.zone`), tasks are first evened out over the
//! label's values (nodes without the label form a group of their own, as in Swarm), then over
//! the nodes inside a group. A task that fits nowhere stays pending with an [`Unplaced`]
//! reason: `no suitable node (insufficient memory on 3 nodes, scheduling constraints not
//! satisfied on 2 nodes)`. A task that already names a node (a global service's task) is
//! checked against that node only.
//!
//! [`Scheduler::schedule`] places a batch: the pending tasks are grouped by service, and
//! every placement updates the scheduler's own state (free resources, ports, counts), so a
//! batch respects capacities and spreads evenly, and later batches see earlier ones.
//!
//! # Complexity
//!
//! With N nodes, S services in the batch, T tasks in it, and E nodes that already run tasks
//! of a service: [`Scheduler::new`] is O(N log N + R) for R running tasks. A service without
//! preferences costs O((E + T_s + V) log N) for its T_s tasks, where V ≤ N is the number of
//! nodes that turn out not to fit it: nodes are visited in the order of a cluster-wide set
//! sorted by load, from a cursor that never goes back, and a node that failed a filter is not
//! visited again for that service (filters only get stricter as tasks are placed). So
//! 100,000 services of one task each on 5,000 nodes cost about 100,000 × log 5,000, not
//! 100,000 × 5,000. A service with preferences builds a tree of its candidate nodes:
//! O(N log N + T_s (log N + G)) for G label groups. Memory: O(N + R) plus the candidate heap
//! of the service being placed.

mod cluster;
pub mod constraint;
pub mod filter;
mod node;
mod spread;

use std::collections::HashMap;

use crate::state::validate::parse_preference;
use crate::state::{Node, ServiceSpec, Task};
pub use cluster::holds_resources;
use cluster::{Cluster, Placement};
pub use filter::{Filter, Tally, Unplaced};
use node::Demand;
use spread::Picker;

/// What the scheduler decided for one pending task.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run it on this node.
    Assign {
        /// The task.
        task_id: String,
        /// The node.
        node_id: String,
    },
    /// Leave it pending, for this reason (its `Display` is what the user reads).
    Pending {
        /// The task.
        task_id: String,
        /// Why.
        reason: Unplaced,
    },
}

impl Decision {
    /// The task decided about.
    pub fn task_id(&self) -> &str {
        match self {
            Decision::Assign { task_id, .. } | Decision::Pending { task_id, .. } => task_id,
        }
    }
}

/// Places pending tasks; see the [module](self) documentation.
#[derive(Debug)]
pub struct Scheduler<'a> {
    services: &'a HashMap<String, ServiceSpec>,
    cluster: Cluster<'a>,
}

impl<'a> Scheduler<'a> {
    /// A scheduler over `nodes`, with the resources, ports and counts of the tasks in
    /// `tasks` that hold resources ([`holds_resources`]; the others are skipped, so every
    /// task of the state may be passed). A task's needs are its service's spec in
    /// `services`; a task of a service not there counts towards its node's load only. Of
    /// two nodes with one id, the first is kept.
    pub fn new<'b>(
        nodes: &'a [Node],
        tasks: impl IntoIterator<Item = &'b Task>,
        services: &'a HashMap<String, ServiceSpec>,
    ) -> Self {
        Scheduler {
            services,
            cluster: Cluster::new(nodes, tasks, services),
        }
    }

    /// How many tasks node `node_id` holds, of every service (`None`: no such node).
    pub fn load(&self, node_id: &str) -> Option<u32> {
        let idx = self.cluster.by_id.get(node_id)?;
        Some(self.cluster.nodes[*idx].load)
    }

    /// How many tasks of `service` node `node_id` holds.
    pub fn service_tasks_on(&self, service: &str, node_id: &str) -> u32 {
        let Some(idx) = self.cluster.by_id.get(node_id) else {
            return 0;
        };
        self.cluster
            .counts
            .get(service)
            .and_then(|c| c.get(idx))
            .copied()
            .unwrap_or(0)
    }

    /// Decides where each of `pending` runs, one decision per task in the same order.
    /// Tasks are placed service by service (in the order each service first appears),
    /// each service's tasks in the order given. The scheduler keeps what it placed.
    pub fn schedule(&mut self, pending: &[Task]) -> Vec<Decision> {
        let mut order: Vec<&str> = Vec::new();
        let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, t) in pending.iter().enumerate() {
            groups
                .entry(t.service.as_str())
                .or_insert_with(|| {
                    order.push(t.service.as_str());
                    Vec::new()
                })
                .push(i);
        }
        let mut decided: Vec<Option<Decision>> = vec![None; pending.len()];
        for service in order {
            let positions = groups.remove(service).unwrap_or_default();
            let tasks: Vec<&Task> = positions.iter().map(|&i| &pending[i]).collect();
            for (i, d) in positions
                .into_iter()
                .zip(self.place_service(service, &tasks))
            {
                decided[i] = Some(d);
            }
        }
        // Every position got its decision: place_service answers each task of its group.
        decided.into_iter().flatten().collect()
    }

    /// Places `tasks`, all of `service`: one decision each, in order.
    fn place_service(&mut self, service: &str, tasks: &[&Task]) -> Vec<Decision> {
        let pending = |reason: &Unplaced| -> Vec<Decision> {
            tasks
                .iter()
                .map(|t| Decision::Pending {
                    task_id: t.id.clone(),
                    reason: reason.clone(),
                })
                .collect()
        };
        let Some(spec) = self.services.get(service) else {
            return pending(&Unplaced::UnknownService {
                service: service.to_owned(),
            });
        };
        let parsed = constraint::parse_all(&spec.constraints).and_then(|c| {
            let keys = spec
                .preferences
                .iter()
                .map(|p| parse_preference(p))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((c, keys))
        });
        let (constraints, spread_over) = match parsed {
            Ok(p) => p,
            Err(reason) => return pending(&Unplaced::InvalidPlacement { reason }),
        };
        let mut p = Placement {
            constraints,
            demand: Demand::of(spec),
            spread_over,
            counts: self.cluster.counts.remove(service).unwrap_or_default(),
        };
        // Tasks that name their node first, so that the picker, made after, sees them.
        let mut placed: Vec<Option<Result<usize, Unplaced>>> = tasks
            .iter()
            .map(|t| t.node.as_deref().map(|node| self.place_on(node, &mut p)))
            .collect();
        let mut picker: Option<Picker> = None;
        let mut exhausted: Option<Unplaced> = None;
        for slot in placed.iter_mut().filter(|s| s.is_none()) {
            if let Some(why) = &exhausted {
                *slot = Some(Err(why.clone()));
                continue;
            }
            let picker = picker.get_or_insert_with(|| Picker::new(&self.cluster, &p));
            *slot = Some(match picker.next(&self.cluster, &p) {
                Some(idx) => {
                    self.cluster.assign(idx, &mut p);
                    picker.placed(idx, &self.cluster, &p);
                    Ok(idx)
                }
                None => {
                    let why =
                        Unplaced::NoSuitableNode(picker.rejected().plus(&self.cluster.unavailable));
                    exhausted = Some(why.clone());
                    Err(why)
                }
            });
        }
        // Every slot is filled by now, so flattening keeps them aligned with the tasks.
        let out = tasks
            .iter()
            .zip(placed.into_iter().flatten())
            .map(|(t, placed)| match placed {
                Ok(idx) => Decision::Assign {
                    task_id: t.id.clone(),
                    node_id: self.cluster.nodes[idx].node.id.clone(),
                },
                Err(reason) => Decision::Pending {
                    task_id: t.id.clone(),
                    reason,
                },
            })
            .collect();
        self.cluster.counts.insert(service.to_owned(), p.counts);
        out
    }

    /// Places a task that names its node there, if it fits.
    fn place_on(&mut self, node_id: &str, p: &mut Placement) -> Result<usize, Unplaced> {
        let Some(&idx) = self.cluster.by_id.get(node_id) else {
            return Err(Unplaced::UnknownNode {
                node: node_id.to_owned(),
            });
        };
        let n = &self.cluster.nodes[idx];
        if let Err(f) = n.available().and_then(|()| p.check(idx, n)) {
            let mut tally = Tally::default();
            tally.add(f);
            return Err(Unplaced::NoSuitableNode(tally));
        }
        self.cluster.assign(idx, p);
        Ok(idx)
    }
}

#[cfg(test)]
mod tests;
