//! `berth`, the command line of the berth container orchestrator.
//!
//! The binary (`src/main.rs`) only parses the arguments with [`Cli`], calls [`run`] and
//! turns the outcome into an exit code; everything else lives here, so it can be tested
//! without spawning a process.
//!
//! # Exit codes
//!
//! See [`exit`] (and `docs/cli.md`): 0 success, 1 failure (`diff`: changes), 2 a wrong
//! command line (`diff`: the comparison failed), 3 `apply` timed out waiting, 130 `apply`
//! interrupted while waiting.
//!
//! # Layout
//!
//! [`args`] defines the command line; [`cmd`] has one file per command; [`context`] reads
//! and writes `~/.berth/config`; [`client`] connects to the controllers over mutual TLS and
//! turns gRPC errors into messages; [`output`] renders results as aligned tables, JSON or
//! YAML (pure functions, golden-tested); [`progress`] follows services until they
//! converge; [`error`] holds the error type and its one-line rendering; [`servicefile`]
//! reads service files into the specs sent to the cluster.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod args;
pub mod client;
pub mod cmd;
pub mod context;
pub mod error;
pub mod exit;
pub mod local;
pub mod output;
pub mod progress;
pub mod servicefile;

pub use args::Cli;
pub use cmd::{Io, exit_code, run};
pub use error::CliError;
