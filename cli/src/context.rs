//! Contexts: which cluster `berth` talks to, and with which certificate.
//!
//! The configuration is a YAML file, `~/.berth/config` unless `--config` or `BERTH_CONFIG`
//! names another:
//!
//! ```yaml
//! current: default
//! contexts:
//!   default:
//!     endpoints: ["10.0.0.1:7443", "10.0.0.2:7443"]
//!     ca: /var/lib/berth/ca/ca.pem
//!     cert: /var/lib/berth/admin/admin.pem
//!     key: /var/lib/berth/admin/admin.key
//! ```
//!
//! A command uses the context named by `--context` or `BERTH_CONTEXT`, else `current`;
//! `--addr` or `BERTH_ADDR` replaces its endpoints. Relative certificate paths are read
//! relative to the configuration file's folder. Everything here is pure but for
//! [`Config::load`] and [`Config::save`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// The contexts, by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// How to reach one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// The controllers' API addresses (host:port), tried in order.
    pub endpoints: Vec<String>,
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// The admin client certificate (PEM).
    pub cert: PathBuf,
    /// The admin client key (PEM).
    pub key: PathBuf,
}

/// A context chosen for a command, with its endpoints and paths resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Its name.
    pub name: String,
    /// Endpoints, paths made absolute.
    pub context: Context,
}

/// Why the configuration or a context cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The file exists but cannot be read.
    #[error("cannot read the configuration {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid configuration.
    #[error(
        "the configuration {} is not valid: {message}; fix it or remove it and add the context again with `berth context add`",
        path.display()
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the YAML parser said.
        message: String,
    },
    /// The file cannot be written.
    #[error("cannot write the configuration {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// There is no home folder to find `~/.berth/config` in.
    #[error("cannot find the configuration: HOME is not set; set BERTH_CONFIG or --config")]
    NoHome,
    /// No context is named and none is current.
    #[error(
        "no context is chosen in {}; add one with `berth context add NAME --endpoint HOST:PORT --ca FILE --cert FILE --key FILE`, or choose one with `berth context use NAME`",
        path.display()
    )]
    NoneChosen {
        /// The configuration file.
        path: PathBuf,
    },
    /// The named context does not exist.
    #[error("there is no context `{name}` in {}{}", path.display(), known_list(known))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The configuration file.
        path: PathBuf,
        /// The contexts that exist.
        known: Vec<String>,
    },
    /// The context has no endpoint to try.
    #[error(
        "context `{name}` has no endpoint; add one with `berth context add {name} --endpoint HOST:PORT ...` or set BERTH_ADDR"
    )]
    NoEndpoint {
        /// The context.
        name: String,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; there are none: add one with `berth context add`".to_owned()
    } else {
        format!(
            "; the contexts are: {} (`berth context ls`)",
            known.join(", ")
        )
    }
}

/// Where the configuration is: `explicit` (`--config`, `BERTH_CONFIG`), else
/// `<home>/.berth/config`.
pub fn config_path(explicit: Option<&Path>, home: Option<&Path>) -> Result<PathBuf, ContextError> {
    match (explicit, home) {
        (Some(p), _) => Ok(p.to_path_buf()),
        (None, Some(home)) => Ok(home.join(".berth").join("config")),
        (None, None) => Err(ContextError::NoHome),
    }
}

