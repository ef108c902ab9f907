//! Safe extraction of a tar stream into a directory.
//!
//! Nothing is ever written outside `dest`: entry paths lose a leading `/` or `./`, any `..`
//! component is refused, parents are walked with `lstat` and a symbolic link among them is
//! refused, an existing final component is removed before the new entry is created (so a
//! symbolic link is never written through), regular files are opened `O_CREAT|O_EXCL|
//! O_NOFOLLOW`, and hard-link targets get the same checks. Symbolic links themselves may point
//! anywhere: they are resolved inside the container later.
//!
//! [`Mode::Layer`] also turns OCI whiteouts into what overlayfs expects (`.wh.<name>` becomes
//! a 0/0 character device `<name>`, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its
//! directory) and restores owners, modes, times, device nodes and `SCHILY.xattr.*` attributes.
//! [`Mode::Archive`] is for the outer archive of an import: only files, directories and links.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{Mode as NixMode, SFlag, UtimensatFlags, futimens, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use tracing::debug;

use super::error::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// What kind of tar is being extracted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// An image layer: whiteouts, owners, modes, times, devices, xattrs.
    Layer,
    /// The outer archive of an import: regular files, directories and links only.
    Archive,
}

/// Extracts the tar read from `reader` into the existing directory `dest`. `label` names the
/// archive in errors. Returns the bytes of regular-file content written, and the reader (so
/// the caller can read on to the end of the stream).
pub(crate) fn unpack<R: Read>(
    reader: R,
    dest: &Path,
    mode: Mode,
    label: &Path,
) -> Result<(u64, R), ImageError> {
    let mut archive = tar::Archive::new(reader);
    let mut unpacker = Unpacker {
        dest,
        mode,
        label,
        is_root: nix::unistd::geteuid().is_root(),
        dirs: BTreeMap::new(),
        bytes: 0,
    };
    let read_err = |source| ImageError::Read {
        path: label.to_owned(),
        source,
    };
    for entry in archive.entries().map_err(read_err)? {
        unpacker.entry(entry.map_err(read_err)?)?;
    }
    unpacker.finish_dirs()?;
    Ok((unpacker.bytes, archive.into_inner()))
}

