//! A berth cluster on the harness: real `berth-controller` processes on the first hosts of a
//! [`Cluster`] (`init` on host 0, `init-member` on the others, `run` everywhere), and real
//! `berth-agent node` daemons joined to them on other hosts ([`ControlPlane::start_agent`]).
//! Used by the end-to-end tests and the benchmarks alike.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_controller::pki::{IssuedCert, client_config};
use berth_controller::transport::MtlsConnector;
use berth_proto::v1;

use crate::TestAgent;
use crate::cluster::Cluster;

/// The controllers' API port (the join port is the next one).
pub const PORT: u16 = 7443;

/// A Control client.
pub type Control = v1::control_client::ControlClient<tonic::transport::Channel>;

/// The controllers started on hosts `0..n` of a harness, and what a client needs.
#[derive(Debug)]
pub struct ControlPlane {
    /// Each controller's API address (`host:PORT`), controller `i + 1` on host `i`.
    pub addrs: Vec<String>,
    /// Where agents join (host 0's join port).
    pub join_addr: String,
    /// The agent join token `init` printed.
    pub token: String,
    /// The cluster CA (PEM).
    pub ca: String,
    /// The admin client certificate.
    pub admin: IssuedCert,
}

fn bin(name: &str) -> PathBuf {
    crate::target_dir().join(name)
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl ControlPlane {
    /// Initializes a cluster of `n` controllers on hosts `0..n` of `cluster` and starts them
    /// (`name` "controller" on each host). `init_args` go to `init` (e.g. `--node-range`),
    /// `run_args` to every `run` (e.g. `--agent-heartbeat-ms 250`).
    pub fn start(
        cluster: &Cluster,
        n: usize,
        init_args: &[&str],
        run_args: &[&str],
    ) -> anyhow::Result<Self> {
        let ctl = bin("berth-controller");
        let dirs: Vec<PathBuf> = (0..n).map(|i| cluster.host(i).dir.join("ctl")).collect();
        let addrs: Vec<String> = (0..n)
            .map(|i| format!("{}:{PORT}", cluster.host(i).ip))
            .collect();
        let out = run(Command::new(&ctl)
            .args(["init", "--data-dir"])
            .arg(&dirs[0])
            .args(["--id", "1", "--advertise", &addrs[0]])
            .args(init_args))?;
        let token = out
            .lines()
            .find_map(|l| l.strip_prefix("agent join token:"))
            .map(|t| t.trim().to_owned())
            .context("`berth-controller init` printed no agent join token")?;
        for i in 1..n {
            run(Command::new(&ctl)
                .args(["init-member", "--from"])
                .arg(&dirs[0])
                .arg("--data-dir")
                .arg(&dirs[i])
                .args(["--id", &(i + 1).to_string(), "--advertise", &addrs[i]]))?;
        }
        let bootstrap = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        for (i, d) in dirs.iter().enumerate() {
            let mut args = vec!["run", "--data-dir", d.to_str().context("utf8 path")?];
            args.extend(run_args);
            if i == 0 {
                args.extend(["--bootstrap", &bootstrap]);
            }
            cluster.host(i).spawn("controller", &ctl, &args);
        }
        let read =
            |p: &str| std::fs::read_to_string(dirs[0].join(p)).with_context(|| format!("read {p}"));
        Ok(Self {
            join_addr: format!("{}:{}", cluster.host(0).ip, PORT + 1),
            addrs,
            token,
            ca: read("ca/ca.pem")?,
            admin: IssuedCert {
                cert_pem: read("admin/admin.pem")?,
                key_pem: read("admin/admin.key")?,
            },
        })
    }

    /// A Control client of the controller at `addr` (made lazily: it connects on first use,
    /// from the network namespace of the thread that uses it).
    pub fn client(&self, addr: &str) -> anyhow::Result<Control> {
        let connector = MtlsConnector::new(client_config(&self.ca, &self.admin)?)
            .with_connect_timeout(Duration::from_secs(5));
        Ok(Control::new(connector.channel(addr)?).max_decoding_message_size(256 << 20))
    }

    /// The id of the leader as the first controller that knows one says, waiting up to
    /// `timeout` for an election.
    pub async fn leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            for a in &self.addrs {
                if let Ok(mut c) = self.client(a)
                    && let Ok(Ok(s)) =
                        tokio::time::timeout(Duration::from_secs(1), c.status(v1::Empty {})).await
                    && let Some(l) = s.into_inner().leader_id
                {
                    return Ok(l);
                }
            }
            if Instant::now() > deadline {
                bail!("no controller knows a leader after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Joins a `berth-agent` on host `i` (hostname `h<i>`), imports a busybox image
    /// `busybox:1` into it, and starts its `node` daemon (`name` "agent" on the host) with
    /// `node_args` (e.g. `--label disk=ssd`). The agent enters a mount namespace held by a
    /// sleeper of the host's own ("mounts"), so that every restart of it shares its
    /// containers' mounts and they all go with the host.
    pub fn start_agent(
        &self,
        cluster: &Cluster,
        i: usize,
        node_args: &[&str],
    ) -> anyhow::Result<TestAgent> {
        let host = cluster.host(i);
        let agent =
            TestAgent::new(bin("berth-agent"), bin("berth-monitor")).in_netns(host.ns.clone());
        agent.busybox_image("busybox:1");
        agent.ok([
            "join",
            "--token",
            &self.token,
            "--join-addr",
            &self.join_addr,
            "--hostname",
            &host.name,
        ]);
        host.spawn(
            "mounts",
            "unshare",
            &["--mount", "--propagation", "private", "sleep", "100000"],
        );
        let holder = wait_unshared(host.pid("mounts").context("the sleeper runs")?)?;
        let mnt = format!("--mount=/proc/{holder}/ns/mnt");
        let state = agent.state_dir.to_str().context("utf8 path")?.to_owned();
        let monitor = agent.monitor_bin.to_str().context("utf8 path")?.to_owned();
        let agent_bin = agent.agent_bin.to_str().context("utf8 path")?.to_owned();
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
        ];
        args.extend(node_args);
        host.spawn("agent", "nsenter", &args);
        Ok(agent)
    }
}

/// `pid`, once the `unshare` it is has entered its new mount namespace (it then execs its
/// command, so the pid is the sleeper's).
fn wait_unshared(pid: u32) -> anyhow::Result<u32> {
    let own = std::fs::read_link("/proc/self/ns/mnt")?;
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
            && ns != own
        {
            return Ok(pid);
        }
        if Instant::now() > until {
            bail!("unshare (pid {pid}) never entered a mount namespace");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
