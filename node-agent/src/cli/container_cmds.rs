//! Container commands.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use berth_runtime::cgroup::{Limits, parse_memory};
use berth_runtime::spec::{NetworkMode, RestartPolicy};

use super::args::{
    ExecArgs, InspectArgs, KillArgs, LogsArgs, NetworkCommand, PsArgs, RmArgs, RunArgs, StartArgs,
    StopArgs,
};
use super::format;
use crate::container::options::parse_signal;
use crate::container::{
    Attach, ContainerError, ContainerManager, CreateOptions, ExecOptions, LogOptions,
};

pub(super) fn options(a: &RunArgs) -> anyhow::Result<CreateOptions> {
    let memory = a.memory.as_deref().map(parse_memory).transpose()?;
    let shm_size = a
        .shm_size
        .as_deref()
        .map(|s| match parse_memory(s) {
            Ok(0) => Err(anyhow::anyhow!(
                "invalid --shm-size {s:?}: it must be more than 0"
            )),
            Ok(n) => Ok(n),
            Err(e) => Err(anyhow::anyhow!("invalid --shm-size {s:?}: {e}")),
        })
        .transpose()?;
    let network = NetworkMode::parse(&a.network).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut no_new_privileges = false;
    for s in &a.security_opt {
        match s.as_str() {
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => {
                no_new_privileges = true
            }
            "no-new-privileges:false" | "no-new-privileges=false" => no_new_privileges = false,
            other => {
                bail!("unsupported --security-opt {other:?}: only no-new-privileges is supported")
            }
        }
    }
    let mut labels = std::collections::BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            bail!("invalid label {l:?}: expected KEY=VALUE");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(CreateOptions {
        image: a.image.clone(),
        name: a.name.clone(),
        command: a.command.clone(),
        entrypoint: a.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                vec![]
            } else {
                vec![e.clone()]
            }
        }),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        volumes: a.volumes.clone(),
        limits: Limits {
            memory_bytes: memory,
            cpus: a.cpus,
            cpu_shares: a.cpu_shares,
            pids_max: a.pids_limit,
        },
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        no_new_privileges,
        read_only: a.read_only,
        network,
        publish: a.publish.clone(),
        expose: a.expose.clone(),
        links: a.links.clone(),
        extra_hosts: a
            .add_hosts
            .iter()
            .map(|h| match h.split_once(':') {
                Some((name, ip)) if !name.is_empty() && ip.parse::<std::net::IpAddr>().is_ok() => {
                    Ok(format!("{ip}\t{name}"))
                }
                _ => bail!("invalid --add-host {h:?}: expected HOST:IP"),
            })
            .collect::<anyhow::Result<_>>()?,
        dns: a.dns.clone(),
        restart: RestartPolicy::parse(&a.restart).map_err(anyhow::Error::msg)?,
        auto_remove: a.rm,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        shm_size,
        labels,
    })
}

pub(super) fn run(m: &ContainerManager, a: RunArgs) -> anyhow::Result<u8> {
    let opts = options(&a)?;
    let attach = if a.detach {
        Attach::Detached
    } else {
        Attach::Attached
    };
    let started = match m.run(&opts, attach) {
        Ok(s) => s,
        Err(ContainerError::StartFailed { code, message }) => {
            eprintln!("error: container could not start: {message}");
            return Ok(code.clamp(0, 255) as u8);
        }
        Err(e) => return Err(e.into()),
    };
    if a.detach {
        println!("{}", started.id);
        return Ok(0);
    }
    Ok(started.wait()?.clamp(0, 255) as u8)
}

pub(super) fn create(m: &ContainerManager, a: RunArgs) -> anyhow::Result<u8> {
    let info = m.create(&options(&a)?)?;
    println!("{}", info.spec.id);
    Ok(0)
}

