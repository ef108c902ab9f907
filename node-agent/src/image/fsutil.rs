//! Small file-system helpers: atomic writes, the store lock, bounded reads, and resolving a
//! path inside a directory without ever leaving it.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::Flock;

use super::error::ImageError;

/// Most symbolic links followed while resolving one path (Linux's own limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// A name unlikely to collide across processes and threads: `<pid>-<nanos>-<counter>`.
pub(crate) fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `bytes` to `path` atomically and durably (see [`crate::durable::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    crate::durable::write_atomic(path, bytes, 0o644).map_err(ImageError::from)
}

/// fsyncs a directory so renames into it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    crate::durable::sync_dir(dir).map_err(ImageError::from)
}

/// Reads a whole small file (a JSON document), refusing files over `cap` bytes. `label` is the
/// name used in errors.
pub(crate) fn read_capped(path: &Path, label: &Path, cap: u64) -> Result<Vec<u8>, ImageError> {
    let file = open_nofollow(path).map_err(|e| ImageError::io("open", label, e))?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ImageError::io("read", label, e))?;
    if bytes.len() as u64 > cap {
        return Err(ImageError::invalid(
            label,
            format!("larger than the {cap}-byte limit for a JSON document"),
        ));
    }
    Ok(bytes)
}

/// Opens a file for reading without following a symbolic link in the last component.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Resolves `rel` (a path written inside an archive, e.g. in `manifest.json`) to a file under
/// `root`, following symbolic links as if `root` were `/`: absolute targets restart at `root`
/// and `..` never climbs above it. `rel` itself may not contain `..`. Errors name
/// `label_root.join(rel)`.
pub(crate) fn resolve_in_root(
    root: &Path,
    rel: &str,
    label_root: &Path,
) -> Result<PathBuf, ImageError> {
    let label = label_root.join(rel);
    let mut pending: VecDeque<OsString> = VecDeque::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(n) => pending.push_back(n.to_owned()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ImageError::invalid(
                    label,
                    "path may not contain '..' components",
                ));
            }
        }
    }
    if pending.is_empty() {
        return Err(ImageError::invalid(label, "empty path"));
    }
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&c);
        let meta = fs::symlink_metadata(&candidate).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ImageError::invalid(&label, "file is missing")
            } else {
                ImageError::io("inspect", &label, e)
            }
        })?;
        if !meta.file_type().is_symlink() {
            resolved.push(&c);
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err(ImageError::invalid(
                label,
                "too many levels of symbolic links",
            ));
        }
        let target =
            fs::read_link(&candidate).map_err(|e| ImageError::io("read link", &label, e))?;
        if target.is_absolute() {
            resolved.clear();
        }
        let mut prefix: Vec<OsString> = Vec::new();
        for tc in target.components() {
            match tc {
                Component::Normal(n) => prefix.push(n.to_owned()),
                Component::ParentDir => prefix.push(OsString::from("..")),
                _ => {}
            }
        }
        for p in prefix.into_iter().rev() {
            pending.push_front(p);
        }
    }
    Ok(root.join(resolved))
}

/// Total size in bytes of the regular files under `dir` (symbolic links not followed).
pub(crate) fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Removes a directory tree; a missing tree is fine.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// An exclusive `flock` on the store's lock file, released on drop.
pub(crate) struct StoreLock {
    _lock: Flock<File>,
}

impl StoreLock {
    /// Waits for the lock.
    pub(crate) fn acquire(path: &Path) -> Result<Self, ImageError> {
        Ok(StoreLock {
            _lock: crate::durable::lock_exclusive(path)?,
        })
    }

    /// Takes the lock only if nobody holds it.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<Self>, ImageError> {
        Ok(crate::durable::try_lock_exclusive(path)?.map(|l| StoreLock { _lock: l }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_follows_links_but_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        fs::write(root.join("blobs/sha256/abc"), b"x").unwrap();
        fs::create_dir(root.join("id1")).unwrap();
        symlink("../blobs/sha256/abc", root.join("id1/layer.tar")).unwrap();
        symlink("/blobs/sha256/abc", root.join("abs")).unwrap();
        symlink("../../../../../../blobs/sha256/abc", root.join("climb")).unwrap();
        let want = root.join("blobs/sha256/abc");
        let label = Path::new("/img.tar");
        assert_eq!(resolve_in_root(root, "id1/layer.tar", label).unwrap(), want);
        assert_eq!(resolve_in_root(root, "abs", label).unwrap(), want);
        assert_eq!(resolve_in_root(root, "climb", label).unwrap(), want);

        let err = resolve_in_root(root, "../etc/passwd", label).unwrap_err();
        assert!(err.to_string().contains("/img.tar/../etc/passwd"), "{err}");
        symlink("loop", root.join("loop")).unwrap();
        let err = resolve_in_root(root, "loop", label).unwrap_err();
        assert!(err.to_string().contains("symbolic links"), "{err}");
        let err = resolve_in_root(root, "missing.json", label).unwrap_err();
        assert!(err.to_string().contains("/img.tar/missing.json"), "{err}");
    }

    #[test]
    fn read_capped_refuses_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.json");
        fs::write(&p, vec![b' '; 100]).unwrap();
        assert_eq!(read_capped(&p, &p, 100).unwrap().len(), 100);
        let err = read_capped(&p, &p, 99).unwrap_err();
        assert!(err.to_string().contains("big.json"), "{err}");
    }
}
