//! File operations shared by both layouts. Every error names the file, and a failed write
//! also names the value, so a rejected limit can be read straight off the error.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::CgroupError;

/// How long teardown keeps retrying (rmdir on EBUSY, SIGKILL until `cgroup.procs` is empty).
pub(super) const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(2);

const FIRST_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_millis(50);

fn io_err(path: &Path, op: &'static str, source: io::Error) -> CgroupError {
    CgroupError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Reads a whole cgroup file.
pub(super) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|e| io_err(path, "read", e))
}

/// Reads a cgroup file, or `None` if it does not exist.
pub(super) fn read_if_exists(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(content) => Ok(Some(content)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "read", e)),
    }
}

/// Writes `value` to an existing cgroup file in one `write(2)`. The file is not created: a
/// missing interface file means the controller is not there, and `ENOENT` says so (opening
/// with `O_CREAT` on cgroupfs fails with a misleading `EACCES`).
pub(super) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let result = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut file| file.write_all(value.as_bytes()));
    result.map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    })
}

/// Parses a file holding one unsigned number.
pub(super) fn parse_u64(path: &Path, content: &str) -> Result<u64, CgroupError> {
    content.trim().parse().map_err(|_| parse_err(path, content))
}

/// Parses a file holding one number or `max` (`None`).
pub(super) fn parse_max(path: &Path, content: &str) -> Result<Option<u64>, CgroupError> {
    match content.trim() {
        "max" => Ok(None),
        _ => parse_u64(path, content).map(Some),
    }
}

/// Reads a file holding one unsigned number.
pub(super) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    parse_u64(path, &read(path)?)
}

/// The value of `key` in a flat-keyed file (`key value` per line, as `memory.events` and
/// `memory.oom_control`), or `None` when the key is absent.
pub(super) fn keyed_u64(path: &Path, content: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    for line in content.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() == Some(key) {
            return match (fields.next().map(str::parse::<u64>), fields.next()) {
                (Some(Ok(value)), None) => Ok(Some(value)),
                _ => Err(parse_err(path, content)),
            };
        }
    }
    Ok(None)
}

/// Parses `cgroup.procs`: one pid per line.
pub(super) fn parse_procs(path: &Path, content: &str) -> Result<Vec<i32>, CgroupError> {
    content
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| line.parse::<i32>().map_err(|_| parse_err(path, content)))
        .collect()
}

/// Reads `cgroup.procs`.
pub(super) fn read_procs(path: &Path) -> Result<Vec<i32>, CgroupError> {
    parse_procs(path, &read(path)?)
}

fn parse_err(path: &Path, content: &str) -> CgroupError {
    CgroupError::Parse {
        path: path.to_path_buf(),
        content: content.to_owned(),
    }
}

/// Creates `root/level` for each level that is missing, shortest first, and records in
/// `created` each directory this call made (so a failure can remove exactly those).
pub(super) fn mkdir_levels(
    root: &Path,
    levels: &[PathBuf],
    created: &mut Vec<PathBuf>,
) -> Result<(), CgroupError> {
    for level in levels {
        let dir = root.join(level);
        match fs::create_dir(&dir) {
            Ok(()) => created.push(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&dir, "mkdir", e)),
        }
    }
    Ok(())
}

/// Removes the directories a failed `create` made, deepest first, and returns `err` — or
/// [`CgroupError::CleanupFailed`] around it if some could not be removed. A created parent
/// that another cgroup has meanwhile moved into (`EBUSY`/`ENOTEMPTY`) is not ours alone any
/// more and is left without complaint.
pub(super) fn undo_created(
    created: &[PathBuf],
    leaves: &[PathBuf],
    err: CgroupError,
) -> CgroupError {
    let mut left_behind = Vec::new();
    for dir in created.iter().rev() {
        match fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e)
                if !leaves.contains(dir)
                    && matches!(
                        Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                        Errno::EBUSY | Errno::ENOTEMPTY
                    ) => {}
            Err(_) => left_behind.push(dir.clone()),
        }
    }
    if left_behind.is_empty() {
        err
    } else {
        CgroupError::CleanupFailed {
            source: Box::new(err),
            left_behind,
        }
    }
}

/// Removes a cgroup directory, retrying while it is busy (tasks still leaving it) for up to
/// `timeout`. A directory that is already gone counts as removed.
pub(super) fn rmdir_retry(dir: &Path, timeout: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + timeout;
    let mut delay = FIRST_DELAY;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) => {
                if Instant::now() >= deadline {
                    return Err(CgroupError::Busy {
                        path: dir.to_path_buf(),
                        attempts,
                    });
                }
                thread::sleep(delay);
                delay = (delay * 2).min(MAX_DELAY);
            }
            Err(e) => return Err(io_err(dir, "rmdir", e)),
        }
    }
}

