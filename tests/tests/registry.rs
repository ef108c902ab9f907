//! Images from a registry end to end (issue 8): a real `docker-registry` (Distribution v2)
//! on one host of the harness, a controller, and two agents on other hosts that pull the
//! service's image from it (marked insecure in their registries file). An update from v1 to
//! v2, which share their busybox layer, fetches only the changed layer on each node, as the
//! registry's access log shows.

use std::net::SocketAddr;

use berth_proto::v1;
use berth_tests::TestAgent;
use berth_tests::cluster::Cluster;
use berth_tests::control_plane::ControlPlane;
use berth_tests::env::Env;
use berth_tests::images::{Entry, digest, dir_tar, layer_tar, write_docker_save};

fn get(addr: SocketAddr) -> Result<String, String> {
    berth_tests::http::get(addr, "/index.html")
}

fn web(image: &str) -> v1::ServiceSpec {
    v1::ServiceSpec {
        name: "web".into(),
        image: image.into(),
        replicas: 2,
        ports: vec![v1::ServicePort {
            target: 80,
            published: 8080,
            protocol: v1::Protocol::Tcp.into(),
            ..Default::default()
        }],
        healthcheck: Some(v1::ServiceHealthCheck {
            kind: v1::HealthProbeKind::Http.into(),
            port: 80,
            path: "/index.html".into(),
            interval_ms: 200,
            retries: 2,
            ..Default::default()
        }),
        update_config: Some(v1::ServiceUpdateConfig {
            parallelism: 1,
            order: v1::UpdateOrder::StartFirst.into(),
            monitor_ms: Some(200),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The `GET`s of blob `digest` in the registry's access log `log`.
fn fetches(log: &str, digest: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(&format!("\"GET /v2/web/blobs/{digest} ")))
        .count()
}

#[test]
fn services_pull_their_images_and_an_update_fetches_only_the_changed_layer() {
    let test = "services_pull_their_images_and_an_update_fetches_only_the_changed_layer";
    if !berth_tests::require_root_and_busybox(test) {
        return;
    }
    if !berth_tests::registry::available(test) {
        return;
    }
    let cluster = Cluster::new(3);
    let h0 = cluster.host(0);
    // The registry on host 0, its storage and log in the host's directory.
    let registry = berth_tests::registry::start(h0, true);

    // Two images sharing their busybox layer, built and pushed from host 0.
    let builder = TestAgent::new(
        berth_tests::target_dir().join("berth-agent"),
        berth_tests::target_dir().join("berth-monitor"),
    )
    .in_netns(h0.ns.clone());
    let root = builder.tmp.path().join("base");
    berth_tests::busybox_rootfs(&root).unwrap();
    let base = dir_tar(&root);
    let cmd = serde_json::json!({"Cmd": ["httpd", "-f", "-p", "80", "-h", "/www"]});
    let mut changed = Vec::new();
    for v in ["v1", "v2"] {
        let top = layer_tar(&[
            Entry::Dir("www".into()),
            Entry::File(
                "www/index.html".into(),
                format!("{v}\n").into_bytes(),
                0o644,
            ),
        ]);
        changed.push(digest(&top));
        let archive = builder.tmp.path().join(format!("web-{v}.tar"));
        write_docker_save(
            &archive,
            &format!("web:{v}"),
            &[base.clone(), top],
            cmd.clone(),
        );
        let target = format!("{registry}/web:{v}");
        if v == "v1" {
            // From an agent's store…
            builder.ok(["image", "import", archive.to_str().unwrap()]);
            let out = builder.ok(["image", "push", &format!("web:{v}"), &target, "--insecure"]);
            eprintln!("berth-agent image push: {}", out.trim());
        } else {
            // …and straight from the archive with the berth CLI (the shared layer skipped).
            let out = h0
                .ns
                .command(berth_tests::target_dir().join("berth"))
                .args([
                    "image",
                    "push",
                    archive.to_str().unwrap(),
                    &target,
                    "--insecure",
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("2 blobs uploaded, 1 already there"), "{text}");
            eprintln!("berth image push: {}", text.trim());
            // Without --insecure, a plain-HTTP registry is refused.
            let out = h0
                .ns
                .command(berth_tests::target_dir().join("berth"))
                .args(["image", "push", archive.to_str().unwrap(), &target])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "pushed over plain HTTP without --insecure"
            );
            eprintln!("without --insecure: {}", err.trim());
        }
    }
    let base_digest = digest(&base);

    let cp = ControlPlane::start(&cluster, 1, &[], &["--agent-heartbeat-ms", "250"])
        .expect("a controller");
    let mut env = Env::new(cluster, cp);
    let registries = env.cluster.host(0).dir.join("registries.json");
    std::fs::write(
        &registries,
        format!(r#"{{"{registry}": {{"insecure": true}}}}"#),
    )
    .unwrap();
    for i in 1..3 {
        env.start_agent(
            i,
            &[
                "--stop-timeout-s",
                "1",
                "--registries",
                registries.to_str().unwrap(),
            ],
        );
    }
    env.wait_for("two nodes ready", || {
        env.nodes()
            .iter()
            .filter(|n| n.status == v1::NodeStatus::Ready as i32)
            .count()
            == 2
    });
    let ingress = SocketAddr::new(env.cluster.host(1).ip.into(), 8080);

    env.apply(web(&format!("{registry}/web:v1")));
    env.wait_for("v1 pulled and serving on both nodes", || {
        env.tasks("web")
            .iter()
            .filter(|t| t.health == v1::TaskHealth::Healthy as i32)
            .count()
            == 2
    });
    env.wait_for("v1 answers", || {
        env.cluster.host(0).run(|| get(ingress)).as_deref() == Ok("v1")
    });
    let log = env.cluster.host(0).log("registry");
    assert_eq!(
        fetches(&log, &base_digest),
        2,
        "the base layer once per node"
    );
    assert_eq!(fetches(&log, &changed[0]), 2, "v1's layer once per node");
    let before = log.len();

    env.apply(web(&format!("{registry}/web:v2")));
    env.wait_for("v2 rolled out", || {
        env.service("web").update.map(|u| u.state()) == Some(v1::RolloutState::Completed)
    });
    env.wait_for("v2 answers", || {
        env.cluster.host(0).run(|| get(ingress)).as_deref() == Ok("v2")
    });
    let log = env.cluster.host(0).log("registry");
    let update = &log[before..];
    assert_eq!(
        fetches(update, &base_digest),
        0,
        "the shared layer was fetched again:\n{update}"
    );
    // Spread puts the v2 tasks on one node or both: the layer once per node that pulled.
    let pulls = fetches(update, &changed[1]);
    assert!((1..=2).contains(&pulls), "v2's layer fetched {pulls} times");
    eprintln!(
        "update from the registry: v2's layer fetched {pulls} time(s) (once per node), the base layer ({} bytes) not again",
        base.len()
    );

    // An image the registry does not have: the task fails saying so.
    env.apply(v1::ServiceSpec {
        name: "missing".into(),
        image: format!("{registry}/nothing:1"),
        replicas: 1,
        restart: Some(v1::ServiceRestartPolicy {
            condition: v1::RestartCondition::None.into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    env.wait_for(
        "the missing image's task failed with the registry's error",
        || {
            env.tasks("missing").iter().any(|t| {
                t.observed == v1::TaskState::Failed as i32
                    && t.reason
                        .contains(&format!("pulling image {registry}/nothing:1"))
            })
        },
    );
    eprintln!("{:?}", env.tasks("missing")[0].reason);

    env.remove("web");
    env.remove("missing");
    env.wait_for("every container removed", || {
        env.agents
            .values()
            .all(|a| a.ok(["ps", "-a", "-q"]).trim().is_empty())
    });
}
