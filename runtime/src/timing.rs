//! Opt-in phase timing for finding where a container start spends its time: when
//! `BERTH_TIMING` names a file, [`mark`] appends `<pid> <label> <monotonic ns>` to it. Costs
//! one environment lookup per process when unset.

use std::io::Write;
use std::sync::OnceLock;

fn target() -> Option<&'static str> {
    static T: OnceLock<Option<String>> = OnceLock::new();
    T.get_or_init(|| std::env::var("BERTH_TIMING").ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Records that `label` was reached now, when timing is on.
pub fn mark(label: &str) {
    if let Some(path) = target() {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128)
            .unwrap_or(0);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            // One write per line, so that processes appending at once never interleave.
            let _ = f.write_all(format!("{} {now} {label}\n", std::process::id()).as_bytes());
        }
    }
}
