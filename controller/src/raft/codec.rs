//! The binary form of log entries, in the log store and in AppendEntries requests.
//!
//! An entry is the byte [`BINARY`] then a protobuf [`v1::RaftEntry`] (`raft.proto`): keys
//! as strings and values as raw bytes, where the JSON form carried values hex-encoded inside
//! JSON (twice their size, and a JSON encode and decode of every command on every member).
//! JSON is still read: an entry (or a request payload) starting with `{` was written by an
//! earlier version. Membership entries keep openraft's JSON inside the message (rare, small).
//!
//! An AppendEntries request is [`BINARY`] then a [`v1::RaftAppendEntries`]: the vote and the
//! two log ids as JSON (a few dozen bytes) and the entries in binary.

use berth_proto::prost::Message;
use berth_proto::v1;
use openraft::raft::AppendEntriesRequest;
use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
use serde::{Deserialize, Serialize};

use super::types::{Command, Entry, Expect, NodeId, Op, TypeConfig};

/// The first byte of a binary record (JSON starts with `{`).
pub const BINARY: u8 = 0x01;

/// Why a record does not decode.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The JSON form is invalid.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The protobuf form is invalid.
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] berth_proto::prost::DecodeError),
    /// It decodes, but does not make a valid entry.
    #[error("{0}")]
    Invalid(&'static str),
    /// Empty, or starting with neither [`BINARY`] nor `{`.
    #[error("unknown format (first byte {0:?})")]
    Format(Option<u8>),
}

/// `entry` in its stored binary form.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let msg = entry_to_wire(entry);
    let mut out = Vec::with_capacity(1 + msg.encoded_len());
    out.push(BINARY);
    msg.encode(&mut out)
        .unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
    out
}

/// An entry from its stored form, binary or JSON.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    match bytes.first() {
        Some(&BINARY) => entry_from_wire(v1::RaftEntry::decode(&bytes[1..])?),
        Some(b'{') => Ok(serde_json::from_slice(bytes)?),
        other => Err(CodecError::Format(other.copied())),
    }
}

/// The log id of an entry in its stored form (a JSON entry's payload is not decoded).
pub fn decode_log_id(bytes: &[u8]) -> Result<LogId<NodeId>, CodecError> {
    #[derive(Deserialize)]
    struct EntryLogId {
        log_id: LogId<NodeId>,
    }
    match bytes.first() {
        Some(&BINARY) => log_id_from_wire(v1::RaftEntry::decode(&bytes[1..])?.log_id),
        Some(b'{') => Ok(serde_json::from_slice::<EntryLogId>(bytes)?.log_id),
        other => Err(CodecError::Format(other.copied())),
    }
}

/// What an AppendEntries request carries besides its entries.
#[derive(Serialize, Deserialize)]
struct AppendHeader {
    vote: Vote<NodeId>,
    prev_log_id: Option<LogId<NodeId>>,
    leader_commit: Option<LogId<NodeId>>,
}

/// An AppendEntries request as the payload of a `RaftRequest`.
pub fn encode_append(rpc: &AppendEntriesRequest<TypeConfig>) -> Result<Vec<u8>, CodecError> {
    let header = AppendHeader {
        vote: rpc.vote,
        prev_log_id: rpc.prev_log_id,
        leader_commit: rpc.leader_commit,
    };
    let msg = v1::RaftAppendEntries {
        header_json: serde_json::to_vec(&header)?,
        entries: rpc.entries.iter().map(entry_to_wire).collect(),
    };
    let mut out = Vec::with_capacity(1 + msg.encoded_len());
    out.push(BINARY);
    msg.encode(&mut out)
        .unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
    Ok(out)
}

