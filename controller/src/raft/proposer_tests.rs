//! The proposer on a real (single-member) Raft node: concurrent writes are grouped into fewer
//! entries, every caller gets its own batch's answer, and two writes of one key never share an
//! entry.

use super::{CommandResponse, Expect, Op, ProposeError, Proposer};
use crate::pki::ClusterCa;
use crate::test_support::{initialize, start_member};

fn put(key: &str, expect: Expect) -> Vec<Op> {
    vec![Op::Put {
        key: key.to_owned(),
        value: b"v".to_vec(),
        expect,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_entries_and_each_gets_its_answer() {
    let ca = ClusterCa::generate("proposer").unwrap();
    let member = start_member(&ca, 1).await;
    initialize(std::slice::from_ref(&member)).await;
    let proposer = Proposer::start(member.raft.clone());

    // 300 writes of distinct keys, plus 20 of one shared key, all at once.
    let mut calls = Vec::new();
    for i in 0..300 {
        let p = proposer.clone();
        calls.push(tokio::spawn(async move {
            (
                format!("k{i}"),
                p.write(put(&format!("k{i}"), Expect::Absent)).await,
            )
        }));
    }
    for _ in 0..20 {
        let p = proposer.clone();
        calls.push(tokio::spawn(async move {
            (
                "shared".to_owned(),
                p.write(put("shared", Expect::Any)).await,
            )
        }));
    }
    let mut shared_versions = Vec::new();
    for call in calls {
        let (key, result) = call.await.unwrap();
        let Ok(CommandResponse::Ok { versions }) = result else {
            panic!("write of {key} failed: {result:?}");
        };
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].0, key);
        if key == "shared" {
            shared_versions.push(versions[0].1);
        } else {
            assert_eq!(
                member.reader.get(&key).unwrap().map(|(v, _)| v),
                Some(versions[0].1),
                "{key} is stored at the version its caller was told"
            );
        }
    }
    shared_versions.sort_unstable();
    shared_versions.dedup();
    assert_eq!(
        shared_versions.len(),
        20,
        "writes of one key never share an entry"
    );

    // Fewer entries than writes: some were grouped. (Before them: the membership entry and
    // the leader's blank entry.)
    let last = member.raft.metrics().borrow().last_log_index.unwrap_or(0);
    assert!(
        last < 2 + 320,
        "320 concurrent writes took {} entries",
        last.saturating_sub(2)
    );

    // A bad batch is refused before it reaches Raft.
    let empty_key = proposer.write(put("", Expect::Any)).await;
    assert!(
        matches!(&empty_key, Err(ProposeError::Invalid(r)) if r == "empty key"),
        "{empty_key:?}"
    );
}
