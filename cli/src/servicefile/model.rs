//! The services as the files describe them, in the shape of the Compose specification,
//! after interpolation, unit parsing and checks. Everything berth parses is here, also what
//! this version does not send to the cluster yet (health checks, update policies,
//! volumes...); [`super::to_spec`] turns a service into what is sent.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// One service: one entry of `services:`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceModel {
    /// Its name, the key under `services:` (a DNS label).
    pub name: String,
    /// The image reference.
    pub image: String,
    /// Replaces the image's command (`None`: the image's).
    pub command: Option<Vec<String>>,
    /// Replaces the image's entrypoint (`None`: the image's; `Some([])`: none).
    pub entrypoint: Option<Vec<String>>,
    /// The environment, in order: `env_file` entries first, then `environment`; a later
    /// entry for a key replaces the earlier one in place.
    pub environment: Vec<(String, String)>,
    /// Published ports.
    pub ports: Vec<Port>,
    /// Ports the service listens on without publishing them (documentation only).
    pub expose: Vec<Expose>,
    /// Other services it reaches by name.
    pub links: Vec<Link>,
    /// Services it starts after.
    pub depends_on: Vec<Dependency>,
    /// Mounts.
    pub volumes: Vec<Volume>,
    /// Labels (`labels:` then `deploy.labels`).
    pub labels: BTreeMap<String, String>,
    /// The health check, if the file gives one.
    pub healthcheck: Option<Healthcheck>,
    /// How long a task has to stop after SIGTERM before SIGKILL.
    pub stop_grace_period: Option<Duration>,
    /// `deploy:`.
    pub deploy: Deploy,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// How a port is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortMode {
    /// On the nodes that run a task, straight to it (`mode: host`).
    Host,
    /// The routing mesh (`mode: ingress`, the default): every node publishes the port.
    #[default]
    Ingress,
}

/// An inclusive range of ports; `start == end` for one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

impl PortRange {
    /// One port.
    pub fn one(port: u16) -> Self {
        PortRange {
            start: port,
            end: port,
        }
    }

    /// How many ports.
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A published port (or range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The port(s) inside the container.
    pub target: PortRange,
    /// The port(s) on the node; `None`: one chosen by the node.
    pub published: Option<PortRange>,
    /// The host address to publish on; `None`: all.
    pub host_ip: Option<IpAddr>,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// `mode:`.
    pub mode: PortMode,
}

/// An `expose:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expose {
    /// The port(s).
    pub ports: PortRange,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// A link to another service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The linked service.
    pub service: String,
    /// The name it has inside this service's containers (the service's own name if not
    /// given).
    pub alias: String,
}

/// When a dependency counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DependsCondition {
    /// `service_started` (the default).
    #[default]
    Started,
    /// `service_healthy`.
    Healthy,
    /// `service_completed_successfully`.
    CompletedSuccessfully,
}

/// A `depends_on` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The service depended on.
    pub service: String,
    /// When it counts as ready.
    pub condition: DependsCondition,
    /// `restart:` (restart this service when that one restarts).
    pub restart: bool,
    /// `required:` (default true).
    pub required: bool,
}

/// A mount's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    /// A host path (a source starting with `/`, `.` or `~`).
    Bind,
    /// A named volume, or an anonymous one when there is no source.
    Volume,
    /// A tmpfs.
    Tmpfs,
}

/// A `volumes:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// What kind.
    pub kind: VolumeKind,
    /// The host path or volume name (`None` for anonymous volumes and tmpfs).
    pub source: Option<String>,
    /// The path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// What a health check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthTest {
    /// `["NONE"]`: the image's check is turned off.
    None,
    /// `["CMD", args...]`: run directly.
    Cmd(Vec<String>),
    /// `"string"` or `["CMD-SHELL", "string"]`: run with `/bin/sh -c`.
    Shell(String),
    /// `["HTTP", "<port>", "<path>"]` (berth's own): `GET` on the task's address from its
    /// node; a 2xx or 3xx status is healthy. The path defaults to `/`.
    Http {
        /// The container port.
        port: u16,
        /// The path.
        path: String,
    },
    /// `["TCP", "<port>"]` (berth's own): a connection to the task's address accepted.
    Tcp {
        /// The container port.
        port: u16,
    },
}

