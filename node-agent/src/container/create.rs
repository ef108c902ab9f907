//! Turning [`CreateOptions`] and an image into a container on disk.

use std::fs;
use std::io::Write;

use berth_runtime::spec::{
    ContainerSpec, LogConfig, MountSpec, NetworkMode, RestartPolicy, RootfsSpec,
};

use super::options::{VolumeSource, parse_signal, parse_volume, valid_name, validate_limits};
use super::{ContainerError, ContainerInfo, ContainerManager, CreateOptions, random_id};

const DEFAULT_SHM: u64 = 64 * 1024 * 1024;
const DEFAULT_STOP_TIMEOUT_S: u64 = 10;

impl ContainerManager {
    /// Creates a container (not started). Nothing is left behind when it fails.
    pub fn create(&self, opts: &CreateOptions) -> Result<ContainerInfo, ContainerError> {
        let spec = self.build_spec(opts)?;
        self.claim_name(&spec.name, &spec.id)?;
        if let Err(e) = self.record_links(&spec) {
            self.forget_links(&spec);
            self.release_name(&spec.name, &spec.id);
            return Err(e);
        }
        let dir = self.dir(&spec.id);
        let result = (|| {
            // The overlay's directories are made by the container's first process, in
            // parallel with its cgroup set-up (see berth_runtime::rootfs::mount_overlay).
            fs::create_dir_all(dir.root())
                .map_err(|e| ContainerError::io("create", dir.root(), e))?;
            let json = serde_json::to_vec_pretty(&spec)
                .map_err(|e| ContainerError::InvalidOption(e.to_string()))?;
            berth_runtime::state::write_atomic(&dir.config(), &json)?;
            // No state.json yet: a container without one is "created" until its monitor writes it.
            Ok::<(), ContainerError>(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(dir.root());
            self.forget_links(&spec);
            let _ = fs::remove_file(self.name_file(&spec.name));
            return Err(e);
        }
        Ok(ContainerInfo {
            spec,
            state: berth_runtime::state::State::created(),
            monitor_alive: false,
            process_alive: false,
            network: None,
        })
    }

    fn build_spec(&self, opts: &CreateOptions) -> Result<ContainerSpec, ContainerError> {
        if opts.auto_remove && opts.restart != RestartPolicy::No {
            return Err(ContainerError::InvalidOption(
                "--rm and --restart cannot be used together: a removed container cannot be restarted".into(),
            ));
        }
        validate_limits(&opts.limits)?;
        if let Some(name) = &opts.name
            && !valid_name(name)
        {
            return Err(ContainerError::InvalidOption(format!(
                "invalid container name {name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters"
            )));
        }
        let image = self.images.resolve(&opts.image)?;
        let cfg = &image.config;

        let entrypoint = opts
            .entrypoint
            .clone()
            .or_else(|| cfg.entrypoint.clone())
            .unwrap_or_default();
        let cmd = if !opts.command.is_empty() {
            opts.command.clone()
        } else if opts.entrypoint.is_some() {
            Vec::new()
        } else {
            cfg.cmd.clone().unwrap_or_default()
        };
        let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
        if args.is_empty() || args[0].is_empty() {
            return Err(ContainerError::InvalidOption(format!(
                "no command to run: image {} has no Entrypoint or Cmd; give a command after the image",
                opts.image
            )));
        }

        let env = merge_env(&cfg.env, &opts.env)?;

        let capabilities = berth_runtime::caps::resolve(&opts.cap_add, &opts.cap_drop)
            .map_err(|e| ContainerError::InvalidOption(e.to_string()))?;

        let mut mounts = Vec::new();
        for v in &opts.volumes {
            let vs = parse_volume(v)?;
            let source = match vs.source {
                VolumeSource::Host(p) => {
                    if !p.exists() {
                        return Err(ContainerError::InvalidOption(format!(
                            "invalid volume {v:?}: host path {} does not exist",
                            p.display()
                        )));
                    }
                    p
                }
                VolumeSource::Named(n) => {
                    let d = self
                        .config()
                        .state_dir
                        .join("volumes")
                        .join(&n)
                        .join("_data");
                    fs::create_dir_all(&d)
                        .map_err(|e| ContainerError::io("create volume", &d, e))?;
                    d
                }
            };
            mounts.push(MountSpec {
                source,
                target: vs.target,
                read_only: vs.read_only,
            });
        }

        if opts.network != NetworkMode::Bridge {
            let what = if !opts.publish.is_empty() {
                Some("published ports (-p)")
            } else if !opts.links.is_empty() {
                Some("links (--link)")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(ContainerError::InvalidOption(format!(
                    "{what} need the bridge network; this container uses --network {}",
                    if opts.network == NetworkMode::Host {
                        "host"
                    } else {
                        "none"
                    }
                )));
            }
        }
        // Validated now, resolved to host ports at each start.
        let port_specs = super::network::port_specs(&opts.publish)?;
        let links = self.resolve_links(&opts.links)?;
        let mut exposed_ports: Vec<String> = cfg.exposed_ports.iter().cloned().collect();
        for e in &opts.expose {
            let ports = crate::net::files::parse_exposed(e)
                .map_err(|err| ContainerError::InvalidOption(format!("invalid --expose: {err}")))?;
            for p in ports {
                let s = format!("{}/{}", p.port, p.proto);
                if !exposed_ports.contains(&s) {
                    exposed_ports.push(s);
                }
            }
        }
        for p in &port_specs {
            let s = format!("{}/{}", p.container_port, p.protocol);
            if !exposed_ports.contains(&s) {
                exposed_ports.push(s);
            }
        }

        let stop_signal = match opts.stop_signal.as_deref().or(cfg.stop_signal.as_deref()) {
            Some(s) => parse_signal(s)?,
            None => libc::SIGTERM,
        };
        let id = random_id()?;
        let short = id[..12].to_string();
        let mut labels = cfg.labels.clone();
        labels.extend(opts.labels.clone());
        Ok(ContainerSpec {
            name: opts.name.clone().unwrap_or_else(|| short.clone()),
            hostname: opts.hostname.clone().unwrap_or(short),
            image: opts.image.clone(),
            image_id: image.id.clone(),
            args,
            env,
            cwd: opts
                .workdir
                .clone()
                .or_else(|| cfg.working_dir.clone())
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            user: opts
                .user
                .clone()
                .or_else(|| cfg.user.clone())
                .unwrap_or_default(),
            rootfs: RootfsSpec {
                layers: dedup_layers(self.images.layer_dirs(&image)),
                read_only: opts.read_only,
            },
            mounts,
            cgroup_path: format!("{}/{}", self.config().cgroup_parent, id),
            limits: opts.limits.clone(),
            capabilities,
            no_new_privileges: opts.no_new_privileges,
            network: opts.network,
            publish: opts.publish.clone(),
            links,
            link_env: Vec::new(),
            extra_hosts: opts.extra_hosts.clone(),
            dns: opts.dns.clone(),
            shm_size: opts.shm_size.unwrap_or(DEFAULT_SHM),
            restart: opts.restart,
            stop_signal,
            stop_timeout_ms: opts.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT_S) * 1000,
            auto_remove: opts.auto_remove,
            log: LogConfig::default(),
            labels,
            exposed_ports,
            id,
        })
    }

    /// Claims `name` for `id` atomically (`O_EXCL`); a claim whose container is gone is stale
    /// and taken over.
    fn claim_name(&self, name: &str, id: &str) -> Result<(), ContainerError> {
        let path = self.name_file(name);
        for _ in 0..3 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    return f
                        .write_all(id.as_bytes())
                        .map_err(|e| ContainerError::io("write", &path, e));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(&path).unwrap_or_default();
                    let owner = owner.trim();
                    if owner.is_empty() || self.containers_dir().join(owner).is_dir() {
                        return Err(ContainerError::NameInUse {
                            name: name.to_string(),
                            id: owner.to_string(),
                        });
                    }
                    let _ = fs::remove_file(&path);
                }
                Err(e) => return Err(ContainerError::io("create", &path, e)),
            }
        }
        Err(ContainerError::NameInUse {
            name: name.to_string(),
            id: "(being created)".into(),
        })
    }

    pub(crate) fn release_name(&self, name: &str, id: &str) {
        let path = self.name_file(name);
        if fs::read_to_string(&path).is_ok_and(|owner| owner.trim() == id) {
            let _ = fs::remove_file(path);
        }
    }
}

