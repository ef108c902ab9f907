//! Running another process inside a running container: all of its namespaces and its cgroup,
//! its user and capabilities.

use std::fs::File;
use std::os::fd::AsFd;

use berth_runtime::init::{Process, exec_process};
use nix::sched::{CloneFlags, setns};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

use super::{ContainerError, ContainerManager};

/// What `exec` runs.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Program and arguments.
    pub args: Vec<String>,
    /// Extra `KEY=VALUE` variables (added to the container's).
    pub env: Vec<String>,
    /// User (default: the container's).
    pub user: Option<String>,
    /// Working directory (default: the container's).
    pub workdir: Option<String>,
}

impl ContainerManager {
    /// Runs a process in the container with the caller's stdio and returns its exit code.
    ///
    /// The calling process must be single-threaded: it forks, and the child enters the
    /// namespaces (`setns` into a mount namespace needs a single-threaded caller).
    pub fn exec(&self, reference: &str, opts: &ExecOptions) -> Result<i32, ContainerError> {
        if opts.args.is_empty() {
            return Err(ContainerError::InvalidOption("exec needs a command".into()));
        }
        let info = self.inspect(reference)?;
        let pid = match info.state.pid {
            Some(p) if info.process_alive => p,
            _ => return Err(ContainerError::NotRunning(info.spec.name)),
        };
        // Open every namespace first, so that all belong to the same live process.
        let mut namespaces = Vec::new();
        for (name, flag) in [
            ("ipc", CloneFlags::CLONE_NEWIPC),
            ("uts", CloneFlags::CLONE_NEWUTS),
            ("net", CloneFlags::CLONE_NEWNET),
            ("pid", CloneFlags::CLONE_NEWPID),
            ("mnt", CloneFlags::CLONE_NEWNS),
        ] {
            let path = format!("/proc/{pid}/ns/{name}");
            let f = File::open(&path).map_err(|e| ContainerError::io("open", &path, e))?;
            namespaces.push((name, flag, f));
        }
        let env =
            super::create::merge_env(&berth_runtime::init::container_env(&info.spec), &opts.env)?;
        let user = opts.user.clone().unwrap_or_else(|| info.spec.user.clone());
        let cwd = opts
            .workdir
            .clone()
            .unwrap_or_else(|| info.spec.cwd.clone());

        let parent = nix::unistd::getpid();
        // SAFETY: the caller is single-threaded (documented above), so the child may run
        // arbitrary code before it execs or exits.
        match unsafe { fork() }
            .map_err(|e| ContainerError::Runtime(berth_runtime::RuntimeError::sys("fork", e)))?
        {
            ForkResult::Child => {
                // Whoever runs `exec` and kills it (a health check's timeout, a client gone)
                // kills what it runs in the container too: each process dies with its parent.
                let orphaned = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .is_err()
                    || nix::unistd::getppid() != parent;
                let entered = if orphaned {
                    Err("the exec command ended before the process started".to_owned())
                } else {
                    self.enter(&info.spec.cgroup_path, &namespaces)
                };
                let code = match entered {
                    Err(msg) => {
                        eprintln!("error: exec: {msg}");
                        125
                    }
                    // The pid namespace applies to children only: fork once more.
                    // SAFETY: still single-threaded.
                    Ok(()) => match unsafe { fork() } {
                        Ok(ForkResult::Child) => {
                            let p = Process {
                                args: &opts.args,
                                env: &env,
                                user: &user,
                                cwd: &cwd,
                            };
                            // Set last: a change of credentials clears it.
                            let mut die_with_parent = || {
                                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                                    .map_err(|e| format!("prctl pdeathsig: {e}"))
                            };
                            let Err((code, msg)) =
                                exec_process(&info.spec, &p, &mut die_with_parent);
                            eprintln!("error: exec: {msg}");
                            code
                        }
                        Ok(ForkResult::Parent { child }) => wait_code(child),
                        Err(e) => {
                            eprintln!("error: exec: fork: {e}");
                            125
                        }
                    },
                };
                // SAFETY: ends the forked child without unwinding into the parent's state.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => Ok(wait_code(child)),
        }
    }

    fn enter(&self, cgroup: &str, namespaces: &[(&str, CloneFlags, File)]) -> Result<(), String> {
        self.cgroups
            .add_process(cgroup, std::process::id() as i32)
            .map_err(|e| format!("join the container's cgroup: {e}"))?;
        for (name, flag, f) in namespaces {
            setns(f.as_fd(), *flag).map_err(|e| format!("enter {name} namespace: {e}"))?;
        }
        Ok(())
    }
}

fn wait_code(child: nix::unistd::Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}
