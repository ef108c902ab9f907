//! The command line of the `berth-controller` binary: arguments and what each command
//! does. The binary only parses, sets up tracing and calls [`run`].

use std::io::{self, Write};

use berth_proto::v1::VersionInfo;
use clap::{Parser, Subcommand};

/// `berth-controller`'s arguments.
#[derive(Debug, Parser)]
#[command(
    name = "berth-controller",
    version,
    about = "berth's replicated controller"
)]
#[command(propagate_version = true, subcommand_required = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Print the controller's version.
    Version,
    /// Create a new cluster: its CA, this controller's certificate, an admin certificate
    /// for the CLI, and the join tokens (shown once; only their hashes are kept).
    Init(InitArgs),
    /// Write another controller member's data directory from this one's (which holds the CA
    /// key): a stand-in for joining with a token.
    InitMember(InitMemberArgs),
    /// Run this member until SIGTERM or SIGINT.
    Run(RunArgs),
    /// Show a member's view of the cluster (leader, term, indexes, members) as JSON, asking
    /// it over mutual TLS with an admin certificate.
    Status(StatusArgs),
    /// Join an existing cluster as a new controller with the controller join token: get
    /// this member's certificate from a controller's join listener and write its data
    /// directory. Then start it with `run`: it asks the cluster to add it as a voter.
    Join(JoinArgs),
    /// Manage the join tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `token`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum TokenCommand {
    /// Replace the join token of a role (`agent` or `controller`) with a new one, printed
    /// once; the old token is refused from then on. Uses the admin certificate.
    Rotate(RotateArgs),
}

/// `token rotate`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RotateArgs {
    /// Whose token: `agent` or `controller`.
    pub role: String,
    /// A data directory holding the CA and an admin certificate (`admin/`).
    #[arg(long, default_value = "/var/lib/berth/controller")]
    pub data_dir: std::path::PathBuf,
    /// The member to ask, `host:port`.
    #[arg(long)]
    pub addr: String,
}

/// `join`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct JoinArgs {
    /// The controller join token.
    #[arg(long, env = "BERTH_JOIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// A controller's join listener, `host:port` (by default the port after its advertised
    /// one).
    #[arg(long)]
    pub join_addr: String,
    /// This member's new data directory (must not hold a cluster yet).
    #[arg(long, default_value = "/var/lib/berth/controller")]
    pub data_dir: std::path::PathBuf,
    /// This member's Raft id (not in the membership at another address).
    #[arg(long)]
    pub id: u64,
    /// The host:port other members and nodes reach this controller at.
    #[arg(long)]
    pub advertise: String,
    /// The host:port joining nodes reach this member's own join listener at (default: the
    /// advertised host, the next port).
    #[arg(long)]
    pub own_join_addr: Option<String>,
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct StatusArgs {
    /// A data directory holding the CA and an admin certificate (`admin/`).
    #[arg(long, default_value = "/var/lib/berth/controller")]
    pub data_dir: std::path::PathBuf,
    /// The member to ask, `host:port`.
    #[arg(long)]
    pub addr: String,
}

/// `init-member`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct InitMemberArgs {
    /// An existing member's data directory (with the CA key).
    #[arg(long)]
    pub from: std::path::PathBuf,
    /// The new member's data directory.
    #[arg(long)]
    pub data_dir: std::path::PathBuf,
    /// The new member's Raft id.
    #[arg(long)]
    pub id: u64,
    /// The host:port the new member is reached at.
    #[arg(long)]
    pub advertise: String,
}

/// `run`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RunArgs {
    /// The data directory.
    #[arg(long, default_value = "/var/lib/berth/controller")]
    pub data_dir: std::path::PathBuf,
    /// Where to listen (default: the advertised address).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Where the join listener listens, which serves only joins with a token (default: the
    /// IP of the listen address and the port of `join_addr` in `cluster.json`, itself by
    /// default the port after the advertised one).
    #[arg(long)]
    pub join_listen: Option<std::net::SocketAddr>,
    /// On the first start of the first member: the initial voters, `ID=HOST:PORT,...`.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Raft heartbeat interval, in ms.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Raft election timeout range, in ms, `MIN-MAX` (MAX is also the leader's lease: a
    /// failover takes MAX plus a draw between MIN and MAX).
    #[arg(long, default_value = "150-300")]
    pub election_timeout_ms: String,
    /// How often agents heartbeat, in ms.
    #[arg(long, default_value_t = 1000)]
    pub agent_heartbeat_ms: u64,
    /// How many agent heartbeat periods without a heartbeat mark a node down.
    #[arg(long, default_value_t = 3)]
    pub agent_missed_heartbeats: u32,
    /// Build a Raft snapshot once this many entries were applied since the last one.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: u64,
    /// How many entries a snapshot already covers to keep in the log (the rest are purged), so
    /// that a briefly lagging member catches up from the log.
    #[arg(long, default_value_t = 1_000)]
    pub keep_log: u64,
}

