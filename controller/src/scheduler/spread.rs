//! Choosing among the nodes that fit: the spread of one service's tasks.
//!
//! Candidates are ordered by the key (tasks of the service on the node, tasks on the node,
//! node index): fewest of the service first, then the least loaded node, then the smallest
//! node id. [`Picker::Flat`] serves services without preferences, [`Picker::Tree`] those
//! that spread over node labels first. Both rely on filters getting only stricter while one
//! service's tasks are placed (resources and ports are only taken, counts only grow), so a
//! node that failed once is dropped for the rest of the service's batch.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::Bound;

use super::cluster::{Cluster, Placement};
use super::filter::Tally;

/// A candidate's key, smallest first in the heaps: (service tasks, load, node index).
type Key = Reverse<(u32, u32, usize)>;

/// The candidate key of node `idx`.
fn key(cluster: &Cluster<'_>, p: &Placement, idx: usize) -> Key {
    Reverse((p.count(idx), cluster.nodes[idx].load, idx))
}

/// Picks the node for each next task of one service.
#[derive(Debug)]
pub(crate) enum Picker {
    /// No preferences.
    Flat(Flat),
    /// Spread over label values first.
    Tree(Tree),
}

impl Picker {
    /// A picker for `p`'s service over the cluster as it is now.
    pub(crate) fn new(cluster: &Cluster<'_>, p: &Placement) -> Picker {
        if p.spread_over.is_empty() {
            Picker::Flat(Flat::new(cluster, p))
        } else {
            Picker::Tree(Tree::new(cluster, p))
        }
    }

    /// The node for the next task, or `None` when none fits. The caller assigns the task
    /// there and then calls [`Picker::placed`].
    pub(crate) fn next(&mut self, cluster: &Cluster<'_>, p: &Placement) -> Option<usize> {
        match self {
            Picker::Flat(f) => f.next(cluster, p),
            Picker::Tree(t) => t.next(cluster, p),
        }
    }

    /// The task [`Picker::next`] chose is now on `idx`.
    pub(crate) fn placed(&mut self, idx: usize, cluster: &Cluster<'_>, p: &Placement) {
        match self {
            Picker::Flat(f) => f.counted.push(key(cluster, p, idx)),
            Picker::Tree(t) => t.placed(idx, cluster, p),
        }
    }

    /// The nodes that take tasks but were found not to fit, by why.
    pub(crate) fn rejected(&self) -> Tally {
        match self {
            Picker::Flat(f) => f.rejected,
            Picker::Tree(t) => t.rejected,
        }
    }
}

/// Without preferences: nodes holding none of the service's tasks come first, in the
/// cluster's load order, read from a cursor that only moves forward; the nodes holding some
/// are in a small heap. Costs O(log N) per task plus each node skipped or rejected once.
#[derive(Debug)]
pub(crate) struct Flat {
    /// The last (load, index) of the cluster's load-ordered set visited.
    cursor: Option<(u32, usize)>,
    /// The nodes holding tasks of the service that still take tasks.
    counted: BinaryHeap<Key>,
    rejected: Tally,
}

impl Flat {
    fn new(cluster: &Cluster<'_>, p: &Placement) -> Flat {
        let counted = p
            .counts
            .iter()
            .filter(|&(&idx, &c)| c > 0 && cluster.nodes[idx].available().is_ok())
            .map(|(&idx, _)| key(cluster, p, idx))
            .collect();
        Flat {
            cursor: None,
            counted,
            rejected: Tally::default(),
        }
    }

