//! The executor of real containers: each task is one container of the agent's own runtime
//! ([`ContainerManager`]), on the node bridge, labelled with its task.
//!
//! - A task's container is named `<service>.<slot>.<task id prefix>` (`<service>.<task id
//!   prefix>` for a global service) and labelled `berth.task`, `berth.service`, `berth.slot`
//!   and `berth.spec-version` over the service's labels ([`task_spec`]). Containers without
//!   `berth.task` (made by hand with `berth-agent run`) are never listed nor touched.
//! - Restart policy `no`: the controller restarts a task by creating a new one.
//! - Whether a task was stopped on request is the container's `stop-requested` file, which
//!   every stop writes and every start removes, so it survives an agent restart.
//! - Everything else lives in the container's files as the monitor keeps them, so a new
//!   executor over the same state directory (an agent restart) sees every task.
//! - Links between services (`links` in the spec) are issue 7's and not applied yet; images
//!   must already be in the node's store (pulling is issue 8's).
//!
//! Calls for different tasks may come concurrently from several threads: the container
//! module coordinates through files and locks (name claims, the address table, the ports
//! record), and the executor's only shared state, the task index, is behind a mutex.

mod index;
mod observe;
pub mod task_spec;

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use berth_proto::v1::Assignment;
use berth_runtime::state::{State, Status, is_same_process_alive};
use ipnet::Ipv4Net;
use tracing::{info, warn};

use crate::container::{AgentConfig, Attach, ContainerError, ContainerManager};
use crate::image::ImageError;
use crate::net::firewall::IptablesFirewall;
use crate::net::{Attachment, NetError, NodeNet, SubnetChange};

use super::network::NodeNetwork;
use super::{ExecError, Executor, Observed, Phase};
use index::{Index, TaskContainer};
pub use observe::{Seen, observed};

/// How the executor runs tasks, beyond the agent's configuration.
/// The longest a stop waits for the node's rules to drop its task ([`RuntimeExecutor`]'s
/// drain before stop).
pub const DRAIN_WAIT: Duration = Duration::from_secs(2);
/// How long a drained task still runs: the other nodes' rules apply the same change within
/// about 100 ms (docs/benchmarks.md), and requests in flight finish.
pub const DRAIN_GRACE: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// The grace period of `stop` before SIGKILL, for every task; `None`: each container's
    /// own (10 s unless its image says otherwise).
    pub stop_timeout: Option<Duration>,
    /// How to reach the registries images are pulled from.
    pub registries: crate::image::registry::Registries,
}

/// Why the executor could not do something; the text names the task or container.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The agent's state directory could not be opened.
    #[error("opening the node's containers in {}: {source}", state_dir.display())]
    Open {
        /// The state directory.
        state_dir: PathBuf,
        /// Why.
        #[source]
        source: Box<ContainerError>,
    },
    /// The node network could not be given the controller's subnet.
    #[error("setting the node network's subnet to {subnet}: {source}")]
    Subnet {
        /// The subnet asked for.
        subnet: Ipv4Net,
        /// Why.
        #[source]
        source: Box<NetError>,
    },
    /// The node's containers could not be read.
    #[error("listing the node's containers in {}: {source}", dir.display())]
    List {
        /// The containers directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The assignment carries no spec (the controller no longer has that version).
    #[error(
        "task {task}: the assignment carries no spec (version {version} of service {service} \
         is gone), so it is not started"
    )]
    NoSpec {
        /// The task.
        task: String,
        /// Its service.
        service: String,
        /// The spec version it runs.
        version: u64,
    },
    /// The spec cannot be turned into a container.
    #[error("task {task}: invalid service spec: {reason}")]
    InvalidSpec {
        /// The task.
        task: String,
        /// What is wrong.
        reason: String,
    },
    /// The image is not in the node's store, and its reference names no registry.
    #[error(
        "task {task}: image {image} is not in this node's image store and names no registry \
         to pull it from (host[:port]/repository:tag); load it with `berth image import FILE` \
         (docker save or OCI archive)"
    )]
    MissingImage {
        /// The task.
        task: String,
        /// The image reference.
        image: String,
    },
    /// The image could not be pulled from its registry.
    #[error("task {task}: pulling image {image}: {source}")]
    Pull {
        /// The task.
        task: String,
        /// The image reference.
        image: String,
        /// Why.
        #[source]
        source: Box<ImageError>,
    },
    /// No async runtime could be made for a pull outside the agent's.
    #[error("task {task}: cannot start a runtime to pull its image: {source}")]
    PullRuntime {
        /// The task.
        task: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The task's container name is held by a container that is not this task's.
    #[error("task {task}: its container name {name} is already used by container {holder}")]
    NameTaken {
        /// The task.
        task: String,
        /// The name.
        name: String,
        /// The container holding it.
        holder: String,
    },
    /// A container operation failed.
    #[error("task {task}: {op} container {container}: {source}")]
    Container {
        /// The task.
        task: String,
        /// What was being done ("create", "start", "stop", "remove", "read").
        op: &'static str,
        /// The container's name (or id).
        container: String,
        /// Why.
        #[source]
        source: Box<ContainerError>,
    },
}

