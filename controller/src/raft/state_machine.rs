//! [`RedbStateMachine`]: openraft's state machine, a versioned key-value store in a redb
//! database, with durable snapshots; [`KvReader`] reads it from other code.
//!
//! Each `apply` call is one write transaction: the key-value changes of all its entries and
//! the new `last_applied` commit together, so after a crash the state machine is exactly at
//! some applied index and openraft re-applies what follows from the log. Applies commit
//! without fsync, except one at least every [`SM_SYNC_INTERVAL`](super::SM_SYNC_INTERVAL)
//! (which persists the earlier ones and lets redb reuse freed pages); snapshots commit durably.

use std::fmt::Debug;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition};

use super::apply::{Plan, plan_batch};
use super::snapshot::{self, SNAPSHOT};
use super::types::{
    Command, CommandResponse, Entry, LogId, Op, RaftStorageError, SnapshotMeta, StoredMembership,
    TypeConfig,
};
use super::{DbContext, SM_SYNC_INTERVAL, StoreError, blocking, decode, encode};

/// The key-value data: key → (version, value).
pub(crate) const KV: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("kv");
/// Single records: [`LAST_APPLIED`], [`LAST_MEMBERSHIP`] → JSON.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

pub(crate) const LAST_APPLIED: &str = "last_applied";
pub(crate) const LAST_MEMBERSHIP: &str = "last_membership";

/// redb's page cache for the state (its default is 1 GiB): 100,000 tasks take about 60 MB.
const STATE_CACHE_BYTES: usize = 128 * 1024 * 1024;

/// How many applied batches of changes a watcher may fall behind before it is told it lagged.
/// A lagging watcher keeps that many batches alive, each up to one entry's group
/// (`proposer::MAX_GROUP_BYTES`, 384 KiB): 1,024 of them bound it near 384 MiB, what 4,096
/// groups of 96 KiB did before (at 4,096 a follower serving a slow event watcher reached
/// 1,039 MiB with 100,000 tasks).
pub const CHANGE_BUFFER: usize = 1024;

/// One key changed by an applied entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: String,
    /// The index of the entry that changed it (the key's new version, for a write).
    pub index: u64,
    /// The new value; `None` when the key was removed.
    pub value: Option<Vec<u8>>,
    /// Whether the key existed before (a write of a new key: `false`).
    pub existed: bool,
}

/// What watchers of the store ([`KvReader::subscribe`]) receive, after the change committed.
#[derive(Debug, Clone)]
pub enum StoreEvent {
    /// The changes of one apply, in order.
    Applied(Arc<[Change]>),
    /// Read the whole state again: a snapshot replaced it, or the receiver subscribed while
    /// entries were applied whose changes were not collected (no one watched when they
    /// began).
    Reset,
}

/// The replicated key-value state machine in a redb database.
pub struct RedbStateMachine {
    db: Arc<Database>,
    /// Watchers of the applied changes.
    changes: broadcast::Sender<StoreEvent>,
    /// When the last durable apply committed.
    last_sync: Instant,
}

impl Debug for RedbStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStateMachine").finish_non_exhaustive()
    }
}

/// A cheap clonable read handle on the state machine's data, for the API and the
/// reconcilers. Reads see the applied state, which may lag the leader's: make a read
/// linearizable through openraft first (`Raft::ensure_linearizable`) when that matters.
#[derive(Clone)]
pub struct KvReader {
    db: Arc<Database>,
    changes: broadcast::Sender<StoreEvent>,
}

impl Debug for KvReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvReader").finish_non_exhaustive()
    }
}

