//! The `berth` binary without a cluster: contexts in a configuration file of the test's
//! own (`BERTH_CONFIG`), and the errors a user meets before anything is sent.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("berth-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        Dir(d)
    }

    fn config(&self) -> PathBuf {
        self.0.join("config")
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.berth_with_stdin(args, "")
    }

    fn berth_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .env("BERTH_CONFIG", self.config())
            .env_remove("BERTH_CONTEXT")
            .env_remove("BERTH_ADDR")
            .env("NO_COLOR", "1")
            .current_dir(&self.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("the binary ends")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn add(dir: &Dir, name: &str, endpoint: &str) -> Output {
    dir.berth(&[
        "context",
        "add",
        name,
        "--endpoint",
        endpoint,
        "--ca",
        "ca.pem",
        "--cert",
        "admin.pem",
        "--key",
        "admin.key",
    ])
}

#[test]
fn contexts_are_added_listed_chosen_and_removed() {
    let dir = Dir::new("contexts");
    let out = add(&dir, "prod", "10.0.0.1:7443");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "context prod: added (current)\n");
    assert_eq!(add(&dir, "lab", "10.1.0.1:7443").status.code(), Some(0));

    let out = dir.berth(&["context", "ls"]);
    let ls = text(&out.stdout);
    let lines: Vec<&str> = ls.lines().collect();
    assert!(lines[0].starts_with("CURRENT   NAME   ENDPOINTS"), "{ls}");
    assert!(
        lines[1].starts_with("          lab    10.1.0.1:7443"),
        "{ls}"
    );
    assert!(
        lines[2].starts_with("*         prod   10.0.0.1:7443"),
        "{ls}"
    );
    // Paths are stored absolute.
    let json: serde_json::Value =
        serde_json::from_slice(&dir.berth(&["context", "ls", "-o", "json"]).stdout).expect("JSON");
    assert_eq!(
        json[0]["cert"],
        dir.0.join("admin.pem").to_str().expect("utf8")
    );

    assert_eq!(dir.berth(&["context", "use", "lab"]).status.code(), Some(0));
    let config = std::fs::read_to_string(dir.config()).expect("the config file");
    assert!(config.contains("current: lab"), "{config}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.config()).expect("stat").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let out = dir.berth(&["context", "use", "staging"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("there is no context `staging`")
            && text(&out.stderr).contains("lab, prod"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(dir.berth(&["context", "rm", "lab"]).status.code(), Some(0));
    let out = dir.berth(&["ls"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: no context is chosen"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn missing_certificates_say_which_file() {
    let dir = Dir::new("certs");
    add(&dir, "prod", "10.0.0.1:7443");
    let out = dir.berth(&["ls"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot read the CA certificate ")
            && stderr.contains("of context `prod`"),
        "{stderr}"
    );
}

#[test]
fn a_bad_service_file_fails_before_connecting() {
    let dir = Dir::new("badfile");
    let out = dir.berth_with_stdin(
        &["apply", "-f", "-"],
        "services:\n  web:\n    image: busybox\n    deploy:\n      replcas: 2\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("did you mean `replicas`?")
            && stderr.contains("nothing was sent to the cluster"),
        "{stderr}"
    );
}

#[test]
fn diff_errors_exit_2() {
    let dir = Dir::new("diff");
    let out = dir.berth(&["diff", "-f", "missing.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: cannot read the service file missing.yaml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    let dir = Dir::new("pipe");
    add(&dir, "a", "10.0.0.1:7443");
    add(&dir, "b", "10.0.0.2:7443");
    // A pipe whose reader is gone before berth writes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["context", "ls"])
        .env("BERTH_CONFIG", dir.config())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("ends");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}
