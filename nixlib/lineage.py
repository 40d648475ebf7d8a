"""Queries over realisation records: what produced a path, and the tree it came from.

Lineage is read only from the store's records, never from memory, so it answers for any
front door, any process and any host that wrote to the store.

A step is found by its *record*, never by its bytes: a step name (or its output link) means the
realisation that step had in the last `nw run` here (`.nw-last-run.json` keeps its resolved key), so
two steps that happen to produce identical bytes each keep their own command and upstream. Only a
path that names no step (a store path, a working-directory file) is matched by content, and when
several steps produced those bytes they are listed instead of one being picked.
"""

from __future__ import annotations

import difflib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixlib import nar
from nixlib.errors import NixWorkflowError
from nixlib.names import name_problem
from nixlib.store import Store

OUT_DIR = "nix-workflow-output"
LAST_RUN = ".nw-last-run.json"


@dataclass
class Found:
    """What NAME|PATH names: the step, its realisation (None if it failed or was skipped in the last run),
    and its entry in the last-run summary when it was found there."""

    name: str
    doc: dict[str, Any] | None
    entry: dict[str, Any] | None = None
    how: str = "record"  # "record" (a step of the last run, or a key) or "content" (matched by bytes)
    others: list[str] = field(default_factory=list)  # for "content": other realisations with those bytes

    @property
    def status(self) -> str:
        return (self.entry or {}).get("status") or ("done" if self.doc is not None else "unknown")


def object_of(store: Store, path: Path) -> str | None:
    """The object hash a path is or points into (a store path, an output link), else None."""
    store_dir = str(store.root / "store") + os.sep
    for candidate in (str(path.absolute()), os.path.realpath(path)):
        if candidate.startswith(store_dir):
            h = candidate[len(store_dir):].split(os.sep)[0]
            return h if nar.is_nar_hash(h) else None
    return None


def last_run(out_dir: Path) -> dict[str, Any]:
    """The last run's summary in `out_dir`, or {} when there is none that can be read: a FIFO planted under its
    name would block every reader (`nw show`, the view page) forever, a directory or an unreadable file raised."""
    path = out_dir / LAST_RUN
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return {}
        summary = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return summary if isinstance(summary, dict) else {}


def step_named(what: str, out_dir: Path, summary: dict[str, Any]) -> str | None:
    """The step of the last run that `what` names: the step name itself, or a path under the output-link
    directory (`nix-workflow-output/NAME`, or a file inside it). `./NAME` is a path, never a step name."""
    if what in summary:
        return what
    rel = os.path.relpath(os.path.abspath(what), os.path.abspath(out_dir))
    first = rel.split(os.sep)[0]
    if first not in ("", ".", "..") and first in summary:
        return first
    return None


def find(store: Store, what: str, out_dir: Path = Path(OUT_DIR)) -> Found:
    """Resolve NAME|PATH|KEY: a step of the last `nw run` here (by the realisation it had in that run, or its
    failure), a key, or, for any other path, the step that produced its content."""
    if not what.strip():
        raise NixWorkflowError("an empty name was given: give a step name from the last `nw run` in this directory, "
                               f"a path under ./{OUT_DIR}/, a file a step produced, or a key")
    summary = last_run(out_dir)
    name = step_named(what, out_dir, summary)
    if name is not None:
        return _of_last_run(store, name, summary[name])
    if nar.is_nar_hash(what):
        doc = store.read_record("realisations", what)  # a resolved key
        if doc is None and (last := store.last(what)) is not None:  # a recipe key: what it last realised to
            doc = store.read_record("realisations", last)
            doc = doc if doc is not None and doc.get("recipe_key") == what else None  # (a pointer to another step's)
        if doc is not None:
            return Found(doc["name"], doc)
    path = Path(what)
    if os.path.lexists(path):
        return _by_content(store, what, path)
    close = difflib.get_close_matches(what, list(summary), n=3, cutoff=0.6)  # a typo of a step name
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    if name_problem(what) is None and os.path.lexists(out_dir / what):  # the link of a step renamed or removed
        hint += (f" {out_dir / what} is an output link left by an earlier run (the last run has no step '{what}'): "
                 f"`nw show {out_dir / what}` shows what produced it.")
    where = f"./{OUT_DIR}/" if str(out_dir) == OUT_DIR else f"{out_dir}/"
    other = ("" if str(out_dir) != OUT_DIR else " (a run with `--out-link DIR` keeps its summary in DIR: add "
             "`--out-link DIR` here too)")
    raise NixWorkflowError(f"no step or path named '{what}'.{hint} Give a step name from the last `nw run` in this "
                           f"directory{other}, a path under {where}, a file a step produced, or a key.")


