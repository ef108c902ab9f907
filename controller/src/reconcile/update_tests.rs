//! The updater, step by step with the slot reconciler, as a leader's passes would run them.

use super::*;
use crate::reconcile::replicated::{REPLACED, UPDATING, ended, reconcile_with};
use crate::state::{
    HealthCheckSpec, HealthProbe, ServiceMode, ServiceSpec, SpecVersion, UpdateConfig,
};

const MS: i128 = 1_000_000;

fn spec(image: &str, replicas: u32, config: UpdateConfig) -> ServiceSpec {
    ServiceSpec {
        update_config: Some(config),
        ..ServiceSpec::minimal("web", image, replicas)
    }
}

/// `web` at version 2 (`web:2`), version 1 (`web:1`) in its history.
fn service(replicas: u32, config: UpdateConfig) -> Service {
    Service {
        spec: spec("web:2", replicas, config.clone()),
        version: 2,
        created_at: 0,
        updated_at: 100 * MS,
        history: vec![SpecVersion {
            version: 1,
            spec: spec("web:1", replicas, config),
            replaced_at: 100 * MS,
        }],
        vip: None,
        ingress: vec![],
        update: None,
    }
}

fn task(id: &str, slot: u32, version: u64, observed: ObservedState, at: i128) -> Task {
    Task {
        id: id.into(),
        service: "web".into(),
        slot,
        spec_version: version,
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

fn old_tasks(n: u32) -> Vec<Task> {
    (1..=n)
        .map(|s| task(&format!("old{s}"), s, 1, ObservedState::Running, 0))
        .collect()
}

fn config(parallelism: u32, order: UpdateOrder) -> UpdateConfig {
    UpdateConfig {
        parallelism,
        order,
        monitor_ms: 1_000,
        ..Default::default()
    }
}

/// Runs the updater and the slot reconciler once: the status is stored, the chosen old tasks
/// are stopped or new ones made (already running at `now`), as a pass and the nodes would.
fn pass(service: &mut Service, tasks: &mut Vec<Task>, now: i128) -> UpdatePlan {
    let up = plan(service, tasks, now);
    if let Some(s) = &up.status {
        service.update = Some(s.clone());
    }
    let p = reconcile_with(service, tasks, now, &up.rollout);
    for (id, why) in &p.shutdown {
        let t = tasks.iter_mut().find(|t| &t.id == id).unwrap();
        t.desired = DesiredState::Shutdown;
        t.reason = Some((*why).to_owned());
        t.updated_at = now;
    }
    for (i, n) in p.create.iter().enumerate() {
        let mut t = task(
            &format!("new{}-{now}-{i}", n.slot),
            n.slot,
            n.spec_version,
            ObservedState::Running,
            now,
        );
        if service.spec.healthcheck.is_some() {
            t.health = Some(Health::Starting);
        }
        tasks.push(t);
    }
    up
}

/// The nodes stop what was told to stop.
fn stop_all(tasks: &mut [Task], now: i128) {
    for t in tasks.iter_mut() {
        if t.desired == DesiredState::Shutdown && !ended(t) {
            t.observed = ObservedState::Shutdown;
            t.updated_at = now;
        }
    }
}

fn running_versions(tasks: &[Task]) -> Vec<u64> {
    let mut v: Vec<u64> = tasks
        .iter()
        .filter(|t| is_live(t))
        .map(|t| t.spec_version)
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn stop_first_replaces_parallelism_tasks_at_a_time_after_each_settles() {
    let mut s = service(4, config(2, UpdateOrder::StopFirst));
    let mut tasks = old_tasks(4);
    let up = pass(&mut s, &mut tasks, 1_000 * MS);
    let status = up.status.expect("a rollout begins");
    assert_eq!(
        (status.state, status.from_version, status.to_version),
        (RolloutState::Updating, 1, 2)
    );
    assert_eq!(up.rollout.selected.len(), 2);
    let stopping: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.reason.as_deref() == Some(UPDATING))
        .collect();
    assert_eq!(stopping.len(), 2);
    // No replacement while the old tasks stop, and no other task chosen.
    let up = pass(&mut s, &mut tasks, 1_100 * MS);
    assert!(up.rollout.selected.is_empty());
    assert_eq!(running_versions(&tasks), [1, 1]);
    stop_all(&mut tasks, 1_200 * MS);
    pass(&mut s, &mut tasks, 1_300 * MS);
    assert_eq!(running_versions(&tasks), [1, 1, 2, 2]);
    // The new ones settle after the monitor period (1 s): only then the next two.
    let up = pass(&mut s, &mut tasks, 1_500 * MS);
    assert!(up.rollout.selected.is_empty());
    assert_eq!(up.due, Some(2_300 * MS));
    let up = pass(&mut s, &mut tasks, 2_300 * MS);
    assert_eq!(up.rollout.selected.len(), 2);
    stop_all(&mut tasks, 2_400 * MS);
    pass(&mut s, &mut tasks, 2_500 * MS);
    assert_eq!(running_versions(&tasks), [2, 2, 2, 2]);
    // Completed once the last ones settled.
    let up = pass(&mut s, &mut tasks, 3_000 * MS);
    assert!(up.status.is_none());
    let up = pass(&mut s, &mut tasks, 3_600 * MS);
    let done = up.status.expect("completed");
    assert_eq!(done.state, RolloutState::Completed);
    assert_eq!(done.completed_at, Some(3_600 * MS));
}

#[test]
fn start_first_keeps_the_old_task_until_the_new_one_is_healthy() {
    let mut s = service(2, config(0, UpdateOrder::StartFirst));
    s.spec.healthcheck = Some(HealthCheckSpec {
        probe: HealthProbe::Tcp { port: 80 },
        interval_ms: 100,
        timeout_ms: 100,
        retries: 1,
        start_period_ms: 0,
        start_interval_ms: 100,
    });
    let mut tasks = old_tasks(2);
    let up = pass(&mut s, &mut tasks, 1_000 * MS);
    assert_eq!(up.rollout.selected.len(), 2, "parallelism 0: all at once");
    // Both old tasks still run beside their starting replacements.
    assert_eq!(running_versions(&tasks), [1, 1, 2, 2]);
    pass(&mut s, &mut tasks, 1_100 * MS);
    assert_eq!(running_versions(&tasks), [1, 1, 2, 2]);
    // One turns healthy: its slot's old task is stopped, the other stays.
    let new1 = tasks
        .iter_mut()
        .find(|t| t.slot == 1 && t.spec_version == 2)
        .unwrap();
    new1.health = Some(Health::Healthy);
    new1.updated_at = 1_200 * MS;
    pass(&mut s, &mut tasks, 1_300 * MS);
    let old1 = tasks.iter().find(|t| t.id == "old1").unwrap();
    assert_eq!(old1.reason.as_deref(), Some(REPLACED));
    assert_eq!(running_versions(&tasks), [1, 2, 2]);
}

#[test]
fn a_version_that_only_scales_is_no_rollout() {
    let mut s = service(4, config(1, UpdateOrder::StopFirst));
    s.spec.image = "web:1".into();
    s.spec.mode = ServiceMode::Replicated { replicas: 5 };
    let mut tasks = old_tasks(4);
    let up = pass(&mut s, &mut tasks, 1_000 * MS);
    assert_eq!(up, UpdatePlan::default());
    assert!(tasks.iter().all(|t| t.desired == DesiredState::Running));
}

#[test]
fn failures_past_the_ratio_pause_or_roll_back() {
    for (action, expect) in [
        (FailureAction::Pause, RolloutState::Paused),
        (FailureAction::Rollback, RolloutState::Updating),
        (FailureAction::Continue, RolloutState::Updating),
    ] {
        let mut c = config(1, UpdateOrder::StartFirst);
        c.failure_action = action;
        c.max_failure_ratio = 0.2;
        let mut s = service(4, c);
        let mut tasks = old_tasks(4);
        pass(&mut s, &mut tasks, 1_000 * MS);
        // The new task fails: 1 of 4 is past 0.2.
        let new = tasks.iter_mut().find(|t| t.spec_version == 2).unwrap();
        new.observed = ObservedState::Failed;
        new.reason = Some("exited with code 3".into());
        new.updated_at = 1_100 * MS;
        let up = plan(&s, &tasks, 1_200 * MS);
        let state = up
            .status
            .as_ref()
            .map_or(s.update.as_ref().unwrap().state, |u| u.state);
        assert_eq!(state, expect, "{action:?}");
        match action {
            FailureAction::Pause => {
                let msg = &up.status.as_ref().unwrap().message;
                assert!(
                    msg.contains("1 of 4 new tasks failed (exited with code 3)"),
                    "{msg}"
                );
                assert!(up.rollout.selected.is_empty());
            }
            FailureAction::Rollback => {
                assert_eq!(up.rollback_to, Some(1));
                assert!(up.rollout.selected.is_empty());
            }
            FailureAction::Continue => assert_eq!(up.rollback_to, None),
        }
        // The old task of the failed slot kept serving (start-first).
        assert!(tasks.iter().any(|t| t.id == "old1" && is_live(t)));
    }
}

#[test]
fn a_rollback_makes_the_old_tasks_current_again() {
    let mut s = service(2, config(1, UpdateOrder::StartFirst));
    // The service was rolled back: version 3 has version 1's spec.
    s.history.push(SpecVersion {
        version: 2,
        spec: s.spec.clone(),
        replaced_at: 2_000 * MS,
    });
    s.spec.image = "web:1".into();
    s.spec.rollback_config = Some(config(1, UpdateOrder::StartFirst));
    s.version = 3;
    s.update = Some(UpdateStatus {
        state: RolloutState::RollingBack,
        from_version: 2,
        to_version: 3,
        started_at: 2_000 * MS,
        completed_at: None,
        message: "rolling back".into(),
    });
    let mut tasks = old_tasks(2);
    tasks.push(task("bad", 1, 2, ObservedState::Starting, 1_500 * MS));
    let up = pass(&mut s, &mut tasks, 2_100 * MS);
    // The v1 tasks are current: only the v2 task is replaced (chosen), nothing new starts
    // in a slot whose v1 task runs; it is stopped as replaced.
    assert!(up.rollout.selected.is_empty() || up.rollout.selected.contains("bad"));
    let bad = tasks.iter().find(|t| t.id == "bad").unwrap();
    assert_eq!(bad.desired, DesiredState::Shutdown);
    let up = pass(&mut s, &mut tasks, 2_200 * MS);
    let u = up
        .status
        .clone()
        .unwrap_or_else(|| panic!("rolled back: {up:?} {:?}", s.update));
    assert_eq!(u.state, RolloutState::RolledBack);
}

#[test]
fn a_delay_spaces_the_batches() {
    let mut c = config(1, UpdateOrder::StartFirst);
    c.delay_ms = 500;
    c.monitor_ms = 0;
    let mut s = service(2, c);
    let mut tasks = old_tasks(2);
    pass(&mut s, &mut tasks, 1_000 * MS);
    // Settled at once (no monitor): the next waits for the delay.
    let up = pass(&mut s, &mut tasks, 1_100 * MS);
    assert!(up.rollout.selected.is_empty());
    assert_eq!(up.due, Some(1_500 * MS));
    let up = pass(&mut s, &mut tasks, 1_500 * MS);
    assert_eq!(up.rollout.selected.len(), 1);
}
