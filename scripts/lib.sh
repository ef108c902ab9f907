# Shared by berth's scripts: installing what they need on a Debian machine, idempotently.
set -euo pipefail

BERTH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: run this as root (berth creates namespaces, cgroups and mounts)" >&2
    exit 1
  fi
}

# apt_install PKG... installs the packages that are missing (apt-get update once, only if needed).
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_rust makes cargo available: the machine's own toolchain, else rustup's installer.
ensure_rust() {
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  if command -v cargo >/dev/null 2>&1; then return 0; fi
  apt_install curl ca-certificates
  log "installing the Rust toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
  . "$HOME/.cargo/env"
}

# The packages berth's build, tests and examples use.
# docker-registry and apache2-utils (htpasswd -B) are for the registry tests, which run the
# registry binary themselves on loopback; the package's own service (port 5000) is stopped
# and disabled when this installs it.
install_deps() {
  local had_registry=0
  dpkg-query -W -f='${Status}' docker-registry 2>/dev/null | grep -q "install ok installed" && had_registry=1
  apt_install build-essential pkg-config busybox-static iproute2 iptables procps docker-registry apache2-utils
  if [ "$had_registry" = 0 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
}
