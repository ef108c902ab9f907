//! `berth-scale-bench`: the orchestrator at scale (issue 5), with hollow nodes — agents with a
//! simulated runtime, thousands in this one process — against three real `berth-controller`
//! processes, each on its own host of the harness (network namespaces on a private LAN).
//!
//! For each `NODES:TASKS` pair (default `1000:20000` and `5000:100000`): the hollow nodes
//! join and register; services of 100 replicas are applied (16 clients, each on one connection made beforehand, applying its share in turn); the run
//! times, from the first apply, until every task is **assigned and committed** (the
//! placements seen on a `WatchEvents` stream of a follower: what it has applied is committed,
//! and serving the stream costs the leader nothing) and until every task **runs** on
//! its hollow node (reported back); and reads each controller's resident memory. Then one
//! hollow node is stopped (its session ends, as if the node died) and the run times until its
//! tasks are replaced and running elsewhere.
//!
//! ```text
//! cargo build --release --bins && ./target/release/berth-scale-bench [--runs 1000:20000,5000:100000] [--heartbeat-ms MS]
//! ```
//!
//! Prints a Markdown report for `docs/benchmarks.md`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_agent::node::hollow::{FleetOptions, HollowFleet};
use berth_proto::v1;
use berth_tests::cluster::Cluster;
use berth_tests::control_plane::{Control as Client, ControlPlane};
use futures::StreamExt;

const REPLICAS: u32 = 100;
const CLIENTS: usize = 16;
/// Services per `ApplyServices` call.
const BATCH: usize = 100;

/// `--runs 1000:20000,5000:100000`.
fn runs() -> anyhow::Result<Vec<(usize, usize)>> {
    let spec = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .unwrap_or_else(|| "1000:20000,5000:100000".into());
    spec.split(',')
        .map(|r| {
            let (n, t) = r.split_once(':').context("--runs NODES:TASKS,...")?;
            Ok((n.parse()?, t.parse()?))
        })
        .collect()
}

/// Raises this process's open-file limit to its hard limit (each hollow node holds a
/// connection; the controllers, started after, inherit it).
fn raise_nofile() -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Counts the distinct tasks placed on a node (and how many are running) as a member's
/// events say, until `want` are placed, then until `want_running` run.
async fn watch_placements(
    mut client: Client,
    want: usize,
    started: Instant,
    placed_at: tokio::sync::oneshot::Sender<Duration>,
) -> anyhow::Result<()> {
    let mut stream = client
        .watch_events(v1::WatchEventsRequest {
            kinds: vec![v1::EventKind::Task as i32],
            service: String::new(),
        })
        .await?
        .into_inner();
    let mut placed: HashSet<String> = HashSet::with_capacity(want);
    let mut placed_at = Some(placed_at);
    while let Some(ev) = stream.next().await {
        let ev = ev.context("the event stream")?;
        if let Some(v1::event::Object::Task(t)) = ev.object
            && !t.node.is_empty()
        {
            placed.insert(t.id);
            if placed.len() >= want
                && let Some(tx) = placed_at.take()
            {
                let _ = tx.send(started.elapsed());
                return Ok(());
            }
        }
    }
    bail!(
        "the event stream ended with {} of {want} placed",
        placed.len()
    )
}

fn main() -> anyhow::Result<()> {
    if !berth_tests::require_root("berth-scale-bench") {
        bail!("berth-scale-bench needs root");
    }
    let nofile = raise_nofile()?;
    let mut report = format!(
        "### Orchestrator at scale (hollow nodes in one process, 3 controllers; services of {REPLICAS} replicas, {CLIENTS} clients applying)\n\n\
         | nodes | tasks | all assigned and committed | placements/s | all running on their nodes | leader RSS MiB | follower RSS MiB | node loss: replacements running | re-registrations, errors |\n\
         |---|---|---|---|---|---|---|---|---|\n"
    );
    for (nodes, tasks) in runs()? {
        report += &one_run(nodes, tasks)?;
        eprintln!("{report}");
    }
    println!("{report}\n(open-file limit {nofile})");
    Ok(())
}

