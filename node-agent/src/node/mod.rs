//! The agent as a node of a cluster (issue 5): it joins with a token, keeps a session with
//! the controllers' leader (register, heartbeat, assignments, status reports) and runs its
//! assignments through an [`Executor`]: the real runtime ([`runtime`]) or a simulated one
//! for scale benchmarks ([`hollow`]).
//!
//! - `session.rs`: the session with the leader, following it across leader changes;
//! - `worker.rs`: the node's assignments against what its executor runs (start, stop,
//!   remove, report), and the reconcile after a (re)connect;
//! - `runtime.rs`: the executor of real containers;
//! - `hollow.rs`: the simulated executor, and many hollow nodes in one process;
//! - `identity.rs`: joining, and the node's identity on disk;
//! - `error.rs`: [`NodeError`].

pub mod runtime;

use std::net::Ipv4Addr;
use std::sync::Arc;

use berth_proto::v1::Assignment;
use berth_proto::v1::node_request::Op;
use futures::future::BoxFuture;
use ipnet::Ipv4Net;

mod error;
pub mod health;
pub mod hollow;
pub mod identity;
pub mod io;
pub mod network;
pub mod session;
pub mod worker;

pub use error::NodeError;
pub use identity::NodeIdentity;
pub use session::{Counters, NodeOptions, Probe, SessionState, run_node};
pub use worker::WorkerOptions;

/// What a task is doing on the node, as the node reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Being started.
    Starting,
    /// Running.
    Running,
    /// Exited with code 0.
    Complete,
    /// Exited otherwise, or could not start.
    Failed,
    /// Stopped on request.
    Shutdown,
}

impl Phase {
    /// Whether the task has ended (it will not run again).
    pub fn is_end(self) -> bool {
        matches!(self, Phase::Complete | Phase::Failed | Phase::Shutdown)
    }
}

/// One task's state on the node now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The task.
    pub task_id: String,
    /// What it is doing.
    pub phase: Phase,
    /// Its address in the node's subnet, while it has one.
    pub address: Option<Ipv4Addr>,
    /// Its exit code, once exited.
    pub exit_code: Option<i32>,
    /// Why it failed or stopped, in words.
    pub reason: Option<String>,
    /// Its health check's verdict while it runs: the worker's, from its probes (executors
    /// leave it `None`).
    pub health: Option<health::Health>,
}

/// Where an executor says how a task's start is going: `(task id, text)`, e.g. an image
/// pull's bytes so far. The text becomes the reason of the task's STARTING report.
pub type Progress = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Why an executor could not do something; the text is what the task's report says.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExecError(pub String);

/// What the controller told the node about the cluster's network when it registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNetInfo {
    /// The node's container subnet.
    pub subnet: Ipv4Net,
    /// The node's own address, as it registered.
    pub address: std::net::IpAddr,
    /// The range every node subnet is cut from; `None` from a controller that did not say.
    pub cluster_range: Option<Ipv4Net>,
    /// The range of the services' virtual IPs; `None` likewise.
    pub service_range: Option<Ipv4Net>,
    /// How node subnets reach each other: "vxlan" or "routed" (empty: not said).
    pub overlay: String,
}

impl NodeNetInfo {
    /// Only a subnet, from a controller that says nothing of the cluster's network (tests).
    pub fn for_subnet(subnet: Ipv4Net) -> NodeNetInfo {
        NodeNetInfo {
            subnet,
            address: std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
            cluster_range: None,
            service_range: None,
            overlay: String::new(),
        }
    }
}

/// What runs a node's tasks. Calls may block (the worker makes them off the async threads)
/// and may come concurrently for different tasks, never for one task.
pub trait Executor: Send + Sync + 'static {
    /// Readies the node for tasks on the subnet the controller gave it, in the cluster's
    /// network (called after every registration, with the same subnet each time).
    fn prepare(&self, net: &NodeNetInfo) -> Result<(), ExecError>;
    /// Whether the node takes the cluster's network map (the `Network` stream); hollow nodes
    /// do not, unless asked to (benchmarks).
    fn wants_network(&self) -> bool {
        false
    }
    /// Takes one message of the cluster's network map, in order (the whole map when
    /// `update.full`). Must return quickly: the work is queued.
    fn network(&self, update: berth_proto::v1::NetworkUpdate) {
        let _ = update;
    }
    /// Every task that has a container on this node, and its state now. Containers that are
    /// not tasks (made by hand) are not listed.
    fn list(&self) -> Result<Vec<Observed>, ExecError>;
    /// Creates and starts the task's container from its assignment (which has a spec).
    /// Returns once it runs or failed to start.
    fn start(&self, task: &Assignment) -> Result<Observed, ExecError>;
    /// Stops the task's container (its stop signal, then SIGKILL after the grace period),
    /// keeping it; stopping a task that does not run is not an error.
    fn stop(&self, task_id: &str) -> Result<Observed, ExecError>;
    /// Removes the task's container (stopping it first if needed); removing a task that has
    /// no container is not an error.
    fn remove(&self, task_id: &str) -> Result<(), ExecError>;
    /// The command line that runs a command in `task_id`'s container, up to the command
    /// itself, for health checks' `CMD` probes; `None`: this executor runs no health checks
    /// (a hollow node's tasks stay `starting`).
    fn probe_exec(&self, task_id: &str) -> Result<Option<Vec<std::ffi::OsString>>, ExecError> {
        let _ = task_id;
        Ok(None)
    }
    /// Takes where to say how a start is going (an image pull's progress), for the task's
    /// reports; an executor that has nothing to say ignores it.
    fn set_progress(&self, progress: Progress) {
        let _ = progress;
    }
    /// Whether [`Executor::serve_io`] serves requests; a node that does not never opens the
    /// `Requests` stream (thousands of hollow nodes would only load the controller).
    fn serves_io(&self) -> bool {
        false
    }
    /// Serves a client's request relayed by the controllers (logs, exec, images): reads
    /// the client's frames from `down`, answers on `up` and returns when done. The default
    /// refuses: a node without containers (a hollow one) has nothing to show.
    fn serve_io(self: Arc<Self>, op: Op, down: io::Down, up: io::Up) -> BoxFuture<'static, ()> {
        let _ = (op, down);
        Box::pin(async move {
            up.fail(
                tonic::Code::Unimplemented,
                "this node runs no containers (a hollow node)",
            )
            .await;
        })
    }
}
