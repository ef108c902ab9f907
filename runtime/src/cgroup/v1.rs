//! cgroup v1: one hierarchy per controller, each mounted on its own (`/sys/fs/cgroup/memory`,
//! `/sys/fs/cgroup/cpu`, …; `cpu` and `cpuacct` are often co-mounted as `cpu,cpuacct`).
//!
//! A cgroup is a directory of the same relative path in every hierarchy. memory, cpu and pids
//! are required; cpuacct, cpuset, devices, freezer and blkio get the directory when they are
//! mounted. What [`CgroupV1::create`](super::Cgroups::create) writes:
//!
//! | limit        | file(s)                                               | when `None`     |
//! |--------------|-------------------------------------------------------|-----------------|
//! | memory       | `memory.limit_in_bytes`                               | `-1` (no limit) |
//! | cpus         | `cpu.cfs_period_us` = 100000, `cpu.cfs_quota_us`      | quota `-1`      |
//! | cpu_shares   | `cpu.shares`                                          | `1024`          |
//! | pids_max     | `pids.max`                                            | `max`           |
//!
//! so creating over an existing cgroup leaves exactly `limits` in place. Each new cpuset level
//! (and any existing one left empty) gets `cpuset.cpus`/`cpuset.mems` copied from its parent,
//! as runc does: an empty cpuset refuses tasks with `ENOSPC`. The devices controller gets
//! Docker's default allow-list ([`DEFAULT_DEVICE_RULES`]) after denying everything.
//!
//! Known gaps: swap is not limited (`memory.memsw.*` is left alone); [`kill_all`] signals pids
//! read from `cgroup.procs` without freezing the cgroup first, so a pid that exits and is
//! reused in between could be hit (v2's `cgroup.kill` has no such window).
//!
//! [`kill_all`]: super::Cgroups::kill_all

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::files::{self, TEARDOWN_TIMEOUT};
use super::limits::{self, CPU_PERIOD_US, DEFAULT_SHARES};
use super::path::CgroupPath;
use super::{CgroupError, CgroupVersion, Cgroups, Limits, Stats, mountinfo};

#[cfg(test)]
mod real_tests;
#[cfg(test)]
mod tests;

/// Docker's default device rules, written one by one to `devices.allow` after `a` has been
/// written to `devices.deny`: `mknod` of any device, and read/write/mknod of `/dev/null`,
/// `zero`, `full`, `random`, `urandom`, `tty`, `console`, `ptmx`, the pty slaves and `tun`.
pub const DEFAULT_DEVICE_RULES: [&str; 12] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

/// The unlimited `memory.limit_in_bytes` is `PAGE_COUNTER_MAX` pages, i.e. `i64::MAX` rounded
/// down to the page size (9223372036854771712 with 4 KiB pages). Anything this close to
/// `i64::MAX` (pages up to 1 MiB) reads back as "no limit".
const MEMORY_UNLIMITED_FROM: u64 = i64::MAX as u64 - (1 << 20);

/// A v1 controller berth uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// `memory` (required).
    Memory,
    /// `cpu` (required).
    Cpu,
    /// `cpuacct`.
    Cpuacct,
    /// `cpuset`.
    Cpuset,
    /// `pids` (required).
    Pids,
    /// `devices`.
    Devices,
    /// `freezer`.
    Freezer,
    /// `blkio`.
    Blkio,
}

impl Controller {
    /// Every controller berth uses.
    pub const ALL: [Controller; 8] = [
        Controller::Memory,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Cpuset,
        Controller::Pids,
        Controller::Devices,
        Controller::Freezer,
        Controller::Blkio,
    ];

    /// The controllers without which [`CgroupV1`] cannot be built.
    pub const REQUIRED: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

    /// The kernel's name for the controller, as in mount options and `/proc/cgroups`.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Pids => "pids",
            Controller::Devices => "devices",
            Controller::Freezer => "freezer",
            Controller::Blkio => "blkio",
        }
    }

    /// The controller the kernel calls `name`, if berth uses it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// The v1 implementation of [`Cgroups`]: where each controller's hierarchy is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupV1 {
    mounts: BTreeMap<Controller, PathBuf>,
    // The required hierarchies' roots, also in `mounts`.
    memory: PathBuf,
    cpu: PathBuf,
    pids: PathBuf,
}

