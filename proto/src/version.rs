//! The version every berth component reports about itself.

use crate::v1::VersionInfo;

/// The API version this build speaks; the `.proto` package is `berth.<API_VERSION>`.
pub const API_VERSION: &str = "v1";

/// The release version of this build (the workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit this build was made from, or `"unknown"` when it was built outside a
/// git checkout. Packagers can set it with `BERTH_GIT_COMMIT` at build time.
pub const GIT_COMMIT: &str = env!("BERTH_GIT_COMMIT");

/// The [`VersionInfo`] of this build.
pub fn version_info() -> VersionInfo {
    VersionInfo {
        version: VERSION.to_owned(),
        git_commit: GIT_COMMIT.to_owned(),
        api_version: API_VERSION.to_owned(),
    }
}
