//! The reconciler of a replicated service, as pure code: from the service and its tasks, what
//! to create, stop and forget so that each of its `replicas` slots has one live task.
//!
//! Swarm's rules: a slot without a live task gets a new one, unless its last task ended in a
//! way the restart policy does not restart (or the policy's attempts are used up), and not
//! before the policy's delay after that end; a task orphaned by a lost node is always
//! replaced at once; a slot with two live tasks keeps the most advanced; slots beyond the
//! replica count are stopped; each slot keeps at most [`HISTORY_PER_SLOT`] ended tasks.
//! Which outdated tasks a rollout replaces, and when, is the updater's ([`super::update`]);
//! this carries it out in the slot: stop-first stops the old task and starts its replacement
//! once it has stopped; start-first starts the replacement and stops the old task once the
//! new one runs and is healthy.

use std::collections::BTreeMap;

use super::update::{Rollout, is_current};
use crate::state::{
    DesiredState, Health, ObservedState, RestartCondition, Service, ServiceMode, Task, UpdateOrder,
};

/// Why an outdated task is stopped once its replacement runs.
pub const REPLACED: &str = "replaced by a task of the new spec";
/// Why an outdated task is stopped before its replacement starts (stop-first).
pub const UPDATING: &str = "stopped to be updated to the new spec";

/// How many ended tasks a slot keeps as its history (Swarm's default task history limit).
pub const HISTORY_PER_SLOT: usize = 5;

/// A task to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// Its slot (0 for a global service's task).
    pub slot: u32,
    /// The node it must run on (a global service's task); `None`: the scheduler chooses.
    pub node: Option<String>,
    /// The spec version it runs.
    pub spec_version: u64,
    /// Not to be started before this time (Unix nanoseconds): the restart delay.
    pub not_before: i128,
}

