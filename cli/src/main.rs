//! `berth`: parses the command line and hands over to the [`berth_cli`] library.
//! The exit codes are documented there.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use berth_cli::{Cli, Io, exit};
use clap::Parser;

fn main() -> ExitCode {
    // A bug must not show the user a Rust panic message or a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let _ = writeln!(
            io::stderr(),
            "error: berth hit an internal error{at}; this is a bug, please report it with the command you ran"
        );
    }));
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
    let stderr = io::stderr();
    let mut io = Io {
        out: &mut io::stdout().lock(),
        err_is_terminal: stderr.is_terminal(),
        err: &mut stderr.lock(),
        env: std::env::vars().collect(),
    };
    match berth_cli::run(&cli, &mut io) {
        Ok(code) => ExitCode::from(code),
        // A reader that stopped early (`berth events | head -1`) is not a failure.
        Err(berth_cli::CliError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::from(exit::OK)
        }
        Err(err) => {
            // Nothing more can be done if standard error is gone too.
            let _ = writeln!(io.err, "error: {}", berth_cli::error::render(&err));
            ExitCode::from(berth_cli::exit_code(&cli, &err))
        }
    }
}