/// `healthcheck:`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Healthcheck {
    /// The test (`None`: the image's).
    pub test: Option<HealthTest>,
    /// Time between checks.
    pub interval: Option<Duration>,
    /// Time one check may take.
    pub timeout: Option<Duration>,
    /// Failures in a row before unhealthy.
    pub retries: Option<u32>,
    /// Grace time after start.
    pub start_period: Option<Duration>,
    /// Time between checks during the start period.
    pub start_interval: Option<Duration>,
    /// `disable: true` (same as test `NONE`).
    pub disable: bool,
}

/// Replicated or global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// This many tasks.
    Replicated {
        /// How many.
        replicas: u32,
    },
    /// One task on each eligible node.
    Global,
}

impl Default for Mode {
    fn default() -> Self {
        Mode::Replicated { replicas: 1 }
    }
}

/// CPUs and memory.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Resource {
    /// CPUs (1.5 = one and a half).
    pub cpus: Option<f64>,
    /// Bytes.
    pub memory: Option<u64>,
}

/// `deploy.resources`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Resources {
    /// Most a task may use.
    pub limits: Resource,
    /// What a node must have free for a task.
    pub reservations: Resource,
}

/// `deploy.placement`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    /// Constraints such as `node.labels.disk==ssd`, as written (trimmed).
    pub constraints: Vec<String>,
    /// Spread preferences: the node label key for each `spread: node.labels.KEY`,
    /// outermost first.
    pub preferences: Vec<String>,
    /// Most tasks of the service on one node.
    pub max_replicas_per_node: Option<u32>,
}

/// When a task is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartCondition {
    /// `none`: never.
    None,
    /// `on-failure`: after a non-zero exit.
    OnFailure,
    /// `any` (the default): whenever it exits.
    #[default]
    Any,
}

/// `deploy.restart_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestartPolicy {
    /// When.
    pub condition: RestartCondition,
    /// Wait before restarting.
    pub delay: Option<Duration>,
    /// Most restarts (within `window`); `None`: no limit.
    pub max_attempts: Option<u32>,
    /// The window restarts are counted in.
    pub window: Option<Duration>,
}

/// What to do when an update fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureAction {
    /// `pause` (the default for updates).
    #[default]
    Pause,
    /// `continue`.
    Continue,
    /// `rollback`.
    Rollback,
}

/// Whether the old task stops before the new one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateOrder {
    /// `stop-first` (the default).
    #[default]
    StopFirst,
    /// `start-first`.
    StartFirst,
}

/// `deploy.update_config` and `deploy.rollback_config`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UpdateConfig {
    /// Tasks changed at once (0: all).
    pub parallelism: Option<u32>,
    /// Wait between groups.
    pub delay: Option<Duration>,
    /// On failure.
    pub failure_action: Option<FailureAction>,
    /// How long a task is watched after its update.
    pub monitor: Option<Duration>,
    /// Failures tolerated, 0 to 1.
    pub max_failure_ratio: Option<f64>,
    /// Stop first or start first.
    pub order: Option<UpdateOrder>,
}

/// `deploy:`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deploy {
    /// Replicated (default 1) or global.
    pub mode: Mode,
    /// Limits and reservations.
    pub resources: Resources,
    /// Where tasks may go.
    pub placement: Placement,
    /// Restarts (`None`: the cluster's default, restart on any exit).
    pub restart_policy: Option<RestartPolicy>,
    /// Rolling updates.
    pub update_config: Option<UpdateConfig>,
    /// Rollbacks.
    pub rollback_config: Option<UpdateConfig>,
}
