//! The commands, one file each, and [`run`], which dispatches to them.
//!
//! A command gets the parsed arguments and an [`Io`]: its output streams, whether standard
//! error is a terminal, and the environment (for `${VAR}` in service files and the home
//! folder), so that tests can run commands without the process's own.

pub mod apply;
pub mod cluster;
pub mod completion;
pub mod context;
pub mod diff;
pub mod events;
pub mod exec;
pub mod files;
pub mod image;
pub mod image_push;
pub mod inspect;
pub mod local;
pub mod logs;
pub mod ls;
pub mod node;
pub mod ps;
pub mod rm;
pub mod rollout;
pub mod scale;
pub mod version;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::args::{Cli, Command, GlobalArgs};
use crate::client::Client;
use crate::context::{Config, Resolved, config_path};
use crate::error::CliError;
use crate::exit;
use crate::servicefile::RenderStyle;

/// What a command reads and writes besides its arguments.
pub struct Io<'a> {
    /// Standard output: the result.
    pub out: &'a mut dyn Write,
    /// Standard error: progress, warnings.
    pub err: &'a mut dyn Write,
    /// Whether standard error is a terminal (progress is redrawn in place).
    pub err_is_terminal: bool,
    /// The environment (`NO_COLOR`, `HOME`, and `${VAR}` in service files).
    pub env: BTreeMap<String, String>,
}

impl Io<'_> {
    /// Writes `text` to standard output.
    pub fn print(&mut self, text: &str) -> Result<(), CliError> {
        self.out.write_all(text.as_bytes()).map_err(CliError::Write)
    }

    /// Writes `text` to standard error (best effort: nothing to do if it is gone).
    pub fn note(&mut self, text: &str) {
        let _ = self.err.write_all(text.as_bytes());
        let _ = self.err.flush();
    }

    /// Whether to use colour on standard error: a terminal, and `NO_COLOR` unset or empty.
    pub fn color(&self) -> bool {
        self.err_is_terminal && self.env.get("NO_COLOR").is_none_or(|v| v.is_empty())
    }

    /// How service-file findings are drawn on standard error.
    pub fn render_style(&self) -> RenderStyle {
        RenderStyle {
            color: self.color(),
            ..RenderStyle::PLAIN
        }
    }

    fn home(&self) -> Option<PathBuf> {
        self.env
            .get("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    }
}

/// The configuration file's path and its content.
pub fn load_config(global: &GlobalArgs, io: &Io) -> Result<(PathBuf, Config), CliError> {
    let path = config_path(global.config.as_deref(), io.home().as_deref())?;
    let config = Config::load(&path)?;
    Ok((path, config))
}

/// The context a command talks to.
pub fn resolve(global: &GlobalArgs, io: &Io) -> Result<Resolved, CliError> {
    let (path, config) = load_config(global, io)?;
    Ok(config.resolve(global.context.as_deref(), &global.addr, Path::new(&path))?)
}

/// Connects to the cluster of the chosen context.
pub async fn connect(global: &GlobalArgs, io: &Io<'_>) -> Result<Client, CliError> {
    let resolved = resolve(global, io)?;
    Ok(Client::connect(&resolved).await?)
}

/// Runs `f` on a single-threaded async runtime.
pub fn block_on<T>(f: impl Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?
        .block_on(f)
}

/// The service `name` (an unknown one is an error naming it).
pub(crate) async fn get_service(
    client: &crate::client::Client,
    name: &str,
) -> Result<berth_proto::v1::Service, CliError> {
    Ok(client
        .call(&format!("get service {name}"), |mut c| {
            let name = name.to_owned();
            async move {
                c.get_service(berth_proto::v1::GetServiceRequest { name, stale: false })
                    .await
            }
        })
        .await?
        .service
        .unwrap_or_default())
}

/// The tasks of `service` (every service's for `""`), current and past.
pub(crate) async fn list_tasks(
    client: &crate::client::Client,
    service: &str,
) -> Result<Vec<berth_proto::v1::Task>, CliError> {
    Ok(client
        .call("list the tasks", |mut c| {
            let service = service.to_owned();
            async move {
                c.list_tasks(berth_proto::v1::ListTasksRequest {
                    service,
                    stale: false,
                })
                .await
            }
        })
        .await?
        .tasks)
}

/// Runs `cli`'s command; returns the exit code of a command that did not fail (`diff`
/// says whether there are changes with it).
pub fn run(cli: &Cli, io: &mut Io) -> Result<u8, CliError> {
    let g = &cli.global;
    let code = match &cli.command {
        Command::Version(args) => block_on(version::run(g, args, io))?,
        Command::Context(c) => context::run(g, c, io)?,
        Command::Apply(args) => block_on(apply::run(g, args, io))?,
        Command::Diff(args) => block_on(diff::run(g, args, io))?,
        Command::Ls(args) => block_on(ls::run(g, args, io))?,
        Command::Ps(args) => block_on(ps::run(g, args, io))?,
        Command::Inspect(args) => block_on(inspect::run(g, args, io))?,
        Command::Scale(args) => block_on(scale::run(g, args, io))?,
        Command::Rollout(c) => block_on(rollout::run(g, c, io))?,
        Command::Rm(args) => block_on(rm::run(g, args, io))?,
        Command::Events(args) => block_on(events::run(g, args, io))?,
        Command::Logs(args) => block_on(logs::run(g, args, io))?,
        Command::Exec(args) => block_on(exec::run(g, args, io))?,
        Command::Image(c) => block_on(image::run(g, c, io))?,
        Command::Node(c) => block_on(node::run(g, c, io))?,
        Command::Up(args) => local::up(g, args, io)?,
        Command::Down(args) => local::down(g, args, io)?,
        Command::Cluster(c) => cluster::run(g, c, io)?,
        Command::Completion(args) => completion::run(args, io)?,
    };
    io.out.flush().map_err(CliError::Write)?;
    Ok(code)
}

/// The exit code of `cli` failing with `err`.
pub fn exit_code(cli: &Cli, err: &CliError) -> u8 {
    match cli.command {
        Command::Diff(_) => exit::DIFF_FAILED,
        _ => err.exit_code(),
    }
}
