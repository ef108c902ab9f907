//! `berth up` and `berth down`: the single-node cluster of [`crate::local`].

use std::io::Write;
use std::time::Duration;

use crate::args::{DownArgs, LocalArgs, UpArgs};
use crate::error::CliError;
use crate::local::{self, Options};

fn options(a: &LocalArgs) -> Result<Options, CliError> {
    let mut o = Options::new()?;
    o.data_dir = a.data_dir.clone();
    o.addr = a.addr.clone();
    o.cgroup_parent = a.cgroup_parent.clone();
    Ok(o)
}

/// `berth up`.
pub fn up(a: &UpArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let mut o = options(&a.local)?;
    o.timeout = Duration::from_secs(a.timeout);
    let r = local::up(&o)?;
    let w = |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(CliError::Write);
    if r.initialised {
        w(
            out,
            format!("created a cluster in {}", o.data_dir.display()),
        )?;
    }
    if r.joined {
        w(out, "joined this host as a node".into())?;
    }
    let what = match (r.started_controller, r.started_agent) {
        (false, false) => "already up",
        (true, true) => "started",
        (true, false) => "started the controller",
        (false, true) => "started the node agent",
    };
    let creds = o.credentials();
    w(
        out,
        format!(
            "berth is up ({what}, {:.2} s): controller {}, node {} ready",
            r.elapsed.as_secs_f64(),
            creds.endpoint,
            r.node
        ),
    )
}

/// `berth down`.
pub fn down(a: &DownArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let o = options(&a.local)?;
    let r = local::down(&o, a.purge)?;
    let w = |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(CliError::Write);
    if !r.stopped_agent && !r.stopped_controller && r.containers == 0 {
        w(out, "berth was not running".into())?;
    } else {
        w(
            out,
            format!(
                "berth is down: {} container(s) removed, network and cgroups cleaned up",
                r.containers
            ),
        )?;
    }
    if r.purged {
        w(out, format!("removed {}", o.data_dir.display()))?;
    } else {
        w(
            out,
            format!(
                "data kept in {} (`berth up` brings the services back; `berth down --purge` removes it)",
                o.data_dir.display()
            ),
        )?;
    }
    Ok(())
}
