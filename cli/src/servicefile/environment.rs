//! A service's environment: `environment:` (a mapping or `KEY=VALUE` list) and
//! `env_file:` (files read through [`super::ReadFile`], parsed, interpolated), merged with
//! the files first.

use super::ctx::{Ctx, shorten};
use super::diag::Kind;
use super::envfile::parse_env_file;
use super::interpolate::interpolate;
use super::keys;
use super::node::{Node, Value};

impl Ctx<'_> {
    /// Looks a variable up for `KEY` without a value; warns when it is not set.
    fn env_var(&mut self, at: &Node, key: &str, var: &str) -> Option<String> {
        let v = self.env.get(var).cloned();
        if v.is_none() {
            self.warn(
                Kind::Interpolation,
                at.at,
                key,
                format!("`{key}`: `{var}` is taken from the environment, where it is not set; the service will not have it"),
                "not set",
                Some(format!("set {var} before applying, or give a value: `{var}=...`")),
            );
        }
        v
    }

    fn env_key_ok(&mut self, node: &Node, key: &str, var: &str) -> bool {
        if var.is_empty() || var.contains(['=', '\0']) || var.chars().any(char::is_whitespace) {
            self.error(
                Kind::Invalid,
                node.at,
                key,
                format!("`{key}`: `{}` is not a variable name", shorten(var)),
                "not a variable name",
                Some("write KEY=VALUE (list) or KEY: VALUE (mapping)".into()),
            );
            return false;
        }
        true
    }

    /// `environment:` as a mapping or a list of `KEY=VALUE`.
    pub(crate) fn environment(&mut self, node: &Node, key: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    let var = k.key_name();
                    let path = format!("{key}.{var}");
                    if !self.env_key_ok(k, &path, &var) {
                        continue;
                    }
                    let value = match &v.value {
                        Value::Null => self.env_var(v, &path, &var),
                        _ => self.string(v, &path),
                    };
                    out.extend(value.map(|value| (var, value)));
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{key}[{i}]");
                    let Some(text) = self.string(item, &path) else {
                        continue;
                    };
                    let (var, value) = match text.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                        None => (text.clone(), None),
                    };
                    if !self.env_key_ok(item, &path, &var) {
                        continue;
                    }
                    let value = match value {
                        Some(v) => Some(v),
                        None => self.env_var(item, &path, &var),
                    };
                    out.extend(value.map(|value| (var, value)));
                }
            }
            _ => self.type_error(node, key, "a mapping or a list of KEY=VALUE"),
        }
        out
    }

    /// `env_file:`: each file read (relative to the service file's folder), parsed and
    /// interpolated, in order.
    pub(crate) fn env_files(&mut self, node: &Node, key: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let items: Vec<(usize, &Node)> = match &node.value {
            Value::Seq(items) => items.iter().enumerate().collect(),
            _ => vec![(0, node)],
        };
        for (i, item) in items {
            let path = if matches!(node.value, Value::Seq(_)) {
                format!("{key}[{i}]")
            } else {
                key.to_owned()
            };
            let (file, required) = match &item.value {
                Value::Map(entries) => {
                    let mut file = None;
                    let mut required = true;
                    for (k, v) in entries {
                        let name = k.key_name();
                        let p = format!("{path}.{name}");
                        match name.as_str() {
                            "path" => file = self.string(v, &p),
                            "required" => required = self.boolean(v, &p).unwrap_or(true),
                            "format" => {
                                self.string(v, &p);
                            }
                            _ => self.other_key(&keys::ENV_FILE, k, &p),
                        }
                    }
                    match file {
                        Some(f) => (f, required),
                        None => {
                            self.error(
                                Kind::Missing,
                                item.at,
                                &path,
                                format!("`{path}` has no `path`"),
                                "no path",
                                Some("give the file: `path: ./app.env`".into()),
                            );
                            continue;
                        }
                    }
                }
                _ => match self.string(item, &path) {
                    Some(f) => (f, true),
                    None => continue,
                },
            };
            let dir = self.dirs.get(item.at.src).cloned().unwrap_or_default();
            let full = dir.join(&file);
            let text = match self.files.read_to_string(&full) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(e) => {
                    self.error(
                        Kind::Invalid,
                        item.at,
                        &path,
                        format!("`{path}`: cannot read `{}`: {e}", full.display()),
                        "cannot read",
                        Some(
                            "env_file paths are relative to the folder of the service file".into(),
                        ),
                    );
                    continue;
                }
            };
            match parse_env_file(&text) {
                Ok(entries) => {
                    for (var, value) in entries {
                        let value = match value {
                            None => self.env_var(item, &path, &var),
                            Some(v) => match interpolate(&v, self.env) {
                                Ok(r) => Some(r.text),
                                Err(e) => {
                                    self.error(
                                        Kind::Interpolation,
                                        item.at,
                                        &path,
                                        format!("`{path}`: in `{file}`, `{var}`: {e}"),
                                        "bad interpolation",
                                        Some("write $$ for a literal $".into()),
                                    );
                                    None
                                }
                            },
                        };
                        out.extend(value.map(|v| (var, v)));
                    }
                }
                Err(e) => self.error(
                    Kind::Syntax,
                    item.at,
                    &path,
                    format!("`{path}`: `{file}` {e}"),
                    "bad env file",
                    Some("an env file holds KEY=VALUE lines and # comments".into()),
                ),
            }
        }
        out
    }
}

/// `env_file` entries then `environment`; a later value for a key replaces the earlier one
/// where it stood.
pub(crate) fn merge_env(
    first: Vec<(String, String)>,
    then: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in first.into_iter().chain(then) {
        match out.iter_mut().find(|(ok, _)| *ok == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_env_file_in_place() {
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            merge_env(
                vec![s("A", "1"), s("B", "2")],
                vec![s("C", "3"), s("A", "9")]
            ),
            vec![s("A", "9"), s("B", "2"), s("C", "3")]
        );
    }
}
