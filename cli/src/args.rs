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
    /// Start a single-node cluster on this host (one controller, one node agent) in the
    /// background and wait until it is ready; starts only what is missing.
    Up(UpArgs),
    /// Stop the single-node cluster: its containers and host set-up removed, its data kept
    /// (the next `up` brings the services back) unless `--purge`.
    Down(DownArgs),
}

/// Where the single-node cluster lives (`up` and `down`).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LocalArgs {
    /// Its data directory.
    #[arg(long, env = "BERTH_DATA_DIR", default_value = crate::local::DEFAULT_DATA_DIR)]
    pub data_dir: std::path::PathBuf,
    /// The controller's address (its join listener takes the next port).
    #[arg(long, default_value = crate::local::DEFAULT_ADDR)]
    pub addr: String,
    /// The cgroup parent of the node's containers.
    #[arg(long, env = "BERTH_CGROUP_PARENT", default_value = "berth")]
    pub cgroup_parent: String,
}

/// `berth up`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct UpArgs {
    /// Where the cluster lives.
    #[command(flatten)]
    pub local: LocalArgs,
    /// How long to wait for the cluster to be ready, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// `berth down`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DownArgs {
    /// Where the cluster lives.
    #[command(flatten)]
    pub local: LocalArgs,
    /// Also remove the data directory (services, certificates, images): the next `up`
    /// creates a new cluster.
    #[arg(long)]
    pub purge: bool,
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
