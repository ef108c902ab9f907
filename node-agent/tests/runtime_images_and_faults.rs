//! End-to-end: layered images with whiteouts, malicious archives, bad input, and the agent
//! killed with SIGKILL while its containers keep running.

mod common;

use std::process::Stdio;
use std::time::Duration;

use berth_tests::images::{Entry, layer_tar, write_docker_save};
use common::{agent, agent_with_busybox, show};

fn busybox_layer(a: &berth_tests::TestAgent) -> Vec<u8> {
    let root = a.tmp.path().join("bb-layer");
    berth_tests::busybox_rootfs(&root).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", &root).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn whiteouts_hide_files_across_layers() {
    if !berth_tests::require_root_and_busybox("whiteouts_hide_files_across_layers") {
        return;
    }
    let a = agent();
    let base = busybox_layer(&a);
    let l1 = layer_tar(&[
        Entry::Dir("a/".into()),
        Entry::File("a/gone".into(), b"x".to_vec(), 0o644),
        Entry::File("a/kept".into(), b"k".to_vec(), 0o644),
        Entry::Dir("b/".into()),
        Entry::File("b/old".into(), b"o".to_vec(), 0o644),
    ]);
    let l2 = layer_tar(&[
        Entry::File("a/.wh.gone".into(), vec![], 0o644),
        Entry::Dir("b/".into()),
        Entry::File("b/.wh..wh..opq".into(), vec![], 0o644),
        Entry::File("b/new".into(), b"n".to_vec(), 0o644),
    ]);
    let archive = a.tmp.path().join("layered.tar");
    write_docker_save(
        &archive,
        "layered:1",
        &[base, l1, l2],
        serde_json::json!({"Cmd": ["sh"]}),
    );
    a.ok(["image", "import", archive.to_str().unwrap()]);
    let out = a.ok([
        "run",
        "--rm",
        "layered:1",
        "sh",
        "-c",
        "ls /a; echo --; ls /b",
    ]);
    assert_eq!(out, "kept\n--\nnew\n");
}

#[test]
fn malicious_layer_is_rejected_and_writes_nothing_outside() {
    if !berth_tests::require_root("malicious_layer_is_rejected_and_writes_nothing_outside") {
        return;
    }
    let a = agent();
    let outside = a.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        (
            "../../../escape",
            vec![Entry::File(
                "../../../escape".into(),
                b"pwned".to_vec(),
                0o644,
            )],
        ),
        (
            "link/escape",
            vec![
                Entry::Symlink("link".into(), outside.to_str().unwrap().into()),
                Entry::File("link/escape".into(), b"pwned".to_vec(), 0o644),
            ],
        ),
        (
            "hard",
            vec![Entry::Hardlink(
                "hard".into(),
                "../../../../etc/passwd".into(),
            )],
        ),
    ];
    for (entry, entries) in cases {
        let archive = a.tmp.path().join("evil.tar");
        write_docker_save(
            &archive,
            "evil:1",
            &[layer_tar(&entries)],
            serde_json::json!({}),
        );
        let o = a.run(["image", "import", archive.to_str().unwrap()]);
        assert_ne!(o.status.code(), Some(0), "{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(entry), "the error must name {entry:?}: {err}");
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "something was written outside"
        );
        assert!(!a.tmp.path().join("escape").exists());
        assert_eq!(a.ok(["images", "-q"]), "", "no partial image");
        let layers = a.state_dir.join("images/layers");
        assert!(
            !layers.exists() || std::fs::read_dir(&layers).unwrap().next().is_none(),
            "no stray layer"
        );
    }
}

