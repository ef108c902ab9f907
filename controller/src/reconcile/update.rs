//! The rolling updater, as pure code: from a service and its tasks, which outdated tasks a
//! rollout replaces now, and where the rollout is (Swarm's rules).
//!
//! A task is outdated when the spec it runs differs from the service's current one in
//! anything that reaches a task (a new version that only scales is not a rollout). While
//! outdated tasks run, the service has a rollout ([`UpdateStatus`]) towards its current
//! version, under `update_config` (`rollback_config` for a rollback):
//! - at most `parallelism` replacements are in flight (0: all at once); a replacement is in
//!   flight from its old task being chosen until its new task has settled: healthy when the
//!   service has a health check, else running for `monitor`;
//! - the next ones start `delay` after the last one settled;
//! - a new task that fails (or turns unhealthy) counts against `max_failure_ratio` of the
//!   tasks; past it, `failure_action` pauses the rollout, goes on, or rolls back: the service
//!   goes back to the spec it left (a new version), under `rollback_config`. A rollback that
//!   fails pauses.
//! - `pause` (by a user or a failure) chooses no more tasks; what is in flight finishes.
//!
//! [`super::replicated::reconcile_slot`] carries the choice out in each slot.

use std::collections::HashSet;

use crate::state::wire::spec_at;
use crate::state::{
    DesiredState, FailureAction, Health, ObservedState, RolloutState, Service, ServiceMode, Task,
    UpdateOrder, UpdateStatus,
};

use super::replicated::is_live;

/// The outdated tasks to replace in this pass, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Their ids.
    pub selected: HashSet<String>,
    /// Stop-first or start-first.
    pub order: UpdateOrder,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            selected: HashSet::new(),
            order: UpdateOrder::StopFirst,
        }
    }
}

/// What the updater decided for a service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdatePlan {
    /// The tasks to replace now.
    pub rollout: Rollout,
    /// The rollout's status to write, when it changed.
    pub status: Option<UpdateStatus>,
    /// Roll back: the version whose spec the service goes back to.
    pub rollback_to: Option<u64>,
    /// When to look again (a monitor period or a delay ends), Unix nanoseconds.
    pub due: Option<i128>,
}

/// Whether `t` runs `service`'s current spec, as far as a task can tell.
pub fn is_current(service: &Service, t: &Task) -> bool {
    t.spec_version == service.version
        || spec_at(service, t.spec_version).is_some_and(|s| s.same_tasks_as(&service.spec))
}

const MS: i128 = 1_000_000;

/// When a new task counts as updated: once healthy when the service has a check (its record
/// last changed then), else `monitor` after it started running.
fn settled_at(service: &Service, t: &Task, monitor_ms: u64) -> Option<i128> {
    if t.desired != DesiredState::Running || t.observed != ObservedState::Running {
        return None;
    }
    match (&service.spec.healthcheck, t.health) {
        (Some(_), Some(Health::Healthy)) => Some(t.updated_at),
        (Some(_), _) => None,
        (None, _) => Some(t.updated_at + i128::from(monitor_ms) * MS),
    }
}

