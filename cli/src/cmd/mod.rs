//! The commands, one file each, and [`run`], which dispatches to them.

pub mod local;
pub mod version;

use std::io::Write;

use crate::args::{Cli, Command};
use crate::error::CliError;

/// Runs `cli`'s command, writing its result to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), CliError> {
    match &cli.command {
        Command::Version(args) => version::run(args, out)?,
        Command::Up(args) => local::up(args, out)?,
        Command::Down(args) => local::down(args, out)?,
    }
    out.flush().map_err(CliError::Write)
}
