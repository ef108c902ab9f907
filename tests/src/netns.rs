//! Throwaway network namespaces: each test's agent runs in one of its own (its "host"), so
//! the bridge, the iptables rules and the sysctls it sets vanish with it and the machine's
//! own network is never touched.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::{CloneFlags, setns, unshare};

/// A network namespace held open by a file descriptor; it is destroyed when the last
/// descriptor and process in it are gone.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// A new network namespace with `lo` up, created from a short-lived thread so that the
    /// caller stays where it is.
    pub fn new() -> io::Result<NetNs> {
        std::thread::spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            let fd = OwnedFd::from(File::open("/proc/thread-self/ns/net")?);
            berth_runtime::net::loopback_up()?;
            Ok(NetNs { fd })
        })
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
    }

    /// The namespace's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Runs `f` on a thread that has joined this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns into test netns");
                f()
            })
            .join()
            .expect("thread in test netns panicked")
        })
    }

    /// Makes `cmd` join this namespace between fork and exec.
    pub fn enter_on_exec(&self, cmd: &mut Command) {
        let raw = self.fd.as_raw_fd();
        // SAFETY: setns is an async-signal-safe system call made between fork and exec; the
        // descriptor stays open in the parent (and so in the child) until the spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// A command that runs in this namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        self.enter_on_exec(&mut c);
        c
    }
}

/// The names of the links in the caller's network namespace (from `ip -o link`: sysfs
/// shows the namespace it was mounted in, not the caller's).
pub fn links_here() -> Vec<String> {
    link_names(Command::new("ip"))
}

impl NetNs {
    /// The names of the links in this namespace.
    pub fn links(&self) -> Vec<String> {
        link_names(self.command("ip"))
    }
}

fn link_names(mut ip: Command) -> Vec<String> {
    let out = ip
        .args(["-o", "link", "show"])
        .output()
        .expect("run ip -o link show");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}
