//! The keys each level of a service file may hold: those berth reads, and those the
//! Compose specification has that berth does not support, each with what berth does about
//! it (a warning, or an error when ignoring it is not safe) and a hint.

/// What berth does with a Compose key it does not support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Ignored with a warning and this hint.
    Warn(&'static str),
    /// Refused with this hint: ignoring it would run something other than what was asked.
    Refuse(&'static str),
}

/// One level of the file (`services.NAME`, `deploy`, ...).
pub(crate) struct Level {
    /// Its name in messages (`deploy`, `a service`).
    pub name: &'static str,
    /// The keys berth reads here.
    pub supported: &'static [&'static str],
    /// Compose keys berth does not support here.
    pub unsupported: &'static [(&'static str, Policy)],
}

impl Level {
    /// The policy for a Compose key berth does not support, if `key` is one.
    pub fn policy(&self, key: &str) -> Option<Policy> {
        self.unsupported
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| *p)
    }

    /// The known key nearest to `key`, if one is near enough to be a likely typo.
    pub fn suggest(&self, key: &str) -> Option<&'static str> {
        let lower = key.to_ascii_lowercase();
        self.supported
            .iter()
            .chain(self.unsupported.iter().map(|(k, _)| k))
            .map(|k| (strsim::damerau_levenshtein(&lower, k), *k))
            .filter(|(d, k)| {
                *d <= (k.len().max(lower.len()) / 3).max(1)
                    || k.starts_with(&lower) && lower.len() >= 3
            })
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
    }
}

use Policy::{Refuse, Warn};

const IGNORED: &str = "it is ignored; remove it to silence this warning";

/// The top level of a file.
pub(crate) const TOP: Level = Level {
    name: "the file",
    supported: &["services", "version", "name"],
    unsupported: &[
        (
            "networks",
            Warn(
                "berth gives every service one network where linked services reach each other by name; top-level `networks:` is ignored",
            ),
        ),
        (
            "volumes",
            Warn("top-level `volumes:` is ignored; berth does not create named volumes yet"),
        ),
        (
            "configs",
            Warn("top-level `configs:` is ignored; berth does not distribute configs yet"),
        ),
        (
            "secrets",
            Warn("top-level `secrets:` is ignored; berth does not distribute secrets yet"),
        ),
        ("models", Warn(IGNORED)),
        (
            "include",
            Refuse("berth does not follow `include:`; pass every file with its own `-f` instead"),
        ),
    ],
};

