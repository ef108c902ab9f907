//! Node networking: address management for the node's subnet ([`ipam`]), published ports
//! ([`ports`]) and the firewall rules that publish them ([`firewall`]). Bridges and veths over
//! netlink come next (issue 3).

pub mod firewall;
pub mod ipam;
pub mod link;
pub mod ports;
