//! The command-line grammar.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// berth's node agent and its node-local command line.
#[derive(Debug, Parser)]
#[command(name = "berth-agent", version, about)]
pub struct Cli {
    /// Root of the agent's state (images, containers, volumes).
    #[arg(
        long,
        global = true,
        env = "BERTH_AGENT_STATE_DIR",
        default_value = "/var/lib/berth/agent"
    )]
    pub state_dir: PathBuf,
    /// Cgroup parent of every container.
    #[arg(
        long,
        global = true,
        env = "BERTH_CGROUP_PARENT",
        default_value = "berth"
    )]
    pub cgroup_parent: String,
    /// The berth-monitor executable (default: next to this one).
    #[arg(long, global = true, env = "BERTH_MONITOR")]
    pub monitor: Option<PathBuf>,
    /// The node bridge of bridge-networked containers.
    #[arg(long, global = true, env = "BERTH_BRIDGE", default_value = crate::net::node::DEFAULT_BRIDGE)]
    pub bridge: String,
    /// The containers' subnet on the bridge (the bridge takes its first address).
    #[arg(
        long,
        global = true,
        env = "BERTH_SUBNET",
        default_value = "10.77.0.0/16"
    )]
    pub subnet: String,
    /// MTU of the bridge and the containers' interfaces.
    #[arg(long, global = true, env = "BERTH_MTU", default_value_t = crate::net::node::DEFAULT_MTU)]
    pub mtu: u32,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start a container; attached, exits with the container's exit code.
    Run(RunArgs),
    /// Create a container without starting it.
    Create(RunArgs),
    /// Start created or stopped containers.
    Start(StartArgs),
    /// List containers.
    Ps(PsArgs),
    /// Stop containers (stop signal, then SIGKILL after the grace period).
    Stop(StopArgs),
    /// Send a signal to containers.
    Kill(KillArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Show a container's output.
    Logs(LogsArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Show containers in JSON.
    Inspect(InspectArgs),
    /// List images.
    Images(ImagesArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Run the agent daemon: adopt containers and report their transitions.
    Serve(ServeArgs),
    /// Show the transitions the daemon recorded.
    Events(EventsArgs),
    /// The node network.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Remove what the agent set up on this host — berth's iptables rules and chains, the
    /// node bridge, the cgroup parent — once no container runs (refused while one does).
    /// Images, volumes and stopped containers are kept.
    Teardown,
    /// Join a cluster with an agent token: writes the node's identity (certificate, key,
    /// CA, controllers) under `<state-dir>/node/`.
    Join(JoinArgs),
    /// Run many hollow nodes (no containers) against a cluster, for scale tests, until
    /// SIGINT or SIGTERM.
    Hollow(HollowArgs),
    /// Run this node's session with the cluster (after `join`): register, heartbeat, run
    /// the tasks the controllers assign, report them; until SIGINT or SIGTERM (the tasks
    /// keep running when it stops).
    Node(NodeArgs),
}

/// `node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// A node label for placement constraints, `KEY=VALUE` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The address other nodes and the controllers reach this node at (default: the local
    /// address of the route to the first controller).
    #[arg(long)]
    pub address: Option<std::net::IpAddr>,
    /// Grace period of a task's stop before SIGKILL, in seconds (default: the container's,
    /// 10 s unless its image says otherwise).
    #[arg(long)]
    pub stop_timeout_s: Option<u64>,
    /// How often the tasks' containers are checked, in ms.
    #[arg(long, default_value_t = 250)]
    pub poll_ms: u64,
    /// How to reach the registries images are pulled from: a JSON object of
    /// `host[:port]` → `{insecure, ca, username, password_file}` (docs/agent.md).
    #[arg(long, value_name = "FILE")]
    pub registries: Option<std::path::PathBuf>,
}

/// `join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The agent join token.
    #[arg(long, env = "BERTH_JOIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// A controller's join listener, `host:port`.
    #[arg(long)]
    pub join_addr: String,
    /// The node's hostname (default: this host's).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Replace an identity this node has already.
    #[arg(long)]
    pub force: bool,
}

/// `hollow`.
#[derive(Debug, Args)]
pub struct HollowArgs {
    /// How many hollow nodes.
    #[arg(long)]
    pub count: usize,
    /// The agent join token.
    #[arg(long, env = "BERTH_JOIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// A controller's join listener, `host:port`.
    #[arg(long)]
    pub join_addr: String,
    /// Node `i` is named `<prefix>-<i>`.
    #[arg(long, default_value = "hollow")]
    pub hostname_prefix: String,
    /// Label sets given round-robin, comma-separated (`zone=a,zone=b`); `+` joins labels
    /// of one set (`zone=a+disk=ssd`).
    #[arg(long)]
    pub labels: Option<String>,
    /// The address the nodes register with.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: std::net::IpAddr,
    /// Heartbeat at this period (ms) instead of the controller's.
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// How long each task start takes, in ms.
    #[arg(long, default_value_t = 0)]
    pub start_delay_ms: u64,
    /// How many nodes join at once.
    #[arg(long, default_value_t = 64)]
    pub join_concurrency: usize,
    /// Print a status line every this many seconds.
    #[arg(long, default_value_t = 5)]
    pub status_every_s: u64,
}

