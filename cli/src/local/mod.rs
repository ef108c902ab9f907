//! The embedded default: a single-node cluster on this host — one controller and one node
//! agent running in the background, state under one directory (`/var/lib/berth`).
//!
//! [`up`] is idempotent: each step is skipped when its result is already there (the
//! controller's data initialised, the node joined, each daemon running), so it starts what
//! is missing and waits until the controller has a leader and the node is ready. [`down`]
//! stops the node agent, removes every container it ran and what it set up on the host
//! (`berth-agent teardown`: bridge, iptables chains and rules, cgroup parent), then stops
//! the controller; the data stays (the next `up` brings the services back) unless `purge`.
//!
//! Layout of the data directory:
//!
//! | path | what |
//! |---|---|
//! | `controller/` | the controller's data (`berth-controller --data-dir`) |
//! | `agent/` | the node agent's state (`berth-agent --state-dir`) |
//! | `agent-token` | the agent join token `init` printed (mode 0600) |
//! | `controller-token` | the controller join token (mode 0600) |
//! | `agent-labels` | the node's labels (`KEY=VALUE` a line), given to each agent start |
//! | `controller.pid`, `agent.pid` | the daemons' process ids |
//! | `controller.log`, `agent.log` | their output |
//!
//! [`up`] is also `berth cluster init`: the same steps with a routable advertised address
//! (and optionally no agent); [`cluster`] has the other cluster-formation steps (`join`,
//! `leave`, the stored tokens).

pub mod addr;
pub mod cluster;
mod daemon;
mod ready;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use daemon::Daemon;

/// Where the embedded default keeps its state.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/berth";
/// Where its controller listens (the join listener takes the next port).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7443";

/// How [`up`] and [`down`] run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The controller's advertised address, `HOST:PORT` (its join listener is on
    /// `PORT + 1`); an existing cluster keeps the address it was created with.
    pub addr: String,
    /// Whether `addr` was given by the user (then it must match an existing cluster's).
    pub addr_given: bool,
    /// Whether to run a node agent on this host too.
    pub agent: bool,
    /// The node's labels (`berth-agent node --label`); empty: the stored ones.
    pub labels: Vec<(String, String)>,
    /// The node's name (default: this host's).
    pub hostname: Option<String>,
    /// The node agent's cgroup parent (`berth-agent --cgroup-parent`).
    pub cgroup_parent: String,
    /// Where `berth-controller`, `berth-agent` and `berth-monitor` are.
    pub bin_dir: PathBuf,
    /// How long to wait for the cluster to be ready.
    pub timeout: Duration,
    /// How a new cluster's node subnets reach each other (`vxlan` or `routed`); `None`:
    /// the controller's default (vxlan).
    pub overlay: Option<String>,
}

impl Options {
    /// The defaults, with the daemons' binaries next to this executable.
    pub fn new() -> Result<Self, LocalError> {
        let exe = std::env::current_exe().map_err(|e| LocalError::io("find", "berth", e))?;
        let bin_dir = exe
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Options {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            addr: DEFAULT_ADDR.into(),
            addr_given: false,
            agent: true,
            labels: Vec::new(),
            hostname: None,
            cgroup_parent: "berth".into(),
            bin_dir,
            timeout: Duration::from_secs(30),
            overlay: None,
        })
    }

    fn controller_dir(&self) -> PathBuf {
        self.data_dir.join("controller")
    }

    fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }

    fn bin(&self, name: &str) -> Result<PathBuf, LocalError> {
        let p = self.bin_dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(LocalError::MissingBinary { path: p })
        }
    }

    /// The join listener's address: the controller's host, the next port.
    fn join_addr(&self) -> Result<String, LocalError> {
        addr::join_addr(&self.addr)
    }

    fn token_path(&self, role: TokenRole) -> PathBuf {
        self.data_dir.join(format!("{}-token", role.as_str()))
    }

    /// The credentials of the admin certificate `init` made, for the CLI's context.
    pub fn credentials(&self) -> Credentials {
        let c = self.controller_dir();
        Credentials {
            endpoint: self.addr.clone(),
            ca: c.join("ca/ca.pem"),
            cert: c.join("admin/admin.pem"),
            key: c.join("admin/admin.key"),
        }
    }
}

