//! Tracing set-up: human-readable events on standard error, filtered like `RUST_LOG`.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::ParseError;

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter (the value of `RUST_LOG`) does not parse.
    // `ParseError` displays its own cause and also returns it as `source()`, so it is
    // shown here rather than chained, or a report would print the cause twice.
    #[error("invalid log filter {value:?} (RUST_LOG): {reason}")]
    Filter {
        /// The filter as given.
        value: String,
        /// What the parser said.
        reason: ParseError,
    },
    /// A global subscriber was already installed.
    #[error("tracing is already set up")]
    AlreadySet(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The filter for `rust_log` (the value of `RUST_LOG`); `info` when it is unset or
/// empty. A filter that does not parse is an error rather than silently ignored.
pub fn env_filter(rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let value = rust_log.unwrap_or_default();
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(value)
        .map_err(|reason| TelemetryError::Filter {
            value: value.to_owned(),
            reason,
        })
}

/// Installs the global subscriber, writing to standard error.
pub fn init(rust_log: Option<&str>) -> Result<(), TelemetryError> {
    tracing_subscriber::fmt()
        .with_env_filter(env_filter(rust_log)?)
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(TelemetryError::AlreadySet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_empty_means_info() {
        for value in [None, Some("")] {
            let filter = env_filter(value).expect("the default filter parses");
            assert_eq!(filter.max_level_hint(), Some(LevelFilter::INFO));
        }
    }

    #[test]
    fn a_valid_filter_is_used() {
        let filter = env_filter(Some("berth_controller=debug,warn")).expect("valid");
        assert_eq!(filter.max_level_hint(), Some(LevelFilter::DEBUG));
    }

    #[test]
    fn an_invalid_filter_is_an_error_naming_the_value() {
        let err = env_filter(Some("berth=loud")).expect_err("not a level");
        let message = err.to_string();
        assert!(
            message.starts_with(r#"invalid log filter "berth=loud" (RUST_LOG): "#),
            "{message}"
        );
    }
}
