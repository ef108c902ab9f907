//! TLS for joining: a node that has a join token but no certificate yet.
//!
//! The joining node trusts no CA in advance. Its client configuration accepts a server
//! only if the chain it presents contains the CA certificate the token pins (by SHA-256)
//! and the server's certificate chains to that CA and is valid for the name dialled. The
//! join listener's server configuration asks for a client certificate but lets a client
//! without one finish the handshake: it must serve nothing but the join call.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, ServerConfig,
    SignatureScheme,
};

use super::ca::IssuedCert;
use super::error::PkiError;
use super::fingerprint::CaFingerprint;
use super::tls::{ALPN_H2, VERSIONS, provider, server_config_with};
use super::token::{JoinToken, TokenError};

/// The configuration for a controller's join listener: like
/// [`server_config`](super::server_config), but a client without a certificate is let
/// through; one with a certificate must still present one the CA issued.
pub fn join_server_config(
    ca_cert_pem: &str,
    own: &IssuedCert,
) -> Result<Arc<ServerConfig>, PkiError> {
    server_config_with(ca_cert_pem, own, true)
}

/// The configuration for a node joining with `token`: no client certificate; the server
/// must present the CA the token pins in its chain. After the handshake, the CA
/// certificate is the last of the connection's peer certificates.
pub fn join_client_config(token: &JoinToken) -> Result<Arc<ClientConfig>, PkiError> {
    let provider = provider();
    let verifier = PinnedCaVerifier {
        fingerprint: token.ca_fingerprint(),
        provider: provider.clone(),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Trusts the CA certificate with a given fingerprint, taken from the server's own chain.
#[derive(Debug)]
struct PinnedCaVerifier {
    fingerprint: CaFingerprint,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|cert| CaFingerprint::of_der(cert).ct_matches(&self.fingerprint))
            .ok_or_else(|| {
                let actual = intermediates
                    .last()
                    .map_or(CaFingerprint::of_der(&[]), |c| CaFingerprint::of_der(c));
                let err = PkiError::Token(TokenError::CaMismatch {
                    token: self.fingerprint,
                    actual,
                });
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    err,
                ))))
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?
            .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
