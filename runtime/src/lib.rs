//! berth's privileged layer: everything that needs root and talks to the kernel to run one
//! container — control groups, namespaces, the overlay root file system, capabilities,
//! users — and the per-container monitor process that supervises it.
//!
//! The node agent (`berth-agent`) resolves a container into a [`spec::ContainerSpec`], writes
//! it into the container's state directory ([`paths::ContainerDir`]) and starts
//! `berth-monitor` for it; the monitor ([`monitor`]) starts the container ([`spawn`],
//! [`init`], [`rootfs`]), owns its stdio and log ([`logs`]), applies its restart policy and
//! records how it ended ([`state`]).

pub mod caps;
pub mod cgroup;
pub mod error;
pub mod init;
pub mod logs;
pub mod monitor;
pub mod net;
pub mod paths;
pub mod rootfs;
pub mod spawn;
pub mod spec;
pub mod state;
pub mod time;
pub mod timing;
pub mod tty;
pub mod user;

pub use error::RuntimeError;
