#!/usr/bin/env bash
# Starts a private Docker engine for the tests (its own socket, data and exec roots, so it never
# touches a system daemon) and imports the test image `infrapilot-test/busybox:latest` from the
# busybox-static binary (no registry needed). Prints the DOCKER_HOST to use.
# Usage: scripts/start-docker.sh [DIR]   (default /tmp/infrapilot-docker; stop: kill $(cat DIR/dockerd.pid))
set -euo pipefail
dir=${1:-/tmp/infrapilot-docker}
sock="$dir/docker.sock"
host="unix://$sock"
if ! command -v dockerd >/dev/null 2>&1 || ! dpkg -s busybox-static >/dev/null 2>&1; then
    echo "start-docker: installing docker.io and busybox-static" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io busybox-static >&2
fi
if [ -S "$sock" ] && DOCKER_HOST=$host docker info >/dev/null 2>&1; then
    :
else
    mkdir -p "$dir/data" "$dir/exec"
    # vfs works on any backing filesystem; no host firewall changes; a small private address pool.
    dockerd -H "$host" --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
        --storage-driver=vfs --iptables=false --bip 10.213.0.1/24 \
        --default-address-pool base=10.214.0.0/16,size=24 >"$dir/dockerd.log" 2>&1 &
    for _ in $(seq 1 100); do
        DOCKER_HOST=$host docker info >/dev/null 2>&1 && break
        sleep 0.1
    done
    DOCKER_HOST=$host docker info >/dev/null 2>&1 || { cat "$dir/dockerd.log" >&2; echo "start-docker: dockerd did not start" >&2; exit 1; }
fi
if ! DOCKER_HOST=$host docker image inspect infrapilot-test/busybox:latest >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in sh ls cat echo sleep ps kill env id uname date seq yes true false wc head tail grep; do
        ln -s busybox "$rootfs/bin/$applet"
    done
    printf 'root:x:0:0::/root:/bin/sh\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\n' >"$rootfs/etc/group"
    tar -C "$rootfs" --numeric-owner -c . | DOCKER_HOST=$host docker import \
        -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - infrapilot-test/busybox:latest >/dev/null
    rm -rf "$rootfs"
fi
echo "$host"
