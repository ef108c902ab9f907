//! `${VAR}` interpolation, as Compose does it, in every string value:
//!
//! | form | gives |
//! |---|---|
//! | `$VAR`, `${VAR}` | the variable; an unset one gives `""` and a warning |
//! | `${VAR:-default}` | `default` when unset or empty |
//! | `${VAR-default}` | `default` when unset |
//! | `${VAR:?message}` | an error with `message` when unset or empty |
//! | `${VAR?message}` | an error with `message` when unset |
//! | `${VAR:+other}` | `other` when set and not empty, else `""` |
//! | `${VAR+other}` | `other` when set, else `""` |
//! | `$$` | a literal `$` |
//!
//! Defaults and messages may themselves hold `${...}`. Any other `$` is an error, as in
//! Compose.

use std::collections::BTreeMap;

/// Why a string cannot be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// `${VAR:?message}` or `${VAR?message}` with the variable missing.
    #[error("required variable `{var}` is {}: {message}", if *.empty { "empty" } else { "not set" })]
    Required {
        /// The variable.
        var: String,
        /// Its message (may be empty).
        message: String,
        /// Set but empty (with `:?`).
        empty: bool,
    },
    /// A `$` followed by neither `$`, `{` nor a variable name.
    #[error("invalid interpolation at `{rest}`")]
    Invalid {
        /// The text from the bad `$` on.
        rest: String,
    },
    /// `${` without its `}`.
    #[error("`${{` is not closed in `{text}`")]
    Unclosed {
        /// The text.
        text: String,
    },
}

/// The outcome: the new string and the variables that were used but not set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interpolated {
    /// The string with every variable replaced.
    pub text: String,
    /// Variables read but not set (in order, each once), that gave `""`.
    pub unset: Vec<String>,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Interpolates `s` with the variables of `env`.
pub fn interpolate(
    s: &str,
    env: &BTreeMap<String, String>,
) -> Result<Interpolated, InterpolateError> {
    let mut out = Interpolated::default();
    expand(s, env, &mut out, 0)?;
    Ok(out)
}

const MAX_DEPTH: usize = 32;

fn note_unset(out: &mut Interpolated, var: &str) {
    if !out.unset.iter().any(|v| v == var) {
        out.unset.push(var.to_owned());
    }
}

fn expand(
    s: &str,
    env: &BTreeMap<String, String>,
    out: &mut Interpolated,
    depth: usize,
) -> Result<(), InterpolateError> {
    if depth > MAX_DEPTH {
        return Err(InterpolateError::Invalid { rest: s.to_owned() });
    }
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let mut chars = after.chars();
        match chars.next() {
            Some('$') => {
                out.text.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let body_start = &after[1..];
                let end = closing_brace(body_start)
                    .ok_or_else(|| InterpolateError::Unclosed { text: s.to_owned() })?;
                braced(&body_start[..end], env, out, depth)?;
                rest = &body_start[end + 1..];
            }
            Some(c) if is_name_start(c) => {
                let len = after
                    .find(|c: char| !is_name_char(c))
                    .unwrap_or(after.len());
                let var = &after[..len];
                match env.get(var) {
                    Some(v) => out.text.push_str(v),
                    None => note_unset(out, var),
                }
                rest = &after[len..];
            }
            _ => {
                return Err(InterpolateError::Invalid {
                    rest: rest[i..].to_owned(),
                });
            }
        }
    }
    out.text.push_str(rest);
    Ok(())
}

/// The index of the `}` that closes a `${` whose body starts `s`, counting nested `${`.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut prev_dollar = false;
    for (i, c) in s.char_indices() {
        match c {
            '{' if prev_dollar => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
        prev_dollar = c == '$' && !prev_dollar;
    }
    None
}

