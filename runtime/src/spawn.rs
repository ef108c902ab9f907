//! Cloning a container's first process into its new namespaces and cgroup.
//!
//! The child is created with `clone(2)` straight into new pid, mount, uts, ipc and (unless
//! host networking) network namespaces and builds its root file system at once
//! ([`crate::init::run`]) while the parent creates its cgroup and moves it there; it waits on
//! a pipe for that release only right before `execve`, so no user code runs outside the
//! cgroup. A close-on-exec pipe tells the parent whether `execve` happened (end of file) or
//! what failed (a message).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, pipe2};

use crate::cgroup::Cgroups;
use crate::error::RuntimeError;
use crate::paths::ContainerDir;
use crate::spec::{ContainerSpec, NetworkMode};

/// A container process that has executed its entrypoint.
#[derive(Debug)]
pub struct Started {
    /// Its pid in the monitor's pid namespace.
    pub pid: Pid,
    /// Read end of its stdout.
    pub stdout: OwnedFd,
    /// Read end of its stderr.
    pub stderr: OwnedFd,
}

/// Why a start failed: the exit code the container is reported with, and the message.
#[derive(Debug)]
pub struct StartFailure {
    /// 125 for set-up errors, 126/127 for an entrypoint that cannot run, as Docker reports.
    pub exit_code: i32,
    /// What went wrong.
    pub error: RuntimeError,
}

impl StartFailure {
    fn setup(error: RuntimeError) -> Self {
        Self {
            exit_code: 125,
            error,
        }
    }
}

/// Creates the cgroup, clones the container's first process and waits until it executed its
/// entrypoint. On failure the child is reaped and the cgroup removed.
///
/// `netns` is the network namespace of a [`NetworkMode::Bridge`] container, which the child
/// joins instead of creating one. `gate`, when given, is called once the child is in its
/// cgroup and must return before the child is released (the agent finishing the network
/// set-up meanwhile); its error fails the start.
pub fn start(
    spec: &ContainerSpec,
    dir: &ContainerDir,
    cgroups: &dyn Cgroups,
    netns: Option<BorrowedFd<'_>>,
    gate: Option<&mut dyn FnMut() -> Result<(), String>>,
) -> Result<Started, StartFailure> {
    if spec.args.is_empty() {
        return Err(StartFailure::setup(RuntimeError::InvalidSpec(
            "no command: the image has no Entrypoint or Cmd and none was given".into(),
        )));
    }
    let netns = match (spec.network, netns) {
        (NetworkMode::Bridge, None) => {
            return Err(StartFailure::setup(RuntimeError::InvalidSpec(
                "a bridge-networked container needs the network namespace the agent prepared"
                    .into(),
            )));
        }
        (NetworkMode::Bridge, Some(fd)) => Some(fd),
        _ => None,
    };
    match clone_and_release(spec, dir, cgroups, netns, gate) {
        Ok(s) => Ok(s),
        Err(f) => {
            let _ = cgroups.kill_all(&spec.cgroup_path);
            let _ = cgroups.destroy(&spec.cgroup_path);
            Err(f)
        }
    }
}

