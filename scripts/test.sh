#!/usr/bin/env bash
# The test command (CI runs it through .ci/run): installs what is missing, then runs
#   1. cargo fmt --check and cargo clippy --all-targets -D warnings
#   2. the dashboard's type check and build
#   3. the plugins built to WebAssembly components (scripts/build-plugins.sh), then the Rust tests
#      on SQLite, on a PostgreSQL cluster and with a Docker engine this script starts (with a
#      locally built nginx image for the proxy tests, Debian's pebble as the ACME server, and
#      gixy from PyPI checking the nginx configuration rendered for the test hosts)
#   4. the committed OpenAPI document is current; a smoke run of the binary on PostgreSQL (one variable switches the backend);
#      schemathesis (PyPI) against a running host: every check and phase, 0 failures (scripts/schemathesis.sh)
#   5. the browser test in Debian's Chromium (setup → login → TOTP → logout → MFA login → audit →
#      nodes and token one-liner → containers by stack → logs follow → terminal → stop asks first → delete →
#      plugins → alert channel from its schema → send test → crash rule → alert history →
#      proxy host from the container picker, applied and served by nginx → nginx's error shown →
#      an uploaded certificate, a wrong key refused, a host served over HTTPS with it)
#   6. the README's two commands in that order: scripts/run.sh serves (next to the machine's own
#      Docker engine, started if none answers), then the proxy tests pass with a private engine
#      next to it, and no test process is left behind
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# CI builds each clone once: incremental caches only cost time and disk there (they grew to tens
# of GB over a day of clones sharing one target directory).
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}; fi

