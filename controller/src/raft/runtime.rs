//! The Raft node's own tokio runtime.
//!
//! A member's openraft core, its replication streams, its network clients (the channels to
//! the other members are made by the core, so their connections live here too), its storage
//! tasks and the server of the other members' connections
//! ([`crate::transport::MtlsListener::serve_split`]) run on a small runtime of their own.
//! On the main runtime they would be scheduled among thousands of agents' session tasks:
//! under load a heartbeat could wait behind them long enough for a follower to start an
//! election, and a leader to lose the nodes whose sessions it was too busy to serve.

use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};

/// How many worker threads the Raft runtime has: the core does little work per message and
/// the storage's blocking work runs on the runtime's blocking pool.
pub const RAFT_WORKER_THREADS: usize = 1;
/// How long [`RaftRuntime::shutdown`] waits for the runtime's tasks and threads.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A runtime for one member's Raft node. Dropped without [`RaftRuntime::shutdown`], it
/// stops in the background (its tasks are dropped, its threads end soon after).
#[derive(Debug)]
pub struct RaftRuntime {
    rt: Option<Runtime>,
}

impl RaftRuntime {
    /// Starts the runtime's threads (named `berth-raft`).
    pub fn new() -> std::io::Result<Self> {
        let rt = Builder::new_multi_thread()
            .worker_threads(RAFT_WORKER_THREADS)
            .thread_name("berth-raft")
            .enable_all()
            .build()?;
        Ok(Self { rt: Some(rt) })
    }

    /// A handle to spawn onto it.
    pub fn handle(&self) -> Handle {
        match &self.rt {
            Some(rt) => rt.handle().clone(),
            // `rt` is taken only by `shutdown` and `drop`, which consume the value.
            None => unreachable!("the Raft runtime is used after its shutdown"),
        }
    }

    /// Stops the runtime and waits (up to [`SHUTDOWN_TIMEOUT`], from a blocking thread, so
    /// the caller's runtime keeps going) until its threads have ended.
    pub async fn shutdown(mut self) {
        if let Some(rt) = self.rt.take() {
            let _ =
                tokio::task::spawn_blocking(move || rt.shutdown_timeout(SHUTDOWN_TIMEOUT)).await;
        }
    }
}

impl Drop for RaftRuntime {
    fn drop(&mut self) {
        // A runtime cannot be dropped (which waits) inside another's async context.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
