#!/usr/bin/env bash
# Builds a busybox root file system from Debian's busybox-static into DIR (default
# ./target/examples/busybox-rootfs): /bin/busybox with a link per applet, /etc/passwd and
# /etc/group, and the hello example's web page in /www. No container registry is needed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$here/../target/examples/busybox-rootfs}"
bb=/bin/busybox
[ -x "$bb" ] || { echo "error: $bb not found: apt-get install busybox-static" >&2; exit 1; }
rm -rf "$dir"
mkdir -p "$dir"/{bin,etc,tmp,root,www,proc,sys,dev}
cp "$bb" "$dir/bin/busybox"
for a in $("$bb" --list); do [ "$a" = busybox ] || ln -s busybox "$dir/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
chmod 1777 "$dir/tmp"
cp "$here/hello/index.html" "$dir/www/index.html"
echo "$dir"
