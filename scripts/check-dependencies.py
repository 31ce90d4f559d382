#!/usr/bin/env python3
"""The dependency rules of the workspace (ARCHITECTURE.md, "Dependency rules"), from `cargo metadata`:

- `agent`, `proto`, `sdk*`, `plugin/*` and the first-party `plugins/*` depend on no `host/*`
  crate, as a normal, build or dev dependency: a node and a plugin author never build the host.
- `plugin/types`, `plugin/licensing` and the SDK's tool do not pull in wasmtime (directly or
  through another crate): building a bundle must not compile the runtime.

Exits 1 naming every broken rule."""
import json
import os
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def metadata(manifest):
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--manifest-path", manifest],
        check=True, capture_output=True, text=True, cwd=root)
    return json.loads(out.stdout)


def rel(path):
    return os.path.relpath(path, root)


problems = []
for manifest in ["Cargo.toml", "plugins/Cargo.toml"]:
    meta = metadata(os.path.join(root, manifest))
    members = set(meta["workspace_members"])
    packages = {p["id"]: p for p in meta["packages"]}
    for pkg in (packages[m] for m in members):
        where = rel(os.path.dirname(pkg["manifest_path"]))
        if not where.startswith(("agent", "proto", "sdk", "plugin/", "plugins/")):
            continue
        for dep in pkg["dependencies"]:
            path = dep.get("path")
            if path and rel(path).startswith("host/"):
                kind = dep.get("kind") or "normal"
                problems.append(f"{where} ({pkg['name']}) has a {kind} dependency on {rel(path)}")
    # Transitive: which packages each wasmtime-free crate pulls in.
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    for pkg in (packages[m] for m in members):
        where = rel(os.path.dirname(pkg["manifest_path"]))
        if where not in ("plugin/types", "plugin/licensing", "sdk/tool"):
            continue
        seen, stack = set(), [pkg["id"]]
        while stack:
            node = nodes[stack.pop()]
            for dep in node["deps"]:
                kinds = {k.get("kind") for k in dep["dep_kinds"]}
                if kinds == {"dev"} or dep["pkg"] in seen:
                    continue
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
        if any(packages[d]["name"] == "wasmtime" for d in seen if d in packages):
            problems.append(f"{where} ({pkg['name']}) pulls in wasmtime")

if problems:
    print("dependency rules broken:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("dependency rules hold: agent, proto, sdk, plugin/ and plugins/ use no host/ crate; "
      "plugin types, licensing and the SDK tool build without wasmtime")
