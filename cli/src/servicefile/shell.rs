//! Splitting a `command:` or `entrypoint:` string into words, as Compose does (POSIX shell
//! quoting, no expansion): `sh -c 'echo "hi there"'` is `["sh", "-c", "echo \"hi there\""]`.

/// Why a string cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A `'` or `"` without its closing quote.
    #[error("the {0} quote is not closed")]
    Unclosed(&'static str),
    /// A `\` at the very end.
    #[error("it ends with a lone backslash")]
    TrailingBackslash,
}

/// Splits `s` into words.
pub fn split(s: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SplitError::Unclosed("single")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SplitError::Unclosed("double")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(SplitError::Unclosed("double")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err(SplitError::TrailingBackslash),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<String> {
        split(s).expect(s)
    }

    #[test]
    fn words_and_quotes() {
        assert_eq!(ok("python app.py"), ["python", "app.py"]);
        assert_eq!(ok("  a   b\tc\n"), ["a", "b", "c"]);
        assert_eq!(
            ok(r#"sh -c 'echo "hi there"'"#),
            ["sh", "-c", "echo \"hi there\""]
        );
        assert_eq!(ok(r#"echo "a \"b\" \n""#), ["echo", "a \"b\" \\n"]);
        assert_eq!(ok(r"a\ b"), ["a b"]);
        assert_eq!(ok("''"), [""]);
        assert_eq!(ok("x''y"), ["xy"]);
        assert!(ok("").is_empty());
    }

    #[test]
    fn unclosed_quotes_are_errors() {
        assert_eq!(split("echo 'hi"), Err(SplitError::Unclosed("single")));
        assert_eq!(split("echo \"hi"), Err(SplitError::Unclosed("double")));
        assert_eq!(split("echo \\"), Err(SplitError::TrailingBackslash));
    }
}
