//! The node's identity: joining a cluster with a token, and the files that keep what the
//! join gave (the node's certificate and key, the cluster CA, the node id, the controllers).
//!
//! Layout of the identity directory (`<state_dir>/node/` for the agent):
//!
//! | file | holds |
//! |---|---|
//! | `cert.pem` | the node's certificate (`berth://agent/<node-id>`) |
//! | `key.pem` | its private key, mode 0600 (made on this node, never sent) |
//! | `ca.pem` | the cluster CA |
//! | `node.json` | node id, cluster name, hostname, the controllers' addresses |
//!
//! Every file is written to a temporary name and renamed, `node.json` last: a directory with
//! a `node.json` holds a whole identity.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::time::Duration;

use berth_controller::join::{JoinClientError, JoinRequest, Joined, join_cluster};
use berth_controller::pki::{IssuedCert, JoinToken, Role};
use serde::{Deserialize, Serialize};

use super::NodeError;

/// The node's certificate.
pub const CERT_FILE: &str = "cert.pem";
/// The node's private key.
pub const KEY_FILE: &str = "key.pem";
/// The cluster CA.
pub const CA_FILE: &str = "ca.pem";
/// The node's facts.
pub const NODE_FILE: &str = "node.json";

/// What a node is in its cluster, and how it reaches the controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The node's id (its certificate's).
    pub node_id: String,
    /// The cluster's name.
    pub cluster_name: String,
    /// The hostname it joined with.
    pub hostname: String,
    /// The controllers, `host:port`, as the join answered (at least one).
    pub controllers: Vec<String>,
    /// Its certificate and key.
    pub cert: IssuedCert,
    /// The cluster CA, PEM.
    pub ca_pem: String,
}

/// `node.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    node_id: String,
    cluster_name: String,
    hostname: String,
    controllers: Vec<String>,
}

impl NodeIdentity {
    fn from_joined(joined: Joined, hostname: &str) -> Result<Self, NodeError> {
        let controllers: Vec<String> = joined.controllers.into_iter().map(|(_, a)| a).collect();
        if controllers.is_empty() {
            return Err(NodeError::Invalid {
                what: "join answer",
                reason: "it names no controller".into(),
            });
        }
        Ok(Self {
            node_id: joined.identity.id,
            cluster_name: joined.cluster_name,
            hostname: hostname.to_owned(),
            controllers,
            cert: joined.cert,
            ca_pem: joined.ca_pem,
        })
    }
}

/// Joins the cluster through the join listener at `join_addr` (`host:port`) with `token`
/// (an agent token) as `hostname`, without writing anything: the key is made here and
/// stays in the returned identity. Hollow nodes use this; a real node uses [`join`].
pub async fn request(
    join_addr: &str,
    token: &str,
    hostname: &str,
) -> Result<NodeIdentity, NodeError> {
    let token = JoinToken::parse(token.trim()).map_err(NodeError::Token)?;
    let joined = join_cluster(
        join_addr,
        JoinRequest {
            token,
            role: Role::Agent,
            name: hostname.to_owned(),
            hostnames: Vec::new(),
            advertise: String::new(),
            controller_id: None,
        },
    )
    .await?;
    NodeIdentity::from_joined(joined, hostname)
}

/// How many times a join is tried while the controller answers "retry".
const JOIN_ATTEMPTS: u32 = 20;

