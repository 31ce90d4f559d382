#!/usr/bin/env python3
"""The dependency rules of the workspace (ARCHITECTURE.md, "Dependency rules"), from `cargo metadata`:

- `agent`, `proto`, `sdk*`, `plugin/*` and the first-party `plugins/*` depend on no `host/*`
  crate, as a normal, build or dev dependency: a node and a plugin author never build the host.
- `plugin/types`, `plugin/licensing` and the SDK's tool do not pull in wasmtime or cranelift
  (directly or through another crate): building a bundle must not compile the runtime.

Both rules follow dependencies through other crates. (`sdk/template` is a workspace made to be
copied elsewhere; scripts/test-plugin-template.sh builds it outside this tree.)

Exits 1 naming every broken rule."""
import json
import os
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def metadata(manifest):
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--manifest-path", manifest],
        capture_output=True, text=True, cwd=root)
    if out.returncode != 0:
        sys.exit(f"cargo metadata for {rel(manifest)} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def rel(path):
    return os.path.relpath(path, root)


def reachable(nodes, start, with_dev):
    """Every package `start` depends on, directly or not: its own dev-dependencies when
    `with_dev`, only normal and build edges below it (a dependency's tests never build)."""
    seen, stack = set(), [(start, True)]
    while stack:
        current, is_root = stack.pop()
        for dep in nodes[current]["deps"]:
            kinds = {k.get("kind") for k in dep["dep_kinds"]}
            if kinds == {"dev"} and not (is_root and with_dev):
                continue
            if dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                stack.append((dep["pkg"], False))
    return seen


problems = []
for manifest in ["Cargo.toml", "plugins/Cargo.toml"]:
    meta = metadata(os.path.join(root, manifest))
    members = set(meta["workspace_members"])
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    for pkg in (packages[m] for m in members):
        where = rel(os.path.dirname(pkg["manifest_path"]))
        # Directly or through another crate, whatever the dependency kind at the root.
        if where.startswith(("agent", "proto", "sdk", "plugin/", "plugins/")):
            for dep in sorted(reachable(nodes, pkg["id"], with_dev=True)):
                path = rel(os.path.dirname(packages[dep]["manifest_path"]))
                if path.startswith("host/"):
                    problems.append(f"{where} ({pkg['name']}) depends on {path} ({packages[dep]['name']})")
        if where in ("plugin/types", "plugin/licensing", "sdk/tool"):
            runtime = sorted({packages[d]["name"] for d in reachable(nodes, pkg["id"], with_dev=False)
                              if packages[d]["name"].startswith(("wasmtime", "cranelift"))})
            if runtime:
                problems.append(f"{where} ({pkg['name']}) pulls in {', '.join(runtime)}")

if problems:
    print("dependency rules broken:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("dependency rules hold: agent, proto, sdk, plugin/ and plugins/ use no host/ crate; "
      "plugin types, licensing and the SDK tool build without wasmtime")