fn one_run(nodes: usize, tasks: usize) -> anyhow::Result<String> {
    let c = Cluster::new(4);
    // `--heartbeat-ms MS`: the agents' heartbeat period the controllers ask for (default
    // theirs, 1 s); a node is down after 3 missed.
    let heartbeat = std::env::args()
        .skip_while(|a| a != "--heartbeat-ms")
        .nth(1);
    let run_args: Vec<&str> = heartbeat
        .iter()
        .flat_map(|ms| ["--agent-heartbeat-ms", ms.as_str()])
        .collect();
    // Room for a /24 per node beyond the default range's 256.
    let cp = ControlPlane::start(&c, 3, &["--node-range", "10.0.0.0/8"], &run_args)?;
    let addrs = cp.addrs.clone();
    let (join_addr, token) = (cp.join_addr.clone(), cp.token.clone());
    let services = tasks.div_ceil(REPLICAS as usize);
    let total = services * REPLICAS as usize;
    let fleet_ip = c.host(3).ip;
    let row = c.host(3).run(|| -> anyhow::Result<String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let leader_id = cp.leader(Duration::from_secs(30)).await?;
            let leader_addr = addrs[leader_id as usize - 1].clone();
            let mut opts = FleetOptions::new(nodes, join_addr.clone(), token.clone());
            opts.address = fleet_ip.into();
            opts.labels = ["a", "b", "c"]
                .iter()
                .map(|z| [("zone".to_owned(), (*z).to_owned())].into())
                .collect();
            let joined = Instant::now();
            let fleet = HollowFleet::start(opts).await?;
            if !fleet.wait_registered(Duration::from_secs(300)).await {
                bail!("not every hollow node registered: {}", fleet.status());
            }
            eprintln!(
                "{nodes} hollow nodes joined and registered in {:.1} s",
                joined.elapsed().as_secs_f64()
            );
            // Let the registrations' writes settle before the clock starts.
            tokio::time::sleep(Duration::from_secs(2)).await;

            let mut clients = Vec::with_capacity(CLIENTS);
            for _ in 0..CLIENTS {
                let mut c = cp.client(&leader_addr)?;
                c.status(v1::Empty {}).await?;
                clients.push(c);
            }
            let started = Instant::now();
            let (tx, placed_rx) = tokio::sync::oneshot::channel();
            // A follower's stream: an event there is committed and applied on a member.
            let follower_addr = addrs[leader_id as usize % addrs.len()].clone();
            let watcher = tokio::spawn(watch_placements(
                cp.client(&follower_addr)?,
                total,
                started,
                tx,
            ));
            // The services in `ApplyServices` calls of BATCH, as `berth apply -f` sends a
            // file's services; the calls spread over 16 clients, each with one connection
            // made before the clock started.
            let batches: Vec<Vec<usize>> = (0..services)
                .collect::<Vec<_>>()
                .chunks(BATCH)
                .map(<[usize]>::to_vec)
                .collect();
            let batches = &batches;
            let applies = clients.into_iter().enumerate().map(|(c, mut client)| async move {
                for batch in batches.iter().skip(c).step_by(CLIENTS) {
                    let request = v1::ApplyServicesRequest {
                        services: batch
                            .iter()
                            .map(|i| v1::ApplyServiceRequest {
                                spec: Some(v1::ServiceSpec {
                                    name: format!("svc-{i:05}"),
                                    image: "bench:1".into(),
                                    replicas: REPLICAS,
                                    ..Default::default()
                                }),
                                expected_version: None,
                            })
                            .collect(),
                    };
                    let results = client.apply_services(request).await?.into_inner().results;
                    if let Some(f) = results.iter().find_map(|r| match &r.result {
                        Some(v1::apply_service_result::Result::Failure(f)) => Some(f.clone()),
                        _ => None,
                    }) {
                        bail!("a service was not applied: {}", f.message);
                    }
                }
                anyhow::Ok(())
            });
            for r in futures::future::join_all(applies).await {
                r?;
            }
            let applied = started.elapsed();
            let placed = match tokio::time::timeout(Duration::from_secs(600), placed_rx).await {
                Ok(Ok(d)) => d,
                _ => bail!(
                    "not every task was placed in time: {:?}",
                    watcher.await
                ),
            };
            let deadline = Instant::now() + Duration::from_secs(600);
            while fleet.status().tasks_running < total as i64 {
                if Instant::now() > deadline {
                    bail!("not every task runs: {}", fleet.status());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let running = started.elapsed();
            let leader_rss = c
                .host(leader_id as usize - 1)
                .pid("controller")
                .map_or(f64::NAN, rss_mib);
            let follower_rss = (0..3)
                .filter(|i| *i + 1 != leader_id as usize)
                .filter_map(|i| c.host(i).pid("controller"))
                .map(rss_mib)
                .fold(0.0_f64, f64::max);
            eprintln!(
                "applied in {:.2} s, placed in {:.2} s, running in {:.2} s; {}",
                applied.as_secs_f64(),
                placed.as_secs_f64(),
                running.as_secs_f64(),
                fleet.status()
            );

            // Sessions beyond one per node: nodes that lost theirs (marked down, their tasks
            // replaced) — a run that had any was disturbed by overload.
            let status = fleet.status();
            let churn = format!(
                "{}, {}",
                status.sessions_started.saturating_sub(nodes as u64),
                status.errors
            );

            // Node loss: stop one hollow node's session; time until its tasks run elsewhere.
            let victim = &fleet.nodes[0];
            let lost = victim.executor.running() as i64;
            let before = fleet.status().tasks_running;
            let killed = Instant::now();
            victim.stop();
            // Its tasks keep "running" in its executor (it is cut off, not cleaned up), so
            // the replacements show as the fleet's count growing by as many.
            let deadline = Instant::now() + Duration::from_secs(60);
            while fleet.status().tasks_running < before + lost {
                if Instant::now() > deadline {
                    bail!("the lost node's {lost} tasks were not replaced: {}", fleet.status());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let replaced = killed.elapsed();
            fleet.stop().await;
            Ok(format!(
                "| {nodes} | {total} | {:.2} s | {:.0} | {:.2} s | {leader_rss:.0} | {follower_rss:.0} | {:.2} s ({lost} tasks) | {churn} |\n",
                placed.as_secs_f64(),
                total as f64 / placed.as_secs_f64(),
                running.as_secs_f64(),
                replaced.as_secs_f64(),
            ))
        })
    })?;
    Ok(row)
}
