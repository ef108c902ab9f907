//! `berth context ls | use NAME | add NAME ... | rm NAME`: the contexts of the
//! configuration file (see [`crate::context`]).

use serde::Serialize;

use super::Io;
use crate::args::{ContextCommand, GlobalArgs};
use crate::context::{Config, Context};
use crate::error::CliError;
use crate::exit;
use crate::output::{self, table::Table};

/// A line of `context ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextLine {
    /// The name.
    pub name: String,
    /// Whether it is the current one.
    pub current: bool,
    /// Its endpoints.
    pub endpoints: Vec<String>,
    /// The CA certificate.
    pub ca: String,
    /// The client certificate.
    pub cert: String,
    /// The client key.
    pub key: String,
}

/// The lines of `context ls`, by name.
pub fn lines(config: &Config) -> Vec<ContextLine> {
    config
        .contexts
        .iter()
        .map(|(name, c)| ContextLine {
            name: name.clone(),
            current: config.current.as_deref() == Some(name),
            endpoints: c.endpoints.clone(),
            ca: c.ca.display().to_string(),
            cert: c.cert.display().to_string(),
            key: c.key.display().to_string(),
        })
        .collect()
}

/// The `context ls` table.
pub fn table(lines: &[ContextLine]) -> String {
    let mut t = Table::new(&["CURRENT", "NAME", "ENDPOINTS", "CERT"]);
    for l in lines {
        t.row(vec![
            if l.current { "*" } else { "" }.to_owned(),
            l.name.clone(),
            l.endpoints.join(","),
            l.cert.clone(),
        ]);
    }
    t.render()
}

/// Runs `berth context ...`.
pub fn run(g: &GlobalArgs, cmd: &ContextCommand, io: &mut Io) -> Result<u8, CliError> {
    let (path, mut config) = super::load_config(g, io)?;
    match cmd {
        ContextCommand::Ls(args) => {
            let lines = lines(&config);
            let text = output::render(args.output, &lines, || table(&lines))?;
            io.print(&text)?;
        }
        ContextCommand::Use(n) => {
            config.use_context(&n.name, &path)?;
            config.save(&path)?;
            io.print(&format!("current context: {}\n", n.name))?;
        }
        ContextCommand::Add(a) => {
            let absolute =
                |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            let context = Context {
                endpoints: a.endpoints.clone(),
                ca: absolute(&a.ca),
                cert: absolute(&a.cert),
                key: absolute(&a.key),
            };
            let replaced = config.contexts.contains_key(&a.name);
            config.add(&a.name, context, a.make_current);
            config.save(&path)?;
            let current = config.current.as_deref() == Some(a.name.as_str());
            io.print(&format!(
                "context {}: {}{}\n",
                a.name,
                if replaced { "replaced" } else { "added" },
                if current { " (current)" } else { "" }
            ))?;
        }
        ContextCommand::Rm(n) => {
            config.remove(&n.name, &path)?;
            config.save(&path)?;
            io.print(&format!("context {}: removed\n", n.name))?;
        }
    }
    Ok(exit::OK)
}
