//! [`Proposer`]: groups concurrent writes into one Raft entry.
//!
//! openraft's core handles one client write at a time: one entry, one log append, one round of
//! bookkeeping each. Under many concurrent writers that core becomes the bottleneck long before
//! the disk or the network does. The proposer sits in front of it: while a proposal is in
//! flight ([`MAX_IN_FLIGHT`]), new writes queue; the next proposal takes everything queued
//! (up to [`MAX_GROUP_BATCHES`] batches and [`MAX_GROUP_BYTES`]) as one [`Command::Group`]
//! entry, and each caller gets its own batch's answer. An idle cluster proposes a lone write at
//! once, as a plain [`Command::Batch`]: grouping adds no delay, it only absorbs bursts (the
//! same idea as etcd's proposal batching and group commit).
//!
//! Two batches touching the same key never share an entry: every write of an entry gets the
//! entry's index as its version, and two writes of one key at one version would let a reader
//! of the first pass a later version check after the second.

use std::collections::HashSet;
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::types::{
    Command, CommandResponse, MAX_BATCH_BYTES, MAX_GROUP_BATCHES, NodeId, Op, TypeConfig,
    validate_batch,
};

/// How many proposals may be in flight at once; writes arriving meanwhile are grouped. One
/// makes the largest groups, and measured best with 64 writers on three members sharing two
/// cores (`berth-controller-bench`: about 5,000 commits/s with one in flight, 4,500 with two,
/// 4,400 with four); a lone write still goes at once.
pub const MAX_IN_FLIGHT: usize = 1;
/// The most key and value bytes grouped into one entry (a batch larger than this goes alone;
/// 96 KiB placed 5,600 tasks/s at 1,000 nodes, 384 KiB 11,000–13,000, `berth-scale-bench`):
/// an entry fits one append request of [`super::network::APPEND_TARGET_BYTES`] even with its
/// values hex-encoded.
pub const MAX_GROUP_BYTES: usize = 384 * 1024;
/// How many writes may wait for a proposal before callers are held back.
const QUEUE: usize = 16 * 1024;

/// Why a write was not applied: openraft's answer (not the leader, no quorum, stopped, …).
pub type WriteError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;

/// One caller's write waiting to be proposed.
struct Proposal {
    ops: Vec<Op>,
    bytes: usize,
    reply: oneshot::Sender<Result<CommandResponse, WriteError>>,
}

/// Why [`Proposer::write`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// The batch breaks a limit; nothing was proposed.
    #[error("{0}")]
    Invalid(String),
    /// Raft refused or failed the write.
    #[error(transparent)]
    Raft(#[from] WriteError),
    /// The Raft node is shutting down.
    #[error("the Raft node is shutting down")]
    Stopped,
}

/// Hands writes to a Raft node, grouped (see the module docs). Clones share the queue; the
/// grouping task ends when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Proposer {
    tx: mpsc::Sender<Proposal>,
}

impl Proposer {
    /// Starts the grouping task for `raft` on the current tokio runtime.
    pub fn start(raft: Raft<TypeConfig>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx));
        Self { tx }
    }

    /// Proposes `ops` as one batch (all applied, or none if a check fails) and answers the
    /// state machine's response to it once it is applied on this member.
    pub async fn write(&self, ops: Vec<Op>) -> Result<CommandResponse, ProposeError> {
        let bytes = validate_batch(&ops).map_err(ProposeError::Invalid)?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Proposal { ops, bytes, reply })
            .await
            .map_err(|_| ProposeError::Stopped)?;
        Ok(answer.await.map_err(|_| ProposeError::Stopped)??)
    }
}

impl std::fmt::Debug for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposal")
            .field("ops", &self.ops.len())
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// The grouping loop: waits for a write and a free slot, takes what else is queued, proposes.
async fn run(raft: Raft<TypeConfig>, mut rx: mpsc::Receiver<Proposal>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carried: Option<Proposal> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut group = Group::new(first);
        while group.len() < MAX_GROUP_BATCHES {
            let Ok(next) = rx.try_recv() else { break };
            if let Err(next) = group.add(next) {
                carried = Some(next);
                break;
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            group.propose(&raft).await;
            drop(slot);
        });
    }
}

/// Writes proposed together, with the keys they touch and their size.
struct Group {
    members: Vec<Proposal>,
    keys: HashSet<String>,
    bytes: usize,
}

impl Group {
    fn new(first: Proposal) -> Self {
        let keys = first.ops.iter().map(|op| op.key().to_owned()).collect();
        Self {
            bytes: first.bytes,
            members: vec![first],
            keys,
        }
    }

    fn len(&self) -> usize {
        self.members.len()
    }

    /// Adds `p` unless it shares a key with the group or would make it too large.
    fn add(&mut self, p: Proposal) -> Result<(), Proposal> {
        let too_big = self.bytes + p.bytes > MAX_GROUP_BYTES.min(MAX_BATCH_BYTES);
        if too_big || p.ops.iter().any(|op| self.keys.contains(op.key())) {
            return Err(p);
        }
        self.keys.extend(p.ops.iter().map(|op| op.key().to_owned()));
        self.bytes += p.bytes;
        self.members.push(p);
        Ok(())
    }

    /// Proposes the group as one entry and answers each member.
    async fn propose(self, raft: &Raft<TypeConfig>) {
        let mut members = self.members;
        if members.len() == 1 {
            let p = members.remove(0);
            let result = raft
                .client_write(Command::Batch(p.ops))
                .await
                .map(|r| r.data);
            // The caller may have given up (its own timeout); nothing to tell then.
            let _ = p.reply.send(result);
            return;
        }
        let (batches, replies): (Vec<_>, Vec<_>) =
            members.into_iter().map(|p| (p.ops, p.reply)).unzip();
        let count = batches.len();
        match raft.client_write(Command::Group(batches)).await {
            Ok(r) => match r.data {
                CommandResponse::Group(answers) if answers.len() == count => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                // A group refused as a whole (a limit), or an answer of the wrong shape:
                // every member gets it.
                other => {
                    for reply in replies {
                        let _ = reply.send(Ok(other.clone()));
                    }
                }
            },
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
