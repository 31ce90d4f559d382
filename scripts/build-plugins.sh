#!/usr/bin/env bash
# Builds the plugins in plugins/ (or the plugin crate given as $1, a directory with Cargo.toml and
# manifest.json) into WebAssembly components: <target>/plugins/<crate>.wasm, or $PLUGIN_OUT/<crate>.wasm.
#   scripts/build-plugins.sh                                   first-party plugins
#   PLUGIN_OUT=dist ../infrapilot/scripts/build-plugins.sh .   a plugin of your own (sdk/README.md)
# PLUGIN_SET=shipped leaves out the test plugins (plugins/testing); PLUGIN_MODULES_ONLY=1 stops
# after the wasm32 modules (the run command builds them while the host compiles, then calls again).
#
# Two routes give the same components:
#   - an installed wasm32-unknown-unknown target (rustup on a machine with internet): plain
#     `cargo build --release --target wasm32-unknown-unknown`;
#   - otherwise Debian's Rust 1.96 with its library source (rustc-web, cargo-web, rust-web-src, rust-web-llvm,
#     lld-22) rebuilding std for wasm32 (RUSTC_BOOTSTRAP=1 -Zbuild-std=std,panic_abort).
# Then `infrapilot-plugin componentize` (sdk/tool, wit-component) wraps each core module.
set -euo pipefail
# Paths given by the caller are relative to where it was called from.
workspace=${1:+$(cd "$1" && pwd)}
out=${PLUGIN_OUT:+$(mkdir -p "$PLUGIN_OUT" && cd "$PLUGIN_OUT" && pwd)}
cd "$(dirname "$0")/.."
. scripts/lib.sh

root=$(pwd)
workspace=${workspace:-$root/plugins}
out=${out:-$(target_dir)/plugins}
wasm_target_dir="$(target_dir)/wasm"
mkdir -p "$out"

route=rustup
if ! rustc --print target-libdir --target wasm32-unknown-unknown 2>/dev/null | xargs -I{} sh -c 'ls {}/libstd-*.rlib' >/dev/null 2>&1; then
    route=debian
    need_debian rustc-web:/usr/share/doc/rustc-web cargo-web:/usr/share/doc/cargo-web \
        rust-web-src:/usr/lib/rustlib/src/rust/library/std rust-web-llvm:/usr/bin/rust-lld lld-22:/usr/bin/lld-22
fi

# Every cdylib of the workspace (only the shipped ones with PLUGIN_SET=shipped): package names and
# directories from cargo metadata.
crates=$(cd "$workspace" && cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
shipped_only = sys.argv[1] == "shipped"
for p in json.load(sys.stdin)["packages"]:
    directory = p["manifest_path"].rsplit("/", 1)[0]
    if shipped_only and "/plugins/testing/" in directory + "/":
        continue
    if any("cdylib" in t["crate_types"] for t in p["targets"]):
        print(p["name"] + " " + directory)
' "${PLUGIN_SET:-all}")
packages=()
while read -r package _; do [ -n "$package" ] && packages+=(-p "$package"); done <<<"$crates"
[ "${#packages[@]}" -gt 0 ] || { echo "build-plugins: no plugin crate (cdylib) in ${workspace#$root/}" >&2; exit 1; }

say "building plugin modules in ${workspace#$root/} (route: $route)"
if [ "$route" = rustup ]; then
    (cd "$workspace" && cargo build --release --target wasm32-unknown-unknown --target-dir "$wasm_target_dir" "${packages[@]}")
else
    (cd "$workspace" && PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --release \
        --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort --target-dir "$wasm_target_dir" "${packages[@]}")
fi

if [ "${PLUGIN_MODULES_ONLY:-}" = 1 ]; then
    echo "plugin modules in ${wasm_target_dir#$root/}/wasm32-unknown-unknown/release"
    exit 0
fi

say "componentizing (sdk/tool)"
# The run command builds the tool in release with the host (one build of their shared crates) and
# passes it in; otherwise the debug one the tests build.
tool="${INFRAPILOT_PLUGIN_TOOL:-}"
if [ -z "$tool" ]; then
    cargo build -q -p infrapilot-plugin-tool
    tool="$(target_dir)/debug/infrapilot-plugin"
fi
while read -r package dir; do
    [ -n "$package" ] || continue
    crate=${package//-/_}
    "$tool" componentize "$wasm_target_dir/wasm32-unknown-unknown/release/$crate.wasm" "$out/$crate.wasm"
    [ -f "$dir/manifest.json" ] && cp "$dir/manifest.json" "$out/$crate.manifest.json"
done <<<"$crates"

# First-party plugins ship as bundles signed with a development key made on this machine (never
# committed); `scripts/run.sh` trusts its public half. A release signs with the release key instead
# (README, "Plugins").
if [ -z "${1:-}" ]; then
    keydir="$out/dev-signing"
    if ! [ -f "$keydir/dev.key" ]; then
        mkdir -p "$keydir" && chmod 700 "$keydir"
        "$tool" keygen --out "$keydir/dev.key"
    fi
    mkdir -p "$out/bundles"
    while read -r package dir; do
        crate=${package//-/_}
        [ -n "$package" ] && [ -f "$dir/manifest.json" ] || continue
        case "$dir" in */plugins/testing/*) continue ;; esac
        "$tool" pack --manifest "$dir/manifest.json" --component "$out/$crate.wasm" \
            --key "$keydir/dev.key" --out "$out/bundles/$crate.bundle"
    done <<<"$crates"
    echo "signed bundles in ${out#$root/}/bundles (development key ${keydir#$root/}/dev.pub)"
fi
echo "components in ${out#$root/}"
