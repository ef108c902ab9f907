//! `berth-controller-bench`: the replicated controller's benchmarks (issue 4), on three real
//! `berth-controller` processes with their default timeouts, each on its own host of the
//! harness (network namespaces on a private LAN), each with a durable store:
//!
//! * commit throughput and latency (p50, p99) of `ApplyService` for 1 and for 64 concurrent
//!   clients, sent to the leader;
//! * leader failover: from SIGKILL of the leader to the first write committed by the new
//!   leader, over several rounds.
//!
//! ```text
//! cargo build --release --bins && ./target/release/berth-controller-bench [--seconds 5] [--rounds 5]
//! ```
//!
//! Prints a Markdown report for `docs/benchmarks.md`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_controller::pki::{IssuedCert, client_config};
use berth_controller::transport::MtlsConnector;
use berth_proto::v1;
use berth_tests::cluster::{Cluster, Host};

const PORT: u16 = 7443;
type Client = v1::control_client::ControlClient<tonic::transport::Channel>;

fn arg(name: &str, default: u64) -> anyhow::Result<u64> {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .map(|n| n.parse().with_context(|| format!("{name} N")))
        .transpose()
        .map(|v| v.unwrap_or(default))
}

fn bin() -> PathBuf {
    berth_tests::target_dir().join("berth-controller")
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Creds {
    ca: String,
    admin: IssuedCert,
}

impl Creds {
    fn load(dir: &Path) -> anyhow::Result<Self> {
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).with_context(|| p.to_string());
        Ok(Self {
            ca: read("ca/ca.pem")?,
            admin: IssuedCert {
                cert_pem: read("admin/admin.pem")?,
                key_pem: read("admin/admin.key")?,
            },
        })
    }

    fn client(&self, addr: &str) -> anyhow::Result<Client> {
        let connector = MtlsConnector::new(client_config(&self.ca, &self.admin)?);
        Ok(Client::new(connector.channel(addr)?))
    }
}

fn spec(name: String) -> v1::ServiceSpec {
    v1::ServiceSpec {
        name,
        image: "bench:1".into(),
        replicas: 1,
        ..Default::default()
    }
}

