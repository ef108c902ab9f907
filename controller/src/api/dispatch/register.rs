//! `Register`: record what the node says about itself, mark it READY, give it a container
//! subnet if it has none, and start a session.
//!
//! A subnet is given once and kept: the node's record holds it, and a claim
//! `subnets/<cidr>` naming the node is written with `Expect::Absent` in the same batch, so
//! the store refuses a second node the same subnet even across a change of leader. On the
//! leader, subnets being written are reserved in memory until their write is answered, so
//! concurrent first registrations pick different subnets instead of conflicting.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use berth_proto::v1::{RegisterRequest, RegisterResponse};
use ipnet::Ipv4Net;
use tracing::info;

use super::error::DispatchError;
use super::{Inner, now_wall};
use crate::api::store::{self, Written};
use crate::pki::random_id;
use crate::raft::{Expect, Op, blocking};
use crate::state::{
    Availability, ClusterInfo, Node, NodeResources, NodeStatus, OverlayMode, keys, subnets,
};

/// How many read-decide-write rounds a registration tries.
const ATTEMPTS: usize = 5;
/// The longest hostname.
const MAX_HOSTNAME: usize = 253;
/// The most labels.
const MAX_LABELS: usize = 64;
/// The longest label key.
const MAX_LABEL_KEY: usize = 253;
/// The longest label value.
const MAX_LABEL_VALUE: usize = 1024;
/// The longest agent version.
const MAX_AGENT_VERSION: usize = 128;
/// The most running tasks listed.
const MAX_RUNNING: usize = 10_000;

/// A registration's facts, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Facts {
    pub hostname: String,
    pub address: IpAddr,
    pub labels: BTreeMap<String, String>,
    pub resources: NodeResources,
    pub agent_version: Option<String>,
    pub running: usize,
}

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Checks a `RegisterRequest`, naming the first bad field.
pub(crate) fn check_register(r: &RegisterRequest) -> Result<Facts, DispatchError> {
    if r.hostname.is_empty()
        || r.hostname.len() > MAX_HOSTNAME
        || r.hostname.contains(char::is_whitespace)
        || !printable(&r.hostname)
    {
        return Err(DispatchError::invalid(
            "hostname",
            format!(
                "{:?} must be 1 to {MAX_HOSTNAME} bytes without spaces",
                truncated(&r.hostname)
            ),
        ));
    }
    let address: IpAddr = r.address.parse().map_err(|_| {
        DispatchError::invalid(
            "address",
            format!("{:?} is not an IP address", truncated(&r.address)),
        )
    })?;
    if address.is_unspecified() || address.is_multicast() {
        return Err(DispatchError::invalid(
            "address",
            format!("{address} cannot be a node's address"),
        ));
    }
    if r.labels.len() > MAX_LABELS {
        return Err(DispatchError::invalid(
            "labels",
            format!("{} labels, more than {MAX_LABELS}", r.labels.len()),
        ));
    }
    for (k, v) in &r.labels {
        if k.is_empty() || k.len() > MAX_LABEL_KEY || !printable(k) {
            return Err(DispatchError::invalid(
                "labels",
                format!(
                    "key {:?} must be 1 to {MAX_LABEL_KEY} printable bytes",
                    truncated(k)
                ),
            ));
        }
        if v.len() > MAX_LABEL_VALUE || !printable(v) {
            return Err(DispatchError::invalid(
                format!("labels[{k}]"),
                format!("the value must be at most {MAX_LABEL_VALUE} printable bytes"),
            ));
        }
    }
    if !r.cpus.is_finite() || r.cpus < 0.0 {
        return Err(DispatchError::invalid(
            "cpus",
            format!("{} is not a CPU count", r.cpus),
        ));
    }
    if r.agent_version.len() > MAX_AGENT_VERSION || !printable(&r.agent_version) {
        return Err(DispatchError::invalid(
            "agent_version",
            format!("must be at most {MAX_AGENT_VERSION} printable bytes"),
        ));
    }
    if r.running_tasks.len() > MAX_RUNNING {
        return Err(DispatchError::invalid(
            "running_tasks",
            format!("{} ids, more than {MAX_RUNNING}", r.running_tasks.len()),
        ));
    }
    Ok(Facts {
        hostname: r.hostname.clone(),
        address,
        labels: r
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        resources: NodeResources {
            cpus: r.cpus,
            memory_bytes: r.memory_bytes,
        },
        agent_version: (!r.agent_version.is_empty()).then(|| r.agent_version.clone()),
        running: r.running_tasks.len(),
    })
}

