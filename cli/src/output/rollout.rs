//! `berth rollout`'s views: a rollout's progress line and a service's version history.

use berth_proto::v1;

use super::table::Table;
use super::time::{age, now};

/// Whether tasks of `a` and of `b` are the same (they differ at most in the replica count
/// and the rollout settings), as the controller decides what a rollout replaces.
pub fn same_tasks(a: &v1::ServiceSpec, b: &v1::ServiceSpec) -> bool {
    let strip = |s: &v1::ServiceSpec| v1::ServiceSpec {
        replicas: 0,
        update_config: None,
        rollback_config: None,
        ..s.clone()
    };
    strip(a) == strip(b)
}

/// Where a service's rollout is, counted from its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Live tasks running the current spec.
    pub updated: usize,
    /// The tasks the service wants (its replicas; a global one's live tasks).
    pub total: usize,
    /// The rollout's state, if it has one.
    pub state: Option<v1::RolloutState>,
    /// Its message.
    pub message: String,
}

/// `service`'s rollout from its `tasks`.
pub fn progress(service: &v1::Service, tasks: &[v1::Task]) -> Progress {
    let spec = service.spec.clone().unwrap_or_default();
    let live: Vec<&v1::Task> = tasks
        .iter()
        .filter(|t| {
            t.service == spec.name
                && t.desired == v1::TaskDesiredState::Running as i32
                && t.observed == v1::TaskState::Running as i32
        })
        .collect();
    let updated = live
        .iter()
        .filter(|t| crate::progress::current(service, t.spec_version))
        .filter(|t| spec.healthcheck.is_none() || t.health == v1::TaskHealth::Healthy as i32)
        .count();
    let total = if spec.global {
        live.len()
    } else {
        spec.replicas as usize
    };
    Progress {
        updated,
        total,
        state: service.update.as_ref().map(|u| u.state()),
        message: service
            .update
            .as_ref()
            .map(|u| u.message.clone())
            .unwrap_or_default(),
    }
}

impl Progress {
    /// Whether the rollout ended, and how: `Some(true)` completed (or none),
    /// `Some(false)` paused or rolled back after a failure, `None` still going.
    pub fn ended(&self) -> Option<bool> {
        match self.state {
            None | Some(v1::RolloutState::Completed) => Some(true),
            Some(v1::RolloutState::RolledBack) => Some(self.message.starts_with("undo")),
            Some(v1::RolloutState::Paused | v1::RolloutState::RollbackPaused) => Some(false),
            _ => None,
        }
    }

    /// One line: `web: updating [######----] 3/5 updated`.
    pub fn line(&self, name: &str, width: usize) -> String {
        let filled = (self.updated.min(self.total) * width)
            .checked_div(self.total)
            .unwrap_or(width);
        let bar = format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled));
        let what = match self.state {
            None => "no rollout",
            Some(v1::RolloutState::Updating) => "updating",
            Some(v1::RolloutState::Paused) => "paused",
            Some(v1::RolloutState::Completed) => "update completed",
            Some(v1::RolloutState::RollingBack) => "rolling back",
            Some(v1::RolloutState::RollbackPaused) => "rollback paused",
            Some(v1::RolloutState::RolledBack) => "rolled back",
            Some(v1::RolloutState::Unspecified) => "unknown",
        };
        let mut line = format!(
            "{name}: {what} {bar} {}/{} updated",
            self.updated, self.total
        );
        if !self.message.is_empty() && self.ended() != Some(true) {
            line.push_str(&format!(" ({})", self.message));
        }
        line
    }
}

