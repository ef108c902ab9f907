//! Node subnets: each node gets one subnet of a fixed prefix length from the cluster range.

use std::collections::BTreeSet;

use ipnet::Ipv4Net;

use super::StateError;

/// The first subnet of length `prefix` inside `range` that is not in `taken`.
pub fn allocate(
    range: Ipv4Net,
    prefix: u8,
    taken: &BTreeSet<Ipv4Net>,
) -> Result<Ipv4Net, StateError> {
    let subnets = range.subnets(prefix).map_err(|_| StateError::SubnetRange {
        range,
        prefix,
        reason: "the node prefix must be longer than the range's",
    })?;
    if prefix > 30 {
        return Err(StateError::SubnetRange {
            range,
            prefix,
            reason: "a node subnet must be at most a /30 (a gateway and a container)",
        });
    }
    subnets
        .into_iter()
        .find(|s| !taken.contains(s))
        .ok_or(StateError::SubnetsExhausted { range, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn first_free_subnet_in_order_and_exhaustion() {
        let range = net("10.200.0.0/22");
        let mut taken = BTreeSet::new();
        let mut got = Vec::new();
        for _ in 0..4 {
            let s = allocate(range, 24, &taken).unwrap();
            taken.insert(s);
            got.push(s.to_string());
        }
        assert_eq!(
            got,
            [
                "10.200.0.0/24",
                "10.200.1.0/24",
                "10.200.2.0/24",
                "10.200.3.0/24"
            ]
        );
        let e = allocate(range, 24, &taken).unwrap_err().to_string();
        assert!(e.contains("10.200.0.0/22") && e.contains("/24"), "{e}");
        taken.remove(&net("10.200.1.0/24"));
        assert_eq!(allocate(range, 24, &taken).unwrap(), net("10.200.1.0/24"));
    }

    #[test]
    fn impossible_prefixes_are_refused() {
        assert!(allocate(net("10.0.0.0/24"), 16, &BTreeSet::new()).is_err());
        assert!(allocate(net("10.0.0.0/24"), 31, &BTreeSet::new()).is_err());
    }
}