impl From<RunError> for ExecError {
    fn from(e: RunError) -> Self {
        ExecError(e.to_string())
    }
}

/// The real-runtime [`Executor`].
#[derive(Debug)]
pub struct RuntimeExecutor {
    base: AgentConfig,
    options: RuntimeOptions,
    /// Replaced when [`Executor::prepare`] changes the subnet.
    manager: RwLock<Arc<ContainerManager>>,
    index: Mutex<Index>,
    prepare: Mutex<()>,
    /// The overlay, service addresses and DNS of the cluster network.
    network: NodeNetwork,
    /// Where pulls say how far they are.
    progress: Mutex<Option<ProgressSink>>,
}

/// [`super::Progress`], shown by `Debug` as what it is.
#[derive(Clone)]
struct ProgressSink(super::Progress);

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

impl RuntimeExecutor {
    /// An executor over the agent's state directory, cgroup parent, monitor and network
    /// (whose subnet [`Executor::prepare`] replaces with the controller's).
    pub fn new(config: AgentConfig) -> Result<Self, RunError> {
        Self::with_options(config, RuntimeOptions::default())
    }

    /// [`RuntimeExecutor::new`] with options.
    pub fn with_options(config: AgentConfig, options: RuntimeOptions) -> Result<Self, RunError> {
        let manager = open(&config)?;
        let network = NodeNetwork::start(Arc::new(IptablesFirewall::new())).map_err(|source| {
            RunError::Open {
                state_dir: config.state_dir.clone(),
                source: Box::new(ContainerError::io(
                    "start the network worker",
                    &config.state_dir,
                    source,
                )),
            }
        })?;
        Ok(Self {
            base: config,
            options,
            manager: RwLock::new(Arc::new(manager)),
            index: Mutex::new(Index::default()),
            prepare: Mutex::new(()),
            network,
            progress: Mutex::new(None),
        })
    }

    /// The container manager in use now.
    pub fn manager(&self) -> Arc<ContainerManager> {
        self.manager
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The agent's configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.base
    }

    /// The name of the container of task `task_id`, if it has one on this node.
    /// The command line of `berth-agent exec` on this node's containers, up to the
    /// options of `exec` (the container's name comes next): the agent's threads cannot enter
    /// a mount namespace, a fresh process can.
    pub fn exec_command_line(&self) -> Vec<OsString> {
        let config = self.config();
        let bin = config.agent_bin.clone().unwrap_or_else(|| {
            config
                .monitor_bin
                .parent()
                .map(|d| d.join("berth-agent"))
                .unwrap_or_else(|| std::path::PathBuf::from("berth-agent"))
        });
        vec![
            bin.into_os_string(),
            "--state-dir".into(),
            config.state_dir.clone().into_os_string(),
            "--cgroup-parent".into(),
            config.cgroup_parent.clone().into(),
            "exec".into(),
        ]
    }

