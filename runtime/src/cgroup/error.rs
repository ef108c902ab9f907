use std::path::PathBuf;

/// A cgroup operation that failed, with the file it touched.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A file-system operation on a cgroup file or directory failed.
    #[error("cgroup {op} {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("read", "write", "mkdir", "rmdir").
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A cgroup file held something that could not be parsed.
    #[error("cgroup file {path}: cannot parse {content:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        content: String,
    },
    /// A required controller is not mounted or not available.
    #[error("cgroup controller {controller:?} is not available on this host")]
    MissingController {
        /// The controller name (memory, cpu, pids, …).
        controller: String,
    },
    /// A limit is outside what the kernel accepts.
    #[error("invalid cgroup limit {name}: {reason}")]
    InvalidLimit {
        /// The limit (memory, cpus, cpu_shares, pids).
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The cgroup still had tasks after the retries.
    #[error("cgroup {path} still busy after {attempts} attempts to remove it")]
    Busy {
        /// The directory.
        path: PathBuf,
        /// How many times removal was tried.
        attempts: u32,
    },
    /// Writing a value to a cgroup file failed (the kernel rejected it, or the file is missing).
    #[error("cgroup write {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A cgroup path given by the caller is not a plain relative path.
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// Sending SIGKILL to a process of the cgroup failed (other than "no such process").
    #[error("cgroup kill of pid {pid}: {source}")]
    Kill {
        /// The process.
        pid: i32,
        /// The error `kill(2)` returned.
        #[source]
        source: nix::errno::Errno,
    },
    /// Processes were still in the cgroup after SIGKILL was sent for the whole time allowed.
    #[error("cgroup {path} still has processes {pids:?} after SIGKILL")]
    ProcessesRemain {
        /// The `cgroup.procs` file that still listed them.
        path: PathBuf,
        /// The processes left.
        pids: Vec<i32>,
    },
    /// An operation failed, and undoing its partial work failed too: `left_behind` lists the
    /// directories that could not be removed.
    #[error("{source} (and could not remove {left_behind:?} while undoing)")]
    CleanupFailed {
        /// The error that made the operation fail.
        #[source]
        source: Box<CgroupError>,
        /// Directories created by the failed operation that are still there.
        left_behind: Vec<PathBuf>,
    },
}
