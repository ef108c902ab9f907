//! `berth-controller init`: a new cluster's first controller data directory.
//!
//! ```text
//! <data-dir>/
//!   cluster.json           name, node range and prefix, member id, advertised address
//!   ca/ca.pem, ca/ca.key   the cluster CA (the key 0600; it signs joining nodes)
//!   tls/node.pem, .key     this controller's certificate (role controller, its id, the
//!                          advertised host as a SAN)
//!   admin/admin.pem, .key  an admin client certificate, for the CLI
//!   join-tokens.json       the join tokens' stored form (SHA-256 of each secret)
//! ```
//!
//! `cluster.json` records the join listener's address (`join_addr`: by default the
//! advertised host and the next port), where nodes with a join token get their certificate.
//!
//! The join tokens themselves are returned once and never written: only their hashes are
//! kept. They move into the replicated state when the controller runs: the leader seeds
//! them from this file (see [`crate::api::join`]); from then on the file is not read again,
//! and `RotateToken` replaces them in the state only. Nothing is left
//! when `init` fails, and a directory that already holds a cluster is refused.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::pki::{
    ClusterCa, DEFAULT_LEAF_VALIDITY, Identity, JoinToken, PkiError, Role, StoredToken, SubjectName,
};
use crate::state::validate::is_dns_label;

/// What `init` is given.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The data directory (created; must not hold a cluster yet).
    pub data_dir: PathBuf,
    /// The cluster's name (a DNS label).
    pub cluster_name: String,
    /// This member's Raft id (not 0).
    pub member_id: u64,
    /// `host:port` the other members and the nodes reach this controller at.
    pub advertise: String,
    /// `host:port` joining nodes reach the join listener at (default: the advertised host,
    /// the next port).
    pub join_addr: Option<String>,
    /// The range node subnets are cut from.
    pub node_range: Ipv4Net,
    /// The prefix length of each node's subnet.
    pub node_prefix: u8,
    /// The range services' virtual IPs are allocated from.
    pub service_range: Ipv4Net,
    /// How node subnets reach each other.
    pub overlay: crate::state::OverlayMode,
}

/// `cluster.json`: what the controller needs to start from its data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalCluster {
    /// The cluster's name.
    pub name: String,
    /// This member's Raft id.
    pub member_id: u64,
    /// Its advertised `host:port`.
    pub advertise: String,
    /// The node range.
    pub node_range: Ipv4Net,
    /// The node prefix length.
    pub node_prefix: u8,
    /// The service range (absent in directories made before service addresses existed).
    #[serde(default = "crate::state::default_service_range")]
    pub service_range: Ipv4Net,
    /// How node subnets reach each other.
    #[serde(default)]
    pub overlay: crate::state::OverlayMode,
    /// The CA's fingerprint (hex).
    pub ca_fingerprint: String,
    /// `host:port` joining nodes reach this member's join listener at; absent in
    /// directories made before joins existed (no join listener then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_addr: Option<String>,
}

/// The join tokens' stored form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredTokens {
    /// For agents.
    pub agent: StoredToken,
    /// For controllers.
    pub controller: StoredToken,
}

/// What `init` made.
#[derive(Debug)]
pub struct Initialised {
    /// The cluster record written.
    pub cluster: LocalCluster,
    /// The token agents join with (shown once).
    pub agent_token: JoinToken,
    /// The token controllers join with (shown once).
    pub controller_token: JoinToken,
    /// The admin certificate and key, for the CLI.
    pub admin_cert: PathBuf,
    /// The admin key.
    pub admin_key: PathBuf,
}

/// Why `init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// An option is invalid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which option.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The directory already holds a cluster.
    #[error(
        "{} already holds a cluster ({}); use another --data-dir, or remove it to start over",
        dir.display(),
        dir.join("cluster.json").display()
    )]
    AlreadyInitialised {
        /// The data directory.
        dir: PathBuf,
    },
    /// A certificate or token could not be made.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A file could not be written.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InitError + use<> {
    let path = path.to_path_buf();
    move |source| InitError::Io { op, path, source }
}

/// The host part of `host:port`, checked.
fn advertised_host(advertise: &str) -> Result<&str, InitError> {
    let bad = |reason: &str| InitError::Invalid {
        what: "--advertise",
        reason: format!("{advertise:?} {reason}"),
    };
    let (host, port) = advertise
        .rsplit_once(':')
        .ok_or_else(|| bad("is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(host),
        _ => Err(bad("has no valid port (1-65535)")),
    }
}

/// The default join address for an advertised `host:port`: the same host, the next port.
pub fn default_join_addr(advertise: &str) -> Result<String, String> {
    let (host, port) = advertise
        .rsplit_once(':')
        .ok_or_else(|| format!("{advertise:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{advertise:?} has no valid port"))?;
    let next = port
        .checked_add(1)
        .ok_or_else(|| format!("{advertise:?}: no port after {port}; give the join address"))?;
    Ok(format!("{host}:{next}"))
}

/// Writes `join-tokens.json` (the stored forms only) into a new member directory.
pub(crate) fn write_tokens(dir: &Path, tokens: &StoredTokens) -> Result<(), InitError> {
    write_new(&dir.join("join-tokens.json"), &pretty_json(tokens), 0o600)
}

/// Writes a record as pretty JSON to a new file `path` with `mode`.
pub(crate) fn write_json<T: Serialize>(path: &Path, v: &T, mode: u32) -> Result<(), InitError> {
    write_new(path, &pretty_json(v), mode)
}

/// Writes `bytes` to a new file `path` with `mode` (refusing to replace one).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InitError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io("create", path))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_all())
        .map_err(io("write", path))
}