#[test]
fn bad_input_gives_clear_errors_and_leaves_nothing() {
    let Some(a) = agent_with_busybox("bad_input_gives_clear_errors_and_leaves_nothing") else {
        return;
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "nosuch:image"], "nosuch"),
        (vec!["run", "-u", "ghost", "bb", "true"], "ghost"),
        (vec!["run", "bb", "/no/such/binary"], "/no/such/binary"),
        (vec!["run", "bb", "nosuchcmd"], "executable file not found"),
        (vec!["run", "-m", "12q", "bb", "true"], "12q"),
        (vec!["run", "-m", "1k", "bb", "true"], "memory"),
        (vec!["run", "--cpus", "-1", "bb", "true"], "cpus"),
        (
            vec!["run", "--restart", "sometimes", "bb", "true"],
            "sometimes",
        ),
        (
            vec!["run", "--rm", "--restart", "always", "bb", "true"],
            "--rm",
        ),
        (
            vec!["run", "-v", "/does/not/exist:/x", "bb", "true"],
            "/does/not/exist",
        ),
        (vec!["run", "--cap-add", "FLYING", "bb", "true"], "FLYING"),
        (vec!["run", "--name", "bad/name", "bb", "true"], "bad/name"),
    ];
    for (args, needle) in cases {
        let o = a.run(&args);
        assert_ne!(o.status.code(), Some(0), "{args:?} must fail: {}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(needle),
            "{args:?}: the error must name {needle:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(
            a.ok(["ps", "-a", "-q"]),
            "",
            "{args:?} left a container behind"
        );
        assert!(
            a.container_cgroups().is_empty(),
            "{args:?} left a cgroup: {:?}",
            a.container_cgroups()
        );
    }
    assert_eq!(a.run(["run", "bb", "nosuchcmd"]).status.code(), Some(127));
    // A corrupt or truncated archive names the problem and imports nothing.
    let archive = a.tmp.path().join("trunc.tar");
    let layer = layer_tar(&[Entry::File("f".into(), vec![7; 100_000], 0o644)]);
    write_docker_save(&archive, "trunc:1", &[layer], serde_json::json!({}));
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() / 3]).unwrap();
    let before = a.ok(["images", "-q"]);
    let o = a.run(["image", "import", archive.to_str().unwrap()]);
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(a.ok(["images", "-q"]), before);
}

#[test]
fn agent_killed_with_sigkill_readopts_running_container_and_reports_its_exit() {
    let Some(a) = agent_with_busybox(
        "agent_killed_with_sigkill_readopts_running_container_and_reports_its_exit",
    ) else {
        return;
    };
    let events = a.state_dir.join("agent/events.jsonl");
    let serve = || {
        a.cmd(["serve", "--poll-interval-ms", "50"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut daemon = serve();
    let seen = a.state_dir.join("agent/seen.json");
    a.wait_for("the daemon's first record", Duration::from_secs(5), || {
        seen.exists()
    });
    // One container ends while the agent is down, one ends after it came back.
    let short = a.ok([
        "run",
        "-d",
        "--name",
        "short",
        "bb",
        "sh",
        "-c",
        "sleep 1; exit 7",
    ]);
    let long = a.ok([
        "run",
        "-d",
        "--name",
        "long",
        "bb",
        "sh",
        "-c",
        "sleep 3; exit 9",
    ]);
    // Killed once its record holds both (a kill before that save is covered by serve's
    // unit tests).
    a.wait_for("the daemon to record both", Duration::from_secs(5), || {
        let record = std::fs::read_to_string(&seen).unwrap_or_default();
        record.contains(short.trim()) && record.contains(long.trim())
    });
    daemon.kill().unwrap(); // SIGKILL
    daemon.wait().unwrap();
    // Containers outlive the agent.
    let ps = a.ok(["ps"]);
    assert!(ps.contains("short") && ps.contains("long"), "{ps}");
    a.wait_for("short to exit", Duration::from_secs(5), || {
        a.inspect("short")["State"]["Status"] == "exited"
    });
    let mut daemon = serve();
    a.wait_for(
        "long to exit and be reported",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&events)
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains("\"exited\"") && l.contains("\"long\""))
        },
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let all = std::fs::read_to_string(&events).unwrap();
    let find = |name: &str| -> serde_json::Value {
        all.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["name"] == name && e["action"] == "exited")
            .unwrap_or_else(|| panic!("no exit event for {name}: {all}"))
    };
    let short = find("short");
    assert_eq!(short["exit_code"], 7);
    assert_eq!(short["while_down"], true, "{short}");
    let long = find("long");
    assert_eq!(long["exit_code"], 9);
    assert_eq!(long["while_down"], false, "{long}");
    // Logs and status still work on containers the restarted agent re-adopted.
    assert_eq!(a.inspect("long")["State"]["ExitCode"], 9);
    a.ok(["rm", "short", "long"]);
    assert!(a.container_cgroups().is_empty());
}
