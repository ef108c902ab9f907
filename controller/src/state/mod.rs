//! The cluster state: its records ([`types`]), where they live in the replicated key-value
//! store ([`keys`]), the checks of a service spec ([`validate`]), node subnets
//! ([`subnets`]), and the pure decisions of an apply ([`apply_service`]).
//!
//! Everything here is pure: the caller reads records with their store versions, calls these
//! functions, and commits the result as one batch whose operations expect those versions
//! (optimistic concurrency twice over: the user's expected service version, checked here,
//! and the store's key versions, checked when the batch is applied).

pub mod network;
pub mod rollout;
pub mod subnets;
pub mod types;
pub mod validate;
pub mod wire;
mod wire_update;

use ipnet::Ipv4Net;

pub use types::*;
pub use validate::validate_spec;

/// How many earlier versions of a service are kept.
pub const HISTORY_LEN: usize = 10;

/// The keys of the records in the store.
pub mod keys {
    /// The cluster's own record.
    pub const CLUSTER: &str = "cluster";
    /// Prefix of the join tokens' stored forms ([`crate::pki::StoredToken`]: the SHA-256 of
    /// each secret), one per role: `tokens/agent`, `tokens/controller`.
    pub const TOKENS: &str = "tokens/";
    /// Prefix of every service.
    pub const SERVICES: &str = "services/";
    /// Prefix of every task.
    pub const TASKS: &str = "tasks/";
    /// Prefix of every node.
    pub const NODES: &str = "nodes/";
    /// Prefix of the node subnets' claims: `subnets/<network>/<prefix>` holds the id of the
    /// node the subnet was given to, written with `Expect::Absent` in the same batch as the
    /// node's record, so that the store itself keeps two nodes from getting one subnet.
    pub const SUBNETS: &str = "subnets/";
    /// Prefix of the services' VIP claims: `vips/<ip>` holds the service's name (see
    /// [`super::network`]).
    pub const VIPS: &str = "vips/";
    /// Prefix of the ingress ports' claims: `ingress/<tcp|udp>/<port>` holds the service's
    /// name.
    pub const INGRESS: &str = "ingress/";

    /// A service's key.
    pub fn service(name: &str) -> String {
        format!("{SERVICES}{name}")
    }
    /// A task's key.
    pub fn task(id: &str) -> String {
        format!("{TASKS}{id}")
    }
    /// A node's key.
    pub fn node(id: &str) -> String {
        format!("{NODES}{id}")
    }
    /// The key of the claim of a node subnet (`subnets/10.200.3.0/24`).
    pub fn subnet(net: &ipnet::Ipv4Net) -> String {
        format!("{SUBNETS}{}", net.trunc())
    }
    /// The key of the stored join token of `role`.
    pub fn token(role: crate::pki::Role) -> String {
        format!("{TOKENS}{role}")
    }
}

/// A decision that cannot be taken, in words the user can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    /// A spec field is invalid.
    #[error("service {service:?}: invalid {field}: {reason}")]
    Invalid {
        /// The service.
        service: String,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The user's expected version is not the current one.
    #[error(
        "service {service:?} is at version {actual}, not {expected}: someone else changed it; \
         read it again and re-apply"
    )]
    StaleVersion {
        /// The service.
        service: String,
        /// What the user expected.
        expected: u64,
        /// What it is.
        actual: u64,
    },
    /// The user expected a service that does not exist.
    #[error("service {service:?} does not exist (expected version {expected})")]
    NoSuchService {
        /// The service.
        service: String,
        /// What the user expected.
        expected: u64,
    },
    /// Node subnets cannot be cut this way.
    #[error("cannot cut /{prefix} node subnets from {range}: {reason}")]
    SubnetRange {
        /// The cluster range.
        range: Ipv4Net,
        /// The node prefix.
        prefix: u8,
        /// Why.
        reason: &'static str,
    },
    /// Another service publishes this ingress port already.
    #[error(
        "service {service:?}: port {port}/{protocol} is already published by service {owner:?}; \
         publish another port, or remove it from {owner:?} first"
    )]
    PortTaken {
        /// The service asking.
        service: String,
        /// The port.
        port: u16,
        /// `tcp` or `udp`.
        protocol: &'static str,
        /// The service holding it.
        owner: String,
    },
    /// No address or port of a range is free.
    #[error("service {service:?}: every {what} is taken: {hint}")]
    Exhausted {
        /// The service asking.
        service: String,
        /// What ran out.
        what: String,
        /// What to do.
        hint: &'static str,
    },
    /// Every node subnet is taken.
    #[error("every /{prefix} subnet of {range} is taken: widen the cluster range or remove nodes")]
    SubnetsExhausted {
        /// The cluster range.
        range: Ipv4Net,
        /// The node prefix.
        prefix: u8,
    },
}

