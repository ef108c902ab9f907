//! `berth cluster init | join | leave | token` and `berth completion`, for real: the real
//! `berth`, `berth-controller` and `berth-agent` binaries on two throwaway hosts (network
//! namespaces on a private LAN, see [`berth_tests::lan`]), each with a temporary data
//! directory, configuration and cgroup parent.
//!
//! Host 1 creates a cluster (its address found from its default route), host 2 joins it as
//! a node, both nodes are ready; the agent token rotated is refused; host 2 also joins as
//! a controller (a second data directory) and leaves the membership again; the last
//! controller refuses to leave without --force; the node that left is removed with
//! `berth node rm`; host 2 joins as a controller again and host 1 (controller and node)
//! leaves, removing its own node; host 2 leaves last with --force and nothing is left.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_tests::lan::Lan;
use berth_tests::local::{alive, iptables_berth, show};
use berth_tests::netns::NetNs;

fn berth_bin() -> PathBuf {
    berth_tests::target_dir().join("berth")
}

/// One host's part of the cluster: a data directory, a configuration, a cgroup parent.
struct Host {
    ns: Arc<NetNs>,
    ip: Ipv4Addr,
    tmp: tempfile::TempDir,
    name: String,
    cgroup_parent: String,
}

impl Host {
    fn new(ns: Arc<NetNs>, ip: Ipv4Addr, name: &str) -> Host {
        Host {
            ns,
            ip,
            tmp: tempfile::tempdir().expect("tempdir"),
            name: name.to_owned(),
            cgroup_parent: format!("berth-test-cluster-{}-{name}", std::process::id()),
        }
    }

    /// The data directory of `place` (several per host are possible).
    fn data(&self, place: &str) -> PathBuf {
        self.tmp.path().join(place)
    }

    /// `berth ARGS` on this host, with its configuration.
    fn cli(&self, args: &[&str]) -> Output {
        self.ns
            .command(berth_bin())
            .args(args)
            .env("BERTH_CONFIG", self.tmp.path().join("config"))
            .env("NO_COLOR", "1")
            .env_remove("BERTH_JOIN_TOKEN")
            .output()
            .expect("run berth")
    }

    /// `berth cluster ARGS` on the data directory `place`.
    fn cluster(&self, place: &str, args: &[&str]) -> Output {
        let data = self.data(place);
        let mut all = vec!["cluster"];
        all.extend_from_slice(args);
        all.extend(["--data-dir", data.to_str().expect("utf8")]);
        if matches!(args.first(), Some(&"init" | &"join" | &"leave")) {
            all.extend(["--cgroup-parent", &self.cgroup_parent]);
        }
        self.cli(&all)
    }