impl CgroupV1 {
    /// Finds each controller's hierarchy in `/proc/self/mountinfo` text: the mounts of type
    /// `cgroup` whose super options name it (`rw,cpu,cpuacct` mounts both `cpu` and
    /// `cpuacct`). Named hierarchies (`name=systemd`) and `cgroup2` mounts are ignored; when a
    /// hierarchy is mounted twice, the first mount wins. Fails with
    /// [`CgroupError::MissingController`] if memory, cpu or pids is not mounted.
    pub fn from_mountinfo(mountinfo: &str) -> Result<Self, CgroupError> {
        let mut mounts = BTreeMap::new();
        for mount in mountinfo::mounts(mountinfo).filter(|m| m.fstype == "cgroup") {
            for controller in mount
                .super_options
                .split(',')
                .filter_map(Controller::from_name)
            {
                mounts
                    .entry(controller)
                    .or_insert_with(|| mount.mount_point.clone());
            }
        }
        Self::with_mounts(mounts)
    }

    /// Uses the given mount points (for tests, or a caller that knows the layout). Fails with
    /// [`CgroupError::MissingController`] if memory, cpu or pids is missing.
    pub fn with_mounts(
        mounts: impl IntoIterator<Item = (Controller, PathBuf)>,
    ) -> Result<Self, CgroupError> {
        let mounts: BTreeMap<_, _> = mounts.into_iter().collect();
        let required = |controller: Controller| {
            mounts
                .get(&controller)
                .cloned()
                .ok_or_else(|| CgroupError::MissingController {
                    controller: controller.name().to_owned(),
                })
        };
        Ok(Self {
            memory: required(Controller::Memory)?,
            cpu: required(Controller::Cpu)?,
            pids: required(Controller::Pids)?,
            mounts,
        })
    }

    /// Where `controller`'s hierarchy is mounted, if it is.
    pub fn mount(&self, controller: Controller) -> Option<&Path> {
        self.mounts.get(&controller).map(PathBuf::as_path)
    }

    /// Each distinct hierarchy root once (co-mounted controllers share one).
    fn hierarchies(&self) -> Vec<&Path> {
        let mut roots: Vec<&Path> = Vec::new();
        for root in self.mounts.values() {
            if !roots.contains(&root.as_path()) {
                roots.push(root);
            }
        }
        roots
    }

    fn leaf_dirs(&self, path: &CgroupPath) -> Vec<PathBuf> {
        self.hierarchies()
            .into_iter()
            .map(|root| root.join(path.as_path()))
            .collect()
    }

    fn procs_files(&self, path: &CgroupPath) -> Vec<PathBuf> {
        self.leaf_dirs(path)
            .into_iter()
            .map(|dir| dir.join("cgroup.procs"))
            .collect()
    }

    fn create_in(
        &self,
        path: &CgroupPath,
        limits: &Limits,
        created: &mut Vec<PathBuf>,
    ) -> Result<(), CgroupError> {
        let levels = path.levels();
        for root in self.hierarchies() {
            files::mkdir_levels(root, &levels, created)?;
        }
        if let Some(root) = self.mount(Controller::Cpuset) {
            copy_cpuset_down(root, &levels)?;
        }

        let memory = self.memory.join(path.as_path());
        let bytes = limits
            .memory_bytes
            .map_or_else(|| "-1".to_owned(), |b| b.to_string());
        files::write(&memory.join("memory.limit_in_bytes"), &bytes)?;

        let cpu = self.cpu.join(path.as_path());
        let quota = limits
            .cpus
            .map_or_else(|| "-1".to_owned(), |c| limits::cpus_to_quota(c).to_string());
        files::write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
        files::write(&cpu.join("cpu.cfs_quota_us"), &quota)?;
        let shares = limits.cpu_shares.unwrap_or(DEFAULT_SHARES);
        files::write(&cpu.join("cpu.shares"), &shares.to_string())?;

        let pids = self.pids.join(path.as_path());
        let max = limits
            .pids_max
            .map_or_else(|| "max".to_owned(), |p| p.to_string());
        files::write(&pids.join("pids.max"), &max)?;

        if let Some(root) = self.mount(Controller::Devices) {
            let devices = root.join(path.as_path());
            files::write(&devices.join("devices.deny"), "a")?;
            for rule in DEFAULT_DEVICE_RULES {
                files::write(&devices.join("devices.allow"), rule)?;
            }
        }
        Ok(())
    }
}

