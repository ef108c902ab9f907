//! Compiles `berth/v1/*.proto` with protox (no system `protoc`) and generates the
//! prost messages and tonic clients and servers; stamps the git commit.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The folder of the protobuf include root; files are imported as `berth/v1/x.proto`.
const INCLUDE_DIR: &str = ".";
/// The folder holding the contract's `.proto` files.
const PROTO_DIR: &str = "berth/v1";
/// The build-time environment variable that carries the git commit into the crate.
const GIT_COMMIT_VAR: &str = "BERTH_GIT_COMMIT";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    let files = proto_files(Path::new(PROTO_DIR))?;
    let fds = protox::compile(&files, [INCLUDE_DIR])
        .map_err(|err| format!("cannot compile the .proto files: {err:?}"))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .map_err(|err| format!("cannot generate Rust code from the .proto files: {err}"))?;

    let commit = git_commit();
    println!("cargo:rustc-env={GIT_COMMIT_VAR}={commit}");
    Ok(())
}

/// Every `.proto` file in `dir`, sorted so that the generated code is stable.
fn proto_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|err| format!("cannot list {}: {err}", dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("no .proto file in {}", dir.display()));
    }
    Ok(files)
}

/// The commit to stamp: `$BERTH_GIT_COMMIT` when the build sets it (packaging from a
/// tarball), else `git rev-parse HEAD`, else "unknown".
fn git_commit() -> String {
    println!("cargo:rerun-if-env-changed={GIT_COMMIT_VAR}");
    if let Ok(commit) = std::env::var(GIT_COMMIT_VAR)
        && !commit.is_empty()
    {
        return commit;
    }
    watch_git_refs();
    git(&["rev-parse", "--verify", "--quiet", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
}

/// Asks cargo to re-run this script when HEAD moves, so the stamp never goes stale.
/// Only existing paths are named: cargo re-runs a script on every build while a
/// named path is missing.
fn watch_git_refs() {
    let mut watched = Vec::new();
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        watched.push(head);
    }
    // The branch HEAD points at. Its loose ref is missing before the branch's first
    // commit (or when it is packed), so then watch the folder where it will appear.
    if let Some(branch) = git(&["symbolic-ref", "--quiet", "HEAD"]) {
        match git(&["rev-parse", "--git-path", &branch]) {
            Some(path) if Path::new(&path).exists() => watched.push(path),
            _ => watched.extend(git(&["rev-parse", "--git-path", "refs/heads"])),
        }
    }
    if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        watched.push(packed);
    }
    for path in watched {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// Runs git in this crate's folder; `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
