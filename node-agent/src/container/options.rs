//! What a user asks for when creating a container, and its validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_runtime::cgroup::{self, Limits};
use berth_runtime::spec::{NetworkMode, RestartPolicy};

use super::ContainerError;

/// Options of `berth-agent run` / `create`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Image reference.
    pub image: String,
    /// Name (generated when `None`).
    pub name: Option<String>,
    /// Replaces the image's Cmd.
    pub command: Vec<String>,
    /// Replaces the image's Entrypoint (and drops its Cmd unless `command` is given).
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` or `KEY` (taken from the caller's environment, as Docker does).
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// User spec.
    pub user: Option<String>,
    /// Hostname (default: the first 12 characters of the id).
    pub hostname: Option<String>,
    /// `SRC:DST[:ro|rw]` where SRC is an absolute host path or a volume name.
    pub volumes: Vec<String>,
    /// Limits.
    pub limits: Limits,
    /// Capabilities to add.
    pub cap_add: Vec<String>,
    /// Capabilities to drop.
    pub cap_drop: Vec<String>,
    /// `no_new_privs`.
    pub no_new_privileges: bool,
    /// Read-only root file system.
    pub read_only: bool,
    /// Network mode.
    pub network: NetworkMode,
    /// Published ports, Docker's `-p` syntax.
    pub publish: Vec<String>,
    /// Exposed ports (`--expose 80[/tcp]`, ranges allowed), added to the image's.
    pub expose: Vec<String>,
    /// Legacy links, `NAME[:ALIAS]`.
    pub links: Vec<String>,
    /// Extra `/etc/hosts` lines, `<ip>\t<names>`.
    pub extra_hosts: Vec<String>,
    /// Nameservers replacing the host's in `/etc/resolv.conf`.
    pub dns: Vec<std::net::Ipv4Addr>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Remove when it exits.
    pub auto_remove: bool,
    /// Stop signal name or number (default: the image's, else SIGTERM).
    pub stop_signal: Option<String>,
    /// Stop grace period in seconds (default 10).
    pub stop_timeout: Option<u64>,
    /// Size of /dev/shm in bytes (default 64 MiB).
    pub shm_size: Option<u64>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A parsed `-v` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Host path, or a named volume.
    pub source: VolumeSource,
    /// Absolute path in the container.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

/// Where a mount's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A host path (bind mount).
    Host(PathBuf),
    /// A named volume under the state directory.
    Named(String),
}

/// Parses Docker's `-v SRC:DST[:ro|rw]`.
pub fn parse_volume(s: &str) -> Result<VolumeSpec, ContainerError> {
    let bad = |why: &str| ContainerError::InvalidOption(format!("invalid volume {s:?}: {why}"));
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [src, dst] => (*src, *dst, None),
        [src, dst, mode] => (*src, *dst, Some(*mode)),
        _ => return Err(bad("expected SOURCE:TARGET[:ro|rw]")),
    };
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => return Err(bad(&format!("unknown mode {m:?}, expected ro or rw"))),
    };
    if !dst.starts_with('/') {
        return Err(bad("the target must be an absolute path in the container"));
    }
    if dst.split('/').any(|c| c == "..") {
        return Err(bad("the target must not contain '..'"));
    }
    let source = if src.starts_with('/') {
        VolumeSource::Host(PathBuf::from(src))
    } else if valid_name(src) {
        VolumeSource::Named(src.to_string())
    } else {
        return Err(bad(
            "the source must be an absolute host path or a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)",
        ));
    };
    Ok(VolumeSpec {
        source,
        target: dst.to_string(),
        read_only,
    })
}

/// Docker's rule for container and volume names.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 128
}

/// Parses a signal given as `SIGTERM`, `TERM` or `15`.
pub fn parse_signal(s: &str) -> Result<i32, ContainerError> {
    if let Ok(n) = s.parse::<i32>()
        && (1..=64).contains(&n)
    {
        return Ok(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| {
            ContainerError::InvalidOption(format!(
                "invalid signal {s:?}: expected a name such as SIGTERM or a number"
            ))
        })
}

/// Checks the limits (shared with the cgroup layer so both agree on what is valid).
pub fn validate_limits(l: &Limits) -> Result<(), ContainerError> {
    cgroup::validate(l).map_err(|e| ContainerError::InvalidOption(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes() {
        assert_eq!(
            parse_volume("/srv/data:/data:ro").unwrap(),
            VolumeSpec {
                source: VolumeSource::Host("/srv/data".into()),
                target: "/data".into(),
                read_only: true
            }
        );
        assert_eq!(
            parse_volume("cache:/c").unwrap().source,
            VolumeSource::Named("cache".into())
        );
        for bad in [
            "/a",
            "/a:b",
            "/a:/b:rx",
            "a b:/c",
            "/a:/../etc",
            "/a:/b:ro:x",
        ] {
            let e = parse_volume(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("kill").unwrap(), 9);
        assert_eq!(parse_signal("2").unwrap(), 2);
        assert!(
            parse_signal("SIGNOPE")
                .unwrap_err()
                .to_string()
                .contains("SIGNOPE")
        );
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-web"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
    }
}
