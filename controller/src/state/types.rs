//! The cluster state's records, as stored (JSON values in the replicated key-value store,
//! under the keys of [`super::keys`]) and as the API shows them. New fields get
//! `#[serde(default)]` so that records written by an older controller still read.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// What a user declares for one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique name: `[a-z0-9][a-z0-9-]*`, at most 63 characters (a DNS label).
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Replaces the image's entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command.
    #[serde(default)]
    pub command: Vec<String>,
    /// `KEY=VALUE` environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Replicated with a count, or global (one task per eligible node).
    pub mode: ServiceMode,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Links to other services: (service, alias).
    #[serde(default)]
    pub links: Vec<LinkSpec>,
    /// Limits and reservations.
    #[serde(default)]
    pub resources: Resources,
    /// Placement constraints such as `node.labels.disk==ssd`.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When a task that ended is replaced.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Most tasks of this service on one node (`None`: no limit).
    #[serde(default)]
    pub max_replicas_per_node: Option<u32>,
    /// Placement preferences, outermost first: `spread: node.labels.KEY` evens the tasks
    /// out over the values of a node label before evening them out over nodes.
    #[serde(default)]
    pub preferences: Vec<String>,
    /// How the tasks' health is probed (`None`: healthy once running).
    #[serde(default)]
    pub healthcheck: Option<HealthCheckSpec>,
    /// How a change of the tasks' spec rolls out (`None`: Swarm's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    /// How a rollback rolls out (`None`: Swarm's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    /// Bumped to redeploy every task without another change (`rollout restart`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub force_update: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl ServiceSpec {
    /// A replicated spec of `image` with every other key at its default, for tests.
    #[cfg(test)]
    pub(crate) fn minimal(name: &str, image: &str, replicas: u32) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            image: image.into(),
            entrypoint: None,
            command: vec![],
            env: vec![],
            mode: ServiceMode::Replicated { replicas },
            ports: vec![],
            links: vec![],
            resources: Resources::default(),
            constraints: vec![],
            labels: Default::default(),
            restart: RestartPolicy::default(),
            max_replicas_per_node: None,
            preferences: vec![],
            healthcheck: None,
            update_config: None,
            rollback_config: None,
            force_update: 0,
        }
    }

    /// Whether tasks of `self` and of `other` are the same: they differ at most in what does
    /// not reach a task (the replica count, the rollout settings). A new version that only
    /// scales does not replace the running tasks.
    /// Field by field, without copying: the updater asks this for every task of a service
    /// on each pass. Destructured so that a new field must be placed on one side or the
    /// other.
    pub fn same_tasks_as(&self, other: &ServiceSpec) -> bool {
        let ServiceSpec {
            name,
            image,
            entrypoint,
            command,
            env,
            mode,
            ports,
            links,
            resources,
            constraints,
            labels,
            restart,
            max_replicas_per_node,
            preferences,
            healthcheck,
            update_config: _,
            rollback_config: _,
            force_update,
        } = self;
        let same_mode = matches!(
            (mode, &other.mode),
            (ServiceMode::Global, ServiceMode::Global)
                | (
                    ServiceMode::Replicated { .. },
                    ServiceMode::Replicated { .. }
                )
        );
        same_mode
            && *name == other.name
            && *image == other.image
            && *entrypoint == other.entrypoint
            && *command == other.command
            && *env == other.env
            && *ports == other.ports
            && *links == other.links
            && *resources == other.resources
            && *constraints == other.constraints
            && *labels == other.labels
            && *restart == other.restart
            && *max_replicas_per_node == other.max_replicas_per_node
            && *preferences == other.preferences
            && *healthcheck == other.healthcheck
            && *force_update == other.force_update
    }

    /// The rollout settings of an update (`rollback`: of a rollback), defaults filled in.
    pub fn rollout(&self, rollback: bool) -> UpdateConfig {
        let c = if rollback {
            &self.rollback_config
        } else {
            &self.update_config
        };
        c.clone().unwrap_or_default()
    }
}

