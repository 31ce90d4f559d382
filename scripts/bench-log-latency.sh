#!/usr/bin/env bash
# Container write → browser latency of log lines with the spool in the path (issue 17; outside
# CI, its result in docs/BENCHMARKS.md). Starts its own Docker engine and an `infrapilot serve`
# with the built-in agent (SQLite), runs a container printing a line every 100 ms, and follows it
# in Chromium through the Logs WebSocket (tests/e2e/bench-log-latency.mjs).
# Usage: scripts/bench-log-latency.sh [SECONDS]   (default 60; PROFILE=release for release builds)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
seconds=${1:-60}
profile=${PROFILE:-debug}
need_host_build_deps
work=$(mktemp -d /tmp/iplatency.XXXXXX)
cleanup() {
    [ -n "${serve:-}" ] && kill "$serve" 2>/dev/null || true
    [ -n "${DOCKER_HOST:-}" ] && docker rm -f iplatency-writer >/dev/null 2>&1 || true
    bash scripts/stop-docker.sh "$work/docker" >/dev/null 2>&1 || true
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
export DOCKER_HOST=$(scripts/start-docker.sh "$work/docker")
say "building the host and the agent ($profile) and the dashboard's test tools"
if [ "$profile" = release ]; then cargo build -q --release -p infrapilot; else cargo build -q -p infrapilot; fi
(cd tests/e2e && npm install --no-audit --no-fund --silent >/dev/null)
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
http=$(port); grpc=$(port)
INFRAPILOT_DATA_DIR="$work/data" INFRAPILOT_LISTEN=127.0.0.1:$http INFRAPILOT_GRPC_LISTEN=127.0.0.1:$grpc \
    INFRAPILOT_GRPC_HOSTNAMES=127.0.0.1 INFRAPILOT_BUILTIN_AGENT_LOG_LABEL=bench=latency \
    "$(target_dir)/$profile/infrapilot" serve > "$work/serve.log" 2>&1 &
serve=$!
for _ in $(seq 1 100); do curl -fs "127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.2; done
code=$(cat "$work/data/setup-code")
curl -fsS -XPOST "127.0.0.1:$http/api/v1/setup" -H 'content-type: application/json' \
    -d "{\"setup_code\":\"$code\",\"email\":\"bench@example.com\",\"password\":\"bench-password-123\",\"name\":\"Bench\"}" >/dev/null
token=$(curl -fsS -XPOST "127.0.0.1:$http/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench-password-123"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
docker run -d --name iplatency-writer --label bench=latency infrapilot-test/busybox:latest \
    sh -c 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done' >/dev/null
say "following the container in Chromium for $seconds s"
INFRAPILOT_URL="http://127.0.0.1:$http" BENCH_TOKEN=$token BENCH_CONTAINER=iplatency-writer \
    BENCH_SECONDS=$seconds node tests/e2e/bench-log-latency.mjs
