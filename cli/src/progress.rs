//! Waiting for services to converge: how far each service is (pure, from its record and
//! its tasks) and the display on standard error — redrawn in place on a terminal, one plain
//! line per change otherwise.
//!
//! A service has converged when as many of its tasks as it wants run with its current
//! spec (a task whose spec differs from it only in `replicas` counts as current: scaling
//! makes a new version without touching the running tasks) and no live task runs an older
//! spec. A global service wants one task per eligible node: it has converged when it has
//! at least one live task and every live task runs.

use berth_proto::v1;

use crate::output::tasks::live;

/// How far one service is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The service.
    pub name: String,
    /// Live tasks running the current spec.
    pub running: u32,
    /// Tasks wanted (a global service: its live tasks).
    pub desired: u32,
    /// Live tasks running an older spec.
    pub outdated: u32,
    /// Why tasks are not running yet or failed: (task name, state, reason), latest first.
    pub problems: Vec<(String, &'static str, String)>,
    /// The rollout, when it stopped or went back: `paused: …`, `rolled back: …`.
    pub rollout: Option<String>,
    /// The rollout is paused: the service will not converge without `rollout resume`.
    pub paused: bool,
}

impl Progress {
    /// Whether the service has converged.
    pub fn converged(&self) -> bool {
        self.running == self.desired && self.outdated == 0 && !self.paused
    }

    /// One line: `web  2/3 running (1 pending: no node has 2 CPUs free)`; `width` pads the
    /// name.
    pub fn line(&self, width: usize) -> String {
        let mut line = format!(
            "{:width$}  {}/{} running",
            self.name, self.running, self.desired
        );
        let mut notes = Vec::new();
        if let Some(r) = &self.rollout {
            notes.push(r.clone());
        }
        if self.outdated > 0 {
            notes.push(format!("{} on an older spec", self.outdated));
        }
        if let Some((_, state, reason)) = self.problems.first() {
            if reason.is_empty() {
                notes.push((*state).to_owned());
            } else {
                notes.push(format!("{state}: {reason}"));
            }
        }
        if !notes.is_empty() {
            line.push_str(&format!(" ({})", notes.join("; ")));
        }
        if self.converged() {
            line.push_str(" ✓");
        }
        line
    }
}

/// The spec of `service` at `version` (its current one or from its history).
fn spec_at(service: &v1::Service, version: u64) -> Option<&v1::ServiceSpec> {
    if version == service.version {
        return service.spec.as_ref();
    }
    service
        .history
        .iter()
        .find(|h| h.version == version)
        .and_then(|h| h.spec.as_ref())
}

/// Whether a task at `version` runs `service`'s current spec (`replicas` aside).
pub(crate) fn current(service: &v1::Service, version: u64) -> bool {
    let (Some(now), Some(then)) = (service.spec.as_ref(), spec_at(service, version)) else {
        return false;
    };
    crate::output::rollout::same_tasks(now, then)
}

