//! Nodes' sessions against real `berth-controller` processes on 127.0.0.1: a node joins
//! with the agent token (`berth-agent join`), hollow nodes join and register, the leader
//! sees them READY with their labels and keeps them READY while they heartbeat, marks them
//! DOWN when their sessions stop, and when the leader is killed with SIGKILL the sessions
//! move to the new leader without restarting anything.
//!
//! The controller binary is built by this test (`cargo build --workspace --bins`, as
//! `scripts/test.sh` does before the suite, so that the two share their artifacts) into the
//! same target directory, since Cargo builds only this crate's binaries for its tests.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use berth_agent::node::hollow::{FleetOptions, HollowExecutor, HollowFleet};
use berth_agent::node::{NodeOptions, Probe, identity, run_node};
use berth_controller::pki::{IssuedCert, client_config};
use berth_controller::transport::MtlsConnector;
use berth_proto::v1::{self, NodeStatus};

/// `target/<profile>/berth-controller`, built once.
fn controller_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let profile_dir = berth_tests::target_dir();
            let target_root = profile_dir.parent().expect("target dir").to_path_buf();
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args([
                "build",
                "-p",
                "berth-controller",
                "--bin",
                "berth-controller",
            ])
            .env("CARGO_TARGET_DIR", &target_root)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
            // The variables Cargo set for this test would make the build scripts run
            // again (and everything above them rebuild): the build sees a plain shell's.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy().into_owned();
                if (key.starts_with("CARGO_") && key != "CARGO_HOME")
                    || key == "OUT_DIR"
                    || key == "LD_LIBRARY_PATH"
                {
                    cmd.env_remove(&key);
                }
            }
            cmd.env("CARGO_TARGET_DIR", &target_root);
            if profile_dir.ends_with("release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "cargo build --workspace --bins failed");
            profile_dir.join("berth-controller")
        })
        .clone()
}

/// `n` free TCP ports on 127.0.0.1 (bound together, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run a command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value after `label` in `init`'s output.
fn printed(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {label:?} in {out}"))
}

/// Controllers on 127.0.0.1, killed when dropped.
struct Controllers {
    tmp: tempfile::TempDir,
    dirs: Vec<PathBuf>,
    addrs: Vec<String>,
    procs: Vec<Option<Child>>,
    args: Vec<Vec<String>>,
    join_addr: String,
    token: String,
}

impl Controllers {
    /// `n` members (1 or 3), agents heartbeating every 200 ms, DOWN after 3 missed.
    fn start(n: usize) -> Self {
        let bin = controller_bin();
        let tmp = tempfile::Builder::new()
            .prefix("berth-node-session-")
            .tempdir()
            .unwrap();
        let ports = free_ports(2 * n);
        let addrs: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", ports[i])).collect();
        let joins: Vec<String> = (0..n)
            .map(|i| format!("127.0.0.1:{}", ports[n + i]))
            .collect();
        let dirs: Vec<PathBuf> = (0..n).map(|i| tmp.path().join(format!("c{i}"))).collect();
        let out = ok(Command::new(&bin)
            .args(["init", "--data-dir"])
            .arg(&dirs[0])
            .args([
                "--id",
                "1",
                "--advertise",
                &addrs[0],
                "--join-addr",
                &joins[0],
            ]));
        let token = printed(&out, "agent join token:");
        for i in 1..n {
            ok(Command::new(&bin)
                .args(["init-member", "--from"])
                .arg(&dirs[0])
                .arg("--data-dir")
                .arg(&dirs[i])
                .args(["--id", &(i + 1).to_string(), "--advertise", &addrs[i]]));
        }
        let bootstrap = (0..n)
            .map(|i| format!("{}={}", i + 1, addrs[i]))
            .collect::<Vec<_>>()
            .join(",");
        let args: Vec<Vec<String>> = (0..n)
            .map(|i| {
                let mut a: Vec<String> = [
                    "run",
                    "--data-dir",
                    dirs[i].to_str().unwrap(),
                    "--join-listen",
                    &joins[i],
                    "--agent-heartbeat-ms",
                    "200",
                    "--agent-missed-heartbeats",
                    "3",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if i == 0 {
                    a.extend(["--bootstrap".to_string(), bootstrap.clone()]);
                }
                a
            })
            .collect();
        let mut c = Controllers {
            dirs,
            addrs,
            procs: (0..n).map(|_| None).collect(),
            args,
            join_addr: joins[0].clone(),
            token,
            tmp,
        };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::File::create(self.tmp.path().join(format!("c{i}.log"))).unwrap();
        let child = Command::new(controller_bin())
            .args(&self.args[i])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start berth-controller");
        self.procs[i] = Some(child);
    }

    /// Kills member `i` with SIGKILL.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn admin(&self) -> (String, IssuedCert) {
        let read = |p: &str| std::fs::read_to_string(self.dirs[0].join(p)).unwrap();
        (
            read("ca/ca.pem"),
            IssuedCert {
                cert_pem: read("admin/admin.pem"),
                key_pem: read("admin/admin.key"),
            },
        )
    }