/// A service.
pub(crate) const SERVICE: Level = Level {
    name: "a service",
    supported: &[
        "image",
        "command",
        "entrypoint",
        "environment",
        "env_file",
        "ports",
        "expose",
        "links",
        "depends_on",
        "volumes",
        "labels",
        "healthcheck",
        "stop_grace_period",
        "deploy",
        // Handled one by one: refused or warned depending on their value.
        "build",
        "privileged",
        "network_mode",
        "pid",
        "ipc",
        "userns_mode",
        "uts",
        "cap_drop",
        "read_only",
        "security_opt",
        "user",
        "restart",
        "scale",
    ],
    unsupported: &[
        ("annotations", Warn(IGNORED)),
        ("attach", Warn(IGNORED)),
        (
            "blkio_config",
            Warn("berth does not limit block I/O; it is ignored"),
        ),
        (
            "cap_add",
            Warn("berth runs containers with its default capabilities; extra ones are not granted"),
        ),
        ("cgroup", Warn(IGNORED)),
        (
            "cgroup_parent",
            Warn("berth places containers in its own cgroup tree; it is ignored"),
        ),
        (
            "configs",
            Warn(
                "berth does not distribute configs yet; bake the file into the image or mount it when volumes are supported",
            ),
        ),
        (
            "container_name",
            Warn("berth names containers after the service and the task; it is ignored"),
        ),
        ("cpu_count", Warn("use `deploy.resources.limits.cpus`")),
        ("cpu_percent", Warn("use `deploy.resources.limits.cpus`")),
        ("cpu_period", Warn("use `deploy.resources.limits.cpus`")),
        ("cpu_quota", Warn("use `deploy.resources.limits.cpus`")),
        ("cpu_rt_period", Warn(IGNORED)),
        ("cpu_rt_runtime", Warn(IGNORED)),
        (
            "cpu_shares",
            Warn("use `deploy.resources.reservations.cpus`"),
        ),
        ("cpus", Warn("use `deploy.resources.limits.cpus`")),
        ("cpuset", Warn(IGNORED)),
        ("credential_spec", Warn(IGNORED)),
        (
            "develop",
            Warn("`develop:` is for `docker compose watch`; it is ignored"),
        ),
        (
            "device_cgroup_rules",
            Warn("berth gives containers no devices beyond the defaults; it is ignored"),
        ),
        (
            "devices",
            Warn("berth gives containers no devices beyond the defaults; it is ignored"),
        ),
        (
            "dns",
            Warn("containers use their node's resolver; it is ignored"),
        ),
        (
            "dns_opt",
            Warn("containers use their node's resolver; it is ignored"),
        ),
        (
            "dns_search",
            Warn("containers use their node's resolver; it is ignored"),
        ),
        ("domainname", Warn(IGNORED)),
        ("driver_opts", Warn(IGNORED)),
        (
            "extends",
            Refuse(
                "berth does not follow `extends:`; copy the keys into the service (YAML anchors and `<<: *base` work)",
            ),
        ),
        (
            "external_links",
            Warn("only services of these files can be linked; it is ignored"),
        ),
        (
            "extra_hosts",
            Warn("berth writes `/etc/hosts` itself (for links); extra entries are ignored"),
        ),
        (
            "gpus",
            Warn("berth does not give containers GPUs; it is ignored"),
        ),
        ("group_add", Warn(IGNORED)),
        (
            "hostname",
            Warn("berth sets the container's host name itself; it is ignored"),
        ),
        (
            "init",
            Warn("berth does not insert an init process; it is ignored"),
        ),
        ("isolation", Warn(IGNORED)),
        (
            "label_file",
            Warn("write the labels under `labels:`; it is ignored"),
        ),
        (
            "logging",
            Warn(
                "berth keeps each task's output itself (`berth logs`); logging drivers are ignored",
            ),
        ),
        ("mac_address", Warn(IGNORED)),
        ("mem_limit", Warn("use `deploy.resources.limits.memory`")),
        (
            "mem_reservation",
            Warn("use `deploy.resources.reservations.memory`"),
        ),
        ("mem_swappiness", Warn(IGNORED)),
        ("memswap_limit", Warn(IGNORED)),
        ("models", Warn(IGNORED)),
        (
            "networks",
            Warn(
                "berth gives every service one network where linked services reach each other by name; use `links:`",
            ),
        ),
        ("oom_kill_disable", Warn(IGNORED)),
        ("oom_score_adj", Warn(IGNORED)),
        ("pids_limit", Warn(IGNORED)),
        (
            "platform",
            Warn("berth runs the image it has; it is ignored"),
        ),
        ("post_start", Warn("lifecycle hooks are ignored")),
        ("pre_stop", Warn("lifecycle hooks are ignored")),
        (
            "profiles",
            Warn("berth applies every service of the files; profiles are ignored"),
        ),
        (
            "provider",
            Refuse("berth cannot run services provided by a plugin; remove the service"),
        ),
        (
            "pull_policy",
            Warn("berth uses images imported with `berth image import`; it is ignored"),
        ),
        (
            "runtime",
            Warn("berth runs containers with its own runtime; it is ignored"),
        ),
        (
            "secrets",
            Warn(
                "berth does not distribute secrets yet; the service will not find them under /run/secrets",
            ),
        ),
        ("shm_size", Warn(IGNORED)),
        (
            "stdin_open",
            Warn("use `berth exec -it` to reach a task interactively; it is ignored"),
        ),
        (
            "stop_signal",
            Warn("berth stops tasks with SIGTERM; it is ignored"),
        ),
        ("storage_opt", Warn(IGNORED)),
        ("sysctls", Warn(IGNORED)),
        ("tmpfs", Warn("mounts are not applied yet; it is ignored")),
        (
            "tty",
            Warn("use `berth exec -it` for a terminal; it is ignored"),
        ),
        ("ulimits", Warn(IGNORED)),
        ("use_api_socket", Warn(IGNORED)),
        (
            "volumes_from",
            Warn("mounts are not applied yet; it is ignored"),
        ),
        (
            "working_dir",
            Warn("the command runs in the image's working directory; set WORKDIR in the image"),
        ),
    ],
};