impl KvReader {
    /// Every change applied from now on, as it commits. A receiver that falls more than
    /// [`CHANGE_BUFFER`] applies behind gets `RecvError::Lagged` and must read the state again.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.changes.subscribe()
    }

    /// The version and value of `key`, if present.
    pub fn get(&self, key: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().ctx("begin read")?;
        let table = txn.open_table(KV).ctx("open kv table")?;
        let value = table.get(key).ctx("read key")?;
        Ok(value.map(|v| {
            let (version, bytes) = v.value();
            (version, bytes.to_vec())
        }))
    }

    /// Every key starting with `prefix`, in key order, with its version and value; all read
    /// from one consistent snapshot of the data.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().ctx("begin read")?;
        let table = txn.open_table(KV).ctx("open kv table")?;
        let mut out = Vec::new();
        for item in table.range::<&str>(prefix..).ctx("read key range")? {
            let (key, value) = item.ctx("read key")?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            let (version, bytes) = value.value();
            out.push((key.to_owned(), version, bytes.to_vec()));
        }
        Ok(out)
    }

    /// The log id of the last applied entry.
    pub fn last_applied(&self) -> Result<Option<LogId>, StoreError> {
        let txn = self.db.begin_read().ctx("begin read")?;
        let meta = txn.open_table(META).ctx("open state machine meta table")?;
        read_json(&meta, LAST_APPLIED)
    }
}

/// Reads a JSON record, or `T::default()` if absent.
pub(crate) fn read_json<T, R>(table: &R, key: &'static str) -> Result<T, StoreError>
where
    T: serde::de::DeserializeOwned + Default,
    R: ReadableTable<&'static str, &'static [u8]>,
{
    match table.get(key).ctx("read state machine meta")? {
        Some(v) => decode(key, v.value()),
        None => Ok(T::default()),
    }
}

/// Writes a JSON record.
pub(crate) fn write_json<T: serde::Serialize>(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    key: &'static str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = encode(key, value)?;
    table
        .insert(key, bytes.as_slice())
        .ctx("write state machine meta")?;
    Ok(())
}

impl RedbStateMachine {
    /// Opens or creates the state machine database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(STATE_CACHE_BYTES)
            .create(path)
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        let txn = db.begin_write().ctx("begin write")?;
        txn.open_table(KV).ctx("create kv table")?;
        txn.open_table(META)
            .ctx("create state machine meta table")?;
        txn.open_table(SNAPSHOT).ctx("create snapshot table")?;
        txn.commit().ctx("commit table creation")?;
        Ok(Self {
            db: Arc::new(db),
            changes: broadcast::channel(CHANGE_BUFFER).0,
            last_sync: Instant::now(),
        })
    }

    /// A read handle sharing this state machine's database.
    pub fn reader(&self) -> KvReader {
        KvReader {
            db: self.db.clone(),
            changes: self.changes.clone(),
        }
    }

    fn applied(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let txn = self.db.begin_read().ctx("begin read")?;
        let meta = txn.open_table(META).ctx("open state machine meta table")?;
        Ok((
            read_json(&meta, LAST_APPLIED)?,
            read_json(&meta, LAST_MEMBERSHIP)?,
        ))
    }
}

/// Applies `entries` in one write transaction, with `durability`, and returns one response
/// per entry.
/// The changes are appended to `changes` when it is given.
fn apply_entries(
    db: &Database,
    entries: Vec<Entry>,
    durability: Durability,
    mut changes: Option<&mut Vec<Change>>,
) -> Result<Vec<CommandResponse>, StoreError> {
    let mut txn = db.begin_write().ctx("begin write")?;
    txn.set_durability(durability)
        .ctx("set commit durability")?;
    let mut responses = Vec::with_capacity(entries.len());
    let mut last_applied = None;
    let mut membership = None;
    {
        let mut kv = txn.open_table(KV).ctx("open kv table")?;
        for entry in entries {
            last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::Ok {
                    versions: Vec::new(),
                },
                EntryPayload::Normal(command) => apply_command(
                    &mut kv,
                    &command,
                    entry.log_id.index,
                    changes.as_deref_mut(),
                )?,
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    CommandResponse::Ok {
                        versions: Vec::new(),
                    }
                }
            };
            responses.push(response);
        }
        let mut meta = txn.open_table(META).ctx("open state machine meta table")?;
        if last_applied.is_some() {
            write_json(&mut meta, LAST_APPLIED, &last_applied)?;
        }
        if let Some(membership) = &membership {
            write_json(&mut meta, LAST_MEMBERSHIP, membership)?;
        }
    }
    txn.commit().ctx("commit apply")?;
    Ok(responses)
}

