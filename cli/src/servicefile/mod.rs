//! Service files: YAML in the shape of the Compose specification's `services:`, read into
//! [`ServiceModel`]s and turned into the [`berth_proto::v1::ServiceSpec`]s sent to the
//! cluster ([`to_spec`]).
//!
//! [`parse`] is pure but for `env_file`, which it reads through the [`ReadFile`] it is
//! given; the environment used for `${VAR}` interpolation is passed in too, so tests are
//! hermetic. It reports every error it can find at once ([`ParseError`]), each naming the
//! file, line, column and key with the offending text; [`render`] draws them as miette
//! snippets. Warnings (unsupported keys, keys parsed but not yet applied, unset variables)
//! come back with the services ([`Parsed::warnings`]).
//!
//! Several files merge like `docker compose -f a.yaml -f b.yaml`: services keep the order
//! they first appear in; a service defined again in a later file takes that file's value
//! for every key it gives (whole keys: a later `ports:` replaces the earlier list; keys it
//! does not give are kept). `name:` is the last file's.
//!
//! The reference, key by key, is `docs/service-file.md`.
//!
//! ```
//! use std::collections::BTreeMap;
//! use berth_cli::servicefile::{Fs, RenderStyle, Source, parse, render, to_spec};
//!
//! let env: BTreeMap<String, String> = [("TAG".to_owned(), "1.2".to_owned())].into();
//! let file = Source::new("app.yaml", ".", "services:\n  web:\n    image: web:${TAG}\n    ports: [\"8080:80\"]\n");
//! match parse(&[file], &env, &Fs) {
//!     Ok(parsed) => {
//!         eprint!("{}", render(&parsed.warnings, RenderStyle::PLAIN));
//!         let specs: Vec<_> = parsed.services.iter().map(to_spec).collect();
//!         assert_eq!(specs[0].image, "web:1.2");
//!     }
//!     Err(e) => panic!("{}", render(&e.errors, RenderStyle::PLAIN)),
//! }
//! ```

mod convert;
mod ctx;
mod deploy;
mod diag;
mod duration;
mod envfile;
mod environment;
mod file;
mod interpolate;
mod keys;
pub mod model;
mod node;
mod ports;
mod service;
mod shell;
mod size;
mod validate;
mod volumes;

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::NamedSource;

pub use convert::to_spec;
pub use deploy::MAX_REPLICAS;
pub use diag::{Finding, Kind, ParseError, RenderStyle, Severity, render};
pub use duration::{DurationError, format_duration, parse_duration};
pub use interpolate::{InterpolateError, Interpolated, interpolate};
pub use model::ServiceModel;
pub use size::{SizeError, parse_size};
pub use validate::is_dns_label;

use ctx::Ctx;
use node::Node;

/// Reads the files a service file refers to (`env_file`).
pub trait ReadFile {
    /// The file's text.
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fs;

impl ReadFile for Fs {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// In-memory files by path, for tests and for callers that have read them already.
impl ReadFile for BTreeMap<PathBuf, String> {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        self.get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }
}

/// One service file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The name shown in messages: the path as given, or `-` for standard input.
    pub name: String,
    /// The folder relative `env_file` paths are resolved against: the file's folder, or
    /// the working directory for standard input.
    pub dir: PathBuf,
    /// The YAML.
    pub text: String,
}

impl Source {
    /// A source from text (standard input, a test).
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            dir: dir.into(),
            text: text.into(),
        }
    }

    /// Reads the file at `path`; its folder is the base for relative paths.
    pub fn read(path: &Path, files: &dyn ReadFile) -> io::Result<Self> {
        let text = files.read_to_string(path)?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(Source::new(path.display().to_string(), dir, text))
    }
}

/// Service files read without error.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The top-level `name:`, if any (the last file's).
    pub name: Option<String>,
    /// The services, in the order they first appear.
    pub services: Vec<ServiceModel>,
    /// Warnings, in file order, then line order.
    pub warnings: Vec<Finding>,
}

