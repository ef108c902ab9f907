//! `berth cluster init | join | leave | token`: forming a cluster of several hosts with the
//! steps of [`crate::local`] and [`crate::local::cluster`]. `init` is `berth up` with a
//! routable address; both `init` and a controller's `join` write the context `default`.

use berth_proto::v1;

use super::local::{forget_context, ready_line, write_context};
use super::{Io, block_on, resolve};
use crate::args::{
    ClusterCommand, ClusterInitArgs, ClusterJoinArgs, ClusterLeaveArgs, ClusterNodeArgs,
    ClusterPlaceArgs, ClusterTokenArgs, GlobalArgs,
};
use crate::error::CliError;
use crate::exit;
use crate::local::cluster::{self as steps, controller_advertise, stored_token};
use crate::local::{self, LocalError, Options, TokenRole, addr};

/// Runs `berth cluster ...`.
pub fn run(g: &GlobalArgs, c: &ClusterCommand, io: &mut Io) -> Result<u8, CliError> {
    match c {
        ClusterCommand::Init(a) => init(g, a, io),
        ClusterCommand::Join(a) => join(g, a, io),
        ClusterCommand::Leave(a) => leave(g, a, io),
        ClusterCommand::Token(a) => block_on(token(g, a, io)),
    }
}

fn options(place: &ClusterPlaceArgs, node: Option<&ClusterNodeArgs>) -> Result<Options, CliError> {
    let mut o = Options::new()?;
    o.data_dir = place.data_dir.clone();
    o.cgroup_parent = place.cgroup_parent.clone();
    if let Some(n) = node {
        o.labels = n.labels.clone();
        o.hostname = n.hostname.clone();
        o.timeout = n.timeout;
    }
    Ok(o)
}

/// The controller address to advertise: `--advertise`, else the one this data directory's
/// controller has, else this host's default-route address.
fn advertise(o: &Options, given: Option<&str>) -> Result<String, LocalError> {
    if given.is_none()
        && let Some(existing) = controller_advertise(&o.data_dir.join("controller"))?
    {
        return Ok(existing);
    }
    addr::advertise(given, addr::default_route_source)
}

/// The command that joins a host with `token` to the controller at `addr`.
pub fn join_command(token: &str, addr: &str) -> String {
    format!("berth cluster join --token {token} {addr}")
}

fn init(g: &GlobalArgs, a: &ClusterInitArgs, io: &mut Io) -> Result<u8, CliError> {
    let mut o = options(&a.place, Some(&a.node))?;
    o.agent = !a.no_agent;
    o.overlay = a.overlay.clone();
    o.addr_given = a.advertise.is_some();
    o.addr = advertise(&o, a.advertise.as_deref())?;
    let r = local::up(&o, "cluster init")?;
    o.addr = r.addr.clone();
    if r.initialised {
        io.print(&format!(
            "created a cluster in {}, its controller advertised at {}\n",
            o.data_dir.display(),
            r.addr
        ))?;
    }
    if r.joined {
        io.print("joined this host as a node\n")?;
    }
    let creds = o.credentials();
    write_context(g, &creds, io)?;
    io.print(&ready_line(&r, &creds))?;
    for (role, what) in [
        (TokenRole::Agent, "To add a node, run on it (as root):"),
        (
            TokenRole::Controller,
            "To add a controller (3 or 5 in all survive failures), run on it (as root):",
        ),
    ] {
        match stored_token(&o, role) {
            Some(t) => io.print(&format!("\n{what}\n  {}\n", join_command(&t, &r.addr)))?,
            None => io.print(&format!(
                "\nno {} join token is stored: `berth cluster token {} --rotate` makes one\n",
                role.as_str(),
                role.as_str()
            ))?,
        }
    }
    Ok(exit::OK)
}