/// An AppendEntries request from a `RaftRequest` payload, binary or JSON.
pub fn decode_append(bytes: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>, CodecError> {
    match bytes.first() {
        Some(&BINARY) => {
            let msg = v1::RaftAppendEntries::decode(&bytes[1..])?;
            let header: AppendHeader = serde_json::from_slice(&msg.header_json)?;
            Ok(AppendEntriesRequest {
                vote: header.vote,
                prev_log_id: header.prev_log_id,
                leader_commit: header.leader_commit,
                entries: msg
                    .entries
                    .into_iter()
                    .map(entry_from_wire)
                    .collect::<Result<_, _>>()?,
            })
        }
        Some(b'{') => Ok(serde_json::from_slice(bytes)?),
        other => Err(CodecError::Format(other.copied())),
    }
}

fn log_id_to_wire(id: &LogId<NodeId>) -> v1::RaftLogId {
    v1::RaftLogId {
        term: id.leader_id.term,
        node_id: id.leader_id.node_id,
        index: id.index,
    }
}

fn log_id_from_wire(id: Option<v1::RaftLogId>) -> Result<LogId<NodeId>, CodecError> {
    let id = id.ok_or(CodecError::Invalid("an entry without a log id"))?;
    Ok(LogId::new(
        CommittedLeaderId::new(id.term, id.node_id),
        id.index,
    ))
}

fn ops_to_wire(ops: &[Op]) -> v1::RaftBatch {
    v1::RaftBatch {
        ops: ops
            .iter()
            .map(|op| {
                let (key, value, expect) = match op {
                    Op::Put { key, value, expect } => (key, Some(value.clone()), expect),
                    Op::Delete { key, expect } => (key, None, expect),
                };
                let (expect, expect_version) = match *expect {
                    Expect::Any => (v1::RaftExpect::Any, 0),
                    Expect::Absent => (v1::RaftExpect::Absent, 0),
                    Expect::Version(v) => (v1::RaftExpect::Version, v),
                };
                v1::RaftOp {
                    key: key.clone(),
                    value,
                    expect: expect.into(),
                    expect_version,
                }
            })
            .collect(),
    }
}

fn ops_from_wire(batch: v1::RaftBatch) -> Result<Vec<Op>, CodecError> {
    batch
        .ops
        .into_iter()
        .map(|op| {
            let expect = match v1::RaftExpect::try_from(op.expect) {
                Ok(v1::RaftExpect::Any) => Expect::Any,
                Ok(v1::RaftExpect::Absent) => Expect::Absent,
                Ok(v1::RaftExpect::Version) => Expect::Version(op.expect_version),
                Err(_) => return Err(CodecError::Invalid("an operation with an unknown check")),
            };
            Ok(match op.value {
                Some(value) => Op::Put {
                    key: op.key,
                    value,
                    expect,
                },
                None => Op::Delete {
                    key: op.key,
                    expect,
                },
            })
        })
        .collect()
}

fn entry_to_wire(entry: &Entry) -> v1::RaftEntry {
    use v1::raft_entry::Payload;
    let payload = match &entry.payload {
        EntryPayload::Blank => Payload::Blank(v1::RaftBlank {}),
        EntryPayload::Membership(m) => Payload::MembershipJson(
            // A membership of node ids and addresses always serialises.
            serde_json::to_vec(m).unwrap_or_default(),
        ),
        EntryPayload::Normal(Command::Batch(ops)) => Payload::Batch(ops_to_wire(ops)),
        EntryPayload::Normal(Command::Group(batches)) => Payload::Group(v1::RaftGroup {
            batches: batches.iter().map(|ops| ops_to_wire(ops)).collect(),
        }),
    };
    v1::RaftEntry {
        log_id: Some(log_id_to_wire(&entry.log_id)),
        payload: Some(payload),
    }
}

fn entry_from_wire(e: v1::RaftEntry) -> Result<Entry, CodecError> {
    use v1::raft_entry::Payload;
    let payload = match e
        .payload
        .ok_or(CodecError::Invalid("an entry without a payload"))?
    {
        Payload::Blank(_) => EntryPayload::Blank,
        Payload::MembershipJson(json) => EntryPayload::Membership(serde_json::from_slice(&json)?),
        Payload::Batch(b) => EntryPayload::Normal(Command::Batch(ops_from_wire(b)?)),
        Payload::Group(g) => EntryPayload::Normal(Command::Group(
            g.batches
                .into_iter()
                .map(ops_from_wire)
                .collect::<Result<_, _>>()?,
        )),
    };
    Ok(Entry {
        log_id: log_id_from_wire(e.log_id)?,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{BasicNode, Membership};

    use super::*;

    fn entries() -> Vec<Entry> {
        let id = |i| LogId::new(CommittedLeaderId::new(3, 2), i);
        let membership = Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([(1, BasicNode::new("10.0.0.1:7443"))]),
        );
        vec![
            Entry {
                log_id: id(1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: id(2),
                payload: EntryPayload::Membership(membership),
            },
            Entry {
                log_id: id(3),
                payload: EntryPayload::Normal(Command::Batch(vec![
                    Op::Put {
                        key: "tasks/a".into(),
                        value: b"{\"x\":1}".to_vec(),
                        expect: Expect::Absent,
                    },
                    Op::Put {
                        key: "empty".into(),
                        value: Vec::new(),
                        expect: Expect::Any,
                    },
                    Op::Delete {
                        key: "tasks/b".into(),
                        expect: Expect::Version(7),
                    },
                ])),
            },
            Entry {
                log_id: id(4),
                payload: EntryPayload::Normal(Command::Group(vec![
                    vec![Op::Put {
                        key: "k".into(),
                        value: vec![0, 255, 1],
                        expect: Expect::Version(0),
                    }],
                    vec![],
                ])),
            },
        ]
    }

    #[test]
    fn entries_round_trip_and_json_ones_still_read() {
        for e in entries() {
            let bin = encode_entry(&e);
            assert_eq!(bin[0], BINARY);
            assert_eq!(decode_entry(&bin).unwrap(), e);
            assert_eq!(decode_log_id(&bin).unwrap(), e.log_id);
            let json = serde_json::to_vec(&e).unwrap();
            assert_eq!(decode_entry(&json).unwrap(), e);
            assert_eq!(decode_log_id(&json).unwrap(), e.log_id);
        }
        assert!(matches!(decode_entry(b""), Err(CodecError::Format(None))));
        assert!(decode_entry(&[BINARY, 0xff]).is_err());
    }

    #[test]
    fn append_requests_round_trip_and_values_are_not_hex() {
        let rpc = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 2),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(3, 2), 0)),
            leader_commit: None,
            entries: entries(),
        };
        let bin = encode_append(&rpc).unwrap();
        let back = decode_append(&bin).unwrap();
        assert_eq!(
            (
                back.vote,
                back.prev_log_id,
                back.leader_commit,
                &back.entries
            ),
            (rpc.vote, rpc.prev_log_id, rpc.leader_commit, &rpc.entries)
        );
        let json = serde_json::to_vec(&rpc).unwrap();
        assert_eq!(decode_append(&json).unwrap().entries, rpc.entries);
        let big = AppendEntriesRequest::<TypeConfig> {
            entries: vec![Entry {
                log_id: LogId::new(CommittedLeaderId::new(3, 2), 5),
                payload: EntryPayload::Normal(Command::Batch(vec![Op::Put {
                    key: "k".into(),
                    value: vec![7; 10_000],
                    expect: Expect::Any,
                }])),
            }],
            ..rpc
        };
        let size = encode_append(&big).unwrap().len();
        assert!(size < 10_200, "{size} bytes for a 10,000-byte value");
    }
}
