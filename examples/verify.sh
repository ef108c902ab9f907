#!/usr/bin/env bash
# Checks the examples for real with the node agent, as root. It builds their images (the
# counter's from Debian packages, cached as counter/build-images.sh does), then, in a
# throwaway network namespace, runs what each compose.yaml describes, one container each:
#   hello    busybox httpd on port 8080 answers with hello/index.html
#   counter  redis, then web linked to it on port 8000: two requests count 1, then 2
#   global   the global service's command answers "hello from <hostname>" on port 8081
# The agent's state directory and cgroup parent are throwaway too. Every container is
# removed on exit, the bridge and the iptables rules die with the namespace, and nothing is
# left on the host. Prints SKIP and exits 0 when it cannot run here (not root, no unshare,
# no debootstrap and no way to install it); any other failure exits 1.
#
#   BERTH_AGENT        the agent (default: target/release/berth-agent, else berth-agent in PATH)
#   BERTH_IMAGE_CACHE  as for counter/build-images.sh (default /var/cache/berth-examples)
set -Eeuo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
skip() {
  printf '\n*** SKIP: examples/verify.sh did not run: %s ***\n\n' "$*" >&2
  exit 0
}

# fetch URL prints the body of URL, trying for up to 30 s while nothing answers yet.
fetch() {
  local i
  for i in $(seq 60); do
    # (no -T: busybox 1.35's wget crashes with it)
    timeout 3 busybox wget -q -O- "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  die "nothing answered at $1 within 30 s"
}

# expect WHAT WANT GOT
expect() {
  if [ "$2" = "$3" ]; then
    printf 'ok: %s: %s\n' "$1" "$3" >&2
  else
    printf 'FAIL: %s\n  want: %s\n  got:  %s\n' "$1" "$2" "$3" >&2
    exit 1
  fi
}

# The part that runs inside the network namespace (see the end of the file).
in_netns() {
  ip link set lo up
  agent() { "$BERTH_AGENT" --state-dir "$VERIFY_STATE/agent" --cgroup-parent "$VERIFY_CGROUP" "$@"; }
  # Every container here is this script's: remove them all, whatever happened.
  trap 'ids=$(agent ps -aq 2>/dev/null || true); [ -z "$ids" ] || agent rm -f $ids >/dev/null || true' EXIT

  log "hello: busybox httpd, published on 8080"
  agent run -d --name hello -p 8080:80 busybox:demo httpd -f -v -p 80 -h /www >/dev/null
  expect "hello answers with index.html" "$(cat "$here/hello/index.html")" "$(fetch http://127.0.0.1:8080/)"

  log "counter: redis, then web linked to it, published on 8000"
  agent run -d --name redis counter-redis:1 >/dev/null
  web=$(agent run -d --name web --link redis -p 8000:5000 counter-web:1)
  expect "counter, first request" "Hello from ${web:0:12}! I have been seen 1 times." "$(fetch http://127.0.0.1:8000/)"
  expect "counter, second request" "Hello from ${web:0:12}! I have been seen 2 times." "$(fetch http://127.0.0.1:8000/)"

  log "global: the whoami service's command (global/compose.yaml), published on 8081"
  # The command of global/compose.yaml, with Compose's $$ written as $.
  who=$(agent run -d --name whoami -p 8081:80 busybox:demo sh -c \
    'mkdir -p /tmp/www && echo "hello from $(hostname)" > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www')
  expect "global answers with its hostname" "hello from ${who:0:12}" "$(fetch http://127.0.0.1:8081/)"

  agent ps >&2
}

if [ "${1:-}" = __in_netns ]; then
  in_netns
  exit 0
fi

[ "$(id -u)" = 0 ] || skip "it needs root (namespaces, cgroups, debootstrap)"
command -v unshare >/dev/null || skip "unshare (util-linux) is missing"
for tool in debootstrap busybox ip iptables; do
  command -v "$tool" >/dev/null && continue
  log "installing what $tool comes with"
  case "$tool" in
    busybox) pkg=busybox-static ;; ip) pkg=iproute2 ;; *) pkg="$tool" ;;
  esac
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null; } ||
    skip "$tool is missing and apt-get could not install $pkg"
done
if [ -z "${BERTH_AGENT:-}" ]; then
  BERTH_AGENT="$here/../target/release/berth-agent"
  [ -x "$BERTH_AGENT" ] || BERTH_AGENT=$(command -v berth-agent) ||
    die "no berth-agent: build it (cargo build --release -p berth-agent --bins) or set BERTH_AGENT"
fi
export BERTH_AGENT
VERIFY_STATE=$(mktemp -d /tmp/berth-examples-verify.XXXXXX)
VERIFY_CGROUP="berth-examples-verify-$$"
export VERIFY_STATE VERIFY_CGROUP

# cleanup removes the state directory and the cgroup parent, in every hierarchy (v1 or
# v2); the containers were removed inside the namespace.
cleanup() {
  local status=$? d
  for d in $(find /sys/fs/cgroup -maxdepth 3 -type d -name "$VERIFY_CGROUP" 2>/dev/null); do
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || log "could not remove the cgroup $d"
  done
  for d in $(awk -v s="$VERIFY_STATE/" 'index($2, s) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$d" || true
  done
  rm -rf "$VERIFY_STATE"
  if [ $status -eq 0 ]; then log "examples verified"; else log "examples/verify.sh FAILED"; fi
}
trap cleanup EXIT
A=("$BERTH_AGENT" --state-dir "$VERIFY_STATE/agent" --cgroup-parent "$VERIFY_CGROUP")

log "building busybox:demo (hello, global)"
"${A[@]}" image import-rootfs "$("$here/build-busybox-image.sh" "$VERIFY_STATE/busybox-rootfs")" \
  busybox:demo --cmd sh >/dev/null
log "building counter-web:1 and counter-redis:1"
BERTH_AGENT_ARGS="--state-dir $VERIFY_STATE/agent --cgroup-parent $VERIFY_CGROUP" \
  "$here/counter/build-images.sh"

log "running the examples in a throwaway network namespace"
unshare -n -- bash "$here/verify.sh" __in_netns
