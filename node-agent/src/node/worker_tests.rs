//! The worker: its pure core, command by command, and its shell against the hollow
//! executor.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::{
    Assignment, AssignmentsUpdate, ServiceSpec, TaskDesiredState, TaskState, TaskStatus,
};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::node::hollow::HollowExecutor;
use crate::node::{Executor, Observed, Phase};

fn assignment(id: &str) -> Assignment {
    Assignment {
        task_id: id.into(),
        service: "web".into(),
        slot: 1,
        spec_version: 1,
        desired: TaskDesiredState::Running.into(),
        spec: Some(ServiceSpec {
            name: "web".into(),
            image: "busybox".into(),
            ..Default::default()
        }),
        created_at: 0,
    }
}

fn shutdown_of(id: &str) -> Assignment {
    Assignment {
        desired: TaskDesiredState::Shutdown.into(),
        ..assignment(id)
    }
}

fn obs(id: &str, phase: Phase) -> Observed {
    Observed {
        task_id: id.into(),
        phase,
        address: (phase == Phase::Running).then(|| Ipv4Addr::new(10, 200, 0, 2)),
        exit_code: None,
        reason: None,
        health: None,
    }
}

fn starting(id: &str) -> Command {
    Command::Report(observed_starting(id))
}

/// The phases and ids of the reports among `commands`, and the other commands.
fn reports(commands: &[Command]) -> Vec<(String, Phase)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Report(o) => Some((o.task_id.clone(), o.phase)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_full_set_starts_its_tasks_and_reports_starting() {
    let mut core = Core::default();
    let out = core.full(vec![assignment("t1"), assignment("t2")], vec![], 0);
    assert_eq!(
        out,
        vec![
            starting("t1"),
            Command::Start(Box::new(assignment("t1"))),
            starting("t2"),
            Command::Start(Box::new(assignment("t2"))),
        ]
    );
    // Started: RUNNING is reported once, nothing is started again.
    let out = core.done("t1", Done::Started(Ok(obs("t1", Phase::Running))));
    assert_eq!(out, vec![Command::Report(obs("t1", Phase::Running))]);
    let clock = core.clock();
    let out = core.listed(vec![obs("t1", Phase::Running)], clock);
    assert_eq!(out, vec![], "t2 is still starting, t1 was reported");
}

#[test]
fn nothing_is_done_before_the_first_full_set() {
    let mut core = Core::default();
    assert_eq!(core.listed(vec![obs("t9", Phase::Running)], 0), vec![]);
    assert_eq!(core.change(vec![assignment("t1")], vec![]), vec![]);
    assert!(!core.synced());
}

#[test]
fn a_change_to_shutdown_stops_and_a_removal_removes() {
    let mut core = Core::default();
    core.full(vec![assignment("t1")], vec![obs("t1", Phase::Running)], 0);
    let out = core.change(vec![shutdown_of("t1")], vec![]);
    assert_eq!(out, vec![Command::Stop("t1".into())]);
    let out = core.done("t1", Done::Stopped(Ok(obs("t1", Phase::Shutdown))));
    assert_eq!(out, vec![Command::Report(obs("t1", Phase::Shutdown))]);
    let out = core.change(vec![], vec!["t1".into()]);
    assert_eq!(out, vec![Command::Remove("t1".into())]);
    assert_eq!(core.done("t1", Done::Removed(Ok(()))), vec![]);
    assert!(core.tasks.is_empty(), "a removed task is forgotten");
}

#[test]
fn an_exit_noticed_by_polling_is_reported_once_and_not_restarted() {
    let mut core = Core::default();
    core.full(vec![assignment("t1")], vec![], 0);
    core.done("t1", Done::Started(Ok(obs("t1", Phase::Running))));
    let exited = Observed {
        exit_code: Some(3),
        reason: Some("exited with code 3".into()),
        ..obs("t1", Phase::Failed)
    };
    let clock = core.clock();
    let out = core.listed(vec![exited.clone()], clock);
    assert_eq!(out, vec![Command::Report(exited.clone())]);
    assert_eq!(core.listed(vec![exited.clone()], clock), vec![]);
    // The desired state is still RUNNING: a new full set (a reconnect) restarts nothing.
    let out = core.full(vec![assignment("t1")], vec![exited], clock);
    assert_eq!(out, vec![]);
}

#[test]
fn a_full_set_after_a_reconnect_keeps_running_tasks_and_removes_unknown_ones() {
    let mut core = Core::default();
    let listing = vec![
        obs("t1", Phase::Running),
        obs("t9", Phase::Running),
        obs("t8", Phase::Complete),
    ];
    let out = core.full(vec![assignment("t1")], listing, 0);
    assert_eq!(
        out,
        vec![
            Command::Report(obs("t1", Phase::Running)),
            Command::Remove("t8".into()),
            Command::Remove("t9".into()),
        ]
    );
    core.done("t8", Done::Removed(Ok(())));
    core.done("t9", Done::Removed(Ok(())));
    // Reconnected: the same set again, nothing to do.
    let clock = core.clock();
    let out = core.full(
        vec![assignment("t1")],
        vec![obs("t1", Phase::Running)],
        clock,
    );
    assert_eq!(out, vec![]);
}

#[test]
fn an_assignment_without_a_spec_is_failed_not_started() {
    let mut core = Core::default();
    let mut a = assignment("t1");
    a.spec = None;
    let out = core.full(vec![a.clone()], vec![], 0);
    assert_eq!(reports(&out), vec![("t1".to_owned(), Phase::Failed)]);
    let Command::Report(o) = &out[0] else {
        unreachable!()
    };
    assert_eq!(o.reason.as_deref(), Some(NO_SPEC));
    assert_eq!(out.len(), 1, "not started: {out:?}");
    assert_eq!(core.change(vec![a], vec![]), vec![]);
    // A task without spec that still runs is kept running.
    let mut core = Core::default();
    let mut b = assignment("t2");
    b.spec = None;
    let out = core.full(vec![b], vec![obs("t2", Phase::Running)], 0);
    assert_eq!(out, vec![Command::Report(obs("t2", Phase::Running))]);
}

#[test]
fn a_failed_start_is_reported_with_the_error_and_not_retried() {
    let mut core = Core::default();
    core.full(vec![assignment("t1")], vec![], 0);
    let out = core.done(
        "t1",
        Done::Started(Err(ExecError("image not found".into()))),
    );
    assert_eq!(out.len(), 1);
    let Command::Report(o) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(o.phase, Phase::Failed);
    assert_eq!(o.reason.as_deref(), Some("image not found"));
    let clock = core.clock();
    assert_eq!(core.listed(vec![], clock), vec![]);
    assert_eq!(core.listed(vec![], clock), vec![]);
}

#[test]
fn calls_on_one_task_are_serialized() {
    let mut core = Core::default();
    core.full(vec![assignment("t1")], vec![], 0);
    // Removed while it starts: nothing until the start answers.
    assert_eq!(core.change(vec![], vec!["t1".into()]), vec![]);
    let out = core.done("t1", Done::Started(Ok(obs("t1", Phase::Running))));
    assert_eq!(out, vec![Command::Remove("t1".into())]);
}

#[test]
fn a_listing_older_than_an_answer_does_not_override_it() {
    let mut core = Core::default();
    core.full(vec![assignment("t1")], vec![], 0);
    let before = core.clock();
    core.done("t1", Done::Started(Ok(obs("t1", Phase::Running))));
    // Taken before the start answered: it does not show t1, which is not "gone".
    assert_eq!(core.listed(vec![], before), vec![]);
    let now = core.clock();
    let out = core.listed(vec![], now);
    assert_eq!(reports(&out), vec![("t1".to_owned(), Phase::Failed)]);
}

#[test]
fn shutdown_of_a_task_that_never_ran_here_is_reported() {
    let mut core = Core::default();
    let out = core.full(vec![shutdown_of("t1")], vec![], 0);
    assert_eq!(reports(&out), vec![("t1".to_owned(), Phase::Shutdown)]);
    assert_eq!(core.listed(vec![], 0), vec![]);
}

#[test]
fn a_failed_stop_is_reported_and_tried_again() {
    let mut core = Core::default();
    core.full(vec![shutdown_of("t1")], vec![obs("t1", Phase::Running)], 0);
    let out = core.done("t1", Done::Stopped(Err(ExecError("cgroup busy".into()))));
    assert_eq!(reports(&out), vec![("t1".to_owned(), Phase::Failed)]);
    assert_eq!(out.len(), 1, "no retry before the next listing: {out:?}");
    let clock = core.clock();
    let out = core.listed(vec![obs("t1", Phase::Running)], clock);
    assert_eq!(out, vec![Command::Stop("t1".into())]);
}

#[test]
fn a_failed_removal_is_tried_again_at_the_next_listing() {
    let mut core = Core::default();
    let out = core.full(vec![], vec![obs("t1", Phase::Running)], 0);
    assert_eq!(out, vec![Command::Remove("t1".into())]);
    let out = core.done("t1", Done::Removed(Err(ExecError("busy".into()))));
    assert_eq!(out, vec![]);
    let clock = core.clock();
    let out = core.listed(vec![obs("t1", Phase::Running)], clock);
    assert_eq!(out, vec![Command::Remove("t1".into())]);
}

#[test]
fn reports_keep_the_newest_per_task_and_come_back_after_a_failed_call() {
    let r = Reports::default();
    let st = |id: &str, state: TaskState| TaskStatus {
        task_id: id.into(),
        state: state.into(),
        ..Default::default()
    };
    r.push(st("a", TaskState::Starting));
    r.push(st("b", TaskState::Starting));
    r.push(st("a", TaskState::Running));
    let batch = r.take(1);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].task_id, "b", "oldest first");
    // The call failed while a newer report of b came: the newer one wins.
    r.push(st("b", TaskState::Running));
    r.restore();
    let batch = r.take(10);
    assert_eq!(batch.len(), 2);
    assert!(batch.iter().all(|s| s.state() == TaskState::Running));
    r.ack();
    assert_eq!(r.pending(), 0);
    // A batch not acknowledged is taken again first.
    r.push(st("c", TaskState::Running));
    let first = r.take(10);
    r.push(st("d", TaskState::Running));
    let again = r.take(10);
    assert_eq!(again[0].task_id, first[0].task_id);
    assert_eq!(again.len(), 2);
}