/// What changed from `before` to `after`, in words (`image web:2`, `env`, …).
fn changes(before: Option<&v1::ServiceSpec>, after: &v1::ServiceSpec) -> String {
    let Some(b) = before else {
        return "created".into();
    };
    let mut out = Vec::new();
    if b.image != after.image {
        out.push(format!("image {}", after.image));
    }
    if b.command != after.command || b.entrypoint != after.entrypoint {
        out.push("command".into());
    }
    if b.env != after.env {
        out.push("env".into());
    }
    if b.replicas != after.replicas {
        out.push(format!("replicas {}", after.replicas));
    }
    if b.force_update != after.force_update {
        out.push("restart".into());
    }
    if b.healthcheck != after.healthcheck {
        out.push("healthcheck".into());
    }
    if b.ports != after.ports {
        out.push("ports".into());
    }
    if b.resources != after.resources {
        out.push("resources".into());
    }
    if out.is_empty() && !same_tasks(b, after) {
        out.push("other settings".into());
    } else if out.is_empty() {
        out.push("rollout settings".into());
    }
    out.join(", ")
}

/// The `rollout history` table, oldest first.
pub fn history(service: &v1::Service) -> String {
    let mut t = Table::new(&["VERSION", "", "REPLACED", "IMAGE", "CHANGE"]);
    let current = service.spec.clone().unwrap_or_default();
    let mut previous: Option<&v1::ServiceSpec> = None;
    let n = now();
    for h in &service.history {
        let Some(spec) = &h.spec else { continue };
        t.row(vec![
            h.version.to_string(),
            String::new(),
            format!("{} ago", age(n, h.replaced_at)),
            spec.image.clone(),
            changes(previous, spec),
        ]);
        previous = Some(spec);
    }
    t.row(vec![
        service.version.to_string(),
        "*".into(),
        String::new(),
        current.image.clone(),
        changes(previous, &current),
    ]);
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(version: u64, healthy: bool) -> v1::Task {
        v1::Task {
            service: "web".into(),
            spec_version: version,
            desired: v1::TaskDesiredState::Running.into(),
            observed: v1::TaskState::Running.into(),
            health: if healthy {
                v1::TaskHealth::Healthy
            } else {
                v1::TaskHealth::Starting
            }
            .into(),
            ..Default::default()
        }
    }

    fn service() -> v1::Service {
        let spec = |image: &str, replicas| v1::ServiceSpec {
            name: "web".into(),
            image: image.into(),
            replicas,
            healthcheck: Some(v1::ServiceHealthCheck::default()),
            ..Default::default()
        };
        v1::Service {
            spec: Some(spec("web:2", 4)),
            version: 3,
            history: vec![
                v1::ServiceVersion {
                    version: 1,
                    spec: Some(spec("web:1", 3)),
                    replaced_at: 1,
                },
                v1::ServiceVersion {
                    version: 2,
                    spec: Some(spec("web:2", 3)),
                    replaced_at: 2,
                },
            ],
            update: Some(v1::ServiceUpdateStatus {
                state: v1::RolloutState::Updating.into(),
                message: "update in progress".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn progress_counts_healthy_tasks_of_the_current_spec_whatever_their_version() {
        let tasks = vec![task(1, true), task(2, true), task(3, true), task(3, false)];
        let p = progress(&service(), &tasks);
        assert_eq!((p.updated, p.total), (2, 4));
        assert_eq!(p.ended(), None);
        assert_eq!(
            p.line("web", 10),
            "web: updating [#####-----] 2/4 updated (update in progress)"
        );
        let mut s = service();
        s.update.as_mut().unwrap().state = v1::RolloutState::RolledBack.into();
        s.update.as_mut().unwrap().message = "rolling back: 1 of 4 new tasks failed".into();
        assert_eq!(progress(&s, &tasks).ended(), Some(false));
        s.update.as_mut().unwrap().message = "undo to version 1; rollback completed".into();
        assert_eq!(progress(&s, &tasks).ended(), Some(true));
    }

    #[test]
    fn history_lists_versions_with_what_changed() {
        let text = history(&service());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[1].contains("web:1") && lines[1].contains("created"),
            "{text}"
        );
        assert!(lines[2].contains("image web:2"), "{text}");
        assert!(
            lines[3].contains('*') && lines[3].contains("replicas 4"),
            "{text}"
        );
    }
}
