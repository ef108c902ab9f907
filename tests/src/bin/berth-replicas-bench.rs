//! `berth-replicas-bench`: the orchestrator with real agents running real containers (issue
//! 5, benchmarks (c) and (d)). Three `berth-controller` processes on hosts 0–2 of the harness
//! and two `berth-agent node` daemons on hosts 3 and 4, with default heartbeats (1 s, a node
//! down after 3 missed).
//!
//! - **Apply until N replicas run**, on one agent: a busybox service of N replicas pinned to
//!   host 3 (`node.hostname==h3`) is applied; the clock runs from the apply request until the
//!   controller lists N tasks observed running (each reported by the agent once its container
//!   started). The service is then removed and its containers waited out before the next.
//! - **Node loss**: 10 replicas spread over both agents; host 4's agent is killed with SIGKILL
//!   and the host cut off the LAN; the clock runs until the controller marks the node down and
//!   until all 10 replicas run on host 3 again.
//!
//! ```text
//! cargo build --release --workspace --bins && ./target/release/berth-replicas-bench [--runs 5] [--replicas 10,30,100]
//! ```
//!
//! Prints a Markdown report (medians over the runs) for `docs/benchmarks.md`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_proto::v1;
use berth_tests::TestAgent;
use berth_tests::cluster::Cluster;
use berth_tests::control_plane::{Control, ControlPlane};
use berth_tests::median;

