//! One controller member, started from its data directory (made by `init`, `join` or
//! [`prepare_member_dir`]): its certificate and the cluster CA, its Raft store under
//! `<data-dir>/raft`, its Raft node, and two gRPC servers:
//!
//! - the mutual-TLS listener on its address, serving the `Raft` service to the other
//!   members, the `Control` API to admins (the CLI), the `Dispatcher` to node agents (their
//!   sessions, served by the leader; [`crate::api::dispatch`]), and `Join` for joins another
//!   member forwards to the leader;
//! - the join listener (`join_addr` in `cluster.json`, by default the port after the
//!   advertised one), whose TLS lets a client without a certificate through and which
//!   serves nothing but `Join` ([`crate::api::join`]).
//!
//! A member whose directory holds `join-tokens.json` seeds the stored tokens into the
//! replicated state when it is the leader; one whose directory holds `join-pending.json`
//! (written by `berth-controller join`) asks the cluster to add it as a member
//! ([`crate::join::spawn_self_add`]).

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
use crate::api::dispatch::{DispatchParts, DispatchService, SessionSettings};
use crate::api::join::{ClusterFacts, JoinService, seed_records, spawn_seeder};
use crate::init::{LocalCluster, StoredTokens};
use crate::pki::{
    CaFingerprint, ClusterCa, DEFAULT_LEAF_VALIDITY, Identity, IssuedCert, PkiError, Role,
    SubjectName, client_config, join_server_config, server_config,
};
use crate::raft::{
    GrpcNetworkFactory, KvReader, NodeId, RaftRuntime, RaftService, RaftSettings, StoreError,
    TypeConfig, open_store, raft_config,
};
use crate::state::ClusterInfo;
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
pub struct MemberFiles {
    /// `cluster.json`.
    pub cluster: LocalCluster,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// This member's certificate and key.
    pub cert: IssuedCert,
    /// The CA key, PEM, if the directory holds it (every controller's does).
    pub ca_key: Option<String>,
    /// `join-tokens.json`, on the members that seed the tokens.
    pub seed_tokens: Option<StoredTokens>,
}

impl std::fmt::Debug for MemberFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberFiles")
            .field("cluster", &self.cluster)
            .field("cert", &self.cert)
            .field("ca_key", &self.ca_key.as_ref().map(|_| "[elided]"))
            .finish_non_exhaustive()
    }
}

