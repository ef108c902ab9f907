//! The command line: every command, argument and option of `berth`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::output::OutputFormat;

/// `berth`'s arguments.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Run containers on a fleet of Linux hosts"
)]
#[command(propagate_version = true, subcommand_required = true)]
pub struct Cli {
    /// Where to connect.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes: which cluster to talk to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "Cluster options")]
pub struct GlobalArgs {
    /// The context to use (default: the configuration's current context).
    #[arg(long, global = true, env = "BERTH_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// The controllers to try, in order (host:port, comma-separated), instead of the
    /// context's endpoints.
    #[arg(
        long,
        global = true,
        env = "BERTH_ADDR",
        value_name = "HOST:PORT,...",
        value_delimiter = ','
    )]
    pub addr: Vec<String>,
    /// The configuration file (default: ~/.berth/config).
    #[arg(long, global = true, env = "BERTH_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Create or update the services of service files, and wait until they run.
    Apply(ApplyArgs),
    /// Show how service files differ from what the cluster runs (exit 1 when they do).
    Diff(DiffArgs),
    /// List the services.
    Ls(ReadArgs),
    /// List the tasks, of one service or of all.
    Ps(PsArgs),
    /// Show a service: its spec, version and history.
    Inspect(InspectArgs),
    /// Set the number of replicas of services: `berth scale web=5 api=3`.
    Scale(ScaleArgs),
    /// Follow, pause, resume, undo or restart a service's rollout.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Remove services.
    Rm(RmArgs),
    /// Stream the cluster's events (services, tasks, nodes), one per line.
    Events(EventsArgs),
    /// Show the output of a service's tasks (merged in time order) or of one task, from
    /// whichever nodes run them.
    Logs(LogsArgs),
    /// Run a command in a running task's container, on whichever node runs it; exits with
    /// the command's exit code.
    Exec(ExecArgs),
    /// Manage the images in the nodes' stores.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Manage the contexts of ~/.berth/config (which cluster to talk to).
    #[command(subcommand)]
    Context(ContextCommand),
    /// Print berth's version.
    Version(VersionArgs),
    /// Start a single-node cluster on this host (one controller, one node agent) in the
    /// background and wait until it is ready; starts only what is missing.
    Up(UpArgs),
    /// Stop the single-node cluster: its containers and host set-up removed, its data kept
    /// (the next `up` brings the services back) unless `--purge`.
    Down(DownArgs),
    /// Form a cluster of several hosts: create one here, join one, leave it, show the join
    /// tokens.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Print a shell completion script to standard output.
    Completion(CompletionArgs),
}

/// Where the single-node cluster lives (`up` and `down`).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LocalArgs {
    /// Its data directory.
    #[arg(long, env = "BERTH_DATA_DIR", default_value = crate::local::DEFAULT_DATA_DIR)]
    pub data_dir: std::path::PathBuf,
    /// The controller's address (its join listener takes the next port).
    #[arg(long, default_value = crate::local::DEFAULT_ADDR)]
    pub addr: String,
    /// The cgroup parent of the node's containers.
    #[arg(long, env = "BERTH_CGROUP_PARENT", default_value = "berth")]
    pub cgroup_parent: String,
}

/// `berth up`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct UpArgs {
    /// Where the cluster lives.
    #[command(flatten)]
    pub local: LocalArgs,
    /// How long to wait for the cluster to be ready (`30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// `berth down`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DownArgs {
    /// Where the cluster lives.
    #[command(flatten)]
    pub local: LocalArgs,
    /// Also remove the data directory (services, certificates, images): the next `up`
    /// creates a new cluster.
    #[arg(long)]
    pub purge: bool,
}

/// The service files a command reads.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct FileArgs {
    /// A service file, a folder (its *.yaml and *.yml files, sorted) or `-` for standard
    /// input; several merge in order.
    #[arg(short = 'f', long = "file", value_name = "FILE|DIR|-", required = true)]
    pub files: Vec<PathBuf>,
}

/// `berth apply`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ApplyArgs {
    /// The service files.
    #[command(flatten)]
    pub files: FileArgs,
    /// Return once the cluster has accepted the services, without waiting for their tasks.
    #[arg(short, long)]
    pub detach: bool,
    /// How long to wait for the services to run (e.g. 30s, 5m, 1m30s).
    #[arg(long, default_value = "5m", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// `berth diff`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DiffArgs {
    /// The service files.
    #[command(flatten)]
    pub files: FileArgs,
}

