//! The gRPC handlers, one file per service.
//!
//! Handlers convert requests and delegate; they hold no cluster logic.

pub mod info;

pub use info::InfoService;
