"""Queries over realisation records: what produced a path, and the tree it came from.

Lineage is read only from the store's records, never from memory, so it answers for any
front door, any process and any host that wrote to the store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nixlib.errors import NixWorkflowError
from nixlib.store import Store

OUT_DIR = "nix-workflow-output"
LAST_RUN = ".nw-last-run.json"


def object_of(store: Store, path: Path) -> str | None:
    """The object hash a path is or points into (a store path, an output link), else None."""
    store_dir = str(store.root / "store") + os.sep
    for candidate in (str(path.absolute()), os.path.realpath(path)):
        if candidate.startswith(store_dir):
            return candidate[len(store_dir):].split(os.sep)[0]
    return None


def last_run(out_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((out_dir / LAST_RUN).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def find_record(store: Store, what: str, out_dir: Path = Path(OUT_DIR)) -> dict[str, Any]:
    """The realisation for a step NAME (of the last `nw run` here), an output path, a working-directory
    file produced by a step (found by content), or a key."""
    path = Path(what)
    h = object_of(store, path) if os.path.lexists(path) else None
    if h is None and os.path.lexists(out_dir / what):
        h = object_of(store, out_dir / what)
    if h is not None:
        origins = store.origins(h)
        if origins:
            return origins[0]
    entry = last_run(out_dir).get(what)
    for key in ([entry.get("resolved_key")] if entry else []) + [what, store.last(what) or ""]:
        if key and (doc := store.read_record("realisations", key)) is not None:
            return doc
    if os.path.isfile(path) or os.path.isdir(path):
        origins = store.origins(store.memo.hash(path))
        if origins:
            return origins[0]
        raise NixWorkflowError(f"{what} was not produced by any step recorded in the store at {store.root} "
                               "(no realisation has an output with its content)")
    raise NixWorkflowError(f"no step or path named '{what}': give a step name from the last `nw run` in this "
                           f"directory, a path under ./{OUT_DIR}/, a file a step produced, or a key")


def tree(store: Store, doc: dict[str, Any], seen: set[str] | None = None, depth: int = 100) -> dict[str, Any]:
    """The upstream tree of a realisation, down to static inputs or `depth` levels; shared subtrees are
    expanded once."""
    seen = set() if seen is None else seen
    node: dict[str, Any] = {"name": doc["name"], "resolved_key": doc["resolved_key"], "outputs": doc["outputs"],
                            "command": doc["command"], "env": doc["env"], "provenance": doc.get("provenance", {}),
                            "inputs": []}
    if doc["resolved_key"] in seen:
        node["repeated"] = True
        return node
    if depth <= 0:
        node["truncated"] = True
        return node
    seen.add(doc["resolved_key"])
    for i in doc.get("inputs", []):
        up = store.read_record("realisations", i["resolved_key"]) if i.get("resolved_key") else None
        if up is not None and not i.get("pinned"):
            node["inputs"].append(tree(store, up, seen, depth - 1))
        else:
            kind = "pinned" if i.get("pinned") else "static"
            node["inputs"].append({"name": i.get("step") or kind, "kind": kind, "object": i["object"]})
    for name, h in doc.get("files", {}).items():
        origins = store.origins(h)
        if origins:
            node["inputs"].append(tree(store, origins[0], seen, depth - 1) | {"file": name})
        else:
            node["inputs"].append({"name": name, "kind": "file", "object": h})
    return node


def render(store: Store, node: dict[str, Any], prefix: str = "", last: bool = True, top: bool = True) -> list[str]:
    """Text lines of a lineage tree, one node per line with its object and (for steps) its command."""
    branch = "" if top else ("└── " if last else "├── ")
    objects = " ".join(str(store.object_path(h)) for h in node.get("outputs", {}).values()) or str(
        store.object_path(node.get("object", "")))
    label = node["name"] + (f" [{node['file']}]" if "file" in node else "")
    if "kind" in node:
        lines = [f"{prefix}{branch}{label} ({node['kind']}) {objects}"]
    else:
        env = node["env"]["identity"].get("kind", "nix")
        lines = [f"{prefix}{branch}{label} {objects}", f"{prefix}{'' if top else ('    ' if last else '│   ')}"
                 f"  $ {node['command']}  [env: {env}]" + (" (shown above)" if node.get("repeated") else "")
                 + (" (deeper levels not shown: use --depth)" if node.get("truncated") else "")]
    child_prefix = prefix + ("" if top else ("    " if last else "│   "))
    kids = node.get("inputs", [])
    for n, kid in enumerate(kids):
        lines += render(store, kid, child_prefix, n == len(kids) - 1, top=False)
    return lines