    pub fn container_of(&self, task_id: &str) -> Result<Option<String>, RunError> {
        let m = self.manager();
        Ok(self.find(&m, task_id)?.map(|t| t.name))
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // The index is a cache: a panic while holding it leaves at worst an entry to re-read.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every task container now.
    fn task_containers(&self, m: &ContainerManager) -> Result<Vec<TaskContainer>, RunError> {
        let dir = m.config().state_dir.join("containers");
        self.index()
            .refresh(&dir)
            .map_err(|source| RunError::List { dir, source })
    }

    fn find(&self, m: &ContainerManager, task_id: &str) -> Result<Option<TaskContainer>, RunError> {
        Ok(self
            .task_containers(m)?
            .into_iter()
            .find(|t| t.task_id == task_id))
    }

    /// The task's state from its container's files; `None` if the container is gone.
    fn observe(&self, m: &ContainerManager, t: &TaskContainer) -> Option<Observed> {
        let dir = m.config().state_dir.join("containers").join(&t.id);
        let state = match State::load(&dir.join("state.json")) {
            Ok(s) => s,
            Err(_) if !dir.exists() => return None,
            // No record yet: created, the monitor not started.
            Err(_) if !dir.join("state.json").exists() => State::created(),
            Err(e) => {
                return Some(Observed {
                    task_id: t.task_id.clone(),
                    phase: Phase::Failed,
                    address: None,
                    exit_code: None,
                    reason: Some(format!("container {}: {e}", t.name)),
                    health: None,
                });
            }
        };
        let monitor_alive = state
            .monitor_pid
            .is_some_and(|p| is_same_process_alive(p, None));
        let process_alive = state
            .pid
            .is_some_and(|p| is_same_process_alive(p, state.pid_start_ticks));
        let active = matches!(state.status, Status::Running | Status::Restarting)
            && (monitor_alive || process_alive);
        let address = if active {
            fs::read(dir.join("network.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Attachment>(&b).ok())
                .map(|a| a.ip)
        } else {
            None
        };
        Some(observed(&Seen {
            task_id: &t.task_id,
            state: &state,
            monitor_alive,
            process_alive,
            stop_requested: dir.join("stop-requested").exists(),
            address,
        }))
    }

    fn container_error(
        task: &str,
        op: &'static str,
        container: &str,
    ) -> impl FnOnce(ContainerError) -> RunError {
        move |source| RunError::Container {
            task: task.to_owned(),
            op,
            container: container.to_owned(),
            source: Box::new(source),
        }
    }

    /// The task already has a container: reports it, after starting it if it was created
    /// but never started (an agent that stopped between the two).
    fn start_existing(
        &self,
        m: &ContainerManager,
        t: &TaskContainer,
    ) -> Result<Observed, RunError> {
        let dir = m.config().state_dir.join("containers").join(&t.id);
        if dir.is_dir() && !dir.join("state.json").exists() {
            return self.start_created(m, t);
        }
        match self.observe(m, t) {
            Some(o) => Ok(o),
            None => Err(RunError::Container {
                task: t.task_id.clone(),
                op: "read",
                container: t.name.clone(),
                source: Box::new(ContainerError::NotFound(t.name.clone())),
            }),
        }
    }

    /// Starts a created container. A start the container itself refused (missing
    /// entrypoint, bad user...) is recorded in its state and reported as `Failed`; any other
    /// failure removes the container again and is an error.
    fn start_created(&self, m: &ContainerManager, t: &TaskContainer) -> Result<Observed, RunError> {
        match m.start(&t.id, Attach::Detached) {
            Ok(_) => {}
            Err(e) => {
                if let Some(o) = self.observe(m, t).filter(|o| o.phase == Phase::Failed) {
                    info!(task = %t.task_id, container = %t.name, reason = ?o.reason, "task could not start");
                    return Ok(o);
                }
                if let Err(re) = m.remove(&t.id, true) {
                    warn!(task = %t.task_id, container = %t.name, error = %re, "removing a container that failed to start");
                }
                self.index().forget(&t.id);
                return Err(Self::container_error(&t.task_id, "start", &t.name)(e));
            }
        }
        let o = self.observe(m, t).ok_or_else(|| RunError::Container {
            task: t.task_id.clone(),
            op: "start",
            container: t.name.clone(),
            source: Box::new(ContainerError::NotFound(t.name.clone())),
        })?;
        info!(task = %t.task_id, container = %t.name, phase = ?o.phase, address = ?o.address, "task started");
        Ok(o)
    }

    fn start_task(&self, task: &Assignment) -> Result<Observed, RunError> {
        let m = self.manager();
        let task_id = &task.task_id;
        let spec = task.spec.as_ref().ok_or_else(|| RunError::NoSpec {
            task: task_id.clone(),
            service: task.service.clone(),
            version: task.spec_version,
        })?;
        if let Some(t) = self.find(&m, task_id)? {
            return self.start_existing(&m, &t);
        }
        let links: Vec<&str> = spec.links.iter().map(|l| l.service.as_str()).collect();
        let net = self
            .network
            .task_network(&links, super::network::LINK_WAIT)
            .map_err(|reason| RunError::InvalidSpec {
                task: task_id.clone(),
                reason,
            })?;
        let opts = task_spec::create_options(task, spec, &net).map_err(|reason| {
            RunError::InvalidSpec {
                task: task_id.clone(),
                reason,
            }
        })?;
        let name = opts.name.clone().unwrap_or_default();
        self.pull_if_missing(&m, task_id, &spec.image)?;
        let info = match m.create(&opts) {
            Ok(info) => info,
            Err(ContainerError::Image(ImageError::NotFound { .. })) => {
                return Err(RunError::MissingImage {
                    task: task_id.clone(),
                    image: spec.image.clone(),
                });
            }
            Err(ContainerError::NameInUse { id, .. }) => {
                // Created by another agent process for this very task since the index was read?
                if let Some(t) = self.find(&m, task_id)? {
                    return self.start_existing(&m, &t);
                }
                return Err(RunError::NameTaken {
                    task: task_id.clone(),
                    name,
                    holder: id,
                });
            }
            Err(ContainerError::InvalidOption(reason)) => {
                return Err(RunError::InvalidSpec {
                    task: task_id.clone(),
                    reason,
                });
            }
            Err(e) => return Err(Self::container_error(task_id, "create", &name)(e)),
        };
        let t = TaskContainer {
            id: info.spec.id.clone(),
            name,
            task_id: task_id.clone(),
        };
        self.index().insert(t.clone());
        self.start_created(&m, &t)
    }

    fn stop_task(&self, task_id: &str) -> Result<Observed, RunError> {
        let m = self.manager();
        let Some(t) = self.find(&m, task_id)? else {
            return Ok(Observed {
                task_id: task_id.to_owned(),
                phase: Phase::Shutdown,
                address: None,
                exit_code: None,
                reason: Some("no container on this node".into()),
                health: None,
            });
        };
        let dir = m.config().state_dir.join("containers").join(&t.id);
        if !dir.join("state.json").exists() {
            // Never started: it will not be, unless started again.
            let marker = dir.join("stop-requested");
            fs::write(&marker, b"").map_err(|e| {
                Self::container_error(task_id, "stop", &t.name)(ContainerError::Io {
                    op: "write",
                    path: marker.clone(),
                    source: e,
                })
            })?;
        }
        self.drain(&m, &t);
        match m.stop(&t.id, self.options.stop_timeout) {
            Ok(_) | Err(ContainerError::NotFound(_)) => {}
            Err(e) => return Err(Self::container_error(task_id, "stop", &t.name)(e)),
        }
        let o = self.observe(&m, &t).unwrap_or_else(|| Observed {
            task_id: task_id.to_owned(),
            phase: Phase::Shutdown,
            address: None,
            exit_code: None,
            reason: Some("its container was removed".into()),
            health: None,
        });
        info!(task = %task_id, container = %t.name, phase = ?o.phase, "task stopped");
        Ok(o)
    }

    /// Pulls `image` from its registry when the store lacks it and it names one (only the
    /// layers the store lacks are fetched; concurrent pulls of a layer fetch it once).
    fn pull_if_missing(
        &self,
        m: &ContainerManager,
        task_id: &str,
        image: &str,
    ) -> Result<(), RunError> {
        use crate::image::registry::registry_of;
        if m.images().resolve(image).is_ok() {
            return Ok(());
        }
        let Some(host) = registry_of(image) else {
            return Ok(());
        };
        let config = self.options.registries.for_host(&host);
        let started = std::time::Instant::now();
        let sink = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let tally = PullTally::default();
        let say = |p: &crate::image::registry::LayerProgress| {
            if let (Some(sink), Some(text)) = (&sink, tally.record(p)) {
                (sink.0)(task_id, &format!("pulling image {image}: {text}"));
            }
        };
        let pull = m.images().pull(image, &config, &say);
        // On the agent's runtime (starts run on its blocking threads), else on one of its own.
        let pulled = match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(pull),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| RunError::PullRuntime {
                    task: task_id.to_owned(),
                    source,
                })?
                .block_on(pull),
        };
        let record = pulled.map_err(|source| RunError::Pull {
            task: task_id.to_owned(),
            image: image.to_owned(),
            source: Box::new(source),
        })?;
        info!(task = %task_id, %image, id = %record.id, took = ?started.elapsed(), "image pulled");
        Ok(())
    }

    /// Drain before stop: a task that still receives traffic (its address is a backend of
    /// this node's service rules) is left running until the rules drop it (the controller
    /// took it out of its services when it was told to stop), then [`DRAIN_GRACE`] more for
    /// the other nodes' rules and the requests in flight; at most [`DRAIN_WAIT`] in all.
    fn drain(&self, m: &ContainerManager, t: &TaskContainer) {
        let Some(address) = self
            .observe(m, t)
            .filter(|o| o.phase == Phase::Running)
            .and_then(|o| o.address)
        else {
            return;
        };
        if !self.network.is_endpoint(address) {
            return;
        }
        let started = std::time::Instant::now();
        let drained = self.network.drained(address, DRAIN_WAIT);
        std::thread::sleep(DRAIN_GRACE);
        info!(
            container = %t.name,
            %address,
            drained,
            took = ?started.elapsed(),
            "drained before stop"
        );
    }

    fn remove_task(&self, task_id: &str) -> Result<(), RunError> {
        let m = self.manager();
        let Some(t) = self.find(&m, task_id)? else {
            return Ok(());
        };
        // Gracefully first (its stop signal and grace period), then everything it owns.
        match m.stop(&t.id, self.options.stop_timeout) {
            Ok(_) | Err(ContainerError::NotFound(_)) => {}
            Err(e) => return Err(Self::container_error(task_id, "stop", &t.name)(e)),
        }
        match m.remove(&t.id, true) {
            Ok(()) | Err(ContainerError::NotFound(_)) => {}
            Err(e) => return Err(Self::container_error(task_id, "remove", &t.name)(e)),
        }
        self.index().forget(&t.id);
        info!(task = %task_id, container = %t.name, "task removed");
        Ok(())
    }

    fn prepare_subnet(&self, subnet: Ipv4Net, mtu: Option<u32>) -> Result<(), RunError> {
        let _one_at_a_time = self.prepare.lock().unwrap_or_else(|e| e.into_inner());
        let mut cfg = self.base.clone();
        cfg.network.subnet = subnet;
        if let Some(mtu) = mtu {
            cfg.network.mtu = cfg.network.mtu.min(mtu);
        }
        let (_net, change) =
            NodeNet::ensure_subnet(&cfg.state_dir.join("net"), cfg.network.clone()).map_err(
                |source| RunError::Subnet {
                    subnet,
                    source: Box::new(source),
                },
            )?;
        if self.manager().config().network != cfg.network {
            let m = open(&cfg)?;
            *self.manager.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(m);
        }
        if change != SubnetChange::Unchanged {
            info!(%subnet, ?change, "node network ready");
        }
        // What a crashed agent left (addresses, rules, veths of containers that are gone).
        if let Err(e) = self.manager().reconcile_network() {
            warn!(error = %e, "removing the network leftovers of containers that are gone");
        }
        Ok(())
    }

    fn list_tasks(&self) -> Result<Vec<Observed>, RunError> {
        let m = self.manager();
        Ok(self
            .task_containers(&m)?
            .iter()
            .filter_map(|t| self.observe(&m, t))
            .collect())
    }
}

fn open(config: &AgentConfig) -> Result<ContainerManager, RunError> {
    ContainerManager::open(config.clone()).map_err(|source| RunError::Open {
        state_dir: config.state_dir.clone(),
        source: Box::new(source),
    })
}

/// A pull's progress over its layers, said at most every [`PULL_REPORT_EVERY`].
#[derive(Default)]
struct PullTally {
    inner: Mutex<Tally>,
}

/// Each layer's (bytes done, size, finished), and when progress was last said.
type Tally = (
    std::collections::BTreeMap<String, (u64, u64, bool)>,
    Option<std::time::Instant>,
);

/// How often a pull's progress is reported.
const PULL_REPORT_EVERY: Duration = Duration::from_millis(500);

impl PullTally {
    /// Takes in `p`; the text to say now, if it is time: `12.0 of 40.0 MiB, 3 of 5 layers`.
    fn record(&self, p: &crate::image::registry::LayerProgress) -> Option<String> {
        use crate::image::registry::LayerState as S;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let done = matches!(p.state, S::Cached | S::Downloaded | S::Shared);
        inner.0.insert(p.digest.clone(), (p.done, p.total, done));
        let now = std::time::Instant::now();
        if inner.1.is_some_and(|last| now - last < PULL_REPORT_EVERY) {
            return None;
        }
        inner.1 = Some(now);
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        let (got, total) = inner
            .0
            .values()
            .fold((0, 0), |(g, t), (d, tot, _)| (g + d, t + tot));
        let layers = inner.0.values().filter(|(_, _, d)| *d).count();
        Some(format!(
            "{:.1} of {:.1} MiB, {layers} of {} layers",
            mib(got),
            mib(total),
            inner.0.len()
        ))
    }
}

impl Executor for RuntimeExecutor {
    fn serves_io(&self) -> bool {
        true
    }