/// How a rollout replaces tasks (Swarm's `update_config` / `rollback_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// Tasks replaced at once (0: all).
    pub parallelism: u32,
    /// Wait between one task (batch) done and the next started, ms.
    pub delay_ms: u64,
    /// Stop the old task first, or start the new one first.
    pub order: UpdateOrder,
    /// How long a new task without a health check must run to count as updated, ms (a
    /// task with a check counts once healthy); failures in that time count.
    pub monitor_ms: u64,
    /// What a failed rollout does.
    pub failure_action: FailureAction,
    /// The share of failed tasks tolerated, 0 to 1.
    pub max_failure_ratio: f64,
}

impl Default for UpdateConfig {
    /// Swarm's defaults: one at a time, no delay, stop first, monitor 5 s, pause, no
    /// failure tolerated.
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay_ms: 0,
            order: UpdateOrder::StopFirst,
            monitor_ms: 5_000,
            failure_action: FailureAction::Pause,
            max_failure_ratio: 0.0,
        }
    }
}

/// The order of a rollout's stop and start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// Stop the old task, then start the new one.
    StopFirst,
    /// Start the new task; stop the old one once the new one runs (and is healthy).
    StartFirst,
}

/// What a rollout does when too many new tasks fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Stop replacing tasks until `rollout resume`.
    Pause,
    /// Go on.
    Continue,
    /// Go back to the previous spec (under `rollback_config`).
    Rollback,
}

/// Where a service's rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    /// Replacing tasks.
    Updating,
    /// Stopped by a failure or by `rollout pause`.
    Paused,
    /// Every task runs the new spec.
    Completed,
    /// Going back to the previous spec.
    RollingBack,
    /// A rollback stopped by a failure or by `rollout pause`.
    RollbackPaused,
    /// Every task runs the previous spec again.
    RolledBack,
}

/// A service's rollout: from which version to which, and how it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateStatus {
    /// Where it is.
    pub state: RolloutState,
    /// The version the tasks leave.
    pub from_version: u64,
    /// The version they get (the service's version when it began).
    pub to_version: u64,
    /// When it began.
    pub started_at: i128,
    /// When it ended (completed or rolled back).
    #[serde(default)]
    pub completed_at: Option<i128>,
    /// What happened last, in words.
    #[serde(default)]
    pub message: String,
}

impl UpdateStatus {
    /// Whether this is a rollback.
    pub fn is_rollback(&self) -> bool {
        matches!(
            self.state,
            RolloutState::RollingBack | RolloutState::RollbackPaused | RolloutState::RolledBack
        )
    }

    /// Whether it is paused.
    pub fn is_paused(&self) -> bool {
        matches!(
            self.state,
            RolloutState::Paused | RolloutState::RollbackPaused
        )
    }

    /// Whether it ended.
    pub fn is_done(&self) -> bool {
        matches!(
            self.state,
            RolloutState::Completed | RolloutState::RolledBack
        )
    }
}

/// A task's health check (Docker's rules), with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// What runs.
    pub probe: HealthProbe,
    /// Time between probes, in milliseconds.
    pub interval_ms: u64,
    /// Time one probe may take, in milliseconds.
    pub timeout_ms: u64,
    /// Failures in a row (outside the start period) before unhealthy.
    pub retries: u32,
    /// Grace time after the container starts, in milliseconds.
    pub start_period_ms: u64,
    /// Time between probes during the start period, in milliseconds.
    pub start_interval_ms: u64,
}

/// Docker's defaults for a health check's timing.
impl HealthCheckSpec {
    /// 30 s between probes.
    pub const DEFAULT_INTERVAL_MS: u64 = 30_000;
    /// 30 s per probe.
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
    /// 3 failures in a row.
    pub const DEFAULT_RETRIES: u32 = 3;
    /// 5 s between probes in the start period.
    pub const DEFAULT_START_INTERVAL_MS: u64 = 5_000;
}

