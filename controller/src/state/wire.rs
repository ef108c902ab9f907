//! The cluster state's records to and from their wire form (`berth.v1` messages). Specs come
//! in from clients and are checked ([`spec_from_wire`]); services, tasks and nodes only go
//! out.

use berth_proto::v1;

use super::StateError;
use super::types::*;
pub use super::wire_update::*;

fn protocol_from(p: v1::Protocol) -> Protocol {
    match p {
        v1::Protocol::Udp => Protocol::Udp,
        v1::Protocol::Tcp | v1::Protocol::Unspecified => Protocol::Tcp,
    }
}

fn protocol_to(p: Protocol) -> v1::Protocol {
    match p {
        Protocol::Tcp => v1::Protocol::Tcp,
        Protocol::Udp => v1::Protocol::Udp,
    }
}

fn nonzero<T: Default + PartialEq>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

/// A spec sent by a client, converted and checked.
pub fn spec_from_wire(w: &v1::ServiceSpec) -> Result<ServiceSpec, StateError> {
    let bad = |field: &str, reason: String| StateError::Invalid {
        service: w.name.clone(),
        field: field.to_owned(),
        reason,
    };
    let mut ports = Vec::new();
    for p in &w.ports {
        let target = u16::try_from(p.target)
            .map_err(|_| bad("ports", format!("target port {} is above 65535", p.target)))?;
        let published = u16::try_from(p.published).map_err(|_| {
            bad(
                "ports",
                format!("published port {} is above 65535", p.published),
            )
        })?;
        ports.push(PortSpec {
            target,
            published: nonzero(published),
            protocol: protocol_from(p.protocol()),
            mode: port_mode_from(p.mode()),
        });
    }
    let restart = match &w.restart {
        None => RestartPolicy::default(),
        Some(r) => RestartPolicy {
            condition: match r.condition() {
                v1::RestartCondition::None => RestartCondition::None,
                v1::RestartCondition::OnFailure => RestartCondition::OnFailure,
                v1::RestartCondition::Any | v1::RestartCondition::Unspecified => {
                    RestartCondition::Any
                }
            },
            delay_ms: r.delay_ms,
            max_attempts: r.max_attempts,
            window_ms: r.window_ms,
        },
    };
    let healthcheck = w
        .healthcheck
        .as_ref()
        .map(|h| healthcheck_from_wire(h).map_err(|reason| bad("healthcheck", reason)))
        .transpose()?;
    let r = w.resources.unwrap_or_default();
    let spec = ServiceSpec {
        name: w.name.clone(),
        image: w.image.clone(),
        entrypoint: w.has_entrypoint.then(|| w.entrypoint.clone()),
        command: w.command.clone(),
        env: w.env.clone(),
        mode: if w.global {
            ServiceMode::Global
        } else {
            ServiceMode::Replicated {
                replicas: w.replicas,
            }
        },
        ports,
        links: w
            .links
            .iter()
            .map(|l| LinkSpec {
                service: l.service.clone(),
                alias: if l.alias.is_empty() {
                    l.service.clone()
                } else {
                    l.alias.clone()
                },
            })
            .collect(),
        resources: Resources {
            cpus_limit: nonzero(r.cpus_limit),
            memory_limit: nonzero(r.memory_limit),
            cpus_reserved: nonzero(r.cpus_reserved),
            memory_reserved: nonzero(r.memory_reserved),
        },
        constraints: w.constraints.clone(),
        labels: w.labels.clone().into_iter().collect(),
        restart,
        max_replicas_per_node: nonzero(w.max_replicas_per_node),
        preferences: w.preferences.clone(),
        healthcheck,
        update_config: w
            .update_config
            .as_ref()
            .map(|c| {
                update_config_from_wire(c, "update_config").map_err(|r| bad("update_config", r))
            })
            .transpose()?,
        rollback_config: w
            .rollback_config
            .as_ref()
            .map(|c| {
                update_config_from_wire(c, "rollback_config").map_err(|r| bad("rollback_config", r))
            })
            .transpose()?,
        force_update: w.force_update,
    };
    super::validate_spec(&spec)?;
    Ok(spec)
}

