//! [`IptablesFirewall`]: reads the state with one `iptables-save`, plans with [`rules`] (and
//! [`mesh`] for [`ServiceFirewall`]), and applies each change as one `iptables-restore
//! --noflush --wait` call, one change at a time per process. The fast calls
//! ([`Firewall::add_new_ports`], [`Firewall::remove_known_ports`],
//! [`ServiceFirewall::apply_service`], [`ServiceFirewall::remove_service`]) skip the read
//! unless iptables refuses their batch.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use tracing::{debug, warn};

use super::mesh::{self, Scope, ServicePlan};
use super::rules::{self, Batch, State, Table};
use super::{
    Firewall, FirewallError, MeshConfig, NetworkRules, Publish, ServiceChange, ServiceFirewall,
    ServiceRules,
};

/// Runs `iptables-save` and `iptables-restore`; the seam between [`IptablesFirewall`]'s
/// planning and the kernel.
pub trait Runner: Send + Sync + std::fmt::Debug {
    /// The `nat` and `filter` tables, as `iptables-save` prints them.
    fn save(&self) -> Result<String, FirewallError>;
    /// Applies `iptables-restore --noflush` input.
    fn restore(&self, input: &str) -> Result<(), FirewallError>;
}

/// The real [`Runner`]: the `iptables-save` and `iptables-restore` binaries.
#[derive(Debug, Clone)]
pub struct Commands {
    save: PathBuf,
    restore: PathBuf,
}

impl Commands {
    /// `iptables-save` and `iptables-restore`, the variant (nft or legacy) that `iptables`
    /// itself is on this system, found on `PATH` or in `/usr/sbin` or `/sbin`.
    pub fn system() -> Commands {
        Commands::with_binaries(find("iptables-save"), find("iptables-restore"))
    }

    /// Explicit binaries, e.g. `iptables-legacy-save` and `iptables-legacy-restore`.
    pub fn with_binaries(save: impl Into<PathBuf>, restore: impl Into<PathBuf>) -> Commands {
        Commands {
            save: save.into(),
            restore: restore.into(),
        }
    }
}