/// How the CLI reaches the embedded cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The controller, `host:port`.
    pub endpoint: String,
    /// The cluster CA's certificate.
    pub ca: PathBuf,
    /// The admin certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// What [`up`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpReport {
    /// The cluster was created now.
    pub initialised: bool,
    /// The node joined now.
    pub joined: bool,
    /// The controller was started now (it was not running).
    pub started_controller: bool,
    /// The node agent was started now.
    pub started_agent: bool,
    /// The node's hostname as the cluster knows it (empty without an agent).
    pub node: String,
    /// The controller's advertised address.
    pub addr: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// What [`down`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownReport {
    /// The containers removed.
    pub containers: usize,
    /// The agent was running and was stopped.
    pub stopped_agent: bool,
    /// The controller was running and was stopped.
    pub stopped_controller: bool,
    /// The data directory was removed.
    pub purged: bool,
}

/// Whose join token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenRole {
    /// Node agents run the tasks.
    Agent,
    /// Controllers hold the cluster's state (Raft members).
    Controller,
}

impl TokenRole {
    /// `agent` or `controller`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Agent => "agent",
            TokenRole::Controller => "controller",
        }
    }
}

/// Why [`up`], [`down`] or a [`cluster`] step failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Not root.
    #[error(
        "`berth {0}` runs containers and changes the host's network: run it as root (e.g. with sudo)"
    )]
    NotRoot(&'static str),
    /// The join token is malformed.
    #[error(
        "the join token is not valid: {reason}; copy it whole from `berth cluster token agent` (or `controller`) on a controller"
    )]
    BadToken {
        /// What is wrong with it.
        reason: String,
    },
    /// A join address cannot be reached.
    #[error(
        "cannot reach the controller's join listener at {addr} (the port after HOST:PORT): {reason}; check the address, that the controller runs, and that both ports are open"
    )]
    Unreachable {
        /// The join listener's address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// This host is already part of (another) cluster.
    #[error("this host is already part of a cluster ({what}, in {}); run `berth cluster leave` first", dir.display())]
    AlreadyMember {
        /// What it is already.
        what: String,
        /// The data directory.
        dir: PathBuf,
    },
    /// This host is part of no cluster.
    #[error("this host is not part of a cluster: {} holds no controller or node (give --data-dir if it lives elsewhere)", dir.display())]
    NotMember {
        /// The data directory.
        dir: PathBuf,
    },
    /// Leaving would destroy or stall the cluster.
    #[error("{0}; `berth cluster leave --force` leaves anyway")]
    Unsafe(String),
    /// No stored token for a role.
    #[error("no {role} join token is stored in {}: the cluster keeps only its hash; `berth cluster token {role} --rotate` makes a new one (the old one stops working)", dir.display())]
    NoToken {
        /// The role.
        role: &'static str,
        /// The data directory.
        dir: PathBuf,
    },
    /// A daemon's binary is missing.
    #[error("{} not found: berth expects its daemons next to the `berth` binary (build them with `cargo build --release`)", path.display())]
    MissingBinary {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The address is not `host:port`.
    #[error("{0:?} is not HOST:PORT (e.g. 192.168.1.10:7443)")]
    BadAddr(String),
    /// No routable address was found for this host.
    #[error("cannot pick this host's address ({0}); give it with --advertise HOST:PORT")]
    NoAddress(String),
    /// A step's command failed.
    #[error("{step} failed ({status}): {output}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// How the command ended.
        status: String,
        /// Its output, trimmed.
        output: String,
    },
    /// A daemon exited while `up` waited for it.
    #[error("{name} exited during start-up; the end of {}:\n{tail}", log.display())]
    DaemonExited {
        /// Which.
        name: &'static str,
        /// Its log.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// The cluster was not ready in time.
    #[error("the cluster was not ready after {waited:?}: {why} (see {} and {})", controller_log.display(), agent_log.display())]
    NotReady {
        /// How long `up` waited.
        waited: Duration,
        /// What was missing.
        why: String,
        /// The controller's log.
        controller_log: PathBuf,
        /// The agent's log.
        agent_log: PathBuf,
    },
    /// A file operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl LocalError {
    fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LocalError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

fn need_root(command: &'static str) -> Result<(), LocalError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(LocalError::NotRoot(command))
    }
}

/// Runs `cmd` to completion; its stdout, or a [`LocalError::Step`] with its output.
fn run_step(step: &'static str, cmd: &mut Command) -> Result<String, LocalError> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| LocalError::io("run", format!("{:?}", cmd.get_program()), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(LocalError::Step {
        step,
        status: out.status.to_string(),
        output: format!("{}{}", stderr.trim(), stdout.trim()),
    })
}

