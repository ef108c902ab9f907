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
    /// On the first start of the first member: the initial voters, `ID=HOST:PORT,...`.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Raft heartbeat interval, in ms.
    #[arg(long, default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// Raft election timeout range, in ms, `MIN-MAX` (MAX is also the leader's lease: a
    /// failover takes MAX plus a draw between MIN and MAX).
    #[arg(long, default_value = "150-300")]
    pub election_timeout_ms: String,
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
    /// The range node subnets are cut from.
    #[arg(long, default_value = "10.200.0.0/16")]
    pub node_range: String,
    /// The prefix length of each node's subnet.
    #[arg(long, default_value_t = 24)]
    pub node_prefix: u8,
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
    }
}

fn status(a: &StatusArgs, out: &mut dyn Write) -> Result<(), CmdError> {
    use crate::member::MemberError;
    let read = |p: &str| {
        let path = a.data_dir.join(p);
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
    let connector = crate::transport::MtlsConnector::new(
        crate::pki::client_config(&ca, &admin).map_err(MemberError::from)?,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CmdError::Runtime)?;
    let st = rt.block_on(async {
        let channel = connector.channel(&a.addr).map_err(MemberError::from)?;
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
        settings: crate::raft::RaftSettings {
            heartbeat_interval_ms: a.heartbeat_ms,
            election_timeout_min_ms: min,
            election_timeout_max_ms: max,
            ..Default::default()
        },
        bootstrap: a
            .bootstrap
            .as_deref()
            .map(parse_bootstrap)
            .transpose()?
            .unwrap_or_default(),
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
    let done = crate::init::init(&crate::init::InitOptions {
        data_dir: a.data_dir.clone(),
        cluster_name: a.cluster_name.clone(),
        member_id: a.id,
        advertise: a.advertise.clone(),
        node_range,
        node_prefix: a.node_prefix,
    })?;
    let c = &done.cluster;
    writeln!(
        out,
        "cluster {:?} created in {} (member {}, advertised at {})\n\
         CA fingerprint:        {}\n\
         admin certificate:     {} (key {})\n\
         agent join token:      {}\n\
         controller join token: {}\n\
         The tokens are shown only now: the controller keeps only their hashes.",
        c.name,
        a.data_dir.display(),
        c.member_id,
        c.advertise,
        c.ca_fingerprint,
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