/// What the reconciler decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Tasks to create.
    pub create: Vec<NewTask>,
    /// Live tasks to stop (desired state to shutdown), with why.
    pub shutdown: Vec<(String, &'static str)>,
    /// Ended tasks to forget (their records removed).
    pub remove: Vec<String>,
    /// Slots left empty on purpose, with why (for `ps` and events).
    pub idle: Vec<(u32, &'static str)>,
}

/// Whether `t` is live: meant to run and not ended.
pub fn is_live(t: &Task) -> bool {
    t.desired == DesiredState::Running
        && matches!(
            t.observed,
            ObservedState::Pending
                | ObservedState::Assigned
                | ObservedState::Starting
                | ObservedState::Running
        )
}

/// How far a live task got, for choosing between two in one slot.
fn progress(t: &Task) -> u8 {
    match t.observed {
        ObservedState::Running => 3,
        ObservedState::Starting => 2,
        ObservedState::Assigned => 1,
        _ => 0,
    }
}

/// The plan for `service` given its `tasks` (others are ignored) at time `now`, with no
/// task chosen for a rollout. A global service has no slots: its plan is empty.
pub fn reconcile(service: &Service, tasks: &[Task], now: i128) -> Plan {
    reconcile_with(service, tasks, now, &Rollout::default())
}

/// [`reconcile`], replacing the outdated tasks `rollout` chose.
pub fn reconcile_with(service: &Service, tasks: &[Task], now: i128, rollout: &Rollout) -> Plan {
    let mut plan = Plan::default();
    let ServiceMode::Replicated { replicas } = service.spec.mode else {
        return plan;
    };
    let mut slots: BTreeMap<u32, Vec<&Task>> = BTreeMap::new();
    for t in tasks.iter().filter(|t| t.service == service.spec.name) {
        slots.entry(t.slot).or_default().push(t);
    }
    for slot in 1..=replicas {
        let in_slot = slots.remove(&slot).unwrap_or_default();
        reconcile_slot(service, slot, None, &in_slot, now, rollout, &mut plan);
    }
    // Slots beyond the replica count: stop what runs, forget what ended.
    for (_, in_slot) in slots {
        for t in in_slot {
            if is_live(t) {
                plan.shutdown.push((t.id.clone(), "scaled down"));
            } else if t.desired == DesiredState::Running || ended(t) {
                plan.remove.push(t.id.clone());
            }
        }
    }
    plan
}

/// Whether `t` has ended (it will not run again).
pub fn ended(t: &Task) -> bool {
    matches!(
        t.observed,
        ObservedState::Complete
            | ObservedState::Failed
            | ObservedState::Shutdown
            | ObservedState::Orphaned
    )
}

/// Decides about one slot's `tasks`: a replicated service's slot (`node` `None`), or a
/// global service's tasks on `node` (slot 0). The rules are the same: one live task, restarts
/// under the policy, a bounded history.
pub(super) fn reconcile_slot(
    service: &Service,
    slot: u32,
    node: Option<&str>,
    tasks: &[&Task],
    now: i128,
    rollout: &Rollout,
    plan: &mut Plan,
) {
    // Live tasks of the current spec and outdated ones, each the most advanced (then the
    // newest) first.
    let order =
        |a: &&Task, b: &&Task| (progress(b), b.created_at).cmp(&(progress(a), a.created_at));
    let (mut current, mut outdated): (Vec<&Task>, Vec<&Task>) = tasks
        .iter()
        .copied()
        .filter(|t| is_live(t))
        .partition(|t| is_current(service, t));
    current.sort_by(order);
    outdated.sort_by(order);
    for extra in current.iter().skip(1) {
        plan.shutdown
            .push((extra.id.clone(), "another task runs in its slot"));
    }
    if let Some(new) = current.first() {
        // The old task of a start-first rollout stays until its replacement runs (and is
        // healthy): then it is stopped.
        let ready = new.observed == ObservedState::Running
            && matches!(new.health, None | Some(Health::Healthy));
        for (i, old) in outdated.iter().enumerate() {
            if ready || i > 0 {
                plan.shutdown.push((old.id.clone(), REPLACED));
            }
        }
    } else {
        for extra in outdated.iter().skip(1) {
            plan.shutdown
                .push((extra.id.clone(), "another task runs in its slot"));
        }
    }
    let live: Vec<&Task> = current.iter().chain(outdated.first()).copied().collect();
    let mut history: Vec<&Task> = tasks.iter().copied().filter(|t| ended(t)).collect();
    history.sort_by_key(|t| std::cmp::Reverse(t.updated_at));
    // A slot whose policy limits its restarts keeps enough history to count them.
    let keep = HISTORY_PER_SLOT.max(service.spec.restart.max_attempts as usize + 1);
    for old in history.iter().skip(keep) {
        plan.remove.push(old.id.clone());
    }
    let new = |not_before| NewTask {
        slot,
        node: node.map(str::to_owned),
        spec_version: service.version,
        not_before,
    };
    if let Some(old) = live.first() {
        // Only an outdated task runs: the rollout replaces it when it chose it.
        if current.is_empty() && rollout.selected.contains(&old.id) {
            match rollout.order {
                UpdateOrder::StopFirst => plan.shutdown.push((old.id.clone(), UPDATING)),
                UpdateOrder::StartFirst => plan.create.push(new(now)),
            }
        }
        return;
    }
    // A stop-first rollout starts the replacement once the old task has stopped.
    if tasks
        .iter()
        .any(|t| t.desired == DesiredState::Shutdown && !ended(t) && !is_current(service, t))
    {
        return;
    }
    let Some(last) = history.first() else {
        // Nothing ran in this slot yet (or its records are gone).
        plan.create.push(new(now));
        return;
    };
    if last.observed == ObservedState::Orphaned {
        // Its node was lost: rescheduled at once, whatever the policy.
        plan.create.push(new(now));
        return;
    }
    let policy = &service.spec.restart;
    let restart = match policy.condition {
        RestartCondition::None => false,
        RestartCondition::OnFailure => {
            last.observed == ObservedState::Failed || last.exit_code.is_some_and(|c| c != 0)
        }
        RestartCondition::Any => true,
    };
    // A task stopped on purpose (desired shutdown) is not a failure to restart from, but its
    // slot still wants a task: replaced at once.
    if last.desired == DesiredState::Shutdown {
        plan.create.push(new(now));
        return;
    }
    if !restart {
        plan.idle.push((
            slot,
            "its task ended and the restart policy does not restart it",
        ));
        return;
    }
    if policy.max_attempts > 0 {
        let window = i128::from(policy.window_ms) * 1_000_000;
        let attempts = history
            .iter()
            .filter(|t| t.desired == DesiredState::Running)
            .filter(|t| window == 0 || now - t.updated_at <= window)
            .count();
        // The first run is not a restart: `max_attempts` restarts make max_attempts + 1 runs
        // (Swarm's meaning).
        if attempts > policy.max_attempts as usize {
            plan.idle
                .push((slot, "the restart policy's attempts are used up"));
            return;
        }
    }
    let delay = i128::from(policy.delay_ms) * 1_000_000;
    plan.create.push(new(last.updated_at + delay));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{RestartPolicy, ServiceSpec};

    const MS: i128 = 1_000_000;

    fn service(replicas: u32, restart: RestartPolicy) -> Service {
        Service {
            spec: ServiceSpec {
                name: "web".into(),
                image: "nginx:1".into(),
                entrypoint: None,
                command: vec![],
                env: vec![],
                mode: ServiceMode::Replicated { replicas },
                ports: vec![],
                links: vec![],
                resources: Default::default(),
                constraints: vec![],
                labels: Default::default(),
                restart,
                max_replicas_per_node: None,
                preferences: vec![],
                healthcheck: None,
                update_config: None,
                rollback_config: None,
                force_update: 0,
            },
            version: 3,
            created_at: 0,
            updated_at: 0,
            history: vec![],
            vip: None,
            ingress: Vec::new(),
            update: None,
        }
    }

    fn task(id: &str, slot: u32, observed: ObservedState, at: i128) -> Task {
        Task {
            id: id.into(),
            service: "web".into(),
            slot,
            spec_version: 3,
            node: Some("n1".into()),
            desired: DesiredState::Running,
            observed,
            address: None,
            exit_code: None,
            reason: None,
            created_at: at,
            updated_at: at,
            health: None,
        }
    }

    fn slots(plan: &Plan) -> Vec<u32> {
        plan.create.iter().map(|t| t.slot).collect()
    }

    #[test]
    fn empty_slots_get_tasks_and_extra_slots_are_stopped() {
        let s = service(3, RestartPolicy::default());
        let plan = reconcile(&s, &[task("a", 2, ObservedState::Running, 0)], 10);
        assert_eq!(slots(&plan), vec![1, 3]);
        assert!(
            plan.create
                .iter()
                .all(|t| t.spec_version == 3 && t.not_before == 10)
        );

        let scaled = service(1, RestartPolicy::default());
        let tasks = [
            task("a", 1, ObservedState::Running, 0),
            task("b", 2, ObservedState::Running, 0),
            task("c", 3, ObservedState::Failed, 0),
        ];
        let plan = reconcile(&scaled, &tasks, 10);
        assert!(plan.create.is_empty());
        assert_eq!(plan.shutdown, vec![("b".to_owned(), "scaled down")]);
        assert_eq!(plan.remove, vec!["c".to_owned()]);
    }

    #[test]
    fn a_slot_with_two_live_tasks_keeps_the_most_advanced() {
        let s = service(1, RestartPolicy::default());
        let tasks = [
            task("pending", 1, ObservedState::Pending, 5),
            task("running", 1, ObservedState::Running, 1),
        ];
        let plan = reconcile(&s, &tasks, 10);
        assert_eq!(
            plan.shutdown,
            vec![("pending".to_owned(), "another task runs in its slot")]
        );
        assert!(plan.create.is_empty());
    }

    #[test]
    fn restarts_follow_the_policy_its_delay_and_its_attempts() {
        let failed = |id: &str, at| {
            let mut t = task(id, 1, ObservedState::Failed, at);
            t.exit_code = Some(1);
            t
        };
        let completed = |id: &str, at| {
            let mut t = task(id, 1, ObservedState::Complete, at);
            t.exit_code = Some(0);
            t
        };
        let policy = |condition, max_attempts, window_ms| RestartPolicy {
            condition,
            delay_ms: 100,
            max_attempts,
            window_ms,
        };

        // any: restarted after the delay from the end.
        let plan = reconcile(
            &service(1, policy(RestartCondition::Any, 0, 0)),
            &[completed("a", 50 * MS)],
            60 * MS,
        );
        assert_eq!(plan.create[0].not_before, 150 * MS);
        // on-failure: a clean exit stays ended, a failure is restarted.
        let on_failure = service(1, policy(RestartCondition::OnFailure, 0, 0));
        let plan = reconcile(&on_failure, &[completed("a", 0)], 1);
        assert!(plan.create.is_empty());
        assert_eq!(plan.idle.len(), 1);
        assert_eq!(reconcile(&on_failure, &[failed("a", 0)], 1).create.len(), 1);
        // none: never restarted.
        let none = service(1, policy(RestartCondition::None, 0, 0));
        assert!(reconcile(&none, &[failed("a", 0)], 1).create.is_empty());
        // Two restarts: the third failure (the second restart's) gives up; outside the window
        // they no longer count.
        let limited = service(1, policy(RestartCondition::Any, 2, 1_000));
        let three = [failed("a", 0), failed("b", 200 * MS), failed("c", 400 * MS)];
        let plan = reconcile(&limited, &three[..2], 500 * MS);
        assert_eq!(plan.create.len(), 1, "one restart left");
        let plan = reconcile(&limited, &three, 500 * MS);
        assert!(plan.create.is_empty(), "{plan:?}");
        assert_eq!(
            plan.idle,
            vec![(1, "the restart policy's attempts are used up")]
        );
        let plan = reconcile(&limited, &three, 1_100 * MS);
        assert_eq!(plan.create.len(), 1, "the first failure left the window");
    }

    #[test]
    fn orphaned_tasks_are_replaced_at_once_and_history_is_bounded() {
        let none = service(
            1,
            RestartPolicy {
                condition: RestartCondition::None,
                ..RestartPolicy::default()
            },
        );
        let plan = reconcile(&none, &[task("lost", 1, ObservedState::Orphaned, 5)], 9);
        assert_eq!(
            plan.create,
            vec![NewTask {
                slot: 1,
                node: None,
                spec_version: 3,
                not_before: 9
            }]
        );

        let s = service(1, RestartPolicy::default());
        let mut tasks: Vec<Task> = (0..8)
            .map(|i| task(&format!("old{i}"), 1, ObservedState::Failed, i))
            .collect();
        tasks.push(task("now", 1, ObservedState::Running, 100));
        let plan = reconcile(&s, &tasks, 200);
        assert_eq!(plan.remove, vec!["old2", "old1", "old0"]);
        assert!(plan.create.is_empty());
    }

    #[test]
    fn global_services_and_other_services_tasks_are_left_alone() {
        let mut global = service(1, RestartPolicy::default());
        global.spec.mode = ServiceMode::Global;
        assert_eq!(reconcile(&global, &[], 0), Plan::default());
        let s = service(1, RestartPolicy::default());
        let mut other = task("x", 1, ObservedState::Running, 0);
        other.service = "db".into();
        assert_eq!(slots(&reconcile(&s, &[other], 0)), vec![1]);
    }
}
