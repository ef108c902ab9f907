//! One controller member, started from its data directory (made by `init` or
//! [`prepare_member_dir`]): its certificate and the cluster CA, its Raft store under
//! `<data-dir>/raft`, its Raft node, and one mutual-TLS gRPC server on its address serving
//! the `Raft` service to the other members and the `Control` API to admins (the CLI).

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use openraft::{BasicNode, Raft};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tracing::info;

use crate::api::control::ControlService;
use crate::init::LocalCluster;
use crate::pki::{
    ClusterCa, DEFAULT_LEAF_VALIDITY, Identity, IssuedCert, PkiError, Role, SubjectName,
    client_config, server_config,
};
use crate::raft::{
    GrpcNetworkFactory, KvReader, NodeId, RaftService, RaftSettings, StoreError, TypeConfig,
    open_store, raft_config,
};
use crate::transport::{MtlsConnector, MtlsListener, TransportError};

/// Why a member could not be prepared or started.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// A file of the data directory is missing or unreadable.
    #[error("{what} {}: {source}", path.display())]
    Read {
        /// What it is.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A record of the data directory cannot be understood.
    #[error("{} is not a valid {what}: {reason}", path.display())]
    Corrupt {
        /// What it should be.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An option is invalid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which option.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Certificates.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The Raft store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transport.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// openraft refused to start or to initialise.
    #[error("raft: {0}")]
    Raft(String),
    /// Writing a new member's directory failed.
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
}

fn read(what: &'static str, path: PathBuf) -> Result<String, MemberError> {
    fs::read_to_string(&path).map_err(|source| MemberError::Read { what, path, source })
}

/// What a member needs from its data directory.
#[derive(Debug)]
pub struct MemberFiles {
    /// `cluster.json`.
    pub cluster: LocalCluster,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// This member's certificate and key.
    pub cert: IssuedCert,
}

impl MemberFiles {
    /// Reads them from `data_dir`.
    pub fn load(data_dir: &Path) -> Result<Self, MemberError> {
        let path = data_dir.join("cluster.json");
        let text = read(
            "the cluster record (run `berth-controller init` first)",
            path.clone(),
        )?;
        let cluster = serde_json::from_str(&text).map_err(|e| MemberError::Corrupt {
            what: "cluster record",
            path,
            reason: e.to_string(),
        })?;
        Ok(Self {
            cluster,
            ca_pem: read("the CA certificate", data_dir.join("ca/ca.pem"))?,
            cert: IssuedCert {
                cert_pem: read("this member's certificate", data_dir.join("tls/node.pem"))?,
                key_pem: read("this member's key", data_dir.join("tls/node.key"))?,
            },
        })
    }
}

/// Writes a data directory for another controller member from `from`'s (which holds the CA
/// key): the CA (both halves, as every controller can sign joining nodes), a certificate for
/// member `id` valid for `advertise`'s host, and its own `cluster.json`. A stand-in for
/// joining with a token until the join RPC exists.
pub fn prepare_member_dir(
    from: &Path,
    to: &Path,
    id: NodeId,
    advertise: &str,
) -> Result<LocalCluster, MemberError> {
    let src = MemberFiles::load(from)?;
    let ca_key = read("the CA key", from.join("ca/ca.key"))?;
    let ca = ClusterCa::from_pem(&src.ca_pem, &ca_key)?;
    if id == 0 {
        return Err(MemberError::Invalid {
            what: "--id",
            reason: "0 is not a member id".into(),
        });
    }
    let host = advertise
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| MemberError::Invalid {
            what: "--advertise",
            reason: format!("{advertise:?} is not host:port"),
        })?;
    if to.join("cluster.json").exists() {
        return Err(crate::init::InitError::AlreadyInitialised {
            dir: to.to_path_buf(),
        }
        .into());
    }
    let cert = ca.issue(
        &Identity::new(Role::Controller, id.to_string())?,
        &[SubjectName::parse(host)],
        DEFAULT_LEAF_VALIDITY,
    )?;
    let cluster = LocalCluster {
        member_id: id,
        advertise: advertise.to_owned(),
        ..src.cluster
    };
    crate::init::write_member_dir(to, &src.ca_pem, &ca_key, &cert, &cluster, &|_| Ok(()))?;
    Ok(cluster)
}

