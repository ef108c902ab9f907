//! `berth-bench`: the container runtime's benchmarks, side by side with crun, runc and
//! Docker when they are installed, in the same run. Run as root from a release build:
//!
//! ```text
//! cargo build --release --bins && ./target/release/berth-bench [--runs 100] [--settle-ms 0]
//! ```
//!
//! Prints a Markdown report (medians and p95 of each figure) for `docs/benchmarks.md`.
//!
//! Everything berth does runs in a network namespace of the bench's own (the process joins
//! it first), so the node bridge and the rules it creates never touch the machine's network.

mod net;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_tests::{TestAgent, busybox_rootfs, require_root_and_busybox, target_dir};

/// Makes the command for run number `i` of one tool.
type CommandFactory = Box<dyn Fn(usize) -> Command>;

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

pub(crate) struct Stat {
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) n: usize,
}

pub(crate) fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    Stat {
        p50: percentile(&v, 0.5),
        p95: percentile(&v, 0.95),
        n: v.len(),
    }
}

pub(crate) fn time_cmd(cmd: &mut Command) -> anyhow::Result<f64> {
    let t = Instant::now();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
    }
    Ok(ms)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// An OCI bundle for crun/runc with the same busybox root file system, running `/bin/true`.
fn oci_bundle(dir: &Path, rootfs_src: &Path, tool: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let st = Command::new("cp")
        .arg("-a")
        .arg(rootfs_src)
        .arg(dir.join("rootfs"))
        .status()?;
    if !st.success() {
        bail!("copy rootfs");
    }
    let st = Command::new(tool).arg("spec").current_dir(dir).status()?;
    if !st.success() {
        bail!("{} spec failed", tool.display());
    }
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    cfg["process"]["terminal"] = false.into();
    cfg["process"]["args"] = serde_json::json!(["/bin/true"]);
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg)?)?;
    Ok(())
}

