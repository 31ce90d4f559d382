#!/usr/bin/env bash
# What row-level security costs the API on PostgreSQL: 20 organisations with 10,000 audit events
# each; p50/p95/p99 of the same authenticated request (GET /api/v1/audit?limit=50, in one of the
# organisations, through `X-InfraPilot-Org`) with RLS on as shipped, then with RLS disabled on
# every tenant table (the "before"), then on again; with `oha` (crates.io), correcting for
# coordinated omission. Not part of CI: results go to docs/BENCHMARKS.md.
# Usage: scripts/bench-rls.sh   (BENCH_DURATION=20s BENCH_RATE=200 BENCH_PROFILE=release|dev)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

duration=${BENCH_DURATION:-20s}
rate=${BENCH_RATE:-200}
profile=${BENCH_PROFILE:-release}
orgs=20
rows=10000
target=$(target_dir)
tools="$target/tools"

need_host_build_deps
need_debian curl:curl python3:python3 postgresql:/usr/lib/postgresql
if [ ! -x "$tools/bin/oha" ]; then
    say "installing oha (HTTP load generator) into $tools"
    cargo install oha --locked --version 1.16.0 --root "$tools"
fi
oha="$tools/bin/oha"
if [ ! -d web/dist ]; then build_web; fi
case "$profile" in
    release) say "building the host (release)"; cargo build --release -p infrapilot; bin="$target/release/infrapilot" ;;
    dev) say "building the host (dev)"; cargo build -p infrapilot; bin="$target/debug/infrapilot" ;;
    *) echo "BENCH_PROFILE must be release or dev" >&2; exit 2 ;;
esac

work=$(mktemp -d /tmp/infrapilot-bench-rls.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
pg_dir="/tmp/infrapilot-bench-pg-$$"
admin_url=$(PGPORT=$pg_port scripts/start-postgres.sh "$pg_dir")
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
psql_admin() { "$pg_bin/psql" -q -v ON_ERROR_STOP=1 "$@"; }
psql_admin "$admin_url" -c "CREATE DATABASE bench"
db_url="${admin_url%/postgres}/bench"
port=$(free_port)
base="http://127.0.0.1:$port"
INFRAPILOT_DATABASE_URL="$db_url" INFRAPILOT_EDITION=enterprise INFRAPILOT_BUILTIN_AGENT=false \
    INFRAPILOT_API_RATE_PER_ORG=0 INFRAPILOT_API_RATE_PER_TOKEN=0 INFRAPILOT_DATA_DIR="$work/data" \
    INFRAPILOT_LISTEN="127.0.0.1:$port" INFRAPILOT_GRPC_LISTEN="127.0.0.1:$(free_port)" INFRAPILOT_LOG_LEVEL=warn \
    "$bin" serve >"$work/serve.log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    su postgres -s /bin/bash -c "$pg_bin/pg_ctl -D $pg_dir/data -m fast stop" >/dev/null 2>&1 || true
    rm -rf "$work" "$pg_dir"
}
trap cleanup EXIT
for _ in $(seq 1 200); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
code=$(cat "$work/data/setup-code")
curl -fsS -H 'content-type: application/json' -d '{"setup_code":"'"$code"'","email":"bench@example.com","password":"benchmark password","name":"Bench"}' "$base/api/v1/setup" >/dev/null
token=$(curl -fsS -H 'content-type: application/json' -d '{"email":"bench@example.com","password":"benchmark password"}' "$base/api/v1/auth/login" | json '["access_token"]')

say "making $orgs organisations with $rows audit events each"
org_ids=()
for n in $(seq 1 $orgs); do
    org_ids+=("$(curl -fsS -H "Authorization: Bearer $token" -H 'content-type: application/json' \
        -d '{"name":"bench '"$n"'"}' "$base/api/v1/orgs" | json '["id"]')")
done
# Audit rows written directly (the list reads them; the chain is not verified here).
psql_admin "$db_url" -c "
INSERT INTO audit_events (org_id, seq, id, at, actor_id, actor, action, target, ip, outcome, detail, prev_hash, hash)
SELECT o.id, 1000 + g, md5(o.id || g::text), 1780000000000 + g * 1000, NULL, 'bench@example.com', 'bench.event',
       'thing:' || g, '127.0.0.1', 'success', '{}', repeat('0', 64), repeat('1', 64)
FROM organizations o CROSS JOIN generate_series(1, $rows) AS g WHERE o.name LIKE 'bench %';
ANALYZE;"
org=${org_ids[6]}
tables=$(psql_admin "$db_url" -At -c "SELECT relname FROM pg_class WHERE relrowsecurity AND relkind = 'r'")

measure() {
    local label=$1
    "$oha" --no-tui --output-format json -z "$duration" -q "$rate" -c 16 --latency-correction \
        -H "Authorization: Bearer $token" -H "X-InfraPilot-Org: $org" \
        "$base/api/v1/audit?limit=50" >"$work/oha.json"
    python3 - "$work/oha.json" "$label" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
s = d["summary"]
codes = d.get("statusCodeDistribution", {})
ok = codes.get("200", 0)
total = sum(codes.values())
ms = lambda v: f"{v * 1000:.2f}"
print(f"| {sys.argv[2]} | {s['requestsPerSec']:.0f} | {ms(p['p50'])} | {ms(p['p95'])} | {ms(p['p99'])} | {ok}/{total} |")
PY
}
set_rls() {
    local sql=""
    for t in $tables; do
        if [ "$1" = on ]; then
            sql+="ALTER TABLE $t ENABLE ROW LEVEL SECURITY; ALTER TABLE $t FORCE ROW LEVEL SECURITY; "
        else
            sql+="ALTER TABLE $t NO FORCE ROW LEVEL SECURITY; ALTER TABLE $t DISABLE ROW LEVEL SECURITY; "
        fi
    done
    psql_admin "$db_url" -c "$sql"
}

seen=$(curl -fsS -H "Authorization: Bearer $token" -H "X-InfraPilot-Org: $org" "$base/api/v1/audit?limit=50" \
    | json '["events"].__len__()')
[ "$seen" = 50 ] || { echo "the measured request returns $seen events, not 50" >&2; exit 1; }
say "warming up"
"$oha" --no-tui --output-format quiet -z 5s -q "$rate" -c 16 -H "Authorization: Bearer $token" \
    -H "X-InfraPilot-Org: $org" "$base/api/v1/audit?limit=50"
say "load: ${rate} req/s for ${duration} each, RLS on / off / on"
first=$(measure "RLS on (as shipped)")
set_rls off
before=$(measure "RLS off (before)")
set_rls on
second=$(measure "RLS on, again")

echo
echo "$(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') · $profile build · $orgs organisations × $rows audit events · oha $("$oha" --version | awk '{print $2}')"
echo
echo "| GET /api/v1/audit?limit=50 in one organisation | achieved req/s | p50 ms | p95 ms | p99 ms | 200 OK |"
echo "|---|---|---|---|---|---|"
echo "$first"
echo "$before"
echo "$second"
