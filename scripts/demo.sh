#!/usr/bin/env bash
# berth's main job, for now: build berth, build a busybox image from Debian packages, and
# run an example web server container with the node agent, published on port 8080 of this
# machine; show it answering on the host and to a linked container, its logs, exec into it,
# then stop and remove it. (It grows into a local cluster running an app.)
#
# The containers are on berth's node bridge (berth0, 10.77.0.0/16): like Docker, berth sets
# net.ipv4.ip_forward=1 and adds its rules in its own iptables chains (BERTH-*), which
# stay empty once the containers are gone.
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
agent run -d --name hello -p 8080:80 -m 64m --cpus 0.5 busybox:demo httpd -f -v -p 80 -h /www
sleep 0.3
agent ps

log "fetching the page through the published port, from this machine"
busybox wget -qO- http://127.0.0.1:8080/

log "a linked container reaches it by its alias"
agent run --rm --link hello:web busybox:demo sh -c 'echo "WEB_PORT=$WEB_PORT"; wget -qO- http://web/'

log "exec into it"
agent exec hello ip -4 -o addr show eth0

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
