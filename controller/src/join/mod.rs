//! The joining node's side of a join: make a key pair and a CSR, call `JoinCluster` on a
//! controller's join listener over TLS that trusts only the CA the token pins, check the
//! answer (the CA is the pinned one, the certificate is for the node's own key and names the
//! role asked for) and hand back the certificate with the key, which never left the node.
//!
//! [`join_as_agent`] is what an agent calls; `controller.rs` writes a joining controller's
//! data directory and, once it runs, asks the cluster to add it
//! ([`spawn_self_add`]).

use berth_proto::v1::join_client::JoinClient;
use berth_proto::v1::{JoinClusterRequest, JoinRole};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::pki::{
    Identity, IssuedCert, JoinToken, PkiError, Role, generate_csr, join_client_config,
    peer_identity, verify_ca_fingerprint,
};
use crate::raft::NodeId;
use crate::transport::{MtlsConnector, TransportError};

mod controller;

pub use controller::{
    ControllerJoin, JOIN_PENDING_FILE, PendingJoin, join_controller, spawn_self_add,
};

/// Why a join failed on the joining node.
#[derive(Debug, thiserror::Error)]
pub enum JoinClientError {
    /// The join address is not `host:port`.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The controller at `addr` presented a CA that is not the one the token pins: it is not
    /// of the token's cluster (or someone is in the middle). Nothing was sent to it.
    #[error("the controller at {addr} is not trusted: {source}")]
    Untrusted {
        /// The join address.
        addr: String,
        /// The mismatch.
        #[source]
        source: PkiError,
    },
    /// The controller refused the join, or could not be reached (the whole cause is in the
    /// message).
    #[error("joining through {addr} failed: {message}")]
    Refused {
        /// The join address.
        addr: String,
        /// What the controller said or why the call failed, with every cause.
        message: String,
        /// The gRPC status (its message and causes are in `message`).
        status: tonic::Status,
    },
    /// The controller did not answer in time (a cluster without a leader holds joins).
    #[error(
        "joining through {addr}: no answer within {}s; is the cluster up and does it have a leader?",
        .after.as_secs()
    )]
    TimedOut {
        /// The join address.
        addr: String,
        /// The limit.
        after: std::time::Duration,
    },
    /// A key, a CSR or a check of the answer failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The answer is not what was asked for.
    #[error("the controller's answer is not usable: {0}")]
    BadAnswer(String),
    /// The data directory could not be written.
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
}

/// What a node asks for.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The join token.
    pub token: JoinToken,
    /// The role it joins as (the token's).
    pub role: Role,
    /// Its name (an agent's hostname).
    pub name: String,
    /// Extra DNS names or IP addresses for its certificate.
    pub hostnames: Vec<String>,
    /// `host:port` it is reached at (required for a controller).
    pub advertise: String,
    /// A controller's Raft id.
    pub controller_id: Option<NodeId>,
}

/// What a node got.
#[derive(Debug, Clone)]
pub struct Joined {
    /// Its identity, as its certificate names it.
    pub identity: Identity,
    /// Its certificate and its own key.
    pub cert: IssuedCert,
    /// The cluster CA, PEM (checked against the token).
    pub ca_pem: String,
    /// The CA key, PEM (controllers only).
    pub ca_key_pem: Option<String>,
    /// The cluster's name.
    pub cluster_name: String,
    /// The controllers, id and `host:port`.
    pub controllers: Vec<(NodeId, String)>,
    /// The node range (CIDR) and prefix.
    pub node_range: String,
    /// The node subnet prefix length.
    pub node_prefix: u32,
}

/// The status's message with every cause below it (a TLS failure is only in the causes).
fn describe(status: &tonic::Status) -> String {
    let mut message = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = e.source();
    }
    message
}