    fn client(&self, i: usize) -> v1::control_client::ControlClient<tonic::transport::Channel> {
        let (ca, cert) = self.admin();
        let channel = MtlsConnector::new(client_config(&ca, &cert).unwrap())
            .channel(&self.addrs[i])
            .unwrap();
        v1::control_client::ControlClient::new(channel)
    }

    /// The leader member `i` knows of (its index), if any.
    async fn leader_seen_by(&self, i: usize) -> Option<usize> {
        let st = tokio::time::timeout(Duration::from_secs(2), self.client(i).status(v1::Empty {}))
            .await
            .ok()?
            .ok()?
            .into_inner();
        st.leader_id.filter(|l| *l > 0).map(|l| l as usize - 1)
    }

    /// The leader every live member agrees on.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut seen = Vec::new();
            for i in 0..self.addrs.len() {
                if self.procs[i].is_some() {
                    seen.push(self.leader_seen_by(i).await);
                }
            }
            if let Some(Some(l)) = seen.first()
                && seen.iter().all(|s| *s == Some(*l))
                && self.procs[*l].is_some()
            {
                return *l;
            }
            assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The nodes, read through member `i`, by hostname.
    async fn nodes(&self, i: usize) -> BTreeMap<String, v1::Node> {
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            self.client(i)
                .list_nodes(v1::ListNodesRequest { stale: false }),
        )
        .await;
        match r {
            Ok(Ok(r)) => r
                .into_inner()
                .nodes
                .into_iter()
                .map(|n| (n.hostname.clone(), n))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// Waits until `f` holds of the nodes read through member `i`.
    async fn until_nodes(
        &self,
        i: usize,
        what: &str,
        f: impl Fn(&BTreeMap<String, v1::Node>) -> bool,
    ) -> BTreeMap<String, v1::Node> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let nodes = self.nodes(i).await;
            if f(&nodes) {
                return nodes;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                nodes
                    .values()
                    .map(|n| (n.hostname.clone(), n.status()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..self.addrs.len() {
            let text = std::fs::read_to_string(self.tmp.path().join(format!("c{i}.log")))
                .unwrap_or_default();
            out.push_str(&format!("----- controller {} -----\n{text}\n", i + 1));
        }
        out
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

fn status_of(nodes: &BTreeMap<String, v1::Node>, hostname: &str) -> NodeStatus {
    nodes
        .get(hostname)
        .map_or(NodeStatus::Unspecified, |n| n.status())
}

fn agent(state_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth-agent"))
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .output()
        .expect("run berth-agent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_join_register_stay_ready_and_go_down_when_their_sessions_stop() {
    let c = Controllers::start(1);
    c.leader().await;

    // `berth-agent join` writes the identity; a second join is refused, naming the file.
    let state = c.tmp.path().join("agent");
    let join_args = [
        "join",
        "--token",
        &c.token,
        "--join-addr",
        &c.join_addr,
        "--hostname",
        "real-1",
    ];
    let out = agent(&state, &join_args);
    assert!(out.status.success(), "{out:?}");
    let dir = state.join("node");
    for f in ["cert.pem", "key.pem", "ca.pem", "node.json"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let out = agent(&state, &join_args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node.json") && err.contains("already"),
        "{err}"
    );
    // A bad token is refused with the reason.
    let out = agent(
        &c.tmp.path().join("other"),
        &[
            "join",
            "--token",
            "BERTH-1-nope",
            "--join-addr",
            &c.join_addr,
        ],
    );
    assert!(!out.status.success());
    eprintln!("bad token: {}", String::from_utf8_lossy(&out.stderr));

    // The joined node runs its session from the identity on disk.
    let id = identity::load(&dir).unwrap();
    assert_eq!(id.controllers, c.addrs);
    let probe = Probe::new();
    let mut opts = NodeOptions::new("real-1");
    opts.labels.insert("disk".into(), "ssd".into());
    opts.probe = probe.clone();
    let (stop_real, stopped) = tokio::sync::watch::channel(false);
    let real_ex = Arc::new(HollowExecutor::new());
    let real = tokio::spawn(run_node(id.clone(), opts, real_ex.clone(), stopped));

    // Three hollow nodes with a zone each.
    let mut fo = FleetOptions::new(3, c.join_addr.clone(), c.token.clone());
    fo.labels = berth_agent::node::hollow::parse_label_sets("zone=a,zone=b,zone=c").unwrap();
    fo.poll_interval = Duration::from_millis(100);
    let fleet = HollowFleet::start(fo).await.expect("the fleet joins");
    assert!(fleet.wait_registered(Duration::from_secs(10)).await);
    let mut state_rx = probe.state();
    tokio::time::timeout(Duration::from_secs(10), state_rx.wait_for(|s| s.registered))
        .await
        .expect("the real node registers")
        .unwrap();

    let all = ["real-1", "hollow-0", "hollow-1", "hollow-2"];
    let nodes = c
        .until_nodes(0, "four READY nodes", |n| {
            all.iter().all(|h| status_of(n, h) == NodeStatus::Ready)
        })
        .await;
    assert_eq!(nodes["real-1"].labels["disk"], "ssd");
    assert_eq!(nodes["real-1"].id, id.node_id);
    assert_eq!(nodes["real-1"].address, "127.0.0.1");
    assert!(nodes["real-1"].cpus >= 1.0 && nodes["real-1"].memory_bytes > 0);
    assert_eq!(nodes["hollow-0"].labels["zone"], "a");
    assert_eq!(nodes["hollow-2"].labels["zone"], "c");
    let subnets: std::collections::BTreeSet<&str> =
        nodes.values().map(|n| n.subnet.as_str()).collect();
    assert_eq!(subnets.len(), 4, "one subnet each: {subnets:?}");
    assert_eq!(
        probe.current().subnet.map(|s| s.to_string()).as_deref(),
        Some(nodes["real-1"].subnet.as_str())
    );
    for node in &fleet.nodes {
        assert_eq!(
            node.executor.subnet().map(|s| s.to_string()).as_deref(),
            Some(nodes[&node.identity.hostname].subnet.as_str()),
            "the executor was readied for the node's subnet"
        );
    }
    // The first full set (empty: no tasks yet) arrived.
    assert!(probe.current().updates_received >= 1);

    // Heartbeats keep them READY well past the deadline (600 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let nodes = c.nodes(0).await;
    assert!(
        all.iter()
            .all(|h| status_of(&nodes, h) == NodeStatus::Ready),
        "{nodes:?}"
    );
    assert_eq!(probe.current().sessions_started, 1, "no re-registration");
    let status = fleet.status();
    assert_eq!(status.registered, 3);
    assert_eq!(status.joined, 3);

    // The fleet stopped: its nodes go DOWN; the real node stays READY.
    fleet.stop().await;
    c.until_nodes(0, "the hollow nodes DOWN", |n| {
        ["hollow-0", "hollow-1", "hollow-2"]
            .iter()
            .all(|h| status_of(n, h) == NodeStatus::Down)
            && status_of(n, "real-1") == NodeStatus::Ready
    })
    .await;

    // The real node stops; its "containers" are left running.
    stop_real.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), real)
        .await
        .expect("the node stops promptly")
        .unwrap()
        .unwrap();
    assert_eq!(real_ex.stops() + real_ex.removes(), 0);
    c.until_nodes(0, "the real node DOWN", |n| {
        status_of(n, "real-1") == NodeStatus::Down
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_follow_the_leader_when_it_is_killed() {
    let mut c = Controllers::start(3);
    let leader = c.leader().await;
    let mut fo = FleetOptions::new(4, c.join_addr.clone(), c.token.clone());
    fo.poll_interval = Duration::from_millis(100);
    let fleet = HollowFleet::start(fo).await.expect("the fleet joins");
    assert!(fleet.wait_registered(Duration::from_secs(10)).await);
    for node in &fleet.nodes {
        let s = node.state.borrow().clone();
        assert_eq!(
            s.leader_addr.as_deref(),
            Some(c.addrs[leader].as_str()),
            "{} registered with the leader",
            node.identity.hostname
        );
        assert_eq!(s.sessions_started, 1);
    }
    c.until_nodes(leader, "four READY nodes", |n| {
        n.len() == 4 && n.values().all(|n| n.status() == NodeStatus::Ready)
    })
    .await;

    // The leader dies: every session moves to the new leader.
    let killed_at = Instant::now();
    c.kill(leader);
    let new = c.leader().await;
    assert_ne!(new, leader);
    for node in &fleet.nodes {
        let mut rx = node.state.clone();
        let moved = tokio::time::timeout(
            Duration::from_secs(15),
            rx.wait_for(|s| {
                s.registered
                    && s.sessions_started >= 2
                    && s.leader_addr.as_deref() == Some(c.addrs[new].as_str())
            }),
        )
        .await;
        assert!(
            matches!(moved, Ok(Ok(_))),
            "{} did not move to the new leader: {:?}",
            node.identity.hostname,
            node.state.borrow()
        );
    }
    eprintln!(
        "all sessions moved to the new leader {:?} after the kill",
        killed_at.elapsed()
    );
    let nodes = c
        .until_nodes(new, "four READY nodes on the new leader", |n| {
            n.len() == 4 && n.values().all(|n| n.status() == NodeStatus::Ready)
        })
        .await;
    // Kept READY past the new leader's deadline.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = c.nodes(new).await;
    assert!(
        again.values().all(|n| n.status() == NodeStatus::Ready),
        "{again:?}"
    );
    // Subnets are kept across the change; nothing was started, stopped or removed.
    for node in &fleet.nodes {
        let h = &node.identity.hostname;
        assert_eq!(
            node.state.borrow().subnet.map(|s| s.to_string()).as_deref(),
            Some(nodes[h].subnet.as_str())
        );
        assert_eq!(
            node.executor.starts() + node.executor.stops() + node.executor.removes(),
            0
        );
    }
    fleet.stop().await;
}
