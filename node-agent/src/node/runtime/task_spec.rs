//! An assignment's service spec as the options of its container (pure: no I/O).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use berth_proto::v1::{Assignment, PortMode, Protocol, ServiceSpec};
use berth_runtime::cgroup::Limits;
use berth_runtime::spec::{NetworkMode, RestartPolicy};

use crate::container::CreateOptions;
use crate::container::options::valid_name;
use crate::net::files::{ExposedPort, LinkTarget, link_env, link_hosts_line};

/// Label holding the task id: what makes a container one of the node's tasks.
pub const LABEL_TASK: &str = "berth.task";
/// Label holding the service name.
pub const LABEL_SERVICE: &str = "berth.service";
/// Label holding the slot (0 for a global service's task).
pub const LABEL_SLOT: &str = "berth.slot";
/// Label holding the version of the service's spec the task runs.
pub const LABEL_SPEC_VERSION: &str = "berth.spec-version";

/// How many characters of the task id go into the container name.
const TASK_PREFIX_LEN: usize = 12;

/// The container name of a task: `<service>.<slot>.<task id prefix>`, or
/// `<service>.<task id prefix>` for a global service's task (slot 0).
pub fn container_name(service: &str, slot: u32, task_id: &str) -> String {
    let short: String = task_id.chars().take(TASK_PREFIX_LEN).collect();
    if slot == 0 {
        format!("{service}.{short}")
    } else {
        format!("{service}.{slot}.{short}")
    }
}

/// A service another service links to, as the node's network map knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedService {
    /// Its virtual IP.
    pub vip: Ipv4Addr,
    /// Its ports (the container side), for Docker's link variables.
    pub ports: Vec<ExposedPort>,
}

/// What the node's network gives a task's container: its resolver and its links' targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskNetwork {
    /// The nameservers of its `/etc/resolv.conf` (the node's resolver); empty: the host's.
    pub dns: Vec<Ipv4Addr>,
    /// The linked services by name.
    pub links: BTreeMap<String, LinkedService>,
}

/// The options of the container that runs `task` from `spec`: the image, its entrypoint,
/// command and environment, the bridge network with its host-mode published ports (a port
/// without a published one gets a port chosen by the node; ingress ports are the routing
/// mesh's, on every node), the CPU and memory limits, restart policy `no` (the controller
/// replaces a task that ended), the task's labels over the service's, and from `net` its
/// resolver and its links: each alias names the linked service's virtual IP in `/etc/hosts`,
/// with Docker's link variables (the spec's own environment wins). `Err` says what is wrong
/// with the spec, or names a linked service the node does not know.
pub fn create_options(
    task: &Assignment,
    spec: &ServiceSpec,
    net: &TaskNetwork,
) -> Result<CreateOptions, String> {
    if task.task_id.is_empty() {
        return Err("the task id is empty".into());
    }
    let service = if task.service.is_empty() {
        &spec.name
    } else {
        &task.service
    };
    let name = container_name(service, task.slot, &task.task_id);
    if !valid_name(&name) {
        return Err(format!(
            "container name {name:?} (from service {service:?} and task {:?}) is not a valid name: \
             use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters",
            task.task_id
        ));
    }
    if spec.image.is_empty() {
        return Err("the spec names no image".into());
    }
    for e in &spec.env {
        match e.split_once('=') {
            Some((k, _)) if !k.is_empty() => {}
            // A bare KEY would copy the agent's own variable into the task.
            _ => return Err(format!("environment entry {e:?} is not KEY=VALUE")),
        }
    }
    let mut publish = Vec::with_capacity(spec.ports.len());
    for p in &spec.ports {
        if p.target == 0 || p.target > 65535 || p.published > 65535 {
            return Err(format!(
                "port {}:{} is out of range (target 1-65535, published 0-65535)",
                p.published, p.target
            ));
        }
        if p.mode() != PortMode::Host {
            continue;
        }
        let proto = match p.protocol() {
            Protocol::Udp => "udp",
            Protocol::Tcp | Protocol::Unspecified => "tcp",
        };
        publish.push(if p.published == 0 {
            format!("{}/{proto}", p.target)
        } else {
            format!("{}:{}/{proto}", p.published, p.target)
        });
    }
    let mut limits = Limits::default();
    if let Some(r) = &spec.resources {
        if r.cpus_limit.is_nan() || r.cpus_limit < 0.0 {
            return Err(format!("CPU limit {} is not a number >= 0", r.cpus_limit));
        }
        limits.cpus = (r.cpus_limit > 0.0).then_some(r.cpus_limit);
        limits.memory_bytes = (r.memory_limit > 0).then_some(r.memory_limit);
    }
    let mut labels: BTreeMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_TASK.into(), task.task_id.clone());
    labels.insert(LABEL_SERVICE.into(), service.clone());
    labels.insert(LABEL_SLOT.into(), task.slot.to_string());
    labels.insert(LABEL_SPEC_VERSION.into(), task.spec_version.to_string());
    let (env, extra_hosts) = link_env_and_hosts(&name, spec, net)?;
    Ok(CreateOptions {
        image: spec.image.clone(),
        name: Some(name),
        command: spec.command.clone(),
        entrypoint: spec.has_entrypoint.then(|| spec.entrypoint.clone()),
        env,
        extra_hosts,
        dns: net.dns.clone(),
        limits,
        network: NetworkMode::Bridge,
        publish,
        restart: RestartPolicy::No,
        labels,
        ..CreateOptions::default()
    })
}

