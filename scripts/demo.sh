#!/usr/bin/env bash
# berth's main job, for now: build berth, build a busybox image from Debian packages, and
# run an example web server container with the node agent; show it answering, its logs,
# exec into it, then stop and remove it. (It grows into a local cluster running an app.)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
install_deps
ensure_rust
cd "$BERTH_ROOT"

log "building berth (release)"
cargo build --release --locked --bins
agent() { ./target/release/berth-agent "$@"; }

log "building the busybox image from busybox-static"
rootfs=$(./examples/build-busybox-image.sh)
agent image import-rootfs "$rootfs" busybox:demo --cmd sh >/dev/null
agent images

log "running the hello web server (busybox httpd) in a container"
agent rm -f hello >/dev/null 2>&1 || true
agent run -d --name hello -m 64m --cpus 0.5 busybox:demo httpd -f -v -p 8080 -h /www
sleep 0.3
agent ps

log "fetching the page from inside the container's network namespace"
agent exec hello wget -qO- http://127.0.0.1:8080/

log "the container's log"
agent logs hello

log "a one-off container: exit codes pass through"
set +e
agent run --rm busybox:demo sh -c 'echo "hello from $(hostname), pid $$"; exit 3'
echo "exit code: $?"
set -e

log "stopping and removing"
agent stop -t 2 hello   # httpd as pid 1 ignores SIGTERM: SIGKILL after 2 s
agent rm hello
agent ps -a
