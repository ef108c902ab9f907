//! The error every command returns, and how it is shown to the user.

use std::error::Error;
use std::io;
use std::path::PathBuf;

use crate::client::ClientError;
use crate::context::ContextError;
use crate::exit;
use crate::output::OutputError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The result could not be rendered.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The result could not be written to standard output.
    #[error("cannot write the output")]
    Write(#[source] io::Error),
    /// `up` or `down` failed.
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
    /// The configuration or the context is wrong.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The cluster could not be reached or refused a call.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] io::Error),
    /// A service file (or folder) could not be read.
    #[error("cannot read the service file {}; check the path given to -f", path.display())]
    ReadFile {
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A folder given to -f holds no service file.
    #[error("the folder {} holds no *.yaml or *.yml file; give a file or another folder", path.display())]
    EmptyDir {
        /// The folder.
        path: PathBuf,
    },
    /// The service files have errors (already printed).
    #[error(
        "the service files have {count} error(s), shown above; nothing was sent to the cluster"
    )]
    InvalidFiles {
        /// How many.
        count: usize,
    },
    /// A spec the parser accepted is refused by the cluster's own checks.
    #[error("service `{service}` is not valid: {message}; fix the service file")]
    InvalidSpec {
        /// The service.
        service: String,
        /// The check that failed.
        message: String,
    },
    /// `apply` sent the services but some did not converge.
    #[error(
        "not every service runs after {timeout}:\n{details}\nthe services were applied; see `berth ps SERVICE` for their tasks"
    )]
    NotConverged {
        /// The timeout, as given.
        timeout: String,
        /// One paragraph per service not converged.
        details: String,
    },
    /// `apply` was interrupted while waiting.
    #[error(
        "interrupted while waiting; the services were applied and the cluster goes on: `berth ps` shows their tasks"
    )]
    Interrupted,
    /// A node name matches no node (or several).
    #[error("{0}")]
    Node(String),
    /// Some of several operations failed (each error was printed).
    #[error("could not {what} {}: see the errors above", names.join(", "))]
    SomeFailed {
        /// The operation.
        what: &'static str,
        /// What it failed for.
        names: Vec<String>,
    },
    /// `image push` failed.
    #[error("image push: {0}")]
    Push(String),
    /// The event stream ended.
    #[error("the event stream ended: {0}; run `berth events` again")]
    StreamEnded(String),
}

impl CliError {
    /// The exit code for this error (see [`crate::exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NotConverged { .. } => exit::NOT_CONVERGED,
            CliError::Interrupted => exit::INTERRUPTED,
            _ => exit::ERROR,
        }
    }
}

/// `err` and its causes on one line, outermost first, separated by `": "`; this is
/// what follows `error: ` on standard error.
pub fn render(err: &dyn Error) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        let text = err.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = err.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_joins_the_causes() {
        let err = CliError::Write(io::Error::other("disk full"));
        assert_eq!(render(&err), "cannot write the output: disk full");
    }

    #[test]
    fn render_of_a_transparent_error_names_each_cause_once() {
        let json = serde_json::from_str::<u8>("x").expect_err("not JSON");
        let cause = json.to_string();
        let err = CliError::from(OutputError::Json(json));
        assert_eq!(
            render(&err),
            format!("cannot encode the result as JSON: {cause}")
        );
    }

    #[test]
    fn not_converged_has_its_own_exit_code() {
        let err = CliError::NotConverged {
            timeout: "5m".into(),
            details: String::new(),
        };
        assert_eq!(err.exit_code(), exit::NOT_CONVERGED);
        assert_eq!(CliError::Node("x".into()).exit_code(), exit::ERROR);
    }
}
