//! Why a node does not take a task ([`Filter`]), the count of each reason over the
//! cluster ([`Tally`]), and why a task stays pending ([`Unplaced`]), in words the user can
//! act on.

use std::fmt;

/// A filter a node failed for a task, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Filter {
    /// The node is down or has not sent a heartbeat yet.
    NotReady,
    /// The node is drained or paused.
    NotActive,
    /// A placement constraint does not hold on the node.
    Constraints,
    /// The node already runs `max_replicas_per_node` tasks of the service.
    MaxReplicas,
    /// Not enough memory left unreserved.
    Memory,
    /// Not enough CPU left unreserved.
    Cpu,
    /// A published port is already in use on the node.
    HostPort,
}

impl Filter {
    /// Every filter, in order.
    pub const ALL: [Filter; 7] = [
        Filter::NotReady,
        Filter::NotActive,
        Filter::Constraints,
        Filter::MaxReplicas,
        Filter::Memory,
        Filter::Cpu,
        Filter::HostPort,
    ];

    /// What failed, in words.
    pub fn phrase(self) -> &'static str {
        match self {
            Filter::NotReady => "node down or not ready",
            Filter::NotActive => "node drained or paused",
            Filter::Constraints => "scheduling constraints not satisfied",
            Filter::MaxReplicas => "max replicas per node reached",
            Filter::Memory => "insufficient memory",
            Filter::Cpu => "insufficient cpu",
            Filter::HostPort => "host-mode port already in use",
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phrase())
    }
}

/// How many nodes failed each filter (each node counted once, for the first filter it
/// failed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    counts: [u32; Filter::ALL.len()],
}

impl Tally {
    /// Counts one more node that failed `f`.
    pub fn add(&mut self, f: Filter) {
        self.counts[f as usize] += 1;
    }

    /// How many nodes failed `f`.
    pub fn count(&self, f: Filter) -> u32 {
        self.counts[f as usize]
    }

    /// How many nodes were counted.
    pub fn total(&self) -> u32 {
        self.counts.iter().sum()
    }

    /// Both tallies added.
    pub fn plus(mut self, other: &Tally) -> Tally {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self
    }
}

/// `no suitable node (insufficient memory on 3 nodes, scheduling constraints not satisfied
/// on 2 nodes)`: the most frequent reason first.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total() == 0 {
            return f.write_str("no suitable node (the cluster has no nodes)");
        }
        let mut seen: Vec<(Filter, u32)> = Filter::ALL
            .into_iter()
            .map(|r| (r, self.count(r)))
            .filter(|&(_, n)| n > 0)
            .collect();
        // Stable: equal counts keep the order the filters are checked in.
        seen.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        f.write_str("no suitable node (")?;
        for (i, (r, n)) in seen.into_iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let nodes = if n == 1 { "node" } else { "nodes" };
            write!(f, "{sep}{r} on {n} {nodes}")?;
        }
        f.write_str(")")
    }
}

/// Why a task stays pending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unplaced {
    /// The task's service has no spec.
    #[error("service {service:?} does not exist")]
    UnknownService {
        /// The service.
        service: String,
    },
    /// The service's constraints or preferences do not parse (a spec that skipped
    /// validation).
    #[error("invalid placement: {reason}")]
    InvalidPlacement {
        /// What is wrong.
        reason: String,
    },
    /// The task names a node (a global service's task) that is not in the cluster.
    #[error("node {node:?} is not in the cluster")]
    UnknownNode {
        /// The node's id.
        node: String,
    },
    /// Every node failed a filter.
    #[error("{0}")]
    NoSuitableNode(Tally),
}