/// At most 64 characters of `s`, for error messages.
pub(crate) fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The node's record after a registration with `facts` at `now` (Unix nanoseconds): READY,
/// heard from now, with `subnet`; its availability is kept (a new record is ACTIVE), and so are
/// labels an administrator added (the agent's own labels are set over them).
pub(crate) fn registered(
    current: Option<&Node>,
    id: &str,
    facts: &Facts,
    subnet: Ipv4Net,
    now: i128,
) -> Node {
    Node {
        id: id.to_owned(),
        hostname: facts.hostname.clone(),
        address: facts.address.to_string(),
        // Labels an administrator added (`UpdateNode`) stay; the agent's own are set again.
        labels: current
            .map(|n| n.labels.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(facts.labels.clone())
            .collect(),
        resources: facts.resources,
        status: NodeStatus::Ready,
        availability: current.map_or(Availability::Active, |n| n.availability),
        last_seen: Some(now),
        subnet: Some(subnet),
        agent_version: facts.agent_version.clone(),
    }
}

/// Whether writing `new` over `old` can be skipped: the same record, except a `last_seen`
/// less than `interval_nanos` newer.
pub(crate) fn needs_no_write(old: &Node, new: &Node, interval_nanos: i128) -> bool {
    let recent = match (old.last_seen, new.last_seen) {
        (Some(o), Some(n)) => n.saturating_sub(o) < interval_nanos,
        _ => false,
    };
    recent
        && Node {
            last_seen: new.last_seen,
            ..old.clone()
        } == *new
}

/// A subnet reserved in memory while its claim is being written; released on drop.
struct Reservation<'a> {
    inner: &'a Inner,
    net: Ipv4Net,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.inner.reserved().remove(&self.net);
    }
}

impl Inner {
    /// `Register` for `node` on the leader.
    pub(crate) async fn register(
        &self,
        node: &str,
        request: &RegisterRequest,
    ) -> Result<RegisterResponse, DispatchError> {
        let facts = check_register(request)?;
        self.linearize().await?;
        let key = keys::node(node);
        let interval =
            i128::try_from(self.settings.last_seen_interval.as_nanos()).unwrap_or(i128::MAX);
        let mut done = None;
        for _ in 0..ATTEMPTS {
            let current: Option<(u64, Node)> = store::read(&self.reader, &key).await?;
            // A node is made by its join (or removed with its record): a certificate alone,
            // without a record, is not a member.
            if current.is_none() {
                return Err(DispatchError::UnknownNode {
                    node: node.to_owned(),
                });
            }
            let existing = current.as_ref().and_then(|(_, n)| n.subnet);
            let (subnet, reservation) = match existing {
                Some(net) => (net, None),
                None => {
                    let r = self.reserve_subnet(node).await?;
                    (r.net, Some(r))
                }
            };
            let record = registered(
                current.as_ref().map(|(_, n)| n),
                node,
                &facts,
                subnet,
                now_wall(),
            );
            if let Some((_, old)) = &current
                && needs_no_write(old, &record, interval)
            {
                done = Some(subnet);
                break;
            }
            let mut ops = vec![Op::Put {
                value: store::encode(&key, &record)?,
                key: key.clone(),
                expect: current
                    .as_ref()
                    .map_or(Expect::Absent, |(v, _)| Expect::Version(*v)),
            }];
            if let Some(r) = &reservation {
                let claim = keys::subnet(&r.net);
                ops.push(Op::Put {
                    value: store::encode(&claim, &node)?,
                    key: claim,
                    expect: Expect::Absent,
                });
            }
            match self.write(ops).await? {
                Written::Applied => {
                    done = Some(subnet);
                    break;
                }
                Written::Conflict { .. } => continue,
            }
        }
        let subnet = done.ok_or(DispatchError::Contended {
            key,
            attempts: ATTEMPTS,
        })?;
        let session_id = random_id().map_err(|e| {
            DispatchError::invalid("session", format!("cannot make a session id: {e}"))
        })?;
        self.sessions()
            .register(session_id.clone(), node, subnet, Instant::now(), now_wall());
        info!(
            node,
            hostname = %facts.hostname,
            address = %facts.address,
            %subnet,
            running = facts.running,
            "node registered"
        );
        let cluster = store::read::<ClusterInfo>(&self.reader, keys::CLUSTER)
            .await?
            .map(|(_, c)| c);
        let (service_range, overlay) = cluster.map_or_else(
            || {
                (
                    crate::state::default_service_range(),
                    OverlayMode::default(),
                )
            },
            |c| (c.service_range, c.overlay),
        );
        Ok(RegisterResponse {
            node_id: node.to_owned(),
            subnet: subnet.to_string(),
            session_id,
            heartbeat_period_ms: self.settings.period_ms(),
            missed_heartbeats: self.settings.missed_heartbeats,
            cluster_range: self.node_range.to_string(),
            service_range: service_range.to_string(),
            overlay: overlay.as_str().to_owned(),
        })
    }