/// A running member.
pub struct Member {
    /// Its Raft id.
    pub id: NodeId,
    /// The address its server listens on.
    pub addr: SocketAddr,
    /// Its Raft node.
    pub raft: Raft<TypeConfig>,
    /// Reads of its local store.
    pub reader: KvReader,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), TransportError>>>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// What [`Member::serve`] needs: what `start` reads from a data directory, given directly
/// (tests start members this way).
#[derive(Debug, Clone)]
pub struct MemberParts {
    /// Its Raft id.
    pub id: NodeId,
    /// The cluster CA, PEM.
    pub ca_pem: String,
    /// Its controller certificate and key.
    pub cert: IssuedCert,
    /// Where to listen (port 0: any free port; see [`Member::addr`]).
    pub listen: SocketAddr,
    /// The Raft store's directory.
    pub store_dir: PathBuf,
    /// Raft timings.
    pub settings: RaftSettings,
    /// How long dialing another member may take (default: the transport's).
    pub connect_timeout: Option<std::time::Duration>,
}

/// How to start a member.
#[derive(Debug, Clone)]
pub struct MemberOptions {
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Where to listen (default: the advertised address).
    pub listen: Option<SocketAddr>,
    /// Raft timings.
    pub settings: RaftSettings,
    /// On the first start of the first member: the initial voters, id to `host:port`.
    pub bootstrap: BTreeMap<NodeId, String>,
}

impl Member {
    /// Starts the member: opens its store, starts its Raft node and its server, and, when
    /// `bootstrap` is given and the node has never been initialised, initialises the
    /// cluster's membership.
    pub async fn start(opts: &MemberOptions) -> Result<Member, MemberError> {
        let files = MemberFiles::load(&opts.data_dir)?;
        let id = files.cluster.member_id;
        let listen = match opts.listen {
            Some(a) => a,
            None => files
                .cluster
                .advertise
                .parse()
                .map_err(|e| MemberError::Invalid {
                    what: "listen address",
                    reason: format!(
                        "the advertised {:?} is not an IP:port ({e}); give --listen",
                        files.cluster.advertise
                    ),
                })?,
        };
        let member = Member::serve(MemberParts {
            id,
            ca_pem: files.ca_pem,
            cert: files.cert,
            listen,
            store_dir: opts.data_dir.join("raft"),
            settings: opts.settings.clone(),
            connect_timeout: None,
        })
        .await?;
        if !opts.bootstrap.is_empty() {
            let initialised = member
                .raft
                .is_initialized()
                .await
                .map_err(|e| MemberError::Raft(e.to_string()))?;
            if !initialised {
                let voters: BTreeMap<NodeId, BasicNode> = opts
                    .bootstrap
                    .iter()
                    .map(|(id, addr)| (*id, BasicNode::new(addr)))
                    .collect();
                member
                    .raft
                    .initialize(voters)
                    .await
                    .map_err(|e| MemberError::Raft(e.to_string()))?;
                info!(id, members = ?opts.bootstrap, "cluster initialised");
            }
        }
        Ok(member)
    }

