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
//! | `controller.pid`, `agent.pid` | the daemons' process ids |
//! | `controller.log`, `agent.log` | their output |

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
    /// The controller's address, `127.0.0.1:PORT` (its join listener is on `PORT + 1`).
    pub addr: String,
    /// The node agent's cgroup parent (`berth-agent --cgroup-parent`).
    pub cgroup_parent: String,
    /// Where `berth-controller`, `berth-agent` and `berth-monitor` are.
    pub bin_dir: PathBuf,
    /// How long to wait for the cluster to be ready.
    pub timeout: Duration,
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
            cgroup_parent: "berth".into(),
            bin_dir,
            timeout: Duration::from_secs(30),
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
        let (host, port) = self
            .addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?.checked_add(1)?)))
            .ok_or_else(|| LocalError::BadAddr(self.addr.clone()))?;
        Ok(format!("{host}:{port}"))
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
    /// The node's hostname as the cluster knows it.
    pub node: String,
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

/// Why [`up`] or [`down`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Not root.
    #[error(
        "`berth up` and `berth down` run containers and change the host's network: run them as root"
    )]
    NotRoot,
    /// A daemon's binary is missing.
    #[error("{} not found: berth expects its daemons next to the `berth` binary (build them with `cargo build --release`)", path.display())]
    MissingBinary {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The address is not `host:port`.
    #[error("{0:?} is not host:port")]
    BadAddr(String),
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

fn need_root() -> Result<(), LocalError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(LocalError::NotRoot)
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

/// Starts what is missing of the single-node cluster and waits until it is ready.
pub fn up(opts: &Options) -> Result<UpReport, LocalError> {
    need_root()?;
    let started = Instant::now();
    let controller_bin = opts.bin("berth-controller")?;
    let agent_bin = opts.bin("berth-agent")?;
    opts.bin("berth-monitor")?;
    let mut report = UpReport::default();
    let ctl_dir = opts.controller_dir();
    fs::create_dir_all(&opts.data_dir).map_err(|e| LocalError::io("create", &opts.data_dir, e))?;
    let token_path = opts.data_dir.join("agent-token");

    if !ctl_dir.join("cluster.json").exists() {
        let out = run_step(
            "creating the cluster (berth-controller init)",
            Command::new(&controller_bin)
                .arg("init")
                .arg("--data-dir")
                .arg(&ctl_dir)
                .args(["--advertise", &opts.addr]),
        )?;
        let token = out
            .lines()
            .find_map(|l| l.strip_prefix("agent join token:"))
            .map(|t| t.trim().to_owned())
            .ok_or_else(|| LocalError::Step {
                step: "creating the cluster (berth-controller init)",
                status: "no agent join token printed".into(),
                output: out.clone(),
            })?;
        write_private(&token_path, &token)?;
        report.initialised = true;
    }

    let controller = Daemon::new("controller", &opts.data_dir);
    if !controller.running() {
        let bootstrap = format!("1={}", opts.addr);
        controller.start(
            Command::new(&controller_bin)
                .arg("run")
                .arg("--data-dir")
                .arg(&ctl_dir)
                .args(["--bootstrap", &bootstrap]),
        )?;
        report.started_controller = true;
    }
    let client = ready::Client::new(&opts.credentials())?;
    ready::wait_leader(&client, &controller, opts, started)?;

    let agent_dir = opts.agent_dir();
    let agent_args = |cmd: &mut Command| {
        cmd.arg("--state-dir")
            .arg(&agent_dir)
            .args(["--cgroup-parent", &opts.cgroup_parent]);
    };
    if !agent_dir.join("node").join("node.json").exists() {
        let token = fs::read_to_string(&token_path)
            .map_err(|e| LocalError::io("read the agent join token from", &token_path, e))?;
        let mut cmd = Command::new(&agent_bin);
        agent_args(&mut cmd);
        cmd.args(["join", "--join-addr", &opts.join_addr()?])
            .env("BERTH_JOIN_TOKEN", token.trim());
        run_step("joining this host as a node (berth-agent join)", &mut cmd)?;
        report.joined = true;
    }
    let agent = Daemon::new("agent", &opts.data_dir);
    if !agent.running() {
        let mut cmd = Command::new(&agent_bin);
        agent_args(&mut cmd);
        cmd.arg("node");
        agent.start(&mut cmd)?;
        report.started_agent = true;
    }
    report.node = ready::wait_node(&client, &agent, &controller, opts, started)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Stops the single-node cluster: the agent, its containers and host set-up, the
/// controller; removes the data directory when `purge`.
pub fn down(opts: &Options, purge: bool) -> Result<DownReport, LocalError> {
    need_root()?;
    let mut report = DownReport::default();
    let agent = Daemon::new("agent", &opts.data_dir);
    report.stopped_agent = agent.stop(Duration::from_secs(10))?;
    let agent_dir = opts.agent_dir();
    if agent_dir.exists() {
        let agent_bin = opts.bin("berth-agent")?;
        let agent_cmd = |args: &[&str]| {
            let mut c = Command::new(&agent_bin);
            c.arg("--state-dir")
                .arg(&agent_dir)
                .args(["--cgroup-parent", &opts.cgroup_parent])
                .args(args);
            c
        };
        let ids: Vec<String> = run_step(
            "listing the node's containers (berth-agent ps)",
            &mut agent_cmd(&["ps", "-a", "-q"]),
        )?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            run_step(
                "removing the node's containers (berth-agent rm)",
                &mut agent_cmd(&args),
            )?;
        }
        report.containers = ids.len();
        run_step(
            "removing berth's network and cgroup set-up (berth-agent teardown)",
            &mut agent_cmd(&["teardown"]),
        )?;
    }
    let controller = Daemon::new("controller", &opts.data_dir);
    report.stopped_controller = controller.stop(Duration::from_secs(10))?;
    if purge && opts.data_dir.exists() {
        fs::remove_dir_all(&opts.data_dir)
            .map_err(|e| LocalError::io("remove", &opts.data_dir, e))?;
        report.purged = true;
    }
    Ok(report)
}

/// Writes `text` to `path`, readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), LocalError> {
    fs::write(path, text).map_err(|e| LocalError::io("write", path, e))?;
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