/// The pids listed in any of `procs_files` (a missing file lists none: that cgroup is gone).
fn union_procs(procs_files: &[PathBuf]) -> Result<(BTreeSet<i32>, Option<PathBuf>), CgroupError> {
    let mut pids = BTreeSet::new();
    let mut first_busy = None;
    for file in procs_files {
        if let Some(content) = read_if_exists(file)? {
            let found = parse_procs(file, &content)?;
            if !found.is_empty() && first_busy.is_none() {
                first_busy = Some(file.clone());
            }
            pids.extend(found);
        }
    }
    Ok((pids, first_busy))
}

/// Waits until none of `procs_files` lists a process, calling `nudge` with the pids still
/// there before each wait (to signal them again). Gives up after `timeout`.
fn wait_empty(
    procs_files: &[PathBuf],
    timeout: Duration,
    mut nudge: impl FnMut(&BTreeSet<i32>) -> Result<(), CgroupError>,
) -> Result<(), CgroupError> {
    let deadline = Instant::now() + timeout;
    let mut delay = FIRST_DELAY;
    loop {
        let (pids, busy_file) = union_procs(procs_files)?;
        let Some(busy_file) = busy_file else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(CgroupError::ProcessesRemain {
                path: busy_file,
                pids: pids.into_iter().collect(),
            });
        }
        nudge(&pids)?;
        thread::sleep(delay);
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// Sends SIGKILL to every process listed in `procs_files`, again and again, until none is
/// left or `timeout` passes. Processes that exit first (`ESRCH`) are fine; pids ≤ 0, which
/// `kill(2)` would read as process groups, are never signalled.
///
/// Without a frozen cgroup there is a window between reading a pid and signalling it in
/// which the process may exit and its pid be reused elsewhere; the kernel's own
/// `cgroup.kill` (v2) has no such window.
pub(super) fn kill_until_empty(
    procs_files: &[PathBuf],
    timeout: Duration,
) -> Result<(), CgroupError> {
    wait_empty(procs_files, timeout, |pids| {
        for &pid in pids {
            if pid <= 0 {
                continue;
            }
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(source) => return Err(CgroupError::Kill { pid, source }),
            }
        }
        Ok(())
    })
}

/// Waits until `procs_file` lists no process, doing nothing meanwhile (used after writing
/// `cgroup.kill`, which signals every process itself).
pub(super) fn wait_until_empty(procs_file: &Path, timeout: Duration) -> Result<(), CgroupError> {
    wait_empty(&[procs_file.to_path_buf()], timeout, |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values_and_procs_parse() {
        let path = Path::new("memory.events");
        let events = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed_u64(path, events, "oom_kill").unwrap(), Some(2));
        assert_eq!(keyed_u64(path, events, "absent").unwrap(), None);
        assert!(keyed_u64(path, "oom_kill x\n", "oom_kill").is_err());
        assert!(keyed_u64(path, "oom_kill 1 2\n", "oom_kill").is_err());
        assert_eq!(parse_procs(path, "12\n 345\n\n").unwrap(), vec![12, 345]);
        assert!(matches!(
            parse_procs(path, "12\nabc\n"),
            Err(CgroupError::Parse { .. })
        ));
        assert_eq!(parse_max(path, "max\n").unwrap(), None);
        assert_eq!(parse_max(path, "20\n").unwrap(), Some(20));
    }

    #[test]
    fn write_does_not_create_files_and_names_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("memory.max");
        match write(&missing, "1024") {
            Err(CgroupError::Write {
                path,
                value,
                source,
            }) => {
                assert_eq!(path, missing);
                assert_eq!(value, "1024");
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected a write error, got {other:?}"),
        }
        assert!(!missing.exists());
    }

    #[test]
    fn rmdir_retry_treats_missing_as_removed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("gone");
        rmdir_retry(&sub, TEARDOWN_TIMEOUT).unwrap();
        fs::create_dir(&sub).unwrap();
        rmdir_retry(&sub, TEARDOWN_TIMEOUT).unwrap();
        assert!(!sub.exists());
    }

    #[test]
    fn kill_until_empty_never_signals_nonpositive_pids_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let procs = dir.path().join("cgroup.procs");
        fs::write(&procs, "0\n-1\n").unwrap();
        // Only a kill(0)/kill(-1) would hurt here; the file never empties, so this must time out.
        let err =
            kill_until_empty(std::slice::from_ref(&procs), Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, CgroupError::ProcessesRemain { pids, .. } if pids == vec![-1, 0]));
        fs::write(&procs, "").unwrap();
        kill_until_empty(
            &[procs, dir.path().join("missing/cgroup.procs")],
            TEARDOWN_TIMEOUT,
        )
        .unwrap();
    }
}