/// How far `service` is, from `tasks` (others' are ignored).
pub fn progress(service: &v1::Service, tasks: &[v1::Task]) -> Progress {
    let spec = service.spec.clone().unwrap_or_default();
    let mine: Vec<&v1::Task> = tasks.iter().filter(|t| t.service == spec.name).collect();
    let live_tasks: Vec<&&v1::Task> = mine.iter().filter(|t| live(t)).collect();
    let running = live_tasks
        .iter()
        .filter(|t| t.observed() == v1::TaskState::Running && current(service, t.spec_version))
        // With a health check, a task counts once healthy.
        .filter(|t| spec.healthcheck.is_none() || t.health() == v1::TaskHealth::Healthy)
        .count();
    let outdated = live_tasks
        .iter()
        .filter(|t| !current(service, t.spec_version))
        .count();
    let mut problems: Vec<(i64, String, &'static str, String)> = mine
        .iter()
        .filter(|t| {
            t.desired() == v1::TaskDesiredState::Running
                && (matches!(
                    t.observed(),
                    v1::TaskState::Pending | v1::TaskState::Failed | v1::TaskState::Orphaned
                ) || (t.observed() == v1::TaskState::Starting && !t.reason.is_empty()))
        })
        .map(|t| {
            let name = crate::output::model::task_name(t, "");
            let state = crate::output::model::state_word(t.observed());
            let mut reason = t.reason.clone();
            if reason.is_empty() && t.has_exit_code {
                reason = format!("exit code {}", t.exit_code);
            }
            (t.updated_at, name, state, reason)
        })
        .collect();
    problems.sort_by_key(|p| std::cmp::Reverse(p.0));
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Progress {
        name: spec.name.clone(),
        running: count(running),
        desired: if spec.global {
            count(live_tasks.len()).max(1)
        } else {
            spec.replicas
        },
        outdated: count(outdated),
        problems: problems.into_iter().map(|(_, n, s, r)| (n, s, r)).collect(),
        rollout: service.update.as_ref().and_then(|u| {
            let what = match u.state() {
                v1::RolloutState::Paused | v1::RolloutState::RollbackPaused => "paused",
                v1::RolloutState::RolledBack => "rolled back",
                _ => return None,
            };
            Some(format!("rollout {what}: {}", u.message))
        }),
        paused: service.update.as_ref().is_some_and(|u| {
            matches!(
                u.state(),
                v1::RolloutState::Paused | v1::RolloutState::RollbackPaused
            )
        }),
    }
}

/// Why services did not converge: a paragraph per service, its tasks' problems indented.
pub fn not_converged(all: &[Progress]) -> String {
    let mut out = Vec::new();
    for p in all.iter().filter(|p| !p.converged()) {
        let mut s = format!("  {}: {}/{} running", p.name, p.running, p.desired);
        if let Some(r) = &p.rollout {
            s.push_str(&format!(
                ", {r} (`berth rollout status {0}`; `berth rollout resume {0}` goes on)",
                p.name
            ));
        }
        if p.outdated > 0 {
            s.push_str(&format!(
                ", {} task(s) still run an older spec (the rollout replaces them: `berth rollout status {}`)",
                p.outdated, p.name
            ));
        }
        for (task, state, reason) in p.problems.iter().take(5) {
            s.push_str(&format!("\n    {task} {state}: {reason}"));
        }
        out.push(s);
    }
    out.join("\n")
}

/// Draws the progress of several services on standard error.
#[derive(Debug, Default)]
pub struct Display {
    /// On a terminal: its width (lines are cut to fit, so that redrawing in place moves up
    /// exactly one row per line); `None`: not a terminal.
    terminal: Option<usize>,
    /// The lines last drawn.
    last: Vec<String>,
}

impl Display {
    /// A display for a terminal of `width` columns (redrawn in place), or for a file or
    /// pipe (`None`: a plain line per change).
    pub fn new(terminal: Option<usize>) -> Self {
        Display {
            terminal,
            last: Vec::new(),
        }
    }

    /// The text to write to show `all` now (empty when nothing changed).
    pub fn update(&mut self, all: &[Progress]) -> String {
        let width = all.iter().map(|p| p.name.len()).max().unwrap_or(0);
        let lines: Vec<String> = all
            .iter()
            .map(|p| {
                let line = p.line(width);
                match self.terminal {
                    Some(cols) if line.chars().count() >= cols => {
                        let mut cut: String = line.chars().take(cols.saturating_sub(2)).collect();
                        cut.push('…');
                        cut
                    }
                    _ => line,
                }
            })
            .collect();
        let mut out = String::new();
        if self.terminal.is_some() {
            if lines == self.last {
                return out;
            }
            if !self.last.is_empty() {
                out.push_str(&format!("\x1b[{}A", self.last.len()));
            }
            for l in &lines {
                out.push_str("\x1b[2K");
                out.push_str(l);
                out.push('\n');
            }
        } else {
            for (i, l) in lines.iter().enumerate() {
                if self.last.get(i) != Some(l) {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        self.last = lines;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::TaskDesiredState::Running as R;
    use v1::TaskState::{Failed, Pending, Running};

    fn service(replicas: u32, version: u64) -> v1::Service {
        let spec = v1::ServiceSpec {
            name: "web".into(),
            image: "busybox:1".into(),
            replicas,
            ..Default::default()
        };
        let old = v1::ServiceSpec {
            replicas: 1,
            ..spec.clone()
        };
        let older = v1::ServiceSpec {
            image: "busybox:0".into(),
            ..spec.clone()
        };
        v1::Service {
            spec: Some(spec),
            version,
            history: vec![
                v1::ServiceVersion {
                    version: version - 2,
                    spec: Some(older),
                    replaced_at: 1,
                },
                v1::ServiceVersion {
                    version: version - 1,
                    spec: Some(old),
                    replaced_at: 2,
                },
            ],
            ..Default::default()
        }
    }

    fn task(slot: u32, version: u64, state: v1::TaskState, reason: &str) -> v1::Task {
        v1::Task {
            id: format!("t{slot}"),
            service: "web".into(),
            slot,
            spec_version: version,
            desired: R as i32,
            observed: state as i32,
            reason: reason.into(),
            updated_at: i64::from(slot),
            ..Default::default()
        }
    }

    #[test]
    fn a_scaled_service_counts_tasks_of_the_earlier_version() {
        let s = service(2, 3);
        let p = progress(&s, &[task(1, 2, Running, ""), task(2, 3, Running, "")]);
        assert!(p.converged(), "{p:?}");
        assert_eq!(p.line(3), "web  2/2 running ✓");
    }

    #[test]
    fn pending_tasks_say_why() {
        let s = service(2, 3);
        let p = progress(
            &s,
            &[task(1, 3, Running, ""), task(2, 3, Pending, "no node fits")],
        );
        assert!(!p.converged());
        assert_eq!(p.line(5), "web    1/2 running (pending: no node fits)");
    }

    #[test]
    fn tasks_of_another_spec_are_outdated() {
        let s = service(1, 3);
        let p = progress(&s, &[task(1, 1, Running, "")]);
        assert_eq!((p.running, p.outdated), (0, 1));
        assert!(not_converged(&[p]).contains("older spec"));
    }

    #[test]
    fn failures_are_listed_latest_first() {
        let s = service(2, 3);
        let p = progress(
            &s,
            &[
                task(1, 3, Failed, "exit code 1"),
                task(2, 3, Failed, "image not found"),
            ],
        );
        assert_eq!(
            not_converged(&[p]),
            "  web: 0/2 running\n    web.2 failed: image not found\n    web.1 failed: exit code 1"
        );
    }

    #[test]
    fn plain_display_prints_changed_lines_only() {
        let s = service(2, 3);
        let mut d = Display::new(None);
        let a = progress(&s, &[task(1, 3, Running, "")]);
        assert_eq!(d.update(std::slice::from_ref(&a)), "web  1/2 running\n");
        assert_eq!(d.update(std::slice::from_ref(&a)), "");
        let b = progress(&s, &[task(1, 3, Running, ""), task(2, 3, Running, "")]);
        assert_eq!(d.update(&[b]), "web  2/2 running ✓\n");
    }

    #[test]
    fn terminal_display_redraws_in_place() {
        let s = service(2, 3);
        let mut d = Display::new(Some(80));
        let a = progress(&s, &[]);
        assert_eq!(
            d.update(std::slice::from_ref(&a)),
            "\x1b[2Kweb  0/2 running\n"
        );
        let b = progress(&s, &[task(1, 3, Running, "")]);
        assert_eq!(d.update(&[b]), "\x1b[1A\x1b[2Kweb  1/2 running\n");
    }

    #[test]
    fn terminal_lines_are_cut_to_its_width() {
        let s = service(2, 3);
        let mut d = Display::new(Some(20));
        let p = progress(&s, &[task(1, 3, Pending, "no node has 64 CPUs free")]);
        assert_eq!(d.update(&[p]), "\x1b[2Kweb  0/2 running (…\n");
    }
}
