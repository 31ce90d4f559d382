#!/usr/bin/env bash
# Follows sdk/README.md ("Your first alert channel") word for word in a scratch directory outside
# the workspace: template copied next to a checkout, component built, its tests run, then signed,
# packed and verified. Fails if the guide's commands do not work.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
repo=$(pwd)
tdir=$(target_dir)
scratch=$(mktemp -d /tmp/infrapilot-template.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# "An InfraPilot checkout next to your plugin's directory" (a link to this one).
ln -s "$repo" "$scratch/infrapilot"
cd "$scratch"
cp -r infrapilot/sdk/template my-channel && cd my-channel
cp ../infrapilot/Cargo.lock .

PLUGIN_OUT=dist ../infrapilot/scripts/build-plugins.sh .
test -s dist/my_channel.wasm
# Share the repository's build cache (the guide's plain `cargo test` builds its own).
CARGO_TARGET_DIR=$tdir cargo test
tool() { CARGO_TARGET_DIR=$tdir cargo run -q --manifest-path ../infrapilot/Cargo.toml -p infrapilot-plugin-tool -- "$@"; }
tool keygen --out signing.pem
tool pack --manifest manifest.json --component dist/my_channel.wasm --key signing.pem --out dist/my-channel.ipb
tool verify dist/my-channel.ipb --trust signing.pub
# A key nobody trusts is refused.
tool keygen --out other.pem
if tool verify dist/my-channel.ipb --trust other.pub 2>/dev/null; then
    echo "a bundle verified against a key that did not sign it" >&2
    exit 1
fi
echo "template plugin built, tested, signed and verified outside the workspace"