/// `network …`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Show the bridge, the addresses handed out and the published ports, in JSON.
    Inspect,
    /// Remove what containers that are gone left behind (addresses, rules, veths); `serve`
    /// does this when it starts.
    Reconcile,
    /// Release one container's network (its monitor runs this after the final exit).
    #[command(hide = true)]
    Release {
        /// The container's state directory.
        dir: PathBuf,
    },
}

/// `run` / `create`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable KEY=VALUE (or KEY to copy it from here).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Memory limit (64m, 1g, …).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// CPU quota in CPUs (0.5 = half a CPU).
    #[arg(long, allow_negative_numbers = true)]
    pub cpus: Option<f64>,
    /// Relative CPU weight (2..262144).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids_limit: Option<u64>,
    /// Bind mount or volume: SRC:DST[:ro|rw].
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// User: name, uid, name:group or uid:gid.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Restart policy: no, on-failure[:N], always.
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Add a capability (NET_ADMIN, ALL, …).
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop a capability.
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Mount the root file system read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Security options (only `no-new-privileges` is supported).
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Network: bridge (the node bridge, with an address of its own), none (own namespace,
    /// loopback only) or host.
    #[arg(long, default_value = "bridge")]
    pub network: String,
    /// Publish a port: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp], ranges allowed
    /// (8080-8081:80-81); no host port picks one from the ephemeral range.
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Expose a port or range without publishing it (for links): PORT[/PROTO].
    #[arg(long)]
    pub expose: Vec<String>,
    /// Link to another container: NAME[:ALIAS].
    #[arg(long = "link")]
    pub links: Vec<String>,
    /// An extra /etc/hosts entry: HOST:IP.
    #[arg(long = "add-host")]
    pub add_hosts: Vec<String>,
    /// A nameserver for /etc/resolv.conf instead of the host's (repeatable).
    #[arg(long)]
    pub dns: Vec<std::net::Ipv4Addr>,
    /// Signal that stops the container.
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Seconds to wait before SIGKILL on stop.
    #[arg(long)]
    pub stop_timeout: Option<u64>,
    /// Size of /dev/shm (64m default).
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Label KEY=VALUE.
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Image reference.
    pub image: String,
    /// Command and arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the output and exit with the container's code.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers, not only running ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output: table or json.
    #[arg(short = 'o', long, default_value = "table")]
    pub output: String,
}

/// `stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL (default: the container's stop timeout).
    #[arg(short = 't', long)]
    pub time: Option<u64>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal name or number.
    #[arg(short = 's', long, default_value = "SIGKILL")]
    pub signal: String,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow new output until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show timestamps.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Container.
    pub container: String,
}

/// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Extra environment variable KEY=VALUE.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// User.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Container.
    pub container: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output: table or json.
    #[arg(short = 'o', long, default_value = "table")]
    pub output: String,
}

/// `image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a `docker save` archive or an OCI image layout (directory or tar).
    Import {
        /// The archive or layout.
        file: PathBuf,
    },
    /// Make an image from a root file system directory or tar.
    ImportRootfs {
        /// Directory or tar(.gz).
        source: PathBuf,
        /// Reference to tag it with (name[:tag]).
        reference: String,
        /// Image entrypoint: a JSON array, or words split at white space.
        #[arg(long)]
        entrypoint: Option<String>,
        /// Image command: a JSON array, or words split at white space (no shell quoting).
        #[arg(long)]
        cmd: Option<String>,
        /// Image environment KEY=VALUE.
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
    },
    /// Pull an image from a registry: HOST[:PORT]/REPOSITORY[:TAG] or ...@sha256:DIGEST.
    Pull {
        /// The image in the registry (its host is required: there is no default registry).
        reference: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Push a local image to a registry under HOST[:PORT]/REPOSITORY[:TAG].
    Push {
        /// The local image (tag or id).
        image: String,
        /// Where to push it.
        reference: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Remove images.
    Rm {
        /// Remove even if a container uses it.
        #[arg(short = 'f', long)]
        force: bool,
        /// Images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Tag an image.
    Tag {
        /// Existing image.
        source: String,
        /// New reference.
        target: String,
    },
    /// Show images in JSON.
    Inspect {
        /// Images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// List images.
    Ls(ImagesArgs),
}

/// How to reach a registry (`image pull`, `image push`; also `berth image push`).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RegistryArgs {
    /// Talk plain HTTP to the registry (by default only HTTPS is used).
    #[arg(long)]
    pub insecure: bool,
    /// A PEM file with the CA certificate of the registry, trusted besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// User name for the registry (or its token service).
    #[arg(short = 'u', long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password from standard input (one line).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// How often to look at the containers, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub poll_interval_ms: u64,
}

/// `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events.
    #[arg(short = 'f', long)]
    pub follow: bool,
}
