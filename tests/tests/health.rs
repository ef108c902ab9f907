//! Health checks end to end (issue 8): a real controller and a real agent on hosts of the
//! harness, busybox containers. An HTTP check turns a task healthy (and `ps` would say
//! `running (healthy)`); a `CMD-SHELL` check that starts failing makes its task unhealthy:
//! the node stops it, reports it failed with the probe's output, and the restart policy
//! replaces it; a `CMD` probe that overruns its timeout is killed with what it ran inside the
//! container, so probes do not pile up.

use std::time::Duration;

use berth_proto::v1;
use berth_tests::cluster::Cluster;
use berth_tests::control_plane::ControlPlane;
use berth_tests::env::Env;

fn service(name: &str, command: &str, check: v1::ServiceHealthCheck) -> v1::ServiceSpec {
    v1::ServiceSpec {
        name: name.into(),
        image: "busybox:1".into(),
        replicas: 1,
        command: vec!["sh".into(), "-c".into(), command.into()],
        healthcheck: Some(check),
        restart: Some(v1::ServiceRestartPolicy {
            condition: v1::RestartCondition::Any.into(),
            delay_ms: 100,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn current(env: &Env, service: &str) -> Vec<v1::Task> {
    env.tasks(service)
        .into_iter()
        .filter(|t| t.desired == v1::TaskDesiredState::Running as i32)
        .collect()
}

/// Host processes whose command line is exactly `args`.
fn processes(args: &[&str]) -> usize {
    let want: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| *c == want)
        .count()
}

#[test]
fn checks_make_tasks_healthy_and_unhealthy_ones_are_replaced() {
    if !berth_tests::require_root_and_busybox(
        "checks_make_tasks_healthy_and_unhealthy_ones_are_replaced",
    ) {
        return;
    }
    let cluster = Cluster::new(2);
    let cp = ControlPlane::start(&cluster, 1, &[], &["--agent-heartbeat-ms", "250"])
        .expect("a controller");
    let mut env = Env::new(cluster, cp);
    env.start_agent(1, &["--stop-timeout-s", "1"]);

    // HTTP: healthy once httpd serves /ok.
    env.apply(service(
        "web",
        "mkdir -p /www && echo ok > /www/ok && exec httpd -f -p 80 -h /www",
        v1::ServiceHealthCheck {
            kind: v1::HealthProbeKind::Http.into(),
            port: 80,
            path: "/ok".into(),
            interval_ms: 200,
            timeout_ms: 1000,
            retries: 2,
            ..Default::default()
        },
    ));
    env.wait_for("web healthy", || {
        current(&env, "web")
            .iter()
            .any(|t| t.health == v1::TaskHealth::Healthy as i32)
    });

    // CMD-SHELL: healthy while /tmp/ok exists, which the task removes after 2 s.
    env.apply(service(
        "flaky",
        "touch /tmp/ok; sleep 2; rm /tmp/ok; exec sleep 3600",
        v1::ServiceHealthCheck {
            kind: v1::HealthProbeKind::CmdShell.into(),
            command: vec!["test -e /tmp/ok || { echo /tmp/ok is gone; exit 1; }".into()],
            interval_ms: 200,
            timeout_ms: 2000,
            retries: 2,
            ..Default::default()
        },
    ));
    let first = {
        let mut id = String::new();
        env.wait_for("flaky healthy", || {
            let tasks = current(&env, "flaky");
            match tasks
                .iter()
                .find(|t| t.health == v1::TaskHealth::Healthy as i32)
            {
                Some(t) => {
                    id = t.id.clone();
                    true
                }
                None => false,
            }
        });
        id
    };
    env.wait_for(
        "flaky's first task failed as unhealthy and replaced",
        || {
            let tasks = env.tasks("flaky");
            let failed = tasks.iter().find(|t| t.id == first).is_some_and(|t| {
                t.observed == v1::TaskState::Failed as i32
                    && t.health == v1::TaskHealth::Unhealthy as i32
                    && t.reason.contains("unhealthy: /tmp/ok is gone")
            });
            let replaced = tasks.iter().any(|t| {
                t.id != first
                    && t.slot == 1
                    && t.desired == v1::TaskDesiredState::Running as i32
                    && t.observed == v1::TaskState::Running as i32
            });
            failed && replaced
        },
    );
    let tasks = env.tasks("flaky");
    let old = tasks.iter().find(|t| t.id == first).unwrap();
    eprintln!("the unhealthy task: {old:?}");

    // CMD overrunning its timeout: each probe is killed with its process in the container.
    env.apply(service(
        "slow",
        "exec sleep 3600",
        v1::ServiceHealthCheck {
            kind: v1::HealthProbeKind::Cmd.into(),
            command: vec!["sleep".into(), "77".into()],
            interval_ms: 300,
            timeout_ms: 200,
            retries: 1000,
            ..Default::default()
        },
    ));
    env.wait_for("slow running", || {
        current(&env, "slow")
            .iter()
            .any(|t| t.observed == v1::TaskState::Running as i32)
    });
    // About 6 probes in 3 s; at most the one in flight may run.
    std::thread::sleep(Duration::from_secs(3));
    let left = processes(&["sleep", "77"]);
    assert!(
        left <= 1,
        "{left} probe processes left running in the container"
    );
    let slow = current(&env, "slow");
    assert!(
        slow.iter()
            .all(|t| t.health == v1::TaskHealth::Starting as i32),
        "a probe that always times out keeps its task starting (retries 1000): {slow:?}"
    );

    for s in ["web", "flaky", "slow"] {
        env.remove(s);
    }
    env.wait_for("every container removed", || {
        env.agents
            .values()
            .all(|a| a.ok(["ps", "-a", "-q"]).trim().is_empty())
    });
}