fn braced(
    body: &str,
    env: &BTreeMap<String, String>,
    out: &mut Interpolated,
    depth: usize,
) -> Result<(), InterpolateError> {
    let name_len = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
    let var = &body[..name_len];
    let op = &body[name_len..];
    if var.is_empty() || !var.starts_with(is_name_start) {
        return Err(InterpolateError::Invalid {
            rest: format!("${{{body}}}"),
        });
    }
    let value = env.get(var);
    let set_and_nonempty = value.is_some_and(|v| !v.is_empty());
    // (operator, whether the variable counts as present for it)
    let (arg, present, kind) = if let Some(a) = op.strip_prefix(":-") {
        (a, set_and_nonempty, '-')
    } else if let Some(a) = op.strip_prefix(":?") {
        (a, set_and_nonempty, '?')
    } else if let Some(a) = op.strip_prefix(":+") {
        (a, set_and_nonempty, '+')
    } else if let Some(a) = op.strip_prefix('-') {
        (a, value.is_some(), '-')
    } else if let Some(a) = op.strip_prefix('?') {
        (a, value.is_some(), '?')
    } else if let Some(a) = op.strip_prefix('+') {
        (a, value.is_some(), '+')
    } else if op.is_empty() {
        match value {
            Some(v) => out.text.push_str(v),
            None => note_unset(out, var),
        }
        return Ok(());
    } else {
        return Err(InterpolateError::Invalid {
            rest: format!("${{{body}}}"),
        });
    };
    match (kind, present) {
        ('-', true) | ('?', true) => out.text.push_str(value.map_or("", String::as_str)),
        ('-', false) | ('+', true) => expand(arg, env, out, depth + 1)?,
        ('+', false) => {}
        _ => {
            let mut msg = Interpolated::default();
            expand(arg, env, &mut msg, depth + 1)?;
            return Err(InterpolateError::Required {
                var: var.to_owned(),
                message: msg.text,
                empty: value.is_some(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("TAG", "1.2"), ("EMPTY", ""), ("PORT", "8080")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn ok(s: &str) -> String {
        interpolate(s, &env()).expect("interpolates").text
    }

    #[test]
    fn plain_and_braced_variables() {
        assert_eq!(ok("img:$TAG"), "img:1.2");
        assert_eq!(ok("img:${TAG}-x"), "img:1.2-x");
        assert_eq!(ok("$PORT:80"), "8080:80");
        assert_eq!(ok("no vars"), "no vars");
        assert_eq!(ok(""), "");
    }

    #[test]
    fn defaults_with_and_without_colon() {
        assert_eq!(ok("${NOPE:-d}"), "d");
        assert_eq!(ok("${EMPTY:-d}"), "d");
        assert_eq!(ok("${EMPTY-d}"), "");
        assert_eq!(ok("${NOPE-d}"), "d");
        assert_eq!(ok("${TAG:-d}"), "1.2");
        assert_eq!(ok("${NOPE:-}"), "");
        assert_eq!(ok("${NOPE:-${TAG}}"), "1.2");
        assert_eq!(ok("${NOPE:-a ${NOPE2:-b} c}"), "a b c");
    }

    #[test]
    fn alternatives() {
        assert_eq!(ok("${TAG:+yes}"), "yes");
        assert_eq!(ok("${EMPTY:+yes}"), "");
        assert_eq!(ok("${EMPTY+yes}"), "yes");
        assert_eq!(ok("${NOPE+yes}"), "");
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(ok("echo $$HOME"), "echo $HOME");
        assert_eq!(ok("$$$$"), "$$");
        assert_eq!(ok("$${TAG}"), "${TAG}");
    }

    #[test]
    fn unset_variables_give_empty_and_are_reported_once() {
        let r = interpolate("$A-${A}-${B}", &env()).expect("interpolates");
        assert_eq!(r.text, "--");
        assert_eq!(r.unset, ["A", "B"]);
        // A default means it is not reported.
        assert!(interpolate("${A:-x}", &env()).expect("ok").unset.is_empty());
    }

    #[test]
    fn required_variables() {
        assert_eq!(
            interpolate("${DB_PASSWORD:?set the password}", &env()),
            Err(InterpolateError::Required {
                var: "DB_PASSWORD".into(),
                message: "set the password".into(),
                empty: false
            })
        );
        assert!(matches!(
            interpolate("${EMPTY:?x}", &env()),
            Err(InterpolateError::Required { empty: true, .. })
        ));
        assert_eq!(ok("${EMPTY?x}"), "");
        assert_eq!(ok("${TAG:?x}"), "1.2");
    }

    #[test]
    fn bad_dollars_are_errors() {
        for s in ["echo $1", "cost $", "${}", "${1A}", "${A!}", "$ x"] {
            assert!(
                matches!(
                    interpolate(s, &env()),
                    Err(InterpolateError::Invalid { .. })
                ),
                "{s}"
            );
        }
        assert!(matches!(
            interpolate("${TAG", &env()),
            Err(InterpolateError::Unclosed { .. })
        ));
        assert!(matches!(
            interpolate("${A:-${B}", &env()),
            Err(InterpolateError::Unclosed { .. })
        ));
    }

    #[test]
    fn non_ascii_text_is_kept() {
        assert_eq!(ok("héllo ${TAG} wörld"), "héllo 1.2 wörld");
    }
}
