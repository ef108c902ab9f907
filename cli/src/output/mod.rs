//! Rendering a command's result for a human (aligned tables, text) or a program (JSON,
//! YAML). The renderers are pure functions of the data, tested against golden files
//! (`cli/tests/golden/`, rewritten with `BLESS=1`).

pub mod model;
pub mod nodes;
pub mod rollout;
pub mod services;
pub mod table;
pub mod tasks;
pub mod time;

#[cfg(test)]
pub(crate) mod golden;

use serde::Serialize;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text: an aligned table or a summary.
    #[value(alias = "table")]
    Text,
    /// JSON (one pretty-printed document; `events`: one object per line).
    Json,
    /// YAML.
    Yaml,
}

/// Why a result could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The value could not be encoded as JSON.
    #[error("cannot encode the result as JSON")]
    Json(#[source] serde_json::Error),
    /// The value could not be encoded as YAML.
    #[error("cannot encode the result as YAML: {0}")]
    Yaml(String),
}

/// `value` as a pretty-printed JSON document, ending with a newline.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, OutputError> {
    let mut text = serde_json::to_string_pretty(value).map_err(OutputError::Json)?;
    text.push('\n');
    Ok(text)
}

/// `value` as one line of JSON, ending with a newline.
pub fn to_json_line<T: Serialize + ?Sized>(value: &T) -> Result<String, OutputError> {
    let mut text = serde_json::to_string(value).map_err(OutputError::Json)?;
    text.push('\n');
    Ok(text)
}

/// `value` as a YAML document, ending with a newline.
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, OutputError> {
    let mut text = serde_saphyr::to_string(value).map_err(|e| OutputError::Yaml(e.to_string()))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// `value` as JSON or YAML; `text` for the text format.
pub fn render<T: Serialize>(
    format: OutputFormat,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<String, OutputError> {
    match format {
        OutputFormat::Text => Ok(text()),
        OutputFormat::Json => to_json(value),
        OutputFormat::Yaml => to_yaml(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Sample {
        name: &'static str,
    }

    #[test]
    fn json_is_pretty_and_ends_with_a_newline() {
        assert_eq!(
            to_json(&Sample { name: "web" }).expect("encodes"),
            "{\n  \"name\": \"web\"\n}\n"
        );
    }

    #[test]
    fn yaml_ends_with_a_newline() {
        assert_eq!(
            to_yaml(&Sample { name: "web" }).expect("encodes"),
            "name: web\n"
        );
    }
}
