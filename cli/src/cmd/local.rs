//! `berth up` and `berth down`: the single-node cluster of [`crate::local`]. `up` also
//! writes the context `default` (the cluster's endpoint and admin certificate) into the
//! configuration and makes it the current one.

use super::{Io, load_config};
use crate::args::{DownArgs, GlobalArgs, LocalArgs, UpArgs};
use crate::context::Context;
use crate::error::CliError;
use crate::exit;
use crate::local::{self, Credentials, Options};

/// The context `up` writes.
pub const CONTEXT: &str = "default";

fn options(a: &LocalArgs) -> Result<Options, CliError> {
    let mut o = Options::new()?;
    o.data_dir = a.data_dir.clone();
    o.addr = a.addr.clone();
    o.cgroup_parent = a.cgroup_parent.clone();
    Ok(o)
}

/// `berth up`.
pub fn up(g: &GlobalArgs, a: &UpArgs, io: &mut Io) -> Result<u8, CliError> {
    let mut o = options(&a.local)?;
    o.timeout = a.timeout;
    let r = local::up(&o, "up")?;
    if r.initialised {
        io.print(&format!("created a cluster in {}\n", o.data_dir.display()))?;
    }
    if r.joined {
        io.print("joined this host as a node\n")?;
    }
    o.addr = r.addr.clone();
    let creds = o.credentials();
    write_context(g, &creds, io)?;
    io.print(&ready_line(&r, &creds))?;
    Ok(exit::OK)
}

/// `berth is up (...)`: what `up` and `cluster init` started and what is ready.
pub fn ready_line(r: &local::UpReport, creds: &Credentials) -> String {
    let what = match (r.started_controller, r.started_agent) {
        (false, false) => "already up",
        (true, true) => "started",
        (true, false) => "started the controller",
        (false, true) => "started the node agent",
    };
    let node = if r.node.is_empty() {
        "no node on this host".to_owned()
    } else {
        format!("node {} ready", r.node)
    };
    format!(
        "berth is up ({what}, {:.2} s): controller {}, {node}\n",
        r.elapsed.as_secs_f64(),
        creds.endpoint,
    )
}

/// Writes the context [`CONTEXT`] for `creds` and makes it current, unless it is so.
pub fn write_context(g: &GlobalArgs, creds: &Credentials, io: &mut Io) -> Result<(), CliError> {
    let (path, mut config) = load_config(g, io)?;
    let context = Context {
        endpoints: vec![creds.endpoint.clone()],
        ca: creds.ca.clone(),
        cert: creds.cert.clone(),
        key: creds.key.clone(),
    };
    if config.contexts.get(CONTEXT) != Some(&context) || config.current.as_deref() != Some(CONTEXT)
    {
        config.add(CONTEXT, context, true);
        config.save(&path)?;
        io.print(&format!(
            "context `{CONTEXT}` written to {} and made current\n",
            path.display()
        ))?;
    }
    Ok(())
}

/// `berth down`.
pub fn down(g: &GlobalArgs, a: &DownArgs, io: &mut Io) -> Result<u8, CliError> {
    let o = options(&a.local)?;
    let r = local::down(&o, a.purge)?;
    if !r.stopped_agent && !r.stopped_controller && r.containers == 0 {
        io.print("berth was not running\n")?;
    } else {
        io.print(&format!(
            "berth is down: {} container(s) removed, network and cgroups cleaned up\n",
            r.containers
        ))?;
    }
    if r.purged {
        io.print(&format!("removed {}\n", o.data_dir.display()))?;
        // Its certificates are gone with it.
        forget_context(g, &o.data_dir, io)?;
    } else {
        io.print(&format!(
            "data kept in {} (`berth up` brings the services back; `berth down --purge` removes it)\n",
            o.data_dir.display()
        ))?;
    }
    Ok(exit::OK)
}

/// Removes the context `default` when its certificates are under `data_dir` (which is
/// being removed), saying so.
pub(super) fn forget_context(
    g: &GlobalArgs,
    data_dir: &std::path::Path,
    io: &mut Io,
) -> Result<(), CliError> {
    let (path, mut config) = super::load_config(g, io)?;
    if config
        .contexts
        .get(CONTEXT)
        .is_some_and(|c| c.ca.starts_with(data_dir))
    {
        config.remove(CONTEXT, &path)?;
        config.save(&path)?;
        io.print(&format!(
            "context `{CONTEXT}` removed from {}\n",
            path.display()
        ))?;
    }
    Ok(())
}
