//! The few store steps the join service, the token seeder and token rotation share: make a
//! read linearizable, read one JSON record, commit one operation. (The `Control` service's
//! own `ops.rs` has the same steps for its records.)

use std::time::Duration;

use openraft::Raft;
use serde::de::DeserializeOwned;

use super::control::ControlError;
use crate::raft::{Command, CommandResponse, KvReader, Op, TypeConfig, blocking};

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

/// Reads and decodes the record `key` of the local store, with its version.
pub(crate) async fn read<T: DeserializeOwned>(
    reader: &KvReader,
    key: &str,
) -> Result<Option<(u64, T)>, ControlError> {
    let reader = reader.clone();
    let owned = key.to_owned();
    let found = blocking(move || reader.get(&owned)).await?;
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

/// Commits one operation through Raft (on the leader).
pub(crate) async fn write(
    raft: &Raft<TypeConfig>,
    op: Op,
) -> Result<CommandResponse, ControlError> {
    let command = Command::Batch(vec![op]);
    command.validate().map_err(ControlError::InvalidWrite)?;
    match tokio::time::timeout(WRITE_TIMEOUT, raft.client_write(command)).await {
        Err(_) => Err(ControlError::WriteTimeout(WRITE_TIMEOUT)),
        Ok(result) => Ok(result?.data),
    }
}
