//! Seeding the stored join tokens into the replicated state.
//!
//! `init` writes the tokens' stored forms to the first member's `join-tokens.json` (and
//! `init-member` copies the file to the members it prepares). A member started with the
//! file runs this seeder: whenever it is the leader, it writes each token that the state
//! does not hold yet with [`Expect::Absent`], so a seed never replaces a rotated token, two
//! seeders cannot both win, and a seed interrupted by a crash or a lost election is simply
//! tried again by the next leader that holds the file. The seeder stops once the state holds
//! both tokens (read locally, as applied from any leader).

use std::time::Duration;

use openraft::Raft;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::api::control::ControlError;
use crate::api::store::{self, Written};
use crate::init::StoredTokens;
use crate::pki::{Role, StoredToken};
use crate::raft::{Expect, KvReader, NodeId, Op, TypeConfig};
use crate::state::keys;

/// How often the seeder looks again.
pub const SEED_RETRY: Duration = Duration::from_millis(200);

/// Starts the seeder of member `id`; it ends once both tokens are in the state.
pub fn spawn_token_seeder(
    raft: Raft<TypeConfig>,
    reader: KvReader,
    id: NodeId,
    tokens: StoredTokens,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let tokens = [
            (Role::Agent, tokens.agent),
            (Role::Controller, tokens.controller),
        ];
        loop {
            let leader = raft.metrics().borrow().current_leader == Some(id);
            let done = if leader {
                seed_once(&raft, &reader, &tokens).await
            } else {
                all_present(&reader, &tokens).await
            };
            match done {
                Ok(true) => {
                    debug!("join tokens are in the replicated state");
                    return;
                }
                Ok(false) => {}
                Err(e) => debug!(error = %e, "cannot seed the join tokens yet"),
            }
            tokio::time::sleep(SEED_RETRY).await;
        }
    })
}

async fn all_present(
    reader: &KvReader,
    tokens: &[(Role, StoredToken)],
) -> Result<bool, ControlError> {
    for (role, _) in tokens {
        if store::read::<StoredToken>(reader, &keys::token(*role))
            .await?
            .is_none()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// On the leader: writes each missing token. Done when nothing is missing any more.
async fn seed_once(
    raft: &Raft<TypeConfig>,
    reader: &KvReader,
    tokens: &[(Role, StoredToken)],
) -> Result<bool, ControlError> {
    store::linearize(raft).await?;
    for (role, token) in tokens {
        let key = keys::token(*role);
        if store::read::<StoredToken>(reader, &key).await?.is_some() {
            continue;
        }
        let op = Op::Put {
            value: store::encode(&key, token)?,
            key,
            expect: Expect::Absent,
        };
        match store::write(raft, op).await? {
            Written::Applied => info!(%role, "join token seeded"),
            // Written meanwhile, by another seeder or a rotation: keep theirs.
            Written::Conflict { .. } => {}
        }
    }
    Ok(true)
}
