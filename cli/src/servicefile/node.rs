//! A YAML document as a tree of nodes that each know where they came from (file, byte
//! span, line and column), so that every later check can point at the offending text.
//!
//! serde-saphyr parses; its [`Spanned`] wrapper gives each node's location. Aliases and
//! merge keys (`<<: *base`) are expanded by serde-saphyr; their nodes point at the
//! anchored definition, where the text is.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::options::DuplicateKeyPolicy;
use serde_saphyr::{Location, Spanned};

/// Where a node is: which source, its byte span, and its 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct At {
    pub src: usize,
    pub offset: usize,
    pub len: usize,
    pub line: u32,
    pub column: u32,
}

/// A YAML value with its location.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub at: At,
}

/// A YAML value. Scalars that are not strings keep their source text (`1.10` stays
/// `1.10` when used as a string).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool, String),
    Int(i128, String),
    Float(f64, String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// The YAML type's name, for "expected a string, found a list".
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(..) => "a boolean",
            Value::Int(..) => "an integer",
            Value::Float(..) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// A scalar's text: the string itself, or the source text of a number or boolean.
    pub fn scalar_text(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            Value::Bool(_, raw) | Value::Int(_, raw) | Value::Float(_, raw) => Some(raw),
            _ => None,
        }
    }

    /// A mapping's entries.
    #[cfg(test)]
    pub fn entries(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// A mapping key's name (a non-string key by its source text).
    pub fn key_name(&self) -> String {
        match &self.value {
            Value::Null => "null".to_owned(),
            v => self
                .scalar_text()
                .map_or_else(|| v.type_name().to_owned(), str::to_owned),
        }
    }
}

