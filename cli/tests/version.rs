//! The `berth` binary, run as a user would.

use std::fs::File;
use std::process::{Command, Output, Stdio};

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        // No cluster: `version` prints the client's version only.
        .env("BERTH_CONFIG", "/nonexistent/berth/config")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8 output")
}

#[test]
fn version_prints_one_line() {
    let output = berth(&["version"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!("berth {} (api v1)\n", env!("CARGO_PKG_VERSION"))
    );
    assert!(output.stderr.is_empty());
}

#[test]
fn version_as_json_parses() {
    let output = berth(&["version", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    let client = &json["client"];
    assert_eq!(client["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(client["api_version"], "v1");
    assert!(
        client["git_commit"].as_str().is_some_and(|c| !c.is_empty()),
        "{json}"
    );
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let output = berth(&["launch"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: unrecognized subcommand 'launch'"),
        "{stderr}"
    );
}

#[test]
fn no_subcommand_is_a_usage_error() {
    let output = berth(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("Usage: berth"));
}

#[test]
fn an_unknown_output_format_is_a_usage_error() {
    let output = berth(&["version", "-o", "xml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("invalid value 'xml'"));
}

#[test]
fn help_succeeds_on_stdout() {
    let output = berth(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).contains("version"));
    assert!(output.stderr.is_empty());
}

/// `/dev/full` fails every write with ENOSPC: the error path, end to end.
#[test]
fn an_unwritable_stdout_is_an_error_not_a_panic() {
    let full = File::options()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full exists on Linux");
    let output = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["version", "--client"])
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr,
        "error: cannot write the output: No space left on device (os error 28)\n"
    );
}
