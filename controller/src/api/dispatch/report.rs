//! `ReportStatus`: the observed states of the node's tasks, written into their records.
//!
//! The request is checked as a whole first (a malformed one is refused and writes nothing);
//! then each task's record is read, the report decided on ([`decide`], pure: a task only moves
//! forward, Starting → Running → an end state, and never leaves an end state), and every
//! update written as its own batch expecting the version that was read, all at once through
//! the proposer, which groups them into one Raft entry. A conflict (the record changed
//! meanwhile) reads and decides that task again. A report for a task that is not the node's
//! is refused item by item. Reports are idempotent: resending one answers UNCHANGED.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use berth_proto::v1::{
    ReportOutcome, ReportResult, ReportStatusRequest, ReportStatusResponse, TaskState, TaskStatus,
};
use futures::future::join_all;
use ipnet::Ipv4Net;
use tracing::debug;

use super::error::DispatchError;
use super::register::truncated;
use super::{Inner, now_wall};
use crate::api::control::ControlError;
use crate::api::store::{self, Written};
use crate::raft::{Expect, Op, blocking};
use crate::state::{Health, ObservedState, Task, keys};

/// The most reports in one request.
pub const MAX_REPORTS: usize = 1000;
/// The longest reason.
const MAX_REASON: usize = 4096;
/// The longest task id.
const MAX_TASK_ID: usize = 128;
/// How many read-decide-write rounds a report gets.
const ATTEMPTS: usize = 5;

/// One report, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report {
    pub task_id: String,
    pub state: ObservedState,
    pub address: Option<Ipv4Addr>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub timestamp: i64,
    pub health: Option<Health>,
}

/// Checks the reports of a node whose subnet is `subnet`; keeps each task's newest report
/// (the later one on a tie), in the order of first appearance.
pub(crate) fn check_reports(
    statuses: &[TaskStatus],
    subnet: Ipv4Net,
) -> Result<Vec<Report>, DispatchError> {
    if statuses.len() > MAX_REPORTS {
        return Err(DispatchError::invalid(
            "statuses",
            format!(
                "{} reports, more than {MAX_REPORTS}; split them",
                statuses.len()
            ),
        ));
    }
    let mut out: Vec<Report> = Vec::with_capacity(statuses.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, s) in statuses.iter().enumerate() {
        let report = check_one(i, s, subnet)?;
        match index.get(&report.task_id) {
            Some(&at) => {
                if report.timestamp >= out[at].timestamp {
                    out[at] = report;
                }
            }
            None => {
                index.insert(report.task_id.clone(), out.len());
                out.push(report);
            }
        }
    }
    Ok(out)
}

fn check_one(i: usize, s: &TaskStatus, subnet: Ipv4Net) -> Result<Report, DispatchError> {
    let field = |name: &str| format!("statuses[{i}].{name}");
    if s.task_id.is_empty()
        || s.task_id.len() > MAX_TASK_ID
        || s.task_id.contains(|c: char| c.is_control() || c == '/')
    {
        return Err(DispatchError::invalid(
            field("task_id"),
            format!(
                "{:?} is not a task id (1 to {MAX_TASK_ID} bytes, no '/')",
                truncated(&s.task_id)
            ),
        ));
    }
    let state = match TaskState::try_from(s.state) {
        Ok(TaskState::Starting) => ObservedState::Starting,
        Ok(TaskState::Running) => ObservedState::Running,
        Ok(TaskState::Complete) => ObservedState::Complete,
        Ok(TaskState::Failed) => ObservedState::Failed,
        Ok(TaskState::Shutdown) => ObservedState::Shutdown,
        Ok(other) => {
            return Err(DispatchError::invalid(
                field("state"),
                format!(
                    "{} is not a state a node reports (STARTING, RUNNING, COMPLETE, FAILED or SHUTDOWN)",
                    other.as_str_name()
                ),
            ));
        }
        Err(_) => {
            return Err(DispatchError::invalid(
                field("state"),
                format!("{} is not a task state", s.state),
            ));
        }
    };
    let address = if s.address.is_empty() {
        None
    } else {
        let a: Ipv4Addr = s.address.parse().map_err(|_| {
            DispatchError::invalid(
                field("address"),
                format!("{:?} is not an IPv4 address", truncated(&s.address)),
            )
        })?;
        if !subnet.contains(&a) {
            return Err(DispatchError::invalid(
                field("address"),
                format!("{a} is not in the node's subnet {subnet}"),
            ));
        }
        Some(a)
    };
    if s.reason.len() > MAX_REASON {
        return Err(DispatchError::invalid(
            field("reason"),
            format!("{} bytes, more than {MAX_REASON}", s.reason.len()),
        ));
    }
    if s.timestamp < 0 {
        return Err(DispatchError::invalid(
            field("timestamp"),
            format!("{} is before 1970", s.timestamp),
        ));
    }
    Ok(Report {
        task_id: s.task_id.clone(),
        state,
        address,
        exit_code: s.has_exit_code.then_some(s.exit_code),
        reason: (!s.reason.is_empty()).then(|| s.reason.clone()),
        timestamp: s.timestamp,
        health: crate::state::wire::health_from_wire(s.health),
    })
}