/// What a health check runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum HealthProbe {
    /// A program and its arguments, in the container; exit code 0 is healthy.
    Cmd {
        /// Program and arguments.
        args: Vec<String>,
    },
    /// A command run with `/bin/sh -c` in the container.
    Shell {
        /// The command text.
        command: String,
    },
    /// `GET` on the task's address: a 2xx or 3xx status is healthy.
    Http {
        /// The container port.
        port: u16,
        /// The path, starting with `/`.
        path: String,
    },
    /// A TCP connection to the task's address accepted is healthy.
    Tcp {
        /// The container port.
        port: u16,
    },
}

/// Replicated or global.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum ServiceMode {
    /// A fixed number of tasks.
    Replicated {
        /// How many.
        replicas: u32,
    },
    /// One task per eligible node.
    Global,
}

/// A published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// The port inside the container.
    pub target: u16,
    /// The port published on the nodes (`None`: chosen by the node).
    #[serde(default)]
    pub published: Option<u16>,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// Through the routing mesh (the default) or on the task's node only.
    #[serde(default)]
    pub mode: PortMode,
}

/// How a port is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortMode {
    /// The routing mesh: every node's published port reaches a running task anywhere.
    #[default]
    Ingress,
    /// Only nodes running a task publish it, straight to that task.
    Host,
}

impl PortSpec {
    /// Whether the routing mesh publishes it.
    pub fn is_ingress(&self) -> bool {
        self.mode == PortMode::Ingress
    }
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A link to another service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The linked service.
    pub service: String,
    /// The name it is known by (defaults to the service's).
    pub alias: String,
}

/// Limits and reservations of each task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU limit, in CPUs.
    #[serde(default)]
    pub cpus_limit: Option<f64>,
    /// Memory limit, in bytes.
    #[serde(default)]
    pub memory_limit: Option<u64>,
    /// CPUs reserved on the node for scheduling.
    #[serde(default)]
    pub cpus_reserved: Option<f64>,
    /// Memory reserved on the node for scheduling, in bytes.
    #[serde(default)]
    pub memory_reserved: Option<u64>,
}

/// Swarm's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    /// When to restart.
    pub condition: RestartCondition,
    /// Delay before a restart, in milliseconds.
    pub delay_ms: u64,
    /// Most restarts within `window_ms` (0: no limit).
    pub max_attempts: u32,
    /// The window over which attempts are counted, in milliseconds (0: forever).
    pub window_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            condition: RestartCondition::Any,
            delay_ms: 5_000,
            max_attempts: 0,
            window_ms: 0,
        }
    }
}

/// When a task is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Never.
    None,
    /// After a non-zero exit.
    OnFailure,
    /// After any exit.
    Any,
}

/// A service: its current spec, its version, and the versions before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The current spec.
    pub spec: ServiceSpec,
    /// 1 for the first apply, +1 for each apply that changed the spec.
    pub version: u64,
    /// When it was created (Unix nanoseconds).
    pub created_at: i128,
    /// When the spec last changed.
    pub updated_at: i128,
    /// Earlier versions, oldest first, at most [`super::HISTORY_LEN`].
    #[serde(default)]
    pub history: Vec<SpecVersion>,
    /// Its virtual IP, from the cluster's service range, for its whole life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<Ipv4Addr>,
    /// Its ingress ports as published: the spec's, with the ports it left to the controller
    /// chosen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<PortSpec>,
    /// Its last rollout (`None`: its tasks never changed spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateStatus>,
}

/// One earlier version of a service's spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecVersion {
    /// Its version number.
    pub version: u64,
    /// The spec.
    pub spec: ServiceSpec,
    /// When it was replaced.
    pub replaced_at: i128,
}

/// What should happen to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    /// Run it.
    Running,
    /// Stop it.
    Shutdown,
}

/// What a task was last seen doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObservedState {
    /// Not placed yet (see the task's reason).
    Pending,
    /// Placed on a node, not acknowledged yet.
    Assigned,
    /// The node is starting it.
    Starting,
    /// Running.
    Running,
    /// Exited with code 0.
    Complete,
    /// Exited otherwise, or could not start.
    Failed,
    /// Stopped on request.
    Shutdown,
    /// Its node went down.
    Orphaned,
}

