//! `berth-agent`: the node-local command line (as `ctr` is to containerd) and the agent
//! daemon. Each command works on the state directory directly, so it works whether or not
//! `berth-agent serve` runs, and containers never depend on either.

mod args;
mod container_cmds;
mod format;
mod image_cmds;
mod node_cmds;
mod registry_cmds;

use std::process::ExitCode;

use clap::Parser;

pub use args::{Cli, RegistryArgs};
pub use registry_cmds::registry_config;

use crate::container::{AgentConfig, ContainerManager};

/// Exit code for errors of berth itself (as `docker run` uses 125).
pub const EXIT_ERROR: u8 = 125;

/// Parses the process arguments and runs the command.
pub fn main() -> ExitCode {
    berth_runtime::timing::mark("cli: main");
    let cli = Cli::parse();
    let daemon = matches!(
        cli.command,
        args::Command::Serve(_) | args::Command::Hollow(_) | args::Command::Node(_)
    );
    if !daemon {
        // A command whose output is cut short (`berth-agent image inspect X | head`) ends
        // quietly, as other Unix tools do, instead of panicking in `println!` on EPIPE. The
        // daemons keep SIGPIPE ignored: a peer closing a socket must not kill them.
        // SAFETY: signal(2) with a valid signal number and SIG_DFL, before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    init_logging(daemon);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", render(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The error and its causes on one line, without repeating a cause that an error's own
/// message already includes.
pub fn render(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

/// Logs to stderr: `RUST_LOG` when set; otherwise info for the daemon and warnings for
/// commands (a plain level filter: parsing a filter expression costs a start-up).
fn init_logging(daemon: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::LevelFilter;
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => builder
            .with_env_filter(tracing_subscriber::EnvFilter::new(spec))
            .init(),
        _ => builder
            .with_max_level(if daemon {
                LevelFilter::INFO
            } else {
                LevelFilter::WARN
            })
            .init(),
    }
}

fn manager(cli: &Cli) -> anyhow::Result<ContainerManager> {
    Ok(ContainerManager::open(config(cli)?)?)
}

/// The agent's configuration from the global options.
fn config(cli: &Cli) -> anyhow::Result<AgentConfig> {
    let mut cfg = AgentConfig::new(&cli.state_dir);
    cfg.cgroup_parent = cli.cgroup_parent.clone();
    let subnet = cli.subnet.parse().map_err(|e| {
        anyhow::anyhow!(
            "invalid --subnet {:?}: {e} (expected an IPv4 network such as 10.77.0.0/16)",
            cli.subnet
        )
    })?;
    cfg.network = crate::net::NetConfig {
        bridge: cli.bridge.clone(),
        subnet,
        mtu: cli.mtu,
    };
    cfg.network.validate()?;
    if let Some(m) = &cli.monitor {
        cfg.monitor_bin = m.clone();
    }
    Ok(cfg)
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    use args::Command as C;
    berth_runtime::timing::mark("cli: parsed, logging set up");
    if let C::Network(args::NetworkCommand::Release { dir }) = &cli.command {
        // Run by a monitor: no state directory to open, only the container's record.
        let dir = berth_runtime::paths::ContainerDir::new(dir);
        let id = dir
            .root()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        crate::net::release_recorded(&dir.network(), &id)?;
        return Ok(0);
    }
    // Cluster commands need no container state.
    match &cli.command {
        C::Join(a) => return node_cmds::join(&cli.state_dir, a),
        C::Hollow(a) => return node_cmds::hollow(a),
        C::Node(a) => return node_cmds::node(&cli.state_dir, config(&cli)?, a),
        _ => {}
    }
    let m = manager(&cli)?;
    berth_runtime::timing::mark("cli: state opened");
    match cli.command {
        C::Run(a) => container_cmds::run(&m, a),
        C::Create(a) => container_cmds::create(&m, a),
        C::Start(a) => container_cmds::start(&m, a),
        C::Ps(a) => container_cmds::ps(&m, a),
        C::Stop(a) => container_cmds::stop(&m, a),
        C::Kill(a) => container_cmds::kill(&m, a),
        C::Rm(a) => container_cmds::rm(&m, a),
        C::Logs(a) => container_cmds::logs(&m, a),
        C::Exec(a) => container_cmds::exec(&m, a),
        C::Inspect(a) => container_cmds::inspect(&m, a),
        C::Images(a) => image_cmds::list(&m, a),
        C::Image(a) => image_cmds::image(&m, a),
        C::Serve(a) => crate::serve::serve(&m, a.poll_interval_ms),
        C::Events(a) => crate::serve::print_events(&m, a.follow),
        C::Network(a) => container_cmds::network(&m, a),
        C::Teardown => {
            let errors =
                crate::node::network::teardown(&crate::net::firewall::IptablesFirewall::new());
            m.teardown()?;
            if !errors.is_empty() {
                anyhow::bail!("{}", errors.join("; "));
            }
            Ok(0)
        }
        C::Join(_) | C::Hollow(_) | C::Node(_) => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn causes_are_shown_once() {
        let inner = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(inner).context("invalid --memory");
        assert_eq!(render(&e), "invalid --memory: disk on fire");
        let e = anyhow::anyhow!("open /x: disk on fire").context("import");
        assert_eq!(render(&e), "import: open /x: disk on fire");
    }
}
