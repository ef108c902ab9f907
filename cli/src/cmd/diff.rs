//! `berth diff -f ...`: how the services of the files differ from what the cluster has,
//! service by service and field by field. Exit 0: no change; 1: changes; 2: the
//! comparison failed. Services the cluster runs that the files do not name are not
//! changed by `apply`, so they are not shown.

use std::collections::BTreeMap;

use berth_proto::v1;
use serde_json::Value;
use tonic::Code;

use super::Io;
use crate::args::{DiffArgs, GlobalArgs};
use crate::error::CliError;
use crate::exit;
use crate::output::model::SpecView;

/// What applying would do to one service.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceDiff {
    /// Not in the cluster: it would be created.
    Created {
        /// The service.
        name: String,
        /// Its fields.
        fields: Vec<(String, Value)>,
    },
    /// In the cluster with another spec: it would be updated.
    Changed {
        /// The service.
        name: String,
        /// Its version in the cluster.
        version: u64,
        /// The fields that differ: (field, in the cluster, in the files).
        fields: Vec<(String, Option<Value>, Option<Value>)>,
    },
    /// The same.
    Unchanged {
        /// The service.
        name: String,
    },
}

fn fields(spec: &v1::ServiceSpec) -> BTreeMap<String, Value> {
    match serde_json::to_value(SpecView::from(spec)) {
        Ok(Value::Object(map)) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// Compares each `local` spec with the cluster's (`remote`: name → (version, spec)).
pub fn compare(
    local: &[v1::ServiceSpec],
    remote: &BTreeMap<String, (u64, v1::ServiceSpec)>,
) -> Vec<ServiceDiff> {
    local
        .iter()
        .map(|spec| {
            let mine = fields(spec);
            let Some((version, theirs)) = remote.get(&spec.name) else {
                return ServiceDiff::Created {
                    name: spec.name.clone(),
                    fields: mine.into_iter().collect(),
                };
            };
            let theirs = fields(theirs);
            let keys: std::collections::BTreeSet<&String> =
                mine.keys().chain(theirs.keys()).collect();
            let changed: Vec<(String, Option<Value>, Option<Value>)> = keys
                .into_iter()
                .filter(|k| mine.get(*k) != theirs.get(*k))
                .map(|k| (k.clone(), theirs.get(k).cloned(), mine.get(k).cloned()))
                .collect();
            if changed.is_empty() {
                ServiceDiff::Unchanged {
                    name: spec.name.clone(),
                }
            } else {
                ServiceDiff::Changed {
                    name: spec.name.clone(),
                    version: *version,
                    fields: changed,
                }
            }
        })
        .collect()
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The diff as text: `+ name (new service)` with its fields, `~ name (version N)` with a
/// `-` (cluster) and `+` (files) line per changed field, `= name` when unchanged.
pub fn render(diffs: &[ServiceDiff]) -> String {
    let mut out = String::new();
    for d in diffs {
        match d {
            ServiceDiff::Created { name, fields } => {
                out.push_str(&format!("+ {name} (new service)\n"));
                for (k, v) in fields.iter().filter(|(k, _)| k != "name") {
                    out.push_str(&format!("+   {k}: {}\n", show(v)));
                }
            }
            ServiceDiff::Changed {
                name,
                version,
                fields,
            } => {
                out.push_str(&format!("~ {name} (version {version} in the cluster)\n"));
                for (k, old, new) in fields {
                    if let Some(old) = old {
                        out.push_str(&format!("-   {k}: {}\n", show(old)));
                    }
                    if let Some(new) = new {
                        out.push_str(&format!("+   {k}: {}\n", show(new)));
                    }
                }
            }
            ServiceDiff::Unchanged { name } => out.push_str(&format!("= {name} (no change)\n")),
        }
    }
    out
}

/// Runs `berth diff`.
pub async fn run(g: &GlobalArgs, args: &DiffArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let specs = super::files::read_specs(&args.files.files, io)?;
    let client = super::connect(g, io).await?;
    let mut remote = BTreeMap::new();
    for spec in &specs {
        let name = spec.name.clone();
        let found = client
            .call(&format!("get {name}"), |mut c| {
                let name = name.clone();
                async move {
                    c.get_service(v1::GetServiceRequest { name, stale: false })
                        .await
                }
            })
            .await;
        match found {
            Ok(r) => {
                let s = r.service.unwrap_or_default();
                remote.insert(name, (s.version, s.spec.unwrap_or_default()));
            }
            Err(e) if e.code() == Some(Code::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let diffs = compare(&specs, &remote);
    io.print(&render(&diffs))?;
    let changes = diffs
        .iter()
        .any(|d| !matches!(d, ServiceDiff::Unchanged { .. }));
    Ok(if changes {
        exit::DIFF_CHANGES
    } else {
        exit::OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::golden;

    fn spec(name: &str, image: &str, replicas: u32) -> v1::ServiceSpec {
        v1::ServiceSpec {
            name: name.into(),
            image: image.into(),
            replicas,
            ..Default::default()
        }
    }

    #[test]
    fn diff_text() {
        let mut web = spec("web", "busybox:2", 3);
        web.command = vec!["httpd".into(), "-f".into()];
        let local = vec![web, spec("api", "api:1", 1), spec("db", "db:1", 1)];
        let remote = BTreeMap::from([
            ("web".to_owned(), (4, spec("web", "busybox:1", 2))),
            ("db".to_owned(), (1, spec("db", "db:1", 1))),
        ]);
        let diffs = compare(&local, &remote);
        assert!(matches!(diffs[2], ServiceDiff::Unchanged { .. }));
        golden::check("diff.txt", &render(&diffs));
    }
}
