//! The leader's relay between clients and nodes: what `Control.Logs`, `Control.Exec` and the
//! image calls need from a node travels over the node's own session (see
//! `proto/berth/v1/node_io.proto`).
//!
//! A node's `Dispatcher.Requests` stream is [`Relay::connect`]ed: the relay keeps a sender
//! per node. [`Relay::open`] sends the node a [`NodeRequest`] and waits until the node
//! answers it by opening `Dispatcher.Attach` ([`Relay::attach`]); it then hands the caller
//! both directions of that call ([`Attached`]). Nothing here is replicated: a new leader
//! starts with no node connected, and nodes connect again as they register with it.
//!
//! - `broker.rs`: the relay itself;
//! - `error.rs`: [`RelayError`].

mod broker;
mod error;
#[cfg(test)]
mod tests;

pub use broker::{Attached, ConnectedNode, OPEN_TIMEOUT, REQUEST_QUEUE, Relay, UpStream};
pub use error::RelayError;