/// Fills `cpuset.cpus` and `cpuset.mems` of every level that has them empty (every new one:
/// v1 does not inherit them unless `cgroup.clone_children` is set) from its parent.
fn copy_cpuset_down(root: &Path, levels: &[PathBuf]) -> Result<(), CgroupError> {
    let mut parent = root.to_path_buf();
    for level in levels {
        let dir = root.join(level);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if files::read(&dir.join(file))?.trim().is_empty() {
                let value = files::read(&parent.join(file))?;
                files::write(&dir.join(file), value.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

impl Cgroups for CgroupV1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn create(&self, path: &str, limits: &Limits) -> Result<(), CgroupError> {
        limits::validate(limits)?;
        let path = CgroupPath::parse(path)?;
        let mut created = Vec::new();
        self.create_in(&path, limits, &mut created)
            .map_err(|err| files::undo_created(&created, &self.leaf_dirs(&path), err))
    }

    fn add_process(&self, path: &str, pid: i32) -> Result<(), CgroupError> {
        let path = CgroupPath::parse(path)?;
        let pid = pid.to_string();
        for procs in self.procs_files(&path) {
            files::write(&procs, &pid)?;
        }
        Ok(())
    }

    fn processes(&self, path: &str) -> Result<Vec<i32>, CgroupError> {
        let path = CgroupPath::parse(path)?;
        files::read_procs(&self.pids.join(path.as_path()).join("cgroup.procs"))
    }

    fn read_limits(&self, path: &str) -> Result<Limits, CgroupError> {
        let path = CgroupPath::parse(path)?;
        let memory = files::read_u64(
            &self
                .memory
                .join(path.as_path())
                .join("memory.limit_in_bytes"),
        )?;

        let cpu = self.cpu.join(path.as_path());
        let quota_file = cpu.join("cpu.cfs_quota_us");
        let quota_text = files::read(&quota_file)?;
        let quota: i64 = quota_text.trim().parse().map_err(|_| CgroupError::Parse {
            path: quota_file,
            content: quota_text,
        })?;
        let cpus = if quota < 0 {
            None
        } else {
            let period = files::read_u64(&cpu.join("cpu.cfs_period_us"))?;
            Some(quota as f64 / period as f64)
        };
        let shares = files::read_u64(&cpu.join("cpu.shares"))?;

        let pids_file = self.pids.join(path.as_path()).join("pids.max");
        let pids_max = files::parse_max(&pids_file, &files::read(&pids_file)?)?;

        Ok(Limits {
            memory_bytes: (memory < MEMORY_UNLIMITED_FROM).then_some(memory),
            cpus,
            // The kernel default reads back as "no preference".
            cpu_shares: (shares != DEFAULT_SHARES).then_some(shares),
            pids_max,
        })
    }

    fn stats(&self, path: &str) -> Result<Stats, CgroupError> {
        let path = CgroupPath::parse(path)?;
        let memory = self.memory.join(path.as_path());
        let oom_control = memory.join("memory.oom_control");
        // Kernels before 4.13 have no oom_kill line: no kill was counted.
        let oom_kills =
            files::keyed_u64(&oom_control, &files::read(&oom_control)?, "oom_kill")?.unwrap_or(0);
        Ok(Stats {
            memory_usage_bytes: files::read_u64(&memory.join("memory.usage_in_bytes"))?,
            oom_kills,
            pids_current: files::read_u64(&self.pids.join(path.as_path()).join("pids.current"))?,
        })
    }

    fn kill_all(&self, path: &str) -> Result<(), CgroupError> {
        let path = CgroupPath::parse(path)?;
        files::kill_until_empty(&self.procs_files(&path), TEARDOWN_TIMEOUT)
    }

    fn destroy(&self, path: &str) -> Result<(), CgroupError> {
        let path = CgroupPath::parse(path)?;
        // Try every hierarchy even if one fails, and report the first failure.
        let mut first_err = None;
        for dir in self.leaf_dirs(&path) {
            if let Err(err) = files::rmdir_retry(&dir, TEARDOWN_TIMEOUT) {
                first_err.get_or_insert(err);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// One directory per mounted hierarchy; none for a path [`create`](Cgroups::create)
    /// would reject.
    fn dirs(&self, path: &str) -> Vec<PathBuf> {
        CgroupPath::parse(path).map_or_else(|_| Vec::new(), |path| self.leaf_dirs(&path))
    }
}
