//! Errors of the runtime library.

use std::path::{Path, PathBuf};

use crate::cgroup::CgroupError;

/// An error while preparing, running or tearing down a container.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A file-system or system call on a named path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{call}: {source}")]
    Sys {
        /// The call and its subject ("clone", "setns net", …).
        call: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A state or config file could not be parsed.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// A control-group operation failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The spec asks for something that cannot be done.
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    /// The container process failed before its entrypoint ran.
    #[error("{0}")]
    StartFailed(String),
}

impl RuntimeError {
    /// An [`RuntimeError::Io`] for `path`.
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// A [`RuntimeError::Sys`] for a call.
    pub fn sys(call: impl Into<String>, source: nix::Error) -> Self {
        Self::Sys {
            call: call.into(),
            source,
        }
    }
}