work=$(mktemp -d /tmp/infrapilot-test.XXXXXX)
chmod 755 "$work"
pids=()
# The processes whose environment carries INFRAPILOT_TEST_RUN_MARK=$1 (set on a test command:
# whatever it spawns inherits it), one "pid command line" per line; fails when there are none.
processes_marked() {
    local found=1 env pid
    for env in $(grep -lzxF -- "INFRAPILOT_TEST_RUN_MARK=$1" /proc/[0-9]*/environ 2>/dev/null); do
        pid=${env#/proc/}
        pid=${pid%/environ}
        echo "$pid $({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)"
        found=0
    done
    return $found
}
# Fails, listing them, when processes the tests started under this run's mark still run.
no_test_leftovers() {
    local leftover
    sleep 1
    if leftover=$(processes_marked "$work"); then
        echo "processes left behind by the tests:" >&2
        echo "$leftover" >&2
        return 1
    fi
}
cleanup() {
    # The run's own outcome is the exit status, whatever cleaning up meets.
    local status=$?
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    # Whatever the tests left behind under this run's mark.
    for p in $(processes_marked "$work" | cut -d' ' -f1); do kill -9 "$p" 2>/dev/null; done
    # The run command's build or server, if the stage that started it failed (not the Docker
    # engine it may have started: see below).
    [ -n "${run_session:-}" ] && pkill -s "$run_session" -v -x 'dockerd|containerd|containerd-shim.*' 2>/dev/null
    # CI's machine is left with no engine running if it had none (a newcomer keeps the one the
    # run command started).
    if [ "${stop_system_engine_at_exit:-}" = true ] && [ "${CI:-}" = true ] && [ -f /var/run/docker.pid ]; then
        engine_pid=$(cat /var/run/docker.pid 2>/dev/null)
        if [ -n "$engine_pid" ]; then
            kill "$engine_pid" 2>/dev/null
            for _ in $(seq 1 300); do kill -0 "$engine_pid" 2>/dev/null || break; sleep 0.1; done
        fi
    fi
    for engine in "$work/docker" "$work/docker-next"; do
        [ -d "$engine" ] && bash scripts/stop-docker.sh "$engine"
    done
    if [ -d "$work/pg/data" ]; then
        su postgres -s /bin/bash -c "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/pg_ctl -D $work/pg/data -m immediate stop" >/dev/null 2>&1
    fi
    rm -rf "$work" 2>/dev/null || echo "left $work behind (still mounted?)" >&2
    exit "$status"
}
trap cleanup EXIT

say "checking Debian packages (PostgreSQL, oathtool, Chromium, an SMTP server for the alert tests, pebble for ACME, testssl for the served TLS, OpenLDAP for directory sign-in, xmlsec1 for the SAML identity provider, ClickHouse for the log sink, compilers)"
need_host_build_deps
need_debian postgresql:/usr/lib/postgresql oathtool:oathtool \
    chromium:/usr/bin/chromium curl:curl python3:python3 \
    python3-aiosmtpd:/usr/lib/python3/dist-packages/aiosmtpd pebble:/usr/bin/pebble \
    python3-venv:/usr/share/doc/python3-venv testssl.sh:/usr/bin/testssl \
    slapd:/usr/sbin/slapd ldap-utils:/usr/bin/ldapmodify xmlsec1:/usr/bin/xmlsec1 \
    clickhouse-server:/usr/sbin/clickhouse-server docker-registry:/usr/bin/docker-registry

say "the SAML identity provider's Python (pysaml2 7.5.5 from PyPI, in a virtualenv kept between runs)"
export SAML_VENV=${SAML_VENV:-$HOME/.cache/infrapilot/saml-venv}
if ! "$SAML_VENV/bin/python" -c 'import saml2' 2>/dev/null; then
    python3 -m venv "$SAML_VENV"
    "$SAML_VENV/bin/pip" install -q pysaml2==7.5.5
fi

say "cargo fmt --check"
cargo fmt --all -- --check

say "dependency rules: agent, proto, sdk, plugin/ and plugins/ use no host/ crate; no wasmtime in plugin types, licensing or the SDK tool"
python3 scripts/check-dependencies.py

say "released WIT contract versions are unchanged (wit/frozen.sha256)"
(cd wit && grep -v '^#' frozen.sha256 | sha256sum --check --strict --quiet)
# …a frozen directory gains no file either (hidden ones included: the WIT parser reads every
# *.wit), and every version but the newest is frozen (so deleting its lines cannot unfreeze it).
frozen_dirs=$(grep -v '^#' wit/frozen.sha256 | awk '{print $2}' | xargs -n1 dirname | sort -u)
for dir in $frozen_dirs; do
    listed=$(grep -v '^#' wit/frozen.sha256 | awk '{print $2}' | grep "^$dir/" | sort)
    present=$(cd wit && find "$dir" -mindepth 1 | sort)
    [ "$listed" = "$present" ] || { echo "wit/$dir is frozen but its files differ from wit/frozen.sha256" >&2; exit 1; }
done
newest=$(cd wit && ls -d since_v* | sort -V | tail -1)
for dir in $(cd wit && ls -d since_v* | sort -V); do
    [ "$dir" = "$newest" ] || echo "$frozen_dirs" | grep -qx "$dir" \
        || { echo "wit/$dir is not the newest contract version, so it must be frozen in wit/frozen.sha256" >&2; exit 1; }
done
echo "frozen: $(echo $frozen_dirs); in development: $newest"

build_web

say "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

say "plugins/ (its own workspace): cargo fmt --check and clippy"
tdir=$(target_dir)
(cd plugins && cargo fmt --all -- --check && cargo clippy --all-targets --target-dir "$tdir" -- -D warnings)

say "building the plugins into WebAssembly components (scripts/build-plugins.sh)"
bash scripts/build-plugins.sh

say "starting PostgreSQL for the storage and API suites"
pg_url=$(PGPORT=${INFRAPILOT_TEST_PGPORT:-55433} scripts/start-postgres.sh "$work/pg")
export INFRAPILOT_TEST_POSTGRES_URL=$pg_url
echo "PostgreSQL at $pg_url"

say "starting a private Docker engine (docker.io, vfs) with the busybox and nginx test images"
export DOCKER_HOST=$(scripts/start-docker.sh "$work/docker")
echo "Docker at $DOCKER_HOST"

say "gixy (PyPI) in a virtualenv: the proxy tests run it on the nginx configuration they render"
python3 -m venv "$work/gixy"
"$work/gixy/bin/pip" install --quiet --disable-pip-version-check gixy==0.1.21
export INFRAPILOT_TEST_GIXY="$work/gixy/bin/gixy"

say "Rust tests (SQLite, PostgreSQL, Docker)"
status=0
INFRAPILOT_TEST_RUN_MARK="$work" cargo test --workspace || status=$?
# A test leaves no process behind, failed or not (a failure of the tests themselves is reported
# as theirs).
no_test_leftovers || { [ "$status" != 0 ] || status=1; }
[ "$status" = 0 ] || exit "$status"

say "the SDK guide followed outside the workspace (scripts/test-plugin-template.sh)"
bash scripts/test-plugin-template.sh

# `cargo test --workspace` built the binaries the system tests run (each binary's package has an
# integration test, so cargo builds it: host/infrapilot/tests, agent/tests/cli.rs); a separate
# `cargo build` would compile the host crates again with other features (the tests' dev-dependencies).
bin="$tdir/debug/infrapilot"
[ -x "$bin" ] && [ -x "$tdir/debug/infrapilot-agent" ] || { echo "cargo test did not leave $bin" >&2; exit 1; }

say "the committed OpenAPI document (web/openapi.json, source of the dashboard's types) matches the code"
"$bin" openapi > "$work/openapi.json"
if ! diff -u web/openapi.json "$work/openapi.json"; then
    echo "web/openapi.json is stale: run  $bin openapi > web/openapi.json  and rebuild the dashboard" >&2
    exit 1
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {
    for _ in $(seq 1 100); do
        curl -fsS "$1/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "the server at $1 did not become ready; its log:" >&2
    cat "$2" >&2
    return 1
}

say "smoke run on PostgreSQL: INFRAPILOT_DATABASE_URL alone switches the backend"
psql "$pg_url" -qc "CREATE DATABASE infrapilot_smoke" >/dev/null
port=$(free_port)
INFRAPILOT_GRPC_LISTEN="127.0.0.1:$(free_port)" INFRAPILOT_DATABASE_URL="${pg_url%/postgres}/infrapilot_smoke" INFRAPILOT_DATA_DIR="$work/pgdata" \
    INFRAPILOT_LISTEN="127.0.0.1:$port" "$bin" serve >"$work/pg-serve.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$port" "$work/pg-serve.log"
curl -fsS "http://127.0.0.1:$port/readyz" | grep -q '"backend":"postgres"'
setup_code=$(cat "$work/pgdata/setup-code")
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
    -d '{"setup_code":"'"$setup_code"'","email":"smoke@example.com","password":"smoke test password","name":"Smoke"}' "http://127.0.0.1:$port/api/v1/setup")