/// Reads `path` if it exists.
fn read_optional(what: &'static str, path: PathBuf) -> Result<Option<String>, MemberError> {
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MemberError::Read { what, path, source }),
    }
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
        let tokens_path = data_dir.join("join-tokens.json");
        let seed_tokens = read_optional("the join tokens", tokens_path.clone())?
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| MemberError::Corrupt {
                    what: "join token record",
                    path: tokens_path,
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        Ok(Self {
            cluster,
            ca_pem: read("the CA certificate", data_dir.join("ca/ca.pem"))?,
            cert: IssuedCert {
                cert_pem: read("this member's certificate", data_dir.join("tls/node.pem"))?,
                key_pem: read("this member's key", data_dir.join("tls/node.key"))?,
            },
            ca_key: read_optional("the CA key", data_dir.join("ca/ca.key"))?,
            seed_tokens,
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
    let join_addr =
        crate::init::default_join_addr(advertise).map_err(|reason| MemberError::Invalid {
            what: "--advertise",
            reason,
        })?;
    let cluster = LocalCluster {
        member_id: id,
        advertise: advertise.to_owned(),
        join_addr: Some(join_addr),
        ..src.cluster
    };
    // The tokens' stored forms go along, so that whichever member is elected first seeds them.
    let tokens = src.seed_tokens;
    crate::init::write_member_dir(
        to,
        &src.ca_pem,
        &ca_key,
        &cert,
        &cluster,
        &|dir| match &tokens {
            Some(t) => crate::init::write_tokens(dir, t),
            None => Ok(()),
        },
    )?;
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
    /// The address its join listener listens on, if it has one.
    pub join_addr: Option<SocketAddr>,
    stop: Vec<oneshot::Sender<()>>,
    servers: Vec<JoinHandle<Result<(), TransportError>>>,
    /// Background tasks (the token seeder, the request to be added), aborted on stop.
    tasks: Vec<JoinHandle<()>>,
    /// The runtime of the Raft node and of the other members' connections; `None` once
    /// stopped.
    raft_rt: Option<RaftRuntime>,
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
    /// The join listener and what it needs; `None`: no join listener.
    pub join: Option<JoinParts>,
    /// The agents' sessions (the cluster range and the session timings); `None`: no
    /// `Dispatcher` service.
    pub dispatch: Option<DispatchParts>,
    /// Whether the member runs the orchestrator (places and reconciles tasks while it
    /// leads); only with `dispatch`. Tests of other parts turn it off to own the tasks.
    pub orchestrate: bool,
}

/// What a member's join listener needs.
#[derive(Clone)]
pub struct JoinParts {
    /// Where to listen (port 0: any free port; see [`Member::join_addr`]).
    pub listen: SocketAddr,
    /// The CA key, PEM: the member signs the certificates of joining nodes.
    pub ca_key_pem: String,
    /// What joining nodes are told about the cluster.
    pub cluster: ClusterFacts,
    /// The stored tokens to seed into the replicated state when this member leads
    /// (`join-tokens.json`), if it has them.
    pub seed_tokens: Option<StoredTokens>,
}

impl std::fmt::Debug for JoinParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinParts")
            .field("listen", &self.listen)
            .field("ca_key_pem", &"[elided]")
            .field("cluster", &self.cluster)
            .field("seed_tokens", &self.seed_tokens.is_some())
            .finish()
    }
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
    /// Where the join listener listens (default: the IP of the listen address and the port
    /// of `join_addr` in `cluster.json`).
    pub join_listen: Option<SocketAddr>,
    /// The agents' session timings (heartbeat period, missed heartbeats, `last_seen`
    /// interval).
    pub session: SessionSettings,
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
        let join = join_parts(&files, opts.join_listen, listen)?;
        let advertise = files.cluster.advertise.clone();
        let cert = files.cert.clone();
        let ca_pem = files.ca_pem.clone();
        let mut member = Member::serve(MemberParts {
            id,
            ca_pem: files.ca_pem,
            cert: files.cert,
            listen,
            store_dir: opts.data_dir.join("raft"),
            settings: opts.settings.clone(),
            connect_timeout: None,
            join,
            dispatch: Some(DispatchParts {
                node_range: files.cluster.node_range,
                node_prefix: files.cluster.node_prefix,
                session: opts.session,
            }),
            orchestrate: true,
        })
        .await?;
        if let Some(task) =
            crate::join::spawn_self_add(&opts.data_dir, id, &advertise, &ca_pem, &cert)?
        {
            member.tasks.push(task);
        }
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
    /// the Raft, Control and (with `dispatch`) Dispatcher services over mutual TLS on
    /// `listen`.
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
        // openraft spawns its core, and the core its replication streams and storage tasks,
        // on the runtime it is started on: its own (see `raft::runtime`).
        let raft_rt = RaftRuntime::new()
            .map_err(|e| MemberError::Raft(format!("cannot start the Raft runtime: {e}")))?;
        let raft = raft_rt
            .handle()
            .spawn(Raft::new(id, config, network, log, sm))
            .await
            .map_err(|e| MemberError::Raft(e.to_string()))?
            .map_err(|e| MemberError::Raft(e.to_string()))?;
        let listener = MtlsListener::bind(p.listen, server_config(&p.ca_pem, &p.cert)?).await?;
        let addr = listener.local_addr();
        let mut control = ControlService::new(raft.clone(), reader.clone(), connector.clone(), id);
        if let Some(fingerprint) = ca_fingerprint(&p.ca_pem) {
            control = control.with_ca_fingerprint(fingerprint);
        }
        let mut tasks = Vec::new();
        let mut dispatch = None;
        if let Some(d) = p.dispatch {
            let service =
                DispatchService::new(raft.clone(), reader.clone(), id, d).map_err(|reason| {
                    MemberError::Invalid {
                        what: "agent session settings",
                        reason,
                    }
                })?;
            tasks.extend(service.spawn_background());
            // The members that serve agents also place their tasks, while they lead.
            if p.orchestrate {
                tasks.push(crate::orchestrator::spawn(raft.clone(), reader.clone(), id));
            }
            // Logs, exec and images reach the nodes through their sessions.
            control = control.with_relay(service.relay());
            dispatch = Some(service);
        }
        let mut router = Server::builder()
            .add_service(RaftService::new(raft.clone()).into_server())
            .add_service(control.into_server());
        if let Some(service) = dispatch {
            router = router.add_service(service.into_server());
        }
        let mut stops = Vec::new();
        let mut servers = Vec::new();
        let mut join_addr = None;
        if let Some(j) = p.join {
            let ca = std::sync::Arc::new(ClusterCa::from_pem(&p.ca_pem, &j.ca_key_pem)?);
            let facts = j.cluster.clone();
            let join = JoinService::new(raft.clone(), reader.clone(), connector, id, ca, j.cluster);
            // On the mutual-TLS listener, for joins forwarded by other members only.
            router = router.add_service(join.clone().into_server());
            let join_listener =
                MtlsListener::bind(j.listen, join_server_config(&p.ca_pem, &p.cert)?).await?;
            join_addr = Some(join_listener.local_addr());
            let join_router = Server::builder().add_service(join.into_server());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            servers.push(tokio::spawn(join_listener.serve_join(join_router, async {
                let _ = stopped.await;
            })));
            if let Some(tokens) = j.seed_tokens {
                let info = ClusterInfo {
                    name: facts.name,
                    ca_cert_pem: p.ca_pem.clone(),
                    node_range: facts.node_range,
                    node_prefix: facts.node_prefix,
                    service_range: facts.service_range,
                    overlay: facts.overlay,
                    created_at: unix_nanos_now(),
                };
                let records = seed_records(&tokens, &info).map_err(|e| MemberError::Invalid {
                    what: "the records to seed",
                    reason: e.to_string(),
                })?;
                tasks.push(spawn_seeder(raft.clone(), reader.clone(), id, records));
            }
        }
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        // Other controllers' connections (Raft, forwarded calls) are served on the Raft
        // runtime, by the same services.
        let peers = router.clone();
        servers.push(tokio::spawn(listener.serve_split(
            router,
            peers,
            raft_rt.handle(),
            async {
                let _ = stopped.await;
            },
        )));
        info!(id, %addr, join_addr = ?join_addr, "controller member running");
        Ok(Member {
            id,
            addr,
            raft,
            reader,
            join_addr,
            stop: stops,
            servers,
            tasks,
            raft_rt: Some(raft_rt),
        })
    }

    /// Stops the Raft node and the server (a second call does nothing).
    pub async fn stop(&mut self) -> Result<(), MemberError> {
        if self.stop.is_empty() && self.servers.is_empty() {
            return Ok(());
        }
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.raft
            .shutdown()
            .await
            .map_err(|e| MemberError::Raft(e.to_string()))?;
        for s in self.stop.drain(..) {
            let _ = s.send(());
        }
        let mut result = Ok(());
        for server in self.servers.drain(..) {
            if let Ok(Err(e)) = server.await {
                result = Err(e.into());
            }
        }
        if let Some(rt) = self.raft_rt.take() {
            rt.shutdown().await;
        }
        result
    }
}