/// The options of a command that only reads.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ReadArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `berth ps`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct PsArgs {
    /// Only this service's tasks.
    pub service: Option<String>,
    /// Show the ended tasks too (each slot's history, under its current task).
    #[arg(short, long)]
    pub all: bool,
    /// Do not truncate ids and errors.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `berth inspect`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct InspectArgs {
    /// The service.
    pub service: String,
    /// Output format (text is YAML).
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `berth scale`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ScaleArgs {
    /// SERVICE=REPLICAS, one or more.
    #[arg(required = true, value_name = "SERVICE=REPLICAS", value_parser = parse_scale)]
    pub targets: Vec<(String, u32)>,
}

/// `berth rollout`'s commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum RolloutCommand {
    /// Follow the service's rollout until it ends: exit 0 when it completed (or there is
    /// none), 1 when it paused or rolled back.
    Status(RolloutStatusArgs),
    /// List the service's versions, the current one marked.
    History(RolloutServiceArg),
    /// Bring back an earlier version's spec (the last one whose tasks differ, or
    /// `--to-revision N`), rolled out as a rollback.
    Undo(RolloutUndoArgs),
    /// Stop choosing tasks to replace (what is in flight finishes).
    Pause(RolloutServiceArg),
    /// Go on after a pause (failures so far are forgiven).
    Resume(RolloutServiceArg),
    /// Replace every task without changing the spec (a redeploy).
    Restart(RolloutServiceArg),
}

/// A rollout command's service.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RolloutServiceArg {
    /// The service.
    pub service: String,
}

/// `berth rollout status`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RolloutStatusArgs {
    /// The service.
    pub service: String,
    /// Print where the rollout is and return at once.
    #[arg(long)]
    pub no_wait: bool,
    /// The longest to wait, in seconds (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
}

/// `berth rollout undo`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RolloutUndoArgs {
    /// The service.
    pub service: String,
    /// The version to bring back (`berth rollout history` lists them).
    #[arg(long, value_name = "N")]
    pub to_revision: Option<u64>,
}

/// `berth rm`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RmArgs {
    /// The services to remove.
    #[arg(required = true)]
    pub services: Vec<String>,
}

/// `berth events`' arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct EventsArgs {
    /// Only events of this service (the service and its tasks).
    #[arg(long)]
    pub service: Option<String>,
    /// Output format (json: one object per line).
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `berth logs`' arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LogsArgs {
    /// A service, or a task id (or a unique prefix of one; see `berth ps --no-trunc`).
    pub target: String,
    /// Keep printing new output until every task has stopped (or Ctrl-C).
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each task.
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
    /// Only output written since T: an RFC 3339 time (2026-12-04T10:00:00Z) or a duration
    /// before now (10m, 1h30m).
    #[arg(long, value_name = "T", value_parser = parse_since)]
    pub since: Option<i64>,
    /// Prefix each line with the time it was written.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Do not prefix lines with their task (`web.2@node1 |`).
    #[arg(long)]
    pub no_prefix: bool,
    /// Output format (json: one object per line).
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `berth exec`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ExecArgs {
    /// Send standard input to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal (with -i, this terminal is put in raw mode meanwhile).
    #[arg(short, long)]
    pub tty: bool,
    /// An extra environment variable, KEY=VALUE (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The user to run as (name or uid[:gid]; default: the container's).
    #[arg(short, long)]
    pub user: Option<String>,
    /// The working directory (default: the container's).
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// A task id (or unique prefix), or a service: its first running task.
    pub target: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `berth image ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ImageCommand {
    /// Import image archives (`docker save` or OCI layout tars, gzip allowed; `-` for
    /// standard input) into the nodes' stores.
    Import(ImageImportArgs),
    /// List the images of the nodes.
    Ls(ImageLsArgs),
    /// Remove images (by reference or id) from the nodes; refused on a node where a
    /// container uses it.
    Rm(ImageRmArgs),
    /// Push an image archive (`docker save` or OCI layout) to a registry as
    /// HOST[:PORT]/REPOSITORY[:TAG], from this machine; blobs the registry has are skipped.
    Push(ImagePushArgs),
}

/// `berth image push`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ImagePushArgs {
    /// The archive.
    pub archive: PathBuf,
    /// Where to push it: HOST[:PORT]/REPOSITORY[:TAG].
    pub reference: String,
    /// Which of the archive's images (a tag it has), when it holds several.
    #[arg(long, value_name = "TAG")]
    pub image: Option<String>,
    /// How to reach the registry (the same flags as `berth-agent image push`).
    #[command(flatten)]
    pub registry: berth_agent::cli::RegistryArgs,
}

/// Which nodes an image command is about.
#[derive(Debug, Clone, PartialEq, Eq, Default, Args)]
pub struct NodeSelection {
    /// Only this node (hostname or id; repeatable; default: every ready node).
    #[arg(long = "node", value_name = "NODE")]
    pub nodes: Vec<String>,
}

/// `berth image import`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ImageImportArgs {
    /// The archives.
    #[arg(required = true)]
    pub archives: Vec<PathBuf>,
    /// The nodes.
    #[command(flatten)]
    pub nodes: NodeSelection,
}

/// `berth image ls`' arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ImageLsArgs {
    /// The nodes.
    #[command(flatten)]
    pub nodes: NodeSelection,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `berth image rm`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ImageRmArgs {
    /// The images: references (`busybox:demo`) or ids.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// The nodes.
    #[command(flatten)]
    pub nodes: NodeSelection,
}

/// `--since`: an RFC 3339 time, or a duration before now; Unix nanoseconds.
fn parse_since(s: &str) -> Result<i64, String> {
    if let Some(t) = berth_runtime::time::parse_rfc3339(s) {
        return i64::try_from(t).map_err(|_| format!("{s:?} is out of range"));
    }
    let ago = crate::servicefile::parse_duration(s).map_err(|_| {
        format!("{s:?} is neither an RFC 3339 time (2026-12-04T10:00:00Z) nor a duration (10m)")
    })?;
    let now = berth_runtime::time::now_unix_nanos();
    i64::try_from(now - i128::try_from(ago.as_nanos()).unwrap_or(i128::MAX))
        .map_err(|_| format!("{s:?} is too far back"))
}

/// `berth node ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum NodeCommand {
    /// List the nodes.
    Ls(ReadArgs),
    /// Show a node.
    Inspect(NodeInspectArgs),
    /// Change a node's labels or availability.
    Update(NodeUpdateArgs),
    /// Move every task off a node and give it no new ones (availability drain).
    Drain(NodeArg),
    /// Let a node take tasks again (availability active).
    Activate(NodeArg),
    /// Remove nodes from the cluster: refused while a node is ready (drain it and stop its
    /// agent first) unless --force; its tasks move to other nodes.
    Rm(NodeRmArgs),
}

/// `berth node rm`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct NodeRmArgs {
    /// The nodes: ids, id prefixes or hostnames.
    #[arg(required = true, value_name = "NODE")]
    pub nodes: Vec<String>,
    /// Remove a node even while it is ready (its agent is refused from then on).
    #[arg(short, long)]
    pub force: bool,
}