/// `deploy:`.
pub(crate) const DEPLOY: Level = Level {
    name: "`deploy`",
    supported: &[
        "mode",
        "replicas",
        "resources",
        "placement",
        "restart_policy",
        "update_config",
        "rollback_config",
        "labels",
    ],
    unsupported: &[(
        "endpoint_mode",
        Warn("berth reaches services through links; it is ignored"),
    )],
};

/// `deploy.resources`.
pub(crate) const RESOURCES: Level = Level {
    name: "`deploy.resources`",
    supported: &["limits", "reservations"],
    unsupported: &[],
};

/// `deploy.resources.limits` and `.reservations`.
pub(crate) const RESOURCE: Level = Level {
    name: "`deploy.resources`",
    supported: &["cpus", "memory"],
    unsupported: &[
        ("pids", Warn(IGNORED)),
        (
            "devices",
            Warn("berth gives containers no devices; it is ignored"),
        ),
        ("generic_resources", Warn(IGNORED)),
    ],
};

/// `deploy.placement`.
pub(crate) const PLACEMENT: Level = Level {
    name: "`deploy.placement`",
    supported: &["constraints", "preferences", "max_replicas_per_node"],
    unsupported: &[],
};

/// `deploy.restart_policy`.
pub(crate) const RESTART_POLICY: Level = Level {
    name: "`deploy.restart_policy`",
    supported: &["condition", "delay", "max_attempts", "window"],
    unsupported: &[],
};

/// `deploy.update_config` and `deploy.rollback_config`.
pub(crate) const UPDATE_CONFIG: Level = Level {
    name: "`deploy.update_config`",
    supported: &[
        "parallelism",
        "delay",
        "failure_action",
        "monitor",
        "max_failure_ratio",
        "order",
    ],
    unsupported: &[],
};

/// `healthcheck:`.
pub(crate) const HEALTHCHECK: Level = Level {
    name: "`healthcheck`",
    supported: &[
        "test",
        "interval",
        "timeout",
        "retries",
        "start_period",
        "start_interval",
        "disable",
    ],
    unsupported: &[],
};

/// A long-syntax port.
pub(crate) const PORT: Level = Level {
    name: "a port",
    supported: &[
        "target",
        "published",
        "host_ip",
        "protocol",
        "mode",
        "name",
        "app_protocol",
    ],
    unsupported: &[],
};

/// A long-syntax `depends_on` entry.
pub(crate) const DEPENDS_ON: Level = Level {
    name: "a `depends_on` entry",
    supported: &["condition", "restart", "required"],
    unsupported: &[],
};

/// A long-syntax `env_file` entry.
pub(crate) const ENV_FILE: Level = Level {
    name: "an `env_file` entry",
    supported: &["path", "required", "format"],
    unsupported: &[],
};

/// A long-syntax volume.
pub(crate) const VOLUME: Level = Level {
    name: "a volume",
    supported: &[
        "type",
        "source",
        "target",
        "read_only",
        "bind",
        "volume",
        "tmpfs",
        "consistency",
        "image",
    ],
    unsupported: &[],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_suggest_the_nearest_key() {
        assert_eq!(DEPLOY.suggest("replcas"), Some("replicas"));
        assert_eq!(DEPLOY.suggest("replica"), Some("replicas"));
        assert_eq!(SERVICE.suggest("enviroment"), Some("environment"));
        assert_eq!(SERVICE.suggest("imgae"), Some("image"));
        assert_eq!(SERVICE.suggest("Image"), Some("image"));
        assert_eq!(SERVICE.suggest("depends"), Some("depends_on"));
        assert_eq!(SERVICE.suggest("zzzzzz"), None);
        assert_eq!(HEALTHCHECK.suggest("intervall"), Some("interval"));
    }

    #[test]
    fn every_level_lists_each_key_once() {
        for level in [
            &TOP,
            &SERVICE,
            &DEPLOY,
            &RESOURCES,
            &RESOURCE,
            &PLACEMENT,
            &RESTART_POLICY,
            &UPDATE_CONFIG,
            &HEALTHCHECK,
            &PORT,
            &DEPENDS_ON,
            &ENV_FILE,
            &VOLUME,
        ] {
            let mut all: Vec<&str> = level.supported.to_vec();
            all.extend(level.unsupported.iter().map(|(k, _)| *k));
            let n = all.len();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), n, "{}", level.name);
        }
    }
}
