//! How to reach one registry: TLS, credentials.

use std::fmt;

/// How to talk to one registry host.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Plain HTTP. Without it every request is HTTPS, and a registry that answers in plain
    /// HTTP fails the TLS handshake.
    pub insecure: bool,
    /// A PEM CA certificate (or several) trusted for this registry, besides the system's
    /// (`/etc/ssl/certs/ca-certificates.crt`).
    pub ca_pem: Option<String>,
    /// The user for Basic authentication and for the token service.
    pub username: Option<String>,
    /// The user's password.
    pub password: Option<String>,
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("insecure", &self.insecure)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl RegistryConfig {
    /// The `user:password` pair, when both are set.
    pub(crate) fn credentials(&self) -> Option<(&str, &str)> {
        Some((self.username.as_deref()?, self.password.as_deref()?))
    }
}