[ "$code" = 201 ] || { echo "setup on PostgreSQL answered $code" >&2; exit 1; }
INFRAPILOT_DATABASE_URL="${pg_url%/postgres}/infrapilot_smoke" INFRAPILOT_DATA_DIR="$work/pgdata" "$bin" audit verify
echo "PostgreSQL smoke run OK"

say "schemathesis against the API on SQLite with its built-in agent and Docker (report in reports/schemathesis)"
bash scripts/schemathesis.sh "${INFRAPILOT_SCHEMATHESIS_SECONDS:-180}"

say "browser test in Chromium (tests/e2e)"
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
port=$(free_port)
proxy_http=$(free_port)
proxy_https=$(free_port)
INFRAPILOT_GRPC_LISTEN="127.0.0.1:$(free_port)" INFRAPILOT_DATA_DIR="$work/e2e-data" INFRAPILOT_LISTEN="127.0.0.1:$port" \
    INFRAPILOT_PLUGIN_DIR="$tdir/plugins/bundles" INFRAPILOT_PLUGIN_TRUSTED_KEYS="$tdir/plugins/dev-signing" \
    INFRAPILOT_PLUGIN_EGRESS_ALLOW=127.0.0.1 INFRAPILOT_ALERT_TICK_SECONDS=1 \
    INFRAPILOT_AGENT_NGINX_IMAGE=infrapilot-test/nginx:latest INFRAPILOT_AGENT_NGINX_CONTAINER=infrapilot-e2e-nginx \
    INFRAPILOT_AGENT_HTTP_PORT="$proxy_http" INFRAPILOT_AGENT_HTTPS_PORT="$proxy_https" INFRAPILOT_AGENT_PROXY_BIND=127.0.0.1 \
    "$bin" serve >"$work/e2e-serve.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$port" "$work/e2e-serve.log"
