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
use std::time::{Duration, Instant};

use berth_proto::v1;
use berth_tests::cluster::Cluster;
use berth_tests::control_plane::ControlPlane;

/// Hosts 0–2 run the controllers; 3–5 the agents; 6 an agent that joins later.
const HOSTS: usize = 7;

/// The shared harness ([`berth_tests::env::Env`]) with this test's views of it.
struct Env(berth_tests::env::Env);

impl std::ops::Deref for Env {
    type Target = berth_tests::env::Env;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Env {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Env {
    /// The nodes, each with its host index (from the hostnames the agents joined with:
    /// `h3`, …).
    fn nodes(&self) -> Vec<(usize, v1::Node)> {
        self.0
            .nodes()
            .into_iter()
            .filter_map(|n| Some((n.hostname.strip_prefix('h')?.parse().ok()?, n)))
            .collect()
    }

    /// The hosts whose nodes are ready (registered, heartbeating).
    fn ready_hosts(&self) -> BTreeSet<usize> {
        self.nodes()
            .into_iter()
            .filter(|(_, n)| n.status == v1::NodeStatus::Ready as i32)
            .map(|(h, _)| h)
            .collect()
    }

    /// Node id → host index.
    fn hosts_by_node(&self) -> BTreeMap<String, usize> {
        self.nodes().into_iter().map(|(h, n)| (n.id, h)).collect()
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

    /// The running containers of `service` (`berth-agent ps -o json` objects), with the
    /// agent host that lists them.
    fn containers(&self, service: &str) -> Vec<(usize, serde_json::Value)> {
        let prefix = format!("{service}.");
        let mut out = Vec::new();
        for (i, a) in &self.agents {
            let listed: serde_json::Value =
                serde_json::from_str(&a.ok(["ps", "-o", "json"])).expect("ps json");
            out.extend(
                listed
                    .as_array()
                    .expect("a list")
                    .iter()
                    .filter(|c| c["Name"].as_str().is_some_and(|n| n.starts_with(&prefix)))
                    .map(|c| (*i, c.clone())),
            );
        }
        out
    }

    /// How many containers of `service` run on each agent host.
    fn containers_by_host(&self, service: &str) -> BTreeMap<usize, usize> {
        let mut out = BTreeMap::new();
        for (h, _) in self.containers(service) {
            *out.entry(h).or_default() += 1;
        }
        out
    }

    /// The running containers of `service` on every agent host: id → pid.
    fn running_containers(&self, service: &str) -> BTreeMap<String, i64> {
        self.containers(service)
            .into_iter()
            .filter_map(|(_, c)| Some((c["Id"].as_str()?.to_owned(), c["State"]["Pid"].as_i64()?)))
            .collect()
    }

    /// Joins the agent of host `i` with `labels` and starts its daemon.
    fn start_agent(&mut self, i: usize, labels: &[&str]) {
        let mut args = vec!["--stop-timeout-s", "1"];
        for l in labels {
            args.extend(["--label", l]);
        }
        self.0.start_agent(i, &args);
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
    // Heartbeats every 250 ms, a node down after 3 missed: the test waits less.
    let cp = ControlPlane::start(&cluster, 3, &[], &["--agent-heartbeat-ms", "250"])
        .expect("three controllers");
    Env(berth_tests::env::Env::new(cluster, cp))
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
    env.wait_for("three agents registered", || {
        env.ready_hosts() == BTreeSet::from([3, 4, 5])
    });

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
    let kept = env.running_containers("web");
    assert_eq!(kept.len(), 3, "{kept:?}");
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
    // The agents followed the new leader without restarting a task: the three containers
    // that ran before still run, with the same processes.
    let after = env.running_containers("web");
    for (id, pid) in &kept {
        assert_eq!(
            after.get(id),
            Some(pid),
            "container {id} was restarted or stopped"
        );
    }
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
