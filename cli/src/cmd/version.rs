//! `berth version`: the version of this client, and of the controller that answers when
//! a cluster is reachable.
//!
//! The JSON form nests the client's version under `client`; the controller's that
//! answered, when one did, under `server` with its address and Raft role.

use berth_proto::v1::{Empty, VersionInfo};
use serde::Serialize;

use super::Io;
use crate::args::{GlobalArgs, VersionArgs};
use crate::error::CliError;
use crate::exit;
use crate::output::{self, OutputFormat};

/// What `berth version` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionReport {
    /// This `berth` binary.
    pub client: ComponentVersion,
    /// The controller that answered, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerInfo>,
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

/// The controller that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerInfo {
    /// Its version ("unknown" from a controller too old to say).
    pub version: String,
    /// The git commit it was built from.
    pub git_commit: String,
    /// The API version it speaks.
    pub api_version: String,
    /// Its address.
    pub addr: String,
    /// Its Raft id.
    pub id: u64,
    /// "leader", "follower", ...
    pub state: String,
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
            server: None,
        }
    }

    /// The report as `format`, ending with a newline.
    pub fn render(&self, format: OutputFormat) -> Result<String, CliError> {
        let text = || {
            let mut s = format!(
                "berth {} (api {})\n",
                self.client.version, self.client.api_version
            );
            if let Some(server) = &self.server {
                s.push_str(&format!(
                    "server: berth-controller {} (api {}), member {} at {} ({})\n",
                    server.version, server.api_version, server.id, server.addr, server.state
                ));
            }
            s
        };
        Ok(output::render(format, self, text)?)
    }
}

/// Writes this build's version (and the server's, unless `--client`) to `out`. An
/// unreachable cluster is not an error here: the client's version is still printed.
pub async fn run(g: &GlobalArgs, args: &VersionArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let mut report = VersionReport::current();
    if !args.client
        && let Ok(client) = super::connect(g, io).await
        && let Ok(status) = client
            .call("status", |mut c| async move { c.status(Empty {}).await })
            .await
    {
        let v = status.version.unwrap_or_default();
        let or_unknown = |s: String| {
            if s.is_empty() {
                "unknown".to_owned()
            } else {
                s
            }
        };
        report.server = Some(ServerInfo {
            version: or_unknown(v.version),
            git_commit: or_unknown(v.git_commit),
            api_version: or_unknown(v.api_version),
            addr: client.addr.clone(),
            id: status.id,
            state: status.state,
        });
    }
    let text = report.render(args.output)?;
    io.print(&text)?;
    Ok(exit::OK)
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
            server: None,
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
    fn text_names_the_server_when_known() {
        let mut r = sample();
        r.server = Some(ServerInfo {
            version: "1.2.4".into(),
            git_commit: "4567cdef".into(),
            api_version: "v1".into(),
            addr: "10.0.0.1:7443".into(),
            id: 1,
            state: "leader".into(),
        });
        assert_eq!(
            r.render(OutputFormat::Text).expect("renders"),
            "berth 1.2.3 (api v1)\nserver: berth-controller 1.2.4 (api v1), member 1 at 10.0.0.1:7443 (leader)\n"
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
}
