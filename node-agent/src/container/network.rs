//! A container's networking, seen from the container manager: the files it gets under `/etc`
//! for every network mode, and for the bridge its attachment ([`NodeNet::attach`]), its
//! legacy links and the `/etc/hosts` of the containers linking to it.
//!
//! Links are recorded as `<state-dir>/links/<target-id>/<linker-id>` (written at create) so
//! that a target coming back with a new address finds the containers whose `/etc/hosts` to
//! rewrite without reading every container's spec.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use berth_runtime::paths::ContainerDir;
use berth_runtime::spec::{ContainerSpec, LinkSpec, NetworkMode};
use nix::fcntl::Flock;

use super::{ContainerError, ContainerInfo, ContainerManager};
use crate::net::files::{self, ExposedPort, LinkProto, LinkTarget};
use crate::net::ports::{self, PortSpec, Protocol};
use crate::net::{Attachment, NetError, NodeNet, Pending};

const HOST_HOSTS: &str = "/etc/hosts";
const HOST_RESOLV: &str = "/etc/resolv.conf";
const SYSTEMD_RESOLV: &str = "/run/systemd/resolve/resolv.conf";

/// What a start holds between preparing the network and the monitor's report.
#[derive(Debug, Default)]
pub(crate) struct PreparedNetwork {
    /// For the bridge: the begun attach, finished by [`ContainerManager::finish_network`]
    /// while the monitor builds the container.
    pub(crate) pending: Option<PendingNetwork>,
    /// Held until the container runs: [`ContainerManager::reconcile_network`] treats a
    /// container whose lock is held as live.
    pub(crate) _start_lock: Option<Flock<File>>,
}

/// A bridge attach begun before the monitor starts.
#[derive(Debug)]
pub(crate) struct PendingNetwork {
    net: NodeNet,
    pending: Pending,
    specs: Vec<PortSpec>,
}

impl PendingNetwork {
    /// Undoes the begun attach.
    pub(crate) fn abort(self) {
        self.net.abort(self.pending);
    }
}

impl PreparedNetwork {
    /// The namespace to hand to the monitor.
    pub(crate) fn netns(&self) -> Option<&OwnedFd> {
        self.pending.as_ref().map(|p| p.pending.netns())
    }
}

/// Parses every `-p` of a spec.
pub(crate) fn port_specs(publish: &[String]) -> Result<Vec<PortSpec>, ContainerError> {
    let mut out = Vec::new();
    for p in publish {
        out.extend(
            ports::parse_publish(p).map_err(|e| ContainerError::InvalidOption(e.to_string()))?,
        );
    }
    Ok(out)
}

fn read_attachment(dir: &ContainerDir) -> Option<Attachment> {
    serde_json::from_slice(&fs::read(dir.network()).ok()?).ok()
}

/// Rewrites a file in place (same inode), as a bind-mounted file must be.
fn write_in_place(path: &Path, contents: &str) -> Result<(), ContainerError> {
    let mut f = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| ContainerError::io("open", path, e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| ContainerError::io("write", path, e))
}

impl ContainerManager {
    fn links_dir(&self) -> PathBuf {
        self.config().state_dir.join("links")
    }

    /// The node network.
    pub fn node_net(&self) -> Result<NodeNet, ContainerError> {
        Ok(NodeNet::open(
            &self.config().state_dir.join("net"),
            self.config().network.clone(),
        )?)
    }

