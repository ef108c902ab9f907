//! One pass of the orchestrator, as pure code: from the view and the services marked dirty,
//! the task records to create, update and remove.
//!
//! For each dirty service: the node rules first ([`crate::reconcile::nodes`]: orphan the
//! tasks of lost nodes, stop those of drained ones), then the service's reconciler
//! ([`crate::reconcile::replicated`] or [`crate::reconcile::global`]); the tasks of a removed
//! service are removed. New tasks whose restart delay has not passed are not made yet: the
//! pass says when to come back. Then the tasks to place, new ones and those still pending,
//! go through the [`Scheduler`] in one batch, so a new task is written once, already on its
//! node (`assigned`), or pending with the scheduler's reason.

use std::collections::{BTreeSet, HashMap};

use crate::reconcile::{global, nodes, replicated, update};
use crate::scheduler::{Decision, Scheduler, holds_resources};
use crate::state::wire::spec_at;
use crate::state::{
    DesiredState, Node, ObservedState, RolloutState, Service, ServiceMode, ServiceSpec, Task,
    UpdateStatus,
};

use super::view::View;

/// One write of a pass.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Write {
    /// A new task (its key must not exist).
    Create(Task),
    /// A changed task, expecting the version it was decided from.
    Update {
        /// The version read.
        version: u64,
        /// The new record.
        task: Task,
    },
    /// A service's record changed by its rollout (its status, or a rollback's spec),
    /// expecting the version it was decided from.
    Service {
        /// The version read.
        version: u64,
        /// The new record.
        service: Box<Service>,
    },
    /// A task to forget, expecting the version it was decided from.
    Delete {
        /// The task.
        id: String,
        /// The version read.
        version: u64,
    },
}

/// What a pass decided.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// The writes, each independent of the others.
    pub writes: Vec<Write>,
    /// The earliest time a delayed task is due (Unix nanoseconds), with its services.
    pub due: Vec<(i128, String)>,
    /// How many tasks the scheduler placed, and how many it left pending.
    pub placed: usize,
    /// How many tasks it left pending.
    pub unplaced: usize,
}

