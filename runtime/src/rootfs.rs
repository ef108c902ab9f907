//! Building a container's root file system inside its new mount namespace: the overlay,
//! `/proc`, `/sys`, `/dev`, bind mounts, Docker's masked and read-only paths, then
//! `pivot_root`. Everything is mounted in the container's own mount namespace, after the
//! namespace was made private, so nothing is ever visible on (or left behind on) the host.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use crate::paths::ContainerDir;
use crate::spec::ContainerSpec;

/// Paths Docker hides from containers by default.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only in containers by default.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A mount step that failed, with what it was doing.
pub type SetupError = String;

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> SetupError {
    format!("{what}: {e}")
}

/// Resolves `unsafe_path` inside `root` the way the kernel would inside the container:
/// symbolic links are followed, but an absolute link or `..` never leaves `root`.
pub fn secure_join(root: &Path, unsafe_path: &str) -> Result<PathBuf, SetupError> {
    let mut pending: VecDeque<OsString> = Path::new(unsafe_path)
        .components()
        .filter_map(component_name)
        .collect();
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    return Err(format!("{unsafe_path}: too many levels of symbolic links"));
                }
                let target = fs::read_link(&full)
                    .map_err(|e| err(format!("readlink {}", full.display()), e))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut next: VecDeque<OsString> =
                    target.components().filter_map(component_name).collect();
                next.extend(pending);
                pending = next;
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

fn component_name(c: Component<'_>) -> Option<OsString> {
    match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    }
}

fn mkdir_all(p: &Path) -> Result<(), SetupError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .map_err(|e| err(format!("mkdir {}", p.display()), e))
}

fn do_mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SetupError> {
    mount(src, target, fstype, flags, data).map_err(|e| {
        err(
            format!(
                "mount {} on {} ({})",
                src.unwrap_or("none"),
                target.display(),
                fstype.unwrap_or("bind")
            ),
            e,
        )
    })
}

/// The overlay mount options for `layers` (bottom first). When every layer lives in the same
/// directory the names are given relative to it (the caller must `chdir` there first), which
/// keeps the option string under the kernel's one-page limit for deep images.
pub fn overlay_options(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    empty: &Path,
) -> (Option<PathBuf>, String) {
    let lower: Vec<&Path> = if layers.is_empty() {
        vec![empty]
    } else {
        layers.iter().rev().map(|p| p.as_path()).collect()
    };
    let common = lower[0]
        .parent()
        .filter(|p| lower.iter().all(|l| l.parent() == Some(*p)));
    let names: Vec<String> = match common {
        Some(_) => lower
            .iter()
            .map(|l| {
                l.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        None => lower.iter().map(|l| l.display().to_string()).collect(),
    };
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        names.join(":"),
        upper.display(),
        work.display()
    );
    (common.map(Path::to_path_buf), opts)
}

/// Mounts the overlay root file system at the container's `rootfs` directory.
pub fn mount_overlay(spec: &ContainerSpec, dir: &ContainerDir) -> Result<(), SetupError> {
    let rootfs = dir.rootfs();
    for d in [dir.upper(), dir.work(), rootfs.clone(), dir.empty()] {
        mkdir_all(&d)?;
    }
    let (cwd, opts) = overlay_options(&spec.rootfs.layers, &dir.upper(), &dir.work(), &dir.empty());
    if opts.len() >= 4000 {
        return Err(format!(
            "overlay options too long ({} bytes) for {} layers",
            opts.len(),
            spec.rootfs.layers.len()
        ));
    }
    if let Some(cwd) = &cwd {
        std::env::set_current_dir(cwd).map_err(|e| err(format!("chdir {}", cwd.display()), e))?;
    }
    do_mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(&opts),
    )
}

/// Everything between the overlay mount and `pivot_root`.
pub fn setup_mounts(
    spec: &ContainerSpec,
    dir: &ContainerDir,
    rootfs: &Path,
) -> Result<(), SetupError> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;

    let proc_dir = secure_join(rootfs, "/proc")?;
    mkdir_all(&proc_dir)?;
    do_mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        nosuid_nodev_noexec,
        None,
    )?;

    let sys_dir = secure_join(rootfs, "/sys")?;
    mkdir_all(&sys_dir)?;
    do_mount(
        Some("sysfs"),
        &sys_dir,
        Some("sysfs"),
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        None,
    )?;

    let dev = secure_join(rootfs, "/dev")?;
    mkdir_all(&dev)?;
    do_mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    populate_dev(&dev)?;

    let pts = dev.join("pts");
    mkdir_all(&pts)?;
    do_mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    let shm = dev.join("shm");
    mkdir_all(&shm)?;
    do_mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        nosuid_nodev_noexec,
        Some(&format!("mode=1777,size={}", spec.shm_size)),
    )?;
    let mqueue = dev.join("mqueue");
    mkdir_all(&mqueue)?;
    do_mount(
        Some("mqueue"),
        &mqueue,
        Some("mqueue"),
        nosuid_nodev_noexec,
        None,
    )?;

    // The agent's /etc files (as Docker's), before the user's mounts so that a user's
    // `-v /x/hosts:/etc/hosts` still wins.
    for (source, target) in [
        (dir.hosts(), "/etc/hosts"),
        (dir.resolv_conf(), "/etc/resolv.conf"),
        (dir.hostname(), "/etc/hostname"),
    ] {
        if source.exists() {
            bind_mount(rootfs, &source, target, false)?;
        }
    }
    for m in &spec.mounts {
        bind_mount(rootfs, &m.source, &m.target, m.read_only)?;
    }

    for p in MASKED_PATHS {
        mask_path(rootfs, p)?;
    }
    for p in READONLY_PATHS {
        readonly_path(rootfs, p)?;
    }
    Ok(())
}

