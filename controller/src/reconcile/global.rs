//! The reconciler of a global service, as pure code: one live task on every eligible node,
//! following nodes as they join, leave and change.
//!
//! A node is eligible when it is ready, active and satisfies the service's constraints. On
//! an eligible node the service's tasks follow a replicated slot's rules
//! ([`super::replicated`]): one live task, restarts under the policy, a bounded history.
//! A node that is down or not registered yet is left to the node rules ([`super::nodes`]):
//! its tasks are orphaned there, and it gets a task again once it is back. A paused node
//! keeps what runs and gets nothing new. On a node that is drained, no longer satisfies the
//! constraints or left the cluster, the service's live tasks are stopped and its ended ones
//! forgotten.

use std::collections::BTreeMap;

use super::replicated::{Plan, ended, is_live, reconcile_slot};
use super::update::Rollout;
use crate::scheduler::constraint::satisfies_all;
use crate::state::validate::parse_constraint;
use crate::state::{Availability, Node, NodeStatus, Service, ServiceMode, Task};

/// The plan for global `service` given its `tasks` (others are ignored) and the cluster's
/// `nodes`, at time `now`. A replicated service's plan is empty.
pub fn reconcile(service: &Service, tasks: &[Task], nodes: &[Node], now: i128) -> Plan {
    reconcile_with(service, tasks, nodes, now, &Rollout::default())
}

/// [`reconcile`], replacing the outdated tasks `rollout` chose.
pub fn reconcile_with(
    service: &Service,
    tasks: &[Task],
    nodes: &[Node],
    now: i128,
    rollout: &Rollout,
) -> Plan {
    let mut plan = Plan::default();
    if service.spec.mode != ServiceMode::Global {
        return plan;
    }
    // Constraints are checked when the service is applied; one that does not parse here
    // makes no node eligible rather than every node.
    let constraints = service
        .spec
        .constraints
        .iter()
        .map(|c| parse_constraint(c))
        .collect::<Result<Vec<_>, _>>();
    let mut by_node: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    let mut unplaced: Vec<&Task> = Vec::new();
    for t in tasks.iter().filter(|t| t.service == service.spec.name) {
        match t.node.as_deref() {
            Some(n) => by_node.entry(n).or_default().push(t),
            None => unplaced.push(t),
        }
    }
    for node in nodes {
        let here = by_node.remove(node.id.as_str()).unwrap_or_default();
        let fits = constraints.as_ref().is_ok_and(|c| satisfies_all(node, c));
        match (node.status, node.availability) {
            (NodeStatus::Down | NodeStatus::Unknown, _) => {}
            (NodeStatus::Ready, Availability::Active) if fits => {
                reconcile_slot(service, 0, Some(&node.id), &here, now, rollout, &mut plan);
            }
            (NodeStatus::Ready, Availability::Pause) if fits => {}
            (NodeStatus::Ready, Availability::Drain) => {
                leave(&here, "its node is drained", &mut plan);
            }
            (NodeStatus::Ready, _) => leave(
                &here,
                "its node no longer satisfies the service's constraints",
                &mut plan,
            ),
        }
    }
    for here in by_node.into_values() {
        leave(&here, "its node left the cluster", &mut plan);
    }
    // A global task is always made for a node; one without is not this reconciler's.
    leave(
        &unplaced,
        "a global service's task must name its node",
        &mut plan,
    );
    plan
}

