//! `berth-rollout-bench`: a rolling update of 30 replicas on one host (issue 8). A real
//! controller on host 0 of the harness and a real agent on host 1; a busybox httpd service
//! of 30 replicas (under a shell that exits on SIGTERM) is applied and waited for; then a new spec (another environment value) is
//! applied with `parallelism: 5`, `monitor: 0s` (no monitor wait) and no health check, in
//! `stop-first` and `start-first` order in turn. The time is the controller's own: from the
//! rollout's start (the apply's write) to its completion (the pass that saw every task of
//! the new spec running), as `berth inspect` shows them.
//!
//! ```text
//! cargo build --release --workspace --bins && ./target/release/berth-rollout-bench [--runs 5] [--replicas 30] [--parallelism 5]
//! ```
//!
//! Prints a Markdown report (medians over the runs) for `docs/benchmarks.md`.

use std::time::Duration;

use berth_proto::v1;
use berth_tests::cluster::Cluster;
use berth_tests::control_plane::ControlPlane;
use berth_tests::env::Env;
use berth_tests::median;

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn web(replicas: u32, run: usize, parallelism: u32, order: v1::UpdateOrder) -> v1::ServiceSpec {
    v1::ServiceSpec {
        name: "web".into(),
        image: "busybox:1".into(),
        replicas,
        // httpd under a shell that exits on SIGTERM (a PID 1 without a handler ignores it
        // and would wait out the stop timeout).
        command: ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 & wait"]
            .map(String::from)
            .to_vec(),
        env: vec![format!("RUN={run}")],
        update_config: Some(v1::ServiceUpdateConfig {
            parallelism,
            order: order.into(),
            monitor_ms: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn running(env: &Env, version: u64) -> usize {
    env.tasks("web")
        .iter()
        .filter(|t| {
            t.spec_version == version
                && t.desired == v1::TaskDesiredState::Running as i32
                && t.observed == v1::TaskState::Running as i32
        })
        .count()
}

fn main() {
    let runs: usize = arg("--runs").and_then(|v| v.parse().ok()).unwrap_or(5);
    let replicas: u32 = arg("--replicas").and_then(|v| v.parse().ok()).unwrap_or(30);
    let parallelism: u32 = arg("--parallelism")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let cluster = Cluster::new(2);
    let cp = ControlPlane::start(&cluster, 1, &[], &[]).expect("a controller");
    let mut env = Env::new(cluster, cp);
    env.start_agent(1, &["--stop-timeout-s", "1"]);
    let mut times: Vec<(v1::UpdateOrder, Vec<f64>)> = vec![
        (v1::UpdateOrder::StopFirst, Vec::new()),
        (v1::UpdateOrder::StartFirst, Vec::new()),
    ];
    let mut run = 0;
    env.apply(web(replicas, run, parallelism, v1::UpdateOrder::StopFirst));
    env.wait_for("the first version runs", || {
        running(&env, 1) == replicas as usize
    });
    for _ in 0..runs {
        for (order, out) in &mut times {
            run += 1;
            let applied = env.apply(web(replicas, run, parallelism, *order));
            let version = applied.version;
            env.wait_for("the rollout completed", || {
                env.service("web").update.map(|u| u.state()) == Some(v1::RolloutState::Completed)
                    && running(&env, version) == replicas as usize
            });
            let u = env.service("web").update.expect("a rollout");
            let took =
                Duration::from_nanos(u64::try_from(u.completed_at - u.started_at).unwrap_or(0));
            eprintln!(
                "{} replicas, parallelism {parallelism}, {}: {:.3} s",
                replicas,
                order.as_str_name(),
                took.as_secs_f64()
            );
            out.push(took.as_secs_f64());
            // The old tasks' stops finish before the next run.
            env.wait_for("the old tasks stopped", || {
                env.tasks("web").iter().all(|t| {
                    t.desired == v1::TaskDesiredState::Running as i32
                        || t.observed != v1::TaskState::Running as i32
                })
            });
        }
    }
    println!(
        "| order | replicas | parallelism | rollout (median of {runs}) | runs |\n|---|---|---|---|---|"
    );
    for (order, v) in &times {
        let all: Vec<String> = v.iter().map(|t| format!("{t:.2}")).collect();
        println!(
            "| {} | {replicas} | {parallelism} | {:.2} s | {} |",
            order.as_str_name(),
            median(v.clone()),
            all.join(", ")
        );
    }
    env.remove("web");
}
