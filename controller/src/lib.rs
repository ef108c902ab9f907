//! berth's controller.
//!
//! The controller holds the Raft-replicated cluster state, schedules tasks onto node
//! agents and serves the gRPC API for the CLI and the agents, over mutual TLS.
//!
//! Layout: [`api`] holds the gRPC handlers, one file per service, which convert and
//! delegate; [`server`] assembles them and runs a server on a listener; [`cmd`] is the
//! command line of the `berth-controller` binary; [`telemetry`] sets up tracing.
//! [`raft`] is Raft: the durable storage (openraft over redb: the log and a replicated
//! key-value state machine with optimistic versions), the network to the other members and
//! the gRPC `Raft` service they call; [`transport`] serves tonic over mutual TLS and dials
//! peers the same way (no plaintext listener); [`state`] is the cluster state kept in the
//! store (records, checks, the pure decisions of an apply); [`pki`] is the cluster CA, node
//! certificates, join tokens and the rustls configurations; [`init`] creates a new
//! cluster's first data directory; [`member`] runs a member (its mutual-TLS listener and its
//! join listener); [`join`] is the joining node's side of a join with a token (the
//! controller's side is [`api::join`]); [`api::dispatch`] is the agents' session with the
//! leader (register, heartbeat, assignments, status reports); [`scheduler`] places pending
//! tasks on nodes (filters, spread, placement preferences), as pure code; [`reconcile`]
//! holds the pure reconcilers (replicated, global, node rules); [`orchestrator`] is the
//! leader's loop that runs them with the scheduler and commits their plans.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod cmd;
pub mod init;
pub mod join;
pub mod member;
pub mod orchestrator;
pub mod pki;
pub mod raft;
pub mod reconcile;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod test_support;
pub mod transport;

pub use server::{ServeError, UnixEndpoint, serve_on_unix};
