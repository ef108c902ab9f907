#!/usr/bin/env bash
# berth's main job: build berth, start a single-node cluster on this machine (`berth up`:
# one controller and one node agent in the background, state in /var/lib/berth), build the
# busybox example image from Debian's busybox-static, apply the hello example and show it
# answering on port 8080. The cluster keeps running; `./target/release/berth down` stops it
# and removes its containers, bridge (berth0), iptables chains (BERTH-*) and cgroups
# (`--purge` also removes /var/lib/berth).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
install_deps
ensure_rust
cd "$BERTH_ROOT"

log "building berth (release)"
cargo build --release --locked --bins
B=./target/release/berth
agent() { ./target/release/berth-agent --state-dir /var/lib/berth/agent "$@"; }

log "berth up: a controller and a node agent on this machine"
$B up

log "building the busybox image from busybox-static into the node's image store"
rootfs=$(./examples/build-busybox-image.sh)
agent image import-rootfs "$rootfs" busybox:demo --cmd sh >/dev/null
agent images

log "berth apply -f examples/hello/compose.yaml (waits until it runs)"
$B apply -f examples/hello/compose.yaml
$B ls
$B ps

log "fetching the page through the published port 8080"
for _ in $(seq 1 50); do
  busybox wget -qO- http://127.0.0.1:8080/ 2>/dev/null && break
  sleep 0.1
done

log "the cluster keeps running: try \`$B ps\`, \`$B node ls\`, \`$B events\`; stop it with \`$B down\`"
