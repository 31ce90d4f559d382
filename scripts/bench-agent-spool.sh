#!/usr/bin/env bash
# The agent's memory with a full spool (issue 17; outside CI, its result in docs/BENCHMARKS.md).
# Starts its own Docker engine and an `infrapilot serve` (SQLite, no built-in agent), enrolls the
# agent under test, stops the host, lets a container write as fast as it can until the agent's
# spool is full and has been dropping its oldest records for a while, then starts the host again
# and waits for the spool to drain. Prints the agent's RSS (and its peak) idle, with the spool full,
# and after the drain, and the spool's size on disk.
# Usage: scripts/bench-agent-spool.sh AGENT_BINARY [SPOOL_BYTES]   (default 536870912 = 512 MiB)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
agent_bin=$1
bound=${2:-536870912}
work=$(mktemp -d /tmp/ipspool.XXXXXX)
cleanup() {
    kill "${agent:-}" "${serve:-}" 2>/dev/null || true
    docker rm -f ipspool-writer >/dev/null 2>&1 || true
    bash scripts/stop-docker.sh "$work/docker" >/dev/null 2>&1 || true
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
export DOCKER_HOST=$(scripts/start-docker.sh "$work/docker")
cargo build -q -p infrapilot
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
http=$(port); grpc=$(port)
start_host() {
    INFRAPILOT_DATA_DIR="$work/data" INFRAPILOT_LISTEN=127.0.0.1:$http INFRAPILOT_GRPC_LISTEN=127.0.0.1:$grpc \
        INFRAPILOT_GRPC_HOSTNAMES=127.0.0.1 INFRAPILOT_BUILTIN_AGENT=false \
        "$(target_dir)/debug/infrapilot" serve >> "$work/serve.log" 2>&1 &
    serve=$!
    for _ in $(seq 1 100); do curl -fs "127.0.0.1:$http/readyz" >/dev/null && return; sleep 0.2; done
    echo "the host did not start" >&2; exit 1
}
start_host
code=$(cat "$work/data/setup-code")
curl -fsS -XPOST "127.0.0.1:$http/api/v1/setup" -H 'content-type: application/json' \
    -d "{\"setup_code\":\"$code\",\"email\":\"bench@example.com\",\"password\":\"bench-password-123\",\"name\":\"Bench\"}" >/dev/null
token=$(curl -fsS -XPOST "127.0.0.1:$http/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench-password-123"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
secret=$(curl -fsS -XPOST "127.0.0.1:$http/api/v1/enrollment-tokens" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"name":"bench","max_uses":1,"expires_in_hours":1}' \
    | python3 -c 'import sys,json;print(json.load(sys.stdin)["secret"])')
INFRAPILOT_AGENT_TOKEN=$secret "$agent_bin" enroll --endpoint "http://127.0.0.1:$http" --state-dir "$work/agent" --name spool-bench >/dev/null
"$agent_bin" run --state-dir "$work/agent" --spool-bytes "$bound" > "$work/agent.log" 2>&1 &
agent=$!
rss() { awk '/VmRSS/{r=$2} /VmHWM/{h=$2} END{printf "RSS %d kB (peak %d kB)", r, h}' /proc/$agent/status; }
spool() { du -sm "$work/agent/spool" 2>/dev/null | cut -f1; }
sleep 15
echo "idle: $(rss)"
say "host stopped; a container writes as fast as it can until the $((bound >> 20)) MiB spool is full"
kill "$serve"; wait "$serve" 2>/dev/null || true
docker run -d --name ipspool-writer infrapilot-test/busybox:latest \
    sh -c 'i=0; while true; do echo "line $i of a container that writes as fast as it can, padded to about a hundred bytes"; i=$((i+1)); done' >/dev/null
started=$(date +%s)
# Full: within 5 % of the bound (old segments go whole, so it stays a little under).
while [ "$(spool)" -lt $((bound * 95 / 100 >> 20)) ]; do
    sleep 5
    echo "  $(( $(date +%s) - started )) s: spool $(spool) MiB, $(rss)"
    [ $(( $(date +%s) - started )) -lt 1800 ] || { echo "the spool did not fill in 30 minutes" >&2; exit 1; }
done
sleep 30
echo "full (and dropping its oldest for 30 s): spool $(spool) MiB, $(rss)"
docker stop -t 1 ipspool-writer >/dev/null
say "host back: the spool drains"
start_host
started=$(date +%s)
until [ "$(spool)" -le 16 ]; do
    sleep 5
    echo "  $(( $(date +%s) - started )) s: spool $(spool) MiB, $(rss)"
    [ $(( $(date +%s) - started )) -lt 1800 ] || { echo "the spool did not drain in 30 minutes" >&2; exit 1; }
done
echo "drained after $(( $(date +%s) - started )) s: $(rss)"
