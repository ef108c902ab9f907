//! Rendering a command's result for a human (text) or a program (JSON).

use serde::Serialize;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One pretty-printed JSON document.
    Json,
}

/// Why a result could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The value could not be encoded as JSON.
    #[error("cannot encode the result as JSON")]
    Json(#[source] serde_json::Error),
}

/// `value` as a pretty-printed JSON document, ending with a newline.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, OutputError> {
    let mut text = serde_json::to_string_pretty(value).map_err(OutputError::Json)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_and_ends_with_a_newline() {
        #[derive(Serialize)]
        struct Sample {
            name: &'static str,
        }
        assert_eq!(
            to_json(&Sample { name: "web" }).expect("encodes"),
            "{\n  \"name\": \"web\"\n}\n"
        );
    }
}
