//! Snapshots and log compaction on real members: with a small snapshot interval the leader
//! snapshots and purges its log, and a member added afterwards, whose entries are gone from
//! every log, is brought up to date by a snapshot.

use std::time::Duration;

use openraft::BasicNode;

use super::{Command, Expect, Op, RaftSettings};
use crate::pki::ClusterCa;
use crate::test_support::{WAIT, initialize, settings, start_member_with_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_log_is_compacted_and_a_new_member_catches_up_from_a_snapshot() {
    let ca = ClusterCa::generate("snapshots").unwrap();
    let small = RaftSettings {
        snapshot_logs_since_last: 50,
        max_in_snapshot_log_to_keep: 10,
        ..settings()
    };
    let mut members = Vec::new();
    for id in 1..=3 {
        members.push(start_member_with_settings(&ca, id, small.clone()).await);
    }
    initialize(&members).await;
    members[0]
        .raft
        .wait(Some(WAIT))
        .current_leader(1, "member 1 leads")
        .await
        .unwrap();
    let leader = &members[0];
    let mut last = 0;
    for i in 0..200 {
        let put = Command::Batch(vec![Op::Put {
            key: format!("k{i:03}"),
            value: vec![1; 100],
            expect: Expect::Absent,
        }]);
        last = leader.raft.client_write(put).await.unwrap().log_id.index;
    }

    // The leader's snapshot covers most of the log, and the log before it (less the kept
    // tail) is purged.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (snapshot, purged) = loop {
        let m = leader.raft.metrics().borrow().clone();
        if let (Some(s), Some(p)) = (m.snapshot, m.purged)
            && s.index + 50 >= last
        {
            break (s.index, p.index);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshot and purge: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        purged > 100,
        "purged up to {purged} only (snapshot at {snapshot})"
    );
    assert!(
        purged + 10 <= snapshot,
        "{purged} vs {snapshot}: the kept tail is gone"
    );

    // A fourth member added now can only be brought up to date with a snapshot.
    let fourth = start_member_with_settings(&ca, 4, small).await;
    leader
        .raft
        .add_learner(4, BasicNode::new(fourth.addr.to_string()), true)
        .await
        .unwrap();
    fourth
        .raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(last), "the learner caught up")
        .await
        .unwrap();
    let installed = fourth.raft.metrics().borrow().snapshot;
    assert!(
        installed.is_some_and(|s| s.index > purged),
        "the learner has no snapshot past the purge: {installed:?}"
    );
    let keys = fourth.reader.list("k").unwrap();
    assert_eq!(keys.len(), 200, "every key reached the new member");

    let mut all = members;
    all.push(fourth);
    for m in &mut all {
        m.stop().await;
    }
}