fn join(g: &GlobalArgs, a: &ClusterJoinArgs, io: &mut Io) -> Result<u8, CliError> {
    let mut o = options(&a.place, Some(&a.node))?;
    let role = steps::token_role(&a.token)?;
    if role == TokenRole::Controller {
        o.addr = advertise(&o, a.advertise.as_deref())?;
    }
    let r = steps::join(&o, &a.controller, &a.token)?;
    match (role, r.member_id, r.addr) {
        (TokenRole::Controller, Some(id), Some(own)) => {
            if r.joined {
                io.print(&format!(
                    "joined the cluster of {} as controller member {id}, advertised at {own}\n",
                    a.controller
                ))?;
            }
            o.addr = own;
            let creds = o.credentials();
            write_context(g, &creds, io)?;
            let what = if r.started {
                "started"
            } else {
                "already running"
            };
            io.print(&format!(
                "controller member {id} is a voter ({what}, {:.2} s); this host runs no node: join it with an agent token too to run tasks here\n",
                r.elapsed.as_secs_f64()
            ))?;
        }
        _ => {
            if r.joined {
                io.print(&format!(
                    "joined the cluster of {} as a node\n",
                    a.controller
                ))?;
            }
            let what = if r.started {
                "started and registered"
            } else {
                "already running"
            };
            io.print(&format!(
                "node agent {what} ({:.2} s); manage the cluster from a controller host (`berth node ls` there)\n",
                r.elapsed.as_secs_f64()
            ))?;
        }
    }
    Ok(exit::OK)
}

fn leave(g: &GlobalArgs, a: &ClusterLeaveArgs, io: &mut Io) -> Result<u8, CliError> {
    let o = options(&a.place, None)?;
    let r = steps::leave(&o, a.force)?;
    if let Some(id) = r.removed_member {
        io.print(&format!(
            "controller member {id} removed from the membership\n"
        ))?;
    }
    if r.was_last {
        io.print("this was the cluster's last controller: the cluster is gone\n")?;
    }
    if let Some(why) = &r.not_removed {
        io.note(&format!(
            "warning: this controller was not removed from the membership ({why}); remove it from another controller if the cluster lives on\n"
        ));
    }
    if let Some(id) = &r.removed_node {
        io.print(&format!(
            "node {id} removed from the cluster (its tasks move to other nodes)\n"
        ))?;
    }
    if r.left_as_node {
        io.print(&format!(
            "node stopped: {} container(s) removed, network and cgroups cleaned up\n",
            r.containers
        ))?;
    }
    if let Some((id, why)) = &r.node_left_listed {
        io.note(&format!(
            "hint: the cluster still lists this node ({why}; it shows down once its heartbeats stop): run `berth node rm {id}` from an admin host\n"
        ));
    }
    // The context `default` pointed at this host's controller: it is gone.
    forget_context(g, &o.data_dir, io)?;
    io.print(&format!(
        "left the cluster; removed {}\n",
        o.data_dir.display()
    ))?;
    Ok(exit::OK)
}

async fn token(g: &GlobalArgs, a: &ClusterTokenArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let mut o = Options::new()?;
    o.data_dir = a.data_dir.clone();
    let role = a.role;
    let token = if a.rotate {
        let client = super::connect(g, io).await?;
        let what = format!("rotate the {} join token", role.as_str());
        let r = client
            .call(&what, |mut c| {
                let request = v1::RotateTokenRequest {
                    role: match role {
                        TokenRole::Agent => v1::JoinRole::Agent,
                        TokenRole::Controller => v1::JoinRole::Controller,
                    }
                    .into(),
                };
                async move { c.rotate_token(request).await }
            })
            .await?;
        if !steps::store_token(&o, role, &r.token)? && !a.quiet {
            io.note(&format!(
                "note: {} does not exist here, so the new token is not stored; keep it\n",
                o.data_dir.display()
            ));
        }
        r.token
    } else {
        stored_token(&o, role).ok_or_else(|| LocalError::NoToken {
            role: role.as_str(),
            dir: o.data_dir.clone(),
        })?
    };
    if a.quiet {
        io.print(&format!("{token}\n"))?;
        return Ok(exit::OK);
    }
    let target = match controller_advertise(&o.data_dir.join("controller"))? {
        Some(addr) => addr,
        None => resolve(g, io)
            .ok()
            .and_then(|r| r.context.endpoints.first().cloned())
            .unwrap_or_else(|| "<controller HOST:PORT>".to_owned()),
    };
    if a.rotate {
        io.print(&format!(
            "new {} join token (the old one is refused from now on)\n",
            role.as_str()
        ))?;
    }
    let what = match role {
        TokenRole::Agent => "a node",
        TokenRole::Controller => "a controller",
    };
    io.print(&format!(
        "To add {what}, run on it (as root):\n  {}\n",
        join_command(&token, &target)
    ))?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_command_is_complete() {
        assert_eq!(
            join_command("BERTH-1-x", "10.0.0.1:7443"),
            "berth cluster join --token BERTH-1-x 10.0.0.1:7443"
        );
    }
}
