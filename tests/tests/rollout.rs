//! Rolling updates end to end (issue 8): a real controller and three real agents on hosts of
//! the harness, six busybox httpd replicas behind an ingress port, and a client sending
//! requests without pause through another host's published port.
//!
//! In order: v1 → v2 start-first under traffic with zero failed requests; a v3 that never
//! turns healthy is rolled back to v2 automatically (the rollback is reported, and begins
//! within a second of the failure), still without a failed request; a v5 paused at once
//! stops replacing tasks until it is resumed; undo to version 2 brings v2's spec back.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth_proto::v1;
use berth_tests::cluster::{Cluster, Host};
use berth_tests::control_plane::ControlPlane;
use berth_tests::env::Env;

const REPLICAS: u32 = 6;
const PORT: u32 = 8080;

/// httpd serving `/index.html` with `version`; `healthy: false` serves another file only, so
/// its health check (GET /index.html) never passes.
fn web(version: &str, healthy: bool, parallelism: u32) -> v1::ServiceSpec {
    let file = if healthy { "index.html" } else { "other.html" };
    let rollout = |parallelism| v1::ServiceUpdateConfig {
        parallelism,
        order: v1::UpdateOrder::StartFirst.into(),
        monitor_ms: Some(500),
        failure_action: v1::FailureAction::Rollback.into(),
        ..Default::default()
    };
    v1::ServiceSpec {
        name: "web".into(),
        image: "busybox:1".into(),
        replicas: REPLICAS,
        command: vec![
            "sh".into(),
            "-c".into(),
            format!("mkdir -p /www && echo $V > /www/{file} && exec httpd -f -p 80 -h /www"),
        ],
        env: vec![format!("V={version}")],
        ports: vec![v1::ServicePort {
            target: 80,
            published: PORT,
            protocol: v1::Protocol::Tcp.into(),
            ..Default::default()
        }],
        healthcheck: Some(v1::ServiceHealthCheck {
            kind: v1::HealthProbeKind::Http.into(),
            port: 80,
            path: "/index.html".into(),
            interval_ms: 200,
            timeout_ms: 1000,
            retries: 2,
            ..Default::default()
        }),
        update_config: Some(rollout(parallelism)),
        rollback_config: Some(rollout(0)),
        ..Default::default()
    }
}

/// One HTTP GET of `/index.html` through `addr`; the body.
fn get(addr: SocketAddr) -> Result<String, String> {
    berth_tests::http::get(addr, "/index.html")
}

/// What a client saw.
#[derive(Debug, Default)]
struct Seen {
    ok: usize,
    bodies: std::collections::BTreeMap<String, usize>,
    failures: Vec<String>,
}

/// Sends requests from `client` to `addr` without pause until `stop`.
fn traffic(client: &Host, addr: SocketAddr, stop: &AtomicBool, seen: &Mutex<Seen>) {
    client.run(|| {
        while !stop.load(Ordering::Relaxed) {
            let r = get(addr);
            let mut s = seen.lock().unwrap();
            match r {
                Ok(body) => {
                    s.ok += 1;
                    *s.bodies.entry(body).or_default() += 1;
                }
                Err(e) => s.failures.push(e),
            }
        }
    });
}

fn service(env: &Env) -> v1::Service {
    env.service("web")
}

fn rollout(env: &Env, action: v1::RolloutAction, to_version: u64) -> v1::Service {
    env.retry("rollout", || {
        env.control(async |c| {
            c.rollout_service(v1::RolloutServiceRequest {
                name: "web".into(),
                action: action.into(),
                to_version,
            })
            .await
            .map(|r| r.into_inner().service.unwrap_or_default())
        })
    })
}

fn state(env: &Env) -> Option<v1::RolloutState> {
    service(env).update.map(|u| u.state())
}