    /// Picks a free subnet for `node` and reserves it until the reservation drops.
    async fn reserve_subnet(&self, node: &str) -> Result<Reservation<'_>, DispatchError> {
        let reader = self.reader.clone();
        let (claims, records) =
            blocking(move || Ok((reader.list(keys::SUBNETS)?, reader.list(keys::NODES)?)))
                .await
                .map_err(crate::api::control::ControlError::from)?;
        let mut taken: BTreeSet<Ipv4Net> = claims
            .iter()
            .filter_map(|(k, _, _)| k.strip_prefix(keys::SUBNETS)?.parse().ok())
            .collect();
        taken.extend(
            records
                .iter()
                .filter_map(|(_, _, bytes)| serde_json::from_slice::<Node>(bytes).ok()?.subnet),
        );
        let mut reserved = self.reserved();
        taken.extend(reserved.iter().copied());
        let net =
            subnets::allocate(self.node_range, self.node_prefix, &taken).map_err(|source| {
                DispatchError::Subnet {
                    node: node.to_owned(),
                    source,
                }
            })?;
        reserved.insert(net);
        Ok(Reservation { inner: self, net })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RegisterRequest {
        RegisterRequest {
            hostname: "node-1".into(),
            address: "10.0.0.7".into(),
            labels: [("disk".to_owned(), "ssd".to_owned())].into(),
            cpus: 4.0,
            memory_bytes: 8 << 30,
            agent_version: "0.1.0".into(),
            running_tasks: vec![],
        }
    }

    #[test]
    fn a_good_registration_is_checked_into_facts() {
        let f = check_register(&request()).unwrap();
        assert_eq!(f.address.to_string(), "10.0.0.7");
        assert_eq!(f.labels["disk"], "ssd");
        assert_eq!(f.agent_version.as_deref(), Some("0.1.0"));
    }

    /// A change to a good request, and the field it breaks.
    type Case = (fn(&mut RegisterRequest), &'static str);

    #[test]
    fn bad_registrations_name_the_field() {
        let cases: Vec<Case> = vec![
            (|r| r.hostname.clear(), "hostname"),
            (|r| r.hostname = "a b".into(), "hostname"),
            (|r| r.address = "node-1:7000".into(), "address"),
            (|r| r.address = "0.0.0.0".into(), "address"),
            (|r| r.cpus = f64::NAN, "cpus"),
            (|r| r.cpus = -1.0, "cpus"),
            (
                |r| {
                    r.labels = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
                },
                "labels",
            ),
            (
                |r| {
                    r.labels.insert(String::new(), "x".into());
                },
                "labels",
            ),
            (|r| r.agent_version = "v".repeat(129), "agent_version"),
        ];
        for (change, field) in cases {
            let mut r = request();
            change(&mut r);
            let e = check_register(&r).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {field}")), "{field}: {e}");
        }
    }

    #[test]
    fn a_registration_keeps_availability_and_skips_needless_writes() {
        let facts = check_register(&request()).unwrap();
        let net: Ipv4Net = "10.200.4.0/24".parse().unwrap();
        let first = registered(None, "n1", &facts, net, 100);
        assert_eq!(first.availability, Availability::Active);
        assert_eq!(first.status, NodeStatus::Ready);
        let mut drained = first.clone();
        drained.availability = Availability::Drain;
        let again = registered(Some(&drained), "n1", &facts, net, 150);
        assert_eq!(again.availability, Availability::Drain);
        assert!(needs_no_write(&drained, &again, 100));
        assert!(!needs_no_write(&drained, &again, 10), "last_seen is due");
        let moved = registered(
            Some(&drained),
            "n1",
            &Facts {
                hostname: "other".into(),
                ..facts
            },
            net,
            150,
        );
        assert!(!needs_no_write(&drained, &moved, 100));
        let mut down = drained.clone();
        down.status = NodeStatus::Down;
        assert!(!needs_no_write(&down, &again, 100));
    }

    #[test]
    fn a_registration_keeps_labels_an_administrator_added_under_the_agents_own() {
        let facts = check_register(&request()).unwrap();
        let net: Ipv4Net = "10.200.4.0/24".parse().unwrap();
        let mut current = registered(None, "n1", &facts, net, 100);
        current.labels.insert("zone".into(), "a".into());
        for k in facts.labels.keys() {
            current.labels.insert(k.clone(), "overridden".into());
        }
        let again = registered(Some(&current), "n1", &facts, net, 150);
        assert_eq!(again.labels.get("zone").map(String::as_str), Some("a"));
        for (k, v) in &facts.labels {
            assert_eq!(
                again.labels.get(k),
                Some(v),
                "the agent's label {k} is set again"
            );
        }
    }
}
