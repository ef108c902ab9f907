//! berth end to end across hosts (issue 5): three real `berth-controller` processes and real
//! `berth-agent node` daemons, each on its own host of the harness (network namespaces on a
//! private LAN), running busybox containers.
//!
//! One test walks the scenario in order, since a cluster takes seconds to set up: a service
//! of 6 replicas spreads 2/2/2 and answers; it scales to 9 (3/3/3) and to 3; a constraint pins
//! a service to the labelled node; a global service runs once on every node and follows a
//! node that joins; an agent host killed with SIGKILL (and cut off the LAN) has its tasks
//! rescheduled on the others, and that agent restarted runs no duplicate; the controller
//! leader killed with SIGKILL during a scale converges; a failing container is restarted under
//! its policy and given up on after its attempts; a task that fits nowhere says why; removing
//! the services removes every container.
//!
//! Each agent has a test-only cgroup parent and state directory (`TestAgent`), runs in a
//! mount namespace of its own host (so its containers' mounts go with it), and everything is
//! killed and removed at the end, also when the test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_controller::pki::{IssuedCert, client_config};
use berth_controller::transport::MtlsConnector;
use berth_proto::v1;
use berth_tests::TestAgent;
use berth_tests::cluster::Cluster;

const PORT: u16 = 7443;
const WAIT: Duration = Duration::from_secs(40);
/// Hosts 0–2 run the controllers; 3–5 the agents; 6 an agent that joins later.
const HOSTS: usize = 7;

type Control = v1::control_client::ControlClient<tonic::transport::Channel>;

