//! Tests against a fixture directory laid out like a v2 hierarchy. A regular file system does
//! not create interface files on mkdir nor drop them on rmdir, so [`fake_cgroup`] plays the
//! kernel's part where a test needs it.

use std::fs;

use super::*;
use crate::cgroup::parse_memory;

const ALL: &str = "cpuset cpu io memory hugetlb pids rdma misc";

/// Makes `dir` look like a cgroup the kernel created, its controllers' files at their defaults.
fn fake_cgroup(dir: &Path, controllers: &str) {
    fs::create_dir_all(dir).unwrap();
    let mut files = vec![
        ("cgroup.controllers", format!("{controllers}\n")),
        ("cgroup.subtree_control", String::new()),
        ("cgroup.procs", String::new()),
    ];
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    if has("memory") {
        files.push(("memory.max", "max\n".into()));
        files.push(("memory.current", "0\n".into()));
        files.push((
            "memory.events",
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n".into(),
        ));
    }
    if has("cpu") {
        files.push(("cpu.max", "max 100000\n".into()));
        files.push(("cpu.weight", "100\n".into()));
    }
    if has("pids") {
        files.push(("pids.max", "max\n".into()));
        files.push(("pids.current", "0\n".into()));
    }
    for (name, content) in files {
        fs::write(dir.join(name), content).unwrap();
    }
}

/// A fixture root with every controller, and `berth` and `berth/c1` below it as the kernel
/// would show them once created.
fn fixture() -> (tempfile::TempDir, CgroupV2) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_cgroup(root, ALL);
    fs::remove_file(root.join("memory.max")).unwrap(); // the root has no limits
    fake_cgroup(&root.join("berth"), "cpu memory pids");
    fake_cgroup(&root.join("berth/c1"), "cpu memory pids");
    let v2 = CgroupV2::new(root.to_path_buf());
    (dir, v2)
}

fn read(path: PathBuf) -> String {
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strip_files(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::remove_file(entry.path()).unwrap();
        }
    }
}

