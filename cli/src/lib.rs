//! `berth`, the command line of the berth container orchestrator.
//!
//! The binary (`src/main.rs`) only parses the arguments with [`Cli`], calls [`run`] and
//! turns the outcome into an exit code; everything else lives here, so it can be tested
//! without spawning a process.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | [`exit::OK`] (0) | success, including `--help` and `--version` |
//! | [`exit::ERROR`] (1) | the command failed; standard error says `error: <message>` |
//! | [`exit::USAGE`] (2) | the command line is wrong (unknown command or option, missing argument); clap says what and how to use it |
//!
//! # Layout
//!
//! [`args`] defines the command line; [`cmd`] has one file per command; [`output`]
//! renders results as text or JSON; [`error`] holds the error type and its one-line
//! rendering; [`servicefile`] reads service files into the specs sent to the cluster.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod args;
pub mod cmd;
pub mod error;
pub mod exit;
pub mod local;
pub mod output;
pub mod servicefile;

pub use args::Cli;
pub use cmd::run;
pub use error::CliError;
