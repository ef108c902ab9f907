//! Cluster formation on this host, beyond [`super::up`] (which is also `cluster init`):
//! [`join`] with a join token, whose role decides whether this host becomes a node
//! (`berth-agent join`, then `berth-agent node` in the background) or a controller member
//! (`berth-controller join`, then `berth-controller run`, which asks to be added as a
//! voter); [`leave`]; and the join tokens kept in the data directory.
//!
//! Each step is skipped when its result is already there, as in `up`: a second `join` with
//! the same cluster starts only what is not running.

use std::fs;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_controller::pki::{ClusterCa, DEFAULT_LEAF_VALIDITY, Identity, JoinToken, Role};

use super::{
    Daemon, LocalError, Options, TokenRole, addr, need_root, ready, remove_agent, run_step,
    start_agent, write_private,
};

/// The highest Raft id `join` tries for a new controller (ids are tried from 2 up, the
/// next one when the membership holds an id at another address).
const MAX_MEMBER_ID: u64 = 64;
/// What the join listener answers for an id another controller holds.
const ID_TAKEN: &str = "is already in the membership at";

/// The role a join token admits, from the token itself (`BERTH-1-<CA>-<a|c>-<secret>`).
pub fn token_role(token: &str) -> Result<TokenRole, LocalError> {
    let t = JoinToken::parse(token).map_err(|e| LocalError::BadToken {
        reason: e.to_string(),
    })?;
    Ok(match t.role() {
        Role::Controller => TokenRole::Controller,
        _ => TokenRole::Agent,
    })
}

/// The advertised address in `ctl_dir/cluster.json`, when it holds a controller.
pub fn controller_advertise(ctl_dir: &Path) -> Result<Option<String>, LocalError> {
    Ok(read_cluster(ctl_dir)?.map(|c| c.advertise))
}

/// The member id in `ctl_dir/cluster.json`, when it holds a controller.
pub fn member_id(ctl_dir: &Path) -> Result<Option<u64>, LocalError> {
    Ok(read_cluster(ctl_dir)?.map(|c| c.member_id))
}

fn read_cluster(
    ctl_dir: &Path,
) -> Result<Option<berth_controller::init::LocalCluster>, LocalError> {
    let path = ctl_dir.join("cluster.json");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LocalError::io("read", path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| LocalError::io("parse", path, std::io::Error::other(e)))
}

/// Whether the agent state `agent_dir` holds a node identity.
pub fn agent_joined(agent_dir: &Path) -> bool {
    agent_dir.join("node/node.json").exists()
}

fn node_json(agent_dir: &Path) -> Result<serde_json::Value, LocalError> {
    let path = agent_dir.join("node/node.json");
    let text = fs::read_to_string(&path).map_err(|e| LocalError::io("read", &path, e))?;
    serde_json::from_str(&text).map_err(|e| LocalError::io("parse", path, std::io::Error::other(e)))
}