/// A node, by id or hostname.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct NodeArg {
    /// The node's id or hostname.
    pub node: String,
}

/// `berth node inspect`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct NodeInspectArgs {
    /// The node's id or hostname.
    pub node: String,
    /// Output format (text is YAML).
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `berth node update`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct NodeUpdateArgs {
    /// The node's id or hostname.
    pub node: String,
    /// Add or replace a label (KEY=VALUE); repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
    pub label_add: Vec<(String, String)>,
    /// Remove a label; repeatable.
    #[arg(long, value_name = "KEY")]
    pub label_rm: Vec<String>,
    /// Whether the node takes tasks.
    #[arg(long, value_enum)]
    pub availability: Option<Availability>,
}

/// A node's availability, as `node update --availability` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Availability {
    /// Takes new tasks.
    Active,
    /// Takes no new tasks; keeps its tasks.
    Pause,
    /// Takes no new tasks; its tasks move away.
    Drain,
}

/// `berth context ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ContextCommand {
    /// List the contexts; `*` marks the current one.
    Ls(ReadArgs),
    /// Make a context the current one.
    Use(ContextName),
    /// Add a context (or replace one of the same name).
    Add(ContextAddArgs),
    /// Remove a context.
    Rm(ContextName),
}

/// A context's name.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ContextName {
    /// The context.
    pub name: String,
}

/// `berth context add`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ContextAddArgs {
    /// The context's name.
    pub name: String,
    /// A controller's API address (host:port); repeatable, tried in order.
    #[arg(long = "endpoint", required = true, value_name = "HOST:PORT")]
    pub endpoints: Vec<String>,
    /// The cluster CA certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// The admin client certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// The admin client key (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Make it the current context (the first context added always is).
    #[arg(long = "use")]
    pub make_current: bool,
}

/// `berth version`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct VersionArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Only the client's version: do not ask the cluster.
    #[arg(long)]
    pub client: bool,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    crate::servicefile::parse_duration(s).map_err(|e| format!("{e}; write e.g. 30s, 5m, 1m30s"))
}

