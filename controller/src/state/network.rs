//! A service's place on the cluster network: its virtual IP and its ingress ports, both
//! claimed in the store so that no two services get one.
//!
//! * A VIP is picked from the service range by a hash of the service's name, then the next
//!   address while one is claimed (`vips/<ip>` holds the name of the service that has it).
//!   Hashing spreads concurrent creates (an `ApplyServices` of hundreds) over the range, so
//!   their claims rarely collide; when two do, the store refuses the second batch and its
//!   apply reads again.
//! * An ingress port is claimed cluster-wide (`ingress/<proto>/<port>`), since the routing
//!   mesh publishes it on every node. A spec that leaves the published port to the cluster
//!   gets one from [`INGRESS_AUTO`] (Swarm's range), kept across updates of the service.
//!
//! Pure: the caller reads the claims and commits the result.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use super::{Protocol, Service};

/// Where ingress ports left to the cluster are taken from (Swarm's dynamic range).
pub const INGRESS_AUTO: RangeInclusive<u16> = 30000..=32767;

/// The key of the claim of a VIP.
pub fn vip_key(ip: Ipv4Addr) -> String {
    format!("{}{ip}", super::keys::VIPS)
}

/// The key of the claim of an ingress port.
pub fn ingress_key(protocol: Protocol, port: u16) -> String {
    let p = match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    format!("{}{p}/{port}", super::keys::INGRESS)
}

/// Whether `range` can hold service VIPs next to the node range.
pub fn check_range(range: Ipv4Net, node_range: Ipv4Net) -> Result<(), String> {
    if range.prefix_len() > 30 {
        return Err(format!(
            "{range} is too small for service addresses: use a /30 or larger"
        ));
    }
    if range.contains(&node_range.network()) || node_range.contains(&range.network()) {
        return Err(format!(
            "{range} overlaps the node range {node_range}: service addresses and container \
             addresses must not mix"
        ));
    }
    Ok(())
}

fn hash(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]))
}

/// The `attempt`-th candidate VIP of service `name` in `range` (network and broadcast
/// addresses excluded); `None` once every address has been tried.
pub fn vip_candidate(range: Ipv4Net, name: &str, attempt: u64) -> Option<Ipv4Addr> {
    let size = 1u64 << (32 - u32::from(range.prefix_len()));
    let hosts = size.saturating_sub(2).max(1);
    if attempt >= hosts {
        return None;
    }
    let offset = (hash(name) % hosts + attempt) % hosts + 1;
    let base = u32::from(range.network());
    Some(Ipv4Addr::from(base + u32::try_from(offset).ok()?))
}

/// The `attempt`-th candidate for an ingress port of service `name` left to the cluster;
/// `None` once the range is exhausted.
pub fn port_candidate(name: &str, target: u16, protocol: Protocol, attempt: u64) -> Option<u16> {
    let start = u64::from(*INGRESS_AUTO.start());
    let len = u64::from(*INGRESS_AUTO.end()) - start + 1;
    if attempt >= len {
        return None;
    }
    let seed = hash(&format!("{name}/{target}/{protocol:?}"));
    u16::try_from(start + (seed % len + attempt) % len).ok()
}

/// The published port the cluster chose for an ingress port of `previous` with this
/// target and protocol, so that an update keeps it.
pub fn kept_auto_port(previous: Option<&Service>, target: u16, protocol: Protocol) -> Option<u16> {
    let previous = previous?;
    let chosen_by_cluster = previous.spec.ports.iter().any(|p| {
        p.is_ingress() && p.published.is_none() && p.target == target && p.protocol == protocol
    });
    if !chosen_by_cluster {
        return None;
    }
    previous
        .ingress
        .iter()
        .find(|p| p.target == target && p.protocol == protocol)
        .and_then(|p| p.published)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn vip_candidates_stay_in_the_range_and_cover_it() {
        let range = net("10.201.0.0/29");
        let mut seen: Vec<Ipv4Addr> = (0..6)
            .map(|a| vip_candidate(range, "web", a).unwrap())
            .collect();
        assert_eq!(vip_candidate(range, "web", 6), None);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 6, "every host address once: {seen:?}");
        assert!(
            seen.iter()
                .all(|ip| range.contains(ip) && *ip != range.network() && *ip != range.broadcast())
        );
        // Stable for a name, different for most names.
        assert_eq!(
            vip_candidate(net("10.201.0.0/16"), "web", 0),
            vip_candidate(net("10.201.0.0/16"), "web", 0)
        );
        assert_ne!(
            vip_candidate(net("10.201.0.0/16"), "web", 0),
            vip_candidate(net("10.201.0.0/16"), "redis", 0)
        );
    }

    #[test]
    fn port_candidates_stay_in_the_auto_range() {
        let mut seen = std::collections::HashSet::new();
        for a in 0..2768 {
            let p = port_candidate("web", 80, Protocol::Tcp, a).unwrap();
            assert!(INGRESS_AUTO.contains(&p));
            seen.insert(p);
        }
        assert_eq!(seen.len(), 2768);
        assert_eq!(port_candidate("web", 80, Protocol::Tcp, 2768), None);
    }

    #[test]
    fn ranges_that_cannot_hold_vips_are_refused() {
        assert!(check_range(net("10.201.0.0/16"), net("10.200.0.0/16")).is_ok());
        let e = check_range(net("10.0.0.0/8"), net("10.200.0.0/16")).unwrap_err();
        assert!(e.contains("overlaps"), "{e}");
        let e = check_range(net("10.201.0.0/31"), net("10.200.0.0/16")).unwrap_err();
        assert!(e.contains("too small"), "{e}");
    }
}