/// How far along a task is; a report never moves a task back.
fn rank(s: ObservedState) -> u8 {
    match s {
        ObservedState::Pending => 0,
        ObservedState::Assigned => 1,
        ObservedState::Starting => 2,
        ObservedState::Running => 3,
        ObservedState::Complete
        | ObservedState::Failed
        | ObservedState::Shutdown
        | ObservedState::Orphaned => 4,
    }
}

/// What a report does to a task.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// The record already says this.
    Unchanged,
    /// The report is older than the record; why.
    Stale(String),
    /// The new record.
    Update(Task),
}

/// Decides what `report` does to `task` at `now` (Unix nanoseconds).
pub(crate) fn decide(task: &Task, report: &Report, now: i128) -> Decision {
    let ended = rank(task.observed) == 4;
    if rank(report.state) < rank(task.observed) || (ended && report.state != task.observed) {
        return Decision::Stale(format!(
            "task {} is already {:?}; a {:?} report is older",
            task.id, task.observed, report.state
        ));
    }
    let mut new = task.clone();
    new.observed = report.state;
    if report.address.is_some() {
        new.address = report.address;
    }
    if report.exit_code.is_some() {
        new.exit_code = report.exit_code;
    }
    new.reason = report.reason.clone();
    // A task's health is its running container's: an ended task keeps its last verdict
    // (`ps` shows why it was stopped), a running one takes the report's.
    if report.state == ObservedState::Running || report.health.is_some() {
        new.health = report.health;
    }
    if new == *task {
        return Decision::Unchanged;
    }
    new.updated_at = now;
    Decision::Update(new)
}

fn result(task_id: &str, outcome: ReportOutcome, reason: String) -> ReportResult {
    ReportResult {
        task_id: task_id.to_owned(),
        outcome: outcome.into(),
        reason,
    }
}