pub(super) fn find(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn command_line(bin: &Path, args: &[&str]) -> String {
    let mut s = bin.display().to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

fn run(bin: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, FirewallError> {
    let command = command_line(bin, args);
    let spawn_err = |source| FirewallError::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(bin)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // iptables-restore reads all its input before it writes anything much, so writing
        // first and reading the output afterwards cannot deadlock.
        pipe.write_all(input.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(FirewallError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Runner for Commands {
    fn save(&self) -> Result<String, FirewallError> {
        let mut out = String::new();
        for table in [Table::Nat, Table::Filter] {
            out.push_str(&run(&self.save, &["-t", table.as_str()], None)?);
        }
        Ok(out)
    }

    fn restore(&self, input: &str) -> Result<(), FirewallError> {
        run(&self.restore, &["--noflush", "--wait"], Some(input)).map(drop)
    }
}

/// The iptables back-end (nft or legacy, whichever [`Runner`] it is given).
#[derive(Debug)]
pub struct IptablesFirewall<R: Runner = Commands> {
    runner: R,
    /// Serialises read-plan-apply within the process; other processes are kept apart by
    /// `--wait` only for the apply step.
    lock: Mutex<()>,
}

impl IptablesFirewall<Commands> {
    /// The system's `iptables-save` and `iptables-restore` ([`Commands::system`]).
    pub fn new() -> IptablesFirewall<Commands> {
        IptablesFirewall::with_runner(Commands::system())
    }
}

impl Default for IptablesFirewall<Commands> {
    fn default() -> Self {
        IptablesFirewall::new()
    }
}

impl<R: Runner> IptablesFirewall<R> {
    /// A back-end over `runner`.
    pub fn with_runner(runner: R) -> IptablesFirewall<R> {
        IptablesFirewall {
            runner,
            lock: Mutex::new(()),
        }
    }

    /// The runner.
    pub fn runner(&self) -> &R {
        &self.runner
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data, so a panic while holding it leaves nothing inconsistent.
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> Result<State, FirewallError> {
        Ok(State::parse(&self.runner.save()?))
    }

    fn apply(&self, what: &str, batch: &Batch) -> Result<(), FirewallError> {
        if batch.is_empty() {
            debug!(what, "firewall already up to date");
            return Ok(());
        }
        debug!(what, changes = batch.ops.len(), "applying firewall batch");
        self.runner.restore(&batch.render())
    }
}

impl<R: Runner> IptablesFirewall<R> {
    /// The exact, save-based removal, for callers that hold the lock.
    fn remove_ports_locked(
        &self,
        net: &NetworkRules,
        owner: &str,
        ports: &[Publish],
    ) -> Result<(), FirewallError> {
        let batch = rules::remove(net, owner, ports, &self.state()?)?;
        self.apply("remove ports", &batch)
    }
}

impl<R: Runner> Firewall for IptablesFirewall<R> {
    fn setup_network(&self, net: &NetworkRules) -> Result<(), FirewallError> {
        let _g = self.lock();
        let batch = rules::setup(net, &self.state()?)?;
        self.apply("setup", &batch)
    }

    fn add_ports(
        &self,
        net: &NetworkRules,
        owner: &str,
        ports: &[Publish],
    ) -> Result<(), FirewallError> {
        let _g = self.lock();
        let state = self.state()?;
        let batch = rules::add(net, owner, ports, &state)?;
        if let Some((table, chain)) = rules::CHAINS.iter().find(|(t, c)| !state.has_chain(*t, c)) {
            return Err(FirewallError::NotSetUp {
                table: table.as_str(),
                chain,
            });
        }
        self.apply("add ports", &batch)
    }

    fn remove_ports(
        &self,
        net: &NetworkRules,
        owner: &str,
        ports: &[Publish],
    ) -> Result<(), FirewallError> {
        let _g = self.lock();
        self.remove_ports_locked(net, owner, ports)
    }

    fn add_new_ports(
        &self,
        net: &NetworkRules,
        owner: &str,
        ports: &[Publish],
    ) -> Result<(), FirewallError> {
        let batch = rules::add_new(net, owner, ports)?;
        let _g = self.lock();
        let Err(e) = self.apply("add new ports", &batch) else {
            return Ok(());
        };
        // A refused batch changed nothing. Redo it exactly from the real state: what
        // `setup_network` then `add_ports` would do, planned from one read, as one batch.
        warn!(
            owner,
            bridge = %net.bridge,
            error = %e,
            "fast port add refused; setting the network up again and adding exactly",
        );
        let state = self.state()?;
        let mut batch = rules::setup(net, &state)?;
        batch.ops.extend(rules::add(net, owner, ports, &state)?.ops);
        self.apply("setup and add ports", &batch)
    }

    fn remove_known_ports(
        &self,
        net: &NetworkRules,
        owner: &str,
        ports: &[Publish],
    ) -> Result<(), FirewallError> {
        let batch = rules::remove_known(net, owner, ports)?;
        let _g = self.lock();
        let Err(e) = self.apply("remove known ports", &batch) else {
            return Ok(());
        };
        warn!(
            owner,
            bridge = %net.bridge,
            error = %e,
            "fast port removal refused; removing the rules that exist",
        );
        self.remove_ports_locked(net, owner, ports)
    }

    fn remove_owners(
        &self,
        _net: &NetworkRules,
        owners: &BTreeSet<String>,
    ) -> Result<(), FirewallError> {
        let _g = self.lock();
        let batch = rules::remove_owners(&self.state()?, owners)?;
        self.apply("remove owners", &batch)
    }

    fn remove_network(&self, net: &NetworkRules) -> Result<(), FirewallError> {
        let _g = self.lock();
        let batch = rules::remove_network(net, &self.state()?)?;
        self.apply("remove network", &batch)
    }

    fn teardown(&self, _net: &NetworkRules) -> Result<(), FirewallError> {
        let _g = self.lock();
        let mut errors = Vec::new();
        let batch = match self.state() {
            Ok(state) => rules::teardown(&state),
            Err(e) => {
                errors.push(e);
                return Err(FirewallError::Teardown { errors });
            }
        };
        let Err(e) = self.apply("teardown", &batch) else {
            return Ok(());
        };
        // One step failed (someone else changed a rule under us, a chain is referenced by a
        // foreign rule, ...): do each step on its own so that everything else still goes.
        warn!(error = %e, "teardown batch failed; removing rule by rule");
        for step in batch.split() {
            if let Err(e) = self.apply("teardown step", &step) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(FirewallError::Teardown { errors })
        }
    }

    fn owners(&self, _net: &NetworkRules) -> Result<BTreeSet<String>, FirewallError> {
        let _g = self.lock();
        Ok(rules::owners(&self.state()?))
    }
}

impl<R: Runner> IptablesFirewall<R> {
    /// Applies `batch`; if iptables refuses it, one step at a time, collecting the errors
    /// (teardown must finish).
    fn apply_all_steps(&self, what: &str, batch: &Batch) -> Result<(), FirewallError> {
        let Err(e) = self.apply(what, batch) else {
            return Ok(());
        };
        warn!(what, error = %e, "batch failed; applying it step by step");
        let errors: Vec<FirewallError> = batch
            .split()
            .iter()
            .filter_map(|step| self.apply(what, step).err())
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(FirewallError::Teardown { errors })
        }
    }
}

impl<R: Runner> ServiceFirewall for IptablesFirewall<R> {
    fn setup_mesh(&self, config: &MeshConfig) -> Result<(), FirewallError> {
        mesh::check_mesh(config)?;
        let _g = self.lock();
        let batch = mesh::setup(config, &self.state()?)?;
        self.apply("setup mesh", &batch)
    }

    fn apply_service(
        &self,
        previous: Option<&ServiceRules>,
        next: &ServiceRules,
    ) -> Result<(), FirewallError> {
        let next_plan = mesh::service_plan(next)?;
        let prev_plan = match previous {
            Some(p) => mesh::service_plan(p)?,
            None => ServicePlan::empty(&next.name),
        };
        let batch = mesh::change(&prev_plan, &next_plan);
        let _g = self.lock();
        let Err(e) = self.apply("apply service", &batch) else {
            return Ok(());
        };
        // A refused batch changed nothing (per table): redo it from the real state.
        warn!(
            service = %next.name,
            error = %e,
            "fast service change refused; applying it exactly",
        );
        let state = self.state()?;
        let mut batch = mesh::sync(
            std::slice::from_ref(&next_plan),
            Scope::Service(&next.name),
            &state,
        )?;
        if prev_plan.name != next_plan.name {
            batch
                .ops
                .extend(mesh::sync(&[], Scope::Service(&prev_plan.name), &state)?.ops);
        }
        self.apply("sync service", &batch)
    }

    fn apply_services(&self, changes: &[ServiceChange<'_>]) -> Result<(), FirewallError> {
        let mut batch = Batch { ops: Vec::new() };
        for c in changes {
            let name = match (c.previous, c.next) {
                (_, Some(r)) | (Some(r), None) => &r.name,
                (None, None) => continue,
            };
            let plan = |r: Option<&ServiceRules>| match r {
                Some(r) => mesh::service_plan(r),
                None => Ok(ServicePlan::empty(name)),
            };
            batch
                .ops
                .extend(mesh::change(&plan(c.previous)?, &plan(c.next)?).ops);
        }
        let _g = self.lock();
        self.apply("apply services", &batch)
    }

    fn remove_service(&self, service: &ServiceRules) -> Result<(), FirewallError> {
        let plan = mesh::service_plan(service)?;
        let batch = mesh::change(&plan, &ServicePlan::empty(&service.name));
        let _g = self.lock();
        let Err(e) = self.apply("remove service", &batch) else {
            return Ok(());
        };
        warn!(
            service = %service.name,
            error = %e,
            "fast service removal refused; removing what exists",
        );
        let batch = mesh::sync(&[], Scope::Service(&service.name), &self.state()?)?;
        self.apply("remove service named", &batch)
    }

    fn remove_service_named(&self, name: &str) -> Result<(), FirewallError> {
        mesh::check_service_name(name)?;
        let _g = self.lock();
        let batch = mesh::sync(&[], Scope::Service(name), &self.state()?)?;
        self.apply("remove service named", &batch)
    }

    fn sync_services(&self, services: &[ServiceRules]) -> Result<(), FirewallError> {
        let mut names = BTreeSet::new();
        let mut plans = Vec::with_capacity(services.len());
        for s in services {
            if !names.insert(s.name.as_str()) {
                return Err(FirewallError::Invalid {
                    what: "service",
                    value: s.name.clone(),
                    reason: "given twice",
                });
            }
            plans.push(mesh::service_plan(s)?);
        }
        let _g = self.lock();
        let batch = mesh::sync(&plans, Scope::All, &self.state()?)?;
        self.apply("sync services", &batch)
    }

    fn services(&self) -> Result<BTreeSet<String>, FirewallError> {
        let _g = self.lock();
        Ok(mesh::services(&self.state()?))
    }

    fn teardown_mesh(&self) -> Result<(), FirewallError> {
        let _g = self.lock();
        let state = self
            .state()
            .map_err(|e| FirewallError::Teardown { errors: vec![e] })?;
        self.apply_all_steps("teardown mesh", &mesh::teardown(&state))
    }
}

/// A [`Runner`] over an in-memory [`State`] that behaves like iptables, for tests that must
/// not need root.
#[derive(Debug, Default)]
pub struct MemoryRunner {
    state: Mutex<State>,
}

impl MemoryRunner {
    /// The current tables.
    pub fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Runner for MemoryRunner {
    fn save(&self) -> Result<String, FirewallError> {
        let state = self.state();
        let mut out = String::new();
        for table in [Table::Nat, Table::Filter] {
            out.push_str(&format!("*{}\n", table.as_str()));
            for c in state.chains(table) {
                out.push_str(&format!(":{c} - [0:0]\n"));
            }
            for r in state.rule_lines(table) {
                out.push_str(&r);
                out.push('\n');
            }
            out.push_str("COMMIT\n");
        }
        Ok(out)
    }

    fn restore(&self, input: &str) -> Result<(), FirewallError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.apply(input).map_err(|stderr| FirewallError::Command {
            command: "memory iptables-restore".to_owned(),
            status: "exit status: 1".to_owned(),
            stderr,
        })
    }
}
