//! Durable Raft storage for the controller: openraft's log store and state machine over redb.
//!
//! - [`types`]: the openraft type configuration and the replicated key-value commands.
//! - [`log_store`]: [`RedbLogStore`], the Raft log, vote, committed and purge marks.
//! - [`state_machine`]: [`RedbStateMachine`], a versioned key-value store with snapshots, and
//!   [`KvReader`], a cheap clonable handle for reads from other code.
//!
//! The log and the state machine live in two redb files in the same directory (`log.redb` and
//! `sm.redb`). redb runs one write transaction at a time per database, and openraft appends to
//! the log and applies to the state machine from two different tasks; with two files the two
//! fsyncs proceed in parallel instead of queueing behind each other. Nothing needs a transaction
//! spanning both: openraft orders them (a snapshot is durable before the log it covers is
//! purged).
//!
//! Nothing is reported to openraft as stored before it is on disk: log appends are
//! group-committed by a flusher thread (one fsync for every append queued meanwhile, see
//! [`log_store`]), the vote commits durably. The state machine applies without fsync and makes
//! its state durable at least every [`SM_SYNC_INTERVAL`] and with every snapshot; after a crash
//! it is at some earlier applied index, and openraft re-applies the rest from the durable log
//! (the log is purged only up to a snapshot, which is durable). Log entries are binary
//! ([`codec`]: protobuf, values as raw bytes); the other records and snapshots are JSON, with
//! byte values as hex strings inside JSON. Blocking redb work runs on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{Config, ConfigError, SnapshotPolicy};

mod apply;
pub mod codec;
mod log_cache;
pub mod log_store;
pub mod network;
pub mod proposer;
pub mod runtime;
pub mod service;
mod snapshot;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod proposer_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;

pub use log_store::RedbLogStore;
pub use network::{GrpcNetwork, GrpcNetworkFactory};
pub use proposer::{ProposeError, Proposer};
pub use runtime::RaftRuntime;
pub use service::{MAX_RAFT_MESSAGE_BYTES, RaftService};
pub use state_machine::{Change, KvReader, RedbSnapshotBuilder, RedbStateMachine, StoreEvent};
pub use types::{Command, CommandResponse, Expect, NodeId, Op, TypeConfig};

/// The longest the state machine goes without a durable commit while applying.
pub const SM_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The log database's file name inside the store directory.
pub const LOG_FILE: &str = "log.redb";
/// The state machine database's file name inside the store directory.
pub const SM_FILE: &str = "sm.redb";

/// An error of the Raft store. Towards openraft it is wrapped into its `StorageError`, which
/// stops the Raft node: storage that fails cannot be trusted to keep acknowledged writes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store directory could not be created.
    #[error("cannot create Raft store directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A database file could not be opened or created.
    #[error("cannot open Raft database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: redb::DatabaseError,
    },
    /// A redb operation failed.
    #[error("Raft store: {op}: {source}")]
    Db {
        /// What was being done.
        op: &'static str,
        /// The cause.
        source: redb::Error,
    },
    /// A stored record could not be encoded or decoded.
    #[error("Raft store: {what}: {source}")]
    Codec {
        /// Which record.
        what: &'static str,
        /// The cause.
        source: serde_json::Error,
    },
    /// A stored log entry could not be decoded.
    #[error("Raft store: log entry: {source}")]
    Entry {
        /// The cause.
        source: codec::CodecError,
    },
    /// The log's flusher thread could not be started.
    #[error("Raft store: cannot start the log flusher thread: {0}")]
    Thread(std::io::Error),
    /// A background task running redb work panicked or was cancelled.
    #[error("Raft store: blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Attaches what was being done to a redb error.
pub(crate) trait DbContext<T> {
    fn ctx(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> DbContext<T> for Result<T, E> {
    fn ctx(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Db {
            op,
            source: e.into(),
        })
    }
}

pub(crate) fn encode<T: serde::Serialize>(
    what: &'static str,
    v: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|source| StoreError::Codec { what, source })
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Codec { what, source })
}

/// Runs blocking redb work (transactions, fsync) on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// Opens (or creates) the Raft store in `dir`: `dir/log.redb` and `dir/sm.redb`.
pub fn open_store(dir: &Path) -> Result<(RedbLogStore, RedbStateMachine), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let log = RedbLogStore::open(&dir.join(LOG_FILE))?;
    let sm = RedbStateMachine::open(&dir.join(SM_FILE))?;
    Ok((log, sm))
}

/// Tunables of the Raft node. The defaults keep a failover under one second.
///
/// How long a failover takes: openraft lets a follower that has seen a committed leader start
/// an election only after the leader's lease (`election_timeout_max_ms`) and then its own
/// election timeout (drawn once per start between the bounds) have passed since the last
/// heartbeat: 450–600 ms with the defaults, then one vote round and the new leader's first
/// commit: four heartbeats missed at least. openraft also gives each append request (a
/// heartbeat included) one heartbeat interval to complete, so the interval must leave a
/// follower time to write a batch of entries on a busy machine: 100 ms, with append requests
/// kept under [`network::APPEND_TARGET_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftSettings {
    /// The cluster's name, checked by openraft between members. Default `berth`.
    pub cluster_name: String,
    /// How often a leader sends heartbeats, in ms, and how long an append request may take.
    /// Default 100.
    pub heartbeat_interval_ms: u64,
    /// The lower bound of the randomised election timeout, in ms. Default 150.
    pub election_timeout_min_ms: u64,
    /// The upper bound of the randomised election timeout, and the leader's lease, in ms.
    /// Default 300.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot once this many entries were applied since the last one. Default
    /// 10,000 (about two seconds of writes at the target throughput; the cluster state is small).
    pub snapshot_logs_since_last: u64,
    /// How many entries already covered by the snapshot to keep in the log, so that a
    /// briefly lagging follower catches up from the log rather than a snapshot. Default 1,000.
    pub max_in_snapshot_log_to_keep: u64,
    /// How long sending and installing a snapshot may take, in ms. Default 10,000.
    pub install_snapshot_timeout_ms: u64,
    /// The most entries sent in one append request. Default 8: a new leader finds where
    /// each follower's log matches its own by sending append requests at points of a binary
    /// search, each carrying this many entries, and with grouped writes an entry may be large;
    /// a follower that is behind gets its entries 8 at a time.
    pub max_payload_entries: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            cluster_name: "berth".to_owned(),
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            snapshot_logs_since_last: 10_000,
            max_in_snapshot_log_to_keep: 1_000,
            install_snapshot_timeout_ms: 10_000,
            max_payload_entries: 8,
        }
    }
}

/// Builds and validates openraft's configuration from `settings`. A follower further behind
/// than twice the snapshot interval is sent a snapshot instead of log entries. (openraft's
/// `ConfigError` is boxed: it is over 100 bytes.)
pub fn raft_config(settings: &RaftSettings) -> Result<Arc<Config>, Box<ConfigError>> {
    let config = Config {
        cluster_name: settings.cluster_name.clone(),
        heartbeat_interval: settings.heartbeat_interval_ms,
        election_timeout_min: settings.election_timeout_min_ms,
        election_timeout_max: settings.election_timeout_max_ms,
        install_snapshot_timeout: settings.install_snapshot_timeout_ms,
        max_payload_entries: settings.max_payload_entries,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_logs_since_last),
        max_in_snapshot_log_to_keep: settings.max_in_snapshot_log_to_keep,
        replication_lag_threshold: settings.snapshot_logs_since_last.saturating_mul(2),
        ..Config::default()
    };
    Ok(Arc::new(config.validate()?))
}
