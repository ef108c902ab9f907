//! The state the monitor records for one container (`state.json`), and how it is read back.
//!
//! Only the monitor writes it, atomically (temporary file, then rename), so a reader never
//! sees a torn file and an agent restarted after a crash learns everything from it. The file
//! is not fsynced: it must be consistent for concurrent readers, not survive a power loss —
//! after a host crash no container is running any more and the agent starts from what is.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Prepared, never started.
    Created,
    /// Its process runs.
    Running,
    /// Exited; the monitor waits out the back-off before starting it again.
    Restarting,
    /// Exited and will not be started again by the monitor.
    Exited,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Exited => "exited",
        })
    }
}

/// Why a container's process ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ExitReason {
    /// The process exited by itself with its code.
    Exited,
    /// The kernel's OOM killer killed it (memory limit reached).
    Oom,
    /// A signal ended it.
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The container could not be started (bad user, missing entrypoint, mount failure…).
    StartError {
        /// What went wrong, for the user.
        message: String,
    },
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited => f.write_str("exited"),
            Self::Oom => f.write_str("OOM killed"),
            Self::Signaled { signal } => write!(f, "killed by signal {signal}"),
            Self::StartError { message } => write!(f, "start error: {message}"),
        }
    }
}

/// The monitor's record of a container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// Current status.
    pub status: Status,
    /// Pid of the container's first process (in the host pid namespace), when running.
    pub pid: Option<i32>,
    /// Start time of that process in clock ticks since boot (`/proc/<pid>/stat` field 22),
    /// to tell it from a later process that reuses the pid.
    pub pid_start_ticks: Option<u64>,
    /// Pid of the monitor while it lives.
    pub monitor_pid: Option<i32>,
    /// When the current (or last) run was requested, ns since the epoch.
    pub start_requested_at: Option<i128>,
    /// When the entrypoint was executed, ns since the epoch.
    pub started_at: Option<i128>,
    /// When the last run ended, ns since the epoch.
    pub finished_at: Option<i128>,
    /// The last run's exit code (128 + signal when signalled, as Docker reports it).
    pub exit_code: Option<i32>,
    /// Why the last run ended.
    pub exit_reason: Option<ExitReason>,
    /// How many times the monitor restarted it.
    pub restart_count: u32,
    /// When set, the monitor starts it again at this time (ns since the epoch).
    pub next_restart_at: Option<i128>,
}

impl State {
    /// A container that was never started.
    pub fn created() -> Self {
        Self {
            status: Status::Created,
            pid: None,
            pid_start_ticks: None,
            monitor_pid: None,
            start_requested_at: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            exit_reason: None,
            restart_count: 0,
            next_restart_at: None,
        }
    }

    /// Reads a state file.
    pub fn load(path: &Path) -> Result<Self, RuntimeError> {
        let data = fs::read(path).map_err(|source| RuntimeError::io("read", path, source))?;
        serde_json::from_slice(&data).map_err(|e| RuntimeError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Writes a state file atomically.
    pub fn store(&self, path: &Path) -> Result<(), RuntimeError> {
        let data = serde_json::to_vec_pretty(self).map_err(|e| RuntimeError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_atomic(path, &data)
    }
}

/// Writes `data` to `path` through a temporary file in the same directory, fsync and rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RuntimeError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f =
        fs::File::create(&tmp).map_err(|source| RuntimeError::io("create", &tmp, source))?;
    f.write_all(data)
        .map_err(|source| RuntimeError::io("write", &tmp, source))?;
    f.sync_data()
        .map_err(|source| RuntimeError::io("fsync", &tmp, source))?;
    fs::rename(&tmp, path).map_err(|source| RuntimeError::io("rename", path, source))
}

/// The start time (field 22 of `/proc/<pid>/stat`) of a live process, `None` if it is gone.
pub fn process_start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3 (state); field 22 is the 20th from here.
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether process `pid` is alive and is the one that started at `start_ticks`.
pub fn is_same_process_alive(pid: i32, start_ticks: Option<u64>) -> bool {
    match process_start_ticks(pid) {
        None => false,
        Some(t) => start_ticks.is_none_or(|s| s == t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = State::created();
        s.status = Status::Exited;
        s.exit_code = Some(137);
        s.exit_reason = Some(ExitReason::Oom);
        s.store(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), s);
        // No temporary file is left beside it.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn corrupt_state_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"{not json").unwrap();
        let err = State::load(&path).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn own_process_is_alive_and_start_time_is_checked() {
        let me = std::process::id() as i32;
        let ticks = process_start_ticks(me).expect("own stat");
        assert!(is_same_process_alive(me, Some(ticks)));
        assert!(!is_same_process_alive(me, Some(ticks + 1)));
        assert!(!is_same_process_alive(i32::MAX, None));
    }
}