/// The environment (link variables first, then the spec's, which win) and the hosts lines
/// of `spec`'s links.
fn link_env_and_hosts(
    container: &str,
    spec: &ServiceSpec,
    net: &TaskNetwork,
) -> Result<(Vec<String>, Vec<String>), String> {
    let own: std::collections::HashSet<&str> = spec
        .env
        .iter()
        .filter_map(|e| e.split_once('=').map(|(k, _)| k))
        .collect();
    let mut env = Vec::new();
    let mut hosts = Vec::new();
    for l in &spec.links {
        let alias = if l.alias.is_empty() {
            &l.service
        } else {
            &l.alias
        };
        let target = net.links.get(&l.service).ok_or_else(|| {
            format!(
                "linked service {:?} (alias {alias:?}) has no address on this node yet: it was \
                 removed, or the node has not received the cluster's network map",
                l.service
            )
        })?;
        let link = LinkTarget {
            parent_name: container,
            alias,
            target_name: &l.service,
            target_hostname: "",
            ip: target.vip,
            exposed: &target.ports,
            env: &[],
        };
        hosts.push(link_hosts_line(&link));
        env.extend(
            link_env(&link)
                .into_iter()
                .filter(|kv| kv.split_once('=').is_none_or(|(k, _)| !own.contains(k))),
        );
    }
    env.extend(spec.env.iter().cloned());
    Ok((env, hosts))
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::{ServicePort, ServiceResources};

    use super::*;

    fn task(slot: u32) -> Assignment {
        Assignment {
            task_id: "0123456789abcdef0123".into(),
            service: "web".into(),
            slot,
            spec_version: 7,
            ..Assignment::default()
        }
    }

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            image: "busybox:1".into(),
            command: vec!["httpd".into(), "-f".into()],
            env: vec!["A=1".into()],
            ports: vec![
                ServicePort {
                    target: 80,
                    published: 8080,
                    protocol: Protocol::Tcp as i32,
                    mode: PortMode::Host as i32,
                },
                ServicePort {
                    target: 53,
                    published: 0,
                    protocol: Protocol::Udp as i32,
                    mode: PortMode::Host as i32,
                },
                ServicePort {
                    target: 9000,
                    published: 0,
                    protocol: Protocol::Unspecified as i32,
                    mode: PortMode::Host as i32,
                },
                ServicePort {
                    target: 443,
                    published: 443,
                    protocol: Protocol::Tcp as i32,
                    mode: PortMode::Ingress as i32,
                },
            ],
            resources: Some(ServiceResources {
                cpus_limit: 0.5,
                memory_limit: 64 << 20,
                cpus_reserved: 0.25,
                memory_reserved: 1 << 20,
            }),
            labels: [
                ("team".to_string(), "a".to_string()),
                (LABEL_TASK.to_string(), "forged".to_string()),
            ]
            .into(),
            ..ServiceSpec::default()
        }
    }

    #[test]
    fn a_spec_maps_to_bridge_ports_limits_and_labels() {
        let o = create_options(&task(2), &spec(), &TaskNetwork::default()).unwrap();
        assert_eq!(o.name.as_deref(), Some("web.2.0123456789ab"));
        assert_eq!(o.image, "busybox:1");
        assert_eq!(o.command, ["httpd", "-f"]);
        assert_eq!(o.entrypoint, None);
        // The ingress port is the mesh's, on every node: not the container's.
        assert_eq!(o.publish, ["8080:80/tcp", "53/udp", "9000/tcp"]);
        assert_eq!(o.network, NetworkMode::Bridge);
        assert_eq!(o.restart, RestartPolicy::No);
        assert_eq!(o.limits.cpus, Some(0.5));
        assert_eq!(o.limits.memory_bytes, Some(64 << 20));
        assert_eq!(o.labels["team"], "a");
        // The task's labels win over the service's.
        assert_eq!(o.labels[LABEL_TASK], "0123456789abcdef0123");
        assert_eq!(o.labels[LABEL_SERVICE], "web");
        assert_eq!(o.labels[LABEL_SLOT], "2");
        assert_eq!(o.labels[LABEL_SPEC_VERSION], "7");
    }

    #[test]
    fn global_tasks_entrypoints_and_no_limits() {
        let mut s = spec();
        s.has_entrypoint = true;
        s.entrypoint = vec![];
        s.resources = None;
        let o = create_options(&task(0), &s, &TaskNetwork::default()).unwrap();
        assert_eq!(o.name.as_deref(), Some("web.0123456789ab"));
        assert_eq!(o.entrypoint, Some(vec![]));
        assert_eq!(o.limits, Limits::default());
    }

    #[test]
    fn links_name_the_linked_services_vips_with_docker_variables() {
        let mut s = spec();
        s.env.push("DB_NAME=mine".into());
        s.links = vec![berth_proto::v1::ServiceLink {
            service: "redis".into(),
            alias: "db".into(),
        }];
        let vip: Ipv4Addr = "10.201.0.9".parse().unwrap();
        let net = TaskNetwork {
            dns: vec!["10.200.1.1".parse().unwrap()],
            links: [(
                "redis".to_owned(),
                LinkedService {
                    vip,
                    ports: vec![ExposedPort {
                        port: 6379,
                        proto: crate::net::files::LinkProto::Tcp,
                    }],
                },
            )]
            .into(),
        };
        let o = create_options(&task(1), &s, &net).unwrap();
        assert_eq!(o.extra_hosts, ["10.201.0.9\tdb redis"]);
        assert_eq!(o.dns, net.dns);
        assert!(o.env.contains(&"DB_PORT=tcp://10.201.0.9:6379".to_owned()));
        assert!(
            o.env
                .contains(&"DB_PORT_6379_TCP_ADDR=10.201.0.9".to_owned())
        );
        // The spec's own variable wins over the link's.
        assert!(o.env.contains(&"DB_NAME=mine".to_owned()));
        assert_eq!(
            o.env.iter().filter(|e| e.starts_with("DB_NAME=")).count(),
            1
        );
        let missing = create_options(&task(1), &s, &TaskNetwork::default()).unwrap_err();
        assert!(missing.contains("\"redis\""), "{missing}");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let bad = |f: &dyn Fn(&mut Assignment, &mut ServiceSpec)| {
            let (mut t, mut s) = (task(1), spec());
            f(&mut t, &mut s);
            create_options(&t, &s, &TaskNetwork::default()).unwrap_err()
        };
        assert!(bad(&|_, s| s.env.push("HOME".into())).contains("\"HOME\""));
        assert!(bad(&|_, s| s.ports[0].target = 0).contains("out of range"));
        assert!(bad(&|_, s| s.image.clear()).contains("no image"));
        assert!(bad(&|t, _| t.task_id.clear()).contains("task id is empty"));
        assert!(bad(&|t, _| t.task_id = "a/b".into()).contains("not a valid name"));
        assert!(
            bad(&|_, s| s.resources.as_mut().unwrap().cpus_limit = f64::NAN).contains("CPU limit")
        );
    }
}