/// One task: an instance of a service in a slot, on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Unique id.
    pub id: String,
    /// Its service.
    pub service: String,
    /// Its slot (1..=replicas) for replicated services; 0 for global ones.
    pub slot: u32,
    /// The spec version it runs.
    pub spec_version: u64,
    /// Its node, once placed.
    #[serde(default)]
    pub node: Option<String>,
    /// What should happen.
    pub desired: DesiredState,
    /// What was last seen.
    pub observed: ObservedState,
    /// Its address on its node's subnet.
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
    /// Exit code, once exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it is pending, failed or shut down, in words.
    #[serde(default)]
    pub reason: Option<String>,
    /// When it was created.
    pub created_at: i128,
    /// When it last changed.
    pub updated_at: i128,
    /// Its health check's verdict while it runs; `None` without a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// What a running task's health check says (Docker's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Checked, not yet healthy.
    Starting,
    /// The last probe passed.
    Healthy,
    /// `retries` probes in a row failed.
    Unhealthy,
}

/// Whether a node is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Registered, no heartbeat yet.
    Unknown,
    /// Heartbeats arrive.
    Ready,
    /// Heartbeats stopped.
    Down,
}

/// Whether a node takes tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// Takes new tasks.
    Active,
    /// Takes none; its tasks are moved away.
    Drain,
    /// Takes none; keeps its tasks.
    Pause,
}

/// A node's capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeResources {
    /// CPUs.
    pub cpus: f64,
    /// Memory, in bytes.
    pub memory_bytes: u64,
}

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique id (from its certificate).
    pub id: String,
    /// Hostname.
    pub hostname: String,
    /// The address other nodes and controllers reach it at.
    pub address: String,
    /// Labels (`disk=ssd`, `zone=a`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Capacity.
    pub resources: NodeResources,
    /// Up or down.
    pub status: NodeStatus,
    /// Whether it takes tasks.
    pub availability: Availability,
    /// Last heartbeat (Unix nanoseconds), as last committed.
    #[serde(default)]
    pub last_seen: Option<i128>,
    /// Its containers' subnet, allocated from the cluster range.
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    /// The version its agent last registered with.
    #[serde(default)]
    pub agent_version: Option<String>,
}

/// The cluster itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterInfo {
    /// Its name.
    pub name: String,
    /// The CA certificate (PEM).
    pub ca_cert_pem: String,
    /// The range node subnets are allocated from.
    pub node_range: Ipv4Net,
    /// The prefix length of each node's subnet.
    pub node_prefix: u8,
    /// The range services' virtual IPs are allocated from.
    #[serde(default = "default_service_range")]
    pub service_range: Ipv4Net,
    /// How node subnets reach each other.
    #[serde(default)]
    pub overlay: OverlayMode,
    /// When `init` ran.
    pub created_at: i128,
}

/// The service range of a cluster whose record predates it.
pub fn default_service_range() -> Ipv4Net {
    DEFAULT_SERVICE_RANGE.parse().expect("a valid range")
}

/// The default range of services' virtual IPs.
pub const DEFAULT_SERVICE_RANGE: &str = "10.201.0.0/16";

/// How node subnets reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlayMode {
    /// A VXLAN overlay: works across L3 subnets.
    #[default]
    Vxlan,
    /// Plain routes via each node's address: nodes must share an L2 segment.
    Routed,
}

impl OverlayMode {
    /// Its name on the wire and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            OverlayMode::Vxlan => "vxlan",
            OverlayMode::Routed => "routed",
        }
    }
}

impl std::str::FromStr for OverlayMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vxlan" => Ok(OverlayMode::Vxlan),
            "routed" => Ok(OverlayMode::Routed),
            other => Err(format!(
                "unknown overlay mode {other:?}: expected \"vxlan\" (nodes on any subnets) or \"routed\" (nodes on one L2 segment)"
            )),
        }
    }
}
