//! `berth version`: the version of this client.
//!
//! The JSON form nests the client's version under `client`, so that the controller's
//! can be added beside it later without changing what scripts already read.

use std::io::Write;

use berth_proto::v1::VersionInfo;
use serde::Serialize;

use crate::args::VersionArgs;
use crate::error::CliError;
use crate::output::{self, OutputFormat};

/// What `berth version` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionReport {
    /// This `berth` binary.
    pub client: ComponentVersion,
}

/// The version of one berth component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentVersion {
    /// The release version, e.g. "0.1.0".
    pub version: String,
    /// The git commit it was built from, or "unknown".
    pub git_commit: String,
    /// The API version it speaks, e.g. "v1".
    pub api_version: String,
}

impl From<VersionInfo> for ComponentVersion {
    fn from(info: VersionInfo) -> Self {
        Self {
            version: info.version,
            git_commit: info.git_commit,
            api_version: info.api_version,
        }
    }
}

impl VersionReport {
    /// The report of this build.
    pub fn current() -> Self {
        Self {
            client: berth_proto::version_info().into(),
        }
    }

    /// The report as `format`, ending with a newline.
    pub fn render(&self, format: OutputFormat) -> Result<String, CliError> {
        match format {
            OutputFormat::Text => Ok(format!(
                "berth {} (api {})\n",
                self.client.version, self.client.api_version
            )),
            OutputFormat::Json => Ok(output::to_json(self)?),
        }
    }
}

/// Writes this build's version to `out`.
pub fn run(args: &VersionArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let text = VersionReport::current().render(args.output)?;
    out.write_all(text.as_bytes()).map_err(CliError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VersionReport {
        VersionReport {
            client: ComponentVersion {
                version: "1.2.3".to_owned(),
                git_commit: "0123abcd".to_owned(),
                api_version: "v1".to_owned(),
            },
        }
    }

    #[test]
    fn text_is_one_line_with_the_version_and_api() {
        assert_eq!(
            sample().render(OutputFormat::Text).expect("renders"),
            "berth 1.2.3 (api v1)\n"
        );
    }

    #[test]
    fn json_nests_the_client_version() {
        assert_eq!(
            sample().render(OutputFormat::Json).expect("renders"),
            r#"{
  "client": {
    "version": "1.2.3",
    "git_commit": "0123abcd",
    "api_version": "v1"
  }
}
"#
        );
    }

    #[test]
    fn current_reports_this_build() {
        let report = VersionReport::current();
        assert_eq!(report.client.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(report.client.api_version, berth_proto::API_VERSION);
        assert_eq!(report.client.git_commit, berth_proto::GIT_COMMIT);
    }

    #[test]
    fn run_writes_the_rendered_report() {
        let mut out = Vec::new();
        let args = VersionArgs {
            output: OutputFormat::Text,
        };
        run(&args, &mut out).expect("writing to a Vec works");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            format!("berth {} (api v1)\n", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn a_failed_write_is_an_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("device full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let args = VersionArgs {
            output: OutputFormat::Json,
        };
        let err = run(&args, &mut Full).expect_err("the write fails");
        assert_eq!(
            crate::error::render(&err),
            "cannot write the output: device full"
        );
    }
}