/// Stops the live tasks among `tasks` and forgets the ended ones.
fn leave(tasks: &[&Task], why: &'static str, plan: &mut Plan) {
    for t in tasks {
        if is_live(t) {
            plan.shutdown.push((t.id.clone(), why));
        } else if ended(t) {
            plan.remove.push(t.id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::{DesiredState, NodeResources, ObservedState, RestartPolicy, ServiceSpec};

    fn service(constraints: &[&str]) -> Service {
        Service {
            spec: ServiceSpec {
                name: "agent".into(),
                image: "busybox:1".into(),
                entrypoint: None,
                command: vec![],
                env: vec![],
                mode: ServiceMode::Global,
                ports: vec![],
                links: vec![],
                resources: Default::default(),
                constraints: constraints.iter().map(|c| c.to_string()).collect(),
                labels: Default::default(),
                restart: RestartPolicy::default(),
                max_replicas_per_node: None,
                preferences: vec![],
                healthcheck: None,
                update_config: None,
                rollback_config: None,
                force_update: 0,
            },
            version: 2,
            created_at: 0,
            updated_at: 0,
            history: vec![],
            vip: None,
            ingress: Vec::new(),
            update: None,
        }
    }

    fn node(id: &str, status: NodeStatus, availability: Availability, disk: &str) -> Node {
        Node {
            id: id.into(),
            hostname: format!("host-{id}"),
            address: "192.0.2.1".into(),
            labels: BTreeMap::from([("disk".to_owned(), disk.to_owned())]),
            resources: NodeResources {
                cpus: 2.0,
                memory_bytes: 1 << 30,
            },
            status,
            availability,
            last_seen: None,
            subnet: None,
            agent_version: None,
        }
    }

    fn task(id: &str, node: &str, observed: ObservedState) -> Task {
        Task {
            id: id.into(),
            service: "agent".into(),
            slot: 0,
            spec_version: 2,
            node: Some(node.into()),
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

    fn created_on(plan: &Plan) -> Vec<&str> {
        plan.create
            .iter()
            .map(|t| t.node.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn one_task_per_eligible_node_and_a_joining_node_gets_one() {
        use Availability::*;
        use NodeStatus::*;
        let nodes = vec![
            node("a", Ready, Active, "ssd"),
            node("b", Ready, Active, "hdd"),
            node("c", Down, Active, "ssd"),
            node("d", Ready, Pause, "ssd"),
            node("e", Unknown, Active, "ssd"),
        ];
        let s = service(&[]);
        let plan = reconcile(&s, &[task("t1", "a", ObservedState::Running)], &nodes, 5);
        assert_eq!(created_on(&plan), vec!["b"]);
        assert!(
            plan.create
                .iter()
                .all(|t| t.slot == 0 && t.spec_version == 2)
        );
        assert!(plan.shutdown.is_empty() && plan.remove.is_empty());

        // A constraint limits the eligible nodes; the task on the node that no longer
        // satisfies it is stopped.
        let ssd = service(&["node.labels.disk==ssd"]);
        let tasks = [
            task("t1", "a", ObservedState::Running),
            task("t2", "b", ObservedState::Running),
        ];
        let plan = reconcile(&ssd, &tasks, &nodes, 5);
        assert!(plan.create.is_empty(), "{plan:?}");
        assert_eq!(
            plan.shutdown,
            vec![(
                "t2".to_owned(),
                "its node no longer satisfies the service's constraints"
            )]
        );
    }

    #[test]
    fn drained_and_departed_nodes_lose_their_tasks_and_down_nodes_are_left_alone() {
        use Availability::*;
        use NodeStatus::*;
        let nodes = vec![
            node("a", Ready, Drain, "ssd"),
            node("c", Down, Active, "ssd"),
        ];
        let mut failed = task("old", "a", ObservedState::Failed);
        failed.exit_code = Some(1);
        let tasks = [
            task("t1", "a", ObservedState::Running),
            failed,
            task("t2", "gone", ObservedState::Running),
            task("t3", "c", ObservedState::Running),
        ];
        let plan = reconcile(&service(&[]), &tasks, &nodes, 5);
        assert!(plan.create.is_empty());
        assert_eq!(
            plan.shutdown,
            vec![
                ("t1".to_owned(), "its node is drained"),
                ("t2".to_owned(), "its node left the cluster"),
            ]
        );
        assert_eq!(plan.remove, vec!["old".to_owned()]);
    }

    #[test]
    fn an_orphaned_task_is_replaced_when_its_node_is_back_and_failures_follow_the_policy() {
        use Availability::*;
        use NodeStatus::*;
        let nodes = vec![node("a", Ready, Active, "ssd")];
        let mut orphan = task("lost", "a", ObservedState::Orphaned);
        orphan.desired = DesiredState::Shutdown;
        let plan = reconcile(&service(&[]), &[orphan], &nodes, 7);
        assert_eq!(created_on(&plan), vec!["a"]);
        assert_eq!(plan.create[0].not_before, 7);

        let mut s = service(&[]);
        s.spec.restart.delay_ms = 100;
        let mut failed = task("f", "a", ObservedState::Failed);
        failed.updated_at = 1_000;
        let plan = reconcile(&s, &[failed], &nodes, 1_001);
        assert_eq!(plan.create[0].not_before, 1_000 + 100 * 1_000_000);
    }
}
