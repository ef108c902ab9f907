use std::path::PathBuf;

use berth_runtime::RuntimeError;

use crate::image::ImageError;

/// A container operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No container has this id, id prefix or name.
    #[error("no such container: {0}")]
    NotFound(String),
    /// An id prefix matches more than one container.
    #[error(
        "container reference {0:?} is ambiguous: it matches {1} containers, give more of the id"
    )]
    Ambiguous(String, usize),
    /// The name is taken.
    #[error(
        "the container name {name:?} is already in use by container {id}: remove it or choose another name"
    )]
    NameInUse {
        /// The name.
        name: String,
        /// The id of the container that has it.
        id: String,
    },
    /// A user option is wrong.
    #[error("{0}")]
    InvalidOption(String),
    /// The operation needs a running container.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The container is running and the operation needs it stopped.
    #[error("container {0} is running: stop it first or use --force")]
    Running(String),
    /// The container could not start; it was removed again.
    #[error("container could not start: {message}")]
    StartFailed {
        /// Exit code (125 set-up, 126 not executable, 127 not found).
        code: i32,
        /// What went wrong.
        message: String,
    },
    /// The monitor ended without saying why.
    #[error("the container monitor exited unexpectedly; see {log}")]
    MonitorLost {
        /// The monitor's log file.
        log: PathBuf,
    },
    /// The status pipe of an attached container closed before it reported an exit.
    #[error(
        "lost track of container {0}: its monitor closed the status pipe without reporting an exit"
    )]
    Lost(String),
    /// Removing a container left some of it behind.
    #[error("removing container {name} left things behind: {}", errors.join("; "))]
    Cleanup {
        /// The container.
        name: String,
        /// What could not be removed.
        errors: Vec<String>,
    },
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The node network failed.
    #[error(transparent)]
    Network(crate::net::NetError),
    /// A file-system or system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl ContainerError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