    /// Resolves `--link NAME[:ALIAS]` options at create time.
    pub(crate) fn resolve_links(&self, links: &[String]) -> Result<Vec<LinkSpec>, ContainerError> {
        let mut out: Vec<LinkSpec> = Vec::new();
        for l in links {
            let (name, alias) = match l.split_once(':') {
                Some((n, a)) => (n, a),
                None => (l.as_str(), l.as_str()),
            };
            if name.is_empty() || alias.is_empty() || !super::options::valid_name(alias) {
                return Err(ContainerError::InvalidOption(format!(
                    "invalid --link {l:?}: expected NAME[:ALIAS], an alias of [a-zA-Z0-9][a-zA-Z0-9_.-]*"
                )));
            }
            let target = self.resolve(name).map_err(|_| {
                ContainerError::InvalidOption(format!(
                    "invalid --link {l:?}: no container named {name:?} on this node"
                ))
            })?;
            if out.iter().any(|o| o.alias == alias) {
                return Err(ContainerError::InvalidOption(format!(
                    "invalid --link {l:?}: alias {alias:?} is given twice"
                )));
            }
            out.push(LinkSpec {
                target,
                alias: alias.to_owned(),
            });
        }
        Ok(out)
    }

    /// Records `linker`'s links in the reverse index.
    pub(crate) fn record_links(&self, spec: &ContainerSpec) -> Result<(), ContainerError> {
        for l in &spec.links {
            let d = self.links_dir().join(&l.target);
            fs::create_dir_all(&d).map_err(|e| ContainerError::io("create", &d, e))?;
            let f = d.join(&spec.id);
            fs::write(&f, b"").map_err(|e| ContainerError::io("write", &f, e))?;
        }
        Ok(())
    }

    /// Drops a removed container from the reverse index, both ways.
    pub(crate) fn forget_links(&self, spec: &ContainerSpec) {
        for l in &spec.links {
            let _ = fs::remove_file(self.links_dir().join(&l.target).join(&spec.id));
            let _ = fs::remove_dir(self.links_dir().join(&l.target));
        }
        let _ = fs::remove_dir_all(self.links_dir().join(&spec.id));
    }

    /// Everything the container's network needs before its monitor starts: the `/etc` files
    /// for every mode; for the bridge, its attachment (`network.json`), namespace, link
    /// variables (rewritten into `config.json` when they changed) and the `/etc/hosts` of
    /// the containers that link to it.
    pub(crate) fn prepare_network(
        &self,
        info: &mut ContainerInfo,
    ) -> Result<PreparedNetwork, ContainerError> {
        let dir = self.dir(&info.spec.id);
        let spec = &info.spec;
        write_in_place(&dir.hostname(), &format!("{}\n", spec.hostname))?;
        let host_resolv =
            files::host_resolv_conf(Path::new(HOST_RESOLV), Path::new(SYSTEMD_RESOLV))
                .unwrap_or_default();
        match spec.network {
            NetworkMode::Host => {
                let hosts = fs::read_to_string(HOST_HOSTS).unwrap_or_default();
                write_in_place(&dir.hosts(), &hosts)?;
                write_in_place(&dir.resolv_conf(), &host_resolv)?;
                return Ok(PreparedNetwork::default());
            }
            NetworkMode::None => {
                write_in_place(&dir.hosts(), &files::render_hosts(None, &[]))?;
                write_in_place(
                    &dir.resolv_conf(),
                    &files::container_resolv_conf(&host_resolv).0,
                )?;
                return Ok(PreparedNetwork::default());
            }
            NetworkMode::Bridge => {}
        }

        let lock_path = dir.root().join("network.lock");
        let start_lock = crate::durable::lock_exclusive(&lock_path)
            .map_err(|e| ContainerError::io(e.op, e.path, e.source))?;
        let specs = port_specs(&spec.publish)?;
        let targets = self.link_targets(spec)?;
        let net = self.node_net()?;
        let pending = net.begin(&spec.id)?;
        let ip = pending.ip();
        let written = (|| {
            let (mut lines, env) = link_lines_and_env(&info.spec, &targets);
            lines.extend(info.spec.extra_hosts.iter().cloned());
            write_in_place(
                &dir.hosts(),
                &files::render_hosts(Some((ip, &info.spec.hostname)), &lines),
            )?;
            let resolv = if info.spec.dns.is_empty() {
                files::container_resolv_conf(&host_resolv).0
            } else {
                files::resolv_conf_with(&host_resolv, &info.spec.dns)
            };
            write_in_place(&dir.resolv_conf(), &resolv)?;
            if info.spec.link_env != env {
                info.spec.link_env = env;
                let json = serde_json::to_vec_pretty(&info.spec)
                    .map_err(|e| ContainerError::InvalidOption(e.to_string()))?;
                berth_runtime::state::write_atomic(&dir.config(), &json)?;
            }
            Ok::<(), ContainerError>(())
        })();
        if let Err(e) = written {
            net.abort(pending);
            return Err(e);
        }
        Ok(PreparedNetwork {
            pending: Some(PendingNetwork {
                net,
                pending,
                specs,
            }),
            _start_lock: Some(start_lock),
        })
    }

