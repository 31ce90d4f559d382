#!/usr/bin/env bash
# schemathesis (PyPI) against a running host: SQLite, its built-in agent on the Docker engine at
# DOCKER_HOST (start one with scripts/start-docker.sh), the first-party plugins, a super-admin
# API token; every check, every phase, for SECONDS. Fails on any failure or error. What no
# schema can state is in scripts/schemathesis.toml, each entry with its reason.
# scripts/test.sh runs it.
#   scripts/schemathesis.sh [SECONDS]      (default 180; report in reports/schemathesis)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
seconds=${1:-180}
tdir=$(target_dir)
bin="$tdir/debug/infrapilot"
[ -x "$bin" ] || cargo build -p infrapilot
work=$(mktemp -d /tmp/infrapilot-schemathesis.XXXXXX)
pid=
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
# No request rate limits: the fuzzer sends far more than an organisation's share.
INFRAPILOT_API_RATE_PER_ORG=0 INFRAPILOT_API_RATE_PER_TOKEN=0 \
INFRAPILOT_GRPC_LISTEN="127.0.0.1:$(free_port)" INFRAPILOT_DATA_DIR="$work/data" INFRAPILOT_LISTEN="127.0.0.1:$port" \
    INFRAPILOT_PLUGIN_DIR="$tdir/plugins/bundles" INFRAPILOT_PLUGIN_TRUSTED_KEYS="$tdir/plugins/dev-signing" \
    INFRAPILOT_AGENT_NGINX_IMAGE=infrapilot-test/nginx:latest INFRAPILOT_AGENT_NGINX_CONTAINER=infrapilot-st-nginx \
    INFRAPILOT_AGENT_HTTP_PORT="$(free_port)" INFRAPILOT_AGENT_HTTPS_PORT="$(free_port)" INFRAPILOT_AGENT_PROXY_BIND=127.0.0.1 \
    "$bin" serve >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
token=$(python3 scripts/schemathesis-token.py "http://127.0.0.1:$port" "$(cat "$work/data/setup-code")")
report_dir="${INFRAPILOT_REPORT_DIR:-$(pwd)/reports}/schemathesis"
rm -rf "$report_dir"; mkdir -p "$report_dir"
PYTHONPATH="$(pwd)/scripts" SCHEMATHESIS_HOOKS=schemathesis_hooks \
"$work/venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "http://127.0.0.1:$port/api/v1/openapi.json" \
    --checks all --phases examples,coverage,fuzzing,stateful --max-time "$seconds" \
    --header "Authorization: Bearer $token" --suppress-health-check all \
    --report junit,ndjson --report-dir "$report_dir" --no-color || status=$?
if [ "${status:-0}" != 0 ]; then
    cp "$work/serve.log" "$report_dir/serve.log"
    echo "schemathesis failed (exit $status); the server's log is in $report_dir/serve.log" >&2
    exit "$status"
fi
