//! The cluster's records as `-o json` and `-o yaml` show them: plain data with words for
//! enums (`running`, `drain`) and RFC 3339 times, built from the API's messages. Field
//! names are the stable interface for scripts.

use std::collections::BTreeMap;

use berth_proto::v1;
use serde::Serialize;

use super::time::rfc3339;

/// A service with its version and history (`inspect`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceView {
    /// The name.
    pub name: String,
    /// 1 for the first apply, +1 for every change.
    pub version: u64,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// What is declared now.
    pub spec: SpecView,
    /// Earlier versions, oldest first.
    pub history: Vec<HistoryView>,
    /// Its last rollout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<RolloutView>,
}

/// A service's last rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutView {
    /// `updating`, `paused`, `completed`, `rolling-back`, `rollback-paused`, `rolled-back`.
    pub state: &'static str,
    /// The version the tasks leave.
    pub from_version: u64,
    /// The version they get.
    pub to_version: u64,
    /// When it began.
    pub started_at: String,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// What happened last.
    pub message: String,
}

impl From<&v1::ServiceUpdateStatus> for RolloutView {
    fn from(u: &v1::ServiceUpdateStatus) -> Self {
        RolloutView {
            state: match u.state() {
                v1::RolloutState::Updating => "updating",
                v1::RolloutState::Paused => "paused",
                v1::RolloutState::Completed => "completed",
                v1::RolloutState::RollingBack => "rolling-back",
                v1::RolloutState::RollbackPaused => "rollback-paused",
                v1::RolloutState::RolledBack => "rolled-back",
                v1::RolloutState::Unspecified => "unknown",
            },
            from_version: u.from_version,
            to_version: u.to_version,
            started_at: rfc3339(u.started_at),
            completed_at: (u.completed_at != 0).then(|| rfc3339(u.completed_at)),
            message: u.message.clone(),
        }
    }
}

/// Rollout settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateConfigView {
    /// Tasks at once (0: all).
    pub parallelism: u32,
    /// Milliseconds between batches.
    pub delay_ms: u64,
    /// `stop-first` or `start-first`.
    pub order: &'static str,
    /// Milliseconds a task without a health check must run.
    pub monitor_ms: u64,
    /// `pause`, `continue` or `rollback`.
    pub failure_action: &'static str,
    /// Failures tolerated, 0 to 1.
    pub max_failure_ratio: f64,
}

impl From<&v1::ServiceUpdateConfig> for UpdateConfigView {
    fn from(c: &v1::ServiceUpdateConfig) -> Self {
        UpdateConfigView {
            parallelism: c.parallelism,
            delay_ms: c.delay_ms,
            order: match c.order() {
                v1::UpdateOrder::StartFirst => "start-first",
                _ => "stop-first",
            },
            monitor_ms: c.monitor_ms.unwrap_or(5_000),
            failure_action: match c.failure_action() {
                v1::FailureAction::Continue => "continue",
                v1::FailureAction::Rollback => "rollback",
                _ => "pause",
            },
            max_failure_ratio: c.max_failure_ratio,
        }
    }
}

/// An earlier version of a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryView {
    /// Its version.
    pub version: u64,
    /// When it was replaced.
    pub replaced_at: String,
    /// Its spec.
    pub spec: SpecView,
}

/// A service's spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecView {
    /// The name.
    pub name: String,
    /// The image.
    pub image: String,
    /// Replaces the image's entrypoint, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command, when not empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// KEY=VALUE.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `replicated` or `global`.
    pub mode: &'static str,
    /// The number of tasks (replicated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Published ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortView>,
    /// Links to other services.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkView>,
    /// Limits and reservations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesView>,
    /// Placement constraints.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Placement preferences.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<String>,
    /// Most tasks on one node; 0: no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_replicas_per_node: u32,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The restart policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartView>,
    /// The health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthCheckView>,
    /// How an update rolls out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfigView>,
    /// How a rollback rolls out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfigView>,
}

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheckView {
    /// `CMD …`, `CMD-SHELL …`, `HTTP GET :port/path` or `TCP :port`.
    pub test: String,
    /// Milliseconds between probes.
    pub interval_ms: u64,
    /// Milliseconds a probe may take.
    pub timeout_ms: u64,
    /// Failures in a row before unhealthy.
    pub retries: u32,
    /// Milliseconds of grace after a start.
    pub start_period_ms: u64,
    /// Milliseconds between probes in the start period.
    pub start_interval_ms: u64,
}

