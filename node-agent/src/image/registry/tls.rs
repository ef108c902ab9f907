//! The TLS client configuration for a registry: rustls with the ring provider, trusting the
//! system's CA bundle plus the registry's own CA when one is configured.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use super::error::RegistryError;

/// Debian's bundle of the system's trusted CAs (the `ca-certificates` package).
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A client configuration trusting the system's CAs and `ca_pem`. `registry` names the
/// registry in errors.
pub(crate) fn client_config(
    registry: &str,
    ca_pem: Option<&str>,
) -> Result<Arc<ClientConfig>, RegistryError> {
    let bad = |reason: String| RegistryError::Config {
        registry: registry.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    if let Ok(bundle) = std::fs::read(SYSTEM_BUNDLE) {
        // A certificate of the system bundle that rustls cannot use is skipped, as every
        // other TLS client does.
        let certs = CertificateDer::pem_slice_iter(&bundle).filter_map(Result::ok);
        roots.add_parsable_certificates(certs);
    }
    if let Some(pem) = ca_pem {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("the CA certificate is not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(bad("the CA file holds no PEM certificate".to_owned()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad(format!("the CA certificate cannot be used: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