/// A spec in its wire form.
pub fn spec_to_wire(s: &ServiceSpec) -> v1::ServiceSpec {
    let (global, replicas) = match s.mode {
        ServiceMode::Global => (true, 0),
        ServiceMode::Replicated { replicas } => (false, replicas),
    };
    v1::ServiceSpec {
        name: s.name.clone(),
        image: s.image.clone(),
        entrypoint: s.entrypoint.clone().unwrap_or_default(),
        has_entrypoint: s.entrypoint.is_some(),
        command: s.command.clone(),
        env: s.env.clone(),
        global,
        replicas,
        ports: s.ports.iter().map(port_to_wire).collect(),
        links: s
            .links
            .iter()
            .map(|l| v1::ServiceLink {
                service: l.service.clone(),
                alias: l.alias.clone(),
            })
            .collect(),
        resources: Some(v1::ServiceResources {
            cpus_limit: s.resources.cpus_limit.unwrap_or(0.0),
            memory_limit: s.resources.memory_limit.unwrap_or(0),
            cpus_reserved: s.resources.cpus_reserved.unwrap_or(0.0),
            memory_reserved: s.resources.memory_reserved.unwrap_or(0),
        }),
        constraints: s.constraints.clone(),
        labels: s.labels.clone().into_iter().collect(),
        restart: Some(v1::ServiceRestartPolicy {
            condition: match s.restart.condition {
                RestartCondition::None => v1::RestartCondition::None,
                RestartCondition::OnFailure => v1::RestartCondition::OnFailure,
                RestartCondition::Any => v1::RestartCondition::Any,
            }
            .into(),
            delay_ms: s.restart.delay_ms,
            max_attempts: s.restart.max_attempts,
            window_ms: s.restart.window_ms,
        }),
        max_replicas_per_node: s.max_replicas_per_node.unwrap_or(0),
        preferences: s.preferences.clone(),
        healthcheck: s.healthcheck.as_ref().map(healthcheck_to_wire),
        update_config: s.update_config.as_ref().map(update_config_to_wire),
        rollback_config: s.rollback_config.as_ref().map(update_config_to_wire),
        force_update: s.force_update,
    }
}

/// A health check sent by a client: checked, Docker's defaults for zero values.
fn healthcheck_from_wire(h: &v1::ServiceHealthCheck) -> Result<HealthCheckSpec, String> {
    let port = |kind: &str| match u16::try_from(h.port) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "a {kind} probe needs a port in 1-65535, not {}",
            h.port
        )),
    };
    let probe = match h.kind() {
        v1::HealthProbeKind::Cmd => {
            if h.command.first().is_none_or(|c| c.is_empty()) {
                return Err("a CMD probe needs a command".into());
            }
            HealthProbe::Cmd {
                args: h.command.clone(),
            }
        }
        v1::HealthProbeKind::CmdShell => match h.command.as_slice() {
            [text] if !text.trim().is_empty() => HealthProbe::Shell {
                command: text.clone(),
            },
            _ => return Err("a CMD-SHELL probe needs one command string".into()),
        },
        v1::HealthProbeKind::Http => {
            if !h.path.starts_with('/') {
                return Err(format!(
                    "an HTTP probe's path must start with /, not {:?}",
                    h.path
                ));
            }
            HealthProbe::Http {
                port: port("HTTP")?,
                path: h.path.clone(),
            }
        }
        v1::HealthProbeKind::Tcp => HealthProbe::Tcp { port: port("TCP")? },
        v1::HealthProbeKind::Unspecified => {
            return Err("the probe kind is missing (CMD, CMD-SHELL, HTTP or TCP)".into());
        }
    };
    let or = |v: u64, default: u64| if v == 0 { default } else { v };
    Ok(HealthCheckSpec {
        probe,
        interval_ms: or(h.interval_ms, HealthCheckSpec::DEFAULT_INTERVAL_MS),
        timeout_ms: or(h.timeout_ms, HealthCheckSpec::DEFAULT_TIMEOUT_MS),
        retries: if h.retries == 0 {
            HealthCheckSpec::DEFAULT_RETRIES
        } else {
            h.retries
        },
        start_period_ms: h.start_period_ms,
        start_interval_ms: or(
            h.start_interval_ms,
            HealthCheckSpec::DEFAULT_START_INTERVAL_MS,
        ),
    })
}

