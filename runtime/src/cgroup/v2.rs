//! cgroup v2: one unified hierarchy, normally mounted at `/sys/fs/cgroup`.
//!
//! [`CgroupV2::create`](super::Cgroups::create) makes the directory and its missing parents,
//! then, from the root down to the leaf's parent, enables in `cgroup.subtree_control` those of
//! `cpu`, `memory` and `pids` that the level lists in `cgroup.controllers`. A limit whose
//! controller is not available fails with [`CgroupError::MissingController`]. Then, for each
//! controller available in the leaf:
//!
//! | limit        | file         | value                                  | when `None`   |
//! |--------------|--------------|----------------------------------------|---------------|
//! | memory       | `memory.max` | bytes                                  | `max`         |
//! | cpus         | `cpu.max`    | `<cpus × 100000> 100000`               | `max 100000`  |
//! | cpu_shares   | `cpu.weight` | `1 + ((shares - 2) × 9999) / 262142`   | `100`         |
//! | pids_max     | `pids.max`   | count                                  | `max`         |
//!
//! The shares-to-weight mapping is runc's linear one. It loses information, so
//! [`read_limits`](super::Cgroups::read_limits) returns the smallest shares value that maps to
//! the weight the kernel holds (512 shares → weight 20 → 501 shares), and the default weight
//! 100 as `None`.
//!
//! [`kill_all`](super::Cgroups::kill_all) writes `1` to `cgroup.kill` (Linux 5.14+), which
//! kills every process atomically, and falls back to SIGKILL per pid on older kernels.
//!
//! **Known gap: devices.** v2 has no `devices.*` files; restricting device access needs an
//! eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the cgroup, which is not
//! implemented. On v2 a container can open any device node that exists in its root file
//! system (its capabilities and mount namespace are the only restriction), unlike v1 where
//! [`v1::DEFAULT_DEVICE_RULES`](super::v1::DEFAULT_DEVICE_RULES) applies.

use std::path::{Path, PathBuf};

use super::files::{self, TEARDOWN_TIMEOUT};
use super::limits::{self, CPU_PERIOD_US, DEFAULT_WEIGHT};
use super::path::CgroupPath;
use super::{CgroupError, CgroupVersion, Cgroups, Limits, Stats, mountinfo};

#[cfg(test)]
mod tests;

/// The controllers berth enables, in the order they are written to `cgroup.subtree_control`.
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// True iff the mount on `/sys/fs/cgroup` (the last one there, which covers any earlier) is
/// `cgroup2`. A hybrid host, with `cgroup2` only at `/sys/fs/cgroup/unified`, is not unified.
pub fn is_unified_root(mountinfo: &str) -> bool {
    mountinfo::mounts(mountinfo)
        .filter(|m| m.mount_point == Path::new("/sys/fs/cgroup"))
        .last()
        .is_some_and(|m| m.fstype == "cgroup2")
}

/// The v2 implementation of [`Cgroups`] over the unified hierarchy mounted at `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupV2 {
    root: PathBuf,
}

impl CgroupV2 {
    /// Drives the hierarchy mounted at `root` (normally `/sys/fs/cgroup`).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The hierarchy's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, path: &CgroupPath) -> PathBuf {
        self.root.join(path.as_path())
    }

    fn create_in(
        &self,
        path: &CgroupPath,
        limits: &Limits,
        created: &mut Vec<PathBuf>,
    ) -> Result<(), CgroupError> {
        let levels = path.levels();
        files::mkdir_levels(&self.root, &levels, created)?;

        // The root and every level above the leaf pass the controllers down.
        let mut available: Vec<&str> = Vec::new();
        let parents = std::iter::once(self.root.clone())
            .chain(levels[..levels.len() - 1].iter().map(|l| self.root.join(l)));
        for parent in parents {
            let listed = files::read(&parent.join("cgroup.controllers"))?;
            available = CONTROLLERS
                .into_iter()
                .filter(|c| listed.split_whitespace().any(|l| l == *c))
                .collect();
            if !available.is_empty() {
                let enable: Vec<String> = available.iter().map(|c| format!("+{c}")).collect();
                files::write(&parent.join("cgroup.subtree_control"), &enable.join(" "))?;
            }
        }

        let needed = [
            ("memory", limits.memory_bytes.is_some()),
            ("cpu", limits.cpus.is_some() || limits.cpu_shares.is_some()),
            ("pids", limits.pids_max.is_some()),
        ];
        if let Some((missing, _)) = needed
            .iter()
            .find(|(c, wanted)| *wanted && !available.contains(c))
        {
            return Err(CgroupError::MissingController {
                controller: (*missing).to_owned(),
            });
        }

        let leaf = self.dir(path);
        if available.contains(&"memory") {
            let max = limits
                .memory_bytes
                .map_or_else(|| "max".to_owned(), |b| b.to_string());
            files::write(&leaf.join("memory.max"), &max)?;
        }
        if available.contains(&"cpu") {
            let quota = limits.cpus.map_or_else(
                || "max".to_owned(),
                |c| limits::cpus_to_quota(c).to_string(),
            );
            files::write(&leaf.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
            let weight = limits
                .cpu_shares
                .map_or(DEFAULT_WEIGHT, limits::shares_to_weight);
            files::write(&leaf.join("cpu.weight"), &weight.to_string())?;
        }
        if available.contains(&"pids") {
            let max = limits
                .pids_max
                .map_or_else(|| "max".to_owned(), |p| p.to_string());
            files::write(&leaf.join("pids.max"), &max)?;
        }
        Ok(())
    }
}