fn bin(name: &str) -> PathBuf {
    berth_tests::target_dir().join(name)
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run a berth binary");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The harness and its agents. Dropping it kills the daemons first (so that none starts a
/// container while the agents' containers are killed), then the containers and cgroups,
/// then the hosts.
struct Env {
    agents: BTreeMap<usize, TestAgent>,
    cluster: Cluster,
    ca: String,
    admin: IssuedCert,
    token: String,
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
    fn addr(&self, i: usize) -> String {
        format!("{}:{PORT}", self.cluster.host(i).ip)
    }

    /// Runs `f` with a Control client of a controller that answers, from host 0's network.
    fn control<T: Send>(
        &self,
        f: impl AsyncFnOnce(&mut Control) -> Result<T, tonic::Status> + Send,
    ) -> Result<T, tonic::Status> {
        let addrs: Vec<String> = (0..3).map(|i| self.addr(i)).collect();
        self.cluster.host(0).run(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                let connector =
                    MtlsConnector::new(client_config(&self.ca, &self.admin).expect("tls"))
                        .with_connect_timeout(Duration::from_millis(500));
                // The first controller that answers a status call serves the request (a
                // follower forwards writes to the leader).
                let mut last = tonic::Status::unavailable("no controller answered");
                for a in &addrs {
                    let mut c = Control::new(connector.channel(a).expect("an address"))
                        .max_decoding_message_size(64 << 20);
                    match tokio::time::timeout(Duration::from_secs(1), c.status(v1::Empty {})).await
                    {
                        Ok(Ok(s)) if s.get_ref().leader_id.is_some() => return f(&mut c).await,
                        Ok(Err(e)) => last = e,
                        _ => {}
                    }
                }
                Err(last)
            })
        })
    }

    fn apply(&self, spec: v1::ServiceSpec) {
        let name = spec.name.clone();
        self.retry(&format!("apply {name}"), || {
            let spec = spec.clone();
            self.control(async move |c| {
                c.apply_service(v1::ApplyServiceRequest {
                    spec: Some(spec),
                    expected_version: None,
                })
                .await
                .map(|_| ())
            })
        });
    }

    fn scale(&self, name: &str, replicas: u32) {
        self.retry(&format!("scale {name}"), || {
            self.control(async |c| {
                c.scale_service(v1::ScaleServiceRequest {
                    name: name.to_owned(),
                    replicas,
                    expected_version: None,
                })
                .await
                .map(|_| ())
            })
        });
    }

    fn remove(&self, name: &str) {
        self.retry(&format!("remove {name}"), || {
            self.control(async |c| {
                c.remove_service(v1::RemoveServiceRequest {
                    name: name.to_owned(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
            })
        });
    }

    /// Retries a call while no controller can serve it (an election), up to [`WAIT`].
    fn retry(&self, what: &str, mut f: impl FnMut() -> Result<(), tonic::Status>) {
        let until = Instant::now() + WAIT;
        loop {
            match f() {
                Ok(()) => return,
                Err(e) if Instant::now() < until => {
                    eprintln!("{what}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }

    fn tasks(&self, service: &str) -> Vec<v1::Task> {
        self.control(async |c| {
            c.list_tasks(v1::ListTasksRequest {
                service: service.to_owned(),
                stale: true,
            })
            .await
            .map(|r| r.into_inner().tasks)
        })
        .unwrap_or_default()
    }

    /// Node id → host index, from the hostnames the agents joined with (`h3`, …).
    fn hosts_by_node(&self) -> BTreeMap<String, usize> {
        self.control(async |c| {
            c.list_nodes(v1::ListNodesRequest::default())
                .await
                .map(|r| r.into_inner().nodes)
        })
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| Some((n.id, n.hostname.strip_prefix('h')?.parse().ok()?)))
        .collect()
    }

    /// The service's tasks meant to run and running, by host.
    fn running_by_host(&self, service: &str) -> BTreeMap<usize, usize> {
        let hosts = self.hosts_by_node();
        let mut out = BTreeMap::new();
        for t in self.tasks(service) {
            if t.desired == v1::TaskDesiredState::Running as i32
                && t.observed == v1::TaskState::Running as i32
                && let Some(h) = hosts.get(&t.node)
            {
                *out.entry(*h).or_default() += 1;
            }
        }
        out
    }

    /// How many containers of `service` run on each agent host, as the hosts' own agents
    /// list them (`berth-agent ps`).
    fn containers_by_host(&self, service: &str) -> BTreeMap<usize, usize> {
        let mut out = BTreeMap::new();
        for (i, a) in &self.agents {
            let listed: serde_json::Value =
                serde_json::from_str(&a.ok(["ps", "-o", "json"])).expect("ps json");
            let n = listed
                .as_array()
                .expect("a list")
                .iter()
                .filter(|c| {
                    c["Name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(&format!("{service}.")))
                })
                .count();
            if n > 0 {
                out.insert(*i, n);
            }
        }
        out
    }

    fn wait_for(&self, what: &str, mut check: impl FnMut() -> bool) -> Duration {
        let started = Instant::now();
        while !check() {
            assert!(started.elapsed() < WAIT, "never: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{what}: {:.2} s", started.elapsed().as_secs_f64());
        started.elapsed()
    }

    /// Joins the agent of host `i` and starts its daemon.
    fn start_agent(&mut self, i: usize, labels: &[&str]) {
        let host = self.cluster.host(i);
        let agent =
            TestAgent::new(bin("berth-agent"), bin("berth-monitor")).in_netns(host.ns.clone());
        agent.busybox_image("busybox:1");
        let join_addr = format!("{}:{}", self.cluster.host(0).ip, PORT + 1);
        agent.ok([
            "join",
            "--token",
            &self.token,
            "--join-addr",
            &join_addr,
            "--hostname",
            &host.name,
        ]);
        // A mount namespace of the host's own, held by a sleeper: the agent (and every
        // restart of it) enters it, so its containers' mounts live and die with the host.
        host.spawn(
            "mounts",
            "unshare",
            &["--mount", "--propagation", "private", "sleep", "100000"],
        );
        let holder = wait_pid_child(host.pid("mounts").expect("the sleeper runs"));
        let mnt = format!("--mount=/proc/{holder}/ns/mnt");
        let state = agent.state_dir.to_str().expect("utf8").to_owned();
        let monitor = agent.monitor_bin.to_str().expect("utf8").to_owned();
        let agent_bin = agent.agent_bin.to_str().expect("utf8").to_owned();
        let mut args = vec![
            mnt.as_str(),
            "--",
            agent_bin.as_str(),
            "--state-dir",
            state.as_str(),
            "--cgroup-parent",
            agent.cgroup_parent.as_str(),
            "--monitor",
            monitor.as_str(),
            "node",
            "--stop-timeout-s",
            "1",
        ];
        for l in labels {
            args.extend(["--label", l]);
        }
        host.spawn("agent", "nsenter", &args);
        self.agents.insert(i, agent);
    }
}

/// The process `unshare` became (it execs its command: the pid is the sleeper's), once it
/// has entered its new mount namespace.
fn wait_pid_child(pid: u32) -> u32 {
    let own = std::fs::read_link("/proc/self/ns/mnt").expect("own mount ns");
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
            && ns != own
        {
            return pid;
        }
        assert!(
            Instant::now() < until,
            "unshare never entered a mount namespace"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn busybox_service(name: &str, replicas: u32, command: &[&str]) -> v1::ServiceSpec {
    v1::ServiceSpec {
        name: name.into(),
        image: "busybox:1".into(),
        replicas,
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn start_env() -> Env {
    let cluster = Cluster::new(HOSTS);
    let dirs: Vec<PathBuf> = (0..3).map(|i| cluster.host(i).dir.join("ctl")).collect();
    let addr = |i: usize| format!("{}:{PORT}", cluster.host(i).ip);
    let out = ok(Command::new(bin("berth-controller"))
        .args(["init", "--data-dir"])
        .arg(&dirs[0])
        .args(["--id", "1", "--advertise", &addr(0)]));
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("agent join token:"))
        .map(|t| t.trim().to_owned())
        .expect("init prints the agent join token");
    for i in 1..3 {
        ok(Command::new(bin("berth-controller"))
            .args(["init-member", "--from"])
            .arg(&dirs[0])
            .arg("--data-dir")
            .arg(&dirs[i])
            .args(["--id", &(i + 1).to_string(), "--advertise", &addr(i)]));
    }
    let bootstrap = (0..3)
        .map(|i| format!("{}={}", i + 1, addr(i)))
        .collect::<Vec<_>>()
        .join(",");
    for (i, d) in dirs.iter().enumerate() {
        let dir = d.to_str().expect("utf8");
        // Heartbeats every 250 ms, a node down after 3 missed: the test waits less.
        let mut args = vec!["run", "--data-dir", dir, "--agent-heartbeat-ms", "250"];
        if i == 0 {
            args.extend(["--bootstrap", &bootstrap]);
        }
        cluster
            .host(i)
            .spawn("controller", bin("berth-controller"), &args);
    }
    let read = |p: &str| std::fs::read_to_string(dirs[0].join(p)).expect(p);
    Env {
        agents: BTreeMap::new(),
        ca: read("ca/ca.pem"),
        admin: IssuedCert {
            cert_pem: read("admin/admin.pem"),
            key_pem: read("admin/admin.key"),
        },
        token,
        cluster,
    }
}

#[test]
fn services_run_spread_scale_heal_and_follow_nodes_across_hosts() {
    if !berth_tests::require_root_and_busybox(
        "services_run_spread_scale_heal_and_follow_nodes_across_hosts",
    ) {
        return;
    }
    let mut env = start_env();
    env.start_agent(3, &["disk=ssd"]);
    env.start_agent(4, &[]);
    env.start_agent(5, &[]);
    env.wait_for("three agents registered", || env.hosts_by_node().len() == 3);

    // Six replicas of a web server: 2/2/2, running, answering.
    let web = busybox_service("web", 6, &["httpd", "-f", "-p", "8080", "-h", "/etc"]);
    env.apply(web);
    let took = env.wait_for("6 replicas running 2/2/2", || {
        env.running_by_host("web") == BTreeMap::from([(3, 2), (4, 2), (5, 2)])
    });
    eprintln!(
        "apply to 6 running replicas on 3 hosts: {:.2} s",
        took.as_secs_f64()
    );
    assert_eq!(
        env.containers_by_host("web"),
        BTreeMap::from([(3, 2), (4, 2), (5, 2)])
    );
    let hosts = env.hosts_by_node();
    let t = env
        .tasks("web")
        .into_iter()
        .find(|t| t.observed == v1::TaskState::Running as i32)
        .expect("a running task");
    let host = hosts[&t.node];
    let busybox = berth_tests::busybox().expect("busybox");
    let out = env.agents[&host]
        .host_cmd(&busybox)
        .args([
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{}:8080/hostname", t.address),
        ])
        .output()
        .expect("wget");
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "the task at {} does not answer: {}",
        t.address,
        String::from_utf8_lossy(&out.stderr)
    );

    // Scale to 9, then to 3.
    env.scale("web", 9);
    env.wait_for("9 replicas 3/3/3", || {
        env.running_by_host("web") == BTreeMap::from([(3, 3), (4, 3), (5, 3)])
    });
    env.scale("web", 3);
    env.wait_for("3 replicas, and only 3 containers", || {
        env.running_by_host("web").values().sum::<usize>() == 3
            && env.containers_by_host("web").values().sum::<usize>() == 3
    });

    // A constraint pins a service to the labelled node.
    let mut pinned = busybox_service("pinned", 2, &["sleep", "100000"]);
    pinned.constraints = vec!["node.labels.disk==ssd".into()];
    env.apply(pinned);
    env.wait_for("pinned on h3 only", || {
        env.running_by_host("pinned") == BTreeMap::from([(3, 2)])
    });

    // A global service: once on every node, and on a node that joins.
    let mut global = busybox_service("everywhere", 0, &["sleep", "100000"]);
    global.global = true;
    env.apply(global);
    env.wait_for("global on 3 nodes", || {
        env.running_by_host("everywhere") == BTreeMap::from([(3, 1), (4, 1), (5, 1)])
    });
    env.start_agent(6, &[]);
    env.wait_for("global follows the joining node", || {
        env.running_by_host("everywhere") == BTreeMap::from([(3, 1), (4, 1), (5, 1), (6, 1)])
    });

    // An agent host killed: the agent SIGKILLed and the host cut off the LAN. Its web tasks
    // are rescheduled on the others.
    let victim = *env
        .running_by_host("web")
        .keys()
        .find(|h| **h != 3)
        .expect("web runs on a host other than h3");
    let before = env.running_by_host("web")[&victim];
    env.cluster.host(victim).kill("agent");
    env.cluster.partition(&[victim]);
    let lost = Instant::now();
    env.wait_for("the lost host's web tasks replaced elsewhere", || {
        let by_host = env.running_by_host("web");
        !by_host.contains_key(&victim) && by_host.values().sum::<usize>() == 3
    });
    eprintln!(
        "node lost to {before} replacement(s) running: {:.2} s",
        lost.elapsed().as_secs_f64()
    );
    // Restarted, the agent stops its stale containers: no task runs twice.
    env.cluster.heal();
    env.cluster.host(victim).restart("agent");
    env.wait_for(
        "the stale containers stopped after the agent's restart",
        || {
            !env.containers_by_host("web").contains_key(&victim)
                && env.containers_by_host("web").values().sum::<usize>() == 3
                && env.running_by_host("web").values().sum::<usize>() == 3
        },
    );
    env.wait_for("the global service back on the restarted host", || {
        env.running_by_host("everywhere").len() == 4
    });

    // The controller leader killed during a scale: the cluster converges, no slot twice.
    let leader = env
        .control(async |c| {
            c.status(v1::Empty {})
                .await
                .map(|s| s.into_inner().leader_id)
        })
        .expect("a status")
        .expect("a leader") as usize
        - 1;
    env.scale("web", 6);
    env.cluster.host(leader).kill("controller");
    env.scale("web", 6);
    env.wait_for("6 replicas after the leader's death", || {
        let tasks = env.tasks("web");
        let slots: BTreeSet<u32> = tasks
            .iter()
            .filter(|t| {
                t.desired == v1::TaskDesiredState::Running as i32
                    && t.observed == v1::TaskState::Running as i32
            })
            .map(|t| t.slot)
            .collect();
        slots == (1..=6).collect() && env.containers_by_host("web").values().sum::<usize>() == 6
    });
    env.cluster.host(leader).restart("controller");

    // A failing container: restarted twice on failure, then given up on.
    let mut crash = busybox_service("crash", 1, &["sh", "-c", "exit 3"]);
    crash.restart = Some(v1::ServiceRestartPolicy {
        condition: v1::RestartCondition::OnFailure as i32,
        delay_ms: 100,
        max_attempts: 2,
        window_ms: 0,
    });
    env.apply(crash);
    let failed = |env: &Env| {
        env.tasks("crash")
            .iter()
            .filter(|t| t.observed == v1::TaskState::Failed as i32 && t.exit_code == 3)
            .count()
    };
    env.wait_for("three failed runs of crash", || failed(&env) == 3);
    std::thread::sleep(Duration::from_secs(2));
    let tasks = env.tasks("crash");
    assert_eq!(tasks.len(), 3, "no fourth run: {tasks:#?}");
    assert_eq!(failed(&env), 3);

    // A task that fits nowhere says why.
    let mut nowhere = busybox_service("nowhere", 1, &["sleep", "1"]);
    nowhere.constraints = vec!["node.labels.disk==nvme".into()];
    env.apply(nowhere);
    let mut reason = String::new();
    env.wait_for("the unplaceable task's reason", || {
        reason = env
            .tasks("nowhere")
            .first()
            .map(|t| t.reason.clone())
            .unwrap_or_default();
        reason.contains("no suitable node")
    });
    eprintln!("pending: {reason}");
    assert!(reason.contains("constraints"), "{reason}");

    // Removing the services removes every task's container.
    for s in ["web", "pinned", "everywhere", "crash", "nowhere"] {
        env.remove(s);
    }
    env.wait_for("no container left", || {
        ["web", "pinned", "everywhere", "crash"]
            .iter()
            .all(|s| env.containers_by_host(s).is_empty())
    });
}