/// Creates the data directory of a new cluster's first controller. On failure, everything it
/// created is removed again.
pub fn init(opts: &InitOptions) -> Result<Initialised, InitError> {
    if !is_dns_label(&opts.cluster_name) {
        return Err(InitError::Invalid {
            what: "--cluster-name",
            reason: format!(
                "{:?} must be lower-case letters, digits and '-' (a DNS label)",
                opts.cluster_name
            ),
        });
    }
    if opts.member_id == 0 {
        return Err(InitError::Invalid {
            what: "--id",
            reason: "0 is not a member id (use 1 or more)".into(),
        });
    }
    let host = advertised_host(&opts.advertise)?;
    let join_addr = match &opts.join_addr {
        Some(a) => {
            advertised_host(a).map_err(|_| InitError::Invalid {
                what: "--join-addr",
                reason: format!("{a:?} is not host:port"),
            })?;
            a.clone()
        }
        None => default_join_addr(&opts.advertise).map_err(|reason| InitError::Invalid {
            what: "--advertise",
            reason,
        })?,
    };
    crate::state::subnets::allocate(opts.node_range, opts.node_prefix, &Default::default())
        .map_err(|e| InitError::Invalid {
            what: "--node-range / --node-prefix",
            reason: e.to_string(),
        })?;
    crate::state::network::check_range(opts.service_range, opts.node_range).map_err(|reason| {
        InitError::Invalid {
            what: "--service-range",
            reason,
        }
    })?;
    let ca = ClusterCa::generate(&opts.cluster_name)?;
    let (ca_pem, ca_key) = ca.to_pem();
    let me = Identity::new(Role::Controller, opts.member_id.to_string())?;
    let node = ca.issue(&me, &[SubjectName::parse(host)], DEFAULT_LEAF_VALIDITY)?;
    let admin = ca.issue(
        &Identity::new(Role::Admin, "admin")?,
        &[],
        DEFAULT_LEAF_VALIDITY,
    )?;
    let fingerprint = ca.fingerprint();
    let agent_token = JoinToken::generate(Role::Agent, fingerprint)?;
    let controller_token = JoinToken::generate(Role::Controller, fingerprint)?;
    let stored = StoredTokens {
        agent: agent_token.stored(),
        controller: controller_token.stored(),
    };
    let cluster = LocalCluster {
        name: opts.cluster_name.clone(),
        member_id: opts.member_id,
        advertise: opts.advertise.clone(),
        node_range: opts.node_range,
        node_prefix: opts.node_prefix,
        service_range: opts.service_range,
        overlay: opts.overlay,
        ca_fingerprint: fingerprint.to_string(),
        join_addr: Some(join_addr),
    };
    let dir = &opts.data_dir;
    let (admin_cert, admin_key) = (dir.join("admin/admin.pem"), dir.join("admin/admin.key"));
    write_member_dir(dir, &ca_pem, &ca_key, &node, &cluster, &|dir| {
        make_private_dir(&dir.join("admin"))?;
        write_new(&admin_cert, admin.cert_pem.as_bytes(), 0o644)?;
        write_new(&admin_key, admin.key_pem.as_bytes(), 0o600)?;
        write_tokens(dir, &stored)
    })?;
    Ok(Initialised {
        cluster,
        agent_token,
        controller_token,
        admin_cert,
        admin_key,
    })
}

fn make_private_dir(d: &Path) -> Result<(), InitError> {
    fs::create_dir(d).map_err(io("create", d))?;
    fs::set_permissions(d, fs::Permissions::from_mode(0o700)).map_err(io("chmod", d))
}

