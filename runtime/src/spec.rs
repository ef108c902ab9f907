//! What the monitor needs to run one container, fully resolved by the agent.
//!
//! The agent merges the image config with the user's options into a [`ContainerSpec`] and
//! writes it to the container's state directory (`config.json`); the monitor reads it and
//! never looks at the image store.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cgroup::Limits;

/// A fully resolved container: nothing in it needs the image store or defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// 64 hex characters.
    pub id: String,
    /// Unique name on the node.
    pub name: String,
    /// Image reference as the user gave it.
    pub image: String,
    /// Image id (`sha256:<hex>`).
    pub image_id: String,
    /// Program and arguments (entrypoint followed by command), at least one element.
    pub args: Vec<String>,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// Absolute working directory inside the container.
    pub cwd: String,
    /// `user`, `uid`, `user:group`, `uid:gid` (empty: root).
    pub user: String,
    /// The container's hostname.
    pub hostname: String,
    /// The root file system.
    pub rootfs: RootfsSpec,
    /// Bind mounts and volumes, in order.
    pub mounts: Vec<MountSpec>,
    /// Cgroup path relative to the hierarchy roots (`<parent>/<id>`).
    pub cgroup_path: String,
    /// Resource limits.
    pub limits: Limits,
    /// Capability names (`CAP_CHOWN`, …) in the bounding, permitted and effective sets.
    pub capabilities: Vec<String>,
    /// Sets `no_new_privs` before exec.
    pub no_new_privileges: bool,
    /// Network namespace mode.
    pub network: NetworkMode,
    /// Published ports as the user wrote them (`[ip:][host:]container[/proto]`), resolved
    /// to host ports by the agent at each start (bridge network only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Legacy links to other containers on the node (bridge network only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkSpec>,
    /// Docker's link environment variables, computed by the agent at each start; the
    /// container's own `env` wins over them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_env: Vec<String>,
    /// Extra `/etc/hosts` lines (`<ip>\t<names>`), after the links' (a service's links to
    /// other services' virtual IPs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// The nameservers of its `/etc/resolv.conf` instead of the host's (the node's DNS
    /// resolver); the host's search domains and options are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<std::net::Ipv4Addr>,
    /// Size of `/dev/shm` in bytes.
    pub shm_size: u64,
    /// Restart policy applied by the monitor.
    pub restart: RestartPolicy,
    /// Signal number sent by `stop` before SIGKILL.
    pub stop_signal: i32,
    /// Grace period of `stop`, in milliseconds.
    pub stop_timeout_ms: u64,
    /// Remove the container when it exits (and will not be restarted).
    pub auto_remove: bool,
    /// Log rotation.
    pub log: LogConfig,
    /// Labels from the image and the user.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Ports the image exposes (`80/tcp`), informational.
    pub exposed_ports: Vec<String>,
}

/// Overlay layers and the container's own writable directories.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RootfsSpec {
    /// Unpacked image layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// Mount the root file system read-only.
    pub read_only: bool,
}

/// One bind mount or named volume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// Absolute host path (a volume's `_data` directory for named volumes).
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// Which network namespace the container gets.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A new network namespace with only loopback, up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A network namespace the agent prepared (a veth on the node's bridge, an address, a
    /// default route), handed to the monitor as a file descriptor and kept by it across
    /// restarts.
    Bridge,
}

impl NetworkMode {
    /// Parses `none`, `host` or `bridge`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "host" => Ok(Self::Host),
            "bridge" | "default" => Ok(Self::Bridge),
            other => Err(format!(
                "invalid network {other:?}: expected bridge, host or none \
                 (user-defined networks are not supported on a node)"
            )),
        }
    }
}

/// A legacy link (`--link NAME[:ALIAS]`) to another container on the node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The linked container's id.
    pub target: String,
    /// The name it is known by inside the linking container.
    pub alias: String,
}

/// When the monitor starts the container again after it exits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never.
    #[default]
    No,
    /// After a non-zero exit, at most `max_retries` times (0: no limit).
    OnFailure {
        /// Most restarts (0: unlimited).
        max_retries: u32,
    },
    /// Always, until stopped.
    Always,
}

impl RestartPolicy {
    /// Parses Docker's syntax: `no`, `on-failure`, `on-failure:N`, `always`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "no" | "" => Ok(Self::No),
            "always" => Ok(Self::Always),
            "on-failure" => Ok(Self::OnFailure { max_retries: 0 }),
            other => match other.strip_prefix("on-failure:") {
                Some(n) => n.parse().map(|max_retries| Self::OnFailure { max_retries }).map_err(|_| {
                    format!("invalid restart policy {s:?}: the count after on-failure: must be a whole number")
                }),
                None => Err(format!(
                    "invalid restart policy {s:?}: expected no, on-failure[:N] or always"
                )),
            },
        }
    }

    /// Whether a container that exited with `code` after `restarts` restarts is started again.
    pub fn should_restart(&self, code: i32, restarts: u32) -> bool {
        match *self {
            Self::No => false,
            Self::Always => true,
            Self::OnFailure { max_retries } => {
                code != 0 && (max_retries == 0 || restarts < max_retries)
            }
        }
    }
}

/// Size-capped log rotation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Rotate when the current file reaches this many bytes.
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_size: 10 * 1024 * 1024,
            max_files: 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policy_parses_docker_syntax() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::parse("always").unwrap(),
            RestartPolicy::Always
        );
        assert_eq!(
            RestartPolicy::parse("on-failure:3").unwrap(),
            RestartPolicy::OnFailure { max_retries: 3 }
        );
        let err = RestartPolicy::parse("on-failure:x").unwrap_err();
        assert!(err.contains("on-failure:x"), "{err}");
        assert!(
            RestartPolicy::parse("sometimes")
                .unwrap_err()
                .contains("sometimes")
        );
    }

    #[test]
    fn restart_decisions() {
        let p = RestartPolicy::OnFailure { max_retries: 2 };
        assert!(p.should_restart(1, 0));
        assert!(p.should_restart(1, 1));
        assert!(!p.should_restart(1, 2));
        assert!(!p.should_restart(0, 0));
        assert!(RestartPolicy::Always.should_restart(0, 100));
        assert!(!RestartPolicy::No.should_restart(1, 0));
    }
}
