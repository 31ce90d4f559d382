#!/usr/bin/env bash
# The long chaos run of issue 17 (outside CI; its result goes in docs/BENCHMARKS.md): the system
# test `lines_survive_agent_kills_and_a_host_restart_exactly_once` with 100 SIGKILLs of the agent
# at random moments and the host down for 10 minutes in between, a container writing about
# 1,000 numbered lines a second throughout; it passes only if every line is stored exactly once.
# Usage: scripts/chaos-logs.sh [KILLS [OUTAGE_SECONDS]]   (defaults 100 and 600; starts its own
# Docker engine). INFRAPILOT_CHAOS_SEED repeats a run's kill moments.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
kills=${1:-100}
outage=${2:-600}
need_host_build_deps
work=$(mktemp -d /tmp/ipchaos.XXXXXX)
cleanup() {
    [ -f "$work/docker/dockerd.pid" ] && kill "$(cat "$work/docker/dockerd.pid")" 2>/dev/null || true
    sleep 1; rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
export DOCKER_HOST=$(scripts/start-docker.sh "$work/docker")
say "building the host, the agent and the system tests"
cargo build -p infrapilot -p infrapilot-agent
say "chaos: $kills agent kills, the host down for $outage s"
started=$(date +%s)
INFRAPILOT_CHAOS_KILLS=$kills INFRAPILOT_CHAOS_OUTAGE_SECONDS=$outage \
    cargo test -p infrapilot-system-tests --test logs lines_survive_agent_kills -- --nocapture 2>&1 \
    | grep -E "^chaos:|test result|panicked|stored more than once|timed out"
echo "chaos run: $kills kills, $outage s outage, $(( $(date +%s) - started )) s in all"
