#!/usr/bin/env bash
# The run command: builds the dashboard, the host and the agent, makes sure a local Docker engine
# runs (installs docker.io and starts dockerd if none answers), then runs `infrapilot serve` on
# SQLite in ./data with its built-in agent managing that engine, on http://localhost:8080
# (override with INFRAPILOT_* variables; see README).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# INFRAPILOT_BUILD_PROFILE=dev builds the debug binaries the tests build too (the test command
# runs this script that way before its own tests, so the release build is not paid twice in CI).
profile=${INFRAPILOT_BUILD_PROFILE:-release}
case "$profile" in
    release) profile_flag=(--release) profile_dir=release ;;
    dev) profile_flag=() profile_dir=debug ;;
    *) echo "INFRAPILOT_BUILD_PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac

need_host_build_deps
build_web
say "building the host and the agent ($profile; the first build takes several minutes)"
cargo build "${profile_flag[@]}" -p infrapilot -p infrapilot-agent
# The plugin tool in the same profile, built apart so that it does not change the features the
# host's crates are built with (the tests would build them again); the crates it shares with the
# host are reused.
cargo build "${profile_flag[@]}" -p infrapilot-plugin-tool
bin="$(target_dir)/$profile_dir/infrapilot"
# The shipped plugins (webhook, Slack, SMTP, nginx; not the test plugins), signed with this
# machine's development key. (Building their modules while the host compiles was slower on two
# cores: docs/BENCHMARKS.md.)
PLUGIN_SET=shipped INFRAPILOT_PLUGIN_TOOL="$(target_dir)/$profile_dir/infrapilot-plugin" scripts/build-plugins.sh
export INFRAPILOT_PLUGIN_DIR="${INFRAPILOT_PLUGIN_DIR:-$(target_dir)/plugins/bundles}"
export INFRAPILOT_PLUGIN_TRUSTED_KEYS="${INFRAPILOT_PLUGIN_TRUSTED_KEYS:-$(target_dir)/plugins/dev-signing}"
# The machine's Docker engine: when none answers (and DOCKER_HOST names none), start dockerd —
# a socket file left by an engine that is gone is not an engine. An engine that is still starting
# is waited for; a dockerd that cannot start with its defaults (no overlay filesystem, no
# iptables, as in containers) is started again with the settings that work everywhere.
engine_answers() { docker info >/dev/null 2>&1; }
# A dockerd serving the default socket (one started with -H elsewhere, such as a test suite's
# private engine, is not the machine's engine).
default_engine_process() {
    local pid args
    for pid in $(pgrep -x dockerd 2>/dev/null); do
        args=" $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) " || continue
        case $args in
            *" -H"*|*" --host"*) case $args in *"/var/run/docker.sock"*) return 0 ;; esac ;;
            *) return 0 ;;
        esac
    done
    return 1
}
wait_for_engine() {
    local pid=$1
    for _ in $(seq 1 300); do
        engine_answers && return 0
        [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && return 1
        sleep 0.1
    done
    engine_answers
}
if ! engine_answers; then
    need_debian docker.io:dockerd
    engine_log=/var/log/infrapilot-dockerd.log
    if [ -n "${DOCKER_HOST:-}" ]; then
        echo "warning: no Docker engine answers at DOCKER_HOST=$DOCKER_HOST; the built-in agent will report it" >&2
    elif [ "$(id -u)" != 0 ]; then
        echo "warning: no Docker engine answers and only root can start one (sudo dockerd); the built-in agent will report it" >&2
    elif default_engine_process; then
        say "waiting for the local Docker engine that is starting"
        wait_for_engine "" || echo "warning: a dockerd runs but does not answer; the built-in agent will report it" >&2
    else
        say "starting the local Docker engine (dockerd, log in $engine_log)"
        dockerd >"$engine_log" 2>&1 &
        if ! wait_for_engine $!; then
            kill $! 2>/dev/null || true
            echo "dockerd did not start with its defaults; the end of its log:" >&2
            tail -n 5 "$engine_log" >&2
            say "starting dockerd again with the vfs storage driver and without iptables (log in $engine_log)"
            dockerd --storage-driver=vfs --iptables=false >"$engine_log" 2>&1 &
            wait_for_engine $! || { tail -n 20 "$engine_log" >&2; echo "warning: no Docker engine answers; the built-in agent will report it" >&2; }
        fi
    fi
fi
say "starting InfraPilot on ${INFRAPILOT_LISTEN:-0.0.0.0:8080} (data in ${INFRAPILOT_DATA_DIR:-./data}); Ctrl-C stops it"
echo "first start: claim the install with the setup code the log prints (also in ${INFRAPILOT_DATA_DIR:-./data}/setup-code)"
exec "$bin" serve
