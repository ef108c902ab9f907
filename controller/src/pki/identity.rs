//! Who a certificate belongs to: a [`Role`] and an id, written as the SAN URI
//! `berth://<role>/<id>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use x509_parser::extensions::GeneralName;

use super::error::{PkiError, excerpt};

/// The scheme and authority prefix of an identity URI.
const URI_PREFIX: &str = "berth://";
/// The longest id an identity may have.
const MAX_ID_LEN: usize = 128;

/// What a certificate holder may do in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An operator using the CLI: a TLS client only.
    Admin,
    /// A Raft member: serves the API and calls the other members.
    Controller,
    /// A node agent.
    Agent,
}

impl Role {
    /// The role's name as it appears in identity URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Controller => "controller",
            Role::Agent => "agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "controller" => Ok(Role::Controller),
            "agent" => Ok(Role::Agent),
            _ => Err(PkiError::UnknownRole { role: excerpt(s) }),
        }
    }
}

/// A certificate holder: its role and its id (a node id, or an admin's name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// What the holder may do.
    pub role: Role,
    /// The holder's id: 1 to 128 characters from `[A-Za-z0-9._-]`.
    pub id: String,
}

impl Identity {
    /// An identity, after checking the id.
    pub fn new(role: Role, id: impl Into<String>) -> Result<Self, PkiError> {
        let id = id.into();
        validate_id(&id)?;
        Ok(Identity { role, id })
    }

    /// The SAN URI that names this identity in a certificate.
    pub fn uri(&self) -> String {
        format!("{URI_PREFIX}{}/{}", self.role, self.id)
    }

    /// Reads an identity back from its SAN URI.
    pub fn from_uri(uri: &str) -> Result<Self, PkiError> {
        let bad = || PkiError::BadIdentityUri { uri: excerpt(uri) };
        let rest = uri.strip_prefix(URI_PREFIX).ok_or_else(bad)?;
        let (role, id) = rest.split_once('/').ok_or_else(bad)?;
        Identity::new(role.parse()?, id)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.id)
    }
}

fn validate_id(id: &str) -> Result<(), PkiError> {
    let reason = if id.is_empty() {
        "it is empty"
    } else if id.len() > MAX_ID_LEN {
        "it is longer than 128 characters"
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "only ASCII letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(PkiError::InvalidId {
        id: excerpt(id),
        reason,
    })
}

/// The identity named by a certificate's `berth://<role>/<id>` SAN URI.
///
/// This does not verify the certificate: call it on a certificate the TLS handshake has
/// already verified against the cluster CA.
pub fn peer_identity(cert_der: &[u8]) -> Result<Identity, PkiError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| PkiError::InvalidInput {
            what: "certificate",
            reason: e.to_string(),
        })?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::InvalidInput {
            what: "certificate subject alternative names",
            reason: e.to_string(),
        })?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(URI_PREFIX) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [uri] => Identity::from_uri(uri),
        _ => Err(PkiError::NoIdentity { found: uris.len() }),
    }
}

/// Allows the call if the identity's role is one of `allowed`.
pub fn authorize(identity: &Identity, allowed: &[Role]) -> Result<(), PkiError> {
    if allowed.contains(&identity.role) {
        return Ok(());
    }
    let allowed = allowed
        .iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    Err(PkiError::NotAllowed {
        role: identity.role,
        id: identity.id.clone(),
        allowed: if allowed.is_empty() {
            "nobody".to_owned()
        } else {
            allowed
        },
    })
}