const WAIT: Duration = Duration::from_secs(120);

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn service(name: &str, replicas: u32, constraints: &[&str]) -> v1::ServiceSpec {
    v1::ServiceSpec {
        name: name.into(),
        image: "busybox:1".into(),
        replicas,
        command: ["sleep", "100000"].map(String::from).to_vec(),
        constraints: constraints.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The cluster, its agents, and a client of the leader (made from host 0's network).
struct Bench {
    agents: Vec<TestAgent>,
    cluster: Cluster,
    _cp: ControlPlane,
    rt: tokio::runtime::Runtime,
    client: Control,
}

impl Drop for Bench {
    fn drop(&mut self) {
        for h in &self.cluster.hosts {
            h.kill("agent");
        }
    }
}

impl Bench {
    fn start() -> anyhow::Result<Self> {
        let cluster = Cluster::new(5);
        let cp = ControlPlane::start(&cluster, 3, &[], &[])?;
        let mut agents = Vec::new();
        for i in [3, 4] {
            agents.push(cp.start_agent(&cluster, i, &["--stop-timeout-s", "1"])?);
        }
        // The runtime's threads are made inside host 0's network namespace (a thread
        // inherits its maker's), and every call is made from there too ([`Bench::call`]).
        let (rt, client) = cluster.host(0).run(|| -> anyhow::Result<_> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let client = rt.block_on(async {
                let leader = cp.leader(Duration::from_secs(30)).await?;
                cp.client(&cp.addrs[leader as usize - 1])
            })?;
            Ok((rt, client))
        })?;
        let b = Self {
            agents,
            cluster,
            _cp: cp,
            rt,
            client,
        };
        b.wait("two agents registered", || {
            Ok(b.nodes()?
                .iter()
                .filter(|n| n.status == v1::NodeStatus::Ready as i32)
                .count()
                == 2)
        })?;
        Ok(b)
    }

    /// Runs `f` with the leader's client, from host 0.
    fn call<T: Send>(
        &self,
        f: impl AsyncFnOnce(&mut Control) -> Result<T, tonic::Status> + Send,
    ) -> anyhow::Result<T> {
        let mut c = self.client.clone();
        Ok(self
            .cluster
            .host(0)
            .run(|| self.rt.block_on(async move { f(&mut c).await }))?)
    }

    fn nodes(&self) -> anyhow::Result<Vec<v1::Node>> {
        self.call(async |c| {
            c.list_nodes(v1::ListNodesRequest::default())
                .await
                .map(|r| r.into_inner().nodes)
        })
    }

    fn tasks(&self, service: &str) -> anyhow::Result<Vec<v1::Task>> {
        self.call(async |c| {
            c.list_tasks(v1::ListTasksRequest {
                service: service.to_owned(),
                stale: false,
            })
            .await
            .map(|r| r.into_inner().tasks)
        })
    }

    /// Tasks of `service` running, by hostname.
    fn running(&self, service: &str) -> anyhow::Result<Vec<String>> {
        let hostnames: std::collections::HashMap<String, String> = self
            .nodes()?
            .into_iter()
            .map(|n| (n.id, n.hostname))
            .collect();
        Ok(self
            .tasks(service)?
            .into_iter()
            .filter(|t| {
                t.desired == v1::TaskDesiredState::Running as i32
                    && t.observed == v1::TaskState::Running as i32
            })
            .filter_map(|t| hostnames.get(&t.node).cloned())
            .collect())
    }

    fn apply(&self, spec: v1::ServiceSpec) -> anyhow::Result<()> {
        self.call(async |c| {
            c.apply_service(v1::ApplyServiceRequest {
                spec: Some(spec),
                expected_version: None,
            })
            .await
            .map(|_| ())
        })
    }

    fn remove(&self, name: &str) -> anyhow::Result<()> {
        self.call(async |c| {
            c.remove_service(v1::RemoveServiceRequest {
                name: name.to_owned(),
                ..Default::default()
            })
            .await
            .map(|_| ())
        })
    }

    /// Containers the agents list (`berth-agent ps`), all states.
    fn containers(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for a in &self.agents {
            let out = a.run(["ps", "-a", "-o", "json"]);
            if !out.status.success() {
                bail!("berth-agent ps: {}", String::from_utf8_lossy(&out.stderr));
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            n += v.as_array().map_or(0, Vec::len);
        }
        Ok(n)
    }

    /// Polls `check` every 5 ms until it holds; the time it took.
    fn wait(
        &self,
        what: &str,
        mut check: impl FnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        while !check()? {
            if started.elapsed() > WAIT {
                bail!("never: {what}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(started.elapsed())
    }

    /// Applies `n` replicas pinned to h3; the time until they all run.
    fn replicas(&self, name: &str, n: u32) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.apply(service(name, n, &["node.hostname==h3"]))?;
        self.wait(&format!("{n} replicas of {name} running"), || {
            Ok(self.running(name)?.len() == n as usize)
        })?;
        let took = started.elapsed();
        self.remove(name)?;
        self.wait(&format!("{name} removed"), || {
            Ok(self.tasks(name)?.is_empty() && self.containers()? == 0)
        })?;
        Ok(took)
    }

    /// 10 replicas on both agents; host 4 killed and cut off. Times until the node is down
    /// and until the 10 run on host 3.
    fn node_loss(&self) -> anyhow::Result<(Duration, Duration, usize)> {
        self.apply(service("survivor", 10, &[]))?;
        self.wait("10 survivors running on both hosts", || {
            let r = self.running("survivor")?;
            Ok(r.len() == 10 && r.iter().any(|h| h == "h4"))
        })?;
        let lost = self
            .running("survivor")?
            .iter()
            .filter(|h| *h == "h4")
            .count();
        let killed = Instant::now();
        self.cluster.host(4).kill("agent");
        self.cluster.partition(&[4]);
        let mut down = None;
        self.wait("the 10 survivors all on h3", || {
            if down.is_none()
                && self
                    .nodes()?
                    .iter()
                    .any(|n| n.hostname == "h4" && n.status == v1::NodeStatus::Down as i32)
            {
                down = Some(killed.elapsed());
            }
            let r = self.running("survivor")?;
            Ok(r.len() == 10 && r.iter().all(|h| h == "h3"))
        })?;
        let replaced = killed.elapsed();
        let down = down.context("the node was never marked down")?;
        Ok((down, replaced, lost))
    }
}

fn main() -> anyhow::Result<()> {
    if !berth_tests::require_root_and_busybox("berth-replicas-bench") {
        bail!("berth-replicas-bench needs root and busybox-static");
    }
    let runs: usize = arg("--runs").map_or(Ok(5), |r| r.parse())?;
    let sizes: Vec<u32> = arg("--replicas")
        .unwrap_or_else(|| "10,30,100".into())
        .split(',')
        .map(|n| n.parse().context("--replicas N,N,..."))
        .collect::<anyhow::Result<_>>()?;
    let bench = Bench::start()?;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    for run in 0..runs {
        // Interleaved: each run applies every size once.
        for (i, n) in sizes.iter().enumerate() {
            let t = bench.replicas(&format!("r{n}-{run}"), *n)?;
            eprintln!(
                "run {run}: {n} replicas running in {:.3} s",
                t.as_secs_f64()
            );
            times[i].push(t.as_secs_f64());
        }
    }
    let (down, replaced, lost) = bench.node_loss()?;
    let mut report = format!(
        "### Apply until N replicas run on one real agent (3 controllers, busybox `sleep`; median of {runs})\n\n\
         | replicas | apply → all running (median) | min | max |\n|---|---|---|---|\n"
    );
    for (n, t) in sizes.iter().zip(&times) {
        report += &format!(
            "| {n} | {:.3} s | {:.3} s | {:.3} s |\n",
            median(t.clone()),
            t.iter().copied().fold(f64::INFINITY, f64::min),
            t.iter().copied().fold(0.0, f64::max),
        );
    }
    report += &format!(
        "\n### A real node lost (SIGKILL and cut off the LAN; heartbeats 1 s, down after 3 missed)\n\n\
         | tasks on the lost node | marked down | replacements running |\n|---|---|---|\n\
         | {lost} of 10 | {:.2} s | {:.2} s |\n",
        down.as_secs_f64(),
        replaced.as_secs_f64()
    );
    println!("{report}");
    drop(bench);
    Ok(())
}