/// The node id of the agent state `agent_dir` (from its `node/node.json`).
pub fn agent_node_id(agent_dir: &Path) -> Result<String, LocalError> {
    Ok(node_json(agent_dir)?["node_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// What [`join`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinReport {
    /// The token's role.
    pub role: Option<TokenRole>,
    /// The join happened now (it had not before).
    pub joined: bool,
    /// The daemon was started now.
    pub started: bool,
    /// A controller's member id.
    pub member_id: Option<u64>,
    /// A controller's advertised address.
    pub addr: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// Joins the cluster whose controller is at `target` (`HOST:PORT`, its join listener on the
/// next port) with `token`, and starts the daemon of the token's role. A controller joins
/// advertising `opts.addr`.
pub fn join(opts: &Options, target: &str, token: &str) -> Result<JoinReport, LocalError> {
    let role = token_role(token)?;
    let join_addr = addr::join_addr(target)?;
    need_root("cluster join")?;
    let started = Instant::now();
    let mut report = JoinReport {
        role: Some(role),
        ..JoinReport::default()
    };
    let existed = opts.data_dir.exists();
    let joined = match role {
        TokenRole::Agent => join_agent(opts, target, &join_addr, token, started, &mut report),
        TokenRole::Controller => join_controller(opts, &join_addr, token, started, &mut report),
    };
    if let Err(e) = joined {
        // A join refused before any daemon started leaves nothing behind.
        if !existed && !report.started {
            let _ = fs::remove_dir_all(&opts.data_dir);
        }
        return Err(e);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Checks that the join listener accepts connections (a clearer error than a failed join),
/// then makes the data directory.
fn reachable(opts: &Options, join_addr: &str) -> Result<(), LocalError> {
    check_reachable(join_addr)?;
    fs::create_dir_all(&opts.data_dir).map_err(|e| LocalError::io("create", &opts.data_dir, e))
}

fn check_reachable(join_addr: &str) -> Result<(), LocalError> {
    let unreachable = |reason: String| LocalError::Unreachable {
        addr: join_addr.to_owned(),
        reason,
    };
    let addrs: Vec<_> = join_addr
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve it: {e}")))?
        .collect();
    let mut last = "no address".to_owned();
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(3)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(unreachable(last))
}

fn join_agent(
    opts: &Options,
    target: &str,
    join_addr: &str,
    token: &str,
    started: Instant,
    report: &mut JoinReport,
) -> Result<(), LocalError> {
    let agent_bin = opts.bin("berth-agent")?;
    opts.bin("berth-monitor")?;
    let agent_dir = opts.agent_dir();
    if agent_joined(&agent_dir) {
        let node = node_json(&agent_dir)?;
        let controllers: Vec<&str> = node["controllers"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
            .unwrap_or_default();
        if !controllers.contains(&target) {
            return Err(LocalError::AlreadyMember {
                what: format!(
                    "a node whose controllers are {}, not {target}",
                    controllers.join(", ")
                ),
                dir: opts.data_dir.clone(),
            });
        }
    } else {
        reachable(opts, join_addr)?;
        super::agent_join(opts, &agent_bin, join_addr, token)?;
        report.joined = true;
    }
    let agent = Daemon::new("agent", &opts.data_dir);
    report.started = start_agent(opts, &agent_bin, &agent)?;
    if report.started {
        ready::wait_registered(&agent, opts, started)?;
    }
    Ok(())
}

fn join_controller(
    opts: &Options,
    join_addr: &str,
    token: &str,
    started: Instant,
    report: &mut JoinReport,
) -> Result<(), LocalError> {
    let controller_bin = opts.bin("berth-controller")?;
    let ctl_dir = opts.controller_dir();
    let fingerprint = JoinToken::parse(token)
        .map_err(|e| LocalError::BadToken {
            reason: e.to_string(),
        })?
        .ca_fingerprint()
        .to_string();
    let cluster = match read_cluster(&ctl_dir)? {
        Some(c) if c.ca_fingerprint != fingerprint => {
            return Err(LocalError::AlreadyMember {
                what: format!("controller {} of cluster {:?}", c.member_id, c.name),
                dir: opts.data_dir.clone(),
            });
        }
        Some(c) => c,
        None => {
            reachable(opts, join_addr)?;
            let id = join_as_controller(opts, &controller_bin, join_addr, token)?;
            report.joined = true;
            read_cluster(&ctl_dir)?.ok_or_else(|| LocalError::Step {
                step: "joining as a controller (berth-controller join)",
                status: format!("member {id} joined but wrote no cluster.json"),
                output: String::new(),
            })?
        }
    };
    report.member_id = Some(cluster.member_id);
    report.addr = Some(cluster.advertise.clone());
    write_private(&opts.token_path(TokenRole::Controller), token.trim())?;
    ensure_admin_cert(&ctl_dir)?;
    let mut opts = opts.clone();
    opts.addr = cluster.advertise.clone();
    let controller = Daemon::new("controller", &opts.data_dir);
    if !controller.running() {
        controller.start(
            Command::new(&controller_bin)
                .arg("run")
                .arg("--data-dir")
                .arg(&ctl_dir),
        )?;
        report.started = true;
    }
    let client = ready::Client::new(&opts.credentials())?;
    ready::wait_member(&client, cluster.member_id, &controller, &opts, started)
}

/// `berth-controller join`, with member ids from 2 up until one is free.
fn join_as_controller(
    opts: &Options,
    controller_bin: &Path,
    join_addr: &str,
    token: &str,
) -> Result<u64, LocalError> {
    let mut id = 2;
    loop {
        let r = run_step(
            "joining as a controller (berth-controller join)",
            Command::new(controller_bin)
                .arg("join")
                .args(["--join-addr", join_addr])
                .arg("--data-dir")
                .arg(opts.controller_dir())
                .args(["--id", &id.to_string(), "--advertise", &opts.addr])
                .env("BERTH_JOIN_TOKEN", token.trim()),
        );
        match r {
            Ok(_) => return Ok(id),
            Err(LocalError::Step { ref output, .. })
                if output.contains(ID_TAKEN) && id < MAX_MEMBER_ID =>
            {
                id += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes an admin certificate into a joined controller's data directory (signed with the
/// CA key every controller holds), for this host's CLI context, unless there is one.
fn ensure_admin_cert(ctl_dir: &Path) -> Result<(), LocalError> {
    let (cert, key) = (
        ctl_dir.join("admin/admin.pem"),
        ctl_dir.join("admin/admin.key"),
    );
    if cert.exists() && key.exists() {
        return Ok(());
    }
    let read = |p: PathBuf| fs::read_to_string(&p).map_err(|e| LocalError::io("read", p, e));
    let pki = |e: berth_controller::pki::PkiError| LocalError::Step {
        step: "issuing this host's admin certificate",
        status: "failed".into(),
        output: e.to_string(),
    };
    let ca = ClusterCa::from_pem(
        &read(ctl_dir.join("ca/ca.pem"))?,
        &read(ctl_dir.join("ca/ca.key"))?,
    )
    .map_err(pki)?;
    let admin = ca
        .issue(
            &Identity::new(Role::Admin, "admin").map_err(pki)?,
            &[],
            DEFAULT_LEAF_VALIDITY,
        )
        .map_err(pki)?;
    let dir = ctl_dir.join("admin");
    fs::create_dir_all(&dir).map_err(|e| LocalError::io("create", &dir, e))?;
    fs::write(&cert, &admin.cert_pem).map_err(|e| LocalError::io("write", &cert, e))?;
    write_private(&key, &admin.key_pem)
}

/// What [`leave`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaveReport {
    /// The controller member removed from the membership.
    pub removed_member: Option<u64>,
    /// It was the last controller (`--force`): the cluster is gone.
    pub was_last: bool,
    /// Why it was not removed although it is a member (`--force`).
    pub not_removed: Option<String>,
    /// A node agent was stopped and its set-up removed.
    pub left_as_node: bool,
    /// The node's record, removed from the cluster (with this host's admin certificate).
    pub removed_node: Option<String>,
    /// The node's id when its record could not be removed from here (no admin certificate
    /// on this host, or no controller answered), with why: `berth node rm` it elsewhere.
    pub node_left_listed: Option<(String, String)>,
    /// Its containers removed.
    pub containers: usize,
}

/// Leaves the cluster: a controller member is first removed from the membership (refused,
/// unless `force`, when it is the last voter or the others could not commit without it);
/// a node's record is removed (forced, with this host's admin certificate, asking the other
/// controllers; a host without one only reports the node's id); then the agent is stopped
/// and its containers and host set-up removed, the controller stopped, and the data
/// directory (identities, tokens, state) removed.
pub fn leave(opts: &Options, force: bool) -> Result<LeaveReport, LocalError> {
    need_root("cluster leave")?;
    let ctl_dir = opts.controller_dir();
    let cluster = read_cluster(&ctl_dir)?;
    let is_node = agent_joined(&opts.agent_dir());
    if cluster.is_none() && !is_node {
        if opts.data_dir.exists() {
            // Leftovers of a half-done join or leave: finish the clean-up.
            remove_agent(opts)?;
            Daemon::new("controller", &opts.data_dir).stop(Duration::from_secs(10))?;
            fs::remove_dir_all(&opts.data_dir)
                .map_err(|e| LocalError::io("remove", &opts.data_dir, e))?;
        }
        return Err(LocalError::NotMember {
            dir: opts.data_dir.clone(),
        });
    }
    let mut report = LeaveReport::default();
    let controller = Daemon::new("controller", &opts.data_dir);
    // The controllers that can remove the node's record: this one, unless it leaves the
    // membership first (then the others).
    let mut endpoints = cluster
        .as_ref()
        .map(|c| vec![c.advertise.clone()])
        .unwrap_or_default();
    if let Some(c) = &cluster {
        match leave_membership(opts, c.member_id, &c.advertise, &controller) {
            Ok(others) => {
                report.removed_member = Some(c.member_id);
                endpoints = others;
            }
            Err(LastMember(_)) if force => report.was_last = true,
            Err(LastMember(id)) => {
                return Err(LocalError::Unsafe(format!(
                    "this controller (member {id}) is the cluster's last one: leaving destroys the cluster and its state"
                )));
            }
            Err(Other(e)) if force => report.not_removed = Some(e.to_string()),
            Err(Other(e)) => return Err(e),
        }
    }
    if is_node && !report.was_last {
        let node_id = agent_node_id(&opts.agent_dir())?;
        if cluster.is_none() {
            report.node_left_listed =
                Some((node_id, "this host has no admin certificate".to_owned()));
        } else {
            match remove_node(opts, &node_id, &endpoints) {
                Ok(()) => report.removed_node = Some(node_id),
                Err(why) => report.node_left_listed = Some((node_id, why)),
            }
        }
    }
    (report.left_as_node, report.containers) = remove_agent(opts)?;
    report.left_as_node |= is_node;
    controller.stop(Duration::from_secs(10))?;
    fs::remove_dir_all(&opts.data_dir).map_err(|e| LocalError::io("remove", &opts.data_dir, e))?;
    Ok(report)
}

/// How long [`remove_node`] retries while no controller can serve it (the others may be
/// electing a leader after this one left the membership).
const REMOVE_NODE_WAIT: Duration = Duration::from_secs(10);

/// Removes node `id`'s record (forced) through the first of `endpoints` that does it, with
/// this host's admin certificate, retrying while they answer UNAVAILABLE; answers why none
/// did.
fn remove_node(opts: &Options, id: &str, endpoints: &[String]) -> Result<(), String> {
    if endpoints.is_empty() {
        return Err("no controller to ask".to_owned());
    }
    let until = Instant::now() + REMOVE_NODE_WAIT;
    loop {
        let mut why = Vec::new();
        let mut electing = false;
        for endpoint in endpoints {
            let mut creds = opts.credentials();
            creds.endpoint = endpoint.clone();
            let answer = ready::Client::new(&creds)
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    c.remove_node(id).map_err(|s| {
                        electing |= s.code() == tonic::Code::Unavailable;
                        s.message().to_owned()
                    })
                });
            match answer {
                Ok(_) => return Ok(()),
                Err(e) => why.push(format!("{endpoint}: {e}")),
            }
        }
        if !electing || Instant::now() >= until {
            return Err(why.join("; "));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Why a controller did not leave the membership.
enum NotLeft {
    /// It is the last voter.
    LastMember(u64),
    /// Anything else.
    Other(LocalError),
}
use NotLeft::{LastMember, Other};

impl From<LocalError> for NotLeft {
    fn from(e: LocalError) -> Self {
        Other(e)
    }
}

/// Removes member `id` from the membership, asking it (it forwards to the leader), after
/// checking that the cluster survives it; answers the other voters' addresses.
fn leave_membership(
    opts: &Options,
    id: u64,
    advertise: &str,
    controller: &Daemon,
) -> Result<Vec<String>, NotLeft> {
    if !controller.running() {
        return Err(Other(LocalError::Unsafe(format!(
            "this controller (member {id}) is not running, so it cannot ask the cluster to remove it; start it with `berth cluster init` (or `join`) again"
        ))));
    }
    let mut own = opts.clone();
    own.addr = advertise.to_owned();
    let creds = own.credentials();
    let client = ready::Client::new(&creds)?;
    let status = client.status().map_err(|s| {
        LocalError::Unsafe(format!(
            "this controller does not answer ({}), so the membership cannot be checked",
            s.message()
        ))
    })?;
    let others: Vec<_> = status.voters.iter().filter(|m| m.id != id).collect();
    let voter = status.voters.len() != others.len();
    if voter && others.is_empty() {
        return Err(LastMember(id));
    }
    if voter {
        let reachable = others
            .iter()
            .filter(|m| {
                let mut c = creds.clone();
                c.endpoint = m.addr.clone();
                ready::Client::new(&c).is_ok_and(|c| c.status().is_ok())
            })
            .count();
        let needed = others.len() / 2 + 1;
        if reachable < needed {
            return Err(Other(LocalError::Unsafe(format!(
                "only {reachable} of the other {} controllers answer, and {needed} are needed to commit without this one: leaving now would stall the cluster",
                others.len()
            ))));
        }
    }
    client.remove_member(id).map_err(|s| LocalError::Step {
        step: "removing this controller from the membership (RemoveMember)",
        status: format!("{:?}", s.code()),
        output: s.message().to_owned(),
    })?;
    Ok(others.iter().map(|m| m.addr.clone()).collect())
}

/// The stored join token of `role`, if any.
pub fn stored_token(opts: &Options, role: TokenRole) -> Option<String> {
    fs::read_to_string(opts.token_path(role))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Stores a (rotated) join token of `role`, when the data directory exists.
pub fn store_token(opts: &Options, role: TokenRole, token: &str) -> Result<bool, LocalError> {
    if !opts.data_dir.is_dir() {
        return Ok(false);
    }
    write_private(&opts.token_path(role), token)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(letter: &str) -> String {
        format!("BERTH-1-{}-{letter}-{}", "0a".repeat(32), "1b".repeat(32))
    }

    #[test]
    fn the_token_says_its_role() {
        assert_eq!(token_role(&token("a")).unwrap(), TokenRole::Agent);
        assert_eq!(token_role(&token("c")).unwrap(), TokenRole::Controller);
        assert_eq!(
            token_role(&format!("  {}\n", token("c"))).unwrap(),
            TokenRole::Controller
        );
    }

    #[test]
    fn a_bad_token_is_named() {
        for (bad, says) in [
            ("", "empty"),
            ("SWMTKN-1-abc", "BERTH-"),
            (&token("x"), "role"),
            (&token("a")[..100], "secret"),
            ("BERTH-1-abc-a", "parts"),
        ] {
            let e = token_role(bad).unwrap_err().to_string();
            assert!(
                e.contains("join token is not valid") && e.contains(says),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn tokens_are_stored_privately() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = std::env::temp_dir().join(format!("berth-cli-token-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let mut o = Options::new().unwrap();
        o.data_dir = tmp.clone();
        assert!(!store_token(&o, TokenRole::Agent, "t").unwrap());
        fs::create_dir_all(&tmp).unwrap();
        assert_eq!(stored_token(&o, TokenRole::Agent), None);
        assert!(store_token(&o, TokenRole::Agent, "t1").unwrap());
        assert_eq!(stored_token(&o, TokenRole::Agent).as_deref(), Some("t1"));
        let mode = fs::metadata(tmp.join("agent-token"))
            .unwrap()
            .permissions()
            .mode();
        fs::remove_dir_all(&tmp).unwrap();
        assert_eq!(mode & 0o777, 0o600);
    }
}
