//! Seeding the stored join tokens and the cluster's own record into the replicated state.
//!
//! `init` writes the tokens' stored forms to the first member's `join-tokens.json` (and
//! `init-member` copies the file to the members it prepares). A member started with the
//! file runs this seeder: whenever it is the leader, it writes each token that the state
//! does not hold yet with [`Expect::Absent`], so a seed never replaces a rotated token, two
//! seeders cannot both win, and a seed interrupted by a crash or a lost election is simply
//! tried again by the next leader that holds the file. The cluster's own record
//! (`cluster`: name, CA certificate, node range) is seeded the same way. The seeder stops once
//! the state holds every record (read locally, as applied from any leader).

use std::time::Duration;

use openraft::Raft;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::api::control::ControlError;
use crate::api::store::{self, Written};
use crate::init::StoredTokens;
use crate::pki::Role;
use crate::raft::{Expect, KvReader, NodeId, Op, TypeConfig};
use crate::state::{ClusterInfo, keys};

/// How often the seeder looks again.
pub const SEED_RETRY: Duration = Duration::from_millis(200);

/// A record to seed: its key and its encoded value.
pub type SeedRecord = (String, Vec<u8>);

/// The records a member seeds: the stored join tokens and the cluster's own record (its
/// name, CA certificate and node range; `created_at` is when it was first seeded).
pub fn seed_records(
    tokens: &StoredTokens,
    cluster: &ClusterInfo,
) -> Result<Vec<SeedRecord>, ControlError> {
    let mut records = Vec::new();
    for (role, token) in [
        (Role::Agent, &tokens.agent),
        (Role::Controller, &tokens.controller),
    ] {
        let key = keys::token(role);
        records.push((key.clone(), store::encode(&key, token)?));
    }
    records.push((
        keys::CLUSTER.to_owned(),
        store::encode(keys::CLUSTER, cluster)?,
    ));
    Ok(records)
}

/// Starts the seeder of member `id`; it ends once every record is in the state.
pub fn spawn_seeder(
    raft: Raft<TypeConfig>,
    reader: KvReader,
    id: NodeId,
    records: Vec<SeedRecord>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let leader = raft.metrics().borrow().current_leader == Some(id);
            let done = if leader {
                seed_once(&raft, &reader, &records).await
            } else {
                all_present(&reader, &records)
            };
            match done {
                Ok(true) => {
                    debug!("the seeded records are in the replicated state");
                    return;
                }
                Ok(false) => {}
                Err(e) => debug!(error = %e, "cannot seed the records yet"),
            }
            tokio::time::sleep(SEED_RETRY).await;
        }
    })
}

fn all_present(reader: &KvReader, records: &[SeedRecord]) -> Result<bool, ControlError> {
    for (key, _) in records {
        if reader.get(key)?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// On the leader: writes each missing record. Done when nothing is missing any more.
async fn seed_once(
    raft: &Raft<TypeConfig>,
    reader: &KvReader,
    records: &[SeedRecord],
) -> Result<bool, ControlError> {
    store::linearize(raft).await?;
    for (key, value) in records {
        if reader.get(key)?.is_some() {
            continue;
        }
        let op = Op::Put {
            value: value.clone(),
            key: key.clone(),
            expect: Expect::Absent,
        };
        match store::write(raft, op).await? {
            Written::Applied => info!(%key, "record seeded"),
            // Written meanwhile, by another seeder or a rotation: keep theirs.
            Written::Conflict { .. } => {}
        }
    }
    Ok(true)
}