/// Starts what is missing of the cluster on this host — `berth up` and `berth cluster
/// init`: the controller (created as member 1 and bootstrapped when new), then, unless
/// `opts.agent` is off, this host's node agent — and waits until it is ready. `command`
/// names the command for messages.
pub fn up(opts: &Options, command: &'static str) -> Result<UpReport, LocalError> {
    need_root(command)?;
    let started = Instant::now();
    let controller_bin = opts.bin("berth-controller")?;
    let agent_bin = opts.bin("berth-agent")?;
    opts.bin("berth-monitor")?;
    let mut report = UpReport::default();
    let ctl_dir = opts.controller_dir();
    let mut opts = opts.clone();
    match cluster::controller_advertise(&ctl_dir)? {
        Some(existing) if opts.addr_given && existing != opts.addr => {
            return Err(LocalError::AlreadyMember {
                what: format!("a controller advertised at {existing}, not {}", opts.addr),
                dir: opts.data_dir.clone(),
            });
        }
        Some(existing) => opts.addr = existing,
        None if cluster::agent_joined(&opts.agent_dir()) => {
            return Err(LocalError::AlreadyMember {
                what: "a node of another cluster's controllers".into(),
                dir: opts.data_dir.clone(),
            });
        }
        None => {}
    }
    let opts = &opts;
    report.addr = opts.addr.clone();
    fs::create_dir_all(&opts.data_dir).map_err(|e| LocalError::io("create", &opts.data_dir, e))?;

    if !ctl_dir.join("cluster.json").exists() {
        let step = "creating the cluster (berth-controller init)";
        let out = run_step(
            step,
            Command::new(&controller_bin)
                .arg("init")
                .arg("--data-dir")
                .arg(&ctl_dir)
                .args(["--advertise", &opts.addr])
                .args(opts.overlay.iter().flat_map(|o| ["--overlay", o.as_str()])),
        )?;
        for role in [TokenRole::Agent, TokenRole::Controller] {
            let label = format!("{} join token:", role.as_str());
            let token = out
                .lines()
                .find_map(|l| l.strip_prefix(label.as_str()))
                .map(|t| t.trim().to_owned())
                .ok_or_else(|| LocalError::Step {
                    step,
                    status: format!("no {} printed", label.trim_end_matches(':')),
                    output: out.clone(),
                })?;
            write_private(&opts.token_path(role), &token)?;
        }
        report.initialised = true;
    }

    let controller = Daemon::new("controller", &opts.data_dir);
    if !controller.running() {
        let mut cmd = Command::new(&controller_bin);
        cmd.arg("run").arg("--data-dir").arg(&ctl_dir);
        // Only the first member bootstraps (a no-op once its log exists); a member that
        // joined asks to be added instead.
        if cluster::member_id(&ctl_dir)? == Some(1) {
            cmd.args(["--bootstrap", &format!("1={}", opts.addr)]);
        }
        controller.start(&mut cmd)?;
        report.started_controller = true;
    }
    let client = ready::Client::new(&opts.credentials())?;
    ready::wait_leader(&client, &controller, opts, started)?;
    if !opts.agent {
        report.elapsed = started.elapsed();
        return Ok(report);
    }

    let token_path = opts.token_path(TokenRole::Agent);
    if !cluster::agent_joined(&opts.agent_dir()) {
        let token = fs::read_to_string(&token_path)
            .map_err(|e| LocalError::io("read the agent join token from", &token_path, e))?;
        agent_join(opts, &agent_bin, &opts.join_addr()?, token.trim())?;
        report.joined = true;
    }
    let agent = Daemon::new("agent", &opts.data_dir);
    report.started_agent = start_agent(opts, &agent_bin, &agent)?;
    let node_id = cluster::agent_node_id(&opts.agent_dir())?;
    report.node = ready::wait_node(&client, &node_id, &agent, &controller, opts, started)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A `berth-agent` command on this data directory's agent state and cgroup parent.
fn agent_cmd(opts: &Options, agent_bin: &Path) -> Command {
    let mut cmd = Command::new(agent_bin);
    cmd.arg("--state-dir")
        .arg(opts.agent_dir())
        .args(["--cgroup-parent", &opts.cgroup_parent]);
    cmd
}

/// `berth-agent join` through the join listener `join_addr`; stores the labels.
fn agent_join(
    opts: &Options,
    agent_bin: &Path,
    join_addr: &str,
    token: &str,
) -> Result<(), LocalError> {
    let mut cmd = agent_cmd(opts, agent_bin);
    cmd.args(["join", "--join-addr", join_addr])
        .env("BERTH_JOIN_TOKEN", token);
    if let Some(h) = &opts.hostname {
        cmd.args(["--hostname", h]);
    }
    run_step("joining this host as a node (berth-agent join)", &mut cmd)?;
    Ok(())
}

/// Starts the node agent unless it runs (with the given labels, else the stored ones; the
/// given ones are stored). Answers whether it was started.
fn start_agent(opts: &Options, agent_bin: &Path, agent: &Daemon) -> Result<bool, LocalError> {
    let labels_path = opts.data_dir.join("agent-labels");
    let labels: Vec<String> = if opts.labels.is_empty() {
        fs::read_to_string(&labels_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        let labels: Vec<String> = opts
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        write_private(&labels_path, &(labels.join("\n") + "\n"))?;
        labels
    };
    if agent.running() {
        return Ok(false);
    }
    let mut cmd = agent_cmd(opts, agent_bin);
    cmd.arg("node");
    for l in &labels {
        cmd.args(["--label", l]);
    }
    agent.start(&mut cmd)?;
    Ok(true)
}

/// Stops the node agent and removes its containers and host set-up (`berth-agent
/// teardown`). Answers whether it ran and how many containers were removed.
fn remove_agent(opts: &Options) -> Result<(bool, usize), LocalError> {
    let agent = Daemon::new("agent", &opts.data_dir);
    let stopped = agent.stop(Duration::from_secs(10))?;
    if !opts.agent_dir().exists() {
        return Ok((stopped, 0));
    }
    let agent_bin = opts.bin("berth-agent")?;
    let ids: Vec<String> = run_step(
        "listing the node's containers (berth-agent ps)",
        agent_cmd(opts, &agent_bin).args(["ps", "-a", "-q"]),
    )?
    .split_whitespace()
    .map(str::to_owned)
    .collect();
    if !ids.is_empty() {
        run_step(
            "removing the node's containers (berth-agent rm)",
            agent_cmd(opts, &agent_bin).args(["rm", "-f"]).args(&ids),
        )?;
    }
    run_step(
        "removing berth's network and cgroup set-up (berth-agent teardown)",
        agent_cmd(opts, &agent_bin).arg("teardown"),
    )?;
    Ok((stopped, ids.len()))
}

/// Stops the cluster on this host: the agent, its containers and host set-up, the
/// controller; removes the data directory when `purge`.
pub fn down(opts: &Options, purge: bool) -> Result<DownReport, LocalError> {
    need_root("down")?;
    let mut report = DownReport::default();
    (report.stopped_agent, report.containers) = remove_agent(opts)?;
    let controller = Daemon::new("controller", &opts.data_dir);
    report.stopped_controller = controller.stop(Duration::from_secs(10))?;
    if purge && opts.data_dir.exists() {
        fs::remove_dir_all(&opts.data_dir)
            .map_err(|e| LocalError::io("remove", &opts.data_dir, e))?;
        report.purged = true;
    }
    Ok(report)
}

/// Writes `text` to `path`, readable by its owner only (from its creation on).
fn write_private(path: &Path, text: &str) -> Result<(), LocalError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| LocalError::io("write", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| LocalError::io("set the mode of", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_listener_is_on_the_next_port() {
        let mut o = Options::new().unwrap();
        assert_eq!(o.join_addr().unwrap(), "127.0.0.1:7444");
        o.addr = "10.0.0.1:65535".into();
        assert!(matches!(o.join_addr(), Err(LocalError::BadAddr(_))));
        o.addr = "nope".into();
        assert!(matches!(o.join_addr(), Err(LocalError::BadAddr(_))));
    }

    #[test]
    fn a_missing_daemon_binary_is_named_with_what_to_do() {
        let mut o = Options::new().unwrap();
        o.bin_dir = PathBuf::from("/nonexistent");
        let e = o.bin("berth-controller").unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/berth-controller") && e.contains("cargo build"),
            "{e}"
        );
    }
}
