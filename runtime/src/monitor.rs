//! The per-container monitor (the conmon / containerd-shim pattern).
//!
//! One monitor per container, detached from the agent (own session, re-parented to init), a
//! child subreaper. It starts the container, copies its stdout/stderr into the log (and, for
//! an attached `run`, to the caller's terminal), records every transition in `state.json`,
//! detects OOM kills, removes the cgroup after each run, and applies the restart policy with
//! exponential back-off. Killing the agent never touches it; a restarted agent reads what it
//! recorded.
//!
//! Notifications to the process that started it go over an optional pipe, one line each:
//! `started <pid>`, `error <code> <message>`, `exited <code>`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::cgroup;
use crate::logs::{LineBuffer, LogWriter, Stream};
use crate::paths::ContainerDir;
use crate::spawn;
use crate::spec::ContainerSpec;
use crate::state::{ExitReason, State, Status, process_start_ticks};
use crate::time::{now_unix_nanos, rfc3339_nanos};

/// First restart delay; doubled after each restart up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A run at least this long resets the back-off.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// What the monitor was started with.
#[derive(Debug)]
pub struct MonitorArgs {
    /// The container's state directory.
    pub dir: ContainerDir,
    /// Where to send `started` / `error` / `exited` lines.
    pub notify: Option<OwnedFd>,
    /// Where to copy the container's stdout and stderr until its first exit.
    pub attach: Option<(OwnedFd, OwnedFd)>,
    /// The network namespace of a bridge-networked container, prepared by the agent; held
    /// for the monitor's whole life so that restarts keep the address and ports.
    pub netns: Option<OwnedFd>,
    /// A pipe on which the agent, finishing the network set-up while the container is being
    /// built, writes `ok` or `error <message>`: the first run is released only after `ok`.
    pub net_ready: Option<OwnedFd>,
    /// Called once the container has exited for good (no restart follows), before the
    /// caller is told and before an auto-removed container's directory goes: releases what
    /// the agent set up for it (its network).
    pub on_final_exit: Option<FinalExitHook>,
}

/// The function inside a [`FinalExitHook`].
pub type FinalExitFn = Box<dyn FnOnce(&ContainerSpec, &ContainerDir)>;

/// What to do after a container's last exit (see [`MonitorArgs::on_final_exit`]).
pub struct FinalExitHook(pub FinalExitFn);

impl std::fmt::Debug for FinalExitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FinalExitHook")
    }
}

/// The next back-off after a run that lasted `ran`.
pub fn next_backoff(current: Duration, ran: Duration) -> Duration {
    if ran >= BACKOFF_RESET_AFTER {
        FIRST_BACKOFF
    } else {
        (current * 2).min(MAX_BACKOFF)
    }
}

struct Notifier(Option<File>);

impl Notifier {
    fn send(&mut self, line: &str) {
        if let Some(f) = &mut self.0
            && f.write_all(format!("{line}\n").as_bytes()).is_err()
        {
            self.0 = None;
        }
    }
}

