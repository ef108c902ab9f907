//! `berth-monitor <container-dir> [--notify-fd N] [--attach-fds OUT,ERR] [--netns-fd N --net-ready-fd N] [--release-with AGENT]`
//!
//! Started by the agent for one container; forks away from its caller (which reaps the
//! short-lived parent), starts a session of its own and runs
//! [`berth_runtime::monitor::run`]. Kept free of
//! async runtimes and argument-parsing crates so that it stays small in memory; only after
//! the container's final exit does it release the container's network, by running
//! `berth-agent network release` (`--release-with`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use berth_runtime::monitor::{self, FinalExitHook, MonitorArgs};
use berth_runtime::paths::ContainerDir;
use berth_runtime::spec::ContainerSpec;

fn usage(msg: &str) -> ! {
    eprintln!(
        "berth-monitor: {msg}\nusage: berth-monitor <container-dir> [--notify-fd N] [--attach-fds OUT,ERR] [--netns-fd N --net-ready-fd N] [--release-with AGENT]"
    );
    std::process::exit(2)
}

fn take_fd(n: &str) -> OwnedFd {
    let fd: i32 = n
        .parse()
        .unwrap_or_else(|_| usage(&format!("bad file descriptor {n:?}")));
    // SAFETY: fcntl F_GETFD only queries the descriptor.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        usage(&format!("file descriptor {fd} is not open"));
    }
    // SAFETY: mark it close-on-exec so the container never inherits it.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the descriptor is open (checked above) and handed to us by our parent alone.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// After the final exit: `berth-agent network release <dir>` removes the container's port
/// rules, veth and address (podman's exit-command pattern: the monitor itself links no
/// netlink or iptables code and stays small). Its output goes to the monitor's log.
fn release_network(agent: &std::path::Path, spec: &ContainerSpec, dir: &ContainerDir) {
    if !dir.network().exists() {
        return;
    }
    let status = std::process::Command::new(agent)
        .args(["network", "release"])
        .arg(dir.root())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("container {}: network release {s}", spec.id),
        Err(e) => eprintln!("container {}: run {}: {e}", spec.id, agent.display()),
    }
}

/// Closes every descriptor but stdin, stdout, stderr and `keep`. An agent starting several
/// containers at once from several threads makes each start's descriptors inheritable for
/// its own spawn, so a monitor can also inherit those of a start running beside it (another
/// container's network namespace, its status pipe), and would hold them for its whole life:
/// the other namespace outlives its container, and the other start never sees its status
/// pipe close if its monitor dies.
fn close_inherited(keep: &[RawFd]) {
    let Ok(rd) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let open: Vec<RawFd> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own descriptor is closed by now; closing its number again is harmless.
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: no object of this process owns these descriptors: they were inherited
            // and never wrapped (the ones we use are in `keep`).
            unsafe { libc::close(fd) };
        }
    }
}

fn main() {
    berth_runtime::timing::mark("monitor: main");
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .unwrap_or_else(|| usage("missing container directory"));
    let mut notify = None;
    let mut attach = None;
    let mut netns = None;
    let mut net_ready = None;
    let mut release_with = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--notify-fd" => {
                notify = Some(take_fd(
                    &args
                        .next()
                        .unwrap_or_else(|| usage("--notify-fd needs a value")),
                ))
            }
            "--attach-fds" => {
                let v = args
                    .next()
                    .unwrap_or_else(|| usage("--attach-fds needs OUT,ERR"));
                let (o, e) = v
                    .split_once(',')
                    .unwrap_or_else(|| usage("--attach-fds needs OUT,ERR"));
                attach = Some((take_fd(o), take_fd(e)));
            }
            "--netns-fd" => {
                netns = Some(take_fd(
                    &args
                        .next()
                        .unwrap_or_else(|| usage("--netns-fd needs a value")),
                ))
            }
            "--release-with" => {
                release_with =
                    Some(std::path::PathBuf::from(args.next().unwrap_or_else(|| {
                        usage("--release-with needs the berth-agent path")
                    })))
            }
            "--net-ready-fd" => {
                net_ready = Some(take_fd(
                    &args
                        .next()
                        .unwrap_or_else(|| usage("--net-ready-fd needs a value")),
                ))
            }
            other => usage(&format!("unknown argument {other:?}")),
        }
    }

    let mut keep: Vec<RawFd> = [&notify, &netns, &net_ready]
        .into_iter()
        .flatten()
        .map(AsRawFd::as_raw_fd)
        .collect();
    if let Some((o, e)) = &attach {
        keep.extend([o.as_raw_fd(), e.as_raw_fd()]);
    }
    close_inherited(&keep);

    // Fork once and let the parent exit (its caller reaps it): the long-lived monitor is the
    // child, whose memory holds only the pages it touches from here on, not those the loader
    // and start-up touched (about 1 MiB less resident per container).
    // SAFETY: single-threaded here; the child only continues normal execution.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            eprintln!("berth-monitor: fork: {e}");
            std::process::exit(1)
        }
    }
    // A session of our own: no terminal signal or session end of the caller reaches us.
    let _ = nix::unistd::setsid();
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // Writes to a caller that went away must fail with EPIPE, not kill us.
    // SAFETY: ignoring a signal installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let _ = std::env::set_current_dir("/");

    let code = monitor::run(MonitorArgs {
        dir: ContainerDir::new(dir),
        notify,
        attach,
        netns,
        net_ready,
        on_final_exit: release_with.map(|agent| {
            FinalExitHook(Box::new(move |spec, dir| {
                release_network(&agent, spec, dir)
            }))
        }),
    });
    std::process::exit(code)
}