if ! (cd tests/e2e && E2E_SETUP_CODE="$(cat "$work/e2e-data/setup-code")" INFRAPILOT_URL="http://127.0.0.1:$port" E2E_PROXY_HTTP_PORT="$proxy_http" E2E_PROXY_HTTPS_PORT="$proxy_https" node run.mjs); then
    echo "browser test failed; server log:" >&2
    tail -n 50 "$work/e2e-serve.log" >&2
    exit 1
fi
INFRAPILOT_DATA_DIR="$work/e2e-data" "$bin" audit verify

say "browser test of policies (tests/e2e/policies.mjs): an enterprise host licensed for policies, a container created from the form, a template in warn then block, the violations page"
"$bin" license keygen --out "$work/policy-vendor.key" >/dev/null
"$bin" license issue --key "$work/policy-vendor.key" --licensee E2E --features policies \
    --expires 2099-01-01 --out "$work/policy-license.lic"
port=$(free_port)
INFRAPILOT_EDITION=enterprise INFRAPILOT_LICENSE_PUBLIC_KEY="$work/policy-vendor.pub" \
    INFRAPILOT_GRPC_LISTEN="127.0.0.1:$(free_port)" INFRAPILOT_DATA_DIR="$work/policy-data" INFRAPILOT_LISTEN="127.0.0.1:$port" \
    INFRAPILOT_PLUGIN_DIR="$tdir/plugins/bundles" INFRAPILOT_PLUGIN_TRUSTED_KEYS="$tdir/plugins/dev-signing" \
    "$bin" serve >"$work/policy-serve.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$port" "$work/policy-serve.log"
if ! (cd tests/e2e && E2E_SETUP_CODE="$(cat "$work/policy-data/setup-code")" E2E_LICENSE="$(cat "$work/policy-license.lic")" \
    INFRAPILOT_URL="http://127.0.0.1:$port" node policies.mjs); then
    echo "policies browser test failed; server log:" >&2
    tail -n 50 "$work/policy-serve.log" >&2
    exit 1
fi
INFRAPILOT_DATA_DIR="$work/policy-data" "$bin" audit verify

say "browser test of the SaaS onboarding (tests/e2e/onboarding.mjs): sign-up, mailed links through aiosmtpd, the one-liner, organisations"
mkdir -p "$work/maildir/new" "$work/maildir/cur" "$work/maildir/tmp"
smtp_port=$(free_port)
/usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$smtp_port" -c aiosmtpd.handlers.Mailbox "$work/maildir" >"$work/smtp.log" 2>&1 &
pids+=($!)
port=$(free_port)
INFRAPILOT_EDITION=saas INFRAPILOT_PUBLIC_URL="http://127.0.0.1:$port" INFRAPILOT_BUILTIN_AGENT=false INFRAPILOT_SMTP_HOST=127.0.0.1 INFRAPILOT_SMTP_PORT="$smtp_port" INFRAPILOT_SMTP_SECURITY=none \
    INFRAPILOT_PLUGIN_DIR="$tdir/plugins/bundles" INFRAPILOT_PLUGIN_TRUSTED_KEYS="$tdir/plugins/dev-signing" INFRAPILOT_PLUGIN_EGRESS_ALLOW=127.0.0.1 \
    INFRAPILOT_GRPC_LISTEN="127.0.0.1:$(free_port)" INFRAPILOT_DATA_DIR="$work/saas-data" INFRAPILOT_LISTEN="127.0.0.1:$port" \
    "$bin" serve >"$work/saas-serve.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$port" "$work/saas-serve.log"