/// Runs the monitor to the end of the container's life; returns the process exit code.
pub fn run(args: MonitorArgs) -> i32 {
    crate::timing::mark("monitor: start");
    let dir = args.dir;
    let mut notify = Notifier(args.notify.map(File::from));
    let mut attach = args.attach.map(|(o, e)| (File::from(o), File::from(e)));
    let netns = args.netns;
    let mut net_ready = args.net_ready.map(File::from);
    let mut on_final_exit = args.on_final_exit;
    let mut final_exit = |spec: &ContainerSpec, dir: &ContainerDir| {
        if let Some(FinalExitHook(hook)) = on_final_exit.take() {
            hook(spec, dir);
        }
    };

    let spec: ContainerSpec = match std::fs::read(dir.config())
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            notify.send(&format!(
                "error 125 reading {}: {e}",
                dir.config().display()
            ));
            return 125;
        }
    };
    let cgroups = match cgroup::detect() {
        Ok(c) => c,
        Err(e) => {
            notify.send(&format!("error 125 {e}"));
            return 125;
        }
    };
    let mut state = State::load(&dir.state()).unwrap_or_else(|_| State::created());
    state.monitor_pid = Some(std::process::id() as i32);
    // A new monitor is a start by the user: restarts are counted afresh, as Docker does.
    state.restart_count = 0;

    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGTERM);
    if let Err(e) = mask.thread_block() {
        notify.send(&format!("error 125 block signals: {e}"));
        return 125;
    }
    let sfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => {
            notify.send(&format!("error 125 signalfd: {e}"));
            return 125;
        }
    };
    let mut log = match LogWriter::open(&dir.log(), spec.log) {
        Ok(l) => l,
        Err(e) => {
            notify.send(&format!("error 125 open log {}: {e}", dir.log().display()));
            return 125;
        }
    };

    let mut backoff = FIRST_BACKOFF;
    loop {
        state.start_requested_at = Some(now_unix_nanos());
        state.next_restart_at = None;
        // Only the first run waits for the agent; restarts reuse the finished network.
        let mut wait_ready = net_ready.take().map(|mut f| {
            move || -> Result<(), String> {
                let mut line = String::new();
                let _ =
                    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut f), &mut line);
                match line.trim_end() {
                    "ok" => Ok(()),
                    "" => Err("the agent went away before the network was set up".into()),
                    other => Err(other.strip_prefix("error ").unwrap_or(other).to_string()),
                }
            }
        });
        let started = match spawn::start(
            &spec,
            &dir,
            cgroups.as_ref(),
            netns.as_ref().map(|f| f.as_fd()),
            wait_ready
                .as_mut()
                .map(|f| f as &mut dyn FnMut() -> Result<(), String>),
        ) {
            Ok(s) => s,
            Err(f) => {
                let msg = f.error.to_string();
                state.status = Status::Exited;
                state.pid = None;
                state.pid_start_ticks = None;
                state.finished_at = Some(now_unix_nanos());
                state.exit_code = Some(f.exit_code);
                state.exit_reason = Some(ExitReason::StartError {
                    message: msg.clone(),
                });
                state.monitor_pid = None;
                let _ = state.store(&dir.state());
                eprintln!("container {}: start failed: {msg}", spec.id);
                final_exit(&spec, &dir);
                notify.send(&format!("error {} {msg}", f.exit_code));
                finish(&spec, &dir);
                return f.exit_code;
            }
        };
        crate::timing::mark("monitor: exec confirmed");
        let run_start = Instant::now();
        state.status = Status::Running;
        state.pid = Some(started.pid.as_raw());
        state.pid_start_ticks = process_start_ticks(started.pid.as_raw());
        state.started_at = Some(now_unix_nanos());
        if let Err(e) = state.store(&dir.state()) {
            eprintln!("container {}: {e}", spec.id);
        }
        notify.send(&format!("started {}", started.pid));

        let status = supervise(started, &sfd, &mut log, &mut attach);
        crate::timing::mark("monitor: exited, pipes drained");
        let ran = run_start.elapsed();
        let stats = cgroups.stats(&spec.cgroup_path).unwrap_or_default();
        let (code, reason) = match status {
            WaitStatus::Exited(_, c) => (c, ExitReason::Exited),
            WaitStatus::Signaled(_, sig, _) => (
                128 + sig as i32,
                ExitReason::Signaled { signal: sig as i32 },
            ),
            _ => (255, ExitReason::Exited),
        };
        let reason = if stats.oom_kills > 0 {
            ExitReason::Oom
        } else {
            reason
        };
        // The pid namespace died with its first process; make sure, then remove the cgroup.
        let _ = cgroups.kill_all(&spec.cgroup_path);
        if let Err(e) = cgroups.destroy(&spec.cgroup_path) {
            eprintln!("container {}: {e}", spec.id);
        }
        crate::timing::mark("monitor: cgroup removed");
        state.pid = None;
        state.pid_start_ticks = None;
        state.finished_at = Some(now_unix_nanos());
        state.exit_code = Some(code);
        state.exit_reason = Some(reason);

        // After the first exit an attached caller gets its answer and lets go.
        attach = None;
        let stop_requested = dir.stop_marker().exists();
        let restart = !stop_requested && spec.restart.should_restart(code, state.restart_count);
        if !restart {
            state.status = Status::Exited;
            state.monitor_pid = None;
            final_exit(&spec, &dir);
            crate::timing::mark("monitor: final exit hook done");
            if spec.auto_remove {
                // The directory is moved out of the containers' directory (one rename: the
                // container is gone for everyone), the caller told, then the files unlinked.
                let trash = move_aside(&spec, &dir);
                crate::timing::mark("monitor: directory moved aside");
                notify.send(&format!("exited {code}"));
                if let Some(t) = trash
                    && let Err(e) = std::fs::remove_dir_all(&t)
                {
                    eprintln!("container {}: remove {}: {e}", spec.id, t.display());
                }
            } else {
                let _ = state.store(&dir.state());
                crate::timing::mark("monitor: state written");
                notify.send(&format!("exited {code}"));
            }
            return 0;
        }
        notify.send(&format!("exited {code}"));
        notify.0 = None;

        // A run of 10 s or more starts over at the first delay; otherwise this delay is the
        // last one doubled (100 ms, 200 ms, 400 ms, … 60 s).
        let delay = if state.restart_count == 0 || ran >= BACKOFF_RESET_AFTER {
            FIRST_BACKOFF
        } else {
            next_backoff(backoff, ran)
        };
        backoff = delay;
        let wake = now_unix_nanos() + backoff.as_nanos() as i128;
        state.status = Status::Restarting;
        state.next_restart_at = Some(wake);
        let _ = state.store(&dir.state());
        if !wait_backoff(backoff, &sfd, &dir.stop_marker()) {
            state.status = Status::Exited;
            state.next_restart_at = None;
            state.monitor_pid = None;
            final_exit(&spec, &dir);
            let _ = state.store(&dir.state());
            return 0;
        }
        state.restart_count += 1;
    }
}