/// The plan for `service`'s rollout given its `tasks` (others are ignored) at `now`.
pub fn plan(service: &Service, tasks: &[Task], now: i128) -> UpdatePlan {
    let mut out = UpdatePlan::default();
    let mine: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.service == service.spec.name)
        .collect();
    let outdated_live: Vec<&Task> = mine
        .iter()
        .copied()
        .filter(|t| is_live(t) && !is_current(service, t))
        .collect();
    let mut status = match &service.update {
        Some(u) if u.to_version == service.version => u.clone(),
        // The spec changed and tasks run an older one: a new rollout (a rollback keeps its
        // state: it set the version itself).
        _ if !outdated_live.is_empty() => UpdateStatus {
            state: RolloutState::Updating,
            from_version: outdated_live
                .iter()
                .map(|t| t.spec_version)
                .max()
                .unwrap_or_default(),
            to_version: service.version,
            started_at: now,
            completed_at: None,
            message: "update in progress".into(),
        },
        _ => return out,
    };
    let before = service.update.clone();
    let rollback = status.is_rollback();
    let config = service.spec.rollout(rollback);
    out.rollout.order = config.order;

    // The rollout's new tasks: made since it began, of the current spec.
    let new: Vec<&Task> = mine
        .iter()
        .copied()
        .filter(|t| t.created_at >= status.started_at && is_current(service, t))
        .collect();
    let settled: Vec<i128> = new
        .iter()
        .filter_map(|t| settled_at(service, t, config.monitor_ms))
        .collect();
    // Replacements in flight, by slot (a global service's: by node): a new task not settled
    // yet, or an old task the rollout stopped whose slot has no settled task of the current
    // spec yet (its replacement may not even exist: stop-first).
    let key = |t: &Task| (t.slot, if t.slot == 0 { t.node.clone() } else { None });
    let settled_slots: HashSet<_> = mine
        .iter()
        .filter(|t| is_live(t) && is_current(service, t))
        .filter(|t| settled_at(service, t, config.monitor_ms).is_some_and(|s| s <= now))
        .map(|t| key(t))
        .collect();
    let mut flight: HashSet<_> = new
        .iter()
        .filter(|t| is_live(t) && !settled_slots.contains(&key(t)))
        .map(|t| key(t))
        .collect();
    flight.extend(
        mine.iter()
            .filter(|t| {
                t.desired == DesiredState::Shutdown
                    && !is_current(service, t)
                    && t.updated_at >= status.started_at
            })
            .map(|t| key(t))
            .filter(|k| !settled_slots.contains(k)),
    );
    let in_flight = flight.len();
    let failed: Vec<&&Task> = new
        .iter()
        .filter(|t| t.observed == ObservedState::Failed || t.health == Some(Health::Unhealthy))
        .collect();

    if !status.is_done() && !status.is_paused() {
        // The share is of the service's tasks: its replicas, or a global one's nodes.
        let total = match service.spec.mode {
            ServiceMode::Replicated { replicas } => replicas as usize,
            ServiceMode::Global => mine
                .iter()
                .filter(|t| is_live(t))
                .filter_map(|t| t.node.as_deref())
                .collect::<HashSet<_>>()
                .len(),
        }
        .max(1);
        #[allow(clippy::cast_precision_loss)]
        let ratio = failed.len() as f64 / total as f64;
        if !failed.is_empty() && ratio > config.max_failure_ratio {
            let why = failed
                .iter()
                .max_by_key(|t| t.updated_at)
                .map(|t| match (&t.reason, t.health) {
                    (Some(r), _) => r.clone(),
                    (None, Some(Health::Unhealthy)) => "unhealthy".into(),
                    (None, _) => "a task failed".into(),
                })
                .unwrap_or_default();
            let what = format!("{} of {total} new tasks failed ({why})", failed.len());
            match (config.failure_action, rollback) {
                (FailureAction::Rollback, false) => {
                    out.rollback_to = Some(status.from_version);
                    status.message = format!("rolling back: {what}");
                }
                (FailureAction::Continue, _) => {}
                (_, false) => {
                    status.state = RolloutState::Paused;
                    status.message = format!("update paused: {what}");
                }
                (_, true) => {
                    status.state = RolloutState::RollbackPaused;
                    status.message = format!("rollback paused: {what}");
                }
            }
        }
    }

    let active = !status.is_done() && !status.is_paused() && out.rollback_to.is_none();
    if active {
        if outdated_live.is_empty() && in_flight == 0 {
            status.state = if rollback {
                RolloutState::RolledBack
            } else {
                RolloutState::Completed
            };
            status.completed_at = Some(now);
            // A rollback keeps why it began (a failure, or a user's undo).
            status.message = if rollback {
                format!("{}; rollback completed", status.message)
            } else {
                "update completed".into()
            };
        } else {
            let room = if config.parallelism == 0 {
                usize::MAX
            } else {
                (config.parallelism as usize).saturating_sub(in_flight)
            };
            let last = settled.iter().copied().filter(|s| *s <= now).max();
            let wait_until = last.map(|l| l + i128::from(config.delay_ms) * MS);
            if let Some(w) = wait_until.filter(|w| *w > now && config.delay_ms > 0) {
                out.due = Some(w);
            } else {
                let mut candidates = outdated_live.clone();
                candidates.sort_by_key(|t| (t.slot, t.node.clone(), t.created_at));
                out.rollout.selected = candidates.iter().take(room).map(|t| t.id.clone()).collect();
            }
            // Come back when an in-flight task's monitor period ends.
            let next_settle = new
                .iter()
                .filter_map(|t| settled_at(service, t, config.monitor_ms))
                .filter(|s| *s > now)
                .min();
            out.due = match (out.due, next_settle) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    if before.as_ref() != Some(&status) {
        out.status = Some(status);
    }
    out
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