/// A health check in its wire form.
pub fn healthcheck_to_wire(h: &HealthCheckSpec) -> v1::ServiceHealthCheck {
    let (kind, command, port, path) = match &h.probe {
        HealthProbe::Cmd { args } => (v1::HealthProbeKind::Cmd, args.clone(), 0, String::new()),
        HealthProbe::Shell { command } => (
            v1::HealthProbeKind::CmdShell,
            vec![command.clone()],
            0,
            String::new(),
        ),
        HealthProbe::Http { port, path } => {
            (v1::HealthProbeKind::Http, vec![], *port, path.clone())
        }
        HealthProbe::Tcp { port } => (v1::HealthProbeKind::Tcp, vec![], *port, String::new()),
    };
    v1::ServiceHealthCheck {
        kind: kind.into(),
        command,
        port: u32::from(port),
        path,
        interval_ms: h.interval_ms,
        timeout_ms: h.timeout_ms,
        retries: h.retries,
        start_period_ms: h.start_period_ms,
        start_interval_ms: h.start_interval_ms,
    }
}

/// A port in its wire form.
pub fn port_to_wire(p: &PortSpec) -> v1::ServicePort {
    v1::ServicePort {
        target: p.target.into(),
        published: p.published.unwrap_or(0).into(),
        protocol: protocol_to(p.protocol).into(),
        mode: match p.mode {
            PortMode::Ingress => v1::PortMode::Ingress,
            PortMode::Host => v1::PortMode::Host,
        }
        .into(),
    }
}

fn port_mode_from(m: v1::PortMode) -> PortMode {
    match m {
        v1::PortMode::Host => PortMode::Host,
        v1::PortMode::Ingress | v1::PortMode::Unspecified => PortMode::Ingress,
    }
}

/// Unix nanoseconds as the wire's int64 (saturating).
fn nanos(t: i128) -> i64 {
    i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
}

/// A service in its wire form.
pub fn service_to_wire(s: &Service) -> v1::Service {
    v1::Service {
        spec: Some(spec_to_wire(&s.spec)),
        version: s.version,
        created_at: nanos(s.created_at),
        updated_at: nanos(s.updated_at),
        history: s
            .history
            .iter()
            .map(|h| v1::ServiceVersion {
                version: h.version,
                spec: Some(spec_to_wire(&h.spec)),
                replaced_at: nanos(h.replaced_at),
            })
            .collect(),
        vip: s.vip.map(|ip| ip.to_string()).unwrap_or_default(),
        ingress: s.ingress.iter().map(port_to_wire).collect(),
        update: s.update.as_ref().map(update_status_to_wire),
    }
}

/// A task in its wire form.
pub fn task_to_wire(t: &Task) -> v1::Task {
    v1::Task {
        id: t.id.clone(),
        service: t.service.clone(),
        slot: t.slot,
        spec_version: t.spec_version,
        node: t.node.clone().unwrap_or_default(),
        desired: match t.desired {
            DesiredState::Running => v1::TaskDesiredState::Running,
            DesiredState::Shutdown => v1::TaskDesiredState::Shutdown,
        }
        .into(),
        observed: match t.observed {
            ObservedState::Pending => v1::TaskState::Pending,
            ObservedState::Assigned => v1::TaskState::Assigned,
            ObservedState::Starting => v1::TaskState::Starting,
            ObservedState::Running => v1::TaskState::Running,
            ObservedState::Complete => v1::TaskState::Complete,
            ObservedState::Failed => v1::TaskState::Failed,
            ObservedState::Shutdown => v1::TaskState::Shutdown,
            ObservedState::Orphaned => v1::TaskState::Orphaned,
        }
        .into(),
        address: t.address.map(|a| a.to_string()).unwrap_or_default(),
        has_exit_code: t.exit_code.is_some(),
        exit_code: t.exit_code.unwrap_or(0),
        reason: t.reason.clone().unwrap_or_default(),
        created_at: nanos(t.created_at),
        updated_at: nanos(t.updated_at),
        health: health_to_wire(t.health).into(),
    }
}

