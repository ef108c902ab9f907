//! An assignment's service spec as the options of its container (pure: no I/O).

use std::collections::BTreeMap;

use berth_proto::v1::{Assignment, Protocol, ServiceSpec};
use berth_runtime::cgroup::Limits;
use berth_runtime::spec::{NetworkMode, RestartPolicy};

use crate::container::CreateOptions;
use crate::container::options::valid_name;

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

/// The options of the container that runs `task` from `spec`: the image, its entrypoint,
/// command and environment, the bridge network with the published ports (a port without a
/// published one gets a port chosen by the node), the CPU and memory limits, restart policy
/// `no` (the controller replaces a task that ended), and the task's labels over the
/// service's. Links (issue 7) are not applied yet. `Err` says what is wrong with the spec.
pub fn create_options(task: &Assignment, spec: &ServiceSpec) -> Result<CreateOptions, String> {
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
    Ok(CreateOptions {
        image: spec.image.clone(),
        name: Some(name),
        command: spec.command.clone(),
        entrypoint: spec.has_entrypoint.then(|| spec.entrypoint.clone()),
        env: spec.env.clone(),
        limits,
        network: NetworkMode::Bridge,
        publish,
        restart: RestartPolicy::No,
        labels,
        ..CreateOptions::default()
    })
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
                },
                ServicePort {
                    target: 53,
                    published: 0,
                    protocol: Protocol::Udp as i32,
                },
                ServicePort {
                    target: 9000,
                    published: 0,
                    protocol: Protocol::Unspecified as i32,
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
        let o = create_options(&task(2), &spec()).unwrap();
        assert_eq!(o.name.as_deref(), Some("web.2.0123456789ab"));
        assert_eq!(o.image, "busybox:1");
        assert_eq!(o.command, ["httpd", "-f"]);
        assert_eq!(o.entrypoint, None);
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
        let o = create_options(&task(0), &s).unwrap();
        assert_eq!(o.name.as_deref(), Some("web.0123456789ab"));
        assert_eq!(o.entrypoint, Some(vec![]));
        assert_eq!(o.limits, Limits::default());
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let bad = |f: &dyn Fn(&mut Assignment, &mut ServiceSpec)| {
            let (mut t, mut s) = (task(1), spec());
            f(&mut t, &mut s);
            create_options(&t, &s).unwrap_err()
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
