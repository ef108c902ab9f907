//! Tests of the Raft store: openraft's storage suite, then berth's own checks of the
//! key-value semantics, snapshots and durability.

use std::collections::BTreeSet;
use std::path::Path;

use openraft::entry::RaftEntry as _;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite, log_id};
use openraft::{Entry as RaftEntry, EntryPayload, Membership, RaftSnapshotBuilder, Vote};
use tempfile::TempDir;

use super::types::{Entry, MAX_BATCH_OPS, MAX_KEY_BYTES, MAX_VALUE_BYTES, RaftStorageError};
use super::*;

struct Builder;

impl StoreBuilder<TypeConfig, RedbLogStore, RedbStateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, RedbLogStore, RedbStateMachine), RaftStorageError> {
        let dir = TempDir::new().expect("temp dir");
        let (log, sm) = open_store(dir.path()).expect("open store");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}

fn entry(index: u64, ops: Vec<Op>) -> Entry {
    RaftEntry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(Command::Batch(ops)),
    }
}

fn put(key: &str, value: &[u8], expect: Expect) -> Op {
    Op::Put {
        key: key.to_owned(),
        value: value.to_vec(),
        expect,
    }
}

fn delete(key: &str, expect: Expect) -> Op {
    Op::Delete {
        key: key.to_owned(),
        expect,
    }
}

fn ok(versions: &[(&str, u64)]) -> CommandResponse {
    CommandResponse::Ok {
        versions: versions
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
    }
}

fn open(dir: &Path) -> (RedbLogStore, RedbStateMachine) {
    open_store(dir).expect("open store")
}

async fn apply_one(sm: &mut RedbStateMachine, e: Entry) -> CommandResponse {
    let mut out = sm.apply([e]).await.expect("apply");
    assert_eq!(out.len(), 1);
    out.remove(0)
}

#[tokio::test]
async fn a_failed_check_in_the_middle_of_a_batch_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let (_log, mut sm) = open(dir.path());
    let kv = sm.reader();
    assert_eq!(
        apply_one(&mut sm, entry(1, vec![put("b", b"old", Expect::Any)])).await,
        ok(&[("b", 1)])
    );

    let response = apply_one(
        &mut sm,
        entry(
            2,
            vec![
                put("a", b"1", Expect::Absent),
                put("b", b"new", Expect::Version(7)),
                put("c", b"3", Expect::Any),
            ],
        ),
    )
    .await;
    assert_eq!(
        response,
        CommandResponse::Conflict {
            key: "b".into(),
            expected: Expect::Version(7),
            actual: Some(1),
        }
    );
    assert_eq!(kv.get("a").unwrap(), None);
    assert_eq!(kv.get("b").unwrap(), Some((1, b"old".to_vec())));
    assert_eq!(kv.get("c").unwrap(), None);
    // The entry is applied all the same: a conflict is an answer, not a failure.
    assert_eq!(kv.last_applied().unwrap(), Some(log_id(1, 1, 2)));
}

#[tokio::test]
async fn versions_are_log_indexes_and_checks_use_them() {
    let dir = TempDir::new().unwrap();
    let (_log, mut sm) = open(dir.path());
    let kv = sm.reader();

    let r = apply_one(&mut sm, entry(1, vec![put("k", b"v1", Expect::Absent)])).await;
    assert_eq!(r, ok(&[("k", 1)]));
    let r = apply_one(&mut sm, entry(2, vec![put("k", b"v2", Expect::Absent)])).await;
    assert_eq!(
        r,
        CommandResponse::Conflict {
            key: "k".into(),
            expected: Expect::Absent,
            actual: Some(1),
        }
    );
    let r = apply_one(&mut sm, entry(3, vec![put("k", b"v3", Expect::Version(1))])).await;
    assert_eq!(r, ok(&[("k", 3)]));
    assert_eq!(kv.get("k").unwrap(), Some((3, b"v3".to_vec())));

    let r = apply_one(&mut sm, entry(4, vec![delete("k", Expect::Version(1))])).await;
    assert!(
        matches!(
            r,
            CommandResponse::Conflict {
                actual: Some(3),
                ..
            }
        ),
        "{r:?}"
    );
    let r = apply_one(&mut sm, entry(5, vec![delete("k", Expect::Version(3))])).await;
    assert_eq!(r, ok(&[("k", 5)]));
    assert_eq!(kv.get("k").unwrap(), None);
    let r = apply_one(&mut sm, entry(6, vec![delete("k", Expect::Version(3))])).await;
    assert!(
        matches!(r, CommandResponse::Conflict { actual: None, .. }),
        "{r:?}"
    );

    // Later operations of a batch see the earlier ones: a put gives the entry's index.
    let r = apply_one(
        &mut sm,
        entry(
            7,
            vec![
                put("x", b"1", Expect::Absent),
                put("x", b"2", Expect::Version(7)),
                delete("y", Expect::Absent),
                put("y", b"3", Expect::Absent),
            ],
        ),
    )
    .await;
    assert_eq!(r, ok(&[("x", 7), ("x", 7), ("y", 7), ("y", 7)]));
    assert_eq!(kv.get("x").unwrap(), Some((7, b"2".to_vec())));
}