impl From<&v1::ServiceHealthCheck> for HealthCheckView {
    fn from(h: &v1::ServiceHealthCheck) -> Self {
        let test = match h.kind() {
            v1::HealthProbeKind::Cmd => format!("CMD {}", h.command.join(" ")),
            v1::HealthProbeKind::CmdShell => format!("CMD-SHELL {}", h.command.join(" ")),
            v1::HealthProbeKind::Http => format!("HTTP GET :{}{}", h.port, h.path),
            v1::HealthProbeKind::Tcp => format!("TCP :{}", h.port),
            v1::HealthProbeKind::Unspecified => "unknown".to_owned(),
        };
        HealthCheckView {
            test,
            interval_ms: h.interval_ms,
            timeout_ms: h.timeout_ms,
            retries: h.retries,
            start_period_ms: h.start_period_ms,
            start_interval_ms: h.start_interval_ms,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortView {
    /// The container's port.
    pub target: u32,
    /// The nodes' port; 0: chosen by the node.
    pub published: u32,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
}

/// A link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkView {
    /// The linked service.
    pub service: String,
    /// Its name inside the containers.
    pub alias: String,
}

/// Limits and reservations; 0: none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourcesView {
    /// CPUs a task may use.
    pub cpus_limit: f64,
    /// Bytes a task may use.
    pub memory_limit: u64,
    /// CPUs reserved for a task.
    pub cpus_reserved: f64,
    /// Bytes reserved for a task.
    pub memory_reserved: u64,
}

/// A restart policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartView {
    /// `none`, `on-failure` or `any`.
    pub condition: &'static str,
    /// Milliseconds between an end and the restart.
    pub delay_ms: u64,
    /// Most restarts in `window_ms`; 0: no limit.
    pub max_attempts: u32,
    /// The window the attempts are counted in; 0: forever.
    pub window_ms: u64,
}

/// A task (`ps -o json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskView {
    /// Its id.
    pub id: String,
    /// `service.slot` (`service.node` for a global service's task).
    pub name: String,
    /// The service.
    pub service: String,
    /// The slot (0 for a global service).
    pub slot: u32,
    /// The node's id; empty until placed.
    pub node: String,
    /// The node's hostname, when known.
    pub node_name: String,
    /// `running` or `shutdown`.
    pub desired: &'static str,
    /// What it was last seen doing.
    pub state: &'static str,
    /// Its health check's verdict (`starting`, `healthy`, `unhealthy`); absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<&'static str>,
    /// The spec version it runs.
    pub spec_version: u64,
    /// Its address; empty until known.
    pub address: String,
    /// Its exit code, once exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it is pending, failed or shut down.
    pub reason: String,
    /// When it was created.
    pub created_at: String,
    /// When its state last changed.
    pub updated_at: String,
}

/// A node (`node ls -o json`, `node inspect`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    /// Its id.
    pub id: String,
    /// Its hostname.
    pub hostname: String,
    /// Its address.
    pub address: String,
    /// `ready`, `down` or `unknown`.
    pub status: &'static str,
    /// `active`, `pause` or `drain`.
    pub availability: &'static str,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// CPUs.
    pub cpus: f64,
    /// Memory, in bytes.
    pub memory_bytes: u64,
    /// Its containers' subnet.
    pub subnet: String,
    /// Its last heartbeat as committed.
    pub last_seen: String,
}