    /// Finishes a begun bridge attach (veth, address, ports), records it in `network.json`
    /// and rewrites the `/etc/hosts` of the containers linking to this one. On failure
    /// nothing of the attach is left.
    pub(crate) fn finish_network(&self, id: &str, p: PendingNetwork) -> Result<(), ContainerError> {
        let dir = self.dir(id);
        let att = p.net.finish(&p.pending, &p.specs)?;
        let recorded = serde_json::to_vec_pretty(&att)
            .map_err(|e| ContainerError::InvalidOption(e.to_string()))
            .and_then(|json| Ok(berth_runtime::state::write_atomic(&dir.network(), &json)?));
        if let Err(e) = recorded {
            let _ = p.net.detach(id);
            return Err(e);
        }
        self.rewrite_linkers_hosts(id);
        Ok(())
    }

    /// The running, bridge-networked containers `spec` links to, with their addresses.
    fn link_targets(
        &self,
        spec: &ContainerSpec,
    ) -> Result<Vec<(LinkSpec, ContainerInfo, Ipv4Addr)>, ContainerError> {
        let mut out = Vec::new();
        for l in &spec.links {
            let target = self.load(&l.target).map_err(|_| {
                ContainerError::InvalidOption(format!(
                    "cannot link to container {} (alias {}): it was removed",
                    &l.target[..12.min(l.target.len())],
                    l.alias
                ))
            })?;
            let att = read_attachment(&self.dir(&l.target))
                .filter(|_| target.is_active())
                .ok_or_else(|| {
                    ContainerError::InvalidOption(format!(
                        "cannot link to container {} (alias {}): it is not running on the bridge network",
                        target.spec.name, l.alias
                    ))
                })?;
            out.push((l.clone(), target, att.ip));
        }
        Ok(out)
    }

    /// Rewrites the `/etc/hosts` of every running container that links to `target` (it has
    /// just come up, maybe with a new address). Best effort: a linker that cannot be
    /// rewritten is logged.
    fn rewrite_linkers_hosts(&self, target: &str) {
        let Ok(rd) = fs::read_dir(self.links_dir().join(target)) else {
            return;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let Some(linker) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(info) = self.load(&linker) else {
                continue;
            };
            let dir = self.dir(&linker);
            let Some(att) = read_attachment(&dir) else {
                continue;
            };
            // Targets that are down keep no line, as their address is not known.
            let targets: Vec<_> = info
                .spec
                .links
                .iter()
                .filter_map(|l| {
                    let t = self.load(&l.target).ok()?;
                    let a = read_attachment(&self.dir(&l.target))?;
                    Some((l.clone(), t, a.ip))
                })
                .collect();
            let (mut lines, _) = link_lines_and_env(&info.spec, &targets);
            lines.extend(info.spec.extra_hosts.iter().cloned());
            let hosts = files::render_hosts(Some((att.ip, &info.spec.hostname)), &lines);
            if let Err(err) = write_in_place(&dir.hosts(), &hosts) {
                tracing::warn!(linker, error = %err, "rewriting /etc/hosts of a linking container");
            }
        }
    }