fn populate_dev(dev: &Path) -> Result<(), SetupError> {
    const NODES: [(&str, u64, u64); 6] = [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ];
    for (name, major, minor) in NODES {
        let p = dev.join(name);
        mknod(
            &p,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(|e| err(format!("mknod {}", p.display()), e))?;
        // mknod is subject to the umask; make the mode exact.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666))
            .map_err(|e| err(format!("chmod {}", p.display()), e))?;
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        let p = dev.join(link);
        symlink(target, &p).map_err(|e| err(format!("symlink {}", p.display()), e))?;
    }
    Ok(())
}

fn bind_mount(
    rootfs: &Path,
    source: &Path,
    target: &str,
    read_only: bool,
) -> Result<(), SetupError> {
    let meta = fs::metadata(source)
        .map_err(|e| err(format!("bind mount source {}", source.display()), e))?;
    let dest = secure_join(rootfs, target)?;
    if meta.is_dir() {
        mkdir_all(&dest)?;
    } else if fs::symlink_metadata(&dest).is_err() {
        if let Some(parent) = dest.parent() {
            mkdir_all(parent)?;
        }
        fs::File::create(&dest)
            .map_err(|e| err(format!("create mount point {}", dest.display()), e))?;
    }
    let src = source
        .to_str()
        .ok_or_else(|| format!("bind mount source {} is not UTF-8", source.display()))?;
    do_mount(
        Some(src),
        &dest,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    do_mount(
        None,
        &dest,
        None,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None,
    )?;
    if read_only {
        do_mount(
            None,
            &dest,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

fn mask_path(rootfs: &Path, path: &str) -> Result<(), SetupError> {
    let p = secure_join(rootfs, path)?;
    match fs::symlink_metadata(&p) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => do_mount(
            Some("tmpfs"),
            &p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0k"),
        ),
        Ok(_) => {
            let null = rootfs.join("dev/null");
            let null = null.to_str().ok_or("rootfs path is not UTF-8")?;
            do_mount(Some(null), &p, None, MsFlags::MS_BIND, None)
        }
    }
}

fn readonly_path(rootfs: &Path, path: &str) -> Result<(), SetupError> {
    let p = secure_join(rootfs, path)?;
    if fs::symlink_metadata(&p).is_err() {
        return Ok(());
    }
    let s = p.to_str().ok_or("rootfs path is not UTF-8")?;
    do_mount(Some(s), &p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    do_mount(
        None,
        &p,
        None,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None,
    )
}

/// Makes `rootfs` the root of the mount namespace and detaches the old root.
pub fn pivot(rootfs: &Path) -> Result<(), SetupError> {
    nix::unistd::chdir(rootfs).map_err(|e| err(format!("chdir {}", rootfs.display()), e))?;
    crate::timing::mark("init: mounts done");
    nix::unistd::pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    // The old root is now stacked under the new one at "."; detach it.
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach old root", e))?;
    crate::timing::mark("init: old root detached");
    nix::unistd::chdir("/").map_err(|e| err("chdir /", e))
}

/// Remounts the (already pivoted) root read-only.
pub fn make_root_readonly() -> Result<(), SetupError> {
    do_mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_join_keeps_links_inside_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        symlink("/etc", r.join("etc-link")).unwrap();
        symlink("../../../../..", r.join("usr/up")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        assert_eq!(
            secure_join(r, "/etc-link/passwd").unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            secure_join(r, "usr/up/etc/shadow").unwrap(),
            r.join("etc/shadow")
        );
        assert_eq!(secure_join(r, "/../../x").unwrap(), r.join("x"));
        assert_eq!(secure_join(r, "/bin/sh").unwrap(), r.join("usr/bin/sh"));
        assert!(
            secure_join(r, "/loop/x")
                .unwrap_err()
                .contains("too many levels")
        );
    }

    #[test]
    fn overlay_options_use_short_names_and_put_the_top_layer_first() {
        let layers = vec![
            PathBuf::from("/s/layers/aaa"),
            PathBuf::from("/s/layers/bbb"),
        ];
        let (cwd, o) = overlay_options(
            &layers,
            Path::new("/c/upper"),
            Path::new("/c/work"),
            Path::new("/c/empty"),
        );
        assert_eq!(cwd, Some(PathBuf::from("/s/layers")));
        assert_eq!(o, "lowerdir=bbb:aaa,upperdir=/c/upper,workdir=/c/work");
        let (cwd, o) = overlay_options(
            &[],
            Path::new("/c/upper"),
            Path::new("/c/work"),
            Path::new("/c/empty"),
        );
        assert_eq!(cwd, Some(PathBuf::from("/c")));
        assert_eq!(o, "lowerdir=empty,upperdir=/c/upper,workdir=/c/work");
    }
}