/// A line of `ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceSummary {
    /// The name.
    pub name: String,
    /// `replicated` or `global`.
    pub mode: &'static str,
    /// Tasks meant to run and running.
    pub running: u32,
    /// Tasks wanted (a global service: tasks meant to run).
    pub desired: u32,
    /// The image.
    pub image: String,
    /// Published ports, `8080->80/tcp`.
    pub ports: Vec<String>,
    /// The version of its spec.
    pub version: u64,
    /// Its virtual IP (empty if none).
    pub vip: String,
}

/// `running`, `shutdown`.
pub fn desired_word(d: v1::TaskDesiredState) -> &'static str {
    match d {
        v1::TaskDesiredState::Running => "running",
        v1::TaskDesiredState::Shutdown => "shutdown",
        v1::TaskDesiredState::Unspecified => "unknown",
    }
}

/// The word for a task's health; `None` without a check.
pub fn health_word(h: v1::TaskHealth) -> Option<&'static str> {
    match h {
        v1::TaskHealth::Unspecified => None,
        v1::TaskHealth::Starting => Some("starting"),
        v1::TaskHealth::Healthy => Some("healthy"),
        v1::TaskHealth::Unhealthy => Some("unhealthy"),
    }
}

/// `pending`, `running`, `failed`, ...
pub fn state_word(s: v1::TaskState) -> &'static str {
    match s {
        v1::TaskState::Unspecified => "unknown",
        v1::TaskState::Pending => "pending",
        v1::TaskState::Assigned => "assigned",
        v1::TaskState::Starting => "starting",
        v1::TaskState::Running => "running",
        v1::TaskState::Complete => "complete",
        v1::TaskState::Failed => "failed",
        v1::TaskState::Shutdown => "shutdown",
        v1::TaskState::Orphaned => "orphaned",
    }
}

/// `ready`, `down`, `unknown`.
pub fn status_word(s: v1::NodeStatus) -> &'static str {
    match s {
        v1::NodeStatus::Ready => "ready",
        v1::NodeStatus::Down => "down",
        v1::NodeStatus::Unknown | v1::NodeStatus::Unspecified => "unknown",
    }
}

/// `active`, `pause`, `drain`.
pub fn availability_word(a: v1::NodeAvailability) -> &'static str {
    match a {
        v1::NodeAvailability::Active | v1::NodeAvailability::Unspecified => "active",
        v1::NodeAvailability::Pause => "pause",
        v1::NodeAvailability::Drain => "drain",
    }
}

fn protocol_word(p: v1::Protocol) -> &'static str {
    match p {
        v1::Protocol::Udp => "udp",
        v1::Protocol::Tcp | v1::Protocol::Unspecified => "tcp",
    }
}

/// `8080->80/tcp`, or `80/tcp` when the node chooses the published port.
pub fn port_text(p: &v1::ServicePort) -> String {
    let proto = protocol_word(p.protocol());
    let host = if p.mode() == v1::PortMode::Host {
        " (host)"
    } else {
        ""
    };
    if p.published == 0 {
        format!("{}/{proto}{host}", p.target)
    } else {
        format!("{}->{}/{proto}{host}", p.published, p.target)
    }
}

/// A service's ports as published: its ingress ports with the ports the cluster chose,
/// then its host-mode ports.
pub fn published_ports(s: &v1::Service, spec: &v1::ServiceSpec) -> Vec<String> {
    let ingress = spec
        .ports
        .iter()
        .filter(|p| p.mode() != v1::PortMode::Host)
        .map(|p| {
            s.ingress
                .iter()
                .find(|i| i.target == p.target && i.protocol == p.protocol)
                .filter(|_| p.published == 0)
                .unwrap_or(p)
        });
    let host = spec.ports.iter().filter(|p| p.mode() == v1::PortMode::Host);
    ingress.chain(host).map(port_text).collect()
}

