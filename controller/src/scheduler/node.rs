//! One node's free capacity as the scheduler sees it, and what a task of a service needs.

use std::collections::HashSet;

use super::filter::Filter;
use crate::state::{Availability, Node, NodeStatus, Protocol, ServiceSpec};

/// What each task of a service takes from its node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Demand {
    /// Reserved CPU, in billionths of a CPU (integers, so that ten reservations of 0.1
    /// fill exactly one CPU).
    pub nanocpus: u64,
    /// Reserved memory, in bytes.
    pub memory: u64,
    /// Published host ports.
    pub ports: Vec<(u16, Protocol)>,
    /// Most tasks of the service on one node.
    pub max_per_node: Option<u32>,
}

impl Demand {
    /// What a task of `spec` takes.
    pub fn of(spec: &ServiceSpec) -> Demand {
        Demand {
            nanocpus: spec.resources.cpus_reserved.map_or(0, nanocpus),
            memory: spec.resources.memory_reserved.unwrap_or(0),
            ports: spec
                .ports
                .iter()
                .filter(|p| !p.is_ingress())
                .filter_map(|p| p.published.map(|h| (h, p.protocol)))
                .collect(),
            max_per_node: spec.max_replicas_per_node,
        }
    }
}

/// CPUs in billionths (0 for anything not a positive finite number; `as` saturates).
pub(super) fn nanocpus(cpus: f64) -> u64 {
    if cpus.is_finite() && cpus > 0.0 {
        (cpus * 1e9).round() as u64
    } else {
        0
    }
}

/// A node with what is left of it.
#[derive(Debug, Clone)]
pub(super) struct NodeState<'a> {
    /// The record.
    pub node: &'a Node,
    /// CPU not reserved by its tasks, in billionths.
    pub free_nanocpus: u64,
    /// Memory not reserved by its tasks, in bytes.
    pub free_memory: u64,
    /// Host ports its tasks publish.
    pub ports: HashSet<(u16, Protocol)>,
    /// How many tasks it has, of every service.
    pub load: u32,
}

impl<'a> NodeState<'a> {
    /// A node with nothing on it yet.
    pub fn new(node: &'a Node) -> Self {
        NodeState {
            node,
            free_nanocpus: nanocpus(node.resources.cpus),
            free_memory: node.resources.memory_bytes,
            ports: HashSet::new(),
            load: 0,
        }
    }

    /// Whether it takes new tasks at all: ready and active.
    pub fn available(&self) -> Result<(), Filter> {
        if self.node.status != NodeStatus::Ready {
            Err(Filter::NotReady)
        } else if self.node.availability != Availability::Active {
            Err(Filter::NotActive)
        } else {
            Ok(())
        }
    }

    /// Whether one more task needing `d` fits, the node already having `same_service` tasks
    /// of its service.
    pub fn fits(&self, d: &Demand, same_service: u32) -> Result<(), Filter> {
        if d.max_per_node.is_some_and(|m| same_service >= m) {
            Err(Filter::MaxReplicas)
        } else if d.memory > self.free_memory {
            Err(Filter::Memory)
        } else if d.nanocpus > self.free_nanocpus {
            Err(Filter::Cpu)
        } else if d.ports.iter().any(|p| self.ports.contains(p)) {
            Err(Filter::HostPort)
        } else {
            Ok(())
        }
    }

    /// Takes what a task needing `d` takes (saturating: tasks already running may
    /// overcommit a node whose capacity shrank).
    pub fn take(&mut self, d: &Demand) {
        self.free_nanocpus = self.free_nanocpus.saturating_sub(d.nanocpus);
        self.free_memory = self.free_memory.saturating_sub(d.memory);
        self.ports.extend(d.ports.iter().copied());
        self.load += 1;
    }
}