/// A task's health in its wire form.
pub fn health_to_wire(h: Option<Health>) -> v1::TaskHealth {
    match h {
        None => v1::TaskHealth::Unspecified,
        Some(Health::Starting) => v1::TaskHealth::Starting,
        Some(Health::Healthy) => v1::TaskHealth::Healthy,
        Some(Health::Unhealthy) => v1::TaskHealth::Unhealthy,
    }
}

/// A task's health from its wire form (`None`: no check, or a value this build does not
/// know).
pub fn health_from_wire(h: i32) -> Option<Health> {
    match v1::TaskHealth::try_from(h) {
        Ok(v1::TaskHealth::Starting) => Some(Health::Starting),
        Ok(v1::TaskHealth::Healthy) => Some(Health::Healthy),
        Ok(v1::TaskHealth::Unhealthy) => Some(Health::Unhealthy),
        Ok(v1::TaskHealth::Unspecified) | Err(_) => None,
    }
}

/// The spec of `service` at `version`: the current one or one of its history.
pub fn spec_at(service: &Service, version: u64) -> Option<&ServiceSpec> {
    if service.version == version {
        return Some(&service.spec);
    }
    service
        .history
        .iter()
        .find(|h| h.version == version)
        .map(|h| &h.spec)
}

/// What a node must do about `task` (its service's record, if it still exists, gives the
/// spec at the task's version): the dispatcher's `Assignment`.
pub fn assignment_to_wire(t: &Task, service: Option<&Service>) -> v1::Assignment {
    v1::Assignment {
        task_id: t.id.clone(),
        service: t.service.clone(),
        slot: t.slot,
        spec_version: t.spec_version,
        desired: match t.desired {
            DesiredState::Running => v1::TaskDesiredState::Running,
            DesiredState::Shutdown => v1::TaskDesiredState::Shutdown,
        }
        .into(),
        spec: service
            .and_then(|s| spec_at(s, t.spec_version))
            .map(spec_to_wire),
        created_at: nanos(t.created_at),
    }
}

