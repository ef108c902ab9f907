//! berth's node agent: the image store, the containers it runs through `berth-monitor`, and
//! the node-local command line (`berth-agent`).

pub mod cli;
pub mod container;
mod durable;
pub mod image;
pub mod net;
pub mod node;
pub mod serve;