    fn next(&mut self, cluster: &Cluster<'_>, p: &Placement) -> Option<usize> {
        let from = self.cursor.map_or(Bound::Unbounded, Bound::Excluded);
        for &(load, idx) in cluster.by_load.range((from, Bound::Unbounded)) {
            self.cursor = Some((load, idx));
            // Nodes that hold the service's tasks are in the heap (a node placed on here
            // moves further on in the set, and is skipped when met again).
            if p.count(idx) > 0 {
                continue;
            }
            match p.check(idx, &cluster.nodes[idx]) {
                Ok(()) => return Some(idx),
                Err(f) => self.rejected.add(f),
            }
        }
        while let Some(Reverse((_, _, idx))) = self.counted.pop() {
            match p.check(idx, &cluster.nodes[idx]) {
                Ok(()) => return Some(idx),
                Err(f) => self.rejected.add(f),
            }
        }
        None
    }
}

/// One group of the preference tree: the nodes sharing the values of the labels above it.
#[derive(Debug, Default)]
struct Group {
    /// Tasks of the service on the group's nodes.
    count: u64,
    /// Sub-groups in the order of their label value (no label first), or none for a leaf.
    children: Vec<usize>,
    /// A leaf's candidate nodes.
    heap: BinaryHeap<Key>,
    /// Nothing in it fits any more.
    dead: bool,
}

/// With preferences: a tree with one level per preference, whose leaves hold heaps of
/// candidate nodes. Each task goes down the child with the fewest tasks of the service
/// (ties to the earlier label value), then to the leaf's best node. Building costs
/// O(N log N); each task O(log N + G) for G groups.
#[derive(Debug)]
pub(crate) struct Tree {
    groups: Vec<Group>,
    /// The groups the last chosen node is in, root first.
    path: Vec<usize>,
    rejected: Tally,
}

impl Tree {
    fn new(cluster: &Cluster<'_>, p: &Placement) -> Tree {
        let mut groups = vec![Group::default()];
        let mut rejected = Tally::default();
        let mut children: Vec<BTreeMap<Option<&str>, usize>> = vec![BTreeMap::new()];
        for &(_, idx) in &cluster.by_load {
            let n = &cluster.nodes[idx];
            if let Err(f) = p.check(idx, n) {
                rejected.add(f);
                continue;
            }
            let count = p.count(idx);
            let mut g = 0;
            groups[g].count += u64::from(count);
            for label in &p.spread_over {
                let value = n.node.labels.get(label).map(String::as_str);
                let next = groups.len();
                let child = *children[g].entry(value).or_insert(next);
                if child == next {
                    groups.push(Group::default());
                    children.push(BTreeMap::new());
                }
                g = child;
                groups[g].count += u64::from(count);
            }
            groups[g].heap.push(key(cluster, p, idx));
        }
        for (g, c) in children.into_iter().enumerate() {
            groups[g].children = c.into_values().collect();
        }
        Tree {
            groups,
            path: Vec::new(),
            rejected,
        }
    }

    fn next(&mut self, cluster: &Cluster<'_>, p: &Placement) -> Option<usize> {
        // Each pass either finds a node or marks one more group dead.
        'descend: while !self.groups[0].dead {
            self.path.clear();
            let mut g = 0;
            loop {
                self.path.push(g);
                if self.groups[g].children.is_empty() {
                    while let Some(Reverse((_, _, idx))) = self.groups[g].heap.pop() {
                        match p.check(idx, &cluster.nodes[idx]) {
                            Ok(()) => return Some(idx),
                            Err(f) => self.rejected.add(f),
                        }
                    }
                    self.groups[g].dead = true;
                    continue 'descend;
                }
                let best = self.groups[g]
                    .children
                    .iter()
                    .copied()
                    .filter(|&c| !self.groups[c].dead)
                    .min_by_key(|&c| self.groups[c].count);
                match best {
                    Some(c) => g = c,
                    None => {
                        self.groups[g].dead = true;
                        continue 'descend;
                    }
                }
            }
        }
        None
    }

    fn placed(&mut self, idx: usize, cluster: &Cluster<'_>, p: &Placement) {
        for &g in &self.path {
            self.groups[g].count += 1;
        }
        if let Some(&leaf) = self.path.last() {
            self.groups[leaf].heap.push(key(cluster, p, idx));
        }
    }
}