impl Config {
    /// Parses a configuration's text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ContextError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str(text).map_err(|e| ContextError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string().lines().next().unwrap_or_default().to_owned(),
        })
    }

    /// The configuration as YAML.
    pub fn to_yaml(&self) -> String {
        // Strings, paths and maps of them always serialize.
        serde_saphyr::to_string(self).unwrap_or_default()
    }

    /// Reads the configuration at `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Config, ContextError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ContextError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the configuration to `path` (creating its folder), readable by its owner
    /// only, replacing the file at once (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> Result<(), ContextError> {
        let write = |source| ContextError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(write)?;
            f.write_all(self.to_yaml().as_bytes()).map_err(write)?;
            f.sync_all().map_err(write)?;
        }
        std::fs::rename(&tmp, path).map_err(write)
    }

    /// The context a command uses: `name` (from `--context` or `BERTH_CONTEXT`) or the
    /// current one, with `addrs` (from `--addr` or `BERTH_ADDR`) replacing its endpoints when
    /// not empty, and relative paths resolved against `base` (the configuration's folder).
    pub fn resolve(
        &self,
        name: Option<&str>,
        addrs: &[String],
        path: &Path,
    ) -> Result<Resolved, ContextError> {
        let name = match name.or(self.current.as_deref()) {
            Some(n) => n.to_owned(),
            None => {
                return Err(ContextError::NoneChosen {
                    path: path.to_path_buf(),
                });
            }
        };
        let mut context =
            self.contexts
                .get(&name)
                .cloned()
                .ok_or_else(|| ContextError::Unknown {
                    name: name.clone(),
                    path: path.to_path_buf(),
                    known: self.contexts.keys().cloned().collect(),
                })?;
        let addrs: Vec<String> = addrs
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if !addrs.is_empty() {
            context.endpoints = addrs;
        }
        if context.endpoints.is_empty() {
            return Err(ContextError::NoEndpoint { name });
        }
        let base = path.parent().unwrap_or(Path::new(""));
        for p in [&mut context.ca, &mut context.cert, &mut context.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(Resolved { name, context })
    }

    /// Adds `context` as `name` (replacing one of that name); it becomes current when
    /// `make_current` or when no context is current.
    pub fn add(&mut self, name: &str, context: Context, make_current: bool) {
        self.contexts.insert(name.to_owned(), context);
        if make_current || self.current.is_none() {
            self.current = Some(name.to_owned());
        }
    }

    /// Makes `name` current.
    pub fn use_context(&mut self, name: &str, path: &Path) -> Result<(), ContextError> {
        if !self.contexts.contains_key(name) {
            return Err(self.unknown(name, path));
        }
        self.current = Some(name.to_owned());
        Ok(())
    }

    /// Removes `name`; if it was current, none is.
    pub fn remove(&mut self, name: &str, path: &Path) -> Result<(), ContextError> {
        if self.contexts.remove(name).is_none() {
            return Err(self.unknown(name, path));
        }
        if self.current.as_deref() == Some(name) {
            self.current = None;
        }
        Ok(())
    }

    fn unknown(&self, name: &str, path: &Path) -> ContextError {
        ContextError::Unknown {
            name: name.to_owned(),
            path: path.to_path_buf(),
            known: self.contexts.keys().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(endpoints: &[&str]) -> Context {
        Context {
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            ca: "ca.pem".into(),
            cert: "/abs/admin.pem".into(),
            key: "admin.key".into(),
        }
    }

    fn config() -> Config {
        let mut c = Config::default();
        c.add("prod", ctx(&["10.0.0.1:7443", "10.0.0.2:7443"]), false);
        c.add("lab", ctx(&["10.1.0.1:7443"]), false);
        c
    }

    const PATH: &str = "/home/u/.berth/config";

    #[test]
    fn the_first_context_added_is_current() {
        assert_eq!(config().current.as_deref(), Some("prod"));
    }

    #[test]
    fn yaml_round_trips() {
        let c = config();
        let text = c.to_yaml();
        assert!(text.contains("current: prod"), "{text}");
        assert_eq!(Config::parse(&text, Path::new(PATH)).expect("parses"), c);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_file() {
        let err = Config::parse("curent: prod\n", Path::new(PATH)).expect_err("invalid");
        let msg = err.to_string();
        assert!(msg.contains(PATH) && msg.contains("curent"), "{msg}");
    }

    #[test]
    fn an_empty_file_is_an_empty_config() {
        assert_eq!(
            Config::parse("\n", Path::new(PATH)).expect("parses"),
            Config::default()
        );
    }

    #[test]
    fn resolve_uses_the_current_context_and_resolves_paths() {
        let r = config()
            .resolve(None, &[], Path::new(PATH))
            .expect("resolves");
        assert_eq!(r.name, "prod");
        assert_eq!(r.context.endpoints, ["10.0.0.1:7443", "10.0.0.2:7443"]);
        assert_eq!(r.context.ca, PathBuf::from("/home/u/.berth/ca.pem"));
        assert_eq!(r.context.cert, PathBuf::from("/abs/admin.pem"));
    }

    #[test]
    fn a_named_context_and_addresses_override() {
        let r = config()
            .resolve(Some("lab"), &["127.0.0.1:9".into()], Path::new(PATH))
            .expect("resolves");
        assert_eq!(r.name, "lab");
        assert_eq!(r.context.endpoints, ["127.0.0.1:9"]);
    }

    #[test]
    fn an_unknown_context_lists_the_known_ones() {
        let err = config()
            .resolve(Some("staging"), &[], Path::new(PATH))
            .expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "there is no context `staging` in /home/u/.berth/config; the contexts are: lab, prod (`berth context ls`)"
        );
    }

    #[test]
    fn no_context_says_how_to_add_one() {
        let err = Config::default()
            .resolve(None, &[], Path::new(PATH))
            .expect_err("none");
        assert!(err.to_string().contains("berth context add"), "{err}");
    }

    #[test]
    fn removing_the_current_context_leaves_none_current() {
        let mut c = config();
        c.remove("prod", Path::new(PATH)).expect("removes");
        assert_eq!(c.current, None);
        assert!(c.remove("prod", Path::new(PATH)).is_err());
        c.use_context("lab", Path::new(PATH)).expect("uses");
        assert_eq!(c.current.as_deref(), Some("lab"));
    }

    #[test]
    fn the_default_path_is_under_home() {
        assert_eq!(
            config_path(None, Some(Path::new("/home/u"))).expect("a path"),
            PathBuf::from(PATH)
        );
        assert!(config_path(None, None).is_err());
    }
}
