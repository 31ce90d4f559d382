#!/usr/bin/env bash
# Container benchmarks for docs/BENCHMARKS.md, measured side by side in one run (release build):
#   - container list through the API vs `docker ps -a`, restart through the API vs `docker restart`
#   - log line from a container's write to a WebSocket client
#   - idle RSS and CPU of a separate `infrapilot-agent run` process over BENCH_IDLE_SECONDS (60)
#   - the agent refuses to run without trust material
# Usage: scripts/bench-containers.sh   (starts its own Docker engine and host)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
idle=${BENCH_IDLE_SECONDS:-60}
target=${CARGO_TARGET_DIR:-target}
need_host_build_deps
need_debian curl:curl python3:python3
if [ ! -d web/dist ]; then build_web; fi
say "building the host and the agent (release)"
cargo build --release -p infrapilot -p infrapilot-agent --bins --example bench_containers
host="$target/release/infrapilot"
agent="$target/release/infrapilot-agent"
work=$(mktemp -d /tmp/ipbench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    docker rm -f bench-restart bench-logger >/dev/null 2>&1 || true
    [ -f "$work/docker/dockerd.pid" ] && kill "$(cat "$work/docker/dockerd.pid")" 2>/dev/null || true
    sleep 1; rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
export DOCKER_HOST=$(scripts/start-docker.sh "$work/docker")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); gport=$(free_port); base="http://127.0.0.1:$port"
INFRAPILOT_DATA_DIR="$work/host" INFRAPILOT_LISTEN="127.0.0.1:$port" INFRAPILOT_GRPC_LISTEN="127.0.0.1:$gport" \
    INFRAPILOT_API_RATE_PER_ORG=0 INFRAPILOT_API_RATE_PER_TOKEN=0 INFRAPILOT_GRPC_HOSTNAMES=127.0.0.1 INFRAPILOT_LOG_LEVEL=warn "$host" serve >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
code=$(cat "$work/host/setup-code")
curl -fsS -H 'content-type: application/json' -d '{"setup_code":"'"$code"'","email":"bench@example.com","password":"benchmark password","name":"Bench"}' "$base/api/v1/setup" >/dev/null
token=$(curl -fsS -H 'content-type: application/json' -d '{"email":"bench@example.com","password":"benchmark password"}' "$base/api/v1/auth/login" | json '["access_token"]')
sleep 1
agent_id=$(curl -fsS -H "authorization: Bearer $token" "$base/api/v1/agents" | json '[0]["id"]')
docker network create bench-net >/dev/null 2>&1 || true
docker run -d --name bench-restart --network bench-net infrapilot-test/busybox sh -c "trap 'exit 0' TERM; while true; do sleep 0.1; done" >/dev/null
docker run -d --name bench-logger --network bench-net infrapilot-test/busybox sh -c 'i=0; while true; do echo "line $i"; i=$((i+1)); usleep 50000; done' >/dev/null
for i in $(seq 1 20); do docker run -d --name "bench-filler-$i" --network bench-net infrapilot-test/busybox sleep 100000 >/dev/null; done

say "API vs docker CLI, and log latency (host and built-in agent in release mode)"
BENCH_BASE=$base BENCH_TOKEN=$token BENCH_AGENT=$agent_id BENCH_RESTART=bench-restart BENCH_LOGGER=bench-logger \
    "$target/release/examples/bench_containers"
for i in $(seq 1 20); do docker rm -f "bench-filler-$i" >/dev/null; done

say "idle agent: a separate infrapilot-agent process, ${idle} s after it connected"
etoken=$(curl -fsS -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"name":"bench","max_uses":1,"expires_in_hours":1}' "$base/api/v1/enrollment-tokens" | json '["secret"]')
INFRAPILOT_AGENT_TOKEN=$etoken "$agent" --state-dir "$work/agent" enroll --endpoint "$base" --name bench-node >/dev/null
"$agent" --state-dir "$work/agent" run 2>"$work/agent.log" &
apid=$!; pids+=($apid)
sleep 5
ticks() { awk '{print $14+$15}' "/proc/$apid/stat"; }
t0=$(ticks); s0=$(date +%s.%N)
sleep "$idle"
t1=$(ticks); s1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
rss=$(awk '/VmRSS/{print $2}' "/proc/$apid/status")
cpu=$(python3 -c "print(f'{($t1-$t0)/$hz/($s1-$s0)*100:.3f}')")
echo "| agent idle (connected, heartbeats every 30 s) | RSS $((rss/1024)) MiB ($rss KiB) | CPU ${cpu} % of one core over ${idle} s |"

say "the agent without trust material"
set +e
"$agent" --state-dir "$work/empty" run; code=$?
set -e
echo "exit status $code (refused to start)"