    /// Releases a container's bridge attachment if it still has one (its monitor is gone or
    /// never ran). Idempotent.
    pub(crate) fn release_network(&self, id: &str) -> Result<(), ContainerError> {
        let dir = self.dir(id);
        crate::net::release_recorded(&dir.network(), id)?;
        Ok(())
    }

    /// Removes the network leftovers of containers that are gone (after an agent crash):
    /// live are the containers that run, or whose start holds its network lock.
    pub fn reconcile_network(&self) -> Result<crate::net::Reconciled, ContainerError> {
        let live = self.network_users()?;
        Ok(self.node_net()?.reconcile(&live)?)
    }

    /// Removes what the agent set up on the host — the node network (rules, chains, bridge)
    /// and the cgroup parent — once no container runs; refused while one does. Containers
    /// that are stopped keep their records (a later start sets the network up again).
    pub fn teardown(&self) -> Result<(), ContainerError> {
        let live = self.network_users()?;
        // A node of a cluster runs with the subnet the controllers gave it, not the one
        // configured here: tear down the network as its address table records it.
        let net = match self.node_net() {
            Err(ContainerError::Network(crate::net::NetError::Ipam(
                crate::net::ipam::IpamError::SubnetMismatch { table, .. },
            ))) => {
                let mut config = self.config().network.clone();
                config.subnet = table;
                crate::net::NodeNet::open(&self.config().state_dir.join("net"), config)?
            }
            other => other?,
        };
        net.remove(&live)?;
        self.cgroups
            .destroy(&self.cfg.cgroup_parent)
            .map_err(berth_runtime::RuntimeError::from)?;
        Ok(())
    }

    /// The containers that hold the node network: running, or starting (holding their
    /// network lock). A stopped container's stale `network.json` is removed on the way.
    fn network_users(&self) -> Result<HashSet<String>, ContainerError> {
        let mut live = HashSet::new();
        for id in self.ids()? {
            let dir = self.dir(&id);
            let active = self.load(&id).is_ok_and(|i| i.is_active());
            // Between NodeNet::begin and the monitor's "started" a start holds the lock (and
            // network.json does not exist yet).
            let starting = matches!(
                crate::durable::try_lock_exclusive(&dir.root().join("network.lock")),
                Ok(None)
            );
            if active || starting {
                live.insert(id);
            } else if dir.network().exists() {
                let _ = fs::remove_file(dir.network());
            }
        }
        Ok(live)
    }
}

/// The `/etc/hosts` lines and the link variables of `spec`'s links to `targets`.
fn link_lines_and_env(
    spec: &ContainerSpec,
    targets: &[(LinkSpec, ContainerInfo, Ipv4Addr)],
) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut env = Vec::new();
    for (l, t, ip) in targets {
        let exposed = exposed_ports(&t.spec);
        let link = LinkTarget {
            parent_name: &spec.name,
            alias: &l.alias,
            target_name: &t.spec.name,
            target_hostname: &t.spec.hostname,
            ip: *ip,
            exposed: &exposed,
            env: &t.spec.env,
        };
        lines.push(files::link_hosts_line(&link));
        env.extend(files::link_env(&link));
    }
    (lines, env)
}

/// A container's exposed ports as Docker counts them for links: the image's and those it
/// publishes.
fn exposed_ports(spec: &ContainerSpec) -> Vec<ExposedPort> {
    let mut out: Vec<ExposedPort> = spec
        .exposed_ports
        .iter()
        .filter_map(|p| files::parse_exposed(p).ok())
        .flatten()
        .collect();
    for p in port_specs(&spec.publish).unwrap_or_default() {
        out.push(ExposedPort {
            port: p.container_port,
            proto: match p.protocol {
                Protocol::Tcp => LinkProto::Tcp,
                Protocol::Udp => LinkProto::Udp,
            },
        });
    }
    out.sort();
    out.dedup();
    out
}

impl From<NetError> for ContainerError {
    fn from(e: NetError) -> Self {
        ContainerError::Network(e)
    }
}
