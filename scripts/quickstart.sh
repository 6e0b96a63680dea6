#!/usr/bin/env bash
# From a fresh Debian 12 (with Node.js >= 20 and npm) to a container running on runcts.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq containerd runc busybox-static make g++ python3 >/dev/null

make install

# containerd: use the running one, or start it (systemd when present, in the background otherwise).
if ! ctr version >/dev/null 2>&1; then
  if command -v systemctl >/dev/null && systemctl start containerd 2>/dev/null; then :; else
    (containerd >/var/log/containerd-quickstart.log 2>&1 &)
  fi
  for _ in $(seq 50); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
fi

rootfs=/var/lib/runcts-quickstart/rootfs
if [ ! -x "$rootfs/bin/busybox" ]; then
  mkdir -p "$rootfs/bin" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/tmp" "$rootfs/etc"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"; done
fi

ctr run --rm --runtime io.containerd.runcts.v2 --rootfs "$rootfs" "runcts-hello-$$" \
  /bin/sh -c 'echo "hello from runcts: $(uname -s) container, pid $$"'