/// The pki's own error inside a TLS failure of the join handshake (the pinned CA check),
/// which rustls wraps in an I/O error.
fn pinned_ca_failure(status: &tonic::Status) -> Option<PkiError> {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let tls = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .or_else(|| e.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) = tls
            && let Some(PkiError::Token(t)) = other.0.downcast_ref::<PkiError>()
        {
            return Some(PkiError::Token(t.clone()));
        }
        source = e.source();
    }
    None
}

/// How long a join waits for the controller's answer (connecting included).
const JOIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Joins through the join listener at `addr` (`host:port`; the controller's certificate
/// must be valid for that host).
pub async fn join_cluster(addr: &str, request: JoinRequest) -> Result<Joined, JoinClientError> {
    let (csr_pem, key_pem) = generate_csr()?;
    let channel = MtlsConnector::new(join_client_config(&request.token)?).channel(addr)?;
    let role = match request.role {
        Role::Agent => JoinRole::Agent,
        Role::Controller => JoinRole::Controller,
        Role::Admin => return Err(JoinClientError::BadAnswer("admins do not join".into())),
    };
    let message = JoinClusterRequest {
        token: request.token.to_string(),
        role: role.into(),
        csr_pem,
        name: request.name.clone(),
        hostnames: request.hostnames.clone(),
        advertise: request.advertise.clone(),
        controller_id: request.controller_id.unwrap_or(0),
    };
    let answer = tokio::time::timeout(JOIN_LIMIT, JoinClient::new(channel).join_cluster(message))
        .await
        .map_err(|_| JoinClientError::TimedOut {
            addr: addr.to_owned(),
            after: JOIN_LIMIT,
        })?
        .map_err(|status| match pinned_ca_failure(&status) {
            Some(source) => JoinClientError::Untrusted {
                addr: addr.to_owned(),
                source,
            },
            None => JoinClientError::Refused {
                addr: addr.to_owned(),
                message: describe(&status),
                status,
            },
        })?
        .into_inner();
    let bad = |what: String| JoinClientError::BadAnswer(what);
    let ca_der = CertificateDer::from_pem_slice(answer.ca_pem.as_bytes())
        .map_err(|e| bad(format!("the CA certificate: {e}")))?;
    verify_ca_fingerprint(&request.token, &ca_der)?;
    let cert_der = CertificateDer::from_pem_slice(answer.cert_pem.as_bytes())
        .map_err(|e| bad(format!("the certificate: {e}")))?;
    let identity = peer_identity(&cert_der)?;
    if identity.role != request.role || identity.id != answer.node_id {
        return Err(bad(format!(
            "the certificate names {identity}, not {} {}",
            request.role, answer.node_id
        )));
    }
    let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| bad(e.to_string()))?;
    let (_, x509) =
        x509_parser::parse_x509_certificate(&cert_der).map_err(|e| bad(e.to_string()))?;
    if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(bad("the certificate is not for this node's key".into()));
    }
    Ok(Joined {
        identity,
        cert: IssuedCert {
            cert_pem: answer.cert_pem,
            key_pem,
        },
        ca_pem: answer.ca_pem,
        ca_key_pem: Some(answer.ca_key_pem).filter(|k| !k.is_empty()),
        cluster_name: answer.cluster_name,
        controllers: answer
            .controllers
            .into_iter()
            .map(|m| (m.id, m.addr))
            .collect(),
        node_range: answer.node_range,
        node_prefix: answer.node_prefix,
    })
}

/// Joins as an agent named `name` (its hostname) through the join listener at `addr`;
/// returns its certificate with its key (generated here, never sent) and the CA, PEM.
pub async fn join_as_agent(
    addr: &str,
    token: &JoinToken,
    name: &str,
) -> Result<(IssuedCert, String), JoinClientError> {
    let joined = join_cluster(
        addr,
        JoinRequest {
            token: token.clone(),
            role: Role::Agent,
            name: name.to_owned(),
            hostnames: Vec::new(),
            advertise: String::new(),
            controller_id: None,
        },
    )
    .await?;
    Ok((joined.cert, joined.ca_pem))
}