/// Applies one command at log index `index`: a batch all or nothing; a group batch by batch.
fn apply_command(
    kv: &mut Table<'_, &'static str, (u64, &'static [u8])>,
    command: &Command,
    index: u64,
    mut changes: Option<&mut Vec<Change>>,
) -> Result<CommandResponse, StoreError> {
    if let Err(reason) = command.validate() {
        return Ok(CommandResponse::Invalid { reason });
    }
    match command {
        Command::Batch(ops) => apply_batch(kv, ops, index, changes),
        Command::Group(batches) => batches
            .iter()
            .map(|ops| apply_batch(kv, ops, index, changes.as_deref_mut()))
            .collect::<Result<_, _>>()
            .map(CommandResponse::Group),
    }
}

/// Applies one batch, already validated, at log index `index`: all of it, or nothing.
fn apply_batch(
    kv: &mut Table<'_, &'static str, (u64, &'static [u8])>,
    ops: &[Op],
    index: u64,
    mut changes: Option<&mut Vec<Change>>,
) -> Result<CommandResponse, StoreError> {
    let plan = plan_batch(ops, index, |key| -> Result<Option<u64>, StoreError> {
        Ok(kv.get(key).ctx("read key")?.map(|v| v.value().0))
    })?;
    let writes = match plan {
        Plan::Reject(response) => return Ok(response),
        Plan::Write(writes) => writes,
    };
    let mut versions = Vec::with_capacity(writes.len());
    for (key, value) in writes {
        let existed = match value {
            Some(value) => kv.insert(key, (index, value)).ctx("write key")?.is_some(),
            None => kv.remove(key).ctx("remove key")?.is_some(),
        };
        versions.push((key.to_owned(), index));
        // Removing an absent key changes nothing to watch.
        if let Some(changes) = changes.as_deref_mut()
            && (existed || value.is_some())
        {
            changes.push(Change {
                key: key.to_owned(),
                index,
                value: value.map(<[u8]>::to_vec),
                existed,
            });
        }
    }
    Ok(CommandResponse::Ok { versions })
}

/// Builds snapshots of a [`RedbStateMachine`].
pub struct RedbSnapshotBuilder {
    db: Arc<Database>,
}

impl RaftSnapshotBuilder<TypeConfig> for RedbSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let db = self.db.clone();
        blocking(move || snapshot::build(&db))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e).into())
    }
}

impl RaftStateMachine<TypeConfig> for RedbStateMachine {
    type SnapshotBuilder = RedbSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), RaftStorageError> {
        self.applied()
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let durability = if self.last_sync.elapsed() >= SM_SYNC_INTERVAL {
            self.last_sync = Instant::now();
            Durability::Immediate
        } else {
            Durability::None
        };
        let db = self.db.clone();
        // Changes are collected only while someone watches.
        let watched = self.changes.receiver_count() > 0;
        let (responses, changes) = blocking(move || {
            let mut changes = Vec::new();
            let responses =
                apply_entries(&db, entries, durability, watched.then_some(&mut changes))?;
            Ok((responses, changes))
        })
        .await
        .map_err(|e| StorageIOError::write_state_machine(&e))?;
        if watched {
            if !changes.is_empty() {
                // No receiver left meanwhile is not an error.
                let _ = self.changes.send(StoreEvent::Applied(changes.into()));
            }
        } else if self.changes.receiver_count() > 0 {
            // Someone subscribed while these entries were applied without collecting their
            // changes: whatever it read may miss them, so it must read again.
            let _ = self.changes.send(StoreEvent::Reset);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        RedbSnapshotBuilder {
            db: self.db.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        tracing::info!(snapshot = %meta.snapshot_id, last_log_id = ?meta.last_log_id, "installing snapshot");
        let db = self.db.clone();
        let owned_meta = meta.clone();
        blocking(move || snapshot::install(&db, &owned_meta, snapshot.into_inner()))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let _ = self.changes.send(StoreEvent::Reset);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        snapshot::current(&self.db).map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}
