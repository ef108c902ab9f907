//! One file: parsed to nodes, interpolated, its top-level keys checked, its services
//! handed back for merging.

use std::collections::HashSet;

use super::ctx::Ctx;
use super::diag::Kind;
use super::interpolate::{InterpolateError, interpolate};
use super::keys;
use super::node::{At, Node, Value, parse_yaml};

/// What one file contributes.
pub(crate) struct FileContent {
    /// `name:`, if given.
    pub name: Option<String>,
    /// `services:` entries: the name's node and the body's node.
    pub services: Vec<(Node, Node)>,
}

impl Ctx<'_> {
    /// Reads source `src`; `None` when it is not YAML or not a mapping.
    pub(crate) fn read_file(
        &mut self,
        src: usize,
        warned: &mut HashSet<String>,
    ) -> Option<FileContent> {
        let text = self.sources.get(src)?.inner().clone();
        let mut root = match parse_yaml(&text, src) {
            Ok(root) => root,
            Err(e) => {
                self.error(
                    Kind::Syntax,
                    e.at,
                    "",
                    format!("invalid YAML: {}", strip_location(&e.message)),
                    "here",
                    Some("check the indentation here, and that every `[`, `{` and quote before it is closed".into()),
                );
                return None;
            }
        };
        self.interpolate_tree(&mut root, "", warned);
        let whole = At {
            src,
            line: 1,
            column: 1,
            ..At::default()
        };
        let entries = match root.value {
            Value::Map(entries) => entries,
            Value::Null => {
                self.error(
                    Kind::Missing,
                    whole,
                    "",
                    "the file is empty",
                    "empty",
                    Some("a service file has a `services:` mapping".into()),
                );
                return None;
            }
            _ => {
                self.type_error(&root, "the file", "a mapping with `services:`");
                return None;
            }
        };
        let mut content = FileContent {
            name: None,
            services: Vec::new(),
        };
        let mut has_services = false;
        for (k, v) in entries {
            let key = k.key_name();
            match key.as_str() {
                "services" => {
                    has_services = true;
                    match v.value {
                        Value::Map(services) => content.services = services,
                        Value::Null => {}
                        _ => self.type_error(
                            &v,
                            "services",
                            "a mapping of service names to services",
                        ),
                    }
                }
                "version" => self.warn(
                    Kind::Obsolete,
                    k.at,
                    "version",
                    "`version` is obsolete and is ignored",
                    "obsolete",
                    Some("the Compose specification no longer uses it; remove it".into()),
                ),
                "name" => content.name = self.string(&v, "name"),
                _ => self.other_key(&keys::TOP, &k, &key),
            }
        }
        if !has_services {
            self.error(
                Kind::Missing,
                whole,
                "services",
                "the file has no `services:`",
                "no services",
                Some(
                    "a service file has a `services:` mapping of service names to services".into(),
                ),
            );
        }
        Some(content)
    }

    /// Interpolates every string value under `node` (keys are left as they are).
    fn interpolate_tree(&mut self, node: &mut Node, path: &str, warned: &mut HashSet<String>) {
        match &mut node.value {
            Value::Str(s) if s.contains('$') => match interpolate(s, self.env) {
                Ok(r) => {
                    for var in r.unset {
                        if warned.insert(var.clone()) {
                            let at = self.narrow(node.at, &var);
                            self.warn(
                                Kind::Interpolation,
                                at,
                                path,
                                format!("variable `{var}` is not set; it is replaced by an empty string"),
                                "not set",
                                Some(format!("set {var} before applying, or give a default: ${{{var}:-default}}")),
                            );
                        }
                    }
                    *s = r.text;
                }
                Err(e) => {
                    let help = match &e {
                        InterpolateError::Required { var, .. } => format!("set {var} before applying"),
                        _ => "write $$ for a literal $; variables are $NAME, ${NAME}, ${NAME:-default}, ${NAME:?error}".to_owned(),
                    };
                    let at = node.at;
                    self.error(
                        Kind::Interpolation,
                        at,
                        path,
                        format!("`{path}`: {e}"),
                        "cannot interpolate",
                        Some(help),
                    );
                }
            },
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.interpolate_tree(item, &format!("{path}[{i}]"), warned);
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    let key = k.key_name();
                    let p = if path.is_empty() {
                        key
                    } else {
                        format!("{path}.{key}")
                    };
                    self.interpolate_tree(v, &p, warned);
                }
            }
            _ => {}
        }
    }
}

/// The parser's message without its trailing " at line N, column M" (the snippet shows it).
fn strip_location(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(", column ") => &message[..i],
        _ => message,
    }
}
