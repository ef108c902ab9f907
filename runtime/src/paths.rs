//! The layout of one container's state directory.

use std::path::{Path, PathBuf};

/// `<state-dir>/containers/<id>/` and the files in it.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    root: PathBuf,
}

impl ContainerDir {
    /// The directory of a container.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The resolved [`crate::spec::ContainerSpec`].
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// The [`crate::state::State`] the monitor keeps.
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// Present when a stop was requested: the monitor must not restart.
    pub fn stop_marker(&self) -> PathBuf {
        self.root.join("stop-requested")
    }
    /// The current log file (rotated ones get `.1`, `.2`, …).
    pub fn log(&self) -> PathBuf {
        self.root.join("container.log")
    }
    /// The monitor's own diagnostics.
    pub fn monitor_log(&self) -> PathBuf {
        self.root.join("monitor.log")
    }
    /// The overlay's upper directory (the container's writable layer).
    pub fn upper(&self) -> PathBuf {
        self.root.join("upper")
    }
    /// The overlay's work directory.
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    /// Where the overlay is mounted (inside the container's mount namespace only).
    pub fn rootfs(&self) -> PathBuf {
        self.root.join("rootfs")
    }
    /// The container's `/etc/hosts`, bind-mounted over the image's when present.
    pub fn hosts(&self) -> PathBuf {
        self.root.join("hosts")
    }
    /// The container's `/etc/resolv.conf`, bind-mounted over the image's when present.
    pub fn resolv_conf(&self) -> PathBuf {
        self.root.join("resolv.conf")
    }
    /// The container's `/etc/hostname`, bind-mounted over the image's when present.
    pub fn hostname(&self) -> PathBuf {
        self.root.join("hostname")
    }
    /// The agent's record of the container's network attachment (address, ports).
    pub fn network(&self) -> PathBuf {
        self.root.join("network.json")
    }
    /// An empty directory, the lower layer of an image without layers.
    pub fn empty(&self) -> PathBuf {
        self.root.join("empty")
    }
}