/// [`request`], tried again (50 ms doubling to 1 s, up to 20 times: about 15 s) while the
/// controller answers UNAVAILABLE or ABORTED (no leader yet, tokens not seeded yet, a write
/// that must be retried) or cannot be reached.
pub async fn request_retrying(
    join_addr: &str,
    token: &str,
    hostname: &str,
) -> Result<NodeIdentity, NodeError> {
    let mut delay = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match request(join_addr, token, hostname).await {
            Err(NodeError::Join(JoinClientError::Refused {
                status, message, ..
            })) if attempt < JOIN_ATTEMPTS
                && matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Aborted
                ) =>
            {
                tracing::debug!(hostname, %message, "join not done yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Joins like [`request_retrying`] and writes the identity into `dir`. A `dir` that holds an
/// identity already is refused before anything is sent (see [`forget`]).
pub async fn join(
    dir: &Path,
    join_addr: &str,
    token: &str,
    hostname: &str,
) -> Result<NodeIdentity, NodeError> {
    ensure_absent(dir)?;
    let identity = request_retrying(join_addr, token, hostname).await?;
    store(dir, &identity)?;
    Ok(identity)
}

/// Refuses a `dir` that holds an identity (or part of one).
fn ensure_absent(dir: &Path) -> Result<(), NodeError> {
    for file in [NODE_FILE, CERT_FILE, KEY_FILE, CA_FILE] {
        let path = dir.join(file);
        if path.exists() {
            return Err(NodeError::AlreadyJoined { path });
        }
    }
    Ok(())
}

/// Writes `identity` into `dir` (made if missing, mode 0700), `node.json` last. Refuses a
/// `dir` that holds an identity already.
pub fn store(dir: &Path, identity: &NodeIdentity) -> Result<(), NodeError> {
    ensure_absent(dir)?;
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NodeError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(werr(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(werr(dir))?;
    write_atomic(dir, CA_FILE, identity.ca_pem.as_bytes(), 0o644)?;
    write_atomic(dir, CERT_FILE, identity.cert.cert_pem.as_bytes(), 0o644)?;
    write_atomic(dir, KEY_FILE, identity.cert.key_pem.as_bytes(), 0o600)?;
    let facts = NodeFile {
        node_id: identity.node_id.clone(),
        cluster_name: identity.cluster_name.clone(),
        hostname: identity.hostname.clone(),
        controllers: identity.controllers.clone(),
    };
    let mut json = serde_json::to_vec_pretty(&facts).map_err(|e| NodeError::Corrupt {
        path: dir.join(NODE_FILE),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    write_atomic(dir, NODE_FILE, &json, 0o644)
}

/// Removes the identity files from `dir` (missing ones are fine), so that the node can
/// join again.
pub fn forget(dir: &Path) -> Result<(), NodeError> {
    for file in [NODE_FILE, CERT_FILE, KEY_FILE, CA_FILE] {
        let path = dir.join(file);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(NodeError::Write { path, source }),
        }
    }
    Ok(())
}

/// Reads the identity in `dir`.
pub fn load(dir: &Path) -> Result<NodeIdentity, NodeError> {
    let node_path = dir.join(NODE_FILE);
    if !node_path.exists() {
        return Err(NodeError::NotJoined {
            dir: dir.to_path_buf(),
        });
    }
    let read = |file: &str| -> Result<String, NodeError> {
        let path = dir.join(file);
        fs::read_to_string(&path).map_err(|source| NodeError::Read { path, source })
    };
    let facts: NodeFile =
        serde_json::from_str(&read(NODE_FILE)?).map_err(|e| NodeError::Corrupt {
            path: node_path.clone(),
            reason: e.to_string(),
        })?;
    if facts.node_id.is_empty() || facts.controllers.is_empty() {
        return Err(NodeError::Corrupt {
            path: node_path,
            reason: "it names no node id or no controller".into(),
        });
    }
    let identity = NodeIdentity {
        node_id: facts.node_id,
        cluster_name: facts.cluster_name,
        hostname: facts.hostname,
        controllers: facts.controllers,
        cert: IssuedCert {
            cert_pem: read(CERT_FILE)?,
            key_pem: read(KEY_FILE)?,
        },
        ca_pem: read(CA_FILE)?,
    };
    // Catches a key that does not match or a damaged PEM now, not at the first connection.
    berth_controller::pki::client_config(&identity.ca_pem, &identity.cert)
        .map_err(NodeError::Tls)?;
    Ok(identity)
}

/// Writes `bytes` to `dir/name` through a temporary file renamed over it.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), NodeError> {
    let path = dir.join(name);
    let tmp: PathBuf = dir.join(format!(".{name}.tmp"));
    let werr = |p: &Path| {
        let path = p.to_path_buf();
        move |source| NodeError::Write { path, source }
    };
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(werr(&tmp))?;
    f.write_all(bytes).map_err(werr(&tmp))?;
    f.sync_all().map_err(werr(&tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(werr(&path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_controller::pki::{ClusterCa, DEFAULT_LEAF_VALIDITY, Identity};

    fn identity() -> NodeIdentity {
        let ca = ClusterCa::generate("test").unwrap();
        let cert = ca
            .issue(
                &Identity::new(Role::Agent, "node-1").unwrap(),
                &[],
                DEFAULT_LEAF_VALIDITY,
            )
            .unwrap();
        NodeIdentity {
            node_id: "node-1".into(),
            cluster_name: "test".into(),
            hostname: "h1".into(),
            controllers: vec!["127.0.0.1:7443".into()],
            cert,
            ca_pem: ca.cert_pem().to_owned(),
        }
    }

    #[test]
    fn an_identity_is_stored_and_read_back_with_a_private_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("node");
        let id = identity();
        store(&dir, &id).unwrap();
        assert_eq!(load(&dir).unwrap(), id);
        let mode = fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = store(&dir, &id).unwrap_err().to_string();
        assert!(e.contains("joined a cluster already"), "{e}");
        assert!(e.contains(NODE_FILE), "{e}");
        forget(&dir).unwrap();
        let e = load(&dir).unwrap_err().to_string();
        assert!(e.contains("has not joined"), "{e}");
        store(&dir, &id).unwrap();
    }

    #[test]
    fn a_damaged_identity_names_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        store(dir, &identity()).unwrap();
        fs::write(dir.join(NODE_FILE), "{\"node_id\": 3}").unwrap();
        let e = load(dir).unwrap_err().to_string();
        assert!(e.contains("node.json is corrupt"), "{e}");
    }

    #[tokio::test]
    async fn joining_twice_is_refused_before_anything_is_sent() {
        let tmp = tempfile::tempdir().unwrap();
        store(tmp.path(), &identity()).unwrap();
        // The address is never dialled: the check comes first.
        let e = join(tmp.path(), "127.0.0.1:1", "BERTH-1-x", "h1")
            .await
            .unwrap_err();
        assert!(matches!(e, NodeError::AlreadyJoined { .. }), "{e}");
    }
}
