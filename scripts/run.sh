#!/usr/bin/env bash
# The run command: builds the dashboard and the host, then runs `infrapilot serve` on SQLite in
# ./data, listening on http://localhost:8080 (override with INFRAPILOT_* variables; see README).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_debian gcc:gcc pkg-config:pkg-config
build_web
say "building the host (release; the first build takes several minutes)"
cargo build --release -p infrapilot
bin="${CARGO_TARGET_DIR:-target}/release/infrapilot"
say "starting InfraPilot on ${INFRAPILOT_LISTEN:-0.0.0.0:8080} (data in ${INFRAPILOT_DATA_DIR:-./data}); Ctrl-C stops it"
exec "$bin" serve