/// Removes the container's directory when it was started with auto-remove.
fn finish(spec: &ContainerSpec, dir: &ContainerDir) {
    if spec.auto_remove
        && let Some(t) = move_aside(spec, dir)
    {
        let _ = std::fs::remove_dir_all(t);
    }
}

/// Renames the container's directory into `<state-dir>/trash/` (swept by the agent at start
/// if a crash interrupts the removal) and returns its new path.
fn move_aside(spec: &ContainerSpec, dir: &ContainerDir) -> Option<std::path::PathBuf> {
    let state_dir = dir.root().parent()?.parent()?;
    let trash = state_dir.join("trash");
    let _ = std::fs::create_dir_all(&trash);
    let target = trash.join(&spec.id);
    match std::fs::rename(dir.root(), &target) {
        Ok(()) => Some(target),
        Err(e) => {
            eprintln!(
                "container {}: move {} aside: {e}",
                spec.id,
                dir.root().display()
            );
            std::fs::remove_dir_all(dir.root())
                .ok()
                .map(|()| dir.root().to_path_buf())
        }
    }
}

/// Copies output until the container's first process has exited and its pipes are closed.
fn supervise(
    started: spawn::Started,
    sfd: &SignalFd,
    log: &mut LogWriter,
    attach: &mut Option<(File, File)>,
) -> WaitStatus {
    let pid = started.pid;
    let mut out = Some(File::from(started.stdout));
    let mut err = Some(File::from(started.stderr));
    let mut bufs = [LineBuffer::default(), LineBuffer::default()];
    let mut exit: Option<WaitStatus> = None;
    let mut exited_at: Option<Instant> = None;
    let mut chunk = vec![0u8; 64 * 1024];

    while exit.is_none() || out.is_some() || err.is_some() {
        // Processes that escaped the pid namespace could hold the pipes; don't wait forever.
        if exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
        let timeout = if exit.is_some() {
            PollTimeout::from(100u16)
        } else {
            PollTimeout::NONE
        };
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(f) = &out {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if let Some(f) = &err {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if poll(&mut fds, timeout).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        let mut idx = 1;
        for (n, slot) in [&mut out, &mut err].into_iter().enumerate() {
            if slot.is_none() {
                continue;
            }
            if ready[idx] {
                let stream = if n == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                let f = slot.as_mut().expect("checked");
                match f.read(&mut chunk) {
                    Ok(0) | Err(_) => {
                        // The tail was already copied to an attached caller as it came.
                        if let Some(rest) = bufs[n].take_rest() {
                            let _ = log.write(stream, &rest, &rfc3339_nanos(now_unix_nanos()));
                        }
                        *slot = None;
                    }
                    Ok(k) => {
                        copy_to_attach(attach, stream, &chunk[..k]);
                        for line in bufs[n].push(&chunk[..k]) {
                            let _ = log.write(stream, &line, &rfc3339_nanos(now_unix_nanos()));
                        }
                    }
                }
            }
            idx += 1;
        }
        if ready[0] {
            while let Ok(Some(_)) = sfd.read_signal() {}
            loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(st) if st.pid() == Some(pid) => {
                        exit = Some(st);
                        exited_at = Some(Instant::now());
                    }
                    Ok(_) => {} // an orphan handed to us as subreaper
                }
            }
        }
    }
    exit.unwrap_or_else(|| {
        waitpid(started.pid, None).unwrap_or(WaitStatus::Exited(started.pid, 255))
    })
}

fn copy_to_attach(attach: &mut Option<(File, File)>, stream: Stream, data: &[u8]) {
    if let Some((o, e)) = attach {
        let f = if stream == Stream::Stdout { o } else { e };
        if f.write_all(data).is_err() {
            *attach = None;
        }
    }
}

/// Sleeps for the back-off unless a stop is requested; returns whether to restart.
fn wait_backoff(delay: Duration, sfd: &SignalFd, stop_marker: &Path) -> bool {
    let deadline = Instant::now() + delay;
    loop {
        if stop_marker.exists() {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        let step = left.min(Duration::from_millis(50));
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(step.as_millis() as i32).unwrap_or(PollTimeout::ZERO),
        );
        while let Ok(Some(info)) = sfd.read_signal() {
            if info.ssi_signo == Signal::SIGTERM as u32 {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = FIRST_BACKOFF;
        let mut seen = vec![];
        for _ in 0..12 {
            b = next_backoff(b, Duration::from_secs(1));
            seen.push(b);
        }
        assert_eq!(seen[0], Duration::from_millis(200));
        assert_eq!(seen[1], Duration::from_millis(400));
        assert_eq!(*seen.last().unwrap(), MAX_BACKOFF);
        assert_eq!(
            next_backoff(MAX_BACKOFF, Duration::from_secs(11)),
            FIRST_BACKOFF
        );
    }
}