/// Parses `cpu.max` (`<quota|max> <period>`) into CPUs.
fn parse_cpu_max(path: &Path, content: &str) -> Result<Option<f64>, CgroupError> {
    let parse_err = || CgroupError::Parse {
        path: path.to_path_buf(),
        content: content.to_owned(),
    };
    let mut fields = content.split_whitespace();
    let (Some(quota), period, None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(parse_err());
    };
    // The period may be omitted when writing, but the kernel always shows it.
    let period: u64 = period
        .ok_or_else(parse_err)?
        .parse()
        .map_err(|_| parse_err())?;
    if quota == "max" {
        return Ok(None);
    }
    let quota: u64 = quota.parse().map_err(|_| parse_err())?;
    if period == 0 {
        return Err(parse_err());
    }
    Ok(Some(quota as f64 / period as f64))
}

impl Cgroups for CgroupV2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn create(&self, path: &str, limits: &Limits) -> Result<(), CgroupError> {
        limits::validate(limits)?;
        let path = CgroupPath::parse(path)?;
        let mut created = Vec::new();
        self.create_in(&path, limits, &mut created)
            .map_err(|err| files::undo_created(&created, &[self.dir(&path)], err))
    }

    fn add_process(&self, path: &str, pid: i32) -> Result<(), CgroupError> {
        let path = CgroupPath::parse(path)?;
        files::write(&self.dir(&path).join("cgroup.procs"), &pid.to_string())
    }

    fn processes(&self, path: &str) -> Result<Vec<i32>, CgroupError> {
        let path = CgroupPath::parse(path)?;
        files::read_procs(&self.dir(&path).join("cgroup.procs"))
    }

    /// A limit file that is missing (its controller is not enabled here) reads as `None`;
    /// a missing cgroup is an error.
    fn read_limits(&self, path: &str) -> Result<Limits, CgroupError> {
        let path = CgroupPath::parse(path)?;
        let dir = self.dir(&path);
        std::fs::metadata(&dir).map_err(|source| CgroupError::Io {
            path: dir.clone(),
            op: "stat",
            source,
        })?;
        let read = |name: &str| {
            let file = dir.join(name);
            files::read_if_exists(&file).map(|content| content.map(|c| (file, c)))
        };

        let memory_bytes = match read("memory.max")? {
            Some((file, content)) => files::parse_max(&file, &content)?,
            None => None,
        };
        let cpus = match read("cpu.max")? {
            Some((file, content)) => parse_cpu_max(&file, &content)?,
            None => None,
        };
        let cpu_shares = match read("cpu.weight")? {
            Some((file, content)) => {
                let weight = files::parse_u64(&file, &content)?;
                (weight != DEFAULT_WEIGHT).then(|| limits::weight_to_shares(weight))
            }
            None => None,
        };
        let pids_max = match read("pids.max")? {
            Some((file, content)) => files::parse_max(&file, &content)?,
            None => None,
        };
        Ok(Limits {
            memory_bytes,
            cpus,
            cpu_shares,
            pids_max,
        })
    }

    fn stats(&self, path: &str) -> Result<Stats, CgroupError> {
        let path = CgroupPath::parse(path)?;
        let dir = self.dir(&path);
        let events = dir.join("memory.events");
        Ok(Stats {
            memory_usage_bytes: files::read_u64(&dir.join("memory.current"))?,
            oom_kills: files::keyed_u64(&events, &files::read(&events)?, "oom_kill")?.unwrap_or(0),
            pids_current: files::read_u64(&dir.join("pids.current"))?,
        })
    }

    fn kill_all(&self, path: &str) -> Result<(), CgroupError> {
        let path = CgroupPath::parse(path)?;
        let dir = self.dir(&path);
        let procs = dir.join("cgroup.procs");
        let kill = dir.join("cgroup.kill");
        if !dir.exists() {
            return Ok(());
        }
        if kill.exists() {
            files::write(&kill, "1")?;
            files::wait_until_empty(&procs, TEARDOWN_TIMEOUT)
        } else {
            files::kill_until_empty(&[procs], TEARDOWN_TIMEOUT)
        }
    }

    fn destroy(&self, path: &str) -> Result<(), CgroupError> {
        let path = CgroupPath::parse(path)?;
        files::rmdir_retry(&self.dir(&path), TEARDOWN_TIMEOUT)
    }

    /// The one directory; none for a path [`create`](Cgroups::create) would reject.
    fn dirs(&self, path: &str) -> Vec<PathBuf> {
        CgroupPath::parse(path).map_or_else(|_| Vec::new(), |path| vec![self.dir(&path)])
    }
}
