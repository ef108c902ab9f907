//! The command line of the `berth-controller` binary: arguments and what each command
//! does. The binary only parses, sets up tracing and calls [`run`].

use std::io::{self, Write};

use berth_proto::v1::VersionInfo;
use clap::{Parser, Subcommand};

/// `berth-controller`'s arguments.
#[derive(Debug, Parser)]
#[command(
    name = "berth-controller",
    version,
    about = "berth's replicated controller"
)]
#[command(propagate_version = true, subcommand_required = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Print the controller's version.
    Version,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The output could not be written.
    #[error("cannot write to standard output")]
    Write(#[source] io::Error),
}

/// Runs `cli`'s command, writing its output to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), CmdError> {
    match cli.command {
        Command::Version => {
            writeln!(out, "{}", version_line(&berth_proto::version_info())).map_err(CmdError::Write)
        }
    }
}

/// `berth-controller <version> (api <api version>)`.
pub fn version_line(info: &VersionInfo) -> String {
    format!(
        "berth-controller {} (api {})",
        info.version, info.api_version
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_line_names_the_binary_and_the_api() {
        let info = VersionInfo {
            version: "1.2.3".to_owned(),
            git_commit: "abc".to_owned(),
            api_version: "v1".to_owned(),
        };
        assert_eq!(version_line(&info), "berth-controller 1.2.3 (api v1)");
    }

    #[test]
    fn version_command_writes_one_line() {
        let cli = Cli::try_parse_from(["berth-controller", "version"]).expect("valid");
        let mut out = Vec::new();
        run(&cli, &mut out).expect("writing to a Vec works");
        let expected = format!("berth-controller {} (api v1)\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(String::from_utf8(out).expect("UTF-8"), expected);
    }

    #[test]
    fn a_subcommand_is_required() {
        assert!(Cli::try_parse_from(["berth-controller"]).is_err());
        assert!(Cli::try_parse_from(["berth-controller", "serve"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
