//! `berth-controller`: parses the command line, sets up tracing and hands over to the
//! [`berth_controller`] library. Exit codes: 0 success, 1 error, 2 usage error.

use std::env::VarError;
use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use berth_controller::cmd::{self, Cli};
use berth_controller::telemetry;
use clap::Parser;

/// jemalloc rather than glibc's malloc: see the workspace `Cargo.toml`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start: a background thread gives freed pages back to
/// the system after 1 s (by default they linger 10 s and are purged only on allocation), so
/// the controller's RSS follows what it holds after a burst of writes.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    // Usage errors, `--help` and `--version` are printed by clap, which exits (2 / 0).
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Nothing more can be done if standard error is gone too.
            let _ = writeln!(io::stderr(), "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let rust_log = match std::env::var("RUST_LOG") {
        Ok(value) => Some(value),
        Err(VarError::NotPresent) => None,
        Err(VarError::NotUnicode(_)) => bail!("RUST_LOG is not valid UTF-8"),
    };
    telemetry::init(rust_log.as_deref()).context("cannot set up logging")?;
    cmd::run(cli, &mut io::stdout().lock())?;
    Ok(())
}
