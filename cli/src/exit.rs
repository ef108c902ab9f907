//! The exit codes of `berth`, in one place; `docs/cli.md` lists them too.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (`diff`: no change) |
//! | 1 | the command failed (`diff`: there are changes) |
//! | 2 | the command line is wrong (`diff`: the comparison failed, as `diff(1)`) |
//! | 3 | `apply` sent the services but they did not all run before `--timeout` |
//! | 130 | `apply` was interrupted (Ctrl-C) while waiting; the services were applied |

/// Success; `diff`: nothing would change.
pub const OK: u8 = 0;
/// The command failed; `diff`: something would change.
pub const ERROR: u8 = 1;
/// The command line is wrong; `diff`: the comparison itself failed.
pub const USAGE: u8 = 2;
/// `berth diff` found changes.
pub const DIFF_CHANGES: u8 = 1;
/// `berth diff` could not compare.
pub const DIFF_FAILED: u8 = 2;
/// `berth apply` sent the services, but they did not converge in time.
pub const NOT_CONVERGED: u8 = 3;
/// `berth apply` was interrupted while waiting (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;
