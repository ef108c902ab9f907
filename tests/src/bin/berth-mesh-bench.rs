//! `berth-mesh-bench`: cross-host networking (issue 7's benchmarks).
//!
//! - **Rule propagation**: one controller (host 0), three real `berth-agent node` daemons
//!   (hosts 1–3, whose iptables rules are measured) and a fleet of hollow nodes (host 4)
//!   running `--services` services of 10 tasks (default 1,000), so every real node holds the
//!   rules of all of them (10,000 backends). Then, `--changes` times (default 50), one
//!   service is scaled up by one: the clock runs from the scale request until the new task's
//!   address is in the service's chain on each real node (read with `iptables -t nat -S
//!   <chain>` every 5 ms). That is the whole path of a task change: placed, started,
//!   reported, committed, streamed, applied. p50 and p99 over every (change, node).
//! - **Throughput and latency**: two busybox containers on hosts 1 and 2 (the VXLAN overlay
//!   between them), measured with the host's `iperf3` run inside each container's network
//!   namespace (median of `--rounds` alternating 3 s runs, default 5), against the same two
//!   hosts without berth (host to host); latency is the
//!   median round trip of 1-byte TCP messages (20,000 of them) to an echo server in the
//!   server container, by its address and through a service VIP.
//!
//! ```text
//! cargo build --release --workspace --bins && ./target/release/berth-mesh-bench [--services 1000] [--changes 50]
//! ```
//!
//! Prints a Markdown report for `docs/benchmarks.md`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_agent::net::firewall::mesh::svc_chain;
use berth_agent::node::hollow::{FleetOptions, HollowFleet};
use berth_proto::v1;
use berth_tests::TestAgent;
use berth_tests::cluster::Cluster;
use berth_tests::control_plane::{Control, ControlPlane};
use nix::sched::{CloneFlags, setns};

const WAIT: Duration = Duration::from_secs(600);
const REPLICAS: u32 = 10;
const BATCH: usize = 100;

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

struct Bench {
    agents: Vec<TestAgent>,
    cluster: Cluster,
    cp: ControlPlane,
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

