//! [`RedbLogStore`]: openraft's log storage (log entries, vote, committed, last purged) in a
//! redb database.
//!
//! Appends are group-committed: `append` writes the entries in a non-durable redb transaction
//! (visible to readers at once, as openraft requires, but not yet on disk) and hands the
//! completion callback to a flusher thread; the flusher takes every callback queued, makes one
//! durable (fsync) commit, which persists every earlier non-durable commit with it, and only
//! then reports the entries as stored. Under load one fsync covers many appends, and openraft's
//! core never waits on the disk. A crash loses only appends not yet reported, and redb
//! recovers to the last durable commit, which holds a prefix of what was written.
//!
//! The vote, truncation and purge commit durably before they return. The committed mark is
//! written non-durably: it is an optimisation on restart (openraft may apply up to it at once),
//! and a lost one only means waiting for the leader; one that survives was written after the
//! entries it covers, so they survived too.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::log_cache::LogCache;
use super::types::{Entry, LogId, NodeId, RaftStorageError, TypeConfig};
use super::{DbContext, StoreError, blocking, codec, decode, encode};

/// Log entries: index → the entry in binary ([`codec`]; JSON from earlier versions is read).
const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
/// Single records: [`VOTE`], [`COMMITTED`], [`LAST_PURGED`] → JSON.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");

/// redb's page cache for the log (its default is 1 GiB): the entries read right after their
/// append come from the [`LogCache`]; the database serves followers catching up and restarts.
const LOG_CACHE_BYTES: usize = 32 * 1024 * 1024;
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The Raft log in a redb database. Clones share the database and the flusher; a clone is
/// also the log reader openraft hands to its replication tasks.
#[derive(Clone)]
pub struct RedbLogStore {
    // Declared first, so dropped first: the flusher's thread is joined before the database
    // handle goes, and the file is closed when the last clone is dropped.
    flusher: Arc<Flusher>,
    db: Arc<Database>,
    /// The newest entries, decoded.
    cache: Arc<LogCache>,
}

/// Completions waiting for the next durable commit.
type Pending = LogFlushed<TypeConfig>;

/// The flusher thread of a [`RedbLogStore`]: group-commits appends.
struct Flusher {
    tx: Mutex<Option<Sender<Pending>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Flusher {
    fn start(db: Arc<Database>) -> Result<Self, StoreError> {
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("raft-log-flush".to_owned())
            .spawn(move || flush_loop(&db, &rx))
            .map_err(StoreError::Thread)?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `callback` for the next durable commit; reports an error at once if the
    /// flusher is gone.
    fn submit(&self, callback: Pending) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Err(std::sync::mpsc::SendError(callback))) =
            tx.as_ref().map(|tx| tx.send(callback))
        {
            callback.log_io_completed(Err(io::Error::other("the Raft log flusher has stopped")));
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Closing the channel ends the loop after the batch in hand.
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take()
            && thread.join().is_err()
        {
            tracing::error!("the Raft log flusher panicked");
        }
    }
}

/// Waits for completions, takes every one queued, commits durably once and reports them all.
fn flush_loop(db: &Database, rx: &Receiver<Pending>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let result = durable_commit(db);
        if let Err(e) = &result {
            tracing::error!(error = %e, "cannot make the Raft log durable");
        }
        for callback in batch {
            callback.log_io_completed(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| io::Error::other(e.to_string())),
            );
        }
    }
}

/// An empty durable commit: persists every earlier non-durable one.
fn durable_commit(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().ctx("begin write")?;
    txn.commit().ctx("commit (flush)")
}

/// Begins a write transaction that commits without fsync.
fn begin_non_durable(db: &Database) -> Result<redb::WriteTransaction, StoreError> {
    let mut txn = db.begin_write().ctx("begin write")?;
    txn.set_durability(Durability::None)
        .ctx("set non-durable commit")?;
    Ok(txn)
}

impl Debug for RedbLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbLogStore").finish_non_exhaustive()
    }
}

/// A stored entry, decoded.
fn decode_entry(bytes: &[u8]) -> Result<Entry, StoreError> {
    codec::decode_entry(bytes).map_err(|source| StoreError::Entry { source })
}