impl From<&v1::ServiceSpec> for SpecView {
    fn from(s: &v1::ServiceSpec) -> Self {
        let r = s.resources.unwrap_or_default();
        SpecView {
            name: s.name.clone(),
            image: s.image.clone(),
            entrypoint: s.has_entrypoint.then(|| s.entrypoint.clone()),
            command: s.command.clone(),
            env: s.env.clone(),
            mode: if s.global { "global" } else { "replicated" },
            replicas: (!s.global).then_some(s.replicas),
            ports: s
                .ports
                .iter()
                .map(|p| PortView {
                    target: p.target,
                    published: p.published,
                    protocol: protocol_word(p.protocol()),
                })
                .collect(),
            links: s
                .links
                .iter()
                .map(|l| LinkView {
                    service: l.service.clone(),
                    alias: l.alias.clone(),
                })
                .collect(),
            resources: (r != v1::ServiceResources::default()).then_some(ResourcesView {
                cpus_limit: r.cpus_limit,
                memory_limit: r.memory_limit,
                cpus_reserved: r.cpus_reserved,
                memory_reserved: r.memory_reserved,
            }),
            constraints: s.constraints.clone(),
            preferences: s.preferences.clone(),
            max_replicas_per_node: s.max_replicas_per_node,
            labels: s.labels.clone().into_iter().collect(),
            restart: s.restart.map(|r| RestartView {
                condition: match r.condition() {
                    v1::RestartCondition::None => "none",
                    v1::RestartCondition::OnFailure => "on-failure",
                    v1::RestartCondition::Any | v1::RestartCondition::Unspecified => "any",
                },
                delay_ms: r.delay_ms,
                max_attempts: r.max_attempts,
                window_ms: r.window_ms,
            }),
            healthcheck: s.healthcheck.as_ref().map(HealthCheckView::from),
            update_config: s.update_config.as_ref().map(UpdateConfigView::from),
            rollback_config: s.rollback_config.as_ref().map(UpdateConfigView::from),
        }
    }
}

impl From<&v1::Service> for ServiceView {
    fn from(s: &v1::Service) -> Self {
        let spec = s.spec.clone().unwrap_or_default();
        ServiceView {
            name: spec.name.clone(),
            version: s.version,
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
            spec: (&spec).into(),
            history: s
                .history
                .iter()
                .map(|h| HistoryView {
                    version: h.version,
                    replaced_at: rfc3339(h.replaced_at),
                    spec: (&h.spec.clone().unwrap_or_default()).into(),
                })
                .collect(),
            update: s.update.as_ref().map(RolloutView::from),
        }
    }
}

/// `web.2`, or `web.<node>` for a global service's task (slot 0).
pub fn task_name(t: &v1::Task, node_name: &str) -> String {
    if t.slot == 0 {
        let node = if node_name.is_empty() {
            &t.node
        } else {
            node_name
        };
        format!("{}.{}", t.service, node)
    } else {
        format!("{}.{}", t.service, t.slot)
    }
}

impl TaskView {
    /// `t`, with its node's hostname looked up in `nodes` (id → hostname).
    pub fn new(t: &v1::Task, nodes: &BTreeMap<String, String>) -> Self {
        let node_name = nodes.get(&t.node).cloned().unwrap_or_default();
        TaskView {
            id: t.id.clone(),
            name: task_name(t, &node_name),
            service: t.service.clone(),
            slot: t.slot,
            node: t.node.clone(),
            node_name,
            desired: desired_word(t.desired()),
            state: state_word(t.observed()),
            health: health_word(t.health()),
            spec_version: t.spec_version,
            address: t.address.clone(),
            exit_code: t.has_exit_code.then_some(t.exit_code),
            reason: t.reason.clone(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

impl From<&v1::Node> for NodeView {
    fn from(n: &v1::Node) -> Self {
        NodeView {
            id: n.id.clone(),
            hostname: n.hostname.clone(),
            address: n.address.clone(),
            status: status_word(n.status()),
            availability: availability_word(n.availability()),
            labels: n.labels.clone().into_iter().collect(),
            cpus: n.cpus,
            memory_bytes: n.memory_bytes,
            subnet: n.subnet.clone(),
            last_seen: rfc3339(n.last_seen),
        }
    }
}

/// Node id → hostname.
pub fn node_names(nodes: &[v1::Node]) -> BTreeMap<String, String> {
    nodes
        .iter()
        .map(|n| (n.id.clone(), n.hostname.clone()))
        .collect()
}