    fn wait(&self, what: &str, mut f: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<f64> {
        let started = Instant::now();
        while !f()? {
            if started.elapsed() > WAIT {
                bail!("never: {what}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let s = started.elapsed().as_secs_f64();
        eprintln!("{what}: {s:.2} s");
        Ok(s)
    }

    fn running(&self, service: &str) -> anyhow::Result<Vec<v1::Task>> {
        Ok(self
            .call(async |c| {
                c.list_tasks(v1::ListTasksRequest {
                    service: service.to_owned(),
                    stale: true,
                })
                .await
                .map(|r| r.into_inner().tasks)
            })?
            .into_iter()
            .filter(|t| {
                t.desired == v1::TaskDesiredState::Running as i32
                    && t.observed == v1::TaskState::Running as i32
                    && !t.address.is_empty()
            })
            .collect())
    }

    /// `iptables -t nat -S <chain>` on host `i`.
    fn chain(&self, i: usize, chain: &str) -> String {
        let out = self
            .cluster
            .host(i)
            .ns
            .command("iptables")
            .args(["-w", "-t", "nat", "-S", chain])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

fn spec(name: String, replicas: u32, constraint: &str) -> v1::ServiceSpec {
    v1::ServiceSpec {
        name,
        image: "busybox:1".into(),
        replicas,
        command: ["sleep", "100000"].map(String::from).to_vec(),
        constraints: vec![constraint.to_owned()],
        ..Default::default()
    }
}

fn main() -> anyhow::Result<()> {
    if !berth_tests::require_root_and_busybox("berth-mesh-bench") {
        bail!("berth-mesh-bench needs root and busybox");
    }
    let services: usize = arg("--services").map_or(Ok(1000), |s| s.parse())?;
    let changes: usize = arg("--changes").map_or(Ok(50), |s| s.parse())?;
    let hollow: usize = (services * REPLICAS as usize).div_ceil(100).max(1);

    let cluster = Cluster::new(5);
    let cp = ControlPlane::start(
        &cluster,
        1,
        &[
            "--node-range",
            "10.0.0.0/8",
            "--service-range",
            "172.20.0.0/16",
        ],
        &[],
    )?;
    let mut agents = Vec::new();
    for i in 1..=3 {
        agents.push(cp.start_agent(&cluster, i, &["--stop-timeout-s", "1"])?);
    }
    let (rt, client) = cluster.host(0).run(|| -> anyhow::Result<_> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let client = rt.block_on(async {
            cp.leader(Duration::from_secs(30)).await?;
            cp.client(&cp.addrs[0])
        })?;
        Ok((rt, client))
    })?;
    let b = Bench {
        agents,
        cluster,
        cp,
        rt,
        client,
    };

    // The hollow fleet, on host 4, in a runtime of its own (kept for the whole run).
    let (join_addr, token) = (b.cp.join_addr.clone(), b.cp.token.clone());
    let fleet_ip = b.cluster.host(4).ip;
    let fleet_rt = b.cluster.host(4).run(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
    })?;
    let fleet = b.cluster.host(4).run(|| {
        fleet_rt.block_on(async {
            let mut opts = FleetOptions::new(hollow, join_addr, token);
            opts.address = fleet_ip.into();
            opts.labels = vec![[("hollow".to_owned(), "yes".to_owned())].into()];
            let fleet = HollowFleet::start(opts).await?;
            if !fleet.wait_registered(Duration::from_secs(300)).await {
                bail!("not every hollow node registered: {}", fleet.status());
            }
            anyhow::Ok(fleet)
        })
    })?;
    eprintln!("{hollow} hollow nodes registered");

    // The services, on the hollow nodes only.
    let names: Vec<String> = (0..services).map(|i| format!("s{i:04}")).collect();
    for chunk in names.chunks(BATCH) {
        let specs: Vec<v1::ServiceSpec> = chunk
            .iter()
            .map(|n| spec(n.clone(), REPLICAS, "node.labels.hollow==yes"))
            .collect();
        b.call(async move |c| {
            c.apply_services(v1::ApplyServicesRequest {
                services: specs
                    .into_iter()
                    .map(|s| v1::ApplyServiceRequest {
                        spec: Some(s),
                        expected_version: None,
                    })
                    .collect(),
            })
            .await
            .map(|_| ())
        })?;
    }
    let total = services * REPLICAS as usize;
    b.wait(&format!("{total} tasks running"), || {
        Ok(b.running("")?.len() >= total)
    })?;
    let last = names.last().context("no services")?.clone();
    let synced = b.wait("every real node holds every service's rules", || {
        Ok((1..=3).all(|i| b.chain(i, &svc_chain(&last)).lines().count() > REPLICAS as usize))
    })?;

    // Task changes: one service scaled up by one at a time.
    let mut samples = Vec::new();
    let mut worst = Vec::new();
    for k in 0..changes {
        let name = names[(k * 7919) % names.len()].clone();
        let chain = svc_chain(&name);
        let before: Vec<usize> = (1..=3)
            .map(|i| b.chain(i, &chain).lines().count())
            .collect();
        let started = Instant::now();
        let n = name.clone();
        b.call(async move |c| {
            c.scale_service(v1::ScaleServiceRequest {
                name: n,
                replicas: REPLICAS + 1,
                expected_version: None,
            })
            .await
            .map(|_| ())
        })?;
        let mut done = [None; 3];
        while done.iter().any(Option::is_none) {
            for i in 0..3 {
                if done[i].is_none() && b.chain(i + 1, &chain).lines().count() > before[i] {
                    done[i] = Some(started.elapsed().as_secs_f64());
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the change to {name} never reached every node: {done:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let times: Vec<f64> = done.iter().flatten().copied().collect();
        worst.push(times.iter().copied().fold(0.0, f64::max));
        samples.extend(times);
        // Back to 10, out of the way of the next sample.
        let n = name.clone();
        b.call(async move |c| {
            c.scale_service(v1::ScaleServiceRequest {
                name: n,
                replicas: REPLICAS,
                expected_version: None,
            })
            .await
            .map(|_| ())
        })?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut report = format!(
        "### Service rules: a task change reaching every node ({services} services of {REPLICAS} tasks on {hollow} hollow nodes; 3 real nodes measured)\n\n\
         | changes | p50 (per node) | p99 (per node) | p50 (slowest node) | p99 (slowest node) | max | initial sync of all services |\n\
         |---|---|---|---|---|---|---|\n\
         | {changes} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {synced:.1} s |\n\n",
        percentile(samples.clone(), 0.5) * 1e3,
        percentile(samples.clone(), 0.99) * 1e3,
        percentile(worst.clone(), 0.5) * 1e3,
        percentile(worst.clone(), 0.99) * 1e3,
        worst.iter().copied().fold(0.0, f64::max) * 1e3,
    );
    eprintln!("{report}");

    // Measured with the 1,000 services' rules in place on the real nodes, the fleet kept
    // up (its nodes lost would churn every node's rules during the measurement).
    report += &throughput(&b)?;
    drop(fleet);
    drop(fleet_rt);
    println!("{report}");
    Ok(())
}

/// The pid of the running container of `service` on agent `a`.
fn pid_of(a: &TestAgent, service: &str) -> anyhow::Result<i64> {
    let listed: serde_json::Value = serde_json::from_str(&a.ok(["ps", "-o", "json"]))?;
    listed
        .as_array()
        .context("ps lists")?
        .iter()
        .find(|c| {
            c["Name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("{service}.")))
        })
        .and_then(|c| c["State"]["Pid"].as_i64())
        .with_context(|| format!("no running container of {service}"))
}

/// A command run in the network namespace of process `pid`.
fn in_ns(pid: i64, program: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("--")
        .arg(program);
    c
}

/// iperf3's received bits per second (3 s), from its JSON: `server` runs `-s -1`, `client`
/// connects to `target`.
fn iperf(mut server: Command, mut client: Command, target: Ipv4Addr) -> anyhow::Result<f64> {
    let mut server = server
        .args(["-s", "-1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("iperf3 server")?;
    std::thread::sleep(Duration::from_millis(300));
    let out = client
        .args(["-c", &target.to_string(), "-t", "3", "-J"])
        .output()
        .context("iperf3 client");
    let _ = server.kill();
    let _ = server.wait();
    let out = out?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("iperf3 gave no result: {v}"))
}

/// The median round trip of 1-byte messages over one TCP connection to `addr`, made from
/// the network namespace of `from` (a path to a netns).
fn rtt(from: &str, addr: SocketAddr, n: usize) -> anyhow::Result<f64> {
    let ns = std::fs::File::open(from)?;
    std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<f64> {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            c.set_nodelay(true)?;
            let mut buf = [0u8; 1];
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                c.write_all(b"x")?;
                c.read_exact(&mut buf)?;
                v.push(t.elapsed().as_secs_f64());
            }
            Ok(percentile(v, 0.5))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("rtt thread panicked"))?
    })
}

/// A 1-byte echo server in the network namespace `ns` on port 7000, until the process ends.
fn echo_server(ns: &str) -> anyhow::Result<()> {
    let f = std::fs::File::open(ns)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let bound = setns(f.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(TcpListener::bind("0.0.0.0:7000")?));
        let l = match bound {
            Ok(l) => {
                let _ = tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let _ = c.set_nodelay(true);
                let mut buf = [0u8; 1];
                while c.read_exact(&mut buf).is_ok() && c.write_all(&buf).is_ok() {}
            });
        }
    });
    rx.recv()?
}

fn throughput(b: &Bench) -> anyhow::Result<String> {
    if Command::new("iperf3").arg("--version").output().is_err() {
        eprintln!("\n*** SKIPPED: iperf3 is not installed (apt-get install iperf3) ***\n");
        return Ok("(throughput skipped: no iperf3)\n".into());
    }
    let server = spec("iperf-server".into(), 1, "node.hostname==h2");
    let client = spec("iperf-client".into(), 1, "node.hostname==h1");
    for s in [server, client] {
        b.call(async move |c| {
            c.apply_service(v1::ApplyServiceRequest {
                spec: Some(s),
                expected_version: None,
            })
            .await
            .map(|_| ())
        })?;
    }
    b.wait("the iperf containers running", || {
        Ok(b.running("iperf-server")?.len() == 1 && b.running("iperf-client")?.len() == 1)
    })?;
    let server_task = b.running("iperf-server")?.remove(0);
    let server_ip: Ipv4Addr = server_task.address.parse()?;
    let vip: Ipv4Addr = b
        .call(async |c| {
            c.get_service(v1::GetServiceRequest {
                name: "iperf-server".into(),
                stale: true,
            })
            .await
            .map(|r| r.into_inner().service.unwrap_or_default().vip)
        })?
        .parse()?;
    let spid = pid_of(&b.agents[1], "iperf-server")?;
    let cpid = pid_of(&b.agents[0], "iperf-client")?;

    // Rounds alternate the three paths so that the machine's noise falls on all of them;
    // first with each host's egress shaped to a NIC's rate (tbf on its eth0, so that the
    // link is the bottleneck as on real hardware), then unshaped (veths move bytes at
    // memory speed, so the CPU is the bottleneck and every extra hop shows).
    let rounds: usize = arg("--rounds").map_or(Ok(5), |s| s.parse())?;
    let rate = arg("--link-rate").unwrap_or_else(|| "10gbit".into());
    let mut report = format!(
        "### Between containers on two hosts (VXLAN overlay), against the hosts themselves\n\n\
         TCP throughput, iperf3, median of {rounds} rounds of 3 s alternating the paths:\n\n\
         | hosts' link | host to host (no berth) | container to container (overlay) | vs hosts | container to service VIP | vs hosts |\n\
         |---|---|---|---|---|---|\n"
    );
    for link in [Some(rate.as_str()), None] {
        for i in [1, 2] {
            let mut tc = b.cluster.host(i).ns.command("tc");
            match link {
                Some(rate) => tc
                    .args([
                        "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate,
                    ])
                    .args(["burst", "2mb", "latency", "2ms"]),
                None => tc.args(["qdisc", "del", "dev", "eth0", "root"]),
            };
            let out = tc.output().context("tc")?;
            if !out.status.success() {
                bail!("tc on h{i}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let (mut under, mut over, mut via_vip) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // Underlay: iperf3 -s on host 2 itself, client on host 1.
            let mut c = b.cluster.host(1).ns.command("iperf3");
            c.arg("-4");
            under.push(iperf(
                b.cluster.host(2).ns.command("iperf3"),
                c,
                b.cluster.host(2).ip,
            )?);
            // Overlay: server in the container on host 2, client in the container on host 1.
            over.push(iperf(
                in_ns(spid, "iperf3"),
                in_ns(cpid, "iperf3"),
                server_ip,
            )?);
            // Through the VIP.
            via_vip.push(iperf(in_ns(spid, "iperf3"), in_ns(cpid, "iperf3"), vip)?);
            eprintln!(
                "link {}, round {round}: hosts {:.2}, overlay {:.2}, VIP {:.2} Gbit/s",
                link.unwrap_or("unshaped"),
                under[round] / 1e9,
                over[round] / 1e9,
                via_vip[round] / 1e9
            );
        }
        let (under, over, via_vip) = (
            percentile(under, 0.5),
            percentile(over, 0.5),
            percentile(via_vip, 0.5),
        );
        report += &format!(
            "| {} | {:.2} Gbit/s | {:.2} Gbit/s | {:.0} % | {:.2} Gbit/s | {:.0} % |\n",
            link.map_or("unshaped veth (CPU-bound)".to_owned(), |r| format!(
                "{r} (tbf)"
            )),
            under / 1e9,
            over / 1e9,
            over / under * 100.0,
            via_vip / 1e9,
            via_vip / under * 100.0,
        );
    }

    // Latency: 1-byte round trips, unshaped; rounds alternate the paths.
    let (hn1, hn2) = (ns_path_of(b, 1)?, ns_path_of(b, 2)?);
    echo_server(&hn2)?;
    echo_server(&format!("/proc/{spid}/ns/net"))?;
    let n = 10_000;
    let cns = format!("/proc/{cpid}/ns/net");
    let (mut under, mut over, mut via_vip) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        under.push(rtt(
            &hn1,
            SocketAddr::new(b.cluster.host(2).ip.into(), 7000),
            n,
        )?);
        over.push(rtt(&cns, SocketAddr::new(server_ip.into(), 7000), n)?);
        via_vip.push(rtt(&cns, SocketAddr::new(vip.into(), 7000), n)?);
    }
    let (rtt_under, rtt_over, rtt_vip) = (
        percentile(under, 0.5),
        percentile(over, 0.5),
        percentile(via_vip, 0.5),
    );
    report += &format!(
        "\nRound trip of a 1-byte TCP message (median of {rounds} rounds of {n}):\n\n\
         | path | median round trip | added |\n\
         |---|---|---|\n\
         | host to host (no berth) | {:.1} µs | |\n\
         | container to container (overlay) | {:.1} µs | {:+.1} µs vs the hosts |\n\
         | container to service VIP (overlay + DNAT) | {:.1} µs | {:+.1} µs vs the task's address |\n",
        rtt_under * 1e6,
        rtt_over * 1e6,
        (rtt_over - rtt_under) * 1e6,
        rtt_vip * 1e6,
        (rtt_vip - rtt_over) * 1e6,
    );
    Ok(report)
}

/// A path to host `i`'s network namespace: `/proc/<pid>/ns/net` of a sleeper started there.
fn ns_path_of(b: &Bench, i: usize) -> anyhow::Result<String> {
    let name = format!("ns-holder-{i}");
    b.cluster.host(i).spawn(&name, "sleep", &["100000"]);
    let pid = b.cluster.host(i).pid(&name).context("the sleeper runs")?;
    Ok(format!("/proc/{pid}/ns/net"))
}
