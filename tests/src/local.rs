//! `berth up` in a throwaway place (the up/down test and `berth-up-bench`): the real
//! `berth`, `berth-controller` and `berth-agent` binaries, run as root inside a network
//! namespace of their own, with a temporary data directory, configuration and cgroup parent.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::netns::NetNs;

/// A binary of this build.
fn bin(name: &str) -> PathBuf {
    crate::target_dir().join(name)
}

/// A throwaway place for `berth up`: a network namespace, a data directory, a
/// configuration file and a cgroup parent of its own. Dropping it runs `berth down --purge`
/// and kills what is left.
pub struct Local {
    /// The network namespace every command runs in.
    pub ns: NetNs,
    /// The data directory (`--data-dir`).
    pub data: tempfile::TempDir,
    /// The CLI's configuration (`BERTH_CONFIG`), where `up` writes its context.
    pub config: tempfile::TempDir,
    /// The node's cgroup parent.
    pub cgroup_parent: String,
}

impl Local {
    /// A new place, nothing started.
    pub fn new() -> std::io::Result<Self> {
        Ok(Local {
            ns: NetNs::new()?,
            data: tempfile::tempdir()?,
            config: tempfile::tempdir()?,
            cgroup_parent: format!(
                "berth-test-up-{}-{}",
                std::process::id(),
                crate::COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        })
    }

    /// `berth ARGS`, with this place's configuration file.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.ns
            .command(bin("berth"))
            .args(args)
            .env("BERTH_CONFIG", self.config.path().join("config"))
            .env("NO_COLOR", "1")
            .output()
            .expect("run berth")
    }

    /// `berth up|down ARGS` on this place's data directory and cgroup parent.
    pub fn berth(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let data = self.data.path().to_str().expect("utf8 temp path");
        all.extend(["--data-dir", data, "--cgroup-parent", &self.cgroup_parent]);
        self.cli(&all)
    }

    /// `berth up|down ARGS`, which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(o.status.success(), "berth {args:?}: {}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `berth-agent ARGS` on the node's state, which must succeed; its standard output.
    pub fn agent(&self, args: &[&str]) -> String {
        let o = self
            .ns
            .command(bin("berth-agent"))
            .arg("--state-dir")
            .arg(self.data.path().join("agent"))
            .args(["--cgroup-parent", &self.cgroup_parent])
            .args(args)
            .output()
            .expect("run berth-agent");
        assert!(o.status.success(), "berth-agent {args:?}: {}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// How many containers run on the node.
    pub fn running(&self) -> usize {
        self.agent(&["ps", "-q"]).split_whitespace().count()
    }

    /// The daemons' process ids, from their pid files.
    pub fn pids(&self) -> Vec<i32> {
        ["controller.pid", "agent.pid"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.data.path().join(f)).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }

    /// Waits up to 30 s for `f`.
    pub fn wait(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // Whatever happened: stop everything and leave nothing behind.
        let _ = self.berth(&["down", "--purge"]);
        for pid in self.pids() {
            // SAFETY: kill with a pid read from our own pid file and a signal number.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for d in crate::cgroup_dirs(&self.cgroup_parent) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// An output, for messages.
pub fn show(o: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
}

/// The lines of `iptables-save` in `ns` that mention berth.
pub fn iptables_berth(ns: &NetNs) -> Vec<String> {
    let out = ns.command("iptables-save").output().expect("iptables-save");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.to_lowercase().contains("berth"))
        .map(str::to_owned)
        .collect()
}