/// Writes a controller member's data directory: the CA (`ca/ca.pem`, `ca/ca.key` 0600), its
/// certificate (`tls/node.pem`, `tls/node.key` 0600), whatever `extra` adds, and
/// `cluster.json` last, so that its presence means the directory is complete. A directory
/// that already holds a cluster is refused; on failure everything written is removed.
pub(crate) fn write_member_dir(
    dir: &Path,
    ca_pem: &str,
    ca_key: &str,
    node: &crate::pki::IssuedCert,
    cluster: &LocalCluster,
    extra: &dyn Fn(&Path) -> Result<(), InitError>,
) -> Result<(), InitError> {
    if dir.join("cluster.json").exists() {
        return Err(InitError::AlreadyInitialised {
            dir: dir.to_path_buf(),
        });
    }
    let existed = dir.exists();
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    let written = (|| {
        make_private_dir(&dir.join("ca"))?;
        write_new(&dir.join("ca/ca.pem"), ca_pem.as_bytes(), 0o644)?;
        write_new(&dir.join("ca/ca.key"), ca_key.as_bytes(), 0o600)?;
        make_private_dir(&dir.join("tls"))?;
        write_new(&dir.join("tls/node.pem"), node.cert_pem.as_bytes(), 0o644)?;
        write_new(&dir.join("tls/node.key"), node.key_pem.as_bytes(), 0o600)?;
        extra(dir)?;
        write_new(&dir.join("cluster.json"), &pretty_json(cluster), 0o644)
    })();
    if written.is_err() {
        for d in ["ca", "tls", "admin"] {
            let _ = fs::remove_dir_all(dir.join(d));
        }
        let _ = fs::remove_file(dir.join("join-tokens.json"));
        let _ = fs::remove_file(dir.join("join-pending.json"));
        let _ = fs::remove_file(dir.join("cluster.json"));
        if !existed {
            let _ = fs::remove_dir(dir);
        }
    }
    written
}

/// Pretty JSON of a record, with a final newline.
fn pretty_json<T: Serialize>(v: &T) -> Vec<u8> {
    // These records hold only strings, numbers and byte arrays: serialising cannot fail.
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::peer_identity;

    fn opts(dir: &Path) -> InitOptions {
        InitOptions {
            data_dir: dir.join("ctl"),
            cluster_name: "prod".into(),
            member_id: 1,
            advertise: "192.168.100.2:7443".into(),
            join_addr: None,
            node_range: "10.200.0.0/16".parse().unwrap(),
            node_prefix: 24,
            service_range: crate::state::default_service_range(),
            overlay: Default::default(),
        }
    }

    fn der_of(pem: &str) -> Vec<u8> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn init_writes_a_complete_directory_with_private_keys_closed() {
        let tmp = tempfile::tempdir().unwrap();
        let o = opts(tmp.path());
        let out = init(&o).unwrap();
        let dir = &o.data_dir;
        let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("ca/ca.key"), 0o600);
        assert_eq!(mode("tls/node.key"), 0o600);
        assert_eq!(mode("admin/admin.key"), 0o600);
        assert_eq!(mode("ca"), 0o700);
        let node = fs::read_to_string(dir.join("tls/node.pem")).unwrap();
        let id = peer_identity(&der_of(&node)).unwrap();
        assert_eq!((id.role, id.id.as_str()), (Role::Controller, "1"));
        let admin = fs::read_to_string(&out.admin_cert).unwrap();
        assert_eq!(peer_identity(&der_of(&admin)).unwrap().role, Role::Admin);
        let cluster: LocalCluster =
            serde_json::from_slice(&fs::read(dir.join("cluster.json")).unwrap()).unwrap();
        assert_eq!(cluster, out.cluster);
        assert_eq!(cluster.join_addr.as_deref(), Some("192.168.100.2:7444"));
        // Only the hashes are stored, and they verify the tokens shown.
        let stored: StoredTokens =
            serde_json::from_slice(&fs::read(dir.join("join-tokens.json")).unwrap()).unwrap();
        stored.agent.verify(&out.agent_token, Role::Agent).unwrap();
        stored
            .controller
            .verify(&out.controller_token, Role::Controller)
            .unwrap();
        assert!(
            stored
                .agent
                .verify(&out.controller_token, Role::Agent)
                .is_err()
        );
        let all = fs::read_to_string(dir.join("join-tokens.json")).unwrap();
        let secret = out.agent_token.to_string();
        assert!(!all.contains(secret.rsplit('-').next().unwrap()));
        // A second init is refused and changes nothing.
        let e = init(&o).unwrap_err().to_string();
        assert!(e.contains("already holds a cluster"), "{e}");
        assert_eq!(fs::read_to_string(dir.join("tls/node.pem")).unwrap(), node);
    }

    #[test]
    fn bad_options_are_refused_and_leave_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        type Change = Box<dyn Fn(&mut InitOptions)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|o| o.cluster_name = "Prod!".into()),
                "--cluster-name",
            ),
            (Box::new(|o| o.member_id = 0), "--id"),
            (Box::new(|o| o.advertise = "nohost".into()), "--advertise"),
            (Box::new(|o| o.advertise = "h:99999".into()), "valid port"),
            (Box::new(|o| o.node_prefix = 8), "--node-range"),
        ];
        for (change, want) in cases {
            let mut o = opts(tmp.path());
            change(&mut o);
            let e = init(&o).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert!(
                !o.data_dir.exists(),
                "{want}: left {}",
                o.data_dir.display()
            );
        }
    }
}
