//! The gRPC handlers, one file per service.
//!
//! Handlers convert requests and delegate; they hold no cluster logic.

pub mod control;
pub mod info;

#[cfg(test)]
mod control_tests;
#[cfg(test)]
mod members_tests;

pub use control::ControlService;
pub use info::InfoService;
