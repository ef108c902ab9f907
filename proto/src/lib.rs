//! berth's gRPC contract.
//!
//! The `.proto` files in `proto/berth/v1/` are the source of truth; `build.rs` compiles
//! them with [protox](https://docs.rs/protox) (no system `protoc`) and generates the
//! prost messages and the tonic clients and servers into [`v1`]. This crate also holds
//! the small helpers and conversions every side shares, so that the controller, the
//! agent and the CLI agree on them.
//!
//! | `.proto` file | holds |
//! |---|---|
//! | `common.proto` | [`v1::VersionInfo`], [`v1::Empty`], [`v1::JoinRole`] |
//! | `container.proto` | [`v1::ContainerSpec`] and [`v1::ContainerStatus`], what an agent runs and reports |
//! | `info.proto` | the `Info` service: [`v1::info_client::InfoClient`], [`v1::info_server::Info`] |
//! | `cluster.proto` | the cluster state's wire form: [`v1::Service`], [`v1::Task`], [`v1::Node`] and their parts |
//! | `raft.proto` | the `Raft` service between controllers (openraft's messages; log entries in binary, [`v1::RaftEntry`]): [`v1::raft_client::RaftClient`], [`v1::raft_server::Raft`] |
//! | `control.proto` | the client-facing `Control` service (services, tasks, nodes, Raft status, membership, token rotation): [`v1::control_client::ControlClient`], [`v1::control_server::Control`] |
//! | `join.proto` | the `Join` service a node with a join token calls on a controller's join listener to get its certificate: [`v1::join_client::JoinClient`], [`v1::join_server::Join`] |

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod version;

pub use version::{API_VERSION, GIT_COMMIT, VERSION, version_info};

/// The protobuf runtime the messages are generated for, so that users can encode and decode
/// them (`prost::Message`) without naming a version of their own.
pub use prost;

/// Version 1 of the API, package `berth.v1`, as generated from `proto/berth/v1/*.proto`.
///
/// Enum fields are stored as `i32` on the wire; use the generated getters (for example
/// [`v1::PortMapping::protocol`]) to read them as enums: a value this build does not
/// know reads as the `UNSPECIFIED` variant.
// Generated: the `.proto` comments become the docs where present, and a oneof's variants are
// laid out as prost generates them (a boxed variant would change every caller).
#[allow(missing_docs, clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("berth.v1");
}

#[cfg(test)]
mod tests;
