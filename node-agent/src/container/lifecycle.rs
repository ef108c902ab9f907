//! Start, stop, kill and remove.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_runtime::state::{State, Status, is_same_process_alive};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::pipe2;

use super::network::PreparedNetwork;
use super::process::{pidfd, signal, wait_exit};
use super::{ContainerError, ContainerInfo, ContainerManager, CreateOptions};

/// Whether `start` copies the container's output to the caller and reports its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Return once the entrypoint runs.
    Detached,
    /// Copy stdout/stderr to the caller's fds 1 and 2 until the first exit.
    Attached,
}

/// A container whose entrypoint runs.
#[derive(Debug)]
pub struct StartedContainer {
    /// Its id.
    pub id: String,
    /// Its first process.
    pub pid: i32,
    notify: Option<BufReader<File>>,
}

impl StartedContainer {
    /// For an attached start: waits for the first exit (after clean-up) and returns its code.
    ///
    /// Like `docker run`'s signal proxy, SIGINT, SIGTERM, SIGHUP and SIGQUIT received
    /// meanwhile (or since the attached start began) are forwarded to the container's first
    /// process instead of ending the caller.
    pub fn wait(mut self) -> Result<i32, ContainerError> {
        let r = self
            .notify
            .take()
            .ok_or_else(|| ContainerError::InvalidOption("not attached".into()))?;
        // Blocked since before the monitor was spawned (see `start_info`): a signal that came
        // early is pending and is read here.
        let mask = forwarded_signals();
        let sfd = mask
            .thread_block()
            .and_then(|()| {
                SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            })
            .ok();
        let container = pidfd(self.pid);
        let result = wait_for_exit(r, sfd.as_ref(), container.as_ref(), &self.id);
        let _ = mask.thread_unblock();
        result
    }
}

/// Makes sure the forwarded signals reach `wait`: a signal whose disposition is "ignore" is
/// discarded when sent, even while blocked, and a caller started in the background by a
/// non-interactive shell inherits SIGINT and SIGQUIT ignored. Like Go's `signal.Notify` (and so
/// `docker run`), an attached caller takes them back: their default action never runs, as they
/// stay blocked and are read from a signalfd.
fn take_forwarded_signals() {
    for s in forwarded_signals().iter() {
        // SAFETY: installs the default disposition, no handler code.
        let _ = unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigDfl) };
    }
}

/// The signals an attached caller forwards to its container.
fn forwarded_signals() -> SigSet {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        mask.add(s);
    }
    mask
}

fn wait_for_exit(
    mut r: BufReader<File>,
    sfd: Option<&SignalFd>,
    container: Option<&OwnedFd>,
    id: &str,
) -> Result<i32, ContainerError> {
    let mut line = String::new();
    loop {
        // Lines already buffered are read before waiting on the pipe again.
        if r.buffer().is_empty() {
            let mut fds = vec![PollFd::new(r.get_ref().as_fd(), PollFlags::POLLIN)];
            if let Some(s) = sfd {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(ContainerError::Runtime(berth_runtime::RuntimeError::sys(
                        "poll", e,
                    )));
                }
                Ok(_) => {}
            }
            let signalled = fds.get(1).is_some_and(|f| f.any().unwrap_or(false));
            let readable = fds[0].any().unwrap_or(false);
            drop(fds);
            if signalled {
                while let Some(Ok(Some(info))) = sfd.map(|s| s.read_signal()) {
                    if let Some(c) = container {
                        let _ = signal(c, info.ssi_signo as i32);
                    }
                }
            }
            if !readable {
                continue;
            }
        }
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return Err(ContainerError::Lost(id[..12].to_string()));
        }
        if let Some(code) = line.trim().strip_prefix("exited ") {
            berth_runtime::timing::mark("cli: exit reported");
            return Ok(code.parse().unwrap_or(255));
        }
    }
}