fn clone_and_release(
    spec: &ContainerSpec,
    dir: &ContainerDir,
    cgroups: &dyn Cgroups,
    netns: Option<BorrowedFd<'_>>,
    gate: Option<&mut dyn FnMut() -> Result<(), String>>,
) -> Result<Started, StartFailure> {
    let p = |what: &str| {
        let what = what.to_string();
        move |e| StartFailure::setup(RuntimeError::sys(format!("pipe for {what}"), e))
    };
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(p("stdout"))?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(p("stderr"))?;
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).map_err(p("sync"))?;
    let (fail_r, fail_w) = pipe2(OFlag::O_CLOEXEC).map_err(p("start status"))?;
    let devnull = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| StartFailure::setup(RuntimeError::io("open", "/dev/null".as_ref(), e)))?;

    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if spec.network == NetworkMode::None {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: a raw clone without CLONE_VM and with a null stack behaves like fork(2): the
    // child gets a copy of this (single-threaded) process and continues here with 0. The
    // monitor is single-threaded, so no lock can be held by a thread that does not exist in
    // the child.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if ret < 0 {
        return Err(StartFailure::setup(RuntimeError::sys(
            "clone",
            nix::errno::Errno::last(),
        )));
    }
    if ret == 0 {
        drop(out_r);
        drop(err_r);
        drop(go_w);
        drop(fail_r);
        child(spec, dir, netns, devnull, out_w, err_w, go_r, fail_w);
    }
    let pid = Pid::from_raw(ret as i32);
    crate::timing::mark("spawn: cloned");
    drop(out_w);
    drop(err_w);
    drop(go_r);
    drop(fail_w);
    drop(devnull);

    // The child builds its root file system meanwhile: the cgroup work (its attach waits for
    // an RCU grace period on cgroup v1) runs in parallel with it.
    let mut go = File::from(go_w);
    let placed = (|| {
        // A cgroup left by a crashed earlier run is replaced.
        let _ = cgroups.destroy(&spec.cgroup_path);
        cgroups.create(&spec.cgroup_path, &spec.limits)?;
        crate::timing::mark("spawn: cgroup created");
        cgroups.add_process(&spec.cgroup_path, pid.as_raw())
    })();
    if let Err(e) = placed {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        return Err(StartFailure::setup(e.into()));
    }
    if let Some(gate) = gate {
        if let Err(msg) = gate() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(StartFailure::setup(RuntimeError::StartFailed(msg)));
        }
        crate::timing::mark("spawn: gate passed");
    }
    // A child that already failed has closed its end: its message explains, below.
    let _ = go.write_all(b"1");
    drop(go);
    crate::timing::mark("spawn: in cgroup, released");

    let mut msg = String::new();
    let _ = File::from(fail_r).read_to_string(&mut msg);
    if msg.is_empty() {
        return Ok(Started {
            pid,
            stdout: out_r,
            stderr: err_r,
        });
    }
    let _ = waitpid(pid, None);
    let (code, text) = msg.split_once(':').unwrap_or(("125", msg.as_str()));
    Err(StartFailure {
        exit_code: code.parse().unwrap_or(125),
        error: RuntimeError::StartFailed(text.to_string()),
    })
}

#[allow(clippy::too_many_arguments)]
fn child(
    spec: &ContainerSpec,
    dir: &ContainerDir,
    netns: Option<BorrowedFd<'_>>,
    devnull: File,
    out_w: OwnedFd,
    err_w: OwnedFd,
    go_r: OwnedFd,
    fail_w: OwnedFd,
) -> ! {
    let mut fail = File::from(fail_w);
    let mut go = Some(File::from(go_r));
    let mut release = move || -> Result<(), String> {
        let mut b = [0u8; 1];
        let n = go
            .take()
            .map_or(Ok(0), |mut g| g.read(&mut b))
            .map_err(|e| format!("wait for release: {e}"))?;
        if n == 1 {
            Ok(())
        } else {
            Err("the monitor did not release the container".into())
        }
    };
    let prepared = prepare_child(&devnull, &out_w, &err_w).and_then(|()| match netns {
        // Joined before anything is mounted, so that /sys shows this namespace's devices.
        Some(fd) => nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("join the container's network namespace: {e}")),
        None => Ok(()),
    });
    let code = match prepared {
        Err(msg) => {
            let _ = write!(fail, "125:{msg}");
            125
        }
        Ok(()) => match crate::init::run(spec, dir, &mut release) {
            Ok(never) => match never {},
            Err((code, msg)) => {
                let _ = write!(fail, "{code}:{msg}");
                code
            }
        },
    };
    // SAFETY: _exit ends this forked child without running the parent's atexit handlers or
    // destructors twice.
    unsafe { libc::_exit(code) }
}

/// Stdio, signals and inherited descriptors of the child.
fn prepare_child(devnull: &File, out_w: &OwnedFd, err_w: &OwnedFd) -> Result<(), String> {
    // The monitor blocks the signals it reads through a signalfd, and ignores SIGPIPE; the
    // container must start with neither.
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| format!("reset signal mask: {e}"))?;
    // SAFETY: restoring the default disposition installs no Rust handler.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }
        .map_err(|e| format!("reset SIGPIPE: {e}"))?;
    for (src, dst) in [
        (devnull.as_raw_fd(), 0),
        (out_w.as_raw_fd(), 1),
        (err_w.as_raw_fd(), 2),
    ] {
        // SAFETY: both descriptors are open; dup2 onto 0..2 is what a child does before exec.
        if unsafe { libc::dup2(src, dst) } < 0 {
            return Err(format!(
                "dup2 onto fd {dst}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    // Nothing of the monitor's beyond stdio may leak into the container.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only marks descriptors close-on-exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Ok(())
}
