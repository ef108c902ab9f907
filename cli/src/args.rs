//! The command line: every command, argument and option of `berth`.

use clap::{Args, Parser, Subcommand};

use crate::output::OutputFormat;

/// `berth`'s arguments.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Run containers on a fleet of Linux hosts"
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
    /// Print berth's version.
    Version(VersionArgs),
}

/// `berth version`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct VersionArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_defaults_to_text() {
        let cli = Cli::try_parse_from(["berth", "version"]).expect("valid");
        assert_eq!(
            cli.command,
            Command::Version(VersionArgs {
                output: OutputFormat::Text
            })
        );
    }

    #[test]
    fn version_takes_an_output_format() {
        for args in [
            ["berth", "version", "-o", "json"],
            ["berth", "version", "--output", "json"],
        ] {
            let cli = Cli::try_parse_from(args).expect("valid");
            assert_eq!(
                cli.command,
                Command::Version(VersionArgs {
                    output: OutputFormat::Json
                })
            );
        }
    }

    #[test]
    fn usage_errors_are_rejected() {
        for args in [
            &["berth"][..],
            &["berth", "launch"],
            &["berth", "version", "-o", "yaml"],
            &["berth", "version", "extra"],
        ] {
            let err = Cli::try_parse_from(args).expect_err("invalid");
            assert!(err.use_stderr(), "{args:?} is a usage error");
        }
    }
}
