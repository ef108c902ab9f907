//! The `berth-controller` binary, run as a user would.

use std::process::Command;

fn controller(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth-controller"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

#[test]
fn version_prints_the_version_and_api() {
    let output = controller(&["version"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("berth-controller {} (api v1)\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let output = controller(&["serve"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unrecognized subcommand"));
}

#[test]
fn an_invalid_rust_log_is_reported_not_ignored() {
    let output = Command::new(env!("CARGO_BIN_EXE_berth-controller"))
        .arg("version")
        .env("RUST_LOG", "berth=loud")
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            r#"error: cannot set up logging: invalid log filter "berth=loud" (RUST_LOG)"#
        ),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