fn parse_scale(s: &str) -> Result<(String, u32), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not SERVICE=REPLICAS, e.g. web=3"))?;
    if name.is_empty() {
        return Err(format!("`{s}` names no service; write e.g. web=3"));
    }
    let n = n
        .parse::<u32>()
        .map_err(|_| format!("`{n}` is not a number of replicas (0 or more)"))?;
    Ok((name.to_owned(), n))
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE, e.g. disk=ssd"))?;
    if k.is_empty() {
        return Err(format!("`{s}` has an empty key; write e.g. disk=ssd"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(args).expect("valid").command
    }

    #[test]
    fn version_defaults_to_text() {
        assert_eq!(
            parse(&["berth", "version"]),
            Command::Version(VersionArgs {
                output: OutputFormat::Text,
                client: false,
            })
        );
    }

    #[test]
    fn version_takes_an_output_format() {
        for args in [
            ["berth", "version", "-o", "json"],
            ["berth", "version", "--output", "json"],
        ] {
            assert_eq!(
                parse(&args),
                Command::Version(VersionArgs {
                    output: OutputFormat::Json,
                    client: false,
                })
            );
        }
    }

    #[test]
    fn scale_takes_pairs() {
        assert_eq!(
            parse(&["berth", "scale", "web=5", "api=0"]),
            Command::Scale(ScaleArgs {
                targets: vec![("web".into(), 5), ("api".into(), 0)]
            })
        );
    }

    #[test]
    fn apply_takes_several_files_and_a_timeout() {
        let Command::Apply(a) = parse(&[
            "berth",
            "apply",
            "-f",
            "a.yaml",
            "-f",
            "-",
            "--timeout",
            "1m30s",
        ]) else {
            panic!("not apply");
        };
        assert_eq!(a.files.files, vec![PathBuf::from("a.yaml"), "-".into()]);
        assert_eq!(a.timeout, Duration::from_secs(90));
        assert!(!a.detach);
    }

    #[test]
    fn usage_errors_are_rejected() {
        for args in [
            &["berth"][..],
            &["berth", "launch"],
            &["berth", "version", "-o", "xml"],
            &["berth", "version", "extra"],
            &["berth", "apply"],
            &["berth", "scale", "web"],
            &["berth", "scale", "web=-1"],
            &["berth", "apply", "-f", "x", "--timeout", "soon"],
            &["berth", "node", "update", "n1", "--label-add", "novalue"],
            &["berth", "rm"],
        ] {
            let err = Cli::try_parse_from(args).expect_err("invalid");
            assert!(err.use_stderr(), "{args:?} is a usage error");
        }
    }
}

// `berth cluster ...` and `berth completion`.

/// `berth cluster ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ClusterCommand {
    /// Create a cluster with this host as its first controller (and a node, unless
    /// `--no-agent`), advertised at a routable address; print the join commands.
    Init(ClusterInitArgs),
    /// Join a cluster: as a node with an agent token, as a controller with a controller
    /// token; HOST:PORT is a controller's address (its join listener is the next port).
    Join(ClusterJoinArgs),
    /// Leave the cluster: a controller leaves the membership first; the node's containers
    /// and host set-up are removed; the data directory is removed.
    Leave(ClusterLeaveArgs),
    /// Print the join command with the stored join token of a role, or a new one.
    Token(ClusterTokenArgs),
}

/// Where this host's part of a cluster lives.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ClusterPlaceArgs {
    /// The data directory.
    #[arg(long, env = "BERTH_DATA_DIR", default_value = crate::local::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The cgroup parent of the node's containers.
    #[arg(long, env = "BERTH_CGROUP_PARENT", default_value = "berth")]
    pub cgroup_parent: String,
}

/// What a node started by `cluster init` or `join` is given.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ClusterNodeArgs {
    /// A node label for placement constraints (KEY=VALUE); repeatable. Kept for the agent's
    /// next starts.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// The node's name in the cluster (default: this host's name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// How long to wait for the daemons to be ready (`30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// `berth cluster init`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ClusterInitArgs {
    /// The address other hosts reach this controller at, HOST[:PORT] (default: this host's
    /// address on its default route, port 7443); the join listener takes the next port.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub advertise: Option<String>,
    /// Do not run a node agent on this host (a controller only).
    #[arg(long)]
    pub no_agent: bool,
    /// How node subnets reach each other: `vxlan` (nodes on any subnets; UDP 4789 between
    /// them) or `routed` (plain routes; every node on one L2 segment).
    #[arg(long, value_parser = ["vxlan", "routed"])]
    pub overlay: Option<String>,
    /// Where it lives.
    #[command(flatten)]
    pub place: ClusterPlaceArgs,
    /// The node.
    #[command(flatten)]
    pub node: ClusterNodeArgs,
}

