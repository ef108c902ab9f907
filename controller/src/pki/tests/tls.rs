//! Real TLS handshakes over 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::super::{
    ClusterCa, Identity, IssuedCert, Role, SubjectName, client_config, peer_identity_from_certs,
    server_config,
};
use super::{LOCALHOST, der_of, issue, test_ca};

/// What each side of a handshake saw: the peer's identity, or why it failed.
pub(super) struct Outcome {
    /// The client's identity as the server saw it (none if it sent no certificate).
    pub(super) server: Result<Option<Identity>, String>,
    /// The server's identity as the client saw it, once the server said "ok".
    pub(super) client: Result<Identity, String>,
    /// The certificate chain the server presented (DER), if the handshake finished.
    pub(super) server_chain: Vec<Vec<u8>>,
}

/// Connects `client` to a server running `server` on 127.0.0.1. The server writes "ok"
/// after a successful handshake; the client reads it, so a client refused by the server
/// (which TLS 1.3 reports only after the client's handshake finishes) sees an error.
pub(super) async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Outcome {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
        let identity = match conn.peer_certificates() {
            None => None,
            certs => Some(peer_identity_from_certs(certs).map_err(|e| e.to_string())?),
        };
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(identity)
    });
    let client_side = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(client)
            .connect(ServerName::IpAddress(LOCALHOST.into()), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 2];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"ok");
        let (_, conn) = tls.get_ref();
        let chain = conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.to_vec())
            .collect::<Vec<_>>();
        let identity =
            peer_identity_from_certs(conn.peer_certificates()).map_err(|e| e.to_string())?;
        Ok::<_, String>((identity, chain))
    };
    let limit = Duration::from_secs(10);
    let client = tokio::time::timeout(limit, client_side)
        .await
        .expect("client timed out");
    let (client, server_chain) = match client {
        Ok((identity, chain)) => (Ok(identity), chain),
        Err(e) => (Err(e), Vec::new()),
    };
    let server = tokio::time::timeout(limit, server_task)
        .await
        .expect("server timed out")
        .unwrap();
    Outcome {
        server,
        client,
        server_chain,
    }
}

pub(super) fn id(role: Role, id: &str) -> Identity {
    Identity::new(role, id).unwrap()
}

fn server_cfg(ca: &ClusterCa, own: &IssuedCert) -> Arc<ServerConfig> {
    server_config(ca.cert_pem(), own).unwrap()
}

fn client_cfg(ca: &ClusterCa, own: &IssuedCert) -> Arc<ClientConfig> {
    client_config(ca.cert_pem(), own).unwrap()
}

#[tokio::test]
async fn valid_certificates_connect_and_see_each_other() {
    let ca = test_ca("prod");
    let server = issue(&ca, Role::Controller, "ctl-1");
    for (role, name) in [
        (Role::Agent, "node-1"),
        (Role::Admin, "alice"),
        (Role::Controller, "ctl-2"),
    ] {
        let client = issue(&ca, role, name);
        let out = handshake(server_cfg(&ca, &server), client_cfg(&ca, &client)).await;
        assert_eq!(out.server.unwrap(), Some(id(role, name)));
        assert_eq!(out.client.unwrap(), id(Role::Controller, "ctl-1"));
    }
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let ca = test_ca("prod");
    let server = issue(&ca, Role::Controller, "ctl-1");
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let mut anonymous =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    anonymous.alpn_protocols = vec![b"h2".to_vec()];
    let out = handshake(server_cfg(&ca, &server), Arc::new(anonymous)).await;
    let err = out.server.unwrap_err();
    assert!(err.contains("peer sent no certificates"), "{err}");
    assert!(out.client.is_err());
}

/// Another CA with another name (an unknown issuer) or with the same name as the cluster
/// CA (a bad signature): both must be refused.
const OTHER_CA_NAMES: [(&str, &str); 2] = [("other", "UnknownIssuer"), ("prod", "BadSignature")];

#[tokio::test]
async fn client_with_certificate_from_another_ca_is_refused() {
    let ca = test_ca("prod");
    let server = issue(&ca, Role::Controller, "ctl-1");
    for (name, expected) in OTHER_CA_NAMES {
        let intruder = issue(&test_ca(name), Role::Admin, "alice");
        let out = handshake(server_cfg(&ca, &server), client_cfg(&ca, &intruder)).await;
        let err = out.server.unwrap_err();
        assert!(err.contains(expected), "{name}: {err}");
        assert!(out.client.is_err());
    }
}

#[tokio::test]
async fn server_with_certificate_from_another_ca_is_refused() {
    let ca = test_ca("prod");
    let client = issue(&ca, Role::Agent, "node-1");
    for (name, expected) in OTHER_CA_NAMES {
        let impostor = issue(&test_ca(name), Role::Controller, "ctl-1");
        let out = handshake(server_cfg(&ca, &impostor), client_cfg(&ca, &client)).await;
        let err = out.client.unwrap_err();
        assert!(err.contains(expected), "{name}: {err}");
        assert!(out.server.is_err());
    }
}

#[tokio::test]
async fn admin_certificate_cannot_serve() {
    let ca = test_ca("prod");
    let admin = issue(&ca, Role::Admin, "alice");
    let client = issue(&ca, Role::Agent, "node-1");
    let out = handshake(server_cfg(&ca, &admin), client_cfg(&ca, &client)).await;
    let err = out.client.unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn server_name_is_checked() {
    let ca = test_ca("prod");
    let elsewhere = ca
        .issue(
            &id(Role::Controller, "ctl-9"),
            &[SubjectName::parse("10.9.9.9")],
            Duration::from_secs(3600),
        )
        .unwrap();
    let client = issue(&ca, Role::Agent, "node-1");
    let out = handshake(server_cfg(&ca, &elsewhere), client_cfg(&ca, &client)).await;
    let err = out.client.unwrap_err();
    assert!(err.contains("not valid for name \"127.0.0.1\""), "{err}");
}

#[tokio::test]
async fn certificates_from_a_reloaded_ca_chain_to_it() {
    let ca = test_ca("prod");
    let (cert_pem, key_pem) = ca.to_pem();
    let reloaded = ClusterCa::from_pem(&cert_pem, &key_pem).unwrap();
    let server = issue(&reloaded, Role::Controller, "ctl-1");
    let client = issue(&ca, Role::Agent, "node-1");
    let out = handshake(server_cfg(&ca, &server), client_cfg(&reloaded, &client)).await;
    assert_eq!(out.server.unwrap(), Some(id(Role::Agent, "node-1")));
    assert_eq!(out.client.unwrap(), id(Role::Controller, "ctl-1"));
    assert_eq!(der_of(reloaded.cert_pem()), ca.cert_der().to_vec());
}

#[test]
fn configs_refuse_bad_pem() {
    let ca = test_ca("prod");
    let own = issue(&ca, Role::Agent, "node-1");
    let err = server_config("nonsense", &own).unwrap_err();
    assert!(err.to_string().contains("CA certificate PEM"), "{err}");
    let bad_key = IssuedCert {
        cert_pem: own.cert_pem.clone(),
        key_pem: "nonsense".into(),
    };
    let err = client_config(ca.cert_pem(), &bad_key).unwrap_err();
    assert!(err.to_string().contains("private key PEM"), "{err}");
    let other = issue(&test_ca("x"), Role::Agent, "node-1");
    let mismatched = IssuedCert {
        cert_pem: own.cert_pem.clone(),
        key_pem: other.key_pem,
    };
    assert!(server_config(ca.cert_pem(), &mismatched).is_err());
}