/// The metadata of one entry.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Unpacker<'a> {
    dest: &'a Path,
    mode: Mode,
    label: &'a Path,
    is_root: bool,
    /// Directory modes and times, applied at the end (children change a directory's mtime,
    /// and a read-only directory would refuse its children).
    dirs: BTreeMap<PathBuf, (u32, TimeSpec)>,
    bytes: u64,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ImageError> {
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry
            .path()
            .map_err(|e| self.entry_err(&name, e))?
            .into_owned();
        let rel = normalize(&raw).map_err(|reason| self.unsafe_entry(&name, reason))?;
        let meta = self.meta(&mut entry, &name)?;

        if self.mode == Mode::Layer
            && let Some(file_name) = rel.file_name().and_then(|n| n.to_str())
            && file_name.starts_with(WHITEOUT_PREFIX)
        {
            return self.whiteout(&rel, file_name, &name, &meta);
        }

        let is_dir = kind.is_dir() || (kind.is_file() && name.ends_with('/'));
        if rel.as_os_str().is_empty() {
            if !is_dir {
                return Err(self.unsafe_entry(&name, "entry has an empty path"));
            }
            if self.mode == Mode::Layer {
                self.chown(self.dest, &meta, &name)?;
                self.dirs.insert(rel, (meta.mode, meta.mtime));
            }
            return Ok(());
        }

        if is_dir {
            self.dir(&rel, &name, meta)
        } else if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
            self.file(&rel, &name, &mut entry, &meta, kind.is_gnu_sparse())
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(|e| self.entry_err(&name, e))?
                .ok_or_else(|| self.unsafe_entry(&name, "symbolic link without a target"))?
                .into_owned();
            self.symlink(&rel, &name, &target, &meta)
        } else if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| self.entry_err(&name, e))?
                .ok_or_else(|| self.unsafe_entry(&name, "hard link without a target"))?
                .into_owned();
            self.hard_link(&rel, &name, &target)
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            if self.mode == Mode::Archive {
                debug!(archive = %self.label.display(), entry = %name, "skipping special file in archive");
                return Ok(());
            }
            let sflag = if kind.is_character_special() {
                SFlag::S_IFCHR
            } else if kind.is_block_special() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            let dev = if sflag == SFlag::S_IFIFO {
                0
            } else {
                let header = entry.header();
                let major = header
                    .device_major()
                    .map_err(|e| self.entry_err(&name, e))?;
                let minor = header
                    .device_minor()
                    .map_err(|e| self.entry_err(&name, e))?;
                makedev(u64::from(major.unwrap_or(0)), u64::from(minor.unwrap_or(0)))
            };
            self.special(&rel, &name, sflag, dev, &meta)
        } else {
            Err(ImageError::UnsupportedEntry {
                path: self.label.to_owned(),
                entry: name,
                kind: char::from(kind.as_byte()).escape_default().to_string(),
            })
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, ImageError> {
        let header = entry.header();
        let err = |e| self.entry_err(name, e);
        let mode = header.mode().map_err(err)? & 0o7777;
        let uid = header.uid().map_err(err)?;
        let gid = header.gid().map_err(err)?;
        let secs = header.mtime().map_err(err)?;
        let mut mtime = TimeSpec::new(i64::try_from(secs).unwrap_or(i64::MAX), 0);
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(err)? {
            for ext in pax {
                let ext = ext.map_err(err)?;
                let Ok(key) = ext.key() else { continue };
                if let Some(attr) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    xattrs.push((attr.to_owned(), ext.value_bytes().to_owned()));
                } else if key == "mtime"
                    && let Some(t) = ext.value().ok().and_then(parse_pax_time)
                {
                    mtime = t;
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    fn whiteout(
        &mut self,
        rel: &Path,
        file_name: &str,
        name: &str,
        meta: &Meta,
    ) -> Result<(), ImageError> {
        self.prepare_parents(rel, name)?;
        let parent = self.dest.join(rel.parent().unwrap_or(Path::new("")));
        if file_name == OPAQUE_WHITEOUT {
            return xattr::set(&parent, OPAQUE_XATTR, b"y").map_err(|e| self.entry_err(name, e));
        }
        if file_name.starts_with(WHITEOUT_META_PREFIX) {
            debug!(layer = %self.label.display(), entry = %name, "skipping whiteout metadata entry");
            return Ok(());
        }
        let hidden = &file_name[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(self.unsafe_entry(name, "whiteout of an invalid name"));
        }
        let target = parent.join(hidden);
        self.remove_existing(&target, false, name)?;
        mknod(&target, SFlag::S_IFCHR, NixMode::empty(), makedev(0, 0))
            .map_err(|e| self.entry_err(name, e.into()))?;
        self.chown(&target, meta, name)
    }

    fn dir(&mut self, rel: &Path, name: &str, meta: Meta) -> Result<(), ImageError> {
        let target = self.prepare(rel, name, true)?;
        if fs::symlink_metadata(&target).is_err() {
            DirBuilder::new()
                .mode(0o755)
                .create(&target)
                .map_err(|e| self.entry_err(name, e))?;
        }
        if self.mode == Mode::Layer {
            self.chown(&target, &meta, name)?;
            self.set_xattrs(&target, &meta, name);
            self.dirs.insert(rel.to_owned(), (meta.mode, meta.mtime));
        }
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        rel: &Path,
        name: &str,
        entry: &mut tar::Entry<'_, R>,
        meta: &Meta,
        sparse: bool,
    ) -> Result<(), ImageError> {
        let target = self.prepare(rel, name, false)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&target)
            .map_err(|e| self.entry_err(name, e))?;
        let expected = entry.size();
        let written = io::copy(entry, &mut file).map_err(|e| self.entry_err(name, e))?;
        if !sparse && written != expected {
            return Err(self.entry_err(
                name,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("archive is truncated: header says {expected} bytes, found {written}"),
                ),
            ));
        }
        self.bytes += written;
        if self.mode == Mode::Archive {
            return Ok(());
        }
        if let Err(e) =
            std::os::unix::fs::fchown(&file, Some(meta.uid as u32), Some(meta.gid as u32))
        {
            self.ownership_failed(name, e)?;
        }
        file.set_permissions(Permissions::from_mode(meta.mode))
            .map_err(|e| self.entry_err(name, e))?;
        self.set_xattrs(&target, meta, name);
        futimens(&file, &meta.mtime, &meta.mtime).map_err(|e| self.entry_err(name, e.into()))
    }

    fn symlink(
        &mut self,
        rel: &Path,
        name: &str,
        link: &Path,
        meta: &Meta,
    ) -> Result<(), ImageError> {
        let target = self.prepare(rel, name, false)?;
        std::os::unix::fs::symlink(link, &target).map_err(|e| self.entry_err(name, e))?;
        if self.mode == Mode::Layer {
            self.chown(&target, meta, name)?;
            self.set_xattrs(&target, meta, name);
            self.set_times(&target, meta, name)?;
        }
        Ok(())
    }

    fn hard_link(&mut self, rel: &Path, name: &str, link: &Path) -> Result<(), ImageError> {
        let link_rel = normalize(link).map_err(|reason| {
            self.unsafe_entry(
                name,
                format!("hard link target {}: {reason}", link.display()),
            )
        })?;
        if link_rel.as_os_str().is_empty() {
            return Err(self.unsafe_entry(name, "hard link with an empty target"));
        }
        if !self.parents_are_plain_dirs(&link_rel) {
            return Err(self.unsafe_entry(
                name,
                format!(
                    "hard link target {} is not inside the archive (a parent is missing or a symbolic link)",
                    link.display()
                ),
            ));
        }
        let source = self.dest.join(&link_rel);
        match fs::symlink_metadata(&source) {
            Ok(m) if m.is_dir() => {
                return Err(self.unsafe_entry(
                    name,
                    format!("hard link target {} is a directory", link.display()),
                ));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(self.unsafe_entry(
                    name,
                    format!(
                        "hard link target {} does not exist earlier in the archive ({e})",
                        link.display()
                    ),
                ));
            }
        }
        if link_rel == rel {
            return Ok(());
        }
        let target = self.prepare(rel, name, false)?;
        // linkat without AT_SYMLINK_FOLLOW: a symbolic link source is linked, not followed.
        fs::hard_link(&source, &target).map_err(|e| self.entry_err(name, e))
    }

    fn special(
        &mut self,
        rel: &Path,
        name: &str,
        kind: SFlag,
        dev: libc::dev_t,
        meta: &Meta,
    ) -> Result<(), ImageError> {
        let target = self.prepare(rel, name, false)?;
        mknod(&target, kind, NixMode::from_bits_truncate(meta.mode), dev)
            .map_err(|e| self.entry_err(name, e.into()))?;
        self.chown(&target, meta, name)?;
        // The node was just created by mknod, so this path is not a symbolic link.
        fs::set_permissions(&target, Permissions::from_mode(meta.mode))
            .map_err(|e| self.entry_err(name, e))?;
        self.set_xattrs(&target, meta, name);
        self.set_times(&target, meta, name)
    }

    /// Creates missing parents and clears the final component (keeping an existing directory
    /// when `keep_dir`). Returns the absolute target path.
    fn prepare(&self, rel: &Path, name: &str, keep_dir: bool) -> Result<PathBuf, ImageError> {
        self.prepare_parents(rel, name)?;
        let target = self.dest.join(rel);
        self.remove_existing(&target, keep_dir, name)?;
        Ok(target)
    }

    /// Walks the parents of `rel` with lstat, creating missing ones and refusing symbolic links
    /// and non-directories.
    fn prepare_parents(&self, rel: &Path, name: &str) -> Result<(), ImageError> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut current = self.dest.to_path_buf();
        let mut shown = PathBuf::new();
        for component in parent.components() {
            current.push(component);
            shown.push(component);
            match fs::symlink_metadata(&current) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.unsafe_entry(
                        name,
                        format!("parent {} is a symbolic link", shown.display()),
                    ));
                }
                Ok(_) => {
                    return Err(self.unsafe_entry(
                        name,
                        format!("parent {} is not a directory", shown.display()),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    DirBuilder::new()
                        .mode(0o755)
                        .create(&current)
                        .map_err(|e| self.entry_err(name, e))?;
                    // An implied directory is 0755 whatever the process umask.
                    fs::set_permissions(&current, Permissions::from_mode(0o755))
                        .map_err(|e| self.entry_err(name, e))?;
                }
                Err(e) => return Err(self.entry_err(name, e)),
            }
        }
        Ok(())
    }

    /// True when every parent of `rel` exists and is a real directory (no symbolic link).
    fn parents_are_plain_dirs(&self, rel: &Path) -> bool {
        let mut current = self.dest.to_path_buf();
        for component in rel.parent().into_iter().flat_map(Path::components) {
            current.push(component);
            match fs::symlink_metadata(&current) {
                Ok(m) if m.is_dir() => {}
                _ => return false,
            }
        }
        true
    }

    fn remove_existing(&self, target: &Path, keep_dir: bool, name: &str) -> Result<(), ImageError> {
        let result = match fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() && keep_dir => Ok(()),
            Ok(m) if m.is_dir() => fs::remove_dir_all(target),
            Ok(_) => fs::remove_file(target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        result.map_err(|e| self.entry_err(name, e))
    }

    fn chown(&self, path: &Path, meta: &Meta, name: &str) -> Result<(), ImageError> {
        if self.mode == Mode::Archive {
            return Ok(());
        }
        match std::os::unix::fs::lchown(path, Some(meta.uid as u32), Some(meta.gid as u32)) {
            Ok(()) => Ok(()),
            Err(e) => self.ownership_failed(name, e),
        }
    }

    /// As root, failing to set an owner is an error; unprivileged, it is expected.
    fn ownership_failed(&self, name: &str, e: io::Error) -> Result<(), ImageError> {
        if self.is_root {
            Err(self.entry_err(name, e))
        } else {
            debug!(layer = %self.label.display(), entry = %name, error = %e, "cannot set owner without root");
            Ok(())
        }
    }

    /// Sets `SCHILY.xattr.*` attributes where the file system allows. `trusted.overlay.*` is
    /// never taken from an archive: only whiteout conversion may set it.
    fn set_xattrs(&self, path: &Path, meta: &Meta, name: &str) {
        for (key, value) in &meta.xattrs {
            if key.starts_with(OVERLAY_XATTR_PREFIX) {
                debug!(layer = %self.label.display(), entry = %name, xattr = %key, "ignoring overlay xattr from archive");
                continue;
            }
            // xattr::set uses lsetxattr: a symbolic link is not followed.
            if let Err(e) = xattr::set(path, key, value) {
                debug!(layer = %self.label.display(), entry = %name, xattr = %key, error = %e, "cannot set xattr");
            }
        }
    }

    fn set_times(&self, path: &Path, meta: &Meta, name: &str) -> Result<(), ImageError> {
        utimensat(
            AT_FDCWD,
            path,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.entry_err(name, e.into()))
    }

    /// Applies directory modes and times, deepest first, skipping any directory a later entry
    /// replaced (never following a symbolic link to do it).
    fn finish_dirs(&mut self) -> Result<(), ImageError> {
        for (rel, (mode, mtime)) in std::mem::take(&mut self.dirs).into_iter().rev() {
            if !self.parents_are_plain_dirs(&rel) {
                continue;
            }
            let path = self.dest.join(&rel);
            let still_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if !still_dir {
                continue;
            }
            let name = rel.display().to_string();
            fs::set_permissions(&path, Permissions::from_mode(mode))
                .map_err(|e| self.entry_err(&name, e))?;
            utimensat(
                AT_FDCWD,
                &path,
                &mtime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| self.entry_err(&name, e.into()))?;
        }
        Ok(())
    }

    fn entry_err(&self, name: &str, source: io::Error) -> ImageError {
        ImageError::Entry {
            path: self.label.to_owned(),
            entry: name.to_owned(),
            source,
        }
    }

    fn unsafe_entry(&self, name: &str, reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeEntry {
            path: self.label.to_owned(),
            entry: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Strips a leading `/` and `.` components; refuses `..`.
pub(crate) fn normalize(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err("path contains a '..' component"),
            Component::Prefix(_) => return Err("path has a prefix"),
        }
    }
    Ok(out)
}

/// Parses a PAX time, `seconds[.fraction]`.
fn parse_pax_time(value: &str) -> Option<TimeSpec> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        let n: i64 = digits.parse().ok()?;
        n * 10_i64.pow(9 - digits.len() as u32)
    };
    Some(TimeSpec::new(secs, if secs < 0 { -nanos } else { nanos }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_roots_and_refuses_parent_dirs() {
        assert_eq!(normalize(Path::new("./a/b")).unwrap(), Path::new("a/b"));
        assert_eq!(normalize(Path::new("/a//b/")).unwrap(), Path::new("a/b"));
        assert_eq!(normalize(Path::new("./")).unwrap(), Path::new(""));
        assert!(normalize(Path::new("../evil")).is_err());
        assert!(normalize(Path::new("/abs/../../x")).is_err());
        assert!(normalize(Path::new("a/../b")).is_err());
    }

    #[test]
    fn parses_pax_times() {
        let t = parse_pax_time("1700000000.5").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (1_700_000_000, 500_000_000));
        let t = parse_pax_time("12").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (12, 0));
        assert!(parse_pax_time("x").is_none());
    }
}
