//! Mount discovery, without touching the host's cgroups.

use super::*;

/// This host's `/proc/self/mountinfo` (cgroup v1, one hierarchy per controller, plus the
/// hybrid `unified` cgroup2 and the named systemd hierarchy).
const HOST_LAYOUT: &str = "\
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// A systemd host of the v1 era (Debian 10, CentOS 7): `cpu,cpuacct` and `net_cls,net_prio`
/// co-mounted, optional `shared:N` fields, controllers berth does not use.
const SYSTEMD_LAYOUT: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,net_cls,net_prio
32 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
33 25 0:30 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
34 25 0:31 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,hugetlb
35 25 0:32 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,devices
36 25 0:33 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,cpuset
37 25 0:34 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,blkio
38 25 0:35 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,freezer
";

fn p(s: &str) -> Option<&Path> {
    Some(Path::new(s))
}

#[test]
fn parses_this_hosts_layout() {
    let v1 = CgroupV1::from_mountinfo(HOST_LAYOUT).unwrap();
    for controller in Controller::ALL {
        let expected = format!("/sys/fs/cgroup/{}", controller.name());
        assert_eq!(
            v1.mount(controller),
            Some(Path::new(&expected)),
            "{controller:?}"
        );
    }
    assert_eq!(v1.version(), CgroupVersion::V1);
    let dirs = v1.dirs("berth/abc");
    assert_eq!(dirs.len(), 8);
    assert!(dirs.contains(&PathBuf::from("/sys/fs/cgroup/memory/berth/abc")));
    assert!(!dirs.iter().any(
        |d| d.starts_with("/sys/fs/cgroup/systemd") || d.starts_with("/sys/fs/cgroup/unified")
    ));
}

#[test]
fn parses_co_mounted_cpu_cpuacct_once() {
    let v1 = CgroupV1::from_mountinfo(SYSTEMD_LAYOUT).unwrap();
    assert_eq!(v1.mount(Controller::Cpu), p("/sys/fs/cgroup/cpu,cpuacct"));
    assert_eq!(
        v1.mount(Controller::Cpuacct),
        p("/sys/fs/cgroup/cpu,cpuacct")
    );
    assert_eq!(v1.mount(Controller::Memory), p("/sys/fs/cgroup/memory"));
    assert_eq!(v1.mount(Controller::Freezer), p("/sys/fs/cgroup/freezer"));
    // Seven distinct hierarchies: the shared cpu,cpuacct one appears once.
    let dirs = v1.dirs("x");
    assert_eq!(dirs.len(), 7);
    assert_eq!(
        dirs.iter()
            .filter(|d| d.starts_with("/sys/fs/cgroup/cpu,cpuacct"))
            .count(),
        1
    );
    assert!(
        !dirs
            .iter()
            .any(|d| d.starts_with("/sys/fs/cgroup/net_cls,net_prio"))
    );
}

#[test]
fn optional_controllers_may_be_absent_and_escapes_are_decoded() {
    let info = "\
1 0 0:1 / /cg/my\\040memory rw - cgroup cgroup rw,memory
2 0 0:2 / /cg/cpu rw - cgroup cgroup rw,cpu
3 0 0:3 / /cg/pids rw - cgroup cgroup rw,pids
4 0 0:4 / /cg/pids-again rw - cgroup cgroup rw,pids
";
    let v1 = CgroupV1::from_mountinfo(info).unwrap();
    assert_eq!(v1.mount(Controller::Memory), p("/cg/my memory"));
    assert_eq!(
        v1.mount(Controller::Pids),
        p("/cg/pids"),
        "the first mount wins"
    );
    assert_eq!(v1.mount(Controller::Cpuset), None);
    assert_eq!(v1.mount(Controller::Devices), None);
    assert_eq!(v1.dirs("a").len(), 3);
}

#[test]
fn missing_required_controllers_are_named() {
    let without_pids: String = HOST_LAYOUT
        .lines()
        .filter(|l| !l.ends_with("rw,pids"))
        .map(|l| format!("{l}\n"))
        .collect();
    match CgroupV1::from_mountinfo(&without_pids) {
        Err(CgroupError::MissingController { controller }) => assert_eq!(controller, "pids"),
        other => panic!("expected MissingController, got {other:?}"),
    }
    // A pure v2 host has no v1 controllers at all.
    let v2_host = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
    assert!(matches!(
        CgroupV1::from_mountinfo(v2_host),
        Err(CgroupError::MissingController { controller }) if controller == "memory"
    ));
    // A named hierarchy that happens to be called "cpu" is not the cpu controller.
    let named = "1 0 0:1 / /cg/m rw - cgroup cgroup rw,memory\n2 0 0:2 / /cg/p rw - cgroup cgroup rw,pids\n3 0 0:3 / /cg/n rw - cgroup cgroup rw,name=cpu\n";
    assert!(matches!(
        CgroupV1::from_mountinfo(named),
        Err(CgroupError::MissingController { controller }) if controller == "cpu"
    ));
}

#[test]
fn with_mounts_checks_required_controllers() {
    let v1 = CgroupV1::with_mounts([
        (Controller::Memory, PathBuf::from("/m")),
        (Controller::Cpu, PathBuf::from("/c")),
        (Controller::Cpuacct, PathBuf::from("/c")),
        (Controller::Pids, PathBuf::from("/p")),
    ])
    .unwrap();
    assert_eq!(
        v1.dirs("a/b"),
        vec![
            PathBuf::from("/m/a/b"),
            PathBuf::from("/c/a/b"),
            PathBuf::from("/p/a/b")
        ]
    );
    assert!(v1.dirs("/etc").is_empty());
    assert!(matches!(
        CgroupV1::with_mounts([(Controller::Cpu, PathBuf::from("/c")), (Controller::Pids, PathBuf::from("/p"))]),
        Err(CgroupError::MissingController { controller }) if controller == "memory"
    ));
}

#[test]
fn controller_names_round_trip() {
    for controller in Controller::ALL {
        assert_eq!(Controller::from_name(controller.name()), Some(controller));
    }
    assert_eq!(Controller::from_name("name=systemd"), None);
    assert_eq!(Controller::from_name("rw"), None);
}

#[test]
fn rejects_bad_paths_and_limits_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let v1 = CgroupV1::with_mounts([
        (Controller::Memory, root.join("memory")),
        (Controller::Cpu, root.join("cpu")),
        (Controller::Pids, root.join("pids")),
    ])
    .unwrap();
    assert!(matches!(
        v1.create("../escape", &Limits::default()),
        Err(CgroupError::InvalidPath { .. })
    ));
    let too_small = Limits {
        memory_bytes: Some(1024),
        ..Limits::default()
    };
    assert!(matches!(
        v1.create("a", &too_small),
        Err(CgroupError::InvalidLimit { name: "memory", .. })
    ));
    assert_eq!(std::fs::read_dir(root).unwrap().count(), 0);
    // Teardown of what does not exist succeeds.
    v1.kill_all("a").unwrap();
    v1.destroy("a").unwrap();
}