/// A node in its wire form.
pub fn node_to_wire(n: &Node) -> v1::Node {
    v1::Node {
        id: n.id.clone(),
        hostname: n.hostname.clone(),
        address: n.address.clone(),
        labels: n.labels.clone().into_iter().collect(),
        cpus: n.resources.cpus,
        memory_bytes: n.resources.memory_bytes,
        status: match n.status {
            NodeStatus::Unknown => v1::NodeStatus::Unknown,
            NodeStatus::Ready => v1::NodeStatus::Ready,
            NodeStatus::Down => v1::NodeStatus::Down,
        }
        .into(),
        availability: match n.availability {
            Availability::Active => v1::NodeAvailability::Active,
            Availability::Drain => v1::NodeAvailability::Drain,
            Availability::Pause => v1::NodeAvailability::Pause,
        }
        .into(),
        last_seen: n.last_seen.map(nanos).unwrap_or(0),
        subnet: n.subnet.map(|s| s.to_string()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_spec() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            image: "nginx:1".into(),
            entrypoint: Some(vec![]),
            command: vec!["-g".into(), "daemon off;".into()],
            env: vec!["A=1".into()],
            mode: ServiceMode::Replicated { replicas: 3 },
            ports: vec![
                PortSpec {
                    target: 80,
                    published: Some(8080),
                    protocol: Protocol::Tcp,
                    mode: PortMode::Host,
                },
                PortSpec {
                    target: 53,
                    published: None,
                    protocol: Protocol::Udp,
                    mode: PortMode::Host,
                },
            ],
            links: vec![LinkSpec {
                service: "db".into(),
                alias: "database".into(),
            }],
            resources: Resources {
                cpus_limit: Some(1.5),
                memory_limit: Some(512 << 20),
                cpus_reserved: Some(0.5),
                memory_reserved: None,
            },
            constraints: vec!["node.labels.zone!=b".into()],
            labels: [("team".to_string(), "a".to_string())].into(),
            restart: RestartPolicy {
                condition: RestartCondition::OnFailure,
                delay_ms: 100,
                max_attempts: 3,
                window_ms: 60_000,
            },
            max_replicas_per_node: Some(2),
            preferences: vec!["spread: node.labels.zone".into()],
            healthcheck: Some(HealthCheckSpec {
                probe: HealthProbe::Http {
                    port: 80,
                    path: "/health".into(),
                },
                interval_ms: 2_000,
                timeout_ms: 500,
                retries: 2,
                start_period_ms: 10_000,
                start_interval_ms: 1_000,
            }),
            update_config: None,
            rollback_config: None,
            force_update: 0,
        }
    }

    #[test]
    fn specs_round_trip_through_the_wire() {
        let s = full_spec();
        assert_eq!(spec_from_wire(&spec_to_wire(&s)).unwrap(), s);
        // And through the stored JSON.
        let stored = serde_json::to_string(&s).unwrap();
        assert!(
            stored.contains(r#""probe":{"kind":"http","port":80,"path":"/health"}"#),
            "{stored}"
        );
        assert_eq!(serde_json::from_str::<ServiceSpec>(&stored).unwrap(), s);
        let mut g = full_spec();
        g.mode = ServiceMode::Global;
        g.entrypoint = None;
        g.healthcheck = None;
        assert_eq!(spec_from_wire(&spec_to_wire(&g)).unwrap(), g);
        for probe in [
            HealthProbe::Cmd {
                args: vec!["redis-cli".into(), "ping".into()],
            },
            HealthProbe::Shell {
                command: "wget -qO- localhost || exit 1".into(),
            },
            HealthProbe::Tcp { port: 6379 },
        ] {
            let mut h = full_spec();
            h.healthcheck.as_mut().unwrap().probe = probe;
            assert_eq!(spec_from_wire(&spec_to_wire(&h)).unwrap(), h);
        }
    }

    #[test]
    fn health_checks_take_dockers_defaults_and_bad_ones_are_refused() {
        let mut w = spec_to_wire(&full_spec());
        w.healthcheck = Some(v1::ServiceHealthCheck {
            kind: v1::HealthProbeKind::Tcp.into(),
            port: 5432,
            ..Default::default()
        });
        let h = spec_from_wire(&w).unwrap().healthcheck.unwrap();
        assert_eq!(
            h,
            HealthCheckSpec {
                probe: HealthProbe::Tcp { port: 5432 },
                interval_ms: 30_000,
                timeout_ms: 30_000,
                retries: 3,
                start_period_ms: 0,
                start_interval_ms: 5_000,
            }
        );
        let refused = |f: &dyn Fn(&mut v1::ServiceHealthCheck)| {
            let mut w = spec_to_wire(&full_spec());
            f(w.healthcheck.as_mut().unwrap());
            let e = spec_from_wire(&w).unwrap_err().to_string();
            assert!(e.contains("healthcheck"), "{e}");
            e
        };
        assert!(refused(&|h| h.path = "health".into()).contains("must start with /"));
        assert!(refused(&|h| h.port = 0).contains("port in 1-65535"));
        assert!(refused(&|h| h.port = 70_000).contains("70000"));
        assert!(refused(&|h| h.kind = 0).contains("kind is missing"));
        let e = refused(&|h| {
            h.kind = v1::HealthProbeKind::Cmd.into();
            h.command.clear();
        });
        assert!(e.contains("needs a command"), "{e}");
        let e = refused(&|h| {
            h.kind = v1::HealthProbeKind::CmdShell.into();
            h.command = vec!["a".into(), "b".into()];
        });
        assert!(e.contains("one command string"), "{e}");
    }

    #[test]
    fn bad_wire_specs_are_refused_naming_the_problem() {
        let mut w = spec_to_wire(&full_spec());
        w.ports[0].target = 70_000;
        let e = spec_from_wire(&w).unwrap_err().to_string();
        assert!(e.contains("70000") && e.contains("\"web\""), "{e}");
        let mut w = spec_to_wire(&full_spec());
        w.name = "Bad Name".into();
        assert!(
            spec_from_wire(&w)
                .unwrap_err()
                .to_string()
                .contains("invalid name")
        );
        // An empty alias means the service's own name.
        let mut w = spec_to_wire(&full_spec());
        w.links[0].alias.clear();
        assert_eq!(spec_from_wire(&w).unwrap().links[0].alias, "db");
    }
}