/// The leader every member agrees on (asked in-process, every 5 ms), once they do.
async fn agreed_leader(creds: &Creds, addrs: &[String], not: Option<u64>) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut clients = Vec::new();
    for a in addrs {
        clients.push(creds.client(a)?);
    }
    loop {
        let mut seen = Vec::new();
        for c in clients.iter_mut() {
            let s = tokio::time::timeout(Duration::from_millis(200), c.status(v1::Empty {})).await;
            seen.push(match s {
                Ok(Ok(r)) => r.into_inner().leader_id,
                _ => None,
            });
        }
        if let Some(Some(l)) = seen.first()
            && seen.iter().all(|x| *x == Some(*l))
            && Some(*l) != not
        {
            return Ok(*l);
        }
        if Instant::now() > deadline {
            bail!("no agreed leader: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `clients` concurrent clients applying new services to `addr` for `seconds`.
async fn throughput(
    creds: &Creds,
    addr: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<String> {
    let stop = Instant::now() + Duration::from_secs(seconds);
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = creds.client(addr)?;
        let failures = failures.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < stop {
                n += 1;
                let t = Instant::now();
                let r = client
                    .apply_service(v1::ApplyServiceRequest {
                        spec: Some(spec(format!("c{clients}-{c}-{n}"))),
                        expected_version: Some(0),
                    })
                    .await;
                match r {
                    Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1e3),
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let n = all.len();
    Ok(format!(
        "| {clients} | {:.0} | {:.2} | {:.2} | {n} | {} |\n",
        n as f64 / seconds as f64,
        percentile(&mut all, 0.5),
        percentile(&mut all, 0.99),
        failures.load(Ordering::Relaxed)
    ))
}

fn main() -> anyhow::Result<()> {
    let seconds = arg("--seconds", 5)?;
    let rounds = arg("--rounds", 5)?;
    if !berth_tests::require_root("berth-controller-bench") {
        bail!("berth-controller-bench needs root");
    }
    let c = Cluster::new(4);
    // Hosts 0-2 run the members; host 3 runs the clients.
    let dirs: Vec<PathBuf> = (0..3).map(|i| c.host(i).dir.join("ctl")).collect();
    let addr = |i: usize| format!("{}:{PORT}", c.host(i).ip);
    run(Command::new(bin())
        .args(["init", "--data-dir"])
        .arg(&dirs[0])
        .args(["--id", "1", "--advertise", &addr(0)]))?;
    for i in 1..3 {
        run(Command::new(bin())
            .args(["init-member", "--from"])
            .arg(&dirs[0])
            .arg("--data-dir")
            .arg(&dirs[i])
            .args(["--id", &(i + 1).to_string(), "--advertise", &addr(i)]))?;
    }
    let bootstrap = (0..3)
        .map(|i| format!("{}={}", i + 1, addr(i)))
        .collect::<Vec<_>>()
        .join(",");
    for (i, d) in dirs.iter().enumerate() {
        let dir = d.to_str().context("utf8")?;
        let mut args = vec!["run", "--data-dir", dir];
        if i == 0 {
            args.extend(["--bootstrap", &bootstrap]);
        }
        c.host(i).spawn("controller", bin(), &args);
    }
    let creds = Creds::load(&dirs[0])?;
    let addrs: Vec<String> = (0..3).map(addr).collect();
    let client_host: &Host = c.host(3);
    let report = client_host.run(|| -> anyhow::Result<String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let leader = agreed_leader(&creds, &addrs, None).await?;
            let mut out = format!(
                "### Commit throughput and latency (`ApplyService` of a new service, sent to the leader, {seconds} s per row)\n\n\
                 | clients | commits/s | p50 ms | p99 ms | commits | failures |\n|---|---|---|---|---|---|\n"
            );
            for clients in [1usize, 64] {
                out += &throughput(&creds, &addrs[leader as usize - 1], clients, seconds).await?;
            }
            Ok(out)
        })
    })?;

    // Failover rounds: SIGKILL the leader, time until a write commits on the new one.
    let mut times = Vec::new();
    for round in 0..rounds {
        let (leader, t_ms) = client_host.run(|| -> anyhow::Result<(u64, f64)> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let leader = agreed_leader(&creds, &addrs, None).await?;
                let killed = Instant::now();
                c.host(leader as usize - 1).kill("controller");
                let rest: Vec<String> = (0..3)
                    .filter(|i| *i + 1 != leader as usize)
                    .map(addr)
                    .collect();
                // Write through a survivor (it forwards to whoever leads) until it commits.
                let mut client = creds.client(&rest[0])?;
                let mut n = 0;
                loop {
                    n += 1;
                    let r = tokio::time::timeout(
                        Duration::from_millis(500),
                        client.apply_service(v1::ApplyServiceRequest {
                            spec: Some(spec(format!("failover-{round}-{n}"))),
                            expected_version: Some(0),
                        }),
                    )
                    .await;
                    if let Ok(Ok(_)) = r {
                        break;
                    }
                    if killed.elapsed() > Duration::from_secs(30) {
                        bail!("no commit 30 s after killing the leader");
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok((leader, killed.elapsed().as_secs_f64() * 1e3))
            })
        })?;
        times.push(t_ms);
        c.host(leader as usize - 1).restart("controller");
        std::thread::sleep(Duration::from_secs(2));
    }
    let mut sorted = times.clone();
    let med = percentile(&mut sorted, 0.5);
    let max = sorted.last().copied().unwrap_or(f64::NAN);
    print!(
        "{report}\n### Leader failover (SIGKILL of the leader to the first write committed by the new leader, {rounds} rounds)\n\n\
         median {med:.0} ms, max {max:.0} ms; every round: {}\n",
        times
            .iter()
            .map(|t| format!("{t:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
