//! The state of one parse: the sources, the environment, the file reader, and the
//! findings so far; with typed getters that record an error (with the node's location) and
//! return `None` when a value has the wrong type.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use miette::SourceSpan;

use super::ReadFile;
use super::diag::{Finding, Kind, Severity, SourceText};
use super::duration::{DURATION_FORMS, parse_duration};
use super::keys::{Level, Policy};
use super::node::{At, Node, Value};
use super::size::{SIZE_FORMS, parse_size};

pub(crate) struct Ctx<'a> {
    pub sources: Vec<SourceText>,
    /// The directory relative paths in each source are resolved against.
    pub dirs: Vec<PathBuf>,
    pub env: &'a BTreeMap<String, String>,
    pub files: &'a dyn ReadFile,
    pub findings: Vec<Finding>,
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

impl Ctx<'_> {
    fn text(&self, src: usize) -> &str {
        self.sources.get(src).map_or("", |s| s.inner().as_ref())
    }

    /// `at` narrowed to the first occurrence of `needle` inside it, when there is one.
    pub fn narrow(&self, at: At, needle: &str) -> At {
        let text = self.text(at.src);
        let Some(slice) = text.get(at.offset..at.offset + at.len) else {
            return at;
        };
        match slice.find(needle) {
            Some(i) if !needle.is_empty() => {
                let offset = at.offset + i;
                let (line, column) = line_col(text, offset);
                At {
                    src: at.src,
                    offset,
                    len: needle.len(),
                    line,
                    column,
                }
            }
            _ => at,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        severity: Severity,
        kind: Kind,
        at: At,
        key: &str,
        message: String,
        label: &str,
        help: Option<String>,
    ) {
        let source = self.sources.get(at.src).cloned();
        let file = source
            .as_ref()
            .map_or_else(String::new, |s| s.name().to_owned());
        self.findings.push(Finding {
            severity,
            kind,
            file,
            line: at.line,
            column: at.column,
            key: key.to_owned(),
            message,
            label: label.to_owned(),
            help,
            source,
            span: SourceSpan::new(at.offset.into(), at.len),
            order: (at.src, at.offset),
        });
    }

    /// Records an error at `at`.
    pub fn error(
        &mut self,
        kind: Kind,
        at: At,
        key: &str,
        message: impl Into<String>,
        label: &str,
        help: Option<String>,
    ) {
        self.push(Severity::Error, kind, at, key, message.into(), label, help);
    }

    /// Records a warning at `at`.
    pub fn warn(
        &mut self,
        kind: Kind,
        at: At,
        key: &str,
        message: impl Into<String>,
        label: &str,
        help: Option<String>,
    ) {
        self.push(
            Severity::Warning,
            kind,
            at,
            key,
            message.into(),
            label,
            help,
        );
    }

    /// Records that `node` (at `key`) is not `expected`.
    pub fn type_error(&mut self, node: &Node, key: &str, expected: &str) {
        let found = node.value.type_name();
        let shown = node
            .scalar_text()
            .map_or_else(String::new, |t| format!(" `{}`", shorten(t)));
        self.error(
            Kind::Type,
            node.at,
            key,
            format!("`{key}` must be {expected}, not {found}{shown}"),
            &format!("expected {expected}"),
            None,
        );
    }

    /// Handles a key a level does not read: `x-` extensions are skipped, Compose keys berth
    /// does not support are warned about or refused as the level says, anything else is an
    /// unknown key with the nearest known one suggested.
    pub fn other_key(&mut self, level: &Level, key: &Node, path: &str) {
        let name = key.key_name();
        if name.starts_with("x-") {
            return;
        }
        match level.policy(&name) {
            Some(Policy::Warn(hint)) => self.warn(
                Kind::Unsupported,
                key.at,
                path,
                format!("`{name}` is not supported by berth and is ignored"),
                "not supported",
                Some(hint.to_owned()),
            ),
            Some(Policy::Refuse(hint)) => self.error(
                Kind::Unsupported,
                key.at,
                path,
                format!("`{name}` cannot be honoured by berth"),
                "not supported",
                Some(hint.to_owned()),
            ),
            None => {
                let parent = path.rsplit_once('.').map_or("", |(p, _)| p);
                let place = if parent.is_empty() {
                    "the file".to_owned()
                } else {
                    format!("`{parent}`")
                };
                let (message, help) = match level.suggest(&name) {
                    Some(s) => (
                        format!("unknown key `{name}` in {place}; did you mean `{s}`?"),
                        format!("did you mean `{s}`?"),
                    ),
                    None => (
                        format!("unknown key `{name}` in {place}"),
                        format!(
                            "the keys of {} are: {}",
                            level.name,
                            level.supported.join(", ")
                        ),
                    ),
                };
                self.error(
                    Kind::UnknownKey,
                    key.at,
                    path,
                    message,
                    "unknown key",
                    Some(help),
                );
            }
        }
    }

    /// A mapping's entries, or a type error.
    pub fn map<'n>(&mut self, node: &'n Node, key: &str) -> Option<&'n [(Node, Node)]> {
        match &node.value {
            Value::Map(m) => Some(m),
            _ => {
                self.type_error(node, key, "a mapping");
                None
            }
        }
    }

    /// A list's items, or a type error.
    pub fn seq<'n>(&mut self, node: &'n Node, key: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(s) => Some(s),
            _ => {
                self.type_error(node, key, "a list");
                None
            }
        }
    }

    /// A scalar as a string (numbers and booleans by their text), or a type error.
    pub fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        match node.scalar_text() {
            Some(t) => Some(t.to_owned()),
            None => {
                self.type_error(node, key, "a string");
                None
            }
        }
    }

    /// An unsigned integer at most `max` (a string of digits counts: it may come from a
    /// variable), or an error.
    pub fn uint(&mut self, node: &Node, key: &str, max: u64) -> Option<u64> {
        let n = match &node.value {
            Value::Int(n, _) => Some(*n),
            Value::Str(s) => s.trim().parse::<i128>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (0..=i128::from(max)).contains(&n) => u64::try_from(n).ok(),
            Some(n) => {
                self.error(
                    Kind::Invalid,
                    node.at,
                    key,
                    format!("`{key}` is {n}, outside 0–{max}"),
                    "out of range",
                    None,
                );
                None
            }
            None => {
                self.type_error(node, key, "a whole number");
                None
            }
        }
    }

    /// A `u32`.
    pub fn u32(&mut self, node: &Node, key: &str) -> Option<u32> {
        self.uint(node, key, u64::from(u32::MAX))
            .and_then(|n| u32::try_from(n).ok())
    }

    /// A number (integer or decimal; a numeric string counts), or an error.
    pub fn float(&mut self, node: &Node, key: &str) -> Option<f64> {
        let n = match &node.value {
            Value::Int(n, _) => Some(*n as f64),
            Value::Float(f, _) => Some(*f),
            Value::Str(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n.is_finite() => Some(n),
            _ => {
                self.type_error(node, key, "a number");
                None
            }
        }
    }

    /// A boolean (`true`/`false`, also as a string from a variable), or an error.
    pub fn boolean(&mut self, node: &Node, key: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b, _) => Some(*b),
            Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => {
                self.type_error(node, key, "true or false");
                None
            }
        }
    }

    /// A duration (`1m30s`), or an error naming the accepted forms.
    pub fn duration(&mut self, node: &Node, key: &str) -> Option<Duration> {
        let text = self.string(node, key)?;
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    Kind::Duration,
                    node.at,
                    key,
                    format!("`{key}`: {e}"),
                    "not a duration",
                    Some(format!("write {DURATION_FORMS}")),
                );
                None
            }
        }
    }

    /// A size in bytes (`512m`), or an error naming the accepted forms.
    pub fn size(&mut self, node: &Node, key: &str) -> Option<u64> {
        let text = self.string(node, key)?;
        match parse_size(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    Kind::Size,
                    node.at,
                    key,
                    format!("`{key}`: {e}"),
                    "not a size",
                    Some(format!("write {SIZE_FORMS}")),
                );
                None
            }
        }
    }

    /// A string or a list of strings.
    pub fn string_or_list<'n>(
        &mut self,
        node: &'n Node,
        key: &str,
    ) -> Option<Vec<(String, &'n Node)>> {
        match &node.value {
            Value::Seq(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = self.string(item, &format!("{key}[{i}]")) {
                        out.push((s, item));
                    }
                }
                Some(out)
            }
            Value::Map(_) | Value::Null => {
                self.type_error(node, key, "a string or a list of strings");
                None
            }
            _ => self.string(node, key).map(|s| vec![(s, node)]),
        }
    }
}

/// `t` cut to 40 characters, for messages.
pub(crate) fn shorten(t: &str) -> String {
    let first_line = t.lines().next().unwrap_or("");
    if first_line.chars().count() > 40 || first_line.len() < t.len() {
        let cut: String = first_line.chars().take(40).collect();
        format!("{cut}…")
    } else {
        first_line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let t = "ab\ncé: x\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, t.find('x').unwrap_or(0)), (2, 5));
    }

    #[test]
    fn shorten_cuts_long_and_multi_line_text() {
        assert_eq!(shorten("short"), "short");
        assert_eq!(shorten("a\nb"), "a…");
        assert_eq!(shorten(&"x".repeat(50)).chars().count(), 41);
    }
}
