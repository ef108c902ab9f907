//! A controller joining with the controller token: `berth-controller join` gets its
//! certificate (and the CA key: every controller signs joins), writes its data directory
//! like `init-member` does, and leaves `join-pending.json` there naming the controllers it
//! heard of. When it then runs (`berth-controller run`), [`spawn_self_add`] asks them, with
//! its new controller certificate, to add it (`AddMember` of its own id, which a controller
//! may ask for itself): it becomes a learner, catches up, then a voter; the file is removed
//! once that succeeded, and the request is repeated after a restart until then.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::v1::AddMemberRequest;
use berth_proto::v1::control_client::ControlClient;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::{JoinClientError, JoinRequest, join_cluster};
use crate::init::{InitError, LocalCluster};
use crate::member::MemberError;
use crate::pki::{IssuedCert, JoinToken, Role, client_config};
use crate::raft::NodeId;
use crate::transport::MtlsConnector;

/// The file that says a joined controller still has to be added to the membership.
pub const JOIN_PENDING_FILE: &str = "join-pending.json";
/// How long the request to be added waits between attempts.
const SELF_ADD_RETRY: Duration = Duration::from_secs(1);

/// `join-pending.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingJoin {
    /// The controllers to ask, `host:port` of their mutual-TLS listeners.
    pub controllers: Vec<String>,
}

/// How a controller joins.
#[derive(Debug, Clone)]
pub struct ControllerJoin {
    /// Its new data directory (must not hold a cluster yet).
    pub data_dir: PathBuf,
    /// The controller join token.
    pub token: JoinToken,
    /// A controller's join listener, `host:port`.
    pub join_addr: String,
    /// Its Raft id.
    pub id: NodeId,
    /// Where the other members reach it, `host:port`.
    pub advertise: String,
    /// Where joining nodes will reach its own join listener (default: the advertised
    /// host, the next port).
    pub own_join_addr: Option<String>,
}

fn invalid(what: &'static str, reason: String) -> JoinClientError {
    JoinClientError::Init(InitError::Invalid { what, reason })
}

/// Joins as a controller and writes its data directory; returns its `cluster.json`.
pub async fn join_controller(opts: &ControllerJoin) -> Result<LocalCluster, JoinClientError> {
    if opts.data_dir.join("cluster.json").exists() {
        return Err(JoinClientError::Init(InitError::AlreadyInitialised {
            dir: opts.data_dir.clone(),
        }));
    }
    let own_join_addr = match &opts.own_join_addr {
        Some(a) => a.clone(),
        None => crate::init::default_join_addr(&opts.advertise)
            .map_err(|r| invalid("--advertise", r))?,
    };
    let joined = join_cluster(
        &opts.join_addr,
        JoinRequest {
            token: opts.token.clone(),
            role: Role::Controller,
            name: format!("controller-{}", opts.id),
            hostnames: Vec::new(),
            advertise: opts.advertise.clone(),
            controller_id: Some(opts.id),
        },
    )
    .await?;
    let ca_key = joined
        .ca_key_pem
        .ok_or_else(|| JoinClientError::BadAnswer("no CA key for a controller".into()))?;
    let node_range = joined
        .node_range
        .parse()
        .map_err(|e| JoinClientError::BadAnswer(format!("node range: {e}")))?;
    let node_prefix = u8::try_from(joined.node_prefix)
        .map_err(|e| JoinClientError::BadAnswer(format!("node prefix: {e}")))?;
    let cluster = LocalCluster {
        name: joined.cluster_name,
        member_id: opts.id,
        advertise: opts.advertise.clone(),
        node_range,
        node_prefix,
        // Only the first member seeds the cluster record from these; every member reads the
        // service range and overlay mode from that record.
        service_range: crate::state::default_service_range(),
        overlay: Default::default(),
        ca_fingerprint: opts.token.ca_fingerprint().to_string(),
        join_addr: Some(own_join_addr),
    };
    let pending = PendingJoin {
        controllers: joined.controllers.into_iter().map(|(_, a)| a).collect(),
    };
    crate::init::write_member_dir(
        &opts.data_dir,
        &joined.ca_pem,
        &ca_key,
        &joined.cert,
        &cluster,
        &|dir| crate::init::write_json(&dir.join(JOIN_PENDING_FILE), &pending, 0o644),
    )?;
    Ok(cluster)
}

/// If `data_dir` holds `join-pending.json`, starts the task that asks the controllers it
/// names to add member `id` at `advertise`, then removes the file.
pub fn spawn_self_add(
    data_dir: &Path,
    id: NodeId,
    advertise: &str,
    ca_pem: &str,
    cert: &IssuedCert,
) -> Result<Option<JoinHandle<()>>, MemberError> {
    let path = data_dir.join(JOIN_PENDING_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(MemberError::Read {
                what: "the pending join",
                path,
                source,
            });
        }
    };
    let pending: PendingJoin = serde_json::from_str(&text).map_err(|e| MemberError::Corrupt {
        what: "pending join",
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let connector = MtlsConnector::new(client_config(ca_pem, cert)?);
    let advertise = advertise.to_owned();
    Ok(Some(tokio::spawn(async move {
        loop {
            for addr in &pending.controllers {
                match add_self(&connector, addr, id, &advertise).await {
                    Ok(()) => {
                        info!(id, via = %addr, "added to the cluster's membership");
                        if let Err(e) = std::fs::remove_file(&path) {
                            warn!(path = %path.display(), error = %e, "cannot remove the pending join");
                        }
                        return;
                    }
                    Err(e) => debug!(id, via = %addr, error = %e, "cannot be added yet"),
                }
            }
            tokio::time::sleep(SELF_ADD_RETRY).await;
        }
    })))
}

async fn add_self(
    connector: &MtlsConnector,
    addr: &str,
    id: NodeId,
    advertise: &str,
) -> Result<(), String> {
    let channel = connector.channel(addr).map_err(|e| e.to_string())?;
    ControlClient::new(channel)
        .add_member(AddMemberRequest {
            id,
            addr: advertise.to_owned(),
        })
        .await
        .map(|_| ())
        .map_err(|s| s.to_string())
}
