//! A task container's record as the node reports it (pure: the caller reads the files).

use std::net::Ipv4Addr;

use berth_runtime::state::{ExitReason, State, Status};

use crate::node::{Observed, Phase};

/// What is known about one task container right now.
#[derive(Debug, Clone)]
pub struct Seen<'a> {
    /// The task.
    pub task_id: &'a str,
    /// The monitor's record (`State::created()` before it wrote one).
    pub state: &'a State,
    /// Whether the monitor lives.
    pub monitor_alive: bool,
    /// Whether the container's first process lives.
    pub process_alive: bool,
    /// Whether a stop was requested (`stop-requested` in the container's directory, written
    /// by every stop and removed by every start, so it survives an agent restart).
    pub stop_requested: bool,
    /// Its address on the bridge, while it has one.
    pub address: Option<Ipv4Addr>,
}

/// Maps a task container's record to the phase the node reports:
///
/// - never started: `Starting` (`Shutdown` if a stop was requested meanwhile);
/// - running (or waiting to restart, which restart policy `no` never does): `Running`;
/// - exited: `Failed` if it could not start at all; `Shutdown` if a stop was requested;
///   `Complete` with code 0; `Failed` with any other code;
/// - recorded as running but neither monitor nor process lives (the monitor was killed):
///   `Shutdown` if a stop was requested, else `Failed`.
pub fn observed(s: &Seen<'_>) -> Observed {
    let st = s.state;
    let mut o = Observed {
        task_id: s.task_id.to_owned(),
        phase: Phase::Starting,
        address: None,
        exit_code: None,
        reason: None,
        health: None,
    };
    match st.status {
        Status::Created if s.stop_requested => {
            o.phase = Phase::Shutdown;
            o.reason = Some("stopped on request before it started".into());
        }
        Status::Created => {}
        Status::Running | Status::Restarting if s.monitor_alive || s.process_alive => {
            o.phase = if st.status == Status::Running {
                Phase::Running
            } else {
                Phase::Starting
            };
            o.address = s.address;
        }
        Status::Running | Status::Restarting => {
            let (phase, reason) = if s.stop_requested {
                (Phase::Shutdown, "stopped on request")
            } else {
                (
                    Phase::Failed,
                    "its monitor died without recording how it ended",
                )
            };
            o.phase = phase;
            o.reason = Some(reason.to_owned());
        }
        Status::Exited => {
            o.exit_code = st.exit_code;
            let code = st.exit_code.unwrap_or(-1);
            (o.phase, o.reason) = match &st.exit_reason {
                Some(ExitReason::StartError { message }) => {
                    (Phase::Failed, Some(format!("could not start: {message}")))
                }
                _ if s.stop_requested => (
                    Phase::Shutdown,
                    Some(format!("stopped on request (exit code {code})")),
                ),
                _ if code == 0 => (Phase::Complete, None),
                Some(ExitReason::Oom) => (
                    Phase::Failed,
                    Some(format!(
                        "killed by the OOM killer (memory limit reached), exit code {code}"
                    )),
                ),
                Some(ExitReason::Signaled { signal }) => (
                    Phase::Failed,
                    Some(format!("killed by signal {signal}, exit code {code}")),
                ),
                Some(ExitReason::Exited) | None => {
                    (Phase::Failed, Some(format!("exited with code {code}")))
                }
            };
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: Status, code: Option<i32>, reason: Option<ExitReason>) -> State {
        State {
            status,
            exit_code: code,
            exit_reason: reason,
            ..State::created()
        }
    }

    fn seen(st: &State, alive: bool, stop: bool) -> Observed {
        observed(&Seen {
            task_id: "t1",
            state: st,
            monitor_alive: alive,
            process_alive: alive,
            stop_requested: stop,
            address: Some(Ipv4Addr::new(10, 0, 0, 2)),
        })
    }

    #[test]
    fn phases() {
        let running = state(Status::Running, None, None);
        let o = seen(&running, true, false);
        assert_eq!(o.phase, Phase::Running);
        assert_eq!(o.address, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(o.task_id, "t1");

        let lost = seen(&running, false, false);
        assert_eq!(lost.phase, Phase::Failed);
        assert!(lost.reason.unwrap().contains("monitor died"));
        assert_eq!(lost.address, None);
        assert_eq!(seen(&running, false, true).phase, Phase::Shutdown);

        let created = State::created();
        assert_eq!(seen(&created, false, false).phase, Phase::Starting);
        assert_eq!(seen(&created, false, true).phase, Phase::Shutdown);

        let ok = state(Status::Exited, Some(0), Some(ExitReason::Exited));
        let o = seen(&ok, false, false);
        assert_eq!(
            (o.phase, o.exit_code, o.reason),
            (Phase::Complete, Some(0), None)
        );

        let three = state(Status::Exited, Some(3), Some(ExitReason::Exited));
        let o = seen(&three, false, false);
        assert_eq!((o.phase, o.exit_code), (Phase::Failed, Some(3)));
        assert_eq!(o.reason.as_deref(), Some("exited with code 3"));
        assert_eq!(o.address, None);

        let killed = state(
            Status::Exited,
            Some(137),
            Some(ExitReason::Signaled { signal: 9 }),
        );
        let o = seen(&killed, false, true);
        assert_eq!((o.phase, o.exit_code), (Phase::Shutdown, Some(137)));
        assert!(o.reason.unwrap().contains("stopped on request"));
        let o = seen(&killed, false, false);
        assert_eq!(o.phase, Phase::Failed);
        assert!(o.reason.unwrap().contains("signal 9"));

        let oom = state(Status::Exited, Some(137), Some(ExitReason::Oom));
        assert!(seen(&oom, false, false).reason.unwrap().contains("OOM"));

        let bad = state(
            Status::Exited,
            Some(127),
            Some(ExitReason::StartError {
                message: "entrypoint \"nope\" not found".into(),
            }),
        );
        // A start error stays a failure even if a stop came after it.
        let o = seen(&bad, false, true);
        assert_eq!((o.phase, o.exit_code), (Phase::Failed, Some(127)));
        assert!(o.reason.unwrap().contains("could not start: entrypoint"));
    }
}