    /// `berth cluster ARGS`, which must succeed; its standard output.
    fn ok(&self, place: &str, args: &[&str]) -> String {
        let o = self.cluster(place, args);
        assert!(
            o.status.success(),
            "{}: berth cluster {args:?}: {}",
            self.name,
            show(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `berth cluster ARGS`, which must fail; its standard error.
    fn fails(&self, place: &str, args: &[&str]) -> String {
        let o = self.cluster(place, args);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}: {args:?}: {}",
            self.name,
            show(&o)
        );
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    fn pids(&self, place: &str) -> Vec<i32> {
        ["controller.pid", "agent.pid"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.data(place).join(f)).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }

    /// Nothing of berth on this host: no data, bridge, rule, cgroup.
    fn assert_clean(&self, place: &str) {
        assert!(
            !self.data(place).exists(),
            "{} left",
            self.data(place).display()
        );
        let links = self.ns.links();
        assert!(!links.iter().any(|l| l.contains("berth")), "{links:?}");
        assert_eq!(iptables_berth(&self.ns), Vec::<String>::new());
        let cgroups: Vec<PathBuf> = berth_tests::cgroup_dirs(&self.cgroup_parent)
            .into_iter()
            .filter(|d| d.exists())
            .collect();
        assert_eq!(cgroups, Vec::<PathBuf>::new());
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Whatever happened: stop everything and leave nothing behind.
        for place in ["a", "b"] {
            let pids = self.pids(place);
            if self.data(place).exists() {
                let _ = self.cluster(place, &["leave", "--force"]);
            }
            for pid in pids {
                // SAFETY: kill with a pid read from our own pid file and a signal number.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for d in berth_tests::cgroup_dirs(&self.cgroup_parent) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The token of the join command `out` prints for `what` ("a node" or "a controller").
fn token_in(out: &str, what: &str) -> String {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.contains(&format!("To add {what}")));
    lines.next();
    let cmd = lines.next().unwrap_or_default();
    cmd.split_whitespace()
        .skip_while(|w| *w != "--token")
        .nth(1)
        .unwrap_or_else(|| panic!("no join command for {what} in {out}"))
        .to_owned()
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_hosts_form_a_cluster_rotate_a_token_and_leave_cleanly() {
    let test = "two_hosts_form_a_cluster_rotate_a_token_and_leave_cleanly";
    if !berth_tests::require_root(test) {
        return;
    }
    for tool in ["ip", "iptables-save"] {
        if std::process::Command::new(tool).arg("-V").output().is_err()
            && std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_err()
        {
            eprintln!("\n*** SKIPPED: {test}: needs `{tool}` ***\n");
            return;
        }
    }
    let started = Instant::now();
    let lan = Lan::new(2);
    let h1 = Host::new(lan.hosts[0].0.clone(), lan.hosts[0].1, "host-1");
    let h2 = Host::new(lan.hosts[1].0.clone(), lan.hosts[1].1, "host-2");
    let ctl = format!("{}:7443", h1.ip);

    // Host 1: a new cluster, advertised at its default route's address.
    let out = h1.ok("a", &["init", "--hostname", "host-1", "--label", "zone=a"]);
    assert!(
        out.contains(&format!("advertised at {ctl}")) && out.contains("node host-1 ready"),
        "{out}"
    );
    let agent_token = token_in(&out, "a node");
    let controller_token = token_in(&out, "a controller");
    assert!(agent_token.contains("-a-") && controller_token.contains("-c-"));
    assert!(out.contains(&format!("berth cluster join --token {agent_token} {ctl}")));
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
    };
    assert_eq!(mode(&h1.data("a").join("agent-token")) & 0o777, 0o600);
    assert_eq!(mode(&h1.data("a").join("controller-token")) & 0o777, 0o600);
    let out = h1.ok("a", &["init"]);
    assert!(out.contains("already up"), "idempotent: {out}");
    let err = h1.fails("a", &["init", "--advertise", "192.168.100.2:7000"]);
    assert!(
        err.contains("already part of a cluster") && err.contains("cluster leave"),
        "{err}"
    );

    // Bad input, before anything is done.
    let err = h2.fails("a", &["join", "--token", "BERTH-1-nope", &ctl]);
    assert!(err.contains("join token is not valid"), "{err}");
    let err = h2.fails(
        "a",
        &["join", "--token", &agent_token, &format!("{}:9000", h1.ip)],
    );
    assert!(
        err.contains("cannot reach") && err.contains(":9001"),
        "{err}"
    );
    assert!(!h2.data("a").join("agent/node").exists());

    // Host 2 joins as a node; again is a no-op.
    let out = h2.ok(
        "a",
        &[
            "join",
            "--token",
            &agent_token,
            &ctl,
            "--hostname",
            "host-2",
        ],
    );
    assert!(
        out.contains("joined the cluster") && out.contains("registered"),
        "{out}"
    );
    let out = h2.ok("a", &["join", "--token", &agent_token, &ctl]);
    assert!(out.contains("already running"), "{out}");
    wait("both nodes ready", || {
        let ls = String::from_utf8_lossy(&h1.cli(&["node", "ls"]).stdout).to_lowercase();
        ["host-1", "host-2"]
            .iter()
            .all(|h| ls.lines().any(|l| l.contains(h) && l.contains("ready")))
    });

    // The stored token, then a new one: the old one is refused.
    let out = h1.ok("a", &["token", "agent"]);
    assert!(out.contains(&agent_token), "{out}");
    let rotated = h1.ok("a", &["token", "agent", "--rotate", "-q"]);
    let rotated = rotated.trim();
    assert!(
        rotated.starts_with("BERTH-1-") && rotated != agent_token,
        "{rotated}"
    );
    assert_eq!(
        std::fs::read_to_string(h1.data("a").join("agent-token"))
            .unwrap()
            .trim(),
        rotated
    );
    let err = h2.fails(
        "b",
        &[
            "join",
            "--token",
            &agent_token,
            &ctl,
            "--hostname",
            "host-3",
        ],
    );
    assert!(
        err.contains("rotated") || err.contains("not valid"),
        "{err}"
    );
    assert!(!h2.data("b").exists(), "a refused join leaves nothing");

    // Host 2 as a second controller, then leaving the membership again.
    let out = h2.ok(
        "b",
        &[
            "join",
            "--token",
            &controller_token,
            &ctl,
            "--advertise",
            &h2.ip.to_string(),
        ],
    );
    assert!(out.contains("controller member 2 is a voter"), "{out}");
    let status = |h: &Host| {
        let o = h1
            .ns
            .command(berth_tests::target_dir().join("berth-controller"))
            .args(["status", "--data-dir"])
            .arg(h.data("a").join("controller"))
            .args(["--addr", &ctl])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(
        status(&h1).contains(&format!("{}:7443", h2.ip)),
        "{}",
        status(&h1)
    );
    let out = h2.ok("b", &["leave"]);
    assert!(out.contains("member 2 removed"), "{out}");
    assert!(
        !status(&h1).contains(&format!("{}:7443", h2.ip)),
        "{}",
        status(&h1)
    );
    assert!(!h2.data("b").exists());

    // The last controller does not leave without --force.
    let err = h1.fails("a", &["leave"]);
    assert!(err.contains("last one") && err.contains("--force"), "{err}");

    // Host 2 leaves as a node: nothing of it is left.
    let pids2 = h2.pids("a");
    assert_eq!(pids2.len(), 1, "one agent: {pids2:?}");
    let o = h2.cluster("a", &["leave"]);
    assert!(o.status.success(), "{}", show(&o));
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        out.contains("node stopped") && out.contains("left the cluster"),
        "{out}"
    );
    // An agent-only host has no admin certificate: it says how to remove its record.
    assert!(
        err.contains("still lists this node") && err.contains("berth node rm "),
        "{err}"
    );
    assert!(pids2.iter().all(|p| !alive(*p)));
    h2.assert_clean("a");

    // `berth node rm` from the admin host: refused for a ready node without --force; the
    // departed node, once down, is removed and no longer listed.
    let o = h1.cli(&["node", "rm", "host-1"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is ready") && err.contains("--force"), "{err}");
    wait("host-2 down", || {
        let ls = String::from_utf8_lossy(&h1.cli(&["node", "ls"]).stdout).to_lowercase();
        ls.lines()
            .any(|l| l.contains("host-2") && l.contains("down"))
    });
    let o = h1.cli(&["node", "rm", "host-2"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("host-2 ("),
        "{}",
        show(&o)
    );
    let ls = String::from_utf8_lossy(&h1.cli(&["node", "ls"]).stdout).into_owned();
    assert!(ls.contains("host-1") && !ls.contains("host-2"), "{ls}");
    let err = h2.fails("a", &["leave"]);
    assert!(err.contains("not part of a cluster"), "{err}");

    // Host 2 joins as a controller again; host 1 (controller and node) leaves: it leaves the
    // membership and removes its own node with its admin certificate, through host 2.
    let out = h2.ok(
        "b",
        &[
            "join",
            "--token",
            &controller_token,
            &ctl,
            "--advertise",
            &h2.ip.to_string(),
        ],
    );
    assert!(out.contains("is a voter"), "{out}");
    let pids1 = h1.pids("a");
    assert_eq!(pids1.len(), 2, "{pids1:?}");
    let out = h1.ok("a", &["leave"]);
    assert!(
        out.contains("member 1 removed")
            && out.contains("removed from the cluster")
            && out.contains("context `default` removed"),
        "{out}"
    );
    assert!(pids1.iter().all(|p| !alive(*p)));
    h1.assert_clean("a");
    let o = h2.cli(&["node", "ls"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("host-1"),
        "{}",
        show(&o)
    );

    // Host 2, the last controller now, leaves with --force: nothing is left there either.
    let out = h2.ok("b", &["leave", "--force"]);
    assert!(out.contains("the cluster is gone"), "{out}");
    h2.assert_clean("b");
    eprintln!("cluster_cli took {:?}", started.elapsed());
}

#[test]
fn completion_scripts_name_the_commands_and_a_bad_shell_is_refused() {
    for shell in ["bash", "zsh", "fish"] {
        let o = std::process::Command::new(berth_bin())
            .args(["completion", shell])
            .output()
            .expect("run berth");
        assert!(o.status.success(), "{}", show(&o));
        let s = String::from_utf8_lossy(&o.stdout);
        for word in ["cluster", "apply", "completion", "leave", "rotate"] {
            assert!(s.contains(word), "{shell}: no {word}");
        }
    }
    let o = std::process::Command::new(berth_bin())
        .args(["completion", "tcsh"])
        .output()
        .expect("run berth");
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}
