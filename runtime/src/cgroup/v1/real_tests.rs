//! Tests against this host's real v1 hierarchies. They need root and a v1 memory hierarchy;
//! without them each test prints `SKIPPED: …` and returns. Everything is created under a
//! test-only parent `berth-test-cg-<pid>-<n>` that a guard removes even when an assertion fails.

use std::fs;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::cgroup::{parse_memory, v2};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The host's v1 cgroups, or `None` after saying loudly why the test cannot run.
fn host_v1(test: &str) -> Option<CgroupV1> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: {test}: needs root to create cgroups");
        return None;
    }
    let mountinfo = match fs::read_to_string("/proc/self/mountinfo") {
        Ok(info) => info,
        Err(e) => {
            eprintln!("SKIPPED: {test}: cannot read /proc/self/mountinfo: {e}");
            return None;
        }
    };
    if v2::is_unified_root(&mountinfo) {
        eprintln!("SKIPPED: {test}: this host runs cgroup v2, not v1");
        return None;
    }
    match CgroupV1::from_mountinfo(&mountinfo) {
        Ok(v1) => Some(v1),
        Err(e) => {
            eprintln!("SKIPPED: {test}: no usable cgroup v1 hierarchies: {e}");
            None
        }
    }
}

/// A test-only parent cgroup in every hierarchy; dropping it removes it and everything below.
struct TestParent {
    v1: CgroupV1,
    name: String,
}

impl TestParent {
    fn new(test: &str) -> Option<Self> {
        let v1 = host_v1(test)?;
        let name = format!(
            "berth-test-cg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Some(Self { v1, name })
    }

    fn path(&self, below: &str) -> String {
        format!("{}/{below}", self.name)
    }

    /// Kills whatever is left and removes the parent's tree in every hierarchy.
    fn remove(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        for dir in self.v1.dirs(&self.name) {
            if let Err(e) = remove_tree(&dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Asserts that nothing named after this parent is left under any hierarchy.
    fn assert_gone(&self) {
        for dir in self.v1.dirs(&self.name) {
            assert!(!dir.exists(), "{} is still there", dir.display());
        }
        for hierarchy in fs::read_dir("/sys/fs/cgroup").unwrap() {
            let leftover = hierarchy.unwrap().path().join(&self.name);
            assert!(!leftover.exists(), "{} is still there", leftover.display());
        }
    }
}

impl Drop for TestParent {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("cleanup of cgroup {} failed: {e}", self.name);
        }
    }
}

fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path())?;
            }
        }
    }
    files::kill_until_empty(&[dir.join("cgroup.procs")], TEARDOWN_TIMEOUT)?;
    files::rmdir_retry(dir, TEARDOWN_TIMEOUT)
}

/// A child process that is killed and reaped if the test ends early.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn v1_real_lifecycle() {
    let Some(parent) = TestParent::new("v1_real_lifecycle") else {
        return;
    };
    let cg = parent.path("c1");
    let limits = Limits {
        memory_bytes: Some(parse_memory("64m").unwrap()),
        cpus: Some(0.5),
        cpu_shares: Some(512),
        pids_max: Some(20),
    };
    parent.v1.create(&cg, &limits).unwrap();
    assert_eq!(parent.v1.read_limits(&cg).unwrap(), limits);

    if let Some(devices) = parent.v1.mount(Controller::Devices) {
        let list = fs::read_to_string(devices.join(&cg).join("devices.list")).unwrap();
        let mut got: Vec<&str> = list.lines().collect();
        let mut want = DEFAULT_DEVICE_RULES.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }
    if let Some(cpuset) = parent.v1.mount(Controller::Cpuset) {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let root = fs::read_to_string(cpuset.join(file)).unwrap();
            for dir in [cpuset.join(&parent.name), cpuset.join(&cg)] {
                assert_eq!(
                    fs::read_to_string(dir.join(file)).unwrap(),
                    root,
                    "{}",
                    dir.display()
                );
            }
        }
    }

    let mut child = ChildGuard(Command::new("sleep").arg("30").spawn().unwrap());
    let pid = i32::try_from(child.0.id()).unwrap();
    parent.v1.add_process(&cg, pid).unwrap();
    assert!(parent.v1.processes(&cg).unwrap().contains(&pid));
    let in_memory_cg = format!("memory:/{cg}");
    let proc_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        proc_cgroup.lines().any(|l| l.ends_with(&in_memory_cg)),
        "{proc_cgroup}"
    );
    let stats = parent.v1.stats(&cg).unwrap();
    assert_eq!(stats.pids_current, 1);
    assert_eq!(stats.oom_kills, 0);

    parent.v1.kill_all(&cg).unwrap();
    assert_eq!(parent.v1.processes(&cg).unwrap(), Vec::<i32>::new());
    let status = child.0.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");

    parent.v1.destroy(&cg).unwrap();
    for dir in parent.v1.dirs(&cg) {
        assert!(!dir.exists(), "{} is still there", dir.display());
    }
    parent.v1.destroy(&cg).unwrap();
    parent.v1.kill_all(&cg).unwrap();

    parent.remove().unwrap();
    parent.assert_gone();
}

#[test]
fn v1_real_default_limits_and_oom_kill_counter() {
    let Some(parent) = TestParent::new("v1_real_default_limits_and_oom_kill_counter") else {
        return;
    };
    let cg = parent.path("c1");
    parent.v1.create(&cg, &Limits::default()).unwrap();
    assert_eq!(parent.v1.read_limits(&cg).unwrap(), Limits::default());
    let stats = parent.v1.stats(&cg).unwrap();
    assert_eq!(stats.oom_kills, 0);
    assert_eq!(stats.pids_current, 0);

    // Creating over the existing cgroup converges on the new limits.
    let limits = Limits {
        memory_bytes: Some(parse_memory("6m").unwrap()),
        pids_max: Some(1),
        ..Limits::default()
    };
    parent.v1.create(&cg, &limits).unwrap();
    assert_eq!(parent.v1.read_limits(&cg).unwrap(), limits);
    parent.v1.create(&cg, &Limits::default()).unwrap();
    assert_eq!(parent.v1.read_limits(&cg).unwrap(), Limits::default());

    parent.remove().unwrap();
    parent.assert_gone();
}

#[test]
fn v1_real_rejected_write_removes_what_create_made() {
    let Some(parent) = TestParent::new("v1_real_rejected_write_removes_what_create_made") else {
        return;
    };
    // A v1 child may not have a larger CFS quota than its parent: the kernel says EINVAL.
    let half = Limits {
        cpus: Some(0.5),
        ..Limits::default()
    };
    parent.v1.create(&parent.name, &half).unwrap();
    let cg = parent.path("a/b");
    let one = Limits {
        cpus: Some(1.0),
        ..Limits::default()
    };
    match parent.v1.create(&cg, &one) {
        Err(CgroupError::Write {
            path,
            value,
            source,
        }) => {
            assert!(
                path.ends_with(format!("{cg}/cpu.cfs_quota_us")),
                "{}",
                path.display()
            );
            assert_eq!(value, "100000");
            assert_eq!(source.raw_os_error(), Some(libc::EINVAL));
        }
        other => panic!("expected the quota write to fail, got {other:?}"),
    }
    for dir in parent.v1.dirs(&parent.path("a")) {
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
    for dir in parent.v1.dirs(&parent.name) {
        assert!(
            dir.exists(),
            "the existing parent {} was removed",
            dir.display()
        );
    }

    parent.remove().unwrap();
    parent.assert_gone();
}
