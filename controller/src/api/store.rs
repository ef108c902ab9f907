//! The store steps the API's handlers share (the `Control` service's `ops.rs`, the join
//! service, the token seeder and token rotation): make a read linearizable, read JSON records,
//! commit one operation and tell what it did.

use std::time::Duration;

use openraft::Raft;
use serde::de::DeserializeOwned;

use super::control::ControlError;
use crate::raft::{Command, CommandResponse, KvReader, Op, Proposer, TypeConfig, blocking};

/// How long the leader may take to confirm its leadership before a read.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write may take to commit.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes sure this member is the leader and has applied everything committed before the
/// call; [`ControlError::NotLeader`] otherwise.
pub(crate) async fn linearize(raft: &Raft<TypeConfig>) -> Result<(), ControlError> {
    match tokio::time::timeout(READ_TIMEOUT, raft.ensure_linearizable()).await {
        Err(_) => Err(ControlError::ReadTimeout(READ_TIMEOUT)),
        Ok(result) => result.map(|_| ()).map_err(ControlError::from),
    }
}

/// Reads and decodes the record `key` of the local store, with its version. One key is read
/// in place rather than on the blocking pool: it takes microseconds (redb serves it from its
/// page cache), less than the hand-over to another thread would.
pub(crate) async fn read<T: DeserializeOwned>(
    reader: &KvReader,
    key: &str,
) -> Result<Option<(u64, T)>, ControlError> {
    let found = reader.get(key)?;
    found
        .map(|(version, bytes)| {
            serde_json::from_slice(&bytes)
                .map(|value| (version, value))
                .map_err(|source| ControlError::Corrupt {
                    key: key.to_owned(),
                    source,
                })
        })
        .transpose()
}

/// Encodes a record for the store.
pub(crate) fn encode<T: serde::Serialize>(key: &str, value: &T) -> Result<Vec<u8>, ControlError> {
    serde_json::to_vec(value).map_err(|source| ControlError::Encode {
        key: key.to_owned(),
        source,
    })
}

/// Reads and decodes every record under `prefix` of the local store, in key order.
pub(crate) async fn list<T: DeserializeOwned>(
    reader: &KvReader,
    prefix: &'static str,
) -> Result<Vec<T>, ControlError> {
    let reader = reader.clone();
    let found = blocking(move || reader.list(prefix)).await?;
    found
        .iter()
        .map(|(key, _, bytes)| {
            serde_json::from_slice(bytes).map_err(|source| ControlError::Corrupt {
                key: key.clone(),
                source,
            })
        })
        .collect()
}

/// What a committed write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Written {
    /// The operation was applied.
    Applied,
    /// Its check failed (the key changed since it was read): nothing was written.
    Conflict {
        /// The key's version when the write was applied, `None` if absent.
        actual: Option<u64>,
    },
}

impl Written {
    fn from_response(response: CommandResponse) -> Result<Self, ControlError> {
        match response {
            CommandResponse::Ok { .. } => Ok(Written::Applied),
            CommandResponse::Conflict { actual, .. } => Ok(Written::Conflict { actual }),
            CommandResponse::Invalid { reason } => Err(ControlError::InvalidWrite(reason)),
            CommandResponse::Group(_) => Err(ControlError::UnexpectedGroup),
        }
    }
}

/// Commits one operation through Raft, on its own (on the leader): for rare writes.
pub(crate) async fn write(raft: &Raft<TypeConfig>, op: Op) -> Result<Written, ControlError> {
    let command = Command::Batch(vec![op]);
    command.validate().map_err(ControlError::InvalidWrite)?;
    match tokio::time::timeout(WRITE_TIMEOUT, raft.client_write(command)).await {
        Err(_) => Err(ControlError::WriteTimeout(WRITE_TIMEOUT)),
        Ok(result) => Written::from_response(result?.data),
    }
}

/// Commits one operation through `proposer`, grouped with concurrent writes (on the leader).
pub(crate) async fn propose(proposer: &Proposer, op: Op) -> Result<Written, ControlError> {
    match tokio::time::timeout(WRITE_TIMEOUT, proposer.write(vec![op])).await {
        Err(_) => Err(ControlError::WriteTimeout(WRITE_TIMEOUT)),
        Ok(result) => Written::from_response(result?),
    }
}

/// Commits several operations as one batch through `proposer` (all applied, or none when one
/// check fails), grouped with concurrent writes (on the leader).
pub(crate) async fn propose_batch(
    proposer: &Proposer,
    ops: Vec<Op>,
) -> Result<Written, ControlError> {
    match tokio::time::timeout(WRITE_TIMEOUT, proposer.write(ops)).await {
        Err(_) => Err(ControlError::WriteTimeout(WRITE_TIMEOUT)),
        Ok(result) => Written::from_response(result?),
    }
}