/// `berth cluster join`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ClusterJoinArgs {
    /// A controller's address, HOST:PORT (as `cluster init` printed it).
    #[arg(value_name = "HOST:PORT")]
    pub controller: String,
    /// The join token; its role (agent or controller) decides what this host becomes.
    #[arg(long, env = "BERTH_JOIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// With a controller token: the address other hosts reach this controller at,
    /// HOST[:PORT] (default: this host's address on its default route, port 7443).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub advertise: Option<String>,
    /// Where it lives.
    #[command(flatten)]
    pub place: ClusterPlaceArgs,
    /// The node.
    #[command(flatten)]
    pub node: ClusterNodeArgs,
}

/// `berth cluster leave`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ClusterLeaveArgs {
    /// Leave even if this is the last controller or the others could not commit without
    /// it (the membership is then left as it is).
    #[arg(long)]
    pub force: bool,
    /// Where it lives.
    #[command(flatten)]
    pub place: ClusterPlaceArgs,
}

/// `berth cluster token`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ClusterTokenArgs {
    /// Whose token.
    #[arg(value_enum)]
    pub role: crate::local::TokenRole,
    /// Make a new token (the old one is refused from then on), store and print it.
    #[arg(long)]
    pub rotate: bool,
    /// Print only the token.
    #[arg(short, long)]
    pub quiet: bool,
    /// The data directory the token is kept in.
    #[arg(long, env = "BERTH_DATA_DIR", default_value = crate::local::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// `berth completion`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells `berth completion` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    /// bash.
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

#[cfg(test)]
mod cluster_args_tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(args).expect("valid").command
    }

    #[test]
    fn cluster_init_takes_an_address_labels_and_no_agent() {
        let Command::Cluster(ClusterCommand::Init(a)) = parse(&[
            "berth",
            "cluster",
            "init",
            "--advertise",
            "10.0.0.1:7000",
            "--no-agent",
            "--label",
            "zone=a",
            "--label",
            "disk=ssd",
        ]) else {
            panic!("not cluster init");
        };
        assert_eq!(a.advertise.as_deref(), Some("10.0.0.1:7000"));
        assert!(a.no_agent);
        assert_eq!(
            a.node.labels,
            vec![("zone".into(), "a".into()), ("disk".into(), "ssd".into())]
        );
        assert_eq!(a.place.data_dir, PathBuf::from("/var/lib/berth"));
        let Command::Cluster(ClusterCommand::Init(a)) = parse(&["berth", "cluster", "init"]) else {
            panic!("not cluster init");
        };
        assert_eq!(a.advertise, None);
        assert!(!a.no_agent);
    }

    #[test]
    fn cluster_join_takes_a_token_and_an_address() {
        let Command::Cluster(ClusterCommand::Join(a)) = parse(&[
            "berth",
            "cluster",
            "join",
            "--token",
            "BERTH-1-x",
            "10.0.0.1:7443",
            "--data-dir",
            "/tmp/b",
        ]) else {
            panic!("not cluster join");
        };
        assert_eq!(a.token, "BERTH-1-x");
        assert_eq!(a.controller, "10.0.0.1:7443");
        assert_eq!(a.place.data_dir, PathBuf::from("/tmp/b"));
    }

    #[test]
    fn cluster_token_and_leave() {
        assert_eq!(
            parse(&["berth", "cluster", "token", "controller", "--rotate", "-q"]),
            Command::Cluster(ClusterCommand::Token(ClusterTokenArgs {
                role: crate::local::TokenRole::Controller,
                rotate: true,
                quiet: true,
                data_dir: "/var/lib/berth".into(),
            }))
        );
        let Command::Cluster(ClusterCommand::Leave(a)) =
            parse(&["berth", "cluster", "leave", "--force"])
        else {
            panic!("not cluster leave");
        };
        assert!(a.force);
    }

    #[test]
    fn completion_takes_a_shell() {
        assert_eq!(
            parse(&["berth", "completion", "zsh"]),
            Command::Completion(CompletionArgs {
                shell: CompletionShell::Zsh
            })
        );
    }

    #[test]
    fn cluster_usage_errors_are_rejected() {
        for args in [
            &["berth", "cluster"][..],
            &["berth", "cluster", "join", "10.0.0.1:7443"],
            &["berth", "cluster", "token"],
            &["berth", "cluster", "token", "admin"],
            &["berth", "cluster", "init", "--label", "novalue"],
            &["berth", "completion"],
            &["berth", "completion", "powershell"],
        ] {
            let err = Cli::try_parse_from(args).expect_err("invalid");
            assert!(err.use_stderr(), "{args:?} is a usage error");
        }
    }
}
