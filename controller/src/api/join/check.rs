//! The pure checks of a join: the request's fields, the token against the stored one, a
//! controller's id against the membership. No I/O: the handler reads the state and calls
//! these.

use berth_proto::v1::{JoinClusterRequest, JoinRole};

use super::error::{JoinError, token_refused};
use crate::pki::{JoinToken, Role, StoredToken, SubjectName};
use crate::raft::NodeId;

/// The most names a certificate may be asked for.
pub const MAX_HOSTNAMES: usize = 16;
/// The longest node name or host name accepted.
const MAX_NAME_LEN: usize = 253;

/// A request whose fields are well-formed (the token is not verified yet).
#[derive(Debug)]
pub(crate) struct Checked {
    /// The role the node joins as.
    pub role: Role,
    /// The token it presents.
    pub token: JoinToken,
    /// The names its certificate will carry.
    pub names: Vec<SubjectName>,
    /// Its name (agents).
    pub name: String,
    /// Where it is reached, `host:port` (may be empty for an agent).
    pub advertise: String,
    /// Its Raft id (controllers).
    pub controller_id: NodeId,
}

/// The role of a request, as the pki knows it.
pub(crate) fn role_of(role: JoinRole) -> Option<Role> {
    match role {
        JoinRole::Agent => Some(Role::Agent),
        JoinRole::Controller => Some(Role::Controller),
        JoinRole::Unspecified => None,
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> JoinError {
    JoinError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The host of `host:port`, checked: a port from 1 to 65535 and a host that is an IP
/// address or a host name (IPv6 in brackets).
pub(crate) fn host_of(addr: &str) -> Result<&str, String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{addr:?} is not host:port"))?;
    match port.parse::<u16>() {
        Ok(p) if p != 0 => {}
        _ => return Err(format!("{addr:?} has no valid port (1-65535)")),
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    check_host(host).map_err(|reason| format!("{addr:?}: {reason}"))?;
    Ok(host)
}

/// An IP address or a DNS name.
fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if host.len() > MAX_NAME_LEN || !crate::state::validate::is_host_name(host) {
        return Err(format!("{host:?} is not a host name or an IP address"));
    }
    Ok(())
}

/// Checks every field of `request` but the CSR (which the CA checks when it signs).
pub(crate) fn check_request(request: &JoinClusterRequest) -> Result<Checked, JoinError> {
    let role = role_of(request.role()).ok_or_else(|| {
        invalid(
            "role",
            "give the role the node joins as: agent or controller",
        )
    })?;
    let token = JoinToken::parse(&request.token).map_err(|e| match e {
        crate::pki::PkiError::Token(t) => JoinError::MalformedToken(t),
        other => JoinError::Issue(other),
    })?;
    if request.csr_pem.trim().is_empty() {
        return Err(invalid(
            "csr_pem",
            "the certificate signing request is empty",
        ));
    }
    let advertise = request.advertise.trim().to_owned();
    let advertised_host = match (role, advertise.is_empty()) {
        (Role::Controller, true) => {
            return Err(invalid(
                "advertise",
                "a controller must say where the other members reach it (host:port)",
            ));
        }
        (_, true) => None,
        (_, false) => Some(host_of(&advertise).map_err(|r| invalid("advertise", r))?),
    };
    let name = request.name.trim().to_owned();
    if role == Role::Agent {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(invalid(
                "name",
                "an agent's name must be 1 to 253 characters",
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(invalid(
                "name",
                format!("{name:?}: only letters, digits, '.', '-' and '_' are allowed"),
            ));
        }
    }
    if request.hostnames.len() > MAX_HOSTNAMES {
        return Err(invalid(
            "hostnames",
            format!(
                "{} names, more than the limit of {MAX_HOSTNAMES}",
                request.hostnames.len()
            ),
        ));
    }
    let mut hosts: Vec<&str> = Vec::new();
    for h in &request.hostnames {
        check_host(h).map_err(|r| invalid("hostnames", r))?;
        hosts.push(h);
    }
    if let Some(h) = advertised_host {
        hosts.push(h);
    }
    let mut names: Vec<SubjectName> = Vec::new();
    for h in hosts {
        let n = SubjectName::parse(h);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let controller_id = request.controller_id;
    if role == Role::Controller && controller_id == 0 {
        return Err(invalid(
            "controller_id",
            "a controller must give its Raft id (1 or more)",
        ));
    }
    Ok(Checked {
        role,
        token,
        names,
        name,
        advertise,
        controller_id,
    })
}

/// Verifies the presented token against the cluster's stored token of the role the node
/// joins as (`None`: not seeded yet).
pub(crate) fn verify_token(
    stored: Option<&StoredToken>,
    presented: &JoinToken,
    joining_as: Role,
) -> Result<(), JoinError> {
    // A token of the other role is named as such even before the stored one is read.
    if presented.role() != joining_as {
        return Err(JoinError::WrongRole(crate::pki::TokenError::WrongRole {
            token_role: presented.role(),
            expected: joining_as,
        }));
    }
    let stored = stored.ok_or(JoinError::NoToken { role: joining_as })?;
    stored.verify(presented, joining_as).map_err(token_refused)
}

/// Refuses a controller id that the membership holds at another address. The same id at the
/// same address is a controller joining again (say, after losing its data directory).
pub(crate) fn check_controller_id<'a>(
    id: NodeId,
    advertise: &str,
    mut members: impl Iterator<Item = (NodeId, &'a str)>,
) -> Result<(), JoinError> {
    match members.find(|(m, _)| *m == id) {
        Some((_, existing)) if existing != advertise => Err(JoinError::IdTaken {
            id,
            existing: existing.to_owned(),
            requested: advertise.to_owned(),
        }),
        _ => Ok(()),
    }
}
