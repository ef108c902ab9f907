//! The node's registries file: how to reach each registry host (`--registries FILE`), as
//! Docker's `insecure-registries`, `certs.d` and `docker login` together.
//!
//! ```json
//! {
//!   "registry.example:5000": { "ca": "/etc/berth/registry-ca.pem",
//!                              "username": "ci", "password_file": "/etc/berth/registry.pw" },
//!   "127.0.0.1:5000": { "insecure": true }
//! }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::RegistryConfig;

/// One host's entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default)]
    insecure: bool,
    ca: Option<PathBuf>,
    username: Option<String>,
    password_file: Option<PathBuf>,
}

/// Why the registries file is refused.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// A file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the expected JSON.
    #[error("{}: {source} (a JSON object of host → {{insecure, ca, username, password_file}})", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A username without a password file, or the reverse.
    #[error("{}: registry {host}: username and password_file go together", path.display())]
    HalfCredentials {
        /// The file.
        path: PathBuf,
        /// The host.
        host: String,
    },
}

/// How to reach each registry host; a host not listed gets HTTPS with the system's CAs and
/// no credentials.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    hosts: BTreeMap<String, RegistryConfig>,
}

impl Registries {
    /// Reads the registries file at `path` (with the CA and password files it names).
    pub fn load(path: &Path) -> Result<Registries, HostsError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| HostsError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let entries: BTreeMap<String, Entry> =
            serde_json::from_str(&read(path)?).map_err(|source| HostsError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let mut hosts = BTreeMap::new();
        for (host, e) in entries {
            let password = match (&e.username, &e.password_file) {
                (Some(_), Some(f)) => Some(read(f)?.trim_end_matches(['\r', '\n']).to_owned()),
                (None, None) => None,
                _ => {
                    return Err(HostsError::HalfCredentials {
                        path: path.to_owned(),
                        host,
                    });
                }
            };
            let ca_pem = e.ca.as_deref().map(read).transpose()?;
            hosts.insert(
                host,
                RegistryConfig {
                    insecure: e.insecure,
                    ca_pem,
                    username: e.username,
                    password,
                },
            );
        }
        Ok(Registries { hosts })
    }

    /// The settings for `host` (`host[:port]` as in image references).
    pub fn for_host(&self, host: &str) -> RegistryConfig {
        self.hosts.get(host).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_hosts_with_their_files_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "PEM").unwrap();
        let file = dir.path().join("registries.json");
        std::fs::write(
            &file,
            format!(
                r#"{{"r.example:5000": {{"ca": "{0}/ca.pem", "username": "ci", "password_file": "{0}/pw"}},
                    "127.0.0.1:5000": {{"insecure": true}}}}"#,
                dir.path().display()
            ),
        )
        .unwrap();
        let r = Registries::load(&file).unwrap();
        let c = r.for_host("r.example:5000");
        assert_eq!(
            (
                c.ca_pem.as_deref(),
                c.username.as_deref(),
                c.password.as_deref()
            ),
            (Some("PEM"), Some("ci"), Some("s3cret"))
        );
        assert!(r.for_host("127.0.0.1:5000").insecure);
        assert!(!r.for_host("other:5000").insecure);

        std::fs::write(&file, r#"{"h": {"username": "ci"}}"#).unwrap();
        let e = Registries::load(&file).unwrap_err().to_string();
        assert!(
            e.contains("registry h: username and password_file go together"),
            "{e}"
        );
        std::fs::write(&file, r#"{"h": {"insecur": true}}"#).unwrap();
        let e = Registries::load(&file).unwrap_err().to_string();
        assert!(e.contains("unknown field `insecur`"), "{e}");
    }
}