/// The outcome of applying a spec to a service.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The service is new, at version 1.
    Created(Service),
    /// The spec changed; the service moved to a new version.
    Updated(Service),
    /// The spec is the same as the current one: nothing to commit.
    Unchanged(Service),
}

/// The spec of a scale: `spec` with `replicas` tasks. A global service has no replica count
/// to set.
pub fn scale_spec(spec: &ServiceSpec, replicas: u32) -> Result<ServiceSpec, StateError> {
    match spec.mode {
        ServiceMode::Global => Err(StateError::Invalid {
            service: spec.name.clone(),
            field: "replicas".to_owned(),
            reason: "a global service runs one task per eligible node and cannot be scaled"
                .to_owned(),
        }),
        ServiceMode::Replicated { .. } => {
            let scaled = ServiceSpec {
                mode: ServiceMode::Replicated { replicas },
                ..spec.clone()
            };
            validate_spec(&scaled)?;
            Ok(scaled)
        }
    }
}

/// Applies `spec` to the `current` service (if any). `expected` is the version the user
/// last read (`None`: apply whatever is there; `Some(0)`: the service must not exist yet).
/// The previous spec goes into the history (at most [`HISTORY_LEN`] kept).
pub fn apply_service(
    current: Option<&Service>,
    spec: ServiceSpec,
    expected: Option<u64>,
    now: i128,
) -> Result<Applied, StateError> {
    validate_spec(&spec)?;
    let actual = current.map_or(0, |s| s.version);
    if let Some(e) = expected
        && e != actual
    {
        return Err(match current {
            None => StateError::NoSuchService {
                service: spec.name,
                expected: e,
            },
            Some(_) => StateError::StaleVersion {
                service: spec.name,
                expected: e,
                actual,
            },
        });
    }
    let Some(cur) = current else {
        return Ok(Applied::Created(Service {
            spec,
            version: 1,
            created_at: now,
            updated_at: now,
            history: Vec::new(),
            vip: None,
            ingress: Vec::new(),
            update: None,
        }));
    };
    if cur.spec == spec {
        return Ok(Applied::Unchanged(cur.clone()));
    }
    let mut history = cur.history.clone();
    history.push(SpecVersion {
        version: cur.version,
        spec: cur.spec.clone(),
        replaced_at: now,
    });
    if history.len() > HISTORY_LEN {
        history.drain(..history.len() - HISTORY_LEN);
    }
    Ok(Applied::Updated(Service {
        version: cur.version + 1,
        created_at: cur.created_at,
        updated_at: now,
        history,
        vip: cur.vip,
        ingress: cur.ingress.clone(),
        // A change to what the tasks run starts a rollout at once (so that it can be paused
        // right after the apply); the orchestrator carries it out and finishes it.
        update: if cur.spec.same_tasks_as(&spec) {
            cur.update.clone()
        } else {
            Some(UpdateStatus {
                state: RolloutState::Updating,
                from_version: cur.version,
                to_version: cur.version + 1,
                started_at: now,
                completed_at: None,
                message: "update in progress".into(),
            })
        },
        spec,
    }))
}

#[cfg(test)]
mod tests;