impl Inner {
    /// `ReportStatus` of `node`, whose subnet is `subnet`, on the leader.
    pub(crate) async fn report(
        &self,
        node: &str,
        subnet: Ipv4Net,
        request: &ReportStatusRequest,
    ) -> Result<ReportStatusResponse, DispatchError> {
        let reports = check_reports(&request.statuses, subnet)?;
        let mut results: Vec<Option<ReportResult>> = vec![None; reports.len()];
        let mut pending: Vec<usize> = (0..reports.len()).collect();
        for _ in 0..ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let tasks = self
                .read_tasks(pending.iter().map(|&i| &reports[i].task_id))
                .await?;
            let now = now_wall();
            let mut writes = Vec::new();
            for (&i, found) in pending.iter().zip(tasks) {
                let report = &reports[i];
                let id = report.task_id.as_str();
                let Some((version, task)) = found else {
                    results[i] = Some(result(id, ReportOutcome::Refused, format!("no task {id}")));
                    continue;
                };
                if task.node.as_deref() != Some(node) {
                    let reason = match &task.node {
                        Some(other) => format!(
                            "task {id} is assigned to node {other}, not to this node ({node})"
                        ),
                        None => format!("task {id} is not placed on any node"),
                    };
                    results[i] = Some(result(id, ReportOutcome::Refused, reason));
                    continue;
                }
                match decide(&task, report, now) {
                    Decision::Unchanged => {
                        results[i] = Some(result(id, ReportOutcome::Unchanged, String::new()));
                    }
                    Decision::Stale(reason) => {
                        results[i] = Some(result(id, ReportOutcome::Stale, reason));
                    }
                    Decision::Update(new) => writes.push((i, version, new)),
                }
            }
            let answers = join_all(writes.into_iter().map(|(i, version, task)| async move {
                let key = keys::task(&task.id);
                let op = Op::Put {
                    value: store::encode(&key, &task)?,
                    key,
                    expect: Expect::Version(version),
                };
                Ok::<_, ControlError>((i, store::propose(&self.proposer, op).await?))
            }))
            .await;
            pending.clear();
            for answer in answers {
                match answer? {
                    (i, Written::Applied) => {
                        let id = &reports[i].task_id;
                        debug!(node, task = %id, state = ?reports[i].state, "task status reported");
                        results[i] = Some(result(id, ReportOutcome::Applied, String::new()));
                    }
                    (i, Written::Conflict { .. }) => pending.push(i),
                }
            }
        }
        if let Some(&i) = pending.first() {
            return Err(DispatchError::Contended {
                key: keys::task(&reports[i].task_id),
                attempts: ATTEMPTS,
            });
        }
        Ok(ReportStatusResponse {
            results: results.into_iter().flatten().collect(),
        })
    }

    /// The records of `ids`, with their versions, in one blocking call.
    async fn read_tasks<'a>(
        &self,
        ids: impl Iterator<Item = &'a String>,
    ) -> Result<Vec<Option<(u64, Task)>>, DispatchError> {
        let reader = self.reader.clone();
        let keys: Vec<String> = ids.map(|id| keys::task(id)).collect();
        let found = blocking(move || {
            keys.into_iter()
                .map(|key| Ok((reader.get(&key)?, key)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(ControlError::from)?;
        found
            .into_iter()
            .map(|(value, key)| {
                value
                    .map(|(version, bytes)| {
                        serde_json::from_slice(&bytes)
                            .map(|task| (version, task))
                            .map_err(|source| ControlError::Corrupt { key, source }.into())
                    })
                    .transpose()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DesiredState;

    fn net() -> Ipv4Net {
        "10.200.1.0/24".parse().unwrap()
    }

    fn status(id: &str, state: TaskState, ts: i64) -> TaskStatus {
        TaskStatus {
            task_id: id.into(),
            state: state.into(),
            address: "10.200.1.5".into(),
            timestamp: ts,
            ..Default::default()
        }
    }

    fn task(observed: ObservedState) -> Task {
        Task {
            id: "t1".into(),
            service: "web".into(),
            slot: 1,
            spec_version: 1,
            node: Some("n1".into()),
            desired: DesiredState::Running,
            observed,
            address: None,
            exit_code: None,
            reason: Some("assigned to n1".into()),
            created_at: 1,
            updated_at: 1,
            health: None,
        }
    }

    #[test]
    fn reports_are_checked_and_the_newest_per_task_kept() {
        let got = check_reports(
            &[
                status("t1", TaskState::Running, 5),
                status("t2", TaskState::Starting, 1),
                status("t1", TaskState::Starting, 3),
                status("t1", TaskState::Failed, 9),
            ],
            net(),
        )
        .unwrap();
        let states: Vec<_> = got.iter().map(|r| (r.task_id.as_str(), r.state)).collect();
        assert_eq!(
            states,
            [
                ("t1", ObservedState::Failed),
                ("t2", ObservedState::Starting)
            ]
        );
    }

    #[test]
    fn malformed_reports_name_the_item_and_field() {
        let cases: Vec<(TaskStatus, &str)> = vec![
            (status("", TaskState::Running, 1), "statuses[0].task_id"),
            (status("a/b", TaskState::Running, 1), "statuses[0].task_id"),
            (status("t", TaskState::Pending, 1), "statuses[0].state"),
            (status("t", TaskState::Orphaned, 1), "statuses[0].state"),
            (
                TaskStatus {
                    state: 42,
                    ..status("t", TaskState::Running, 1)
                },
                "42 is not a task state",
            ),
            (
                TaskStatus {
                    address: "10.9.9.9".into(),
                    ..status("t", TaskState::Running, 1)
                },
                "not in the node's subnet",
            ),
            (
                TaskStatus {
                    address: "nope".into(),
                    ..status("t", TaskState::Running, 1)
                },
                "statuses[0].address",
            ),
            (
                TaskStatus {
                    reason: "x".repeat(MAX_REASON + 1),
                    ..status("t", TaskState::Failed, 1)
                },
                "statuses[0].reason",
            ),
            (status("t", TaskState::Running, -1), "statuses[0].timestamp"),
        ];
        for (s, words) in cases {
            let e = check_reports(&[s], net()).unwrap_err().to_string();
            assert!(e.contains(words), "{words}: {e}");
        }
        let many = vec![status("t", TaskState::Running, 1); MAX_REPORTS + 1];
        let e = check_reports(&many, net()).unwrap_err().to_string();
        assert!(e.contains("more than 1000"), "{e}");
    }

    #[test]
    fn tasks_only_move_forward() {
        let r = |s: ObservedState| Report {
            task_id: "t1".into(),
            state: s,
            address: Some("10.200.1.5".parse().unwrap()),
            exit_code: None,
            reason: None,
            timestamp: 1,
            health: None,
        };
        let Decision::Update(t) = decide(
            &task(ObservedState::Assigned),
            &r(ObservedState::Running),
            7,
        ) else {
            panic!("an update");
        };
        assert_eq!(t.observed, ObservedState::Running);
        assert_eq!(t.address, Some("10.200.1.5".parse().unwrap()));
        assert_eq!((t.reason, t.updated_at), (None, 7));
        let running = Task {
            address: Some("10.200.1.5".parse().unwrap()),
            reason: None,
            ..task(ObservedState::Running)
        };
        assert_eq!(
            decide(&running, &r(ObservedState::Running), 9),
            Decision::Unchanged
        );
        assert!(matches!(
            decide(&running, &r(ObservedState::Starting), 9),
            Decision::Stale(_)
        ));
        let failed = Task {
            exit_code: Some(1),
            ..task(ObservedState::Failed)
        };
        assert!(matches!(
            decide(&failed, &r(ObservedState::Complete), 9),
            Decision::Stale(_)
        ));
        assert!(matches!(
            decide(&failed, &r(ObservedState::Running), 9),
            Decision::Stale(_)
        ));
        let mut exited = r(ObservedState::Complete);
        exited.exit_code = Some(0);
        let Decision::Update(t) = decide(&running, &exited, 9) else {
            panic!("an update");
        };
        assert_eq!(
            (t.observed, t.exit_code),
            (ObservedState::Complete, Some(0))
        );
    }

    #[test]
    fn a_change_of_health_alone_is_written_and_an_end_keeps_the_last_verdict() {
        let running = Task {
            address: Some("10.200.1.5".parse().unwrap()),
            ..task(ObservedState::Running)
        };
        let report = |state, health| Report {
            task_id: "t1".into(),
            state,
            address: Some("10.200.1.5".parse().unwrap()),
            exit_code: None,
            reason: None,
            timestamp: 1,
            health,
        };
        let Decision::Update(healthy) = decide(
            &running,
            &report(ObservedState::Running, Some(Health::Healthy)),
            5,
        ) else {
            panic!("a health change is an update");
        };
        assert_eq!(healthy.health, Some(Health::Healthy));
        assert_eq!(
            decide(
                &healthy,
                &report(ObservedState::Running, Some(Health::Healthy)),
                6
            ),
            Decision::Unchanged
        );
        let unhealthy = Task {
            health: Some(Health::Unhealthy),
            ..healthy
        };
        let Decision::Update(failed) = decide(&unhealthy, &report(ObservedState::Failed, None), 7)
        else {
            panic!("an update");
        };
        assert_eq!(
            (failed.observed, failed.health),
            (ObservedState::Failed, Some(Health::Unhealthy))
        );
    }
}
