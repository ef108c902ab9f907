//! rustls configurations for mutual TLS inside the cluster.
//!
//! Both sides trust only the cluster CA and present a certificate it issued; the server
//! refuses a client without one. The ring provider is passed explicitly, since no
//! process-wide default provider is installed. ALPN is `h2`, for gRPC.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

use super::ca::IssuedCert;
use super::error::PkiError;
use super::identity::{Identity, peer_identity};

/// TLS 1.3, and 1.2 for peers that lack it.
pub(super) static VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The ALPN protocol: HTTP/2, which carries gRPC.
pub(super) const ALPN_H2: &[u8] = b"h2";

/// A server configuration presenting `own` (with the CA certificate in the chain) and
/// requiring a client certificate issued by the CA `ca_cert_pem`.
pub fn server_config(ca_cert_pem: &str, own: &IssuedCert) -> Result<Arc<ServerConfig>, PkiError> {
    server_config_with(ca_cert_pem, own, false)
}

/// [`server_config`], letting a client without a certificate finish the handshake when
/// `allow_unauthenticated` (one with a certificate must still present one the CA issued).
pub(super) fn server_config_with(
    ca_cert_pem: &str,
    own: &IssuedCert,
    allow_unauthenticated: bool,
) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = provider();
    let ca = parse_cert(ca_cert_pem, "CA certificate PEM")?;
    let builder = WebPkiClientVerifier::builder_with_provider(roots(&ca)?, provider.clone());
    let verifier = if allow_unauthenticated {
        builder.allow_unauthenticated().build()?
    } else {
        builder.build()?
    };
    let (leaf, key) = parse_own(own)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![leaf, ca], key)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration trusting only the CA `ca_cert_pem` and presenting `own`.
pub fn client_config(ca_cert_pem: &str, own: &IssuedCert) -> Result<Arc<ClientConfig>, PkiError> {
    let ca = parse_cert(ca_cert_pem, "CA certificate PEM")?;
    let (leaf, key) = parse_own(own)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots(&ca)?)
        .with_client_auth_cert(vec![leaf], key)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The identity of a TLS peer from the chain it presented (after the handshake verified
/// it), e.g. from `rustls::CommonState::peer_certificates`.
pub fn peer_identity_from_certs(
    certs: Option<&[CertificateDer<'_>]>,
) -> Result<Identity, PkiError> {
    let leaf = certs
        .and_then(|certs| certs.first())
        .ok_or(PkiError::NoPeerCertificate)?;
    peer_identity(leaf)
}

pub(super) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone())?;
    Ok(Arc::new(roots))
}

pub(super) fn parse_cert(
    pem: &str,
    what: &'static str,
) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::InvalidInput {
        what,
        reason: e.to_string(),
    })
}

pub(super) fn parse_own(
    own: &IssuedCert,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), PkiError> {
    let leaf = parse_cert(&own.cert_pem, "certificate PEM")?;
    let key = PrivateKeyDer::from_pem_slice(own.key_pem.as_bytes()).map_err(|e| {
        PkiError::InvalidInput {
            what: "private key PEM",
            reason: e.to_string(),
        }
    })?;
    Ok((leaf, key))
}
