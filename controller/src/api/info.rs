//! The `berth.v1.Info` service: tells a peer what it is talking to.

use berth_proto::v1::info_server::{Info, InfoServer};
use berth_proto::v1::{Empty, VersionInfo};
use tonic::{Request, Response, Status};

/// Answers `Info` calls with a fixed [`VersionInfo`].
#[derive(Debug, Clone)]
pub struct InfoService {
    version: VersionInfo,
}

impl InfoService {
    /// A service that reports `version`.
    pub fn new(version: VersionInfo) -> Self {
        Self { version }
    }

    /// This service wrapped for a tonic server.
    pub fn into_server(self) -> InfoServer<Self> {
        InfoServer::new(self)
    }
}

impl Default for InfoService {
    /// A service that reports this build's version.
    fn default() -> Self {
        Self::new(berth_proto::version_info())
    }
}

#[tonic::async_trait]
impl Info for InfoService {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_version(&self, _request: Request<Empty>) -> Result<Response<VersionInfo>, Status> {
        Ok(Response::new(self.version.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn get_version_returns_the_injected_version() {
        let version = VersionInfo {
            version: "9.8.7".to_owned(),
            git_commit: "abc123".to_owned(),
            api_version: "v1".to_owned(),
        };
        let service = InfoService::new(version.clone());
        let response = service
            .get_version(Request::new(Empty {}))
            .await
            .expect("GetVersion never fails");
        assert_eq!(response.into_inner(), version);
    }

    #[test]
    fn default_reports_this_build() {
        assert_eq!(InfoService::default().version, berth_proto::version_info());
    }
}
