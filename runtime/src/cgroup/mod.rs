//! Control groups behind one interface.
//!
//! [`Cgroups`] is implemented for the v1 layout (one hierarchy per controller) in
//! [`v1::CgroupV1`] and for the unified v2 layout in [`v2::CgroupV2`]; [`detect`] picks the
//! one the host runs. Callers name a cgroup by a path relative to every hierarchy's root,
//! such as `berth/3f2a…` (a parent chosen by the agent, then the container id).

use std::fmt;
use std::path::PathBuf;

pub mod v1;
pub mod v2;

mod error;
mod files;
mod limits;
mod mountinfo;
mod path;
pub use error::CgroupError;
pub use limits::{MAX_PIDS, MIN_CPUS, MIN_MEMORY_BYTES, SHARES_RANGE, parse_memory, validate};

/// Which cgroup layout the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CgroupVersion {
    /// One hierarchy per controller (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu`, …).
    V1,
    /// The unified hierarchy (`/sys/fs/cgroup` is `cgroup2`).
    V2,
}

/// Resource limits for one container. `None` leaves the kernel's default in place.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Hard memory limit in bytes (v1 `memory.limit_in_bytes`, v2 `memory.max`).
    pub memory_bytes: Option<u64>,
    /// CPU quota in CPUs (`0.5` = half a CPU; v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`,
    /// v2 `cpu.max`). The period is always 100 ms.
    pub cpus: Option<f64>,
    /// Relative CPU weight in Docker's `--cpu-shares` units (2..=262144; v1 `cpu.shares`,
    /// v2 `cpu.weight` converted as runc does).
    pub cpu_shares: Option<u64>,
    /// Maximum number of tasks (v1/v2 `pids.max`).
    pub pids_max: Option<u64>,
}

/// What the kernel reports about a cgroup right now.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Bytes of memory charged to the cgroup.
    pub memory_usage_bytes: u64,
    /// How many times the OOM killer killed a task in this cgroup.
    pub oom_kills: u64,
    /// Tasks in the cgroup.
    pub pids_current: u64,
}

/// The cgroup operations berth needs, for either layout.
///
/// Every method takes the cgroup's path relative to the hierarchy root(s). Every teardown
/// method is idempotent: removing what is already gone succeeds.
pub trait Cgroups: Send + Sync + fmt::Debug {
    /// The layout this implementation drives.
    fn version(&self) -> CgroupVersion;

    /// Creates the cgroup (and any missing parents) and applies `limits`. On v1 it also
    /// installs Docker's default device allow-list (deny all, then the standard character
    /// devices and `mknod` of any device). On v2 it enables the needed controllers in the
    /// parents' `cgroup.subtree_control`. Fails without leaving the new cgroup behind.
    fn create(&self, path: &str, limits: &Limits) -> Result<(), CgroupError>;

    /// Moves process `pid` into the cgroup (every hierarchy on v1).
    fn add_process(&self, path: &str, pid: i32) -> Result<(), CgroupError>;

    /// The processes in the cgroup (read from `cgroup.procs`; on v1 from the pids or memory
    /// hierarchy).
    fn processes(&self, path: &str) -> Result<Vec<i32>, CgroupError>;

    /// Reads the limits back from the cgroup's files (what the kernel holds, not what was asked).
    fn read_limits(&self, path: &str) -> Result<Limits, CgroupError>;

    /// Current usage and the OOM-kill counter (v1 `memory.oom_control` `oom_kill`, v2
    /// `memory.events` `oom_kill`).
    fn stats(&self, path: &str) -> Result<Stats, CgroupError>;

    /// Sends SIGKILL to every process in the cgroup (v2 `cgroup.kill` when present).
    fn kill_all(&self, path: &str) -> Result<(), CgroupError>;

    /// Removes the cgroup from every hierarchy, retrying briefly while exiting tasks leave it
    /// (EBUSY). A cgroup that does not exist is not an error. Parents are left in place.
    fn destroy(&self, path: &str) -> Result<(), CgroupError>;

    /// Directories that make up the cgroup, one per hierarchy (for diagnostics and tests).
    fn dirs(&self, path: &str) -> Vec<PathBuf>;
}

/// Detects the host's layout from `/proc/self/mountinfo` and returns its implementation:
/// v2 when `/sys/fs/cgroup` itself is `cgroup2`, otherwise v1 over the mounted controller
/// hierarchies (a hybrid host's `unified` mount is ignored).
pub fn detect() -> Result<Box<dyn Cgroups>, CgroupError> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| CgroupError::Io {
            path: PathBuf::from("/proc/self/mountinfo"),
            op: "read",
            source,
        })?;
    if v2::is_unified_root(&mountinfo) {
        Ok(Box::new(v2::CgroupV2::new(PathBuf::from("/sys/fs/cgroup"))))
    } else {
        Ok(Box::new(v1::CgroupV1::from_mountinfo(&mountinfo)?))
    }
}

/// Starts, in a background thread, the slow part of the next cgroup attach.
///
/// Moving a process into a cgroup takes `cgroup_threadgroup_rwsem` for writing, and the first
/// writer after a quiet spell waits for a full RCU grace period (7 to 14 ms measured on a
/// 2-vCPU VM with cgroup v1). Writing this process into the cgroup it is already in is a no-op
/// move that starts that wait at once; the monitor's real attach a few milliseconds later then
/// finds the lock on its fast path. Errors are ignored: it is only an optimisation. The thread
/// blocks every signal, so signals meant for the process are never delivered to it.
pub fn prime_attach_in_background() {
    let _ = std::thread::Builder::new()
        .name("cgroup-prime".into())
        .spawn(|| {
            let _ = nix::sys::signal::SigSet::all().thread_block();
            crate::timing::mark("prime: start");
            if let Ok(own) = std::fs::read_to_string("/proc/self/cgroup")
                && let Some(procs) = own_procs_file(&own)
            {
                let _ = std::fs::write(procs, "0");
            }
            crate::timing::mark("prime: done");
        });
}

/// The `cgroup.procs` file of this process's own cgroup: in the v1 `pids` hierarchy, else
/// in the unified one, from the contents of `/proc/self/cgroup`.
fn own_procs_file(proc_self_cgroup: &str) -> Option<PathBuf> {
    let mut unified = None;
    for line in proc_self_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        if controllers.split(',').any(|c| c == "pids") {
            return Some(PathBuf::from(format!(
                "/sys/fs/cgroup/pids{path}/cgroup.procs"
            )));
        }
        if controllers.is_empty() {
            unified = Some(PathBuf::from(format!("/sys/fs/cgroup{path}/cgroup.procs")));
        }
    }
    unified
}

#[cfg(test)]
mod prime_tests {
    use super::own_procs_file;
    use std::path::PathBuf;

    #[test]
    fn own_cgroup_is_found_on_v1_and_v2() {
        let v1 = "12:pids:/user.slice/x\n11:memory:/user.slice\n0::/user.slice/x\n";
        assert_eq!(
            own_procs_file(v1),
            Some(PathBuf::from(
                "/sys/fs/cgroup/pids/user.slice/x/cgroup.procs"
            ))
        );
        assert_eq!(
            own_procs_file("0::/a/b\n"),
            Some(PathBuf::from("/sys/fs/cgroup/a/b/cgroup.procs"))
        );
        assert_eq!(own_procs_file("garbage"), None);
    }
}