/// The live, running and healthy tasks of `web`: their spec versions.
fn healthy_versions(env: &Env) -> Vec<u64> {
    let mut v: Vec<u64> = env
        .tasks("web")
        .into_iter()
        .filter(|t| {
            t.desired == v1::TaskDesiredState::Running as i32
                && t.observed == v1::TaskState::Running as i32
                && t.health == v1::TaskHealth::Healthy as i32
        })
        .map(|t| t.spec_version)
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn rolling_updates_lose_no_request_roll_back_pause_resume_and_undo() {
    if !berth_tests::require_root_and_busybox(
        "rolling_updates_lose_no_request_roll_back_pause_resume_and_undo",
    ) {
        return;
    }
    let cluster = Cluster::new(3);
    let cp = ControlPlane::start(&cluster, 1, &[], &["--agent-heartbeat-ms", "250"])
        .expect("a controller");
    let mut env = Env::new(cluster, cp);
    for i in 0..3 {
        env.start_agent(i, &["--stop-timeout-s", "1"]);
    }
    env.wait_for("three nodes ready", || {
        env.nodes()
            .iter()
            .filter(|n| n.status == v1::NodeStatus::Ready as i32)
            .count()
            == 3
    });
    env.apply(web("v1", true, 2));
    env.wait_for("6 healthy v1 tasks", || healthy_versions(&env) == [1; 6]);
    let addr = SocketAddr::new(env.cluster.host(1).ip.into(), PORT as u16);
    env.wait_for("the ingress port answers", || {
        env.cluster.host(0).run(|| get(addr)).is_ok()
    });

    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    std::thread::scope(|scope| {
        let _stop = berth_tests::SetOnDrop(&stop);
        let client = env.cluster.host(0);
        scope.spawn(|| traffic(client, addr, &stop, &seen));

        // v1 → v2, start-first, two at a time, under traffic.
        let started = Instant::now();
        env.apply(web("v2", true, 2));
        env.wait_for("v2 rolled out", || {
            state(&env) == Some(v1::RolloutState::Completed) && healthy_versions(&env) == [2; 6]
        });
        eprintln!(
            "v1 → v2 (6 tasks, 2 at a time, start-first): {:.2} s",
            started.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_millis(500));
        {
            let s = seen.lock().unwrap();
            eprintln!("during v1 → v2: {} answers {:?}", s.ok, s.bodies);
            assert!(s.failures.is_empty(), "failed requests: {:?}", s.failures);
            assert!(s.bodies.contains_key("v1") && s.bodies.contains_key("v2"));
        }

        // v3 never turns healthy: rolled back to v2's spec (version 4) automatically.
        env.apply(web("v3", false, 2));
        // Watched closely: when a v3 task is first seen unhealthy, and when the rollback
        // (version 4) is first seen.
        let (mut unhealthy_at, mut rollback_at) = (None, None);
        env.wait_for("v3 rolled back", || {
            let now = Instant::now();
            if unhealthy_at.is_none()
                && env
                    .tasks("web")
                    .iter()
                    .any(|t| t.spec_version == 3 && t.health == v1::TaskHealth::Unhealthy as i32)
            {
                unhealthy_at = Some(now);
            }
            let svc = service(&env);
            if rollback_at.is_none() && svc.version >= 4 {
                rollback_at = Some(now);
            }
            svc.update.map(|u| u.state()) == Some(v1::RolloutState::RolledBack)
        });
        let svc = service(&env);
        let u = svc.update.clone().unwrap();
        eprintln!("rollback: {u:?}");
        assert_eq!((svc.version, u.from_version, u.to_version), (4, 3, 4));
        assert!(u.message.starts_with("rolling back: "), "{}", u.message);
        assert!(
            u.message.contains("unhealthy: GET /index.html: HTTP 404"),
            "{}",
            u.message
        );
        assert_eq!(svc.spec.as_ref().unwrap().env, ["V=v2"]);
        // The rollback began within a second of the failure (as seen by polling every
        // 50 ms or so; the same pass usually does both).
        let unhealthy_at = unhealthy_at.expect("a v3 task seen unhealthy");
        let lag = rollback_at
            .expect("the rollback seen")
            .saturating_duration_since(unhealthy_at);
        eprintln!("rollback seen {:.3} s after the failure", lag.as_secs_f64());
        assert!(lag < Duration::from_secs(1), "rollback began after {lag:?}");
        env.wait_for("6 healthy tasks of v2's spec", || {
            healthy_versions(&env).len() == 6
        });
        {
            let s = seen.lock().unwrap();
            assert!(s.failures.is_empty(), "failed requests: {:?}", s.failures);
            assert!(!s.bodies.contains_key("v3"), "v3 served: {:?}", s.bodies);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let s = seen.into_inner().unwrap();
    eprintln!("traffic: {} answers, {:?}, no failure", s.ok, s.bodies);
    assert!(s.ok > 50, "too few requests to tell: {}", s.ok);

    // v5 one at a time, paused at once: it stops choosing tasks until resumed.
    env.apply(web("v5", true, 1));
    let paused = rollout(&env, v1::RolloutAction::Pause, 0);
    assert_eq!(
        paused.update.as_ref().map(|u| u.state()),
        Some(v1::RolloutState::Paused)
    );
    std::thread::sleep(Duration::from_secs(2));
    let v5 = healthy_versions(&env).iter().filter(|v| **v == 5).count();
    assert!(v5 < 6, "a paused rollout went on: {v5} tasks updated");
    assert_eq!(state(&env), Some(v1::RolloutState::Paused));
    eprintln!("paused with {v5} of 6 tasks updated");
    rollout(&env, v1::RolloutAction::Resume, 0);
    env.wait_for("v5 rolled out after resume", || {
        state(&env) == Some(v1::RolloutState::Completed) && healthy_versions(&env) == [5; 6]
    });

    // Undo to version 2: its spec comes back as version 6.
    let undone = rollout(&env, v1::RolloutAction::Undo, 2);
    assert_eq!(undone.version, 6);
    env.wait_for("undo to version 2 rolled out", || {
        state(&env) == Some(v1::RolloutState::RolledBack) && healthy_versions(&env) == [6; 6]
    });
    // The old tasks leave the rules an instant after the controller replaced them.
    env.wait_for("v2's spec answers", || {
        env.cluster.host(0).run(|| get(addr)).as_deref() == Ok("v2")
    });
    // A version that does not exist is refused, naming what there is.
    let e = env
        .control(async |c| {
            c.rollout_service(v1::RolloutServiceRequest {
                name: "web".into(),
                action: v1::RolloutAction::Undo.into(),
                to_version: 99,
            })
            .await
        })
        .unwrap_err();
    assert!(e.message().contains("no version 99"), "{e}");

    env.remove("web");
    env.wait_for("every container removed", || {
        env.agents
            .values()
            .all(|a| a.ok(["ps", "-a", "-q"]).trim().is_empty())
    });
}