/// `init`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct InitArgs {
    /// The controller's data directory (must not hold a cluster yet).
    #[arg(long, default_value = "/var/lib/berth/controller")]
    pub data_dir: std::path::PathBuf,
    /// The cluster's name (a DNS label).
    #[arg(long, default_value = "berth")]
    pub cluster_name: String,
    /// This member's Raft id.
    #[arg(long, default_value_t = 1)]
    pub id: u64,
    /// The host:port other members and nodes reach this controller at.
    #[arg(long)]
    pub advertise: String,
    /// The host:port joining nodes reach this controller's join listener at (default: the
    /// advertised host, the next port).
    #[arg(long)]
    pub join_addr: Option<String>,
    /// The range node subnets are cut from.
    #[arg(long, default_value = "10.200.0.0/16")]
    pub node_range: String,
    /// The prefix length of each node's subnet.
    #[arg(long, default_value_t = 24)]
    pub node_prefix: u8,
    /// The range services' virtual IPs are allocated from.
    #[arg(long, default_value = crate::state::DEFAULT_SERVICE_RANGE)]
    pub service_range: String,
    /// How node subnets reach each other: `vxlan` (nodes on any subnets) or `routed` (plain
    /// routes; nodes on one L2 segment).
    #[arg(long, default_value = "vxlan")]
    pub overlay: String,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The output could not be written.
    #[error("cannot write to standard output")]
    Write(#[source] io::Error),
    /// `init` failed.
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
    /// The member failed.
    #[error(transparent)]
    Member(#[from] crate::member::MemberError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] io::Error),
    /// A call to a member failed.
    #[error("{0}: {1}")]
    Status(String, tonic::Status),
    /// A call to a member got no answer in time.
    #[error("{addr}: no answer within {}s; is the member running and reachable?", .after.as_secs())]
    TimedOut {
        /// The member's address.
        addr: String,
        /// The limit.
        after: std::time::Duration,
    },
    /// Joining failed.
    #[error(transparent)]
    Join(#[from] crate::join::JoinClientError),
    /// An argument is invalid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which argument.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// Runs `cli`'s command, writing its output to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), CmdError> {
    match &cli.command {
        Command::Version => {
            writeln!(out, "{}", version_line(&berth_proto::version_info())).map_err(CmdError::Write)
        }
        Command::Init(a) => init(a, out),
        Command::InitMember(a) => {
            let c = crate::member::prepare_member_dir(&a.from, &a.data_dir, a.id, &a.advertise)?;
            writeln!(
                out,
                "member {} of cluster {:?} prepared in {} (advertised at {})",
                c.member_id,
                c.name,
                a.data_dir.display(),
                c.advertise
            )
            .map_err(CmdError::Write)
        }
        Command::Run(a) => run_member(a),
        Command::Status(a) => status(a, out),
        Command::Join(a) => join(a, out),
        Command::Token(TokenCommand::Rotate(a)) => rotate(a, out),
    }
}

/// How long an admin command waits for a member's answer (connecting included).
const CALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `f` to completion within [`CALL_LIMIT`], naming `addr` when it does not finish.
fn call<T>(
    addr: &str,
    f: impl std::future::Future<Output = Result<T, CmdError>>,
) -> Result<T, CmdError> {
    runtime()?.block_on(async {
        tokio::time::timeout(CALL_LIMIT, f)
            .await
            .map_err(|_| CmdError::TimedOut {
                addr: addr.to_owned(),
                after: CALL_LIMIT,
            })?
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, CmdError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CmdError::Runtime)
}

fn join(a: &JoinArgs, out: &mut dyn Write) -> Result<(), CmdError> {
    let token = crate::pki::JoinToken::parse(&a.token).map_err(|e| CmdError::Invalid {
        what: "--token",
        reason: e.to_string(),
    })?;
    let opts = crate::join::ControllerJoin {
        data_dir: a.data_dir.clone(),
        token,
        join_addr: a.join_addr.clone(),
        id: a.id,
        advertise: a.advertise.clone(),
        own_join_addr: a.own_join_addr.clone(),
    };
    let c = runtime()?.block_on(crate::join::join_controller(&opts))?;
    writeln!(
        out,
        "joined cluster {:?} as member {} (advertised at {}) in {}\n\
         Start it with `berth-controller run --data-dir {}`: it asks to be added as a voter.",
        c.name,
        c.member_id,
        c.advertise,
        a.data_dir.display(),
        a.data_dir.display(),
    )
    .map_err(CmdError::Write)
}

fn rotate(a: &RotateArgs, out: &mut dyn Write) -> Result<(), CmdError> {
    use berth_proto::v1::JoinRole;
    let role = match a.role.as_str() {
        "agent" => JoinRole::Agent,
        "controller" => JoinRole::Controller,
        other => {
            return Err(CmdError::Invalid {
                what: "role",
                reason: format!("{other:?}: expected agent or controller"),
            });
        }
    };
    let connector = admin_connector(&a.data_dir)?;
    let token = call(&a.addr, async {
        let channel = connector
            .channel(&a.addr)
            .map_err(crate::member::MemberError::from)?;
        berth_proto::v1::control_client::ControlClient::new(channel)
            .rotate_token(berth_proto::v1::RotateTokenRequest { role: role.into() })
            .await
            .map(|r| r.into_inner().token)
            .map_err(|s| CmdError::Status(a.addr.clone(), s))
    })?;
    writeln!(
        out,
        "new {} join token: {token}\nIt is shown only now; the old token is refused from now on.",
        a.role
    )
    .map_err(CmdError::Write)
}

/// A connector presenting the admin certificate of `data_dir`.
fn admin_connector(
    data_dir: &std::path::Path,
) -> Result<crate::transport::MtlsConnector, CmdError> {
    use crate::member::MemberError;
    let read = |p: &str| {
        let path = data_dir.join(p);
        std::fs::read_to_string(&path).map_err(|source| MemberError::Read {
            what: "the admin credentials",
            path,
            source,
        })
    };
    let ca = read("ca/ca.pem")?;
    let admin = crate::pki::IssuedCert {
        cert_pem: read("admin/admin.pem")?,
        key_pem: read("admin/admin.key")?,
    };
    Ok(crate::transport::MtlsConnector::new(
        crate::pki::client_config(&ca, &admin).map_err(MemberError::from)?,
    ))
}

fn status(a: &StatusArgs, out: &mut dyn Write) -> Result<(), CmdError> {
    let connector = admin_connector(&a.data_dir)?;
    let st = call(&a.addr, async {
        let channel = connector
            .channel(&a.addr)
            .map_err(crate::member::MemberError::from)?;
        let mut client = berth_proto::v1::control_client::ControlClient::new(channel);
        client
            .status(berth_proto::v1::Empty {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| CmdError::Status(a.addr.clone(), s))
    })?;
    let members = |m: &[berth_proto::v1::ControllerMember]| -> Vec<serde_json::Value> {
        m.iter()
            .map(|m| serde_json::json!({"id": m.id, "addr": m.addr}))
            .collect()
    };
    let v = serde_json::json!({
        "id": st.id,
        "leader_id": st.leader_id,
        "leader_addr": st.leader_addr,
        "state": st.state,
        "term": st.term,
        "last_log_index": st.last_log_index,
        "last_applied": st.last_applied,
        "voters": members(&st.voters),
        "learners": members(&st.learners),
    });
    writeln!(out, "{v}").map_err(CmdError::Write)
}

fn run_member(a: &RunArgs) -> Result<(), CmdError> {
    use crate::member::{Member, MemberError, MemberOptions, parse_bootstrap};
    let bad = |reason: String| MemberError::Invalid {
        what: "--election-timeout-ms",
        reason,
    };
    let (min, max) = a
        .election_timeout_ms
        .split_once('-')
        .and_then(|(l, h)| Some((l.trim().parse().ok()?, h.trim().parse().ok()?)))
        .ok_or_else(|| bad(format!("{:?} is not MIN-MAX in ms", a.election_timeout_ms)))?;
    let opts = MemberOptions {
        data_dir: a.data_dir.clone(),
        listen: a.listen,
        join_listen: a.join_listen,
        settings: crate::raft::RaftSettings {
            heartbeat_interval_ms: a.heartbeat_ms,
            election_timeout_min_ms: min,
            election_timeout_max_ms: max,
            snapshot_logs_since_last: a.snapshot_every,
            max_in_snapshot_log_to_keep: a.keep_log,
            ..Default::default()
        },
        bootstrap: a
            .bootstrap
            .as_deref()
            .map(parse_bootstrap)
            .transpose()?
            .unwrap_or_default(),
        session: crate::api::dispatch::SessionSettings {
            heartbeat_period: std::time::Duration::from_millis(a.agent_heartbeat_ms),
            missed_heartbeats: a.agent_missed_heartbeats,
            ..Default::default()
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CmdError::Runtime)?;
    rt.block_on(async {
        let mut member = Member::start(&opts).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(CmdError::Runtime)?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping");
        member.stop().await?;
        Ok(())
    })
}

fn init(a: &InitArgs, out: &mut dyn Write) -> Result<(), CmdError> {
    let node_range = a
        .node_range
        .parse()
        .map_err(|e| crate::init::InitError::Invalid {
            what: "--node-range",
            reason: format!(
                "{:?}: {e} (expected an IPv4 network such as 10.200.0.0/16)",
                a.node_range
            ),
        })?;
    let service_range = a
        .service_range
        .parse()
        .map_err(|e| crate::init::InitError::Invalid {
            what: "--service-range",
            reason: format!(
                "{:?}: {e} (expected an IPv4 network such as {})",
                a.service_range,
                crate::state::DEFAULT_SERVICE_RANGE
            ),
        })?;
    let overlay = a
        .overlay
        .parse()
        .map_err(|reason| crate::init::InitError::Invalid {
            what: "--overlay",
            reason,
        })?;
    let done = crate::init::init(&crate::init::InitOptions {
        data_dir: a.data_dir.clone(),
        cluster_name: a.cluster_name.clone(),
        member_id: a.id,
        advertise: a.advertise.clone(),
        join_addr: a.join_addr.clone(),
        node_range,
        node_prefix: a.node_prefix,
        service_range,
        overlay,
    })?;
    let c = &done.cluster;
    writeln!(
        out,
        "cluster {:?} created in {} (member {}, advertised at {})\n\
         CA fingerprint:        {}\n\
         join listener:         {}\n\
         admin certificate:     {} (key {})\n\
         agent join token:      {}\n\
         controller join token: {}\n\
         The tokens are shown only now: the controller keeps only their hashes.",
        c.name,
        a.data_dir.display(),
        c.member_id,
        c.advertise,
        c.ca_fingerprint,
        c.join_addr.as_deref().unwrap_or("none"),
        done.admin_cert.display(),
        done.admin_key.display(),
        done.agent_token,
        done.controller_token,
    )
    .map_err(CmdError::Write)
}

/// `berth-controller <version> (api <api version>)`.
pub fn version_line(info: &VersionInfo) -> String {
    format!(
        "berth-controller {} (api {})",
        info.version, info.api_version
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_line_names_the_binary_and_the_api() {
        let info = VersionInfo {
            version: "1.2.3".to_owned(),
            git_commit: "abc".to_owned(),
            api_version: "v1".to_owned(),
        };
        assert_eq!(version_line(&info), "berth-controller 1.2.3 (api v1)");
    }

    #[test]
    fn version_command_writes_one_line() {
        let cli = Cli::try_parse_from(["berth-controller", "version"]).expect("valid");
        let mut out = Vec::new();
        run(&cli, &mut out).expect("writing to a Vec works");
        let expected = format!("berth-controller {} (api v1)\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(String::from_utf8(out).expect("UTF-8"), expected);
    }

    #[test]
    fn a_subcommand_is_required() {
        assert!(Cli::try_parse_from(["berth-controller"]).is_err());
        assert!(Cli::try_parse_from(["berth-controller", "serve"]).is_err());
    }

    #[test]
    fn init_creates_the_cluster_and_shows_the_tokens_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let cli = Cli::try_parse_from([
            "berth-controller",
            "init",
            "--data-dir",
            dir.to_str().unwrap(),
            "--advertise",
            "127.0.0.1:7443",
        ])
        .unwrap();
        let mut out = Vec::new();
        run(&cli, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("agent join token:      BERTH-1-"), "{text}");
        assert!(dir.join("cluster.json").exists());
        let e = run(&cli, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("already holds a cluster"), "{e}");
        let bad = Cli::try_parse_from([
            "berth-controller",
            "init",
            "--data-dir",
            tmp.path().join("d").to_str().unwrap(),
            "--advertise",
            "127.0.0.1:7443",
            "--node-range",
            "10.200.0.0/33",
        ])
        .unwrap();
        let e = run(&bad, &mut Vec::new()).unwrap_err().to_string();
        assert!(
            e.contains("--node-range") && e.contains("10.200.0.0/33"),
            "{e}"
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
