//! The exit codes of `berth`; see the crate documentation.

/// Success.
pub const OK: u8 = 0;
/// The command failed.
pub const ERROR: u8 = 1;
/// The command line is wrong.
pub const USAGE: u8 = 2;
