//! `env_file` contents: `KEY=VALUE` lines, as Compose reads them.
//!
//! Blank lines and lines starting with `#` are skipped; `export ` before a key is allowed;
//! a value in double quotes may hold `\n`, `\"` and `\\` escapes, one in single quotes is
//! taken as it is, an unquoted one ends at ` #` (a comment) and is trimmed. A line with a
//! key and no `=` takes the variable from the environment (`None` here).

/// Why an env file line cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct EnvFileError {
    /// 1-based line in the env file.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// One `KEY=VALUE` (`None`: take it from the environment).
pub type EnvEntry = (String, Option<String>);

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && !k
            .chars()
            .any(|c| c.is_whitespace() || c == '=' || c == '\0')
}

/// Parses an env file's text.
pub fn parse_env_file(text: &str) -> Result<Vec<EnvEntry>, EnvFileError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: String| EnvFileError {
            line: i + 1,
            reason,
        };
        let t = line.trim_start_matches('\u{feff}').trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let t = t.strip_prefix("export ").map_or(t, str::trim_start);
        let Some((key, raw)) = t.split_once('=') else {
            if !valid_key(t) {
                return Err(bad(format!("`{t}` is not KEY=VALUE")));
            }
            out.push((t.to_owned(), None));
            continue;
        };
        let key = key.trim();
        if !valid_key(key) {
            return Err(bad(format!("`{key}` is not a variable name")));
        }
        let raw = raw.trim_start();
        let value = if let Some(body) = raw.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = body.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => v.push('\n'),
                        Some('t') => v.push('\t'),
                        Some(c @ ('"' | '\\' | '$')) => v.push(c),
                        Some(c) => {
                            v.push('\\');
                            v.push(c);
                        }
                        None => v.push('\\'),
                    },
                    c => v.push(c),
                }
            }
            if !closed {
                return Err(bad(format!("the value of `{key}` has no closing \"")));
            }
            v
        } else if let Some(body) = raw.strip_prefix('\'') {
            match body.split_once('\'') {
                Some((v, _)) => v.to_owned(),
                None => return Err(bad(format!("the value of `{key}` has no closing '"))),
            }
        } else {
            let v = match raw.find(" #") {
                Some(i) => &raw[..i],
                None => raw,
            };
            v.trim().to_owned()
        };
        out.push((key.to_owned(), Some(value)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_quotes() {
        let text = "# comment\n\nA=1\nexport B = two words \nC=\"x \\\"y\\\"\\nz\" # c\nD='$raw # kept'\nE=v # comment\nF\nG=\n";
        let got = parse_env_file(text).expect("valid");
        let want: Vec<EnvEntry> = vec![
            ("A".into(), Some("1".into())),
            ("B".into(), Some("two words".into())),
            ("C".into(), Some("x \"y\"\nz".into())),
            ("D".into(), Some("$raw # kept".into())),
            ("E".into(), Some("v".into())),
            ("F".into(), None),
            ("G".into(), Some(String::new())),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn bad_lines_name_their_number() {
        assert_eq!(parse_env_file("A=1\nnot a key\n").expect_err("bad").line, 2);
        assert_eq!(parse_env_file("A=\"open\n").expect_err("bad").line, 1);
        assert_eq!(parse_env_file("=x\n").expect_err("bad").line, 1);
    }
}