#[tokio::test]
async fn limits_are_enforced_and_leave_the_state_unchanged() {
    let dir = TempDir::new().unwrap();
    let (_log, mut sm) = open(dir.path());
    let kv = sm.reader();
    let long_key = "k".repeat(MAX_KEY_BYTES + 1);
    let big_value = vec![0u8; MAX_VALUE_BYTES + 1];
    let too_many: Vec<Op> = (0..=MAX_BATCH_OPS)
        .map(|i| put(&format!("n{i}"), b"", Expect::Any))
        .collect();
    let bad = [
        vec![
            put("ok", b"", Expect::Any),
            put(&long_key, b"", Expect::Any),
        ],
        vec![
            put("ok", b"", Expect::Any),
            put("big", &big_value, Expect::Any),
        ],
        vec![put("ok", b"", Expect::Any), put("", b"", Expect::Any)],
        too_many,
    ];
    for (i, ops) in bad.into_iter().enumerate() {
        let r = apply_one(&mut sm, entry(i as u64 + 1, ops)).await;
        assert!(matches!(r, CommandResponse::Invalid { .. }), "{r:?}");
    }
    assert!(kv.list("").unwrap().is_empty());

    // Exactly at the limits is fine.
    let at_limit: Vec<Op> = (0..MAX_BATCH_OPS)
        .map(|i| put(&format!("n{i}"), b"", Expect::Any))
        .collect();
    let max_key = "k".repeat(MAX_KEY_BYTES);
    let r = apply_one(&mut sm, entry(10, at_limit)).await;
    assert!(matches!(r, CommandResponse::Ok { .. }), "{r:?}");
    let max_value = vec![7u8; MAX_VALUE_BYTES];
    let r = apply_one(
        &mut sm,
        entry(11, vec![put(&max_key, &max_value, Expect::Any)]),
    )
    .await;
    assert_eq!(r, ok(&[(max_key.as_str(), 11)]));
    assert_eq!(kv.get(&max_key).unwrap(), Some((11, max_value)));
}

#[tokio::test]
async fn list_returns_the_keys_under_a_prefix_in_order() {
    let dir = TempDir::new().unwrap();
    let (_log, mut sm) = open(dir.path());
    let ops = vec![
        put("services/web", b"w", Expect::Any),
        put("services/api", b"a", Expect::Any),
        put("servicesX", b"x", Expect::Any),
        put("tasks/1", b"t", Expect::Any),
    ];
    apply_one(&mut sm, entry(1, ops)).await;
    let kv = sm.reader();
    assert_eq!(
        kv.list("services/").unwrap(),
        vec![
            ("services/api".to_owned(), 1, b"a".to_vec()),
            ("services/web".to_owned(), 1, b"w".to_vec()),
        ]
    );
    assert_eq!(kv.list("").unwrap().len(), 4);
    assert!(kv.list("nodes/").unwrap().is_empty());
}

fn members(ids: &[u64]) -> Membership<NodeId, openraft::BasicNode> {
    Membership::new(vec![ids.iter().copied().collect::<BTreeSet<_>>()], None)
}

#[tokio::test]
async fn a_snapshot_built_on_one_store_installs_into_another() {
    let (dir1, dir2) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (_l1, mut sm1) = open(dir1.path());
    let (_l2, mut sm2) = open(dir2.path());
    sm1.apply([
        RaftEntry::new_membership(log_id(1, 1, 1), members(&[1, 2, 3])),
        entry(
            2,
            vec![put(
                "services/web",
                b"{\"image\":\"nginx\"}",
                Expect::Absent,
            )],
        ),
        entry(
            3,
            vec![
                put("nodes/a", &[0, 255, 10], Expect::Absent),
                put("x", b"", Expect::Any),
            ],
        ),
        entry(4, vec![delete("x", Expect::Any)]),
    ])
    .await
    .unwrap();
    // The follower has stale data that the snapshot must replace.
    apply_one(&mut sm2, entry(1, vec![put("stale", b"s", Expect::Any)])).await;

    let built = sm1
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(built.meta.last_log_id, Some(log_id(1, 1, 4)));
    let mut receiving = sm2.begin_receiving_snapshot().await.unwrap();
    *receiving = *built.snapshot;
    sm2.install_snapshot(&built.meta, receiving).await.unwrap();

    assert_eq!(
        sm2.reader().list("").unwrap(),
        sm1.reader().list("").unwrap()
    );
    assert_eq!(
        sm2.reader().get("nodes/a").unwrap(),
        Some((3, vec![0, 255, 10]))
    );
    assert_eq!(sm2.reader().get("stale").unwrap(), None);
    assert_eq!(
        sm2.applied_state().await.unwrap(),
        sm1.applied_state().await.unwrap()
    );
    let current = sm2
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("current snapshot");
    assert_eq!(current.meta, built.meta);
}

