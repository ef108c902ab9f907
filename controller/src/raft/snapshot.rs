//! Snapshots of the state machine: the whole key-value data as JSON, kept durably in the
//! state machine's database (the current snapshot's metadata and data) so that it survives a
//! restart and can be sent to a lagging follower.

use std::io::Cursor;

use openraft::storage::Snapshot;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::state_machine::{KV, LAST_APPLIED, LAST_MEMBERSHIP, META, read_json, write_json};
use super::types::{LogId, SnapshotMeta, StoredMembership, TypeConfig, bytes};
use super::{DbContext, StoreError, decode, encode};

/// The current snapshot: [`SNAPSHOT_META`] → JSON of its metadata, [`SNAPSHOT_DATA`] → its data.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

const SNAPSHOT_META: &str = "meta";
const SNAPSHOT_DATA: &str = "data";
/// In [`META`]: how many snapshots this state machine has built, for unique snapshot ids.
const SNAPSHOT_COUNT: &str = "snapshot_count";

/// The data of a snapshot.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotData {
    kv: Vec<Record>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    key: String,
    version: u64,
    #[serde(with = "bytes")]
    value: Vec<u8>,
}

/// Builds a snapshot of the applied state, makes it the current one and returns it.
pub(crate) fn build(db: &Database) -> Result<Snapshot<TypeConfig>, StoreError> {
    // One read transaction: data and metadata from the same applied index, while applies go on.
    let (last_applied, last_membership, data) = {
        let txn = db.begin_read().ctx("begin read")?;
        let meta = txn.open_table(META).ctx("open state machine meta table")?;
        let last_applied: Option<LogId> = read_json(&meta, LAST_APPLIED)?;
        let last_membership: StoredMembership = read_json(&meta, LAST_MEMBERSHIP)?;
        let table = txn.open_table(KV).ctx("open kv table")?;
        let mut kv = Vec::new();
        for item in table.range::<&str>(..).ctx("read kv")? {
            let (key, value) = item.ctx("read key")?;
            let (version, bytes) = value.value();
            kv.push(Record {
                key: key.value().to_owned(),
                version,
                value: bytes.to_vec(),
            });
        }
        (
            last_applied,
            last_membership,
            encode("snapshot data", &SnapshotData { kv })?,
        )
    };

    let txn = db.begin_write().ctx("begin write")?;
    let meta = {
        let mut meta_table = txn.open_table(META).ctx("open state machine meta table")?;
        let count: u64 = read_json::<u64, _>(&meta_table, SNAPSHOT_COUNT)? + 1;
        write_json(&mut meta_table, SNAPSHOT_COUNT, &count)?;
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{count}", id.leader_id, id.index),
            None => format!("none-{count}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        let mut snapshots = txn.open_table(SNAPSHOT).ctx("open snapshot table")?;
        // Never replace a newer snapshot (one installed from the leader meanwhile).
        let newer_exists = match snapshots.get(SNAPSHOT_META).ctx("read snapshot meta")? {
            Some(v) => {
                decode::<SnapshotMeta>("snapshot meta", v.value())?.last_log_id > meta.last_log_id
            }
            None => false,
        };
        if !newer_exists {
            store_current(&mut snapshots, &meta, &data)?;
        }
        meta
    };
    txn.commit().ctx("commit snapshot")?;
    tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "built snapshot");
    Ok(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    })
}

/// Replaces the whole state with the snapshot's, atomically, and keeps it as the current one.
pub(crate) fn install(db: &Database, meta: &SnapshotMeta, data: Vec<u8>) -> Result<(), StoreError> {
    let parsed: SnapshotData = decode("snapshot data", &data)?;
    let txn = db.begin_write().ctx("begin write")?;
    txn.delete_table(KV).ctx("clear kv table")?;
    {
        let mut kv = txn.open_table(KV).ctx("open kv table")?;
        for record in &parsed.kv {
            kv.insert(
                record.key.as_str(),
                (record.version, record.value.as_slice()),
            )
            .ctx("write key")?;
        }
        let mut meta_table = txn.open_table(META).ctx("open state machine meta table")?;
        write_json(&mut meta_table, LAST_APPLIED, &meta.last_log_id)?;
        write_json(&mut meta_table, LAST_MEMBERSHIP, &meta.last_membership)?;
        let mut snapshots = txn.open_table(SNAPSHOT).ctx("open snapshot table")?;
        store_current(&mut snapshots, meta, &data)?;
    }
    txn.commit().ctx("commit snapshot install")
}

/// The current snapshot, if one was built or installed.
pub(crate) fn current(db: &Database) -> Result<Option<Snapshot<TypeConfig>>, StoreError> {
    let txn = db.begin_read().ctx("begin read")?;
    let table = txn.open_table(SNAPSHOT).ctx("open snapshot table")?;
    let Some(meta) = table.get(SNAPSHOT_META).ctx("read snapshot meta")? else {
        return Ok(None);
    };
    let meta: SnapshotMeta = decode("snapshot meta", meta.value())?;
    let data = table
        .get(SNAPSHOT_DATA)
        .ctx("read snapshot data")?
        .map(|v| v.value().to_vec())
        .unwrap_or_default();
    Ok(Some(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    }))
}

fn store_current(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(), StoreError> {
    let meta = encode("snapshot meta", meta)?;
    table
        .insert(SNAPSHOT_META, meta.as_slice())
        .ctx("write snapshot meta")?;
    table
        .insert(SNAPSHOT_DATA, data)
        .ctx("write snapshot data")?;
    Ok(())
}