/// Decides about the services in `dirty` at time `now`; `new_id` names new tasks.
pub(crate) fn run(
    view: &View,
    dirty: &BTreeSet<String>,
    now: i128,
    new_id: &mut dyn FnMut() -> String,
) -> Pass {
    let mut pass = Pass::default();
    let all_nodes: Vec<Node> = view.nodes.values().map(|n| n.value.clone()).collect();
    let node_map: HashMap<&str, &Node> = all_nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    // Existing tasks changed by this pass: id → (version read, new record).
    let mut updated: HashMap<String, (u64, Task)> = HashMap::new();
    let mut deleted: Vec<(String, u64)> = Vec::new();
    let mut created: Vec<Task> = Vec::new();
    let mut to_place: Vec<String> = Vec::new();

    for name in dirty {
        let versioned = view.tasks_of(name);
        let Some(service) = view.services.get(name) else {
            // The service was removed: so are its tasks (their nodes stop and remove them).
            deleted.extend(versioned.iter().map(|t| (t.value.id.clone(), t.version)));
            continue;
        };
        let service_version = service.version;
        let service = &service.value;
        let versions: HashMap<&str, u64> = versioned
            .iter()
            .map(|t| (t.value.id.as_str(), t.version))
            .collect();
        let mut current: Vec<Task> = versioned.iter().map(|t| t.value.clone()).collect();
        let mut changed: BTreeSet<usize> = BTreeSet::new();
        for (i, t) in current.iter_mut().enumerate() {
            if let Some(e) = nodes::effect(t, &node_map) {
                e.apply(t, now);
                changed.insert(i);
            }
        }
        let up = update::plan(service, &current, now);
        if let Some(due) = up.due {
            pass.due.push((due, name.clone()));
        }
        if let Some(record) = rollout_record(service, &up, now) {
            pass.writes.push(Write::Service {
                version: service_version,
                service: Box::new(record),
            });
        }
        let plan = match service.spec.mode {
            ServiceMode::Replicated { .. } => {
                replicated::reconcile_with(service, &current, now, &up.rollout)
            }
            ServiceMode::Global => {
                global::reconcile_with(service, &current, &all_nodes, now, &up.rollout)
            }
        };
        let index: HashMap<String, usize> = current
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        for (id, why) in &plan.shutdown {
            let Some(&i) = index.get(id) else { continue };
            let t = &mut current[i];
            if t.desired == DesiredState::Running {
                t.desired = DesiredState::Shutdown;
                // A task never placed has nobody to stop it: it ends here.
                if t.observed == ObservedState::Pending {
                    t.observed = ObservedState::Shutdown;
                }
                t.reason = Some((*why).to_owned());
                t.updated_at = now;
                changed.insert(i);
            }
        }
        let removed: BTreeSet<&str> = plan.remove.iter().map(String::as_str).collect();
        for id in &removed {
            if let Some(v) = versions.get(id) {
                deleted.push(((*id).to_owned(), *v));
            }
        }
        for (i, t) in current.iter().enumerate() {
            if removed.contains(t.id.as_str()) {
                continue;
            }
            if t.desired == DesiredState::Running && t.observed == ObservedState::Pending {
                to_place.push(t.id.clone());
            }
            if changed.contains(&i) {
                updated.insert(t.id.clone(), (versions[t.id.as_str()], t.clone()));
            }
        }
        for nt in plan.create {
            if nt.not_before > now {
                pass.due.push((nt.not_before, name.clone()));
                continue;
            }
            created.push(Task {
                id: new_id(),
                service: name.clone(),
                slot: nt.slot,
                spec_version: nt.spec_version,
                node: nt.node,
                desired: DesiredState::Running,
                observed: ObservedState::Pending,
                address: None,
                exit_code: None,
                reason: None,
                created_at: now,
                updated_at: now,
                health: None,
            });
        }
    }

    // Placement, in one batch: pending tasks of the dirty services, then the new ones.
    let pending: Vec<Task> = to_place
        .iter()
        .filter_map(|id| {
            updated
                .get(id)
                .map(|(_, t)| t.clone())
                .or_else(|| view.tasks.get(id).map(|t| t.value.clone()))
        })
        .chain(created.iter().cloned())
        .collect();
    let mut placed: HashMap<String, Task> = HashMap::new();
    if !pending.is_empty() {
        let holding = view
            .tasks
            .values()
            .map(|t| match updated.get(&t.value.id) {
                Some((_, u)) => u,
                None => &t.value,
            })
            .filter(|t| holds_resources(t));
        let specs: HashMap<String, ServiceSpec> = view
            .services
            .iter()
            .map(|(k, s)| (k.clone(), s.value.spec.clone()))
            .collect();
        let mut scheduler = Scheduler::new(&all_nodes, holding, &specs);
        let decisions = scheduler.schedule(&pending);
        for (mut t, d) in pending.into_iter().zip(decisions) {
            match d {
                Decision::Assign { node_id, .. } => {
                    t.node = Some(node_id);
                    t.observed = ObservedState::Assigned;
                    t.reason = None;
                    pass.placed += 1;
                }
                Decision::Pending { reason, .. } => {
                    t.reason = Some(reason.to_string());
                    pass.unplaced += 1;
                }
            }
            t.updated_at = now;
            placed.insert(t.id.clone(), t);
        }
    }

    for t in created {
        let t = placed.remove(&t.id).unwrap_or(t);
        pass.writes.push(Write::Create(t));
    }
    for (id, t) in placed {
        // An existing pending task: written when placed, or when anything but its time
        // changed (a new reason, or an earlier step of this pass).
        updated.remove(&id);
        let Some(before) = view.tasks.get(&id) else {
            continue;
        };
        let mut same = t.clone();
        same.updated_at = before.value.updated_at;
        if same != before.value {
            pass.writes.push(Write::Update {
                version: before.version,
                task: t,
            });
        }
    }
    for (_, (version, task)) in updated {
        pass.writes.push(Write::Update { version, task });
    }
    for (id, version) in deleted {
        pass.writes.push(Write::Delete { id, version });
    }
    pass
}

/// The service's record after its rollout's decision `up`, if it changes: the new status, or
/// for a rollback the spec it goes back to (keeping the replica count) as a new version.
fn rollout_record(service: &Service, up: &update::UpdatePlan, now: i128) -> Option<Service> {
    let Some(back) = up.rollback_to else {
        let status = up.status.clone()?;
        return Some(Service {
            update: Some(status),
            ..service.clone()
        });
    };
    let message = up
        .status
        .as_ref()
        .map(|s| s.message.clone())
        .unwrap_or_default();
    let Some(previous) = spec_at(service, back) else {
        return Some(Service {
            update: Some(UpdateStatus {
                state: RolloutState::Paused,
                message: format!(
                    "update paused: cannot roll back, version {back} is no longer in the service's history ({message})"
                ),
                ..up.status.clone().or_else(|| service.update.clone())?
            }),
            ..service.clone()
        });
    };
    let spec = ServiceSpec {
        mode: service.spec.mode,
        ..previous.clone()
    };
    let mut record = match crate::state::apply_service(Some(service), spec, None, now) {
        Ok(crate::state::Applied::Updated(s)) => s,
        // The same spec (or one that no longer passes the checks): nothing to roll back to.
        _ => return None,
    };
    record.update = Some(UpdateStatus {
        state: RolloutState::RollingBack,
        from_version: service.version,
        to_version: record.version,
        started_at: now,
        completed_at: None,
        message,
    });
    Some(record)
}