    /// Starts a member from its parts: opens its store, starts its Raft node, and serves
    /// the Raft and Control services over mutual TLS on `listen`.
    pub async fn serve(p: MemberParts) -> Result<Member, MemberError> {
        let id = p.id;
        let (log, sm) = open_store(&p.store_dir)?;
        let reader = sm.reader();
        let mut connector = MtlsConnector::new(client_config(&p.ca_pem, &p.cert)?);
        if let Some(t) = p.connect_timeout {
            connector = connector.with_connect_timeout(t);
        }
        let network = GrpcNetworkFactory::new(id, connector.clone());
        let config = raft_config(&p.settings).map_err(|e| MemberError::Invalid {
            what: "raft settings",
            reason: e.to_string(),
        })?;
        let raft = Raft::new(id, config, network, log, sm)
            .await
            .map_err(|e| MemberError::Raft(e.to_string()))?;
        let listener = MtlsListener::bind(p.listen, server_config(&p.ca_pem, &p.cert)?).await?;
        let addr = listener.local_addr();
        let router = Server::builder()
            .add_service(RaftService::new(raft.clone()).into_server())
            .add_service(
                ControlService::new(raft.clone(), reader.clone(), connector, id).into_server(),
            );
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(listener.serve(router, async {
            let _ = stopped.await;
        }));
        info!(id, %addr, "controller member running");
        Ok(Member {
            id,
            addr,
            raft,
            reader,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// Stops the Raft node and the server (a second call does nothing).
    pub async fn stop(&mut self) -> Result<(), MemberError> {
        if self.stop.is_none() && self.server.is_none() {
            return Ok(());
        }
        self.raft
            .shutdown()
            .await
            .map_err(|e| MemberError::Raft(e.to_string()))?;
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(server) = self.server.take() {
            if let Ok(r) = server.await {
                r?;
            }
        }
        Ok(())
    }
}

/// Parses `--bootstrap 1=10.0.0.1:7443,2=10.0.0.2:7443`.
pub fn parse_bootstrap(s: &str) -> Result<BTreeMap<NodeId, String>, MemberError> {
    let bad = |reason: String| MemberError::Invalid {
        what: "--bootstrap",
        reason,
    };
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("{part:?} is not ID=HOST:PORT")))?;
        let id: NodeId = id
            .parse()
            .ok()
            .filter(|i| *i != 0)
            .ok_or_else(|| bad(format!("{id:?} in {part:?} is not a member id (1 or more)")))?;
        if !addr.contains(':') {
            return Err(bad(format!("{addr:?} in {part:?} is not HOST:PORT")));
        }
        if out.insert(id, addr.to_owned()).is_some() {
            return Err(bad(format!("member {id} is given twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_lists_parse_and_bad_ones_name_the_part() {
        let m = parse_bootstrap("1=10.0.0.1:7443, 2=10.0.0.2:7443").unwrap();
        assert_eq!(m[&2], "10.0.0.2:7443");
        for (bad, want) in [
            ("1:10.0.0.1", "ID=HOST:PORT"),
            ("0=a:1", "member id"),
            ("x=a:1", "member id"),
            ("1=a", "HOST:PORT"),
            ("1=a:1,1=b:2", "twice"),
        ] {
            let e = parse_bootstrap(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn a_member_dir_is_made_from_another_and_refused_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let first = tmp.path().join("m1");
        crate::init::init(&crate::init::InitOptions {
            data_dir: first.clone(),
            cluster_name: "c".into(),
            member_id: 1,
            advertise: "127.0.0.1:7001".into(),
            node_range: "10.200.0.0/16".parse().unwrap(),
            node_prefix: 24,
        })
        .unwrap();
        let second = tmp.path().join("m2");
        let c = prepare_member_dir(&first, &second, 2, "127.0.0.2:7002").unwrap();
        assert_eq!((c.member_id, c.advertise.as_str()), (2, "127.0.0.2:7002"));
        let files = MemberFiles::load(&second).unwrap();
        assert_eq!(
            files.ca_pem,
            fs::read_to_string(first.join("ca/ca.pem")).unwrap()
        );
        let e = prepare_member_dir(&first, &second, 2, "127.0.0.2:7002")
            .unwrap_err()
            .to_string();
        assert!(e.contains("already holds a cluster"), "{e}");
        let e = MemberFiles::load(&tmp.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("berth-controller init"), "{e}");
    }
}