if ! (cd tests/e2e && E2E_SETUP_CODE="$(cat "$work/saas-data/setup-code")" E2E_MAILDIR="$work/maildir" INFRAPILOT_URL="http://127.0.0.1:$port" node onboarding.mjs); then
    echo "onboarding browser test failed; server log:" >&2
    tail -n 50 "$work/saas-serve.log" >&2
    exit 1
fi

say "browser test of single sign-on (tests/e2e/sso.mjs): OIDC against a real OpenID Provider (forged answers refused, group overage through a Graph stand-in), LDAP against slapd, SAML against pysaml2"
if ! (cd tests/e2e && INFRAPILOT_URL="http://127.0.0.1:$port" node sso.mjs); then
    echo "SSO browser test failed; server log:" >&2
    tail -n 50 "$work/saas-serve.log" >&2
    exit 1
fi
INFRAPILOT_DATA_DIR="$work/saas-data" "$bin" audit verify

say "the README's two commands in that order: the run command (scripts/run.sh), then the proxy tests next to the Docker engine it uses"
# As a newcomer would: the run command finds (or starts) the machine's own Docker engine, whose
# firewall drops forwarded traffic; the tests' private engine must still carry traffic between
# its containers. Built as the tests are (dev profile: only the host crates compile again, with
# the features of a plain build, not the release build of wasmtime and everything else).
bash scripts/stop-docker.sh "$work/docker"
unset DOCKER_HOST
docker info >/dev/null 2>&1 || stop_system_engine_at_exit=true
port=$(free_port)
# Its own session, so that stopping it also stops a build it is still running (no job control
# here: setsid does not fork, so $! is the session's id).
INFRAPILOT_BUILD_PROFILE=dev INFRAPILOT_LISTEN="127.0.0.1:$port" INFRAPILOT_DATA_DIR="$work/run-data" \
    INFRAPILOT_GRPC_LISTEN="127.0.0.1:$(free_port)" setsid bash scripts/run.sh >"$work/run.log" 2>&1 &
run_pid=$!
run_session=$run_pid
served=false
deadline=$((SECONDS + 900))
while [ "$SECONDS" -lt "$deadline" ]; do
    if curl -fsS --max-time 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then served=true; break; fi
    kill -0 "$run_pid" 2>/dev/null || break
    sleep 0.5
done
if [ "$served" != true ]; then
    echo "the run command did not serve within 15 minutes (or ended); its log:" >&2
    tail -n 40 "$work/run.log" >&2
    exit 1
fi
if ! curl -fsS --max-time 5 -o "$work/run-setup.json" "http://127.0.0.1:$port/api/v1/setup" \
    || ! grep -q '"needed":true' "$work/run-setup.json"; then
    echo "the run command's server does not offer the first-run setup; its log:" >&2
    tail -n 40 "$work/run.log" >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    echo "the run command left no Docker engine answering; its log:" >&2
    tail -n 40 "$work/run.log" >&2
    exit 1
fi
# It stops on SIGTERM (Ctrl-C's sibling), promptly.
kill "$run_pid"
for _ in $(seq 1 150); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$run_pid" 2>/dev/null; then echo "the run command's server ignored SIGTERM for 15 s" >&2; exit 1; fi
wait "$run_pid" 2>/dev/null || true
run_session=
echo "the run command served on :$port and stopped on SIGTERM (system engine: $(docker info --format '{{.ServerVersion}}'))"
DOCKER_HOST=$(scripts/start-docker.sh "$work/docker-next")
[ -n "$DOCKER_HOST" ] || { echo "the tests' private engine did not start next to the system one" >&2; exit 1; }
export DOCKER_HOST
status=0
INFRAPILOT_TEST_RUN_MARK="$work" cargo test -p infrapilot-system-tests --test proxy || status=$?
bash scripts/stop-docker.sh "$work/docker-next"
unset DOCKER_HOST
no_test_leftovers || { [ "$status" != 0 ] || status=1; }
[ "$status" = 0 ] || exit "$status"

say "all checks passed"
