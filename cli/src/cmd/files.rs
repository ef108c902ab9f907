//! Reading the service files that `-f` names: a file, a folder (its `*.yaml` and `*.yml`
//! files, sorted by name) or `-` (standard input), then parsing them all; any error is
//! printed and nothing goes further.

use std::io::Read;
use std::path::{Path, PathBuf};

use berth_proto::v1;

use super::Io;
use crate::error::CliError;
use crate::servicefile::{self, Fs, ServiceModel, Source};

/// The files in `dir` a folder argument stands for.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let read = |source| CliError::ReadFile {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(CliError::EmptyDir {
            path: dir.to_path_buf(),
        });
    }
    Ok(files)
}

/// The sources the `-f` arguments name, in order.
pub fn sources(args: &[PathBuf]) -> Result<Vec<Source>, CliError> {
    let mut out = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| CliError::ReadFile {
                    path: arg.clone(),
                    source,
                })?;
            out.push(Source::new("-", ".", text));
            continue;
        }
        let paths = if arg.is_dir() {
            yaml_files(arg)?
        } else {
            vec![arg.clone()]
        };
        for p in paths {
            out.push(Source::read(&p, &Fs).map_err(|source| CliError::ReadFile {
                path: p.clone(),
                source,
            })?);
        }
    }
    Ok(out)
}

/// Reads and parses the files, prints the warnings (and the errors, which fail), and
/// returns the specs to send, normalized as the cluster stores them.
pub fn read_specs(args: &[PathBuf], io: &mut Io) -> Result<Vec<v1::ServiceSpec>, CliError> {
    let sources = sources(args)?;
    let parsed = match servicefile::parse(&sources, &io.env, &Fs) {
        Ok(p) => p,
        Err(e) => {
            let mut all = e.warnings.clone();
            all.extend(e.errors.iter().cloned());
            all.sort_by_key(|f| (f.file.clone(), f.line, f.column));
            let text = servicefile::render(&all, io.render_style());
            io.note(&text);
            return Err(CliError::InvalidFiles {
                count: e.errors.len(),
            });
        }
    };
    if !parsed.warnings.is_empty() {
        let text = servicefile::render(&parsed.warnings, io.render_style());
        io.note(&text);
    }
    apply_order(&parsed.services)
        .into_iter()
        .map(|m| normalize(&servicefile::to_spec(m)))
        .collect()
}

/// The services in the order to apply them: each after the services it depends on or
/// links to (when they are in the files), otherwise in file order. The parser has refused
/// dependency cycles; a cycle through links alone is broken at file order.
pub fn apply_order(services: &[ServiceModel]) -> Vec<&ServiceModel> {
    let mut done: Vec<bool> = vec![false; services.len()];
    let mut out = Vec::with_capacity(services.len());
    fn visit<'a>(
        i: usize,
        services: &'a [ServiceModel],
        done: &mut [bool],
        visiting: &mut Vec<usize>,
        out: &mut Vec<&'a ServiceModel>,
    ) {
        if done[i] || visiting.contains(&i) {
            return;
        }
        visiting.push(i);
        let m = &services[i];
        let needs = m
            .depends_on
            .iter()
            .map(|d| d.service.as_str())
            .chain(m.links.iter().map(|l| l.service.as_str()));
        for name in needs {
            if let Some(j) = services.iter().position(|s| s.name == name) {
                visit(j, services, done, visiting, out);
            }
        }
        visiting.pop();
        done[i] = true;
        out.push(m);
    }
    for i in 0..services.len() {
        visit(i, services, &mut done, &mut Vec::new(), &mut out);
    }
    out
}

/// `spec` as the cluster stores and returns it (defaults filled in), so that comparing it
/// with the cluster's copy shows only real changes; the cluster's own checks run here too.
pub fn normalize(spec: &v1::ServiceSpec) -> Result<v1::ServiceSpec, CliError> {
    use berth_controller::state::wire::{spec_from_wire, spec_to_wire};
    spec_from_wire(spec)
        .map(|s| spec_to_wire(&s))
        .map_err(|e| CliError::InvalidSpec {
            service: spec.name.clone(),
            message: crate::error::render(&e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_stands_for_its_yaml_files_sorted() {
        let dir = tempdir();
        for f in ["b.yml", "a.yaml", "notes.txt"] {
            std::fs::write(dir.join(f), "services: {}\n").expect("write");
        }
        std::fs::create_dir(dir.join("sub.yaml")).expect("mkdir");
        let files = yaml_files(&dir).expect("lists");
        assert_eq!(files, vec![dir.join("a.yaml"), dir.join("b.yml")]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn services_are_applied_after_what_they_need() {
        let text = "services:\n  web:\n    image: web\n    links: [api]\n  api:\n    image: api\n    depends_on: [db]\n  db:\n    image: db\n  other:\n    image: other\n";
        let parsed = servicefile::parse(
            &[Source::new("a.yaml", ".", text)],
            &Default::default(),
            &Fs,
        )
        .expect("parses");
        let order: Vec<&str> = apply_order(&parsed.services)
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(order, ["db", "api", "web", "other"]);
    }

    #[test]
    fn an_empty_folder_is_an_error() {
        let dir = tempdir();
        let err = yaml_files(&dir).expect_err("empty");
        assert!(err.to_string().contains("holds no *.yaml"), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "berth-cli-files-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }
}
