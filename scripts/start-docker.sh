#!/usr/bin/env bash
# Starts a private Docker engine for the tests (its own socket, data and exec roots, so it never
# touches a system daemon) and imports the test image `infrapilot-test/busybox:latest` from the
# busybox-static binary and `infrapilot-test/nginx:latest` from Debian's nginx packages (downloaded
# with apt-get, never installed on the host), so no registry is needed. Prints the DOCKER_HOST to use.
# Usage: scripts/start-docker.sh [DIR]   (default /tmp/infrapilot-docker; stop: scripts/stop-docker.sh DIR)
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
    # vfs works on any backing filesystem; no firewall changes by the engine; a small private
    # address pool.
    dockerd -H "$host" --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
        --storage-driver=vfs --iptables=false --bip 10.213.0.1/24 \
        --default-address-pool base=10.214.0.0/16,size=24 >"$dir/dockerd.log" 2>&1 &
    for _ in $(seq 1 100); do
        DOCKER_HOST=$host docker info >/dev/null 2>&1 && break
        sleep 0.1
    done
    DOCKER_HOST=$host docker info >/dev/null 2>&1 || { cat "$dir/dockerd.log" >&2; echo "start-docker: dockerd did not start" >&2; exit 1; }
fi
# Next to a system Docker engine (the README's run command starts one), the kernel forwards
# bridge traffic through iptables' FORWARD chain, whose policy that engine sets to DROP: traffic
# between two containers on one of this engine's networks would be dropped. Only then, accept
# exactly that traffic (source and destination both in one of this engine's ranges), in
# DOCKER-USER (the chain a system engine keeps first) or FORWARD, tagged `infrapilot-test` so
# scripts/stop-docker.sh removes it again. Nothing else on the machine is opened.
if command -v iptables >/dev/null 2>&1 && iptables -S FORWARD 2>/dev/null | grep -q '^-P FORWARD DROP'; then
    chain=FORWARD
    iptables -S DOCKER-USER >/dev/null 2>&1 && chain=DOCKER-USER
    for range in 10.213.0.0/24 10.214.0.0/16; do
        rule=(-s "$range" -d "$range" -m comment --comment infrapilot-test -j ACCEPT)
        if ! iptables -C "$chain" "${rule[@]}" 2>/dev/null; then
            iptables -I "$chain" "${rule[@]}"
            echo "start-docker: forwarded traffic is dropped here (a system Docker engine?); accepted $range → $range in iptables $chain (removed by scripts/stop-docker.sh)" >&2
        fi
    done
fi
if ! DOCKER_HOST=$host docker image inspect infrapilot-test/busybox:latest >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    # mktemp's 0700 would be the image's `/`: only root could run anything in it.
    chmod 755 "$rootfs"
    mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
    chmod 1777 "$rootfs/tmp"
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
if ! DOCKER_HOST=$host docker image inspect infrapilot-test/nginx:latest >/dev/null 2>&1; then
    # nginx, the libraries it links, and busybox-static for a shell: about 12 MB.
    work=$(mktemp -d)
    rootfs="$work/rootfs"
    chmod 755 "$work"
    mkdir -p "$work/debs" "$rootfs"
    chmod 777 "$work/debs"
    (cd "$work/debs" && apt-get download -qq nginx nginx-common >&2) || {
        apt-get update -qq >&2
        (cd "$work/debs" && apt-get download -qq nginx nginx-common >&2)
    }
    for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$rootfs"; done
    mkdir -p "$rootfs/usr/lib/x86_64-linux-gnu" "$rootfs/usr/lib64" "$rootfs/usr/bin" "$rootfs/usr/sbin"
    ln -s usr/lib "$rootfs/lib"; ln -s usr/lib64 "$rootfs/lib64"; ln -s usr/bin "$rootfs/bin"; ln -s usr/sbin "$rootfs/sbin"
    if ldd "$rootfs/usr/sbin/nginx" | grep -q 'not found'; then
        mkdir -p "$work/libs"; chmod 777 "$work/libs"
        libs=$(apt-cache depends --important nginx | awk '/Depends:/{print $2}' | grep -E '^(lib|zlib)' | grep -v '^libc6$' || true)
        (cd "$work/libs" && apt-get download -qq $libs >&2)
        for deb in "$work"/libs/*.deb; do dpkg -x "$deb" "$work/libroot"; done
        export LD_LIBRARY_PATH="$work/libroot/usr/lib/x86_64-linux-gnu:$work/libroot/lib/x86_64-linux-gnu"
    fi
    ldd "$rootfs/usr/sbin/nginx" | awk '/=>/{print $3} /^\t\//{print $1}' | while read -r lib; do
        [ -n "$lib" ] && cp -L "$lib" "$rootfs/usr/lib/x86_64-linux-gnu/"
    done
    unset LD_LIBRARY_PATH
    ln -sf ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$rootfs/usr/lib64/ld-linux-x86-64.so.2"
    cp -L /bin/busybox "$rootfs/usr/bin/busybox"
    for applet in sh ls cat ps kill nc wget; do ln -s busybox "$rootfs/usr/bin/$applet"; done
    mkdir -p "$rootfs/run" "$rootfs/tmp" "$rootfs/var/lib/nginx" "$rootfs/var/log/nginx" \
        "$rootfs/etc/nginx/conf.d" "$rootfs/etc/nginx/modules-enabled"
    chmod 1777 "$rootfs/tmp"
    printf 'root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\nnobody:x:65534:65534::/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
    ln -sf /dev/stdout "$rootfs/var/log/nginx/access.log"
    ln -sf /dev/stderr "$rootfs/var/log/nginx/error.log"
    rm -f "$rootfs"/etc/nginx/sites-enabled/*
    tar -C "$rootfs" --numeric-owner -c . | DOCKER_HOST=$host docker import \
        -c 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' -c 'EXPOSE 80 443' \
        -c 'CMD ["nginx","-g","daemon off;"]' - infrapilot-test/nginx:latest >/dev/null
    rm -rf "$work"
fi
echo "$host"
