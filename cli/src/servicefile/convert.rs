//! A [`ServiceModel`] to the [`v1::ServiceSpec`] sent to the controller. What the spec has
//! no place for yet (update policies, volumes, `expose`, `depends_on`,
//! `stop_grace_period`, a port's host address) stays in the model; the parser has
//! warned about each of those that changes behaviour.

use berth_proto::v1;

use super::model::{
    FailureAction, HealthTest, Healthcheck, Mode, PortMode, Protocol, RestartCondition,
    ServiceModel, UpdateConfig, UpdateOrder,
};

/// The restart delay when `restart_policy` gives none: Swarm's, and the cluster's default.
pub const DEFAULT_RESTART_DELAY_MS: u64 = 5_000;

fn millis(d: Option<std::time::Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The spec of `m`. Port ranges become one port each.
pub fn to_spec(m: &ServiceModel) -> v1::ServiceSpec {
    let (global, replicas) = match m.deploy.mode {
        Mode::Global => (true, 0),
        Mode::Replicated { replicas } => (false, replicas),
    };
    let mut ports = Vec::new();
    for p in &m.ports {
        let protocol = match p.protocol {
            Protocol::Tcp => v1::Protocol::Tcp,
            Protocol::Udp => v1::Protocol::Udp,
        };
        for (i, target) in (p.target.start..=p.target.end).enumerate() {
            let published = p
                .published
                .map_or(0, |r| u32::from(r.start) + u32::try_from(i).unwrap_or(0));
            ports.push(v1::ServicePort {
                target: target.into(),
                published,
                protocol: protocol.into(),
                mode: match p.mode {
                    PortMode::Ingress => v1::PortMode::Ingress,
                    PortMode::Host => v1::PortMode::Host,
                }
                .into(),
            });
        }
    }
    let r = &m.deploy.resources;
    let restart = m.deploy.restart_policy.map(|p| v1::ServiceRestartPolicy {
        condition: match p.condition {
            RestartCondition::None => v1::RestartCondition::None,
            RestartCondition::OnFailure => v1::RestartCondition::OnFailure,
            RestartCondition::Any => v1::RestartCondition::Any,
        }
        .into(),
        delay_ms: p
            .delay
            .map_or(DEFAULT_RESTART_DELAY_MS, |d| millis(Some(d))),
        max_attempts: p.max_attempts.unwrap_or(0),
        window_ms: millis(p.window),
    });
    v1::ServiceSpec {
        name: m.name.clone(),
        image: m.image.clone(),
        entrypoint: m.entrypoint.clone().unwrap_or_default(),
        has_entrypoint: m.entrypoint.is_some(),
        command: m.command.clone().unwrap_or_default(),
        env: m
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        global,
        replicas,
        ports,
        links: m
            .links
            .iter()
            .map(|l| v1::ServiceLink {
                service: l.service.clone(),
                alias: l.alias.clone(),
            })
            .collect(),
        resources: (*r != Default::default()).then(|| v1::ServiceResources {
            cpus_limit: r.limits.cpus.unwrap_or(0.0),
            memory_limit: r.limits.memory.unwrap_or(0),
            cpus_reserved: r.reservations.cpus.unwrap_or(0.0),
            memory_reserved: r.reservations.memory.unwrap_or(0),
        }),
        constraints: m.deploy.placement.constraints.clone(),
        labels: m
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        restart,
        max_replicas_per_node: m.deploy.placement.max_replicas_per_node.unwrap_or(0),
        preferences: m
            .deploy
            .placement
            .preferences
            .iter()
            .map(|k| format!("spread: node.labels.{k}"))
            .collect(),
        healthcheck: m.healthcheck.as_ref().and_then(healthcheck),
        update_config: m.deploy.update_config.as_ref().map(update_config),
        rollback_config: m.deploy.rollback_config.as_ref().map(update_config),
        force_update: 0,
    }
}

/// `update_config` / `rollback_config`: Compose's defaults for what is unset (one task at a
/// time; the controller fills in the rest).
fn update_config(c: &UpdateConfig) -> v1::ServiceUpdateConfig {
    v1::ServiceUpdateConfig {
        parallelism: c.parallelism.unwrap_or(1),
        delay_ms: millis(c.delay),
        order: match c.order {
            None => v1::UpdateOrder::Unspecified,
            Some(UpdateOrder::StopFirst) => v1::UpdateOrder::StopFirst,
            Some(UpdateOrder::StartFirst) => v1::UpdateOrder::StartFirst,
        }
        .into(),
        monitor_ms: c.monitor.map(|d| millis(Some(d))),
        failure_action: match c.failure_action {
            None => v1::FailureAction::Unspecified,
            Some(FailureAction::Pause) => v1::FailureAction::Pause,
            Some(FailureAction::Continue) => v1::FailureAction::Continue,
            Some(FailureAction::Rollback) => v1::FailureAction::Rollback,
        }
        .into(),
        max_failure_ratio: c.max_failure_ratio.unwrap_or(0.0),
    }
}

/// The health check of `h`; none when it is disabled or has no test (berth does not read
/// an image's own check). Unset timings are 0: the controller fills in Docker's defaults.
fn healthcheck(h: &Healthcheck) -> Option<v1::ServiceHealthCheck> {
    if h.disable {
        return None;
    }
    let (kind, command, port, path) = match h.test.as_ref()? {
        HealthTest::None => return None,
        HealthTest::Cmd(args) => (v1::HealthProbeKind::Cmd, args.clone(), 0, String::new()),
        HealthTest::Shell(text) => (
            v1::HealthProbeKind::CmdShell,
            vec![text.clone()],
            0,
            String::new(),
        ),
        HealthTest::Http { port, path } => (v1::HealthProbeKind::Http, vec![], *port, path.clone()),
        HealthTest::Tcp { port } => (v1::HealthProbeKind::Tcp, vec![], *port, String::new()),
    };
    Some(v1::ServiceHealthCheck {
        kind: kind.into(),
        command,
        port: port.into(),
        path,
        interval_ms: millis(h.interval),
        timeout_ms: millis(h.timeout),
        retries: h.retries.unwrap_or(0),
        start_period_ms: millis(h.start_period),
        start_interval_ms: millis(h.start_interval),
    })
}
