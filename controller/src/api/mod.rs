//! The gRPC handlers, one file per service.
//!
//! Handlers convert requests and delegate; they hold no cluster logic.

pub mod control;
pub mod dispatch;
pub mod info;
pub mod join;
pub mod leadership;
pub(crate) mod linearizer;
pub mod relay;
pub(crate) mod store;

#[cfg(test)]
mod batch_tests;
#[cfg(test)]
pub(crate) mod control_tests;
#[cfg(test)]
mod dispatch_tests;
#[cfg(test)]
mod events_tests;
#[cfg(test)]
mod join_tests;
#[cfg(test)]
mod members_tests;
#[cfg(test)]
mod node_rm_tests;

pub use control::ControlService;
pub use dispatch::DispatchService;
pub use info::InfoService;
pub use join::JoinService;
pub use relay::Relay;