/// Reads `sources` (merged in order), interpolating with `env` and reading `env_file`s
/// through `files`.
pub fn parse(
    sources: &[Source],
    env: &BTreeMap<String, String>,
    files: &dyn ReadFile,
) -> Result<Parsed, ParseError> {
    let mut ctx = Ctx {
        sources: sources
            .iter()
            .map(|s| Arc::new(NamedSource::new(&s.name, Arc::<str>::from(s.text.as_str()))))
            .collect(),
        dirs: sources.iter().map(|s| s.dir.clone()).collect(),
        env,
        files,
        findings: Vec::new(),
    };
    let mut name = None;
    let mut merged: Vec<(Node, Vec<(Node, Node)>)> = Vec::new();
    let mut warned_vars = HashSet::new();
    for src in 0..sources.len() {
        let Some(content) = ctx.read_file(src, &mut warned_vars) else {
            continue;
        };
        if content.name.is_some() {
            name = content.name;
        }
        for (key, body) in content.services {
            let entries = match body.value {
                node::Value::Map(entries) => entries,
                node::Value::Null => Vec::new(),
                _ => {
                    ctx.type_error(&body, &format!("services.{}", key.key_name()), "a mapping");
                    continue;
                }
            };
            let svc = key.key_name();
            match merged.iter_mut().find(|(k, _)| k.key_name() == svc) {
                Some((_, existing)) => {
                    for (k, v) in entries {
                        let kn = k.key_name();
                        match existing.iter_mut().find(|(ek, _)| ek.key_name() == kn) {
                            Some(slot) => *slot = (k, v),
                            None => existing.push((k, v)),
                        }
                    }
                }
                None => merged.push((key, entries)),
            }
        }
    }
    let mut read = Vec::new();
    let mut all_ok = true;
    for (key, entries) in &merged {
        let (model, refs, ok) = ctx.service(key, entries);
        all_ok &= ok;
        read.push((model, refs));
    }
    for (m, refs) in &read {
        ctx.check_service(m, refs);
    }
    ctx.check_references(&read);
    let no_services = merged.is_empty();
    let services: Vec<ServiceModel> = read.into_iter().map(|(m, _)| m).collect();
    let mut findings = std::mem::take(&mut ctx.findings);
    if no_services
        && findings.iter().all(|f| f.severity != Severity::Error)
        && let Some(first) = ctx.sources.first()
    {
        findings.push(Finding {
            severity: Severity::Error,
            kind: Kind::Missing,
            file: first.name().to_owned(),
            line: 0,
            column: 0,
            key: "services".into(),
            message: "the service files define no service".into(),
            label: String::new(),
            help: Some("add a service under `services:`".into()),
            source: None,
            span: (0, 0).into(),
            order: (usize::MAX, 0),
        });
    }
    findings.sort_by_key(|f| f.order);
    let (errors, warnings): (Vec<Finding>, Vec<Finding>) = findings
        .into_iter()
        .partition(|f| f.severity == Severity::Error);
    if errors.is_empty() && all_ok && !sources.is_empty() {
        Ok(Parsed {
            name,
            services,
            warnings,
        })
    } else if errors.is_empty() {
        // A service failed without a recorded error: cannot happen, but never send it.
        Err(ParseError {
            errors: vec![Finding {
                severity: Severity::Error,
                kind: Kind::Missing,
                file: sources
                    .first()
                    .map_or_else(|| "-".to_owned(), |s| s.name.clone()),
                line: 0,
                column: 0,
                key: String::new(),
                message: "no service file was given".into(),
                label: String::new(),
                help: Some("give a file with -f FILE, or - for standard input".into()),
                source: None,
                span: (0, 0).into(),
                order: (0, 0),
            }],
            warnings,
        })
    } else {
        Err(ParseError { errors, warnings })
    }
}
