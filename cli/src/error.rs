//! The error every command returns, and how it is shown to the user.

use std::error::Error;
use std::io;

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
}

/// `err` and its causes on one line, outermost first, separated by `": "`; this is
/// what follows `error: ` on standard error.
pub fn render(err: &dyn Error) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        line.push_str(": ");
        line.push_str(&err.to_string());
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
}