/// The SHA-256 of the CA certificate in `ca_pem`, if it parses.
fn ca_fingerprint(ca_pem: &str) -> Option<CaFingerprint> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .ok()
        .map(|der| CaFingerprint::of_der(&der))
}

/// The join listener of a member started from its data directory: on `join_listen`, or on
/// the listen address's IP with the port of `join_addr`. A directory without the CA key or
/// without `join_addr` (made before joins existed) gets no join listener.
fn join_parts(
    files: &MemberFiles,
    join_listen: Option<SocketAddr>,
    listen: SocketAddr,
) -> Result<Option<JoinParts>, MemberError> {
    let Some(ca_key_pem) = files.ca_key.clone() else {
        return Ok(None);
    };
    let listen = match (join_listen, files.cluster.join_addr.as_deref()) {
        (Some(a), _) => a,
        (None, None) => return Ok(None),
        (None, Some(join_addr)) => {
            let port = join_addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .ok_or_else(|| MemberError::Invalid {
                    what: "join address",
                    reason: format!("{join_addr:?} in cluster.json is not host:port"),
                })?;
            SocketAddr::new(listen.ip(), port)
        }
    };
    Ok(Some(JoinParts {
        listen,
        ca_key_pem,
        cluster: ClusterFacts {
            name: files.cluster.name.clone(),
            node_range: files.cluster.node_range,
            node_prefix: files.cluster.node_prefix,
            service_range: files.cluster.service_range,
            overlay: files.cluster.overlay,
        },
        seed_tokens: files.seed_tokens.clone(),
    }))
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

/// Now, in Unix nanoseconds.
fn unix_nanos_now() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
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
            join_addr: None,
            node_range: "10.200.0.0/16".parse().unwrap(),
            node_prefix: 24,
            service_range: crate::state::default_service_range(),
            overlay: Default::default(),
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