impl ContainerManager {
    /// Creates and starts a container; when it cannot start it is removed again.
    pub fn run(
        &self,
        opts: &CreateOptions,
        attach: Attach,
    ) -> Result<StartedContainer, ContainerError> {
        berth_runtime::cgroup::prime_attach_in_background();
        let info = self.create(opts)?;
        berth_runtime::timing::mark("cli: created");
        let id = info.spec.id.clone();
        match self.start_info(info, attach) {
            Ok(s) => Ok(s),
            Err(e) => {
                let _ = self.remove(&id, true);
                Err(e)
            }
        }
    }

    /// Starts a created or exited container through a new monitor.
    pub fn start(
        &self,
        reference: &str,
        attach: Attach,
    ) -> Result<StartedContainer, ContainerError> {
        berth_runtime::cgroup::prime_attach_in_background();
        self.start_info(self.inspect(reference)?, attach)
    }

    fn start_info(
        &self,
        info: ContainerInfo,
        attach: Attach,
    ) -> Result<StartedContainer, ContainerError> {
        if info.is_active() {
            return Err(ContainerError::InvalidOption(format!(
                "container {} is already running",
                info.spec.name
            )));
        }
        if attach == Attach::Attached {
            // Blocked before the container can run, so that a Ctrl-C arriving before `wait`
            // stays pending for it instead of killing this process (and orphaning the
            // container's output). Unblocked again if the start fails.
            take_forwarded_signals();
            let _ = forwarded_signals().thread_block();
        }
        let result = self.spawn_monitor(info, attach);
        if result.is_err() && attach == Attach::Attached {
            let _ = forwarded_signals().thread_unblock();
        }
        result
    }

    fn spawn_monitor(
        &self,
        mut info: ContainerInfo,
        attach: Attach,
    ) -> Result<StartedContainer, ContainerError> {
        let dir = self.dir(&info.spec.id);
        let _ = fs::remove_file(dir.stop_marker());
        // A record left by a monitor that died without releasing it.
        self.release_network(&info.spec.id)?;
        let mut net = self.prepare_network(&mut info)?;
        berth_runtime::timing::mark("cli: network begun");
        let id = info.spec.id.clone();
        let result = self.spawn_monitor_with(info, attach, &mut net);
        if let Some(p) = net.pending.take() {
            // The monitor could not even be started.
            p.abort();
        }
        if result.is_err() {
            // The monitor released it if it ran; if it did not, nobody else will.
            if let Err(e) = self.release_network(&id) {
                tracing::warn!(error = %e, "releasing the network of a failed start");
            }
        }
        drop(net);
        result
    }

    fn spawn_monitor_with(
        &self,
        info: ContainerInfo,
        attach: Attach,
        net: &mut PreparedNetwork,
    ) -> Result<StartedContainer, ContainerError> {
        let dir = self.dir(&info.spec.id);
        let (notify_r, notify_w) = pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| ContainerError::Runtime(berth_runtime::RuntimeError::sys("pipe", e)))?;
        let monitor_log = File::options()
            .create(true)
            .append(true)
            .open(dir.monitor_log())
            .map_err(|e| ContainerError::io("open", dir.monitor_log(), e))?;

