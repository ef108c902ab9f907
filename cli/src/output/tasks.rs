//! `berth ps`: the tasks, one slot at a time — its current task, then (with `--all`) its
//! ended tasks, newest first, indented under it as `docker service ps` shows them.

use std::collections::BTreeMap;

use berth_proto::v1;

use super::model::{TaskView, desired_word, health_word, state_word, task_name};
use super::table::Table;
use super::time::age;

/// How `ps` is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsOptions {
    /// Show each slot's ended tasks.
    pub all: bool,
    /// Full ids and errors.
    pub no_trunc: bool,
    /// Now, Unix nanoseconds (for the ages).
    pub now: i64,
}

/// The width an error is cut to without `--no-trunc`.
const ERROR_WIDTH: usize = 40;
/// The length ids are cut to without `--no-trunc`: a task id starts with 16 hex digits of
/// its creation time in nanoseconds, strictly growing on the leader that made it, so these
/// tell apart tasks made by one pass (their first 12, which name a task's container with
/// its service and slot, may be the same).
const ID_WIDTH: usize = 16;

/// Whether a task is meant to run and has not ended (pending, assigned, starting, running).
pub(crate) fn live(t: &v1::Task) -> bool {
    t.desired() == v1::TaskDesiredState::Running
        && matches!(
            t.observed(),
            v1::TaskState::Pending
                | v1::TaskState::Assigned
                | v1::TaskState::Starting
                | v1::TaskState::Running
        )
}

/// The tasks grouped by slot (service, then slot number or node), each group's current
/// task first (the live one, else the newest) and then the others, newest first. Without
/// `all`, only the first of each group.
pub fn ordered<'a>(
    tasks: &'a [v1::Task],
    nodes: &BTreeMap<String, String>,
    all: bool,
) -> Vec<(bool, &'a v1::Task)> {
    let mut slots: BTreeMap<(String, u32, String), Vec<&v1::Task>> = BTreeMap::new();
    for t in tasks {
        let node = if t.slot == 0 {
            nodes
                .get(&t.node)
                .cloned()
                .unwrap_or_else(|| t.node.clone())
        } else {
            String::new()
        };
        slots
            .entry((t.service.clone(), t.slot, node))
            .or_default()
            .push(t);
    }
    let mut out = Vec::new();
    for (_, mut group) in slots {
        group.sort_by(|a, b| (live(b), b.created_at, &b.id).cmp(&(live(a), a.created_at, &a.id)));
        for (i, t) in group.into_iter().enumerate() {
            if i == 0 || all {
                out.push((i > 0, t));
            }
        }
    }
    out
}

/// The error column: the reason, with the exit code when it is not in it.
fn error_text(t: &v1::Task) -> String {
    // A starting task's reason says how its start goes (an image pull's progress).
    let failed = matches!(
        t.observed(),
        v1::TaskState::Failed
            | v1::TaskState::Orphaned
            | v1::TaskState::Pending
            | v1::TaskState::Starting
    );
    let code = (t.has_exit_code && t.exit_code != 0).then_some(t.exit_code);
    match (failed || code.is_some(), t.reason.is_empty(), code) {
        (false, _, _) => String::new(),
        (true, true, Some(c)) => format!("exit code {c}"),
        (true, _, _) => t.reason.clone(),
    }
}

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut c: String = s.chars().take(width - 1).collect();
        c.push('…');
        c
    }
}

/// The `ps` table.
pub fn table(tasks: &[v1::Task], nodes: &BTreeMap<String, String>, opts: PsOptions) -> String {
    let mut t = Table::new(&["ID", "NAME", "NODE", "DESIRED", "STATE", "ERROR"]);
    for (history, task) in ordered(tasks, nodes, opts.all) {
        let node_name = nodes.get(&task.node).cloned().unwrap_or_default();
        let name = task_name(task, &node_name);
        let id = if opts.no_trunc {
            task.id.clone()
        } else {
            task.id.chars().take(ID_WIDTH).collect()
        };
        let error = error_text(task);
        let when = age(opts.now, task.updated_at);
        // `running (healthy) 3 seconds ago`, as `docker ps` shows health.
        let word = match health_word(task.health()) {
            Some(h) if task.observed() == v1::TaskState::Running => {
                format!("{} ({h})", state_word(task.observed()))
            }
            _ => state_word(task.observed()).to_owned(),
        };
        let state = if when.is_empty() {
            word
        } else {
            format!("{word} {when} ago")
        };
        t.row(vec![
            id,
            if history {
                format!(" \\_ {name}")
            } else {
                name
            },
            if node_name.is_empty() {
                task.node.clone()
            } else {
                node_name
            },
            desired_word(task.desired()).to_owned(),
            state,
            if opts.no_trunc {
                error
            } else {
                cut(&error, ERROR_WIDTH)
            },
        ]);
    }
    t.render()
}

/// The tasks as `-o json` / `-o yaml` list them, in the table's order.
pub fn views(tasks: &[v1::Task], nodes: &BTreeMap<String, String>, all: bool) -> Vec<TaskView> {
    ordered(tasks, nodes, all)
        .into_iter()
        .map(|(_, t)| TaskView::new(t, nodes))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::golden;
    use crate::output::services::tests::fixture;

    const T: i64 = 1_000_000_000_000_000_000;

    fn nodes() -> BTreeMap<String, String> {
        [("n1".into(), "h1".into()), ("n2".into(), "h2".into())].into()
    }

    #[test]
    fn ps_table() {
        let (_, tasks) = fixture();
        let opts = PsOptions {
            all: false,
            no_trunc: false,
            now: T,
        };
        golden::check("ps.txt", &table(&tasks, &nodes(), opts));
    }

    #[test]
    fn ps_all_shows_history_indented() {
        let (_, tasks) = fixture();
        let opts = PsOptions {
            all: true,
            no_trunc: false,
            now: T,
        };
        golden::check("ps-all.txt", &table(&tasks, &nodes(), opts));
    }

    #[test]
    fn ps_no_trunc() {
        let (_, tasks) = fixture();
        let opts = PsOptions {
            all: true,
            no_trunc: true,
            now: T,
        };
        golden::check("ps-all-no-trunc.txt", &table(&tasks, &nodes(), opts));
    }

    #[test]
    fn json_views_follow_the_table() {
        let (_, tasks) = fixture();
        let v = views(&tasks, &nodes(), false);
        assert_eq!(v.len(), 7);
        assert_eq!(v[0].name, "api.1");
        assert!(v.iter().any(|t| t.name == "monitor.h1"));
    }
}
