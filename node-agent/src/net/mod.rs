//! Node networking: the node bridge and each container's veth pair over netlink ([`link`]),
//! address management for the node's subnet ([`ipam`]), published ports ([`ports`]), the
//! firewall rules that publish them ([`firewall`]), the files a container sees under `/etc`
//! and Docker's link variables ([`files`]), and all of it put together per container
//! ([`node`]).

pub mod dns;
pub mod files;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod node;
pub mod overlay;
pub mod ports;

pub use node::{
    Attachment, NetConfig, NetError, NodeNet, Pending, Reconciled, SubnetChange, release_recorded,
};
