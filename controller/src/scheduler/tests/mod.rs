//! Tests of the scheduler: each filter and the reasons of unplaced tasks ([`filters`]),
//! the spread, preferences and one large batch ([`spread`]), and the helpers they share.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::state::{
    Availability, DesiredState, Node, NodeResources, NodeStatus, PortSpec, Protocol, RestartPolicy,
    ServiceMode,
};
use crate::state::{ObservedState, PortMode};

const GIB: u64 = 1 << 30;

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        hostname: format!("h-{id}"),
        address: format!("{id}:1"),
        labels: BTreeMap::new(),
        resources: NodeResources {
            cpus: 4.0,
            memory_bytes: 8 * GIB,
        },
        status: NodeStatus::Ready,
        availability: Availability::Active,
        last_seen: None,
        subnet: None,
        agent_version: None,
    }
}

fn labelled(id: &str, labels: &[(&str, &str)]) -> Node {
    Node {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..node(id)
    }
}

fn nodes(ids: &[&str]) -> Vec<Node> {
    ids.iter().map(|id| node(id)).collect()
}

fn spec(name: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        image: "img:1".into(),
        entrypoint: None,
        command: vec![],
        env: vec![],
        mode: ServiceMode::Replicated { replicas: 1 },
        ports: vec![],
        links: vec![],
        resources: Default::default(),
        constraints: vec![],
        labels: Default::default(),
        restart: RestartPolicy::default(),
        max_replicas_per_node: None,
        preferences: vec![],
        healthcheck: None,
        update_config: None,
        rollback_config: None,
        force_update: 0,
    }
}

fn services(specs: impl IntoIterator<Item = ServiceSpec>) -> HashMap<String, ServiceSpec> {
    specs.into_iter().map(|s| (s.name.clone(), s)).collect()
}

fn task(id: &str, service: &str, node: Option<&str>, observed: ObservedState) -> Task {
    Task {
        id: id.into(),
        service: service.into(),
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
    }
}

/// `n` pending tasks of `service`, ids `service.from` onwards.
fn pending(service: &str, from: usize, n: usize) -> Vec<Task> {
    (from..from + n)
        .map(|i| {
            task(
                &format!("{service}.{i}"),
                service,
                None,
                ObservedState::Pending,
            )
        })
        .collect()
}

/// Running tasks of `service`: `n` on each listed node.
fn running(service: &str, on: &[(&str, usize)]) -> Vec<Task> {
    on.iter()
        .flat_map(|&(node, n)| {
            (0..n).map(move |i| {
                task(
                    &format!("{service}@{node}.{i}"),
                    service,
                    Some(node),
                    ObservedState::Running,
                )
            })
        })
        .collect()
}

/// Assigned tasks per node.
fn per_node(ds: &[Decision]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in ds {
        if let Decision::Assign { node_id, .. } = d {
            *m.entry(node_id.clone()).or_insert(0) += 1;
        }
    }
    m
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|&(n, c)| (n.to_string(), c)).collect()
}

/// The reasons of the pending decisions.
fn reasons(ds: &[Decision]) -> Vec<String> {
    ds.iter()
        .filter_map(|d| match d {
            Decision::Pending { reason, .. } => Some(reason.to_string()),
            Decision::Assign { .. } => None,
        })
        .collect()
}

/// The decisions as tasks placed on their nodes (for a fresh scheduler to start from).
fn as_running(ds: &[Decision], service: &str) -> Vec<Task> {
    ds.iter()
        .filter_map(|d| match d {
            Decision::Assign { task_id, node_id } => Some(task(
                task_id,
                service,
                Some(node_id),
                ObservedState::Running,
            )),
            Decision::Pending { .. } => None,
        })
        .collect()
}

mod filters;
mod spread;
