//! `berth`: parses the command line and hands over to the [`berth_cli`] library.
//! The exit codes are documented there.

use std::io::{self, Write};
use std::process::ExitCode;

use berth_cli::{Cli, exit};
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // `--help` and `--version` arrive here too, as "errors" that go to stdout.
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    match berth_cli::run(&cli, &mut io::stdout().lock()) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            // Nothing more can be done if standard error is gone too.
            let _ = writeln!(io::stderr(), "error: {}", berth_cli::error::render(&err));
            ExitCode::from(exit::ERROR)
        }
    }
}