        // The descriptors the monitor inherits are passed by number and made inheritable
        // here, so that no pre-exec hook is needed and the spawn is a posix_spawn (vfork)
        // rather than a full fork of this process.
        let inheritable = |fd: &OwnedFd| {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .map_err(|e| ContainerError::Runtime(berth_runtime::RuntimeError::sys("fcntl", e)))
        };
        inheritable(&notify_w)?;
        let mut cmd = Command::new(&self.config().monitor_bin);
        cmd.arg(dir.root())
            .arg("--notify-fd")
            .arg(notify_w.as_raw_fd().to_string());
        if let Some(agent) = &self.config().agent_bin {
            cmd.arg("--release-with").arg(agent);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(monitor_log));
        // The network is finished while the monitor builds the container; the first run
        // is released when the pipe says "ok".
        let ready = match net.netns() {
            Some(ns) => {
                inheritable(ns)?;
                let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| {
                    ContainerError::Runtime(berth_runtime::RuntimeError::sys("pipe", e))
                })?;
                inheritable(&r)?;
                cmd.arg("--netns-fd")
                    .arg(ns.as_raw_fd().to_string())
                    .arg("--net-ready-fd")
                    .arg(r.as_raw_fd().to_string());
                Some((r, w))
            }
            None => None,
        };
        let out_dup = if attach == Attach::Attached {
            let (o, e) = (dup_cloexec(1)?, dup_cloexec(2)?);
            inheritable(&o)?;
            inheritable(&e)?;
            cmd.arg("--attach-fds")
                .arg(format!("{},{}", o.as_raw_fd(), e.as_raw_fd()));
            Some((o, e))
        } else {
            None
        };
        berth_runtime::timing::mark("cli: spawning monitor");
        // The monitor forks itself away at once (re-parented to init, or to an agent daemon
        // that is a subreaper); this reaps the short-lived parent.
        let mut child = cmd
            .spawn()
            .map_err(|e| ContainerError::io("start monitor", &self.config().monitor_bin, e))?;
        drop(notify_w);
        drop(out_dup);
        let ready_w = ready.map(|(r, w)| {
            drop(r);
            w
        });
        if let (Some(w), Some(p)) = (ready_w, net.pending.take()) {
            let line = match self.finish_network(&info.spec.id, p) {
                Ok(()) => "ok\n".to_string(),
                Err(e) => format!("error network set-up failed: {e}\n"),
            };
            berth_runtime::timing::mark("cli: network finished");
            // A monitor that already failed has closed its end; its own error follows.
            let _ = File::from(w).write_all(line.as_bytes());
        }
        let _ = child.wait();
        berth_runtime::timing::mark("cli: monitor detached");

        let mut r = BufReader::new(File::from(notify_r));
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let line = line.trim_end();
        berth_runtime::timing::mark("cli: start reported");
        if let Some(pid) = line.strip_prefix("started ") {
            let pid = pid.parse().unwrap_or(0);
            let notify = (attach == Attach::Attached).then_some(r);
            return Ok(StartedContainer {
                id: info.spec.id,
                pid,
                notify,
            });
        }
        if let Some(rest) = line.strip_prefix("error ") {
            let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest));
            return Err(ContainerError::StartFailed {
                code: code.parse().unwrap_or(125),
                message: msg.to_string(),
            });
        }
        Err(ContainerError::MonitorLost {
            log: dir.monitor_log(),
        })
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout` (default: its own grace
    /// period). Waits until the monitor recorded the exit. Stopping a stopped container is fine.
    pub fn stop(
        &self,
        reference: &str,
        timeout: Option<Duration>,
    ) -> Result<ContainerInfo, ContainerError> {
        let info = self.inspect(reference)?;
        let timeout = timeout.unwrap_or(Duration::from_millis(info.spec.stop_timeout_ms));
        self.terminate(&info, info.spec.stop_signal, timeout)?;
        self.load(&info.spec.id)
    }

    /// Sends `sig` to the container's first process. SIGKILL also prevents a restart.
    pub fn kill(&self, reference: &str, sig: i32) -> Result<(), ContainerError> {
        let info = self.inspect(reference)?;
        if !info.process_alive {
            return Err(ContainerError::NotRunning(info.spec.name));
        }
        if sig == libc::SIGKILL {
            self.terminate(&info, libc::SIGKILL, Duration::ZERO)?;
            return Ok(());
        }
        let pid = info.state.pid.unwrap_or(0);
        let fd = pidfd(pid).ok_or_else(|| ContainerError::NotRunning(info.spec.name.clone()))?;
        signal(&fd, sig).map_err(|e| ContainerError::io("signal", format!("/proc/{pid}"), e))
    }

    fn terminate(
        &self,
        info: &ContainerInfo,
        sig: i32,
        grace: Duration,
    ) -> Result<(), ContainerError> {
        let dir = self.dir(&info.spec.id);
        if !info.is_active() {
            return Ok(());
        }
        fs::write(dir.stop_marker(), b"")
            .map_err(|e| ContainerError::io("write", dir.stop_marker(), e))?;
        let monitor = info
            .state
            .monitor_pid
            .filter(|_| info.monitor_alive)
            .and_then(pidfd);
        if let Some(m) = &monitor {
            // Wakes a monitor that waits to restart; a running one only notes it.
            let _ = signal(m, libc::SIGTERM);
        }
        let process = info
            .state
            .pid
            .filter(|p| is_same_process_alive(*p, info.state.pid_start_ticks))
            .and_then(pidfd);
        if let Some(p) = &process {
            if sig != libc::SIGKILL {
                let _ = signal(p, sig);
                if wait_exit(p, grace) {
                    return self.wait_monitor(info, monitor.as_ref());
                }
            }
            let _ = signal(p, libc::SIGKILL);
            let _ = self.cgroups.kill_all(&info.spec.cgroup_path);
            wait_exit(p, Duration::from_secs(10));
        }
        self.wait_monitor(info, monitor.as_ref())
    }

    fn wait_monitor(
        &self,
        info: &ContainerInfo,
        monitor: Option<&OwnedFd>,
    ) -> Result<(), ContainerError> {
        match monitor {
            Some(m) => {
                if !wait_exit(m, Duration::from_secs(10)) {
                    return Err(ContainerError::MonitorLost {
                        log: self.dir(&info.spec.id).monitor_log(),
                    });
                }
            }
            None => {
                // No monitor to record the exit: record it ourselves.
                let path = self.dir(&info.spec.id).state();
                let mut st = State::load(&path)?;
                if matches!(st.status, Status::Running | Status::Restarting) {
                    // We killed it ourselves; nobody could read its real status.
                    st.status = Status::Exited;
                    st.exit_code = Some(128 + libc::SIGKILL);
                    st.exit_reason = Some(berth_runtime::state::ExitReason::Signaled {
                        signal: libc::SIGKILL,
                    });
                    st.pid = None;
                    st.monitor_pid = None;
                    st.finished_at = Some(berth_runtime::time::now_unix_nanos());
                    st.store(&path)?;
                }
                let _ = self.cgroups.destroy(&info.spec.cgroup_path);
                self.release_network(&info.spec.id)?;
            }
        }
        Ok(())
    }

    /// Removes a container and everything it owns (state, writable layer, logs, cgroup).
    /// A running one needs `force` (it is killed first).
    pub fn remove(&self, reference: &str, force: bool) -> Result<(), ContainerError> {
        let info = self.inspect(reference)?;
        if info.is_active() {
            if !force {
                return Err(ContainerError::Running(info.spec.name));
            }
            self.terminate(&info, libc::SIGKILL, Duration::ZERO)?;
        }
        let mut errors = Vec::new();
        if let Err(e) = self.cgroups.destroy(&info.spec.cgroup_path) {
            errors.push(e.to_string());
        }
        if let Err(e) = self.release_network(&info.spec.id) {
            errors.push(e.to_string());
        }
        self.forget_links(&info.spec);
        let dir = self.dir(&info.spec.id);
        if let Err(e) = fs::remove_dir_all(dir.root())
            && e.kind() != std::io::ErrorKind::NotFound
        {
            errors.push(format!("remove {}: {e}", dir.root().display()));
        }
        self.release_name(&info.spec.name, &info.spec.id);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ContainerError::InvalidOption(format!(
                "removing {}: {}",
                info.spec.name,
                errors.join("; ")
            )))
        }
    }
}

fn dup_cloexec(fd: i32) -> Result<OwnedFd, ContainerError> {
    use std::os::fd::BorrowedFd;
    // SAFETY: fds 1 and 2 are open for the life of the process.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    b.try_clone_to_owned()
        .map_err(|e| ContainerError::io("dup", format!("fd {fd}"), e))
}
