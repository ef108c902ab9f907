//! `berth logs`, `exec` and `image ls` through a controller that is not the leader: three
//! real `berth-controller` processes and one real `berth-agent node` on hosts of the harness,
//! and the `berth` CLI with a context that names only a follower. The follower forwards the
//! streams to the leader (`controller/src/api/control/node_io`, `forwarded_stream`), which
//! relays them over the node's session: the log lines, the exec's output and exit code, the
//! node's images come back through two hops.
//!
//! Needs root and busybox-static, and the workspace's binaries built
//! (`cargo build --workspace --bins`); skipped loudly otherwise.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::TestAgent;
use berth_tests::cluster::Cluster;
use berth_tests::control_plane::ControlPlane;

const WAIT: Duration = Duration::from_secs(20);
/// Hosts 0–2 run the controllers (and the `berth` commands, on host 0); host 3 the agent.
const AGENT_HOST: usize = 3;

/// The harness. Dropping it kills the daemons first, then the agent's containers and
/// cgroups (the `TestAgent`), then the hosts.
struct Env {
    _agent: TestAgent,
    cluster: Cluster,
    cp: ControlPlane,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        for h in &self.cluster.hosts {
            h.kill("agent");
        }
        for h in &self.cluster.hosts {
            h.kill("controller");
        }
    }
}

impl Env {
    /// `berth args` in host 0's network namespace, with the test's configuration.
    fn berth(&self, args: &[&str]) -> Output {
        let out = self
            .cluster
            .host(0)
            .ns
            .command(berth_tests::target_dir().join("berth"))
            .args(args)
            .env("BERTH_CONFIG", &self.config)
            .env_remove("BERTH_CONTEXT")
            .env_remove("BERTH_ADDR")
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("berth runs");
        eprintln!(
            "$ berth {}\n{}{}(exit {:?})",
            args.join(" "),
            text(&out.stdout),
            text(&out.stderr),
            out.status.code()
        );
        out
    }

    /// The leader's member id, as the controllers say (from host 0).
    fn leader(&self) -> u64 {
        self.cluster.host(0).run(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(self.cp.leader(WAIT))
                .expect("a leader")
        })
    }

    fn wait_for(&self, what: &str, mut check: impl FnMut() -> bool) {
        let started = Instant::now();
        while !check() {
            assert!(started.elapsed() < WAIT, "never: {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("{what}: {:.2} s", started.elapsed().as_secs_f64());
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn logs_exec_and_images_through_a_follower() {
    let test = "logs_exec_and_images_through_a_follower";
    if !berth_tests::require_root_and_busybox(test) {
        return;
    }
    for bin in ["berth", "berth-controller", "berth-agent", "berth-monitor"] {
        if !berth_tests::target_dir().join(bin).exists() {
            eprintln!("\n*** SKIPPED: {test}: `{bin}` is not built (cargo build --bins) ***\n");
            return;
        }
    }
    let started = Instant::now();
    let cluster = Cluster::new(AGENT_HOST + 1);
    let cp = ControlPlane::start(&cluster, 3, &[], &["--agent-heartbeat-ms", "250"])
        .expect("three controllers");
    let agent = cp
        .start_agent(&cluster, AGENT_HOST, &["--stop-timeout-s", "1"])
        .expect("an agent");
    let dir = tempfile::Builder::new()
        .prefix("berth-follower-")
        .tempdir()
        .expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf8").to_owned()
    };
    let (ca, cert, key) = (
        write("ca.pem", &cp.ca),
        write("admin.pem", &cp.admin.cert_pem),
        write("admin.key", &cp.admin.key_pem),
    );
    let talker = write(
        "talker.yaml",
        "services:\n  talker:\n    image: busybox:1\n    command: [\"sh\", \"-c\", \"echo hello via the leader; exec sleep 1000\"]\n",
    );
    let env = Env {
        _agent: agent,
        config: dir.path().join("config"),
        dir,
        cp,
        cluster,
    };

    // The context names one follower only: every call goes through it.
    let leader = env.leader();
    let follower = (1..=3u64).find(|id| *id != leader).expect("a follower");
    let endpoint = env.cp.addrs[usize::try_from(follower - 1).expect("an index")].clone();
    eprintln!("leader: member {leader}; the CLI talks to member {follower} at {endpoint}");
    assert_ok(
        &env.berth(&[
            "context",
            "add",
            "f",
            "--endpoint",
            &endpoint,
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
        ]),
        "context add",
    );
    assert_ok(
        &env.berth(&["apply", "-f", &talker, "--timeout", "20s"]),
        "apply talker",
    );

    // logs: the stored lines, relayed by the leader, forwarded by the follower.
    env.wait_for("talker's line is in its log", || {
        let out = env.berth(&["logs", "talker"]);
        out.status.success() && text(&out.stdout).contains("hello via the leader")
    });
    let out = env.berth(&["logs", "--no-prefix", "talker"]);
    assert_ok(&out, "logs");
    assert_eq!(text(&out.stdout), "hello via the leader\n");

    // exec: output and the exit code come back through both hops.
    let out = env.berth(&["exec", "talker", "sh", "-c", "echo x; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "x\n");

    // image ls: the node's store.
    let out = env.berth(&["image", "ls"]);
    assert_ok(&out, "image ls");
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l.starts_with("busybox:1 ") && l.ends_with(&format!("(h{AGENT_HOST})"))),
        "{}",
        text(&out.stdout)
    );

    // The leader never moved, so every call above took the forwarding path.
    assert_eq!(env.leader(), leader, "the leader changed during the test");
    assert_ok(&env.berth(&["rm", "talker"]), "rm talker");
    eprintln!("{test} took {:?}", started.elapsed());
}
