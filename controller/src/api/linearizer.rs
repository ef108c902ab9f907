//! Linearizable reads shared by concurrent callers. openraft's `ensure_linearizable` confirms
//! the leadership with a heartbeat round to a quorum for every call; a thousand agents
//! registering at once would make a thousand rounds, each an AppendEntries to every
//! follower. Here callers that arrive while a round is in flight wait for the next round,
//! which starts after they arrived (so its read index covers everything committed before
//! their call) and answers all of them: at most one round in flight, and one round per
//! batch of callers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{BasicNode, Raft};
use tokio::sync::oneshot;

use super::control::ControlError;
use super::store::READ_TIMEOUT;
use crate::raft::{NodeId, TypeConfig};

type Answer = Result<(), RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>>;

/// Shares leadership confirmations between concurrent readers of one member.
#[derive(Clone)]
pub(crate) struct Linearizer {
    raft: Raft<TypeConfig>,
    state: Arc<Mutex<State>>,
    /// Rounds run so far.
    rounds: Arc<AtomicU64>,
}

#[derive(Default)]
struct State {
    /// Whether a round is in flight (its driver takes the waiters when it is done).
    running: bool,
    /// Callers waiting for the next round.
    waiters: Vec<oneshot::Sender<Answer>>,
}

impl Linearizer {
    pub(crate) fn new(raft: Raft<TypeConfig>) -> Self {
        Self {
            raft,
            state: Arc::default(),
            rounds: Arc::default(),
        }
    }

    /// Like [`super::store::linearize`]: makes sure this member is the leader and has applied
    /// everything committed before the call.
    pub(crate) async fn linearize(&self) -> Result<(), ControlError> {
        let (tx, rx) = oneshot::channel();
        let drive = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.waiters.push(tx);
            !std::mem::replace(&mut st.running, true)
        };
        if drive {
            tokio::spawn(self.clone().drive());
        }
        match tokio::time::timeout(READ_TIMEOUT, rx).await {
            Err(_) => Err(ControlError::ReadTimeout(READ_TIMEOUT)),
            Ok(Err(_)) => Err(ControlError::Raft("the read barrier was dropped".into())),
            Ok(Ok(answer)) => answer.map_err(ControlError::from),
        }
    }

    /// Runs rounds while callers wait; each round answers the callers that were waiting
    /// when it started.
    async fn drive(self) {
        loop {
            let batch = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.waiters.is_empty() {
                    st.running = false;
                    return;
                }
                std::mem::take(&mut st.waiters)
            };
            self.rounds.fetch_add(1, Ordering::Relaxed);
            let answer =
                match tokio::time::timeout(READ_TIMEOUT, self.raft.ensure_linearizable()).await {
                    Ok(r) => r.map(|_| ()),
                    // Every caller of this round has timed out by now; the next round serves
                    // the callers that came since.
                    Err(_) => continue,
                };
            for w in batch {
                let _ = w.send(answer.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::ClusterCa;
    use crate::test_support::{initialize, start_member, wait_for_leader};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reads_share_rounds_and_followers_are_refused() {
        let ca = ClusterCa::generate("test").unwrap();
        let mut members = Vec::new();
        for id in 1..=3 {
            members.push(start_member(&ca, id).await);
        }
        initialize(&members).await;
        let refs: Vec<_> = members.iter().collect();
        let leader = wait_for_leader(&refs, None).await;
        let of = |id| Linearizer::new(members[id as usize - 1].raft.clone());

        let l = of(leader);
        let reads: Vec<_> = (0..500)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move { l.linearize().await })
            })
            .collect();
        for r in reads {
            r.await.unwrap().expect("the leader confirms");
        }
        let rounds = l.rounds.load(Ordering::Relaxed);
        assert!((1..100).contains(&rounds), "500 reads took {rounds} rounds");

        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let e = of(follower).linearize().await.unwrap_err();
        assert!(
            matches!(e, ControlError::NotLeader { .. } | ControlError::NoLeader),
            "{e:?}"
        );
        for m in &mut members {
            m.stop().await;
        }
    }
}