#[test]
fn a_status_carries_the_observation() {
    let o = Observed {
        exit_code: Some(0),
        reason: Some("x".repeat(5000)),
        ..obs("t1", Phase::Complete)
    };
    let s = status_of(&o);
    assert_eq!(s.state(), TaskState::Complete);
    assert!(s.has_exit_code);
    assert_eq!(s.reason.len(), 4096);
    assert!(s.timestamp > 0);
    let s = status_of(&obs("t2", Phase::Running));
    assert_eq!(s.address, "10.200.0.2");
    assert!(!s.has_exit_code);
}

/// The worker's shell running against a hollow executor.
struct Harness {
    ex: Arc<HollowExecutor>,
    updates: mpsc::Sender<AssignmentsUpdate>,
    reports: Arc<Reports>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start(ex: HollowExecutor) -> Self {
        let ex = Arc::new(ex);
        ex.prepare(&crate::node::NodeNetInfo::for_subnet(
            "10.200.7.0/24".parse().unwrap(),
        ))
        .unwrap();
        let (updates, rx) = mpsc::channel(16);
        let reports = Arc::new(Reports::default());
        let (stop, stop_rx) = watch::channel(false);
        let opts = WorkerOptions {
            poll_interval: Duration::from_millis(10),
            max_concurrent_starts: 4,
        };
        let task = tokio::spawn(run(ex.clone(), opts, rx, reports.clone(), stop_rx));
        Self {
            ex,
            updates,
            reports,
            stop,
            task,
        }
    }