/// What serde-saphyr gives back before locations are resolved.
enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                Raw::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Raw, E> {
                Ok(Raw::Int(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Raw, E> {
                Ok(Raw::Int(n.into()))
            }
            fn visit_i128<E>(self, n: i128) -> Result<Raw, E> {
                Ok(Raw::Int(n))
            }
            fn visit_u128<E: de::Error>(self, n: u128) -> Result<Raw, E> {
                Ok(i128::try_from(n).map_or(Raw::Float(n as f64), Raw::Int))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Raw, E> {
                Ok(Raw::Float(n))
            }
            fn visit_str<E>(self, s: &str) -> Result<Raw, E> {
                Ok(Raw::Str(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Raw, E> {
                Ok(Raw::Str(s))
            }
            fn visit_bytes<E>(self, b: &[u8]) -> Result<Raw, E> {
                Ok(Raw::Str(String::from_utf8_lossy(b).into_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element::<Spanned<Raw>>()? {
                    items.push(item);
                }
                Ok(Raw::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = a.next_key::<Spanned<Raw>>()? {
                    let v = a.next_value::<Spanned<Raw>>()?;
                    entries.push((k, v));
                }
                Ok(Raw::Map(entries))
            }
        }
        d.deserialize_any(Any)
    }
}

/// A YAML syntax error, located.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError {
    pub message: String,
    pub at: At,
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::Error,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
    }
}

/// Byte offset of the `column`-th character (1-based) of 1-based `line` in `text`.
fn byte_offset_of(text: &str, line: u64, column: u64) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let skip = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
            return offset
                + l.char_indices()
                    .nth(skip)
                    .map_or(l.trim_end_matches('\n').len(), |(b, _)| b);
        }
        offset += l.len();
    }
    text.len()
}

fn at_of(loc: &Location, src: usize, text: &str) -> At {
    let span = loc.span();
    let line = u32::try_from(loc.line()).unwrap_or(u32::MAX);
    let column = u32::try_from(loc.column()).unwrap_or(u32::MAX);
    let (offset, len) = match (span.byte_offset(), span.byte_len()) {
        (Some(o), Some(l)) => (
            usize::try_from(o).unwrap_or(text.len()),
            usize::try_from(l).unwrap_or(0),
        ),
        _ => (byte_offset_of(text, loc.line(), loc.column()), 0),
    };
    let offset = offset.min(text.len());
    let len =
        if text.is_char_boundary(offset) && text.is_char_boundary((offset + len).min(text.len())) {
            len.min(text.len() - offset)
        } else {
            0
        };
    At {
        src,
        offset,
        len,
        line,
        column,
    }
}

fn convert(raw: Spanned<Raw>, src: usize, text: &str) -> Node {
    let at = at_of(&raw.defined, src, text);
    let source = || {
        text.get(at.offset..at.offset + at.len)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    // The source text of a plain scalar (not quoted, tagged or an alias): what the user
    // wrote, `0x1F` or `1.10`.
    let plain = || {
        source().filter(|s| {
            !s.starts_with(['"', '\'', '*', '&', '!', '|', '>']) && !s.contains(['\n', '#'])
        })
    };
    let value = match raw.value {
        Raw::Null => Value::Null,
        Raw::Bool(b) => Value::Bool(b, plain().unwrap_or_else(|| b.to_string())),
        Raw::Int(n) => Value::Int(n, plain().unwrap_or_else(|| n.to_string())),
        Raw::Float(n) => Value::Float(n, plain().unwrap_or_else(|| n.to_string())),
        Raw::Str(s) => Value::Str(s),
        Raw::Seq(items) => Value::Seq(items.into_iter().map(|i| convert(i, src, text)).collect()),
        Raw::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (convert(k, src, text), convert(v, src, text)))
                .collect(),
        ),
    };
    Node { value, at }
}

/// Parses `text` (source number `src`) into a node tree.
pub(crate) fn parse_yaml(text: &str, src: usize) -> Result<Node, SyntaxError> {
    match serde_saphyr::from_str_with_options::<Option<Spanned<Raw>>>(text, options()) {
        Ok(Some(root)) => Ok(convert(root, src, text)),
        Ok(None) => Ok(Node {
            value: Value::Null,
            at: At {
                src,
                line: 1,
                column: 1,
                ..At::default()
            },
        }),
        Err(e) => {
            let at = e.location().map_or(
                At {
                    src,
                    line: 1,
                    column: 1,
                    ..At::default()
                },
                |loc| {
                    let mut at = at_of(&loc, src, text);
                    if at.len == 0 {
                        // Point at one character, so the snippet shows where.
                        at.len = text
                            .get(at.offset..)
                            .and_then(|t| t.chars().next())
                            .filter(|c| *c != '\n')
                            .map_or(0, char::len_utf8);
                    }
                    at
                },
            );
            let message = e.without_snippet().to_string();
            let message = if message.contains("multiple YAML documents") {
                "a service file holds one YAML document (no `---` between services); split it into files and give each with its own -f".to_owned()
            } else {
                message
            };
            Err(SyntaxError { message, at })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(n: &Node) -> Vec<(String, &Node)> {
        n.entries()
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| (k.key_name(), v))
            .collect()
    }

    #[test]
    fn nodes_know_their_line_column_and_text() {
        let text = "services:\n  web:\n    replicas: 70000\n    env: 1.10\n";
        let root = parse_yaml(text, 0).expect("valid");
        let services = map(&root);
        let web = map(services[0].1);
        let body = map(web[0].1);
        let replicas = body[0].1;
        assert_eq!(replicas.value, Value::Int(70000, "70000".into()));
        assert_eq!((replicas.at.line, replicas.at.column), (3, 15));
        assert_eq!(&text[replicas.at.offset..][..replicas.at.len], "70000");
        assert_eq!(body[1].1.scalar_text(), Some("1.10"));
        let root = parse_yaml("a: 0x1F\nb: !!int 7\nc: 1e3 # n\n", 0).expect("valid");
        let m = map(&root);
        assert_eq!(m[0].1.scalar_text(), Some("0x1F"));
        assert_eq!(m[1].1.scalar_text(), Some("7"));
        assert_eq!(m[2].1.scalar_text(), Some("1e3"));
    }

    #[test]
    fn yaml_1_1_booleans_are_strings_and_leading_zeros_too() {
        let root = parse_yaml("a: yes\nb: n\nc: 0755\nd: true\n", 0).expect("valid");
        let m = map(&root);
        assert_eq!(m[0].1.value, Value::Str("yes".into()));
        assert_eq!(m[1].1.value, Value::Str("n".into()));
        assert_eq!(m[2].1.value, Value::Str("0755".into()));
        assert!(matches!(m[3].1.value, Value::Bool(true, _)));
    }

    #[test]
    fn an_empty_document_is_null() {
        assert_eq!(parse_yaml("", 0).expect("valid").value, Value::Null);
        assert_eq!(
            parse_yaml("# nothing\n", 0).expect("valid").value,
            Value::Null
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse_yaml("services:\n  web: [1, 2\n", 0).expect_err("invalid");
        assert!(e.at.line >= 2, "{e:?}");
        let e = parse_yaml("a: 1\na: 2\n", 0).expect_err("duplicate");
        assert_eq!(e.at.line, 2, "{e:?}");
        let e = parse_yaml("a: 1\n---\nb: 2\n", 0).expect_err("two documents");
        assert!(e.message.contains("one YAML document"), "{e:?}");
        assert_eq!(e.at.line, 3, "{e:?}");
    }

    #[test]
    fn merge_keys_point_at_the_anchored_text() {
        let text = "x: &b\n  image: busybox\ny:\n  <<: *b\n";
        let root = parse_yaml(text, 0).expect("valid");
        let m = map(&root);
        let y = map(m[1].1);
        assert_eq!(y[0].0, "image");
        assert_eq!(&text[y[0].1.at.offset..][..y[0].1.at.len], "busybox");
    }
}
