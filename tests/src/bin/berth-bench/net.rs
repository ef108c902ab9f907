//! Node networking benchmarks (issue 3): container start with and without networking in the
//! same run; network set-up plus teardown per container and one port mapping added and
//! removed, with 0 and with 1,000 existing mappings; 100 containers each publishing a port,
//! started at once.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_agent::net::firewall::{Firewall, IptablesFirewall, NetworkRules, Proto, Publish};
use berth_agent::net::ports::parse_publish;
use berth_agent::net::{NetConfig, NodeNet};
use berth_tests::TestAgent;

use super::{stat, time_cmd};

const WEB: &str = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www";

fn agent_command(a: &TestAgent, args: &[&str]) -> Command {
    a.bare_cmd(args)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The whole networking report.
pub fn bench(a: &TestAgent, runs: usize) -> anyhow::Result<String> {
    let mut report = String::from("## Node networking\n\n");
    report += &start_with_and_without(a, runs)?;
    report += &setup_and_teardown(a, runs)?;
    report += &hundred_published(a)?;
    Ok(report)
}

/// `run --rm /bin/true` without a network, on the bridge, and on the bridge with a port.
fn start_with_and_without(a: &TestAgent, runs: usize) -> anyhow::Result<String> {
    let variants: [(&str, &[&str]); 3] = [
        ("--network none", &["--network", "none"]),
        ("bridge", &[]),
        ("bridge, -p 80", &["-p", "80"]),
    ];
    let make = |v: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(v);
        args.extend(["bb", "/bin/true"]);
        agent_command(a, &args)
    };
    for (_, v) in &variants {
        for _ in 0..3 {
            time_cmd(&mut make(v))?;
        }
    }
    let mut samples = vec![Vec::new(); variants.len()];
    for i in 0..runs {
        for k in 0..variants.len() {
            let t = (i + k) % variants.len();
            samples[t].push(time_cmd(&mut make(variants[t].1))?);
        }
    }
    let stats: Vec<_> = samples.into_iter().map(stat).collect();
    // Start request to the entrypoint's exec (`run -d`, then `StartedAt`), interleaved too.
    let mut to_exec = vec![Vec::new(); variants.len()];
    for i in 0..runs {
        for k in 0..variants.len() {
            let t = (i + k) % variants.len();
            let mut args = vec!["run", "-d"];
            args.extend_from_slice(variants[t].1);
            args.extend(["bb", "sleep", "60"]);
            let t0 = berth_runtime::time::now_unix_nanos();
            let out = agent_command(a, &args).output()?;
            if !out.status.success() {
                bail!("run -d failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let started = a.inspect(&id)["State"]["StartedAt"]
                .as_str()
                .and_then(berth_runtime::time::parse_rfc3339)
                .context("StartedAt")?;
            to_exec[t].push((started - t0) as f64 / 1e6);
            a.ok(["rm", "-f", &id]);
        }
    }
    let exec_stats: Vec<_> = to_exec.into_iter().map(stat).collect();
    let mut out = String::from(
        "### Container start with and without networking (interleaved)\n\n\
         | network | start request to exec (`run -d`): p50 ms | p95 ms | `run --rm /bin/true` to exit and clean-up: p50 ms | p95 ms | runs |\n|---|---|---|---|---|---|\n",
    );
    for (((name, _), s), e) in variants.iter().zip(&stats).zip(&exec_stats) {
        out += &format!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
            e.p50, e.p95, s.p50, s.p95, s.n
        );
    }
    out += &format!(
        "\nnetworking adds to the start (p50 bridge − p50 none): {:.2} ms; with a published port: {:.2} ms. \
         To a whole `run --rm` (with the teardown at exit): {:.2} ms; with a port: {:.2} ms\n\n",
        exec_stats[1].p50 - exec_stats[0].p50,
        exec_stats[2].p50 - exec_stats[0].p50,
        stats[1].p50 - stats[0].p50,
        stats[2].p50 - stats[0].p50
    );
    Ok(out)
}

/// Attach + detach of one container (one published port), and one mapping added and removed
/// by the firewall alone, with 0 and with 1,000 existing mappings.
fn setup_and_teardown(a: &TestAgent, runs: usize) -> anyhow::Result<String> {
    let cfg = NetConfig::default();
    let net = NodeNet::open(&a.state_dir.join("net"), cfg.clone())?;
    let rules = NetworkRules {
        bridge: cfg.bridge.clone(),
        subnet: cfg.subnet,
    };
    let fw = IptablesFirewall::new();
    let spec = parse_publish("40000:80")?;
    let mut out = String::from(
        "### Network set-up and teardown per container, and one port mapping, by existing mappings\n\n\
         Set-up is `NodeNet::attach` (address, namespace, veth pair, `eth0`, route, one published port); \
         teardown is `NodeNet::detach`. The mapping rows are the firewall alone \
         (`add_new_ports` / `remove_known_ports`, one `iptables-restore` each).\n\n\
         | existing mappings | set-up p50 ms | p95 | teardown p50 ms | p95 | set-up + teardown p50 ms | add mapping p50 ms | p95 | remove mapping p50 ms | p95 |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut fillers: Vec<(String, OwnedFd)> = Vec::new();
    for existing in [0usize, 1000] {
        // 100 containers with 10 published ports each.
        while fillers.len() * 10 < existing {
            let n = fillers.len();
            let id = format!("{:064x}", 0xf111_0000u64 + n as u64);
            let base = 20000 + n * 10;
            let specs = parse_publish(&format!("{}-{}:80-89", base, base + 9))?;
            let (_, ns) = net.attach(&id, &specs).context("filler container")?;
            fillers.push((id, ns));
        }
        let published: usize = net.published()?.values().map(Vec::len).sum();
        if published != existing {
            bail!("expected {existing} existing mappings, found {published}");
        }
        let (mut up, mut down, mut total, mut add, mut rm) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            let id = format!("{:064x}", 0xbe00_0000u64 + i as u64);
            let t = Instant::now();
            let (_, ns) = net.attach(&id, &spec)?;
            let u = ms(t);
            drop(ns);
            let t = Instant::now();
            net.detach(&id)?;
            let d = ms(t);
            up.push(u);
            down.push(d);
            total.push(u + d);

            let p = [Publish {
                host_ip: None,
                host_port: 41000,
                container_ip: Ipv4Addr::new(10, 77, 255, 250),
                container_port: 80,
                proto: Proto::Tcp,
            }];
            let t = Instant::now();
            fw.add_new_ports(&rules, "bench-mapping", &p)?;
            add.push(ms(t));
            let t = Instant::now();
            fw.remove_known_ports(&rules, "bench-mapping", &p)?;
            rm.push(ms(t));
        }
        let (up, down, total, add, rm) = (stat(up), stat(down), stat(total), stat(add), stat(rm));
        out += &format!(
            "| {existing} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            up.p50, up.p95, down.p50, down.p95, total.p50, add.p50, add.p95, rm.p50, rm.p95
        );
    }
    for (id, ns) in fillers {
        drop(ns);
        net.detach(&id)?;
    }
    if !net.published()?.is_empty() || !net.addresses()?.is_empty() {
        bail!("the set-up benchmark left mappings or addresses behind");
    }
    out += "\n";
    Ok(out)
}

/// GET / on 127.0.0.1:`port`, retried for up to 10 s.
fn reachable(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut body = String::new();
            if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
                && s.read_to_string(&mut body).is_ok()
                && body.contains(" 200 ")
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// 100 containers, each publishing a random port, started at once.
fn hundred_published(a: &TestAgent) -> anyhow::Result<String> {
    let t = Instant::now();
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let mut c = agent_command(a, &["run", "-d", "-p", "80", "bb", "sh", "-c", WEB]);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            std::thread::spawn(move || c.output())
        })
        .collect();
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for h in handles {
        let o = h.join().expect("thread")?;
        if o.status.success() {
            ids.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
        } else {
            failures.push(String::from_utf8_lossy(&o.stderr).into_owned());
        }
    }
    let all_started = t.elapsed().as_secs_f64();
    let ps: serde_json::Value = serde_json::from_str(&a.ok(["ps", "-o", "json"]))?;
    let (mut ips, mut ports) = (BTreeSet::new(), BTreeSet::new());
    for c in ps.as_array().context("ps json")? {
        ips.insert(c["NetworkSettings"]["IPAddress"].to_string());
        ports.insert(
            c["NetworkSettings"]["Ports"][0]["HostPort"]
                .as_u64()
                .context("host port")? as u16,
        );
    }
    let reachable_count = ports.iter().filter(|p| reachable(**p)).count();
    let all_reachable = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut rm = a.cmd(["rm", "-f"]);
    rm.args(&ids).stdout(Stdio::null());
    rm.status()?;
    let removed = t.elapsed().as_secs_f64();
    if let Some(f) = failures.first() {
        bail!("{} of 100 runs failed, e.g.: {f}", failures.len());
    }
    Ok(format!(
        "### 100 containers each publishing a port, started at once\n\n\
         {} of 100 `run -d -p 80` succeeded in {all_started:.2} s; {} distinct addresses, {} distinct host ports; \
         {reachable_count} of {} reachable through their published port from the node's localhost \
         ({all_reachable:.2} s after the start); `rm -f` of all took {removed:.2} s\n",
        ids.len(),
        ips.len(),
        ports.len(),
        ports.len()
    ))
}
