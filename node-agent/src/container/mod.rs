//! Containers on this node: creating them from images, starting them through
//! `berth-monitor`, and everything the node-local command line does to them.
//!
//! All state lives in files under the agent's state directory, written by the agent (spec,
//! name claims) and by each container's monitor (`state.json`), so any number of agent
//! processes — and an agent restarted after a crash — see the same containers.

mod create;
mod error;
mod exec;
mod lifecycle;
mod logs;
mod network;
pub mod options;
mod process;

use std::fs;
use std::path::{Path, PathBuf};

use berth_runtime::cgroup::Cgroups;
use berth_runtime::paths::ContainerDir;
use berth_runtime::spec::ContainerSpec;
use berth_runtime::state::{State, Status, is_same_process_alive};

pub use error::ContainerError;
pub use exec::ExecOptions;
pub use lifecycle::{Attach, StartedContainer};
pub use logs::LogOptions;
pub use options::CreateOptions;

use crate::image::{ImageStore, InUse};

/// Where the agent keeps its state and how it runs containers.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Root of all state (`images/`, `containers/`, `names/`, `volumes/`, `net/`, `links/`).
    pub state_dir: PathBuf,
    /// Cgroup parent of every container (`<parent>/<id>`).
    pub cgroup_parent: String,
    /// The `berth-monitor` executable.
    pub monitor_bin: PathBuf,
    /// The node network (bridge, subnet, MTU) of bridge-networked containers.
    pub network: crate::net::NetConfig,
    /// The `berth-agent` executable a monitor runs to release a container's network after
    /// its final exit (default: this executable when it is `berth-agent`).
    pub agent_bin: Option<PathBuf>,
}

impl AgentConfig {
    /// The defaults for `state_dir`: cgroup parent `berth`, the monitor next to this executable.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        let monitor_bin = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("berth-monitor")))
            .unwrap_or_else(|| PathBuf::from("berth-monitor"));
        Self {
            state_dir: state_dir.into(),
            cgroup_parent: "berth".into(),
            monitor_bin,
            network: crate::net::NetConfig::default(),
            agent_bin: std::env::current_exe()
                .ok()
                .filter(|p| p.file_name().is_some_and(|n| n == "berth-agent")),
        }
    }
}

/// One container as the agent sees it: its spec, the monitor's record, and liveness.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    /// The resolved spec.
    pub spec: ContainerSpec,
    /// The monitor's record.
    pub state: State,
    /// Whether the monitor process is alive.
    pub monitor_alive: bool,
    /// Whether the container's first process is alive.
    pub process_alive: bool,
    /// Its bridge attachment (address, published ports) while it has one.
    pub network: Option<crate::net::Attachment>,
}

impl ContainerInfo {
    /// The status to show: the monitor's, corrected when the monitor died without saying so.
    pub fn status(&self) -> String {
        match self.state.status {
            Status::Running | Status::Restarting if !self.monitor_alive => {
                if self.process_alive {
                    "running (monitor lost)".into()
                } else {
                    "exited (monitor lost)".into()
                }
            }
            s => s.to_string(),
        }
    }

    /// Whether the container runs (or is waiting to be restarted).
    pub fn is_active(&self) -> bool {
        matches!(self.state.status, Status::Running | Status::Restarting)
            && (self.monitor_alive || self.process_alive)
    }
}

/// The node's containers.
#[derive(Debug)]
pub struct ContainerManager {
    cfg: AgentConfig,
    images: ImageStore,
    cgroups: Box<dyn Cgroups>,
}

impl ContainerManager {
    /// Opens the state directory (creating it) with the host's cgroup driver.
    pub fn open(cfg: AgentConfig) -> Result<Self, ContainerError> {
        let cgroups = berth_runtime::cgroup::detect().map_err(berth_runtime::RuntimeError::from)?;
        Self::with_cgroups(cfg, cgroups)
    }

