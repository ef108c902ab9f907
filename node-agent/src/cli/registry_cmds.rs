//! `image pull` and `image push`: the store's registry client on a small runtime of their own.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal};
use std::sync::Mutex;

use anyhow::Context;

use super::args::RegistryArgs;
use crate::image::ImageStore;
use crate::image::registry::{LayerProgress, LayerState, RegistryConfig};

/// The registry settings the flags give; the password comes from standard input (also
/// `berth image push`'s).
pub fn registry_config(a: &RegistryArgs) -> anyhow::Result<RegistryConfig> {
    let ca_pem = a
        .ca
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read --ca {}", p.display()))
        })
        .transpose()?;
    let password = if a.password_stdin {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprint!("Password: ");
        }
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        anyhow::ensure!(
            !password.is_empty(),
            "--password-stdin: standard input gave an empty password"
        );
        Some(password)
    } else {
        None
    };
    Ok(RegistryConfig {
        insecure: a.insecure,
        ca_pem,
        username: a.username.clone(),
        password,
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `image pull REF`: a line per layer as it is settled, then the image.
pub(super) fn pull(store: &ImageStore, reference: &str, a: &RegistryArgs) -> anyhow::Result<u8> {
    let config = registry_config(a)?;
    let said: Mutex<HashSet<String>> = Mutex::default();
    let progress = |p: &LayerProgress| {
        let line = match p.state {
            LayerState::Cached => "already present".to_owned(),
            LayerState::Downloaded => format!("downloaded {}", mb(p.done)),
            LayerState::Shared => "fetched by another pull".to_owned(),
            LayerState::Downloading | LayerState::Waiting => return,
        };
        let mut said = said.lock().unwrap_or_else(|e| e.into_inner());
        if said.insert(p.digest.clone()) {
            eprintln!("{}: {line}", short(&p.digest));
        }
    };
    let record = runtime()?.block_on(store.pull(reference, &config, &progress))?;
    println!("pulled {} {}", record.id, record.repo_tags.join(" "));
    Ok(0)
}

/// `image push IMAGE REF`.
pub(super) fn push(
    store: &ImageStore,
    image: &str,
    reference: &str,
    a: &RegistryArgs,
) -> anyhow::Result<u8> {
    let config = registry_config(a)?;
    let report = runtime()?.block_on(store.push(image, reference, &config))?;
    println!(
        "pushed {reference}@{} ({} blobs uploaded, {} already there)",
        report.digest,
        report.uploaded.len(),
        report.skipped.len()
    );
    Ok(0)
}
