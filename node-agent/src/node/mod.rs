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

use berth_proto::v1::Assignment;
use ipnet::Ipv4Net;

mod error;
pub mod hollow;
pub mod identity;
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
}

/// Why an executor could not do something; the text is what the task's report says.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExecError(pub String);

/// What runs a node's tasks. Calls may block (the worker makes them off the async threads)
/// and may come concurrently for different tasks, never for one task.
pub trait Executor: Send + Sync + 'static {
    /// Readies the node for tasks on `subnet`, the one the controller gave it (called after
    /// every registration, with the same subnet each time).
    fn prepare(&self, subnet: Ipv4Net) -> Result<(), ExecError>;
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
}
