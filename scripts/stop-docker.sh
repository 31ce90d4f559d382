#!/usr/bin/env bash
# Stops a private Docker engine started by scripts/start-docker.sh: removes its containers, ends
# dockerd, unmounts what it left mounted, and removes the firewall rules start-docker.sh added
# (tagged `infrapilot-test`), so the machine is as it was.
# Usage: scripts/stop-docker.sh [DIR]   (default /tmp/infrapilot-docker)
set -uo pipefail
dir=${1:-/tmp/infrapilot-docker}
host="unix://$dir/docker.sock"
if [ -f "$dir/dockerd.pid" ]; then
    ids=$(DOCKER_HOST=$host docker ps -aq 2>/dev/null)
    [ -z "$ids" ] || DOCKER_HOST=$host docker rm -f $ids >/dev/null 2>&1
    pid=$(cat "$dir/dockerd.pid")
    kill "$pid" 2>/dev/null
    # Until the engine has exited (it unmounts its network namespaces on the way out).
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
# Whatever it left mounted below its directory (network namespaces: nsfs on exec/netns/*),
# deepest first and lazily, so a mount still busy cannot keep the directory.
real=$(realpath "$dir" 2>/dev/null || echo "$dir")
awk -v d="$real/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r mnt; do
    umount -l "$mnt" 2>/dev/null
done
if command -v iptables >/dev/null 2>&1; then
    for chain in DOCKER-USER FORWARD; do
        iptables -S "$chain" 2>/dev/null | grep -- '--comment infrapilot-test' | while read -r rule; do
            # `-A CHAIN spec…` as listed; delete the same spec. The spec has no quoted spaces.
            read -ra spec <<<"${rule#-A $chain }"
            iptables -D "$chain" "${spec[@]}"
        done
    done
fi
exit 0
