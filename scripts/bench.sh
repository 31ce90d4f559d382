#!/usr/bin/env bash
# API latency and idle memory of the host, reproducibly:
#   - idle RSS of `infrapilot serve` 60 s after start (setup done, no traffic)
#   - p50/p95/p99 of authenticated GET /api/v1/users and GET /api/v1/audit (10,000 events in the
#     log, first page of 50) at 500 requests/s for 30 s each, with `oha` (crates.io) correcting
#     for coordinated omission
# Usage: scripts/bench.sh   (BENCH_DURATION=30s BENCH_RATE=500 BENCH_IDLE_SECONDS=60 to change)
# Prints a Markdown table for docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

duration=${BENCH_DURATION:-30s}
rate=${BENCH_RATE:-500}
idle=${BENCH_IDLE_SECONDS:-60}
target=${CARGO_TARGET_DIR:-target}
tools="$target/tools"

need_host_build_deps
need_debian curl:curl python3:python3
if [ ! -x "$tools/bin/oha" ]; then
    say "installing oha (HTTP load generator) into $tools"
    cargo install oha --locked --version 1.16.0 --root "$tools"
fi
oha="$tools/bin/oha"
if [ ! -d web/dist ]; then build_web; fi
say "building the host (release)"
cargo build --release -p infrapilot
bin="$target/release/infrapilot"

work=$(mktemp -d /tmp/infrapilot-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
INFRAPILOT_API_RATE_PER_ORG=0 INFRAPILOT_API_RATE_PER_TOKEN=0 INFRAPILOT_DATA_DIR="$work" INFRAPILOT_LISTEN="127.0.0.1:$port" INFRAPILOT_LOG_LEVEL=warn "$bin" serve >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
code=$(cat "$work/setup-code")
curl -fsS -H 'content-type: application/json' -d '{"setup_code":"'"$code"'","email":"bench@example.com","password":"benchmark password","name":"Bench"}' "$base/api/v1/setup" >/dev/null
token=$(curl -fsS -H 'content-type: application/json' -d '{"email":"bench@example.com","password":"benchmark password"}' "$base/api/v1/auth/login" | json '["access_token"]')

rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$pid/status"; }
say "idle for ${idle} s"
sleep "$idle"
idle_rss=$(rss_kb)

say "seeding 10,000 audit events (API tokens created through the API)"
newest_seq() { curl -fsS -H "Authorization: Bearer $token" "$base/api/v1/audit?limit=1" | json '["events"][0]["seq"]'; }
seed_started=$(date +%s.%N)
while events=$(newest_seq) && [ "$events" -lt 10000 ]; do
    "$oha" --no-tui --output-format quiet -n $((10000 - events)) -c 8 -m POST -T application/json \
        -H "Authorization: Bearer $token" -d '{"name":"bench","role":"viewer","expires_in_days":1}' \
        "$base/api/v1/tokens"
done
seed_seconds=$(python3 -c "import time; print(f'{time.time() - $seed_started:.1f}')")

measure() {
    local path=$1
    "$oha" --no-tui --output-format json -z "$duration" -q "$rate" -c 16 --latency-correction \
        -H "Authorization: Bearer $token" "$base$path" >"$work/oha.json"
    python3 - "$work/oha.json" "$path" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
s = d["summary"]
codes = d.get("statusCodeDistribution", {})
ok = codes.get("200", 0)
total = sum(codes.values())
ms = lambda v: f"{v * 1000:.2f}"
print(f"| GET {sys.argv[2]} | {s['requestsPerSec']:.0f} | {ms(p['p50'])} | {ms(p['p95'])} | {ms(p['p99'])} | {ok}/{total} |")
PY
}

say "load: ${rate} req/s for ${duration} per endpoint"
rows=$(measure /api/v1/users; measure /api/v1/audit)
loaded_rss=$(rss_kb)

echo
echo "$(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · SQLite · ${events} audit events · oha $("$oha" --version | awk '{print $2}')"
echo
echo "| request | achieved req/s | p50 ms | p95 ms | p99 ms | 200 OK |"
echo "|---|---|---|---|---|---|"
echo "$rows"
echo
echo "| memory | RSS |"
echo "|---|---|"
echo "| idle, ${idle} s after start | $((idle_rss / 1024)) MiB ($idle_rss KiB) |"
echo "| after the load above | $((loaded_rss / 1024)) MiB ($loaded_rss KiB) |"
echo
echo "Seeding: ${events} audited writes (POST /api/v1/tokens, 8 concurrent clients) took ${seed_seconds} s."