pub(super) fn start(m: &ContainerManager, a: StartArgs) -> anyhow::Result<u8> {
    if a.attach {
        if a.containers.len() != 1 {
            bail!("start --attach takes exactly one container");
        }
        return match m.start(&a.containers[0], Attach::Attached) {
            Ok(s) => Ok(s.wait()?.clamp(0, 255) as u8),
            Err(ContainerError::StartFailed { code, message }) => {
                eprintln!("error: container could not start: {message}");
                Ok(code.clamp(0, 255) as u8)
            }
            Err(e) => Err(e.into()),
        };
    }
    each(&a.containers, |c| {
        m.start(c, Attach::Detached)?;
        println!("{c}");
        Ok(())
    })
}

pub(super) fn ps(m: &ContainerManager, a: PsArgs) -> anyhow::Result<u8> {
    let list = m.list(a.all)?;
    if a.quiet {
        for c in &list {
            println!("{}", &c.spec.id[..12]);
        }
    } else if a.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &list.iter().map(format::container_json).collect::<Vec<_>>()
            )?
        );
    } else if a.output == "table" {
        print!("{}", format::ps_table(&list));
    } else {
        bail!("invalid --output {:?}: expected table or json", a.output);
    }
    Ok(0)
}

pub(super) fn stop(m: &ContainerManager, a: StopArgs) -> anyhow::Result<u8> {
    each(&a.containers, |c| {
        m.stop(c, a.time.map(Duration::from_secs))?;
        println!("{c}");
        Ok(())
    })
}

pub(super) fn kill(m: &ContainerManager, a: KillArgs) -> anyhow::Result<u8> {
    let sig = parse_signal(&a.signal)?;
    each(&a.containers, |c| {
        m.kill(c, sig)?;
        println!("{c}");
        Ok(())
    })
}

pub(super) fn rm(m: &ContainerManager, a: RmArgs) -> anyhow::Result<u8> {
    each(&a.containers, |c| {
        m.remove(c, a.force)?;
        println!("{c}");
        Ok(())
    })
}

pub(super) fn logs(m: &ContainerManager, a: LogsArgs) -> anyhow::Result<u8> {
    let opts = LogOptions {
        follow: a.follow,
        timestamps: a.timestamps,
        tail: a.tail,
        since: None,
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    m.write_logs(&a.container, &opts, &mut out, &mut err)?;
    out.flush()?;
    Ok(0)
}

pub(super) fn exec(m: &ContainerManager, a: ExecArgs) -> anyhow::Result<u8> {
    let opts = ExecOptions {
        args: a.command,
        env: a.env,
        user: a.user,
        workdir: a.workdir,
    };
    Ok(m.exec(&a.container, &opts)?.clamp(0, 255) as u8)
}

pub(super) fn inspect(m: &ContainerManager, a: InspectArgs) -> anyhow::Result<u8> {
    let mut out = Vec::new();
    for c in &a.containers {
        out.push(format::container_json(&m.inspect(c)?));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

pub(super) fn network(m: &ContainerManager, a: NetworkCommand) -> anyhow::Result<u8> {
    match a {
        NetworkCommand::Inspect => {
            let net = m.node_net()?;
            let v = serde_json::json!({
                "Config": net.config(),
                "Gateway": net.config().gateway(),
                "Addresses": net.addresses()?,
                "Published": net.published()?,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        NetworkCommand::Release { .. } => unreachable!("handled before the state is opened"),
        NetworkCommand::Reconcile => {
            let r = m.reconcile_network()?;
            for (owner, ip) in &r.addresses {
                println!("released address {ip} of {owner}");
            }
            for owner in &r.rule_owners {
                println!("removed the port rules of {owner}");
            }
            for veth in &r.veths {
                println!("deleted veth {veth}");
            }
        }
    }
    Ok(0)
}

/// Runs `f` for each item, reporting each failure and going on, as Docker does.
fn each(
    items: &[String],
    mut f: impl FnMut(&str) -> Result<(), ContainerError>,
) -> anyhow::Result<u8> {
    let mut failed = false;
    for i in items {
        if let Err(e) = f(i) {
            eprintln!("error: {i}: {e}");
            failed = true;
        }
    }
    Ok(if failed { 1 } else { 0 })
}
