//! `join`, `node` and `hollow`: the node as a member of a cluster.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::args::{HollowArgs, JoinArgs, NodeArgs};
use crate::container::AgentConfig;
use crate::node::hollow::{FleetOptions, parse_label_sets, run_fleet};
use crate::node::identity;
use crate::node::run_node;
use crate::node::runtime::{RuntimeExecutor, RuntimeOptions};
use crate::node::session::NodeOptions;

/// The node's identity directory under the agent's state directory.
pub fn identity_dir(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("node")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// This host's name, from the kernel.
fn host_name() -> anyhow::Result<String> {
    let name = nix::unistd::gethostname().context("cannot read this host's name")?;
    name.into_string()
        .map_err(|n| anyhow::anyhow!("this host's name {n:?} is not UTF-8; pass --hostname"))
}

/// `join`.
pub fn join(state_dir: &Path, a: &JoinArgs) -> anyhow::Result<u8> {
    let dir = identity_dir(state_dir);
    let hostname = match &a.hostname {
        Some(h) => h.clone(),
        None => host_name()?,
    };
    if a.force {
        identity::forget(&dir)?;
    }
    let id = runtime()?.block_on(identity::join(&dir, &a.join_addr, &a.token, &hostname))?;
    println!(
        "joined cluster {:?} as node {} ({}); identity in {}; controllers: {}",
        id.cluster_name,
        id.node_id,
        id.hostname,
        dir.display(),
        id.controllers.join(", ")
    );
    Ok(0)
}

/// `hollow`.
pub fn hollow(a: &HollowArgs) -> anyhow::Result<u8> {
    let mut opts = FleetOptions::new(a.count, a.join_addr.clone(), a.token.clone());
    opts.hostname_prefix = a.hostname_prefix.clone();
    if let Some(l) = &a.labels {
        opts.labels = parse_label_sets(l)?;
    }
    opts.address = a.address;
    opts.heartbeat_period = a.heartbeat_ms.map(Duration::from_millis);
    opts.start_delay = Duration::from_millis(a.start_delay_ms);
    opts.join_concurrency = a.join_concurrency;
    let every = Duration::from_secs(a.status_every_s.max(1));
    runtime()?.block_on(async move {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let signals = tokio::spawn(stop_on_signal(stop));
        let r = run_fleet(opts, stopped, every, |s| println!("{s}")).await;
        signals.abort();
        r
    })?;
    Ok(0)
}

/// `node`.
pub fn node(state_dir: &Path, config: AgentConfig, a: &NodeArgs) -> anyhow::Result<u8> {
    let id = identity::load(&identity_dir(state_dir))?;
    let mut opts = NodeOptions::new(id.hostname.clone());
    for l in &a.labels {
        let (k, v) = l
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| anyhow::anyhow!("--label {l:?} is not KEY=VALUE"))?;
        opts.labels.insert(k.to_owned(), v.to_owned());
    }
    opts.address = a.address;
    opts.worker.poll_interval = Duration::from_millis(a.poll_ms.max(10));
    let executor = RuntimeExecutor::with_options(
        config,
        RuntimeOptions {
            stop_timeout: a.stop_timeout_s.map(Duration::from_secs),
            registries: match &a.registries {
                Some(path) => crate::image::registry::Registries::load(path)?,
                None => Default::default(),
            },
        },
    )?;
    tracing::info!(node = %id.node_id, hostname = %id.hostname, "node session starting");
    runtime()?.block_on(async move {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let signals = tokio::spawn(stop_on_signal(stop));
        let r = run_node(id, opts, std::sync::Arc::new(executor), stopped).await;
        signals.abort();
        r
    })?;
    Ok(0)
}

/// Sets `stop` on SIGTERM or SIGINT.
async fn stop_on_signal(stop: tokio::sync::watch::Sender<bool>) {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    match term {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping");
    let _ = stop.send(true);
}