    async fn full(&self, set: Vec<Assignment>) {
        self.updates
            .send(AssignmentsUpdate {
                full: true,
                assigned: set,
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn change(&self, assigned: Vec<Assignment>, removed: Vec<&str>) {
        self.updates
            .send(AssignmentsUpdate {
                full: false,
                assigned,
                removed: removed.into_iter().map(String::from).collect(),
                revision: 0,
            })
            .await
            .unwrap();
    }

    /// Waits until `f` holds of the executor.
    async fn until(&self, what: &str, f: impl Fn(&HollowExecutor) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !f(&self.ex) {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Every report so far, drained.
    fn drain(&self) -> Vec<TaskStatus> {
        let batch = self.reports.take(usize::MAX);
        self.reports.ack();
        batch
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

#[tokio::test]
async fn the_worker_runs_a_set_notices_exits_and_reconciles_a_new_full_set() {
    let h = Harness::start(HollowExecutor::new().with_start_delay(Duration::from_millis(5)));
    h.ex.adopt(obs("stray", Phase::Running));
    let set: Vec<Assignment> = (0..10).map(|i| assignment(&format!("t{i}"))).collect();
    h.full(set.clone()).await;
    h.until("ten running, the stray removed", |ex| {
        ex.running() == 10 && ex.task("stray").is_none()
    })
    .await;
    assert_eq!(h.ex.starts(), 10);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reports = h.drain();
    assert_eq!(reports.len(), 10, "the newest per task: {reports:?}");
    assert!(
        reports
            .iter()
            .all(|r| r.state() == TaskState::Running && r.address.starts_with("10.200.7.")),
        "{reports:?}"
    );

    // An exit is noticed by polling and reported once; nothing restarts it.
    assert!(h.ex.exit("t3", 2));
    h.until("the exit reported", |_| h.reports.pending() > 0)
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reports = h.drain();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].task_id, "t3");
    assert_eq!(reports[0].state(), TaskState::Failed);
    assert_eq!(reports[0].exit_code, 2);

    // A reconnect: the same set plus one, minus t9, as a full set. Nothing running is
    // restarted, t9 is removed, t10 starts.
    let mut again = set.clone();
    again.retain(|a| a.task_id != "t9");
    again.push(assignment("t10"));
    h.full(again).await;
    h.until("t10 running, t9 removed", |ex| {
        ex.task("t10").is_some_and(|o| o.phase == Phase::Running) && ex.task("t9").is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.ex.starts(), 11, "only t10 was started");
    assert!(
        h.ex.task("t3").is_some(),
        "the ended task is kept, not restarted"
    );

    // A change: stop t1, remove t2.
    h.change(vec![shutdown_of("t1")], vec!["t2"]).await;
    h.until("t1 stopped, t2 removed", |ex| {
        ex.task("t1").is_some_and(|o| o.phase == Phase::Shutdown) && ex.task("t2").is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reports = h.drain();
    assert!(
        reports
            .iter()
            .any(|r| r.task_id == "t1" && r.state() == TaskState::Shutdown),
        "{reports:?}"
    );
    assert!(!reports.iter().any(|r| r.task_id == "t2"), "{reports:?}");
    h.stop().await;
}

#[tokio::test]
async fn the_worker_reports_start_failures_and_missing_specs_and_stops_cleanly() {
    let h = Harness::start(HollowExecutor::new());
    h.ex.fail_next_start("bad", "no such image: nope:1");
    let mut nospec = assignment("nospec");
    nospec.spec = None;
    h.full(vec![assignment("bad"), nospec, assignment("ok")])
        .await;
    h.until("ok running", |ex| ex.running() == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reports = h.drain();
    let of = |id: &str| reports.iter().find(|r| r.task_id == id).unwrap().clone();
    assert_eq!(of("bad").state(), TaskState::Failed);
    assert_eq!(of("bad").reason, "no such image: nope:1");
    assert_eq!(of("nospec").state(), TaskState::Failed);
    assert_eq!(of("nospec").reason, NO_SPEC);
    assert_eq!(h.ex.starts(), 2, "bad once, ok once; nospec never");
    let ex = h.ex.clone();
    h.stop().await;
    // Stopping the worker leaves the containers running.
    assert_eq!(ex.running(), 1);
    assert_eq!(ex.stops(), 0);
}

#[tokio::test]
async fn at_most_the_limit_of_starts_run_at_once() {
    let h = Harness::start(HollowExecutor::new().with_start_delay(Duration::from_millis(40)));
    let set: Vec<Assignment> = (0..8).map(|i| assignment(&format!("t{i}"))).collect();
    let began = std::time::Instant::now();
    h.full(set).await;
    h.until("eight running", |ex| ex.running() == 8).await;
    // Four at a time: two rounds of 40 ms at least.
    assert!(
        began.elapsed() >= Duration::from_millis(80),
        "{:?}",
        began.elapsed()
    );
    h.stop().await;
}

fn checked(id: &str) -> Assignment {
    let mut a = assignment(id);
    a.spec.as_mut().unwrap().healthcheck = Some(berth_proto::v1::ServiceHealthCheck {
        kind: berth_proto::v1::HealthProbeKind::Tcp.into(),
        port: 80,
        interval_ms: 100,
        ..Default::default()
    });
    a
}

#[test]
fn a_running_task_with_a_check_is_watched_reported_by_health_and_stopped_when_unhealthy() {
    let mut core = Core::default();
    core.full(vec![checked("t1"), assignment("t2")], vec![], 0);
    // Running: the check starts and RUNNING is reported as starting; a task without a check
    // is not watched and has no health.
    let out = core.done("t1", Done::Started(Ok(obs("t1", Phase::Running))));
    let watch = out
        .iter()
        .find_map(|c| match c {
            Command::Watch {
                task_id,
                check,
                address,
            } => Some((task_id.clone(), check.clone(), *address)),
            _ => None,
        })
        .expect("a watch");
    assert_eq!(watch.0, "t1");
    assert_eq!(watch.1.probe, health::Probe::Tcp { port: 80 });
    assert_eq!(watch.1.interval, Duration::from_millis(100));
    assert_eq!(watch.2, Some(Ipv4Addr::new(10, 200, 0, 2)));
    let healths = |out: &[Command]| -> Vec<Option<Health>> {
        out.iter()
            .filter_map(|c| match c {
                Command::Report(o) => Some(o.health),
                _ => None,
            })
            .collect()
    };
    assert_eq!(healths(&out), [Some(Health::Starting)]);
    let out = core.done("t2", Done::Started(Ok(obs("t2", Phase::Running))));
    assert!(!out.iter().any(|c| matches!(c, Command::Watch { .. })));
    assert_eq!(healths(&out), [None]);

    // Healthy is reported once; a listing does not start a second check.
    let out = core.health("t1", Health::Healthy, "ok");
    assert_eq!(healths(&out), [Some(Health::Healthy)]);
    let out = core.listed(
        vec![obs("t1", Phase::Running), obs("t2", Phase::Running)],
        0,
    );
    assert!(out.is_empty(), "{out:?}");

    // Unhealthy: reported, the check stops and the container is stopped; its end is a
    // failure that says why, whatever its exit code.
    let out = core.health("t1", Health::Unhealthy, "connection refused\n");
    assert_eq!(healths(&out), [Some(Health::Unhealthy)]);
    assert!(out.contains(&Command::Unwatch("t1".into())));
    assert!(out.contains(&Command::Stop("t1".into())));
    let mut stopped = obs("t1", Phase::Shutdown);
    stopped.exit_code = Some(143);
    let out = core.done("t1", Done::Stopped(Ok(stopped)));
    let Some(Command::Report(end)) = out.first() else {
        panic!("an end report: {out:?}");
    };
    assert_eq!(end.phase, Phase::Failed);
    assert_eq!(end.reason.as_deref(), Some("unhealthy: connection refused"));
    assert_eq!(end.health, Some(Health::Unhealthy));
    let status = status_of(end);
    assert_eq!(status.health(), TaskHealth::Unhealthy);

    // A late event of a stopped check changes nothing.
    assert!(core.health("t1", Health::Healthy, "").is_empty());
}

#[test]
fn a_watched_task_that_stops_or_leaves_the_set_stops_its_check() {
    let mut core = Core::default();
    core.full(vec![checked("t1")], vec![], 0);
    core.done("t1", Done::Started(Ok(obs("t1", Phase::Running))));
    // Exited on its own: the check stops.
    let out = core.listed(vec![obs("t1", Phase::Failed)], 1);
    assert!(out.contains(&Command::Unwatch("t1".into())), "{out:?}");
    let mut core = Core::default();
    core.full(vec![checked("t2")], vec![], 0);
    core.done("t2", Done::Started(Ok(obs("t2", Phase::Running))));
    let out = core.change(vec![], vec!["t2".into()]);
    assert!(out.contains(&Command::Unwatch("t2".into())), "{out:?}");
}
