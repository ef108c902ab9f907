#!/usr/bin/env bash
# Runs every berth test on a Debian machine as root: installs what is needed, checks
# formatting and lints, builds the binaries the end-to-end tests drive, runs the suite.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
install_deps
ensure_rust
cd "$BERTH_ROOT"

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo build (binaries used by the end-to-end tests)"
cargo build --workspace --bins --locked
log "cargo test"
cargo test --workspace --locked -- --test-threads=2 2>&1 | tee target/test-output.txt
status=${PIPESTATUS[0]}

skipped=$(grep -c 'SKIPPED:' target/test-output.txt || true)
if [ "$skipped" -gt 0 ]; then
  log "$skipped test(s) were SKIPPED:"
  grep 'SKIPPED:' target/test-output.txt >&2
fi
exit "$status"
