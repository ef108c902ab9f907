//! End-to-end: containers really start from a busybox image, as root, and leave nothing behind.

mod common;

use std::time::Duration;

use common::{agent_with_busybox, show};

#[test]
fn exit_codes_pass_through_and_entrypoint_is_pid_1() {
    let Some(a) = agent_with_busybox("exit_codes_pass_through_and_entrypoint_is_pid_1") else {
        return;
    };
    let o = a.run(["run", "--rm", "bb", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let o = a.run(["run", "--rm", "bb", "sh", "-c", "echo pid=$$; echo err >&2"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "pid=1\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // --rm removed both containers and their cgroups.
    assert_eq!(a.ok(["ps", "-a", "-q"]), "");
    assert!(
        a.container_cgroups().is_empty(),
        "{:?}",
        a.container_cgroups()
    );
}

#[test]
fn hostname_env_user_and_workdir_apply() {
    let Some(a) = agent_with_busybox("hostname_env_user_and_workdir_apply") else {
        return;
    };
    let out = a.ok([
        "run",
        "--rm",
        "--hostname",
        "h1",
        "-e",
        "FOO=bar baz",
        "-u",
        "app",
        "-w",
        "/work/dir",
        "bb",
        "sh",
        "-c",
        "hostname; echo \"$FOO\"; id -u; id -g; id -G; pwd; echo $HOME",
    ]);
    assert_eq!(
        out,
        "h1\nbar baz\n1000\n1000\n1000 50\n/work/dir\n/home/app\n"
    );
    let out = a.ok([
        "run",
        "--rm",
        "-u",
        "4242:4343",
        "bb",
        "sh",
        "-c",
        "id -u; id -g",
    ]);
    assert_eq!(out, "4242\n4343\n");
}

#[test]
fn image_config_is_honoured() {
    let Some(a) = agent_with_busybox("image_config_is_honoured") else {
        return;
    };
    let root = a.tmp.path().join("cfg-rootfs");
    berth_tests::busybox_rootfs(&root).unwrap();
    a.ok([
        "image",
        "import-rootfs",
        root.to_str().unwrap(),
        "cfg:1",
        "--entrypoint",
        r#"["/bin/sh","-c"]"#,
        "--cmd",
        r#"["echo from-cmd $GREETING"]"#,
        "-e",
        "GREETING=hi",
    ]);
    assert_eq!(a.ok(["run", "--rm", "cfg:1"]), "from-cmd hi\n");
    // A command replaces Cmd but keeps the entrypoint.
    assert_eq!(a.ok(["run", "--rm", "cfg:1", "echo other"]), "other\n");
    // --entrypoint drops Cmd.
    assert_eq!(
        a.ok(["run", "--rm", "--entrypoint", "echo", "cfg:1", "x", "y"]),
        "x y\n"
    );
}

#[test]
fn capabilities_match_dockers_default_set() {
    let Some(a) = agent_with_busybox("capabilities_match_dockers_default_set") else {
        return;
    };
    // Bits of Docker's 14 default capabilities.
    let default: u64 = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31]
        .iter()
        .map(|b| 1u64 << b)
        .sum();
    let caps = |extra: &[&str]| -> (u64, u64, u64) {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["bb", "grep", "^Cap", "/proc/self/status"]);
        let out = a.ok(args);
        let get = |k: &str| {
            let line = out
                .lines()
                .find(|l| l.starts_with(k))
                .unwrap_or_else(|| panic!("{k} in {out}"));
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        (get("CapEff:"), get("CapPrm:"), get("CapBnd:"))
    };
    assert_eq!(caps(&[]), (default, default, default));
    let with = default & !(1 << 13) | (1 << 12); // drop NET_RAW, add NET_ADMIN
    assert_eq!(
        caps(&["--cap-drop", "NET_RAW", "--cap-add", "net_admin"]),
        (with, with, with)
    );
    // A non-root user has no effective or permitted capabilities; the bound stays.
    assert_eq!(caps(&["-u", "1000"]), (0, 0, default));
    // no-new-privileges is set when asked.
    let out = a.ok([
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        "bb",
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert!(out.contains('1'), "{out}");
}

#[test]
fn masked_and_readonly_paths() {
    let Some(a) = agent_with_busybox("masked_and_readonly_paths") else {
        return;
    };
    let masked = berth_runtime::rootfs::MASKED_PATHS;
    let script = format!(
        "for p in {}; do if [ -d $p ]; then echo \"$p $(ls $p | wc -l)\"; elif [ -e $p ]; then echo \"$p $(cat $p 2>/dev/null | wc -c)\"; else echo \"$p absent\"; fi; done; \
         (echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null && echo writable || echo ro-sys; \
         touch /sys/x 2>/dev/null && echo writable || echo ro-sysfs; \
         ls /dev | tr '\\n' ' '; echo; mount | grep -c ' /dev/shm '",
        masked.join(" ")
    );
    let out = a.ok(["run", "--rm", "bb", "sh", "-c", &script]);
    let lines: Vec<&str> = out.lines().collect();
    for (i, p) in masked.iter().enumerate() {
        let on_host = std::path::Path::new(p).exists();
        let expect = if on_host {
            format!("{p} 0")
        } else {
            format!("{p} absent")
        };
        // A path absent on the host may still be absent or masked inside.
        assert!(
            lines[i] == expect || (!on_host && lines[i] == format!("{p} 0")),
            "{} must read empty: {out}",
            p
        );
    }
    let n = masked.len();
    assert_eq!(lines[n], "ro-sys", "{out}");
    assert_eq!(lines[n + 1], "ro-sysfs", "{out}");
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue",
    ] {
        assert!(
            lines[n + 2].split(' ').any(|d| d == dev),
            "/dev/{dev} missing: {}",
            lines[n + 2]
        );
    }
    assert_eq!(lines[n + 3], "1", "{out}");
    // Hosts paths that exist and are readable really are hidden (not vacuously absent).
    assert!(
        std::path::Path::new("/proc/keys").exists()
            || std::path::Path::new("/sys/firmware").exists()
    );
}

#[test]
fn read_only_rootfs_bind_mounts_and_volumes() {
    let Some(a) = agent_with_busybox("read_only_rootfs_bind_mounts_and_volumes") else {
        return;
    };
    let o = a.run(["run", "--rm", "--read-only", "bb", "touch", "/x"]);
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    let host = a.tmp.path().join("share");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host").unwrap();
    let rw = format!("{}:/data", host.display());
    assert_eq!(
        a.ok([
            "run",
            "--rm",
            "-v",
            &rw,
            "bb",
            "sh",
            "-c",
            "cat /data/in.txt; echo out > /data/out.txt"
        ]),
        "from host"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "out\n"
    );
    let ro = format!("{}:/data:ro", host.display());
    let o = a.run(["run", "--rm", "-v", &ro, "bb", "touch", "/data/nope"]);
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!host.join("nope").exists());
    // A named volume outlives the container that wrote it.
    a.ok([
        "run",
        "--rm",
        "-v",
        "cache:/c",
        "bb",
        "sh",
        "-c",
        "echo kept > /c/f",
    ]);
    assert_eq!(
        a.ok(["run", "--rm", "-v", "cache:/c:ro", "bb", "cat", "/c/f"]),
        "kept\n"
    );
}

#[test]
fn cpu_quota_and_limits_are_in_the_cgroup_files() {
    let Some(a) = agent_with_busybox("cpu_quota_and_limits_are_in_the_cgroup_files") else {
        return;
    };
    let id = a.ok([
        "run",
        "-d",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "-m",
        "64m",
        "--pids-limit",
        "30",
        "bb",
        "sleep",
        "30",
    ]);
    let id = id.trim();
    let cg = format!("{}/{}", a.cgroup_parent, id);
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .trim()
            .to_string()
    };
    if std::path::Path::new("/sys/fs/cgroup/cpu").is_dir() {
        assert_eq!(
            read(&format!("/sys/fs/cgroup/cpu/{cg}/cpu.cfs_quota_us")),
            "50000"
        );
        assert_eq!(
            read(&format!("/sys/fs/cgroup/cpu/{cg}/cpu.cfs_period_us")),
            "100000"
        );
        assert_eq!(read(&format!("/sys/fs/cgroup/cpu/{cg}/cpu.shares")), "512");
        assert_eq!(
            read(&format!("/sys/fs/cgroup/memory/{cg}/memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(&format!("/sys/fs/cgroup/pids/{cg}/pids.max")), "30");
    } else {
        assert_eq!(
            read(&format!("/sys/fs/cgroup/{cg}/cpu.max")),
            "50000 100000"
        );
        assert_eq!(
            read(&format!("/sys/fs/cgroup/{cg}/memory.max")),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(&format!("/sys/fs/cgroup/{cg}/pids.max")), "30");
    }
    a.ok(["rm", "-f", id]);
    assert!(
        a.container_cgroups().is_empty(),
        "{:?}",
        a.container_cgroups()
    );
}

#[test]
fn memory_hog_is_oom_killed_and_reported() {
    let Some(a) = agent_with_busybox("memory_hog_is_oom_killed_and_reported") else {
        return;
    };
    // tail buffers its whole input when it has no newline: memory grows until the limit.
    let o = a.run([
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "bb",
        "sh",
        "-c",
        "head -c 200m /dev/zero | tail",
    ]);
    let v = a.inspect("hog");
    assert_eq!(v["State"]["OOMKilled"], true, "{}\n{v:#}", show(&o));
    assert_eq!(v["State"]["ExitReason"]["kind"], "oom");
    let ps = a.ok(["ps", "-a"]);
    assert!(ps.contains("OOM killed"), "{ps}");
    a.ok(["rm", "hog"]);
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let Some(a) = agent_with_busybox("pids_limit_stops_a_fork_bomb") else {
        return;
    };
    // The bomb runs in a subshell; when a fork is refused only the subshell dies, and the
    // first process becomes a sleep, so the container stays up to be measured.
    let id = a.ok([
        "run",
        "-d",
        "--pids-limit",
        "10",
        "bb",
        "sh",
        "-c",
        "(for i in $(seq 1 40); do sleep 30 & done); exec sleep 30",
    ]);
    let id = id.trim();
    a.wait_for("a refused fork", Duration::from_secs(10), || {
        String::from_utf8_lossy(&a.run(["logs", id]).stderr).contains("can't fork")
    });
    let cg = format!("{}/{}", a.cgroup_parent, id);
    let current = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .iter()
        .find_map(|root| std::fs::read_to_string(format!("{root}/{cg}/pids.current")).ok())
        .expect("pids.current");
    let current: u32 = current.trim().parse().unwrap();
    assert!(
        current <= 10,
        "the pids limit of 10 let {current} tasks run"
    );
    assert!(
        current >= 5,
        "expected the shell to start several processes, saw {current}"
    );
    a.ok(["rm", "-f", id]);
    assert!(a.container_cgroups().is_empty());
}

#[test]
fn logs_stop_kill_restart_and_exec() {
    let Some(a) = agent_with_busybox("logs_stop_kill_restart_and_exec") else {
        return;
    };
    let id = a.ok([
        "run",
        "-d",
        "--name",
        "web",
        "bb",
        "sh",
        "-c",
        "echo hello; echo oops >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    let id = id.trim().to_string();
    a.wait_for("logs", Duration::from_secs(5), || {
        a.ok(["logs", "web"]).contains("hello")
    });
    let o = a.run(["logs", "-t", "web"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("20"),
        "timestamps: {}",
        show(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("oops"),
        "{}",
        show(&o)
    );
    assert!(a.ok(["ps"]).contains("web"));

    // exec enters the namespaces and the cgroup and returns the exit code.
    let script = format!(
        "hostname; grep -q '{}/{}' /proc/self/cgroup && echo in-cgroup; exit 5",
        a.cgroup_parent, id
    );
    let o = a.run(["exec", "web", "sh", "-c", &script]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&&id[..12]), "hostname in exec: {out}");
    assert_eq!(
        lines.get(1),
        Some(&"in-cgroup"),
        "exec joins the container's cgroup: {out}"
    );

    // stop uses the stop signal: the trap runs, the exit code is 0.
    a.ok(["stop", "-t", "5", "web"]);
    let v = a.inspect("web");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 0);
    assert!(a.ok(["logs", "web"]).contains("bye"));
    assert!(
        a.container_cgroups().is_empty(),
        "{:?}",
        a.container_cgroups()
    );

    // start again, then kill: SIGKILL ends it with 137.
    a.ok(["start", "web"]);
    assert_eq!(a.inspect("web")["State"]["Status"], "running");
    a.ok(["kill", "web"]);
    let v = a.inspect("web");
    assert_eq!(v["State"]["ExitCode"], 137, "{v:#}");
    // rm removes its directory, name and cgroup.
    a.ok(["rm", "web"]);
    assert!(!a.state_dir.join("containers").join(&id).exists());
    assert!(a.run(["inspect", "web"]).status.code() != Some(0));
    assert!(a.container_cgroups().is_empty());
}

#[test]
fn restart_policy_restarts_with_back_off_then_gives_up() {
    let Some(a) = agent_with_busybox("restart_policy_restarts_with_back_off_then_gives_up") else {
        return;
    };
    a.ok([
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:3",
        "bb",
        "sh",
        "-c",
        "cut -d' ' -f1 /proc/uptime; exit 1",
    ]);
    a.wait_for("three restarts", Duration::from_secs(15), || {
        let v = a.inspect("flaky");
        v["State"]["Status"] == "exited" && v["State"]["RestartCount"] == 3
    });
    let ups: Vec<f64> = a
        .ok(["logs", "flaky"])
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(ups.len(), 4, "one start and three restarts: {ups:?}");
    let gaps: Vec<f64> = ups.windows(2).map(|w| w[1] - w[0]).collect();
    // Back-off of 100 ms, 200 ms, 400 ms (uptime has 10 ms resolution).
    assert!(
        gaps[0] >= 0.09 && gaps[1] >= 0.19 && gaps[2] >= 0.39,
        "gaps {gaps:?}"
    );
    assert!(gaps[2] < 2.0, "the back-off must not overshoot: {gaps:?}");
    assert!(
        gaps[1] > gaps[0] && gaps[2] > gaps[1],
        "back-off must grow: {gaps:?}"
    );
    assert_eq!(a.inspect("flaky")["State"]["ExitCode"], 1);

    // always: restarts until stopped; stop ends it for good.
    a.ok([
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "bb",
        "sh",
        "-c",
        "exit 0",
    ]);
    a.wait_for("a restart", Duration::from_secs(10), || {
        a.inspect("loop")["State"]["RestartCount"].as_u64() >= Some(2)
    });
    a.ok(["stop", "loop"]);
    let n = a.inspect("loop")["State"]["RestartCount"].clone();
    std::thread::sleep(Duration::from_millis(1200));
    let v = a.inspect("loop");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["RestartCount"], n, "no restart after stop");
    a.ok(["rm", "flaky", "loop"]);
    assert!(a.container_cgroups().is_empty());
}