#[test]
fn create_enables_controllers_up_the_path_and_writes_limits() {
    let (_dir, v2) = fixture();
    let root = v2.root().to_path_buf();
    let limits = Limits {
        memory_bytes: Some(parse_memory("64m").unwrap()),
        cpus: Some(0.5),
        cpu_shares: Some(512),
        pids_max: Some(20),
    };
    v2.create("berth/c1", &limits).unwrap();

    assert_eq!(
        read(root.join("cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    assert_eq!(
        read(root.join("berth/cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    assert_eq!(
        read(root.join("berth/c1/cgroup.subtree_control")),
        "",
        "the leaf enables nothing"
    );
    let leaf = root.join("berth/c1");
    assert_eq!(read(leaf.join("memory.max")), "67108864");
    assert_eq!(read(leaf.join("cpu.max")), "50000 100000");
    assert_eq!(read(leaf.join("cpu.weight")), "20");
    assert_eq!(read(leaf.join("pids.max")), "20");

    // Round trip: exact except shares, which come back as the smallest value of weight 20.
    let back = v2.read_limits("berth/c1").unwrap();
    assert_eq!(
        back,
        Limits {
            cpu_shares: Some(501),
            ..limits
        }
    );
    assert_eq!(limits::shares_to_weight(501), limits::shares_to_weight(512));
}

#[test]
fn default_limits_write_the_kernel_defaults_and_read_back_as_none() {
    let (_dir, v2) = fixture();
    let leaf = v2.root().join("berth/c1");
    fs::write(leaf.join("memory.max"), "1048576\n").unwrap();
    fs::write(leaf.join("pids.max"), "3\n").unwrap();
    v2.create("berth/c1", &Limits::default()).unwrap();
    assert_eq!(read(leaf.join("memory.max")), "max");
    assert_eq!(read(leaf.join("cpu.max")), "max 100000");
    assert_eq!(read(leaf.join("cpu.weight")), "100");
    assert_eq!(read(leaf.join("pids.max")), "max");
    assert_eq!(v2.read_limits("berth/c1").unwrap(), Limits::default());
}

#[test]
fn only_listed_controllers_are_enabled_and_a_missing_one_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    fake_cgroup(dir.path(), "memory pids");
    let v2 = CgroupV2::new(dir.path().to_path_buf());
    let wants_cpu = Limits {
        cpus: Some(1.0),
        ..Limits::default()
    };
    match v2.create("c2", &wants_cpu) {
        Err(CgroupError::MissingController { controller }) => assert_eq!(controller, "cpu"),
        other => panic!("expected MissingController, got {other:?}"),
    }
    assert_eq!(
        read(dir.path().join("cgroup.subtree_control")),
        "+memory +pids"
    );
    assert!(
        !dir.path().join("c2").exists(),
        "the new cgroup was left behind"
    );

    // With no controller at all, nothing is written to subtree_control.
    let bare = tempfile::tempdir().unwrap();
    fake_cgroup(bare.path(), "io");
    fake_cgroup(&bare.path().join("c"), "");
    CgroupV2::new(bare.path().to_path_buf())
        .create("c", &Limits::default())
        .unwrap();
    assert_eq!(read(bare.path().join("cgroup.subtree_control")), "");
}

#[test]
fn failures_remove_every_level_create_made() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_cgroup(root, ALL);
    let v2 = CgroupV2::new(root.to_path_buf());

    // The new `a` has no cgroup.controllers on a plain file system: reading it fails.
    match v2.create("a/b/c", &Limits::default()) {
        Err(CgroupError::Io {
            path, op: "read", ..
        }) => assert_eq!(path, root.join("a/cgroup.controllers")),
        other => panic!("expected a read error, got {other:?}"),
    }
    assert!(!root.join("a").exists());

    // The new leaf has no memory.max: the write fails naming the file and the value.
    let limits = Limits {
        memory_bytes: Some(parse_memory("1g").unwrap()),
        ..Limits::default()
    };
    match v2.create("leaf", &limits) {
        Err(CgroupError::Write { path, value, .. }) => {
            assert_eq!(path, root.join("leaf/memory.max"));
            assert_eq!(value, "1073741824");
        }
        other => panic!("expected a write error, got {other:?}"),
    }
    assert!(!root.join("leaf").exists());

    // A cgroup that already existed is not removed when create fails on it.
    fake_cgroup(&root.join("old"), "cpu pids");
    assert!(matches!(
        v2.create("old", &limits),
        Err(CgroupError::Write { .. })
    ));
    assert!(root.join("old").exists());
}

#[test]
fn rejects_bad_paths_and_limits() {
    let (_dir, v2) = fixture();
    assert!(matches!(
        v2.create("/berth/c1", &Limits::default()),
        Err(CgroupError::InvalidPath { .. })
    ));
    assert!(matches!(
        v2.processes("berth/../.."),
        Err(CgroupError::InvalidPath { .. })
    ));
    let bad = Limits {
        cpu_shares: Some(1),
        ..Limits::default()
    };
    assert!(matches!(
        v2.create("berth/c1", &bad),
        Err(CgroupError::InvalidLimit {
            name: "cpu_shares",
            ..
        })
    ));
    assert_eq!(read(v2.root().join("cgroup.subtree_control")), "");
    assert!(v2.dirs("..").is_empty());
    assert_eq!(v2.dirs("berth/c1"), vec![v2.root().join("berth/c1")]);
    assert_eq!(v2.version(), CgroupVersion::V2);
}

#[test]
fn stats_parse_memory_events() {
    let (_dir, v2) = fixture();
    let leaf = v2.root().join("berth/c1");
    fs::write(leaf.join("memory.current"), "1234567\n").unwrap();
    fs::write(
        leaf.join("memory.events"),
        "low 0\nhigh 0\nmax 12\noom 4\noom_kill 3\noom_group_kill 0\n",
    )
    .unwrap();
    fs::write(leaf.join("pids.current"), "2\n").unwrap();
    assert_eq!(
        v2.stats("berth/c1").unwrap(),
        Stats {
            memory_usage_bytes: 1_234_567,
            oom_kills: 3,
            pids_current: 2,
        }
    );
    fs::write(leaf.join("memory.events"), "low 0\noom_kill lots\n").unwrap();
    assert!(
        matches!(v2.stats("berth/c1"), Err(CgroupError::Parse { path, .. }) if path == leaf.join("memory.events"))
    );
    assert!(matches!(
        v2.stats("berth/absent"),
        Err(CgroupError::Io { .. })
    ));
}

#[test]
fn read_limits_handles_missing_files_and_garbage() {
    let (_dir, v2) = fixture();
    let leaf = v2.root().join("berth/c1");
    fs::remove_file(leaf.join("cpu.max")).unwrap();
    fs::remove_file(leaf.join("cpu.weight")).unwrap();
    fs::write(leaf.join("pids.max"), "7\n").unwrap();
    assert_eq!(
        v2.read_limits("berth/c1").unwrap(),
        Limits {
            pids_max: Some(7),
            ..Limits::default()
        }
    );
    assert!(matches!(
        v2.read_limits("berth/absent"),
        Err(CgroupError::Io { op: "stat", .. })
    ));
    for garbage in [
        "",
        "50000",
        "50000 100000 1",
        "x 100000",
        "max x",
        "50000 0",
    ] {
        fs::write(leaf.join("cpu.max"), garbage).unwrap();
        assert!(
            matches!(v2.read_limits("berth/c1"), Err(CgroupError::Parse { .. })),
            "{garbage:?}"
        );
    }
    fs::write(leaf.join("cpu.max"), "150000 100000\n").unwrap();
    assert_eq!(v2.read_limits("berth/c1").unwrap().cpus, Some(1.5));
}

#[test]
fn processes_and_kill_all() {
    let (_dir, v2) = fixture();
    let leaf = v2.root().join("berth/c1");
    v2.add_process("berth/c1", 4242).unwrap();
    assert_eq!(read(leaf.join("cgroup.procs")), "4242");
    assert_eq!(v2.processes("berth/c1").unwrap(), vec![4242]);
    fs::write(leaf.join("cgroup.procs"), "").unwrap();

    // Without cgroup.kill (Linux < 5.14): nothing to signal, done.
    v2.kill_all("berth/c1").unwrap();
    // With it: writes 1, then waits for cgroup.procs to empty.
    fs::write(leaf.join("cgroup.kill"), "").unwrap();
    v2.kill_all("berth/c1").unwrap();
    assert_eq!(read(leaf.join("cgroup.kill")), "1");
    // A cgroup that is gone has nothing to kill.
    v2.kill_all("berth/absent").unwrap();
}

#[test]
fn destroy_removes_the_leaf_only_and_is_idempotent() {
    let (_dir, v2) = fixture();
    v2.create("berth/c1", &Limits::default()).unwrap();
    let leaf = v2.root().join("berth/c1");
    strip_files(&leaf); // the kernel drops interface files with the directory
    v2.destroy("berth/c1").unwrap();
    assert!(!leaf.exists());
    assert!(v2.root().join("berth").exists(), "parents stay");
    v2.destroy("berth/c1").unwrap();

    // A non-busy failure is reported, not retried forever.
    fake_cgroup(&leaf, "pids");
    assert!(matches!(
        v2.destroy("berth/c1"),
        Err(CgroupError::Io { op: "rmdir", .. })
    ));
}

#[test]
fn unified_root_detection() {
    let pure_v2 = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    assert!(is_unified_root(pure_v2));

    let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    assert!(!is_unified_root(hybrid));

    let v2_elsewhere = "30 22 0:26 / /mnt/cgroup2 rw - cgroup2 cgroup2 rw\n";
    assert!(!is_unified_root(v2_elsewhere));
    assert!(!is_unified_root(""));

    // The last mount on /sys/fs/cgroup is the one in effect.
    let covered = format!("{pure_v2}40 30 0:40 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n");
    assert!(!is_unified_root(&covered));
    let covering =
        format!("{hybrid}50 31 0:40 / /sys/fs/cgroup rw shared:9 - cgroup2 cgroup2 rw\n");
    assert!(is_unified_root(&covering));

    // This host, whatever it runs, parses without panicking.
    if let Ok(info) = fs::read_to_string("/proc/self/mountinfo") {
        let _ = is_unified_root(&info);
    }
}