    fn set_progress(&self, progress: super::Progress) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(ProgressSink(progress));
    }

    fn probe_exec(&self, task_id: &str) -> Result<Option<Vec<OsString>>, ExecError> {
        let name = self
            .container_of(task_id)
            .map_err(|e| ExecError(e.to_string()))?
            .ok_or_else(|| ExecError(format!("task {task_id} has no container on this node")))?;
        let mut line = self.exec_command_line();
        line.extend([name.into(), "--".into()]);
        Ok(Some(line))
    }

    fn serve_io(
        self: Arc<Self>,
        op: berth_proto::v1::node_request::Op,
        down: super::io::Down,
        up: super::io::Up,
    ) -> futures::future::BoxFuture<'static, ()> {
        self.serve(op, down, up)
    }

    fn prepare(&self, info: &super::NodeNetInfo) -> Result<(), ExecError> {
        // Without the overlay or the mesh the node still runs its tasks (reachable on the
        // node only): that is logged, not fatal.
        let mtu = self.network.prepare(info).unwrap_or_else(|e| {
            warn!(error = %e, "the node has no cluster network");
            None
        });
        self.prepare_subnet(info.subnet, mtu)?;
        self.network
            .bridge_ready(self.manager().config().network.gateway());
        Ok(())
    }

    fn wants_network(&self) -> bool {
        true
    }

    fn network(&self, update: berth_proto::v1::NetworkUpdate) {
        self.network.update(update);
    }

    fn list(&self) -> Result<Vec<Observed>, ExecError> {
        Ok(self.list_tasks()?)
    }

    fn start(&self, task: &Assignment) -> Result<Observed, ExecError> {
        Ok(self.start_task(task)?)
    }

    fn stop(&self, task_id: &str) -> Result<Observed, ExecError> {
        Ok(self.stop_task(task_id)?)
    }

    fn remove(&self, task_id: &str) -> Result<(), ExecError> {
        Ok(self.remove_task(task_id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::registry::{LayerProgress, LayerState};

    fn p(digest: &str, state: LayerState, done: u64, total: u64) -> LayerProgress {
        LayerProgress {
            digest: digest.into(),
            state,
            done,
            total,
        }
    }

    #[test]
    fn a_pull_is_said_in_bytes_and_layers_at_most_twice_a_second() {
        let t = PullTally::default();
        let mib = 1 << 20;
        assert_eq!(
            t.record(&p("a", LayerState::Cached, 4 * mib, 4 * mib))
                .as_deref(),
            Some("4.0 of 4.0 MiB, 1 of 1 layers")
        );
        // Within the half second: folded in, not said.
        assert_eq!(
            t.record(&p("b", LayerState::Downloading, mib, 8 * mib)),
            None
        );
        std::thread::sleep(PULL_REPORT_EVERY);
        assert_eq!(
            t.record(&p("b", LayerState::Downloading, 2 * mib, 8 * mib))
                .as_deref(),
            Some("6.0 of 12.0 MiB, 1 of 2 layers")
        );
    }
}
