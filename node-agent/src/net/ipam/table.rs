//! The allocation table itself: a pure value with no I/O, serialised as the IPAM state file.
//!
//! Usable addresses are the subnet's hosts minus the gateway (the first host, the bridge's).
//! Allocation is round-robin from the last address handed out, so an address just released is
//! not reused at once (Docker's behaviour).

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The on-disk table: `{"subnet": "10.88.0.0/16", "last": "10.88.0.7", "allocations": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Table {
    /// The subnet the table was written for.
    pub(crate) subnet: Ipv4Net,
    /// The last address handed out; the next search starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last: Option<Ipv4Addr>,
    /// Owner (container id) to address.
    #[serde(default)]
    pub(crate) allocations: BTreeMap<String, Ipv4Addr>,
}

/// The range of addresses that may be handed out, as integers, inclusive.
fn usable(subnet: Ipv4Net) -> (u32, u32) {
    let network = u32::from(subnet.network());
    let broadcast = u32::from(subnet.broadcast());
    // network + 1 is the gateway; callers ensure the prefix is at most /30.
    (network + 2, broadcast - 1)
}

impl Table {
    /// An empty table for `subnet`.
    pub(crate) fn new(subnet: Ipv4Net) -> Self {
        Table {
            subnet,
            last: None,
            allocations: BTreeMap::new(),
        }
    }

    /// Checks a table read from disk: every address usable and held by one owner only.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let (first, last) = usable(self.subnet);
        let mut seen = HashSet::new();
        for (owner, addr) in &self.allocations {
            if owner.is_empty() {
                return Err(format!("empty owner holds {addr}"));
            }
            let n = u32::from(*addr);
            if n < first || n > last {
                return Err(format!(
                    "{owner} holds {addr}, which is not an assignable address of {}",
                    self.subnet
                ));
            }
            if !seen.insert(n) {
                return Err(format!("{addr} is allocated twice (again to {owner})"));
            }
        }
        Ok(())
    }

    /// Returns `owner`'s address, allocating the next free one if it has none; `None` when the
    /// subnet is full.
    pub(crate) fn allocate(&mut self, owner: &str) -> Option<Ipv4Addr> {
        if let Some(addr) = self.allocations.get(owner) {
            return Some(*addr);
        }
        let (first, last) = usable(self.subnet);
        let size = u64::from(last - first) + 1;
        if self.allocations.len() as u64 >= size {
            return None;
        }
        let used: HashSet<u32> = self.allocations.values().map(|a| u32::from(*a)).collect();
        let start = match self.last.map(u32::from) {
            Some(n) if n >= first && n < last => n + 1,
            _ => first,
        };
        let mut candidate = start;
        for _ in 0..size {
            if !used.contains(&candidate) {
                let addr = Ipv4Addr::from(candidate);
                self.allocations.insert(owner.to_owned(), addr);
                self.last = Some(addr);
                return Some(addr);
            }
            candidate = if candidate == last {
                first
            } else {
                candidate + 1
            };
        }
        None
    }

    /// Releases `owner`'s address, returning it if there was one.
    pub(crate) fn release(&mut self, owner: &str) -> Option<Ipv4Addr> {
        self.allocations.remove(owner)
    }

    /// Drops every allocation whose owner is not in `live`, returning them.
    pub(crate) fn reconcile(&mut self, live: &HashSet<String>) -> Vec<(String, Ipv4Addr)> {
        let dead: Vec<String> = self
            .allocations
            .keys()
            .filter(|owner| !live.contains(*owner))
            .cloned()
            .collect();
        dead.into_iter()
            .filter_map(|owner| self.allocations.remove(&owner).map(|addr| (owner, addr)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn skips_network_gateway_and_broadcast_and_exhausts() {
        let mut t = Table::new(net("10.0.0.0/29"));
        let got: Vec<_> = (0..5)
            .map(|i| t.allocate(&format!("c{i}")).unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        assert_eq!(t.allocate("c5"), None);
        assert_eq!(t.allocate("c0"), Some("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn round_robin_wraps_and_skips_used() {
        let mut t = Table::new(net("10.0.0.0/29"));
        for i in 0..5 {
            t.allocate(&format!("c{i}"));
        }
        t.release("c1"); // .3
        t.release("c3"); // .5
        assert_eq!(t.allocate("n1"), Some("10.0.0.3".parse().unwrap()));
        assert_eq!(t.allocate("n2"), Some("10.0.0.5".parse().unwrap()));
    }

    #[test]
    fn validate_rejects_reserved_and_duplicate_addresses() {
        let mut t = Table::new(net("10.0.0.0/29"));
        t.allocations
            .insert("a".into(), "10.0.0.1".parse().unwrap());
        assert!(t.validate().unwrap_err().contains("10.0.0.1"));
        let mut t = Table::new(net("10.0.0.0/29"));
        t.allocations
            .insert("a".into(), "10.0.0.2".parse().unwrap());
        t.allocations
            .insert("b".into(), "10.0.0.2".parse().unwrap());
        assert!(t.validate().unwrap_err().contains("twice"));
    }
}
