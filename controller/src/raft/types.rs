//! The Raft type configuration and the replicated key-value commands.
//!
//! The state machine is a versioned key-value store: every key carries the index of the log
//! entry that last wrote it, and every write may say what it expects to find (optimistic
//! concurrency). The cluster state (services, tasks, nodes, …) is stored on top of it as typed
//! JSON values under keys such as `services/web`.

use std::io::Cursor;

use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// openraft's type configuration for berth's controller.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A controller's Raft node id.
pub type NodeId = u64;
/// A log entry of berth's Raft log.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (leader id and index).
pub type LogId = openraft::LogId<NodeId>;
/// A membership configuration together with the log id that introduced it.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// The metadata of a snapshot.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// openraft's storage error, as returned by the storage traits.
pub type RaftStorageError = openraft::StorageError<NodeId>;

/// The longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// The largest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;
/// The most operations accepted in one batch.
pub const MAX_BATCH_OPS: usize = 1000;
/// The most key and value bytes accepted in one batch, so that a single log entry stays far
/// below redb's value size limit and the Raft transport's message size.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// The most batches in one [`Command::Group`].
pub const MAX_GROUP_BATCHES: usize = 1000;

/// A command replicated through Raft and applied to the key-value state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Operations applied atomically: all of them, or none if a check fails.
    Batch(Vec<Op>),
    /// Independent batches carried by one log entry, applied in order, each on its own terms
    /// (a failed check rejects only its batch); answered by [`CommandResponse::Group`], one
    /// response per batch. The [`Proposer`](super::Proposer) groups concurrent writes this way
    /// so that one entry, one append and one fsync serve many callers. The batch limits apply
    /// to each batch; [`MAX_BATCH_BYTES`] also to the whole group.
    Group(Vec<Vec<Op>>),
}

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Write `value` under `key`.
    Put {
        /// The key.
        key: String,
        /// The value, opaque bytes (typed JSON for the cluster state).
        #[serde(with = "bytes")]
        value: Vec<u8>,
        /// What the key must look like before the write.
        expect: Expect,
    },
    /// Remove `key`; removing an absent key is allowed unless `expect` forbids it.
    Delete {
        /// The key.
        key: String,
        /// What the key must look like before the removal.
        expect: Expect,
    },
}

impl Op {
    /// The key this operation touches.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }

    /// The check this operation makes.
    pub fn expect(&self) -> Expect {
        match self {
            Op::Put { expect, .. } | Op::Delete { expect, .. } => *expect,
        }
    }
}

/// The optimistic-concurrency check of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// No check.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must exist with exactly this version.
    Version(u64),
}

impl Expect {
    /// Whether a key whose current version is `actual` (`None`: absent) passes the check.
    pub fn matches(self, actual: Option<u64>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => actual.is_none(),
            Expect::Version(v) => actual == Some(v),
        }
    }
}

/// The result of applying a log entry. A failed check or an invalid command is a normal
/// response, not an error: the state is unchanged and the caller decides what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Every operation was applied; each touched key with its new version (the entry's log
    /// index), in the order of the operations. Blank and membership entries answer this with
    /// no versions.
    Ok {
        /// `(key, version)` per operation.
        versions: Vec<(String, u64)>,
    },
    /// A check failed; nothing was applied.
    Conflict {
        /// The first key whose check failed.
        key: String,
        /// What the operation expected.
        expected: Expect,
        /// The key's version when the batch was applied, `None` if absent.
        actual: Option<u64>,
    },
    /// The command breaks a limit; nothing was applied.
    Invalid {
        /// What is wrong, for a human.
        reason: String,
    },
    /// The answers to a [`Command::Group`], one per batch, in order.
    Group(Vec<CommandResponse>),
}

impl Command {
    /// Checks the size limits. The state machine applies this same check, so a caller may
    /// run it first to refuse a bad command without going through Raft.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Command::Batch(ops) => validate_batch(ops).map(|_| ()),
            Command::Group(batches) => {
                if batches.len() > MAX_GROUP_BATCHES {
                    return Err(format!(
                        "group has {} batches, more than the limit of {MAX_GROUP_BATCHES}",
                        batches.len()
                    ));
                }
                let mut total = 0usize;
                for (i, ops) in batches.iter().enumerate() {
                    total += validate_batch(ops).map_err(|e| format!("batch {i}: {e}"))?;
                }
                if total > MAX_BATCH_BYTES {
                    return Err(format!(
                        "group has {total} bytes of keys and values, more than the limit of {MAX_BATCH_BYTES}"
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Checks one batch's limits; answers its bytes of keys and values.
pub(crate) fn validate_batch(ops: &[Op]) -> Result<usize, String> {
    {
        if ops.len() > MAX_BATCH_OPS {
            return Err(format!(
                "batch has {} operations, more than the limit of {MAX_BATCH_OPS}",
                ops.len()
            ));
        }
        let mut total = 0usize;
        for op in ops {
            let key = op.key();
            if key.is_empty() {
                return Err("empty key".to_owned());
            }
            if key.len() > MAX_KEY_BYTES {
                return Err(format!(
                    "key of {} bytes is longer than the limit of {MAX_KEY_BYTES}",
                    key.len()
                ));
            }
            total += key.len();
            if let Op::Put { value, .. } = op {
                if value.len() > MAX_VALUE_BYTES {
                    return Err(format!(
                        "value of key {key:?} has {} bytes, more than the limit of {MAX_VALUE_BYTES}",
                        value.len()
                    ));
                }
                total += value.len();
            }
        }
        if total > MAX_BATCH_BYTES {
            return Err(format!(
                "batch has {total} bytes of keys and values, more than the limit of {MAX_BATCH_BYTES}"
            ));
        }
        Ok(total)
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Batch(ops) => write!(f, "batch of {} ops", ops.len()),
            Command::Group(batches) => write!(f, "group of {} batches", batches.len()),
        }
    }
}

/// Serde for byte values: a hex string in human-readable formats (JSON, where a `Vec<u8>`
/// would otherwise be an array of numbers, up to four times larger), plain bytes otherwise.
pub(crate) mod bytes {
    use serde::de::{Error as _, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(value))
        } else {
            s.serialize_bytes(value)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            hex::decode(s).map_err(D::Error::custom)
        } else {
            d.deserialize_byte_buf(BytesVisitor)
        }
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// An upper estimate of an entry's encoded size: its keys, its values and a margin per
/// operation and per entry.
pub(crate) fn estimated_bytes(entry: &Entry) -> usize {
    let ops_bytes = |ops: &[Op]| -> usize {
        ops.iter()
            .map(|op| {
                let value = match op {
                    Op::Put { value, .. } => value.len(),
                    Op::Delete { .. } => 0,
                };
                op.key().len() + value + 32
            })
            .sum()
    };
    let payload = match &entry.payload {
        EntryPayload::Normal(Command::Batch(ops)) => ops_bytes(ops),
        EntryPayload::Normal(Command::Group(batches)) => {
            batches.iter().map(|ops| ops_bytes(ops) + 16).sum()
        }
        EntryPayload::Blank | EntryPayload::Membership(_) => 512,
    };
    payload + 64
}
