#!/usr/bin/env bash
# Proxy apply figures for docs/BENCHMARKS.md: the agent's atomic apply of 1, 100 and 1,000 hosts
# (rendered by the real nginx backend plugin) against a bare `nginx -t && nginx -s reload` of the
# same files in the same nginx container, in one run. Starts its own Docker engine (with the nginx
# test image) unless DOCKER_HOST is set (then it must have infrapilot-test/nginx:latest).
# Usage: scripts/bench-proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
bash scripts/build-plugins.sh >/dev/null
if [ -z "${DOCKER_HOST:-}" ]; then
    work=$(mktemp -d /tmp/infrapilot-bench-proxy.XXXXXX)
    trap 'kill "$(cat "$work/docker/dockerd.pid")" 2>/dev/null || true' EXIT
    DOCKER_HOST=$(scripts/start-docker.sh "$work/docker")
    export DOCKER_HOST
fi
cargo build -q --release -p infrapilot-agent --example bench_proxy
say "proxy apply (release build, $(nproc) cores)"
BENCH_PLUGIN_DIR="$(target_dir)/plugins" BENCH_HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])') "$(target_dir)/release/examples/bench_proxy"
