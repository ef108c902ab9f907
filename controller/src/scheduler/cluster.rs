//! The cluster as the scheduler sees it while it places tasks ([`Cluster`]: nodes with what
//! is left of them, ordered by load) and one service's needs while its tasks are placed
//! ([`Placement`]).

use std::collections::{BTreeSet, HashMap};

use super::constraint;
use super::filter::{Filter, Tally};
use super::node::{Demand, NodeState};
use crate::state::validate::Constraint;
use crate::state::{Node, ObservedState, ServiceSpec, Task};

/// Whether a task holds resources on its node: assigned to it and not ended. A task asked
/// to shut down still holds them until its node reports it stopped. A pending task holds
/// nothing, even one that already names its node (a global service's): it is what
/// [`super::Scheduler::schedule`] places.
pub fn holds_resources(t: &Task) -> bool {
    t.node.is_some()
        && matches!(
            t.observed,
            ObservedState::Assigned | ObservedState::Starting | ObservedState::Running
        )
}

/// The cluster as placements change it.
#[derive(Debug)]
pub(crate) struct Cluster<'a> {
    /// Every node, sorted by id (the index is the last tie-breaker).
    pub(super) nodes: Vec<NodeState<'a>>,
    /// Node id → index.
    pub(super) by_id: HashMap<&'a str, usize>,
    /// The nodes that take tasks (ready and active), by (load, index).
    pub(super) by_load: BTreeSet<(u32, usize)>,
    /// The nodes that take no tasks, by why.
    pub(super) unavailable: Tally,
    /// Service → node index → how many of its tasks the node holds.
    pub(super) counts: HashMap<String, HashMap<usize, u32>>,
}

impl<'a> Cluster<'a> {
    /// The cluster of `nodes` (sorted by id, the first of two with one id kept) with the
    /// tasks of `tasks` that hold resources, each taking what its service's spec in
    /// `services` reserves (nothing, for a service not there). O(N log N + R).
    pub(super) fn new<'b>(
        nodes: &'a [Node],
        tasks: impl IntoIterator<Item = &'b Task>,
        services: &HashMap<String, ServiceSpec>,
    ) -> Self {
        let mut sorted: Vec<&Node> = nodes.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        sorted.dedup_by(|a, b| a.id == b.id);
        let mut nodes: Vec<NodeState<'a>> = sorted.into_iter().map(NodeState::new).collect();
        let by_id: HashMap<&'a str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.node.id.as_str(), i))
            .collect();
        let demands: HashMap<&str, Demand> = services
            .iter()
            .map(|(name, spec)| (name.as_str(), Demand::of(spec)))
            .collect();
        let none = Demand::default();
        let mut counts: HashMap<String, HashMap<usize, u32>> = HashMap::new();
        for t in tasks.into_iter().filter(|t| holds_resources(t)) {
            let Some(&idx) = t.node.as_deref().and_then(|id| by_id.get(id)) else {
                continue;
            };
            nodes[idx].take(demands.get(t.service.as_str()).unwrap_or(&none));
            match counts.get_mut(&t.service) {
                Some(c) => *c.entry(idx).or_insert(0) += 1,
                None => {
                    counts.insert(t.service.clone(), HashMap::from([(idx, 1)]));
                }
            }
        }
        let mut by_load = BTreeSet::new();
        let mut unavailable = Tally::default();
        for (i, n) in nodes.iter().enumerate() {
            match n.available() {
                Ok(()) => {
                    by_load.insert((n.load, i));
                }
                Err(f) => unavailable.add(f),
            }
        }
        Cluster {
            nodes,
            by_id,
            by_load,
            unavailable,
            counts,
        }
    }

    /// Records a task of `p`'s service placed on node `idx`.
    pub(super) fn assign(&mut self, idx: usize, p: &mut Placement) {
        let n = &mut self.nodes[idx];
        let was = (n.load, idx);
        n.take(&p.demand);
        if self.by_load.remove(&was) {
            self.by_load.insert((n.load, idx));
        }
        *p.counts.entry(idx).or_insert(0) += 1;
    }
}

/// One service's placement needs, and where its tasks are, while its tasks are placed.
#[derive(Debug)]
pub(crate) struct Placement {
    /// Its placement constraints.
    pub(super) constraints: Vec<Constraint>,
    /// What each task takes.
    pub(super) demand: Demand,
    /// Label keys to spread over, outermost first.
    pub(super) spread_over: Vec<String>,
    /// Node index → tasks of the service on it.
    pub(super) counts: HashMap<usize, u32>,
}

impl Placement {
    /// How many tasks of the service node `idx` holds.
    pub(super) fn count(&self, idx: usize) -> u32 {
        self.counts.get(&idx).copied().unwrap_or(0)
    }

    /// Whether one more task fits on node `idx`, which takes tasks.
    pub(super) fn check(&self, idx: usize, n: &NodeState<'_>) -> Result<(), Filter> {
        if !constraint::satisfies_all(n.node, &self.constraints) {
            return Err(Filter::Constraints);
        }
        n.fits(&self.demand, self.count(idx))
    }
}