impl RedbLogStore {
    /// Opens or creates the log database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(LOG_CACHE_BYTES)
            .create(path)
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        let txn = db.begin_write().ctx("begin write")?;
        txn.open_table(LOGS).ctx("create log table")?;
        txn.open_table(META).ctx("create log meta table")?;
        txn.commit().ctx("commit table creation")?;
        let db = Arc::new(db);
        Ok(Self {
            flusher: Arc::new(Flusher::start(db.clone())?),
            db,
            cache: Arc::default(),
        })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().ctx("begin read")?;
        let table = txn.open_table(META).ctx("open log meta table")?;
        let value = table.get(key).ctx("read log meta")?;
        value.map(|v| decode(key, v.value())).transpose()
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let bytes = encode(key, value)?;
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write().ctx("begin write")?;
            txn.set_durability(durability)
                .ctx("set commit durability")?;
            {
                let mut table = txn.open_table(META).ctx("open log meta table")?;
                table.insert(key, bytes.as_slice()).ctx("write log meta")?;
            }
            txn.commit().ctx("commit log meta")
        })
        .await
    }

    fn read_entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, StoreError> {
        if is_empty_range(&range) {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().ctx("begin read")?;
        let table = txn.open_table(LOGS).ctx("open log table")?;
        let mut entries = Vec::new();
        for item in table.range::<u64>(range).ctx("read log range")? {
            let (_, value) = item.ctx("read log entry")?;
            entries.push(decode_entry(value.value())?);
        }
        Ok(entries)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let txn = self.db.begin_read().ctx("begin read")?;
        let meta = txn.open_table(META).ctx("open log meta table")?;
        let last_purged_log_id: Option<LogId> =
            match meta.get(LAST_PURGED).ctx("read last purged")? {
                Some(v) => decode(LAST_PURGED, v.value())?,
                None => None,
            };
        let table = txn.open_table(LOGS).ctx("open log table")?;
        let last = match table.last().ctx("read last log entry")? {
            Some((_, value)) => Some(
                codec::decode_log_id(value.value())
                    .map_err(|source| StoreError::Entry { source })?,
            ),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }
}

/// Whether `range` holds no index; such a range is not passed to redb, whose B-tree range
/// scan expects `start <= end`.
fn is_empty_range((start, end): &(Bound<u64>, Bound<u64>)) -> bool {
    let first = match *start {
        Bound::Included(s) => s,
        Bound::Excluded(s) => match s.checked_add(1) {
            Some(s) => s,
            None => return true,
        },
        Bound::Unbounded => 0,
    };
    match *end {
        Bound::Included(e) => first > e,
        Bound::Excluded(e) => first >= e,
        Bound::Unbounded => false,
    }
}

fn read_logs_err(e: StoreError) -> RaftStorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_logs_err(e: StoreError) -> RaftStorageError {
    StorageIOError::write_logs(&e).into()
}

impl RaftLogReader<TypeConfig> for RedbLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        if let Some(entries) = self.cache.get(bounds) {
            return Ok(entries);
        }
        self.read_entries(bounds).map_err(read_logs_err)
    }
}

impl RaftLogStorage<TypeConfig> for RedbLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        self.log_state().map_err(read_logs_err)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        self.write_meta(VOTE, vote, Durability::Immediate)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        self.read_meta(VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        self.write_meta(COMMITTED, &committed, Durability::None)
            .await
            .map_err(write_logs_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        let committed: Option<Option<LogId>> = self.read_meta(COMMITTED).map_err(read_logs_err)?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let db = self.db.clone();
        let entries = blocking(move || {
            let txn = begin_non_durable(&db)?;
            {
                let mut table = txn.open_table(LOGS).ctx("open log table")?;
                for entry in &entries {
                    let bytes = codec::encode_entry(entry);
                    table
                        .insert(entry.log_id.index, bytes.as_slice())
                        .ctx("write log entry")?;
                }
            }
            txn.commit().ctx("commit log append")?;
            Ok(entries)
        })
        .await
        .map_err(write_logs_err)?;
        self.cache.insert(&entries);
        // Readable now; counted as stored only once the flusher has them on disk.
        self.flusher.submit(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        tracing::debug!(%log_id, "truncating the Raft log");
        self.cache.truncate(log_id.index);
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().ctx("begin write")?;
            {
                let mut table = txn.open_table(LOGS).ctx("open log table")?;
                table
                    .retain_in(log_id.index.., |_, _| false)
                    .ctx("truncate log")?;
            }
            txn.commit().ctx("commit log truncation")
        })
        .await
        .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        tracing::debug!(%log_id, "purging the Raft log");
        self.cache.purge(log_id.index);
        let marker = encode(LAST_PURGED, &Some(log_id)).map_err(write_logs_err)?;
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().ctx("begin write")?;
            {
                let mut meta = txn.open_table(META).ctx("open log meta table")?;
                meta.insert(LAST_PURGED, marker.as_slice())
                    .ctx("write last purged")?;
                let mut table = txn.open_table(LOGS).ctx("open log table")?;
                table
                    .retain_in(..=log_id.index, |_, _| false)
                    .ctx("purge log")?;
            }
            txn.commit().ctx("commit log purge")
        })
        .await
        .map_err(write_logs_err)
    }
}
