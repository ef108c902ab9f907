use super::*;
use crate::state::{
    Availability, NodeResources, NodeStatus, PortMode, Protocol, ServiceMode, ServiceSpec,
};

fn service(name: &str, vip: &str, ingress: &[(u16, u16)]) -> Service {
    Service {
        spec: ServiceSpec {
            name: name.into(),
            image: "busybox".into(),
            entrypoint: None,
            command: vec![],
            env: vec![],
            mode: ServiceMode::Replicated { replicas: 2 },
            ports: ingress
                .iter()
                .map(|(_, t)| PortSpec {
                    target: *t,
                    published: None,
                    protocol: Protocol::Tcp,
                    mode: PortMode::Ingress,
                })
                .collect(),
            links: vec![],
            resources: Default::default(),
            constraints: vec![],
            labels: Default::default(),
            max_replicas_per_node: None,
            preferences: vec![],
            healthcheck: None,
            restart: Default::default(),
            update_config: None,
            rollback_config: None,
            force_update: 0,
        },
        version: 1,
        created_at: 0,
        updated_at: 0,
        history: vec![],
        vip: Some(vip.parse().unwrap()),
        ingress: ingress
            .iter()
            .map(|(p, t)| PortSpec {
                target: *t,
                published: Some(*p),
                protocol: Protocol::Tcp,
                mode: PortMode::Ingress,
            })
            .collect(),
        update: None,
    }
}

fn task(id: &str, service: &str, node: &str, ip: &str, observed: ObservedState) -> Task {
    Task {
        id: id.into(),
        service: service.into(),
        slot: 1,
        spec_version: 1,
        node: Some(node.into()),
        desired: DesiredState::Running,
        observed,
        address: Some(ip.parse().unwrap()),
        exit_code: None,
        reason: None,
        created_at: 0,
        updated_at: 0,
        health: None,
    }
}

fn node(id: &str, address: &str, subnet: &str) -> Node {
    Node {
        id: id.into(),
        hostname: id.into(),
        address: address.into(),
        labels: Default::default(),
        resources: NodeResources {
            cpus: 1.0,
            memory_bytes: 1 << 30,
        },
        status: NodeStatus::Ready,
        availability: Availability::Active,
        last_seen: None,
        subnet: Some(subnet.parse().unwrap()),
        agent_version: None,
    }
}

#[test]
fn only_running_tasks_are_endpoints_and_a_change_touches_its_service_only() {
    let mut ix = NetIndex::default();
    ix.node("n1", Some(&node("n1", "192.168.1.1", "10.200.1.0/24")));
    ix.service("web", Some(&service("web", "10.201.0.5", &[(8080, 80)])));
    ix.service("db", Some(&service("db", "10.201.0.6", &[])));
    ix.task(
        "t1",
        Some(&task(
            "t1",
            "web",
            "n1",
            "10.200.1.2",
            ObservedState::Running,
        )),
    );
    ix.task(
        "t2",
        Some(&task(
            "t2",
            "web",
            "n1",
            "10.200.1.3",
            ObservedState::Starting,
        )),
    );
    ix.task(
        "t3",
        Some(&task(
            "t3",
            "db",
            "n1",
            "10.200.1.4",
            ObservedState::Running,
        )),
    );
    let first = ix.publish().expect("a first map");
    assert_eq!(first.nodes["n1"].subnet, "10.200.1.0/24");
    let web = &first.services["web"];
    assert_eq!(web.vip, "10.201.0.5");
    assert_eq!(web.ingress[0].published, 8080);
    let eps: Vec<&str> = web.endpoints.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(eps, ["10.200.1.2"], "a starting task is no backend yet");
    assert!(ix.publish().is_none(), "nothing changed, nothing published");

    // t2 runs: only web changes, db's entry is the same allocation.
    ix.task(
        "t2",
        Some(&task(
            "t2",
            "web",
            "n1",
            "10.200.1.3",
            ObservedState::Running,
        )),
    );
    let second = ix.publish().unwrap();
    assert!(Arc::ptr_eq(&first.services["db"], &second.services["db"]));
    let update = diff(&first, &second, 9).unwrap();
    assert_eq!(update.services.len(), 1);
    assert_eq!(update.services[0].endpoints.len(), 2);
    assert!(update.nodes.is_empty() && update.services_removed.is_empty());

    // A task told to shut down leaves the backends at once, before it stops.
    let mut stopping = task("t1", "web", "n1", "10.200.1.2", ObservedState::Running);
    stopping.desired = DesiredState::Shutdown;
    ix.task("t1", Some(&stopping));
    let third = ix.publish().unwrap();
    assert_eq!(third.services["web"].endpoints.len(), 1);

    // A running task with a health check takes traffic only once healthy, and leaves the
    // backends when it turns unhealthy.
    let mut checked = task("t9", "web", "n1", "10.200.1.9", ObservedState::Running);
    for (health, backends) in [
        (Some(crate::state::Health::Starting), 1),
        (Some(crate::state::Health::Healthy), 2),
        (Some(crate::state::Health::Unhealthy), 1),
    ] {
        checked.health = health;
        ix.task("t9", Some(&checked));
        // Nothing to publish when the backends did not change.
        let now = ix.publish().map(|m| m.services["web"].endpoints.len());
        assert_eq!(
            now.unwrap_or(third.services["web"].endpoints.len()),
            backends,
            "with health {health:?}"
        );
    }

    // Removing the service and the node.
    ix.service("web", None);
    ix.node("n1", None);
    let fourth = ix.publish().unwrap();
    let update = diff(&third, &fourth, 10).unwrap();
    assert_eq!(update.services_removed, ["web"]);
    assert_eq!(update.nodes_removed, ["n1"]);
    assert_eq!(fourth.full(11).services.len(), 1);
}