/// Keeps only the topmost occurrence of a layer used twice (images with repeated empty
/// layers): overlayfs refuses the same lower directory twice, and the upper copy already
/// wins over everything below it, so the result is the same file system.
fn dedup_layers(layers: Vec<std::path::PathBuf>) -> Vec<std::path::PathBuf> {
    let mut out: Vec<std::path::PathBuf> = Vec::with_capacity(layers.len());
    for l in layers.into_iter().rev() {
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::dedup_layers;
    use std::path::PathBuf;

    #[test]
    fn repeated_layers_keep_their_topmost_place() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            dedup_layers(vec![p("a"), p("b"), p("a"), p("c")]),
            vec![p("b"), p("a"), p("c")]
        );
    }
}

/// Docker's rule for `-e`: `KEY=VALUE` sets or replaces `KEY`; a bare `KEY` takes the
/// caller's value and is dropped when the caller has none.
pub(crate) fn merge_env(
    base: &[String],
    overrides: &[String],
) -> Result<Vec<String>, ContainerError> {
    let mut env = base.to_vec();
    for e in overrides {
        let entry = match e.split_once('=') {
            Some((k, _)) if !k.is_empty() => e.clone(),
            Some(_) => {
                return Err(ContainerError::InvalidOption(format!(
                    "invalid environment variable {e:?}: empty name"
                )));
            }
            None => match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            },
        };
        let key = entry.split('=').next().unwrap_or_default().to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(entry);
    }
    Ok(env)
}

#[cfg(test)]
mod env_tests {
    use super::merge_env;

    #[test]
    fn overrides_replace_and_bare_names_copy_or_drop() {
        let base = vec!["A=1".to_string(), "B=2".to_string()];
        let got = merge_env(
            &base,
            &["A=9".into(), "BERTH_SURELY_UNSET_VAR".into(), "C=3".into()],
        )
        .unwrap();
        assert_eq!(got, vec!["B=2", "A=9", "C=3"]);
        assert!(
            merge_env(&base, &["=x".into()])
                .unwrap_err()
                .to_string()
                .contains("\"=x\"")
        );
    }
}