/// crun refuses a v1 host that also mounts a cgroup2 hierarchy with controllers ("hybrid
/// mode"). The benchmark moves itself into a private mount namespace without that mount, so
/// every runtime it starts (berth included) sees the same plain v1 layout; the host is untouched.
fn hide_hybrid_unified_mount() -> anyhow::Result<()> {
    let unified = Path::new("/sys/fs/cgroup/unified");
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    if !mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/cgroup/unified"))
    {
        return Ok(());
    }
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("unshare mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    umount2(unified, MntFlags::MNT_DETACH).context("unmount /sys/fs/cgroup/unified")?;
    eprintln!(
        "note: benchmarking in a private mount namespace without /sys/fs/cgroup/unified (crun refuses hybrid mode)"
    );
    Ok(())
}

fn rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Proportional set size: shared pages (libc, the binary) divided among the processes
/// mapping them, the honest "cost per container" when many monitors run.
fn pss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() -> anyhow::Result<()> {
    let settle = Duration::from_millis(
        std::env::args()
            .skip_while(|a| a != "--settle-ms")
            .nth(1)
            .map(|n| n.parse().context("--settle-ms N"))
            .transpose()?
            .unwrap_or(0),
    );
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .map(|n| n.parse().context("--runs N"))
        .transpose()?
        .unwrap_or(100);
    if !require_root_and_busybox("berth-bench") {
        bail!("berth-bench needs root and busybox-static");
    }
    hide_hybrid_unified_mount()?;
    let bin = target_dir();
    let mut a = TestAgent::new(bin.join("berth-agent"), bin.join("berth-monitor"));
    a.isolate_mounts = false;
    // Every thread and process from here on is in the agent's namespace.
    nix::sched::setns(a.netns.fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .context("join the bench's network namespace")?;
    let rootfs = a.tmp.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    a.ok([
        "image",
        "import-rootfs",
        rootfs.to_str().expect("utf8"),
        "bb",
        "--cmd",
        "sh",
    ]);

    let mut report = String::new();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    report += &format!(
        "Machine: {} CPUs, kernel {}, cgroup {}; {runs} runs each, interleaved in rotating order, {} ms pause after each run.\n\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel.trim(),
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            "v2"
        } else {
            "v1"
        },
        settle.as_millis(),
    );

    // 1. Run /bin/true to exit, cleaned up.
    let mut tools: Vec<(String, CommandFactory)> = Vec::new();
    {
        let (ab, mb, sd, cp) = (
            a.agent_bin.clone(),
            a.monitor_bin.clone(),
            a.state_dir.clone(),
            a.cgroup_parent.clone(),
        );
        tools.push((
            "berth-agent run --rm --network none".into(),
            Box::new(move |_| {
                let mut c = Command::new(&ab);
                c.arg("--state-dir")
                    .arg(&sd)
                    .arg("--cgroup-parent")
                    .arg(&cp)
                    .arg("--monitor")
                    .arg(&mb);
                // No network, like the other runtimes here; networking is measured below.
                c.args(["run", "--rm", "--network", "none", "bb", "/bin/true"]);
                c
            }),
        ));
    }
    for name in ["crun", "runc"] {
        if let Some(tool) = which(name) {
            let bundle = a.tmp.path().join(format!("bundle-{name}"));
            match oci_bundle(&bundle, &rootfs, &tool) {
                Ok(()) => tools.push((
                    format!("{name} run"),
                    Box::new(move |i| {
                        let mut c = Command::new(&tool);
                        c.arg("run")
                            .arg("--bundle")
                            .arg(&bundle)
                            .arg(format!("bench-{}-{i}", std::process::id()));
                        c
                    }),
                )),
                Err(e) => eprintln!("{name}: cannot prepare a bundle: {e}"),
            }
        } else {
            eprintln!("{name} is not installed: not compared");
        }
    }
    let docker_ok = which("docker").is_some()
        && Command::new("docker")
            .arg("info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if docker_ok {
        let tar = a.tmp.path().join("rootfs.tar");
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()?;
        Command::new("docker")
            .args(["import"])
            .arg(&tar)
            .arg("berth-bench-busybox")
            .stdout(Stdio::null())
            .status()?;
        tools.push((
            "docker run --rm".into(),
            Box::new(|_| {
                let mut c = Command::new("docker");
                c.args([
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "berth-bench-busybox",
                    "/bin/true",
                ]);
                c
            }),
        ));
    } else {
        eprintln!("docker daemon not reachable: not compared");
    }
    // Warm up each tool, then interleave runs so that noise hits all alike.
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); tools.len()];
    for (t, (_, mk)) in tools.iter().enumerate() {
        for w in 0..3 {
            time_cmd(&mut mk(1_000_000 + t * 10 + w))?;
        }
    }
    // The order rotates every round, so that each tool follows each other one (Docker's
    // asynchronous teardown included) equally often.
    for i in 0..runs {
        for k in 0..tools.len() {
            let t = (i + k) % tools.len();
            samples[t].push(time_cmd(&mut (tools[t].1)(i))?);
            // Let asynchronous teardown (Docker's shim and daemon, the kernel's namespace
            // clean-up) finish before the next tool runs: every run starts on a quiet machine.
            std::thread::sleep(settle);
        }
    }
    report += "### Run `/bin/true` to exit and clean-up\n\n| runtime | p50 ms | p95 ms | runs |\n|---|---|---|---|\n";
    let stats: Vec<Stat> = samples.into_iter().map(stat).collect();
    for ((name, _), s) in tools.iter().zip(&stats) {
        report += &format!("| {name} | {:.2} | {:.2} | {} |\n", s.p50, s.p95, s.n);
    }
    for (i, (name, _)) in tools.iter().enumerate().skip(1) {
        report += &format!(
            "\nberth p50 / {name} p50 = {:.3}",
            stats[0].p50 / stats[i].p50
        );
    }
    report += "\n\n";
    if !a.ok(["ps", "-a", "-q"]).is_empty() || !a.container_cgroups().is_empty() {
        bail!("containers or cgroups left behind after --rm runs");
    }

    // 2. Start request to the entrypoint's exec, detached.
    let mut to_exec = Vec::new();
    for _ in 0..runs.min(50) {
        let t0 = berth_runtime::time::now_unix_nanos();
        let id = a.ok(["run", "-d", "bb", "sleep", "60"]);
        let v = a.inspect(id.trim());
        let started = v["State"]["StartedAt"]
            .as_str()
            .and_then(berth_runtime::time::parse_rfc3339)
            .context("StartedAt")?;
        to_exec.push((started - t0) as f64 / 1e6);
        a.ok(["rm", "-f", id.trim()]);
    }
    let s = stat(to_exec);
    report += &format!(
        "### Start request to the entrypoint's exec (`run -d`, {} runs)\n\np50 {:.2} ms, p95 {:.2} ms\n\n",
        s.n, s.p50, s.p95
    );

    // 3. Memory: the agent daemon idle, and the monitor per container.
    let mut serve = a
        .cmd(["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    let agent_rss = rss_kib(serve.id() as i32).unwrap_or(0);
    serve.kill()?;
    serve.wait()?;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(a.ok(["run", "-d", "bb", "sleep", "60"]).trim().to_string());
    }
    std::thread::sleep(Duration::from_millis(300));
    let (mut mon, mut mon_pss) = (Vec::new(), Vec::new());
    for id in &ids {
        let pid = a.inspect(id)["State"]["MonitorPid"]
            .as_i64()
            .context("monitor pid")?;
        mon.push(rss_kib(pid as i32).context("monitor RSS")? as f64);
        mon_pss.push(pss_kib(pid as i32).context("monitor PSS")? as f64);
    }
    let ms = stat(mon);
    let pss = stat(mon_pss);
    report += &format!(
        "### Memory\n\nagent daemon (`berth-agent serve`) idle RSS: {:.1} MiB; monitor per container (10 containers): RSS p50 {:.2} MiB (max {:.2}), PSS p50 {:.2} MiB\n\n",
        agent_rss as f64 / 1024.0,
        ms.p50 / 1024.0,
        ms.p95 / 1024.0,
        pss.p50 / 1024.0
    );
    for id in &ids {
        a.ok(["rm", "-f", id]);
    }

    // 4. 100 containers started at once.
    let t = Instant::now();
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let mut c = a.cmd(["run", "-d", "bb", "sleep", "60"]);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            std::thread::spawn(move || c.output())
        })
        .collect();
    let mut started = Vec::new();
    for h in handles {
        let out = h.join().expect("thread")?;
        if !out.status.success() {
            bail!(
                "a concurrent run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        started.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let all_running = t.elapsed().as_secs_f64();
    let running = a.ok(["ps", "-q"]).lines().count();
    let t = Instant::now();
    let mut rm = a.cmd(["rm", "-f"]);
    rm.args(&started).stdout(Stdio::null());
    rm.status()?;
    let removed = t.elapsed().as_secs_f64();
    report += &format!(
        "### 100 containers started at once\n\nall 100 running (every `run -d` returned after the entrypoint's exec) in {all_running:.2} s; `ps` counts {running} running; `rm -f` of all 100 took {removed:.2} s\n"
    );
    report += "\n";
    report += &net::bench(&a, runs)?;
    print!("{report}");
    Ok(())
}