#[tokio::test]
async fn everything_survives_closing_and_reopening() {
    let dir = TempDir::new().unwrap();
    let vote = Vote::new_committed(3, 2);
    let snapshot_meta = {
        let (mut log, mut sm) = open(dir.path());
        log.save_vote(&vote).await.unwrap();
        let entries: Vec<Entry> = (1..=5)
            .map(|i| {
                entry(
                    i,
                    vec![put(
                        &format!("k{i}"),
                        format!("v{i}").as_bytes(),
                        Expect::Absent,
                    )],
                )
            })
            .collect();
        log.blocking_append(entries.clone()).await.unwrap();
        log.save_committed(Some(log_id(1, 1, 4))).await.unwrap();
        sm.apply(entries[..3].to_vec()).await.unwrap();
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        log.purge(log_id(1, 1, 2)).await.unwrap();
        snapshot.meta
    };

    let (mut log, mut sm) = open(dir.path());
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 4)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
    let indexes: Vec<u64> = log
        .try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(indexes, vec![3, 4, 5]);

    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 1, 3)));
    assert_eq!(sm.reader().get("k3").unwrap(), Some((3, b"v3".to_vec())));
    assert_eq!(sm.reader().get("k4").unwrap(), None);
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("snapshot kept");
    assert_eq!(current.meta, snapshot_meta);
}

#[test]
fn the_default_raft_config_is_valid_and_fails_over_fast() {
    let config = raft_config(&RaftSettings::default()).expect("valid");
    // A follower elects after the lease (the maximum) and its own timeout (at most the
    // maximum) without heartbeats: under a second, and four heartbeats at least.
    assert!(2 * config.election_timeout_max < 1000);
    assert!(
        4 * config.heartbeat_interval <= config.election_timeout_max + config.election_timeout_min
    );
    assert_eq!(
        config.snapshot_policy,
        openraft::SnapshotPolicy::LogsSinceLast(10_000)
    );
    let bad = RaftSettings {
        election_timeout_min_ms: 600,
        election_timeout_max_ms: 300,
        ..RaftSettings::default()
    };
    assert!(raft_config(&bad).is_err());
}

#[test]
fn values_are_hex_in_json() {
    let json = serde_json::to_string(&put("k", &[0xab, 0x01], Expect::Version(2))).unwrap();
    assert_eq!(
        json,
        r#"{"Put":{"key":"k","value":"ab01","expect":{"Version":2}}}"#
    );
    let back: Op = serde_json::from_str(&json).unwrap();
    assert_eq!(back, put("k", &[0xab, 0x01], Expect::Version(2)));
}

#[tokio::test]
async fn empty_and_inverted_log_ranges_read_nothing() {
    let dir = TempDir::new().unwrap();
    let (mut log, _sm) = open(dir.path());
    let entries: Vec<Entry> = (1..=3).map(|i| entry(i, vec![])).collect();
    log.blocking_append(entries).await.unwrap();
    assert!(log.try_get_log_entries(2..2).await.unwrap().is_empty());
    #[allow(clippy::reversed_empty_ranges)]
    let inverted = 3..1;
    assert!(log.try_get_log_entries(inverted).await.unwrap().is_empty());
    assert_eq!(log.try_get_log_entries(2..=3).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_group_applies_each_batch_on_its_own_terms() {
    let dir = TempDir::new().unwrap();
    let (_log, mut sm) = open(dir.path());
    let kv = sm.reader();
    let group = Command::Group(vec![
        vec![put("a", b"1", Expect::Absent)],
        vec![
            put("x", b"x", Expect::Any),
            put("b", b"2", Expect::Version(7)),
        ],
        vec![put("c", b"3", Expect::Any), delete("a", Expect::Version(4))],
    ]);
    let response = apply_one(
        &mut sm,
        RaftEntry {
            log_id: log_id(1, 1, 4),
            payload: EntryPayload::Normal(group),
        },
    )
    .await;
    assert_eq!(
        response,
        CommandResponse::Group(vec![
            ok(&[("a", 4)]),
            CommandResponse::Conflict {
                key: "b".into(),
                expected: Expect::Version(7),
                actual: None,
            },
            // Sees the first batch's write: `a` is at the entry's index.
            ok(&[("c", 4), ("a", 4)]),
        ])
    );
    assert_eq!(kv.get("a").unwrap(), None);
    assert_eq!(
        kv.get("x").unwrap(),
        None,
        "the rejected batch wrote nothing"
    );
    assert_eq!(kv.get("c").unwrap(), Some((4, b"3".to_vec())));

    let too_many = Command::Group(vec![Vec::new(); crate::raft::types::MAX_GROUP_BATCHES + 1]);
    let response = apply_one(
        &mut sm,
        RaftEntry {
            log_id: log_id(1, 1, 5),
            payload: EntryPayload::Normal(too_many),
        },
    )
    .await;
    assert!(
        matches!(&response, CommandResponse::Invalid { reason } if reason.contains("1001 batches")),
        "{response:?}"
    );
    let bad_batch = Command::Group(vec![vec![put("", b"", Expect::Any)]]);
    assert_eq!(bad_batch.validate(), Err("batch 0: empty key".to_owned()));
}
