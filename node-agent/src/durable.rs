//! Files that must survive a crash and be shared by concurrent agent processes: atomic,
//! durable writes (temporary file, fsync, rename, fsync of the directory) and exclusive
//! `flock`s. Used by the image store and the IP allocator, which map [`FsError`] into their
//! own error types.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A failed file operation: what was done, to which path.
#[derive(Debug)]
pub(crate) struct FsError {
    pub(crate) op: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) source: io::Error,
}

fn fail(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FsError + use<> {
    let path = path.to_path_buf();
    move |source| FsError { op, path, source }
}

/// Writes `bytes` to `path` with permissions `mode`, atomically and durably.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    write_replace(path, bytes, mode, true)
}

/// Writes `bytes` to `path` with permissions `mode`, atomically but without waiting for the
/// disk: for records that are rebuilt from live state after a machine crash anyway.
pub(crate) fn replace_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    write_replace(path, bytes, mode, false)
}

fn write_replace(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> Result<(), FsError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(fail("create", &tmp))?;
        // The umask may have narrowed the mode given to open.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .and_then(|()| file.write_all(bytes))
            .and_then(|()| if durable { file.sync_all() } else { Ok(()) })
            .map_err(fail("write", &tmp))?;
        fs::rename(&tmp, path).map_err(fail("rename into place", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// fsyncs a directory so that renames into it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("sync directory", dir))
}

fn open_lock_file(path: &Path) -> Result<File, FsError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(fail("open lock file", path))
}

/// Waits for an exclusive `flock` on `path` (created if missing), released on drop. Each call
/// opens the file anew, so two callers in one process exclude each other like two processes.
pub(crate) fn lock_exclusive(path: &Path) -> Result<Flock<File>, FsError> {
    let mut file = open_lock_file(path)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => return Err(fail("lock", path)(errno.into())),
        }
    }
}

/// Takes the lock only if nobody holds it.
pub(crate) fn try_lock_exclusive(path: &Path) -> Result<Option<Flock<File>>, FsError> {
    match Flock::lock(open_lock_file(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(fail("lock", path)(errno.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_atomically_with_the_mode_asked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        let e = write_atomic(&dir.path().join("missing/x"), b"", 0o600).unwrap_err();
        assert_eq!(e.op, "create");
    }

    #[test]
    fn a_held_lock_excludes_another_opener() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let held = lock_exclusive(&p).unwrap();
        assert!(try_lock_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(try_lock_exclusive(&p).unwrap().is_some());
    }
}