    /// Opens the state directory with a given cgroup implementation.
    pub fn with_cgroups(
        cfg: AgentConfig,
        cgroups: Box<dyn Cgroups>,
    ) -> Result<Self, ContainerError> {
        for d in ["containers", "names", "volumes"] {
            let p = cfg.state_dir.join(d);
            fs::create_dir_all(&p).map_err(|e| ContainerError::io("create", &p, e))?;
        }
        // Directories of auto-removed containers whose removal a crash interrupted.
        if let Ok(rd) = fs::read_dir(cfg.state_dir.join("trash")) {
            for e in rd.filter_map(|e| e.ok()) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let images = ImageStore::open(&cfg.state_dir.join("images"))?;
        Ok(Self {
            cfg,
            images,
            cgroups,
        })
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.cfg.state_dir.join("containers")
    }

    pub(crate) fn dir(&self, id: &str) -> ContainerDir {
        ContainerDir::new(self.containers_dir().join(id))
    }

    fn name_file(&self, name: &str) -> PathBuf {
        self.cfg.state_dir.join("names").join(name)
    }

    /// Resolves a full id, a unique id prefix or a name to a container id.
    pub fn resolve(&self, reference: &str) -> Result<String, ContainerError> {
        if options::valid_name(reference)
            && let Ok(id) = fs::read_to_string(self.name_file(reference))
            && self.containers_dir().join(id.trim()).is_dir()
        {
            return Ok(id.trim().to_string());
        }
        if reference.is_empty() || !reference.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ContainerError::NotFound(reference.to_string()));
        }
        let matches: Vec<String> = self
            .ids()?
            .into_iter()
            .filter(|id| id.starts_with(reference))
            .collect();
        match matches.len() {
            0 => Err(ContainerError::NotFound(reference.to_string())),
            1 => Ok(matches.into_iter().next().expect("one")),
            n => Err(ContainerError::Ambiguous(reference.to_string(), n)),
        }
    }

    pub(crate) fn ids(&self) -> Result<Vec<String>, ContainerError> {
        let dir = self.containers_dir();
        let rd = fs::read_dir(&dir).map_err(|e| ContainerError::io("read", &dir, e))?;
        Ok(rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.len() == 64)
            .collect())
    }

    /// Reads one container's spec and state.
    pub fn inspect(&self, reference: &str) -> Result<ContainerInfo, ContainerError> {
        let id = self.resolve(reference)?;
        self.load(&id)
    }

    pub(crate) fn load(&self, id: &str) -> Result<ContainerInfo, ContainerError> {
        let dir = self.dir(id);
        let spec =
            load_spec(&dir.config()).ok_or_else(|| ContainerError::NotFound(id.to_string()))?;
        let state = match State::load(&dir.state()) {
            Ok(s) => s,
            Err(_) if !dir.root().exists() => return Err(ContainerError::NotFound(id.to_string())),
            Err(_) if !dir.state().exists() => State::created(),
            Err(e) => return Err(e.into()),
        };
        let monitor_alive = state
            .monitor_pid
            .is_some_and(|p| is_same_process_alive(p, None));
        let process_alive = state
            .pid
            .is_some_and(|p| is_same_process_alive(p, state.pid_start_ticks));
        let network = fs::read(dir.network())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Ok(ContainerInfo {
            spec,
            state,
            monitor_alive,
            process_alive,
            network,
        })
    }

    /// Every container (`all == false`: only the active ones), newest first.
    pub fn list(&self, all: bool) -> Result<Vec<ContainerInfo>, ContainerError> {
        let mut out: Vec<ContainerInfo> = self
            .ids()?
            .iter()
            .filter_map(|id| self.load(id).ok())
            .filter(|c| all || c.is_active())
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.state.start_requested_at.unwrap_or(0)));
        Ok(out)
    }

    /// Images and layers used by containers (kept by `image rm`).
    pub fn in_use(&self) -> Result<InUse, ContainerError> {
        let mut in_use = InUse::default();
        for id in self.ids()? {
            if let Some(spec) = load_spec(&self.dir(&id).config()) {
                in_use.images.insert(spec.image_id.clone());
                for l in &spec.rootfs.layers {
                    if let Some(n) = l.file_name().and_then(|n| n.to_str()) {
                        in_use.layers.insert(format!("sha256:{n}"));
                    }
                }
            }
        }
        Ok(in_use)
    }
}

fn load_spec(path: &Path) -> Option<ContainerSpec> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// 64 random hex characters.
pub(crate) fn random_id() -> Result<String, ContainerError> {
    let mut b = [0u8; 32];
    use std::io::Read;
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| ContainerError::io("read", "/dev/urandom", e))?;
    Ok(hex::encode(b))
}
