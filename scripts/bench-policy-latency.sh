#!/usr/bin/env bash
# Policy decision latency for docs/BENCHMARKS.md: a container action through the API (release
# build, built-in agent, real Docker engine) with no policy, then with the eight templates on
# (block, default conditions). The action is `start` of a running, compliant container: Docker
# answers at once (304), so the figure is the host's path — the door, the policy guard reading
# the container's configuration from the node and asking the engine — and not Docker's work.
# Usage: scripts/bench-policy-latency.sh   (starts its own Docker engine and host; BENCH_N=400)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
n=${BENCH_N:-400}
target=${CARGO_TARGET_DIR:-target}
need_host_build_deps
need_debian curl:curl python3:python3
if [ ! -d web/dist ]; then build_web; fi
say "building the host (release) and the plugins"
cargo build --release -p infrapilot --bins
scripts/build-plugins.sh >/dev/null
host="$target/release/infrapilot"
work=$(mktemp -d /tmp/ippolbench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    docker rm -f bench-policy >/dev/null 2>&1 || true
    [ -f "$work/docker/dockerd.pid" ] && kill "$(cat "$work/docker/dockerd.pid")" 2>/dev/null || true
    sleep 1; rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
export DOCKER_HOST=$(scripts/start-docker.sh "$work/docker")
"$host" license keygen --out "$work/vendor.key" >/dev/null
"$host" license issue --key "$work/vendor.key" --licensee Bench --features policies --expires 2099-01-01 --out "$work/license.lic"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); gport=$(free_port); base="http://127.0.0.1:$port"
INFRAPILOT_DATA_DIR="$work/host" INFRAPILOT_LISTEN="127.0.0.1:$port" INFRAPILOT_GRPC_LISTEN="127.0.0.1:$gport" \
    INFRAPILOT_EDITION=enterprise INFRAPILOT_LICENSE_PUBLIC_KEY="$work/vendor.pub" \
    INFRAPILOT_PLUGIN_DIR="$target/plugins/bundles" INFRAPILOT_PLUGIN_TRUSTED_KEYS="$target/plugins/dev-signing" \
    INFRAPILOT_POLICY_AUDIT_SECONDS=86400 INFRAPILOT_API_RATE_PER_ORG=0 INFRAPILOT_API_RATE_PER_TOKEN=0 \
    INFRAPILOT_GRPC_HOSTNAMES=127.0.0.1 INFRAPILOT_LOG_LEVEL=warn "$host" serve >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
docker run -d --name bench-policy -u 1000:1000 --restart unless-stopped \
    --health-cmd true --health-interval 60s infrapilot-test/busybox /bin/sleep 100000 >/dev/null
BENCH_BASE=$base BENCH_N=$n BENCH_SETUP_CODE=$(cat "$work/host/setup-code") BENCH_LICENSE=$(cat "$work/license.lic") \
    python3 - <<'PY'
import http.client, json, os, time, urllib.parse
base = urllib.parse.urlparse(os.environ["BENCH_BASE"])
conn = http.client.HTTPConnection(base.hostname, base.port)
def call(method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, (json.loads(data) if data else None)
call("POST", "/api/v1/setup", {"setup_code": os.environ["BENCH_SETUP_CODE"], "email": "bench@example.com",
     "password": "benchmark password", "name": "Bench"})
token = call("POST", "/api/v1/auth/login", {"email": "bench@example.com", "password": "benchmark password"})[1]["access_token"]
assert call("PUT", "/api/v1/license", {"license": os.environ["BENCH_LICENSE"]}, token)[0] == 200
assert call("POST", "/api/v1/plugins/infrapilot.policy-templates/enable", None, token)[0] == 200
agent = None
for _ in range(100):
    agents = call("GET", "/api/v1/agents", None, token)[1]
    if agents and agents[0]["status"] == "online":
        agent = agents[0]["id"]; break
    time.sleep(0.1)
path = f"/api/v1/agents/{agent}/containers/bench-policy/start"
n = int(os.environ["BENCH_N"])
def measure(label):
    for _ in range(30):
        status, body = call("POST", path, None, token)
        assert status == 200, (status, body)
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        status, body = call("POST", path, None, token)
        samples.append((time.perf_counter() - t) * 1000)
        assert status == 200, (status, body)
    samples.sort()
    q = lambda p: samples[min(len(samples) - 1, int(len(samples) * p))]
    print(f"| {label} | {n} | {q(0.5):.2f} | {q(0.9):.2f} | {q(0.99):.2f} | {samples[-1]:.2f} |")
    return q(0.5), q(0.99)
print("| container `start` through the API (already running: Docker answers 304) | samples | p50 ms | p90 ms | p99 ms | max ms |")
print("|---|---|---|---|---|---|")
off = measure("policies off (none enabled)")
for t in ["no_root_containers", "no_privileged", "no_sensitive_mounts", "require_restart_policy",
          "require_healthcheck", "require_ssl", "no_exec_production", "max_container_age"]:
    status, body = call("POST", "/api/v1/policies", {"name": t, "policy_type": t, "action": "block"}, token)
    assert status == 201, body
on = measure("8 templates on (block), the container compliant")
print(f"\nadded by the policies: p50 {on[0]-off[0]:.2f} ms, p99 {on[1]-off[1]:.2f} ms")
PY
