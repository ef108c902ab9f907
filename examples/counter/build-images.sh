#!/usr/bin/env bash
# Builds the counter example's two images from Debian packages and imports them into this
# node's agent. No container registry is needed:
#   counter-web:1    Debian minbase + python3-flask + python3-redis, with /app/app.py
#   counter-redis:1  Debian minbase + redis-server
# Each root file system is made by debootstrap, trimmed (apt lists, docs, man pages,
# locales, caches) and kept under $BERTH_IMAGE_CACHE (default /var/cache/berth-examples), so
# a second run only imports. Safe to rerun: a half-made root file system is thrown away.
#
# Environment:
#   BERTH_AGENT         the agent binary (default: berth-agent in PATH)
#   BERTH_AGENT_ARGS    extra agent options, e.g. "--state-dir /tmp/a --cgroup-parent x"
#   BERTH_IMAGE_CACHE   where the root file systems are kept
#   BERTH_DEBIAN_SUITE  the Debian release (default bookworm)
#   BERTH_DEBIAN_MIRROR the mirror (default: debootstrap's own)
#   BERTH_REBUILD=1     build again even when cached
set -Eeuo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agent_bin="${BERTH_AGENT:-berth-agent}"
read -r -a agent_args <<<"${BERTH_AGENT_ARGS:-}"
cache="${BERTH_IMAGE_CACHE:-/var/cache/berth-examples}"
suite="${BERTH_DEBIAN_SUITE:-bookworm}"
mirror="${BERTH_DEBIAN_MIRROR:-}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
trap 'printf "error: %s: line %s: \"%s\" failed\n" "$0" "$LINENO" "$BASH_COMMAND" >&2' ERR

[ "$(id -u)" = 0 ] || die "run this as root (debootstrap and the agent need it)"
command -v "$agent_bin" >/dev/null || die "$agent_bin not found: build it (cargo build --release -p berth-agent --bins) and set BERTH_AGENT=path/to/berth-agent"
if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; } ||
    die "debootstrap is missing and apt-get could not install it"
fi

# unmount_below DIR unmounts whatever an interrupted debootstrap left mounted inside DIR.
unmount_below() {
  local m
  for m in $(awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" || die "cannot unmount $m"
  done
}

# trim DIR removes what a container does not need: package lists and caches, docs (but
# not the copyright files), man and info pages, locales, logs.
trim() {
  local d="$1"
  rm -rf "$d"/var/lib/apt/lists/* "$d"/var/cache/apt/* "$d"/var/cache/debconf/*-old \
    "$d"/var/cache/ldconfig/* "$d"/usr/share/man/* "$d"/usr/share/info/* \
    "$d"/usr/share/locale/* "$d"/usr/share/lintian "$d"/usr/share/linda "$d"/tmp/* \
    "$d"/var/tmp/* "$d"/root/.cache
  find "$d"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
  find "$d"/usr/share/doc -mindepth 1 -type d -empty -delete
  find "$d"/var/log -type f -delete
  # Keep the machine id empty, as Debian's own images do.
  : >"$d"/etc/machine-id
}

# rootfs NAME PACKAGES prints the cached root file system of NAME, built with debootstrap
# --include=PACKAGES when missing or made from another recipe. NAME.recipe, written last,
# says how the cached NAME was made; without it NAME counts as missing.
rootfs() {
  local name="$1" packages="$2"
  local dir="$cache/$name" tmp="$cache/$name.tmp" stamp="$cache/$name.recipe"
  local recipe="suite=$suite packages=$packages trim=1"
  if [ "${BERTH_REBUILD:-0}" != 1 ] && [ -d "$dir" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$recipe" ]; then
    log "$name: using the cached root file system in $dir"
    echo "$dir"
    return
  fi
  mkdir -p "$cache"
  rm -f "$stamp"
  unmount_below "$tmp"
  rm -rf "$tmp"
  log "$name: debootstrap $suite with $packages into $tmp (a few minutes)"
  # shellcheck disable=SC2086 # the mirror is optional
  if ! debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" $mirror >"$cache/$name.log" 2>&1; then
    unmount_below "$tmp"
    tail -n 20 "$cache/$name.log" >&2
    die "$name: debootstrap failed (full log: $cache/$name.log)"
  fi
  unmount_below "$tmp"
  log "$name: trimming"
  trim "$tmp"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  echo "$recipe" >"$stamp"
  log "$name: $(du -sh "$dir" | cut -f1) in $dir"
  echo "$dir"
}

agent() { "$agent_bin" "${agent_args[@]}" "$@"; }

# image_id REF prints the id of the image REF names, or nothing.
image_id() { { agent image inspect "$1" 2>/dev/null || true; } | awk -F'"' '/"id": "sha256:/ && !n++ { print $4 }'; }

# import REF DIR OPTION... imports DIR as REF, then deletes the image REF named before if
# no tag names it any more, so that reruns do not pile up untagged images.
import() {
  local ref="$1" dir="$2" old new
  shift 2
  old=$(image_id "$ref")
  log "importing $ref"
  agent image import-rootfs "$dir" "$ref" "$@" >/dev/null
  new=$(image_id "$ref")
  if [ -n "$old" ] && [ "$old" != "$new" ] &&
    agent image inspect "$old" | tr -d ' \n' | grep -q '"repo_tags":\[\]'; then
    agent image rm "$old" >/dev/null 2>&1 || log "kept the previous $ref ($old): a container uses it"
  fi
}

web=$(rootfs counter-web python3-flask,python3-redis)
install -D -m 0644 "$here/app.py" "$web/app/app.py"
import counter-web:1 "$web" --cmd '["python3", "/app/app.py"]' --env PYTHONUNBUFFERED=1

redis=$(rootfs counter-redis redis-server)
import counter-redis:1 "$redis" \
  --cmd '["redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no"]'

agent image ls | grep -E '^(REPOSITORY|counter-)' >&2