def find_record(store: Store, what: str, out_dir: Path = Path(OUT_DIR)) -> dict[str, Any]:
    """The realisation `what` names; an error naming the failure for a step that did not succeed."""
    found = find(store, what, out_dir)
    if found.doc is None:
        entry = found.entry or {}
        raise NixWorkflowError(f"step '{found.name}' has no result from its last run: it {found.status} "
                               f"({entry.get('error', 'no error recorded')})")
    return found.doc


def _of_last_run(store: Store, name: str, entry: Any) -> Found:
    if not isinstance(entry, dict):
        raise NixWorkflowError(f"the record of the last run in ./{OUT_DIR}/{LAST_RUN} is damaged at step '{name}': "
                               "run the experiment again")
    if entry.get("status") not in ("done", "cached"):
        return Found(name, None, entry)
    key = entry.get("resolved_key")
    doc = store.read_record("realisations", key) if isinstance(key, str) and nar.is_nar_hash(key) else None
    if doc is None:
        raise NixWorkflowError(f"step '{name}' realised to {key} in the last run, but the store at {store.root} has "
                               f"no such realisation (removed by `nw gc`, or the run used the store at "
                               f"{entry.get('store', 'another root')}). Run the experiment again.")
    return Found(name, doc, entry)


def _by_content(store: Store, what: str, path: Path) -> Found:
    """The step whose output has the content of `path` (a store path, a link into it, or a copy)."""
    h = object_of(store, path)
    if h is None:
        if not (os.path.isfile(path) or os.path.isdir(path)):
            raise NixWorkflowError(f"{what} is neither a file nor a directory, so no step produced it")
        h = store.memo.hash(path)
    origins = store.origins(h)
    if not origins:
        raise NixWorkflowError(f"{what} was not produced by any step recorded in the store at {store.root} "
                               "(no realisation has an output with its content)")
    names = list(dict.fromkeys(d["name"] for d in origins))
    if len(names) > 1:
        listed = "; ".join(f"'{d['name']}' (key {d['resolved_key']})" for d in origins[:10])
        raise NixWorkflowError(f"{what} has the content of outputs of several steps: {listed}. Identical bytes do "
                               "not say which step made this copy: give a step name of the last run here or a key.")
    return Found(names[0], origins[0], how="content", others=[d["resolved_key"] for d in origins[1:]])


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
    for i in doc.get("inputs", []):  # a step input is followed by the realisation it had, never by its bytes
        key = i.get("resolved_key")
        up = store.read_record("realisations", key) if isinstance(key, str) and nar.is_nar_hash(key) else None
        if up is not None and not i.get("pinned"):
            node["inputs"].append(tree(store, up, seen, depth - 1))
        else:
            kind = "pinned" if i.get("pinned") else "step, record gone" if i.get("step") else "static"
            node["inputs"].append({"name": i.get("step") or kind, "kind": kind, "object": i["object"]})
    for name, h in doc.get("files", {}).items():  # files (Snakemake inputs) are known only by content
        origins = store.origins(h)
        producers = list(dict.fromkeys(d["name"] for d in origins))
        if len(producers) == 1:
            node["inputs"].append(tree(store, origins[0], seen, depth - 1) | {"file": name})
        else:
            kind = "file" if not producers else "file, same bytes as outputs of " + ", ".join(producers[:10])
            node["inputs"].append({"name": name, "kind": kind, "object": h})
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
