"""Queries over realisation records: what produced a path, and the tree it came from.

Lineage is read only from the store's records, never from memory, so it answers for any
front door, any process and any host that wrote to the store.

A step is found by its *record*, never by its bytes: a step name (or its output link) means the
realisation that step had in the last `nw run` here (`.nw-last-run.json` keeps its resolved key), so
two steps that happen to produce identical bytes each keep their own command and upstream. Only a
path that names no step (a store path, a working-directory file) is matched by content, and when
several steps produced those bytes they are listed instead of one being picked. A front door that runs
outside `nw run` and journals its runs (Luigi, in ./.nw-runs) has its steps found by name the same way: a task_id
(or its output link, or a family with one task) means what that task had in the newest such run here.
"""

from __future__ import annotations

import difflib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixlib import nar
from nixlib.errors import NixWorkflowError
from nixlib.names import name_problem
from nixlib.store import Store

OUT_DIR = "nix-workflow-output"
LAST_RUN = ".nw-last-run.json"
JOURNALLED = ("luigi",)  # front doors whose steps are found by name in their run journals (nixlib.view.history)


@dataclass
class Found:
    """What NAME|PATH names: the step, its realisation (None if it failed or was skipped in the last run),
    and its entry in the last-run summary when it was found there."""

    name: str
    doc: dict[str, Any] | None
    entry: dict[str, Any] | None = None
    how: str = "record"  # "record" (a step of the last run, or a key) or "content" (matched by bytes)
    others: list[str] = field(default_factory=list)  # for "content": other realisations with those bytes
    run: str = "the last run"  # the run `entry` comes from, as a message names it
    names: dict[str, list[str]] = field(default_factory=dict)  # resolved key -> the step names it had in that run

    def step_name(self, key: Any, recorded: Any) -> Any:
        """What to call the realisation `key` (an upstream of this step), recorded as `recorded` by whichever
        front door or experiment first realised it: the name it had in the run this step was found in (an
        experiment.nix that calls `prep` `sorted_data` is shown its own name), else the recorded one."""
        had = self.names.get(key) if isinstance(key, str) else None
        return had[0] if had and recorded not in had else recorded

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
        return _named(_of_last_run(store, name, summary[name]), summary)
    if nar.is_nar_hash(what):
        doc = store.read_record("realisations", what)  # a resolved key
        if doc is None and (last := store.last(what)) is not None:  # a recipe key: what it last realised to
            doc = store.read_record("realisations", last)
            doc = doc if doc is not None and doc.get("recipe_key") == what else None  # (a pointer to another step's)
        if doc is not None:
            return Found(doc["name"], doc)
    journalled = _journalled(store, what, out_dir) or _of_unfinished_run(store, what, out_dir)
    if journalled is not None:
        return journalled
    path = Path(what)
    if os.path.lexists(path):
        return _by_content(store, what, path, out_dir)
    if nar.is_nar_hash(what) and what not in summary:  # a key of another store, or one `nw gc` removed
        if store.has(what):  # an object's name, not a key: found by its path, which is matched by content
            return _by_content(store, what, store.object_path(what), out_dir)
        raise NixWorkflowError(f"no realisation has key {what} in the store at {store.root} (neither as resolved key "
                               "nor as recipe key): it may be a key of another store (give --store DIR), one `nw gc` "
                               "removed, or mistyped. `nw show STEP` and `nw show --json STEP` print a step's keys.")
    if os.sep in what and not os.path.lexists(out_dir / what) and name_problem(what) is not None:
        raise NixWorkflowError(f"{what} does not exist: give an existing file a step produced (under ./{OUT_DIR}/ "
                               "or copied elsewhere: it is found by content), a step name from the last `nw run` here, "
                               "or a key.")
    close = difflib.get_close_matches(what, list(summary), n=3, cutoff=0.6)  # a typo of a step name
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    hint += _unfinished_run(store, what, out_dir)
    if name_problem(what) is None and os.path.lexists(out_dir / what):  # the link of a step renamed or removed
        hint += (f" {out_dir / what} is an output link left by an earlier run, or by a run that has not finished (one "
                 f"still going on, or one killed before it wrote its summary): the last run here that finished has no "
                 f"step '{what}'. `nw show {out_dir / what}` shows what produced it.")
    where = f"./{OUT_DIR}/" if str(out_dir) == OUT_DIR else f"{out_dir}/"
    other = ("" if str(out_dir) != OUT_DIR else " (a run with `--out-link DIR` keeps its summary in DIR: add "
             "`--out-link DIR` here too)")
    raise NixWorkflowError(f"no step or path named '{what}'.{hint} Give a step name from the last `nw run` in this "
                           f"directory{other}, a Luigi task_id run here, a path under {where}, a file a step produced, "
                           "or a key.")


def _named(found: Found, steps: dict[str, Any]) -> Found:
    """`found`, knowing the names the steps of its run (a last-run summary's or a journal's) had, by resolved key."""
    for name, entry in steps.items():
        key = entry.get("resolved_key") if isinstance(entry, dict) else None
        if isinstance(key, str) and entry.get("status") in ("done", "cached"):
            found.names.setdefault(key, []).append(name)
    return found


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


def _journalled(store: Store, what: str, out_dir: Path) -> Found | None:
    """A task of a recent Luigi run in this directory (journalled in ./.nw-runs), by its task_id or output link
    (the newest run that had it), or by its family when the newest run with tasks of that family had one; None
    when no such run names it. The journal only says which key a task had: its record is read from the store."""
    from nixlib.view.history import journals

    root = os.path.realpath(store.root)
    docs = [d for d in journals(out_dir, store.trusted) if d.get("tool") in JOURNALLED
            and isinstance(d.get("store"), str) and os.path.realpath(d["store"]) == root]
    for doc in docs:
        name = step_named(what, out_dir, doc["steps"])
        if name is not None and isinstance(doc["steps"][name], dict):
            return _named(_of_journal(store, name, doc["steps"][name], doc), doc["steps"])
    for doc in docs:
        named = sorted(n for n, e in doc["steps"].items() if isinstance(e, dict) and e.get("family") == what)
        if len(named) == 1:
            return _named(_of_journal(store, named[0], doc["steps"][named[0]], doc), doc["steps"])
        if named:
            listed = ", ".join(named[:10]) + (f" and {len(named) - 10} more" if len(named) > 10 else "")
            raise NixWorkflowError(f"'{what}' is a Luigi task family with {len(named)} tasks in {_run_text(doc)}: "
                                   f"{listed}. Give one task's task_id (or its output link).")
    return None


def _of_unfinished_run(store: Store, what: str, out_dir: Path) -> Found | None:
    """A step done or served in a `nw run` here that has not ended (one still going on, or one killed), which the
    last-run summary, written when a run ends, does not have: found by the key the run's journal names, its record
    read from the store (as a Luigi task's is). None when the newest `nw run` that has the step ended, or had not
    finished it (then _unfinished_run says why it is not found)."""
    from nixlib.view.history import journals, live

    root = os.path.realpath(store.root)
    for doc in journals(out_dir, store.trusted):
        name = step_named(what, out_dir, doc["steps"]) if doc.get("tool") == "nw run" else None
        if name is None:
            continue
        entry = doc["steps"][name]
        same_store = isinstance(doc.get("store"), str) and os.path.realpath(doc["store"]) == root
        if doc.get("ended") is not None or not same_store or not isinstance(entry, dict) \
                or entry.get("status") not in ("done", "cached"):
            return None
        found = _of_journal(store, name, entry, doc)
        found.run = f"run {doc.get('id')} here, " + ("which is still going on" if live(doc) else
                                                     "which was killed before it ended")
        return _named(found, doc["steps"])
    return None


def _unfinished_run(store: Store, what: str, out_dir: Path) -> str:
    """Why a step the last-run summary lacks is not found, when the newest `nw run` here that has it has not ended:
    the summary (and the output links) are written only when a run ends, so a step of a run still going on, or of
    one that was killed, is unknown to `nw show` until then. An empty string otherwise."""
    from nixlib.view.history import journals, live

    for doc in journals(out_dir, store.trusted):
        name = step_named(what, out_dir, doc["steps"]) if doc.get("tool") == "nw run" else None
        if name is None:
            continue
        if doc.get("ended") is not None:
            return ""
        entry = doc["steps"][name]
        status = entry.get("status") if isinstance(entry, dict) else None
        had = f"step '{name}'{f' ({status} there)' if isinstance(status, str) else ''}"
        run = f"run {doc.get('id')}, process {doc.get('pid')}"
        if live(doc):
            return (f" A `nw run` here that has not ended yet ({run}) has {had}: `nw show` reads the summary that a "
                    "run writes when it ends, with its output links; `nw view` shows the run live.")
        return (f" The last `nw run` here that had {had} ({run}) did not finish: it was killed before it could write "
                "its summary and output links, so nothing of that run is known by name; run it again.")
    return ""


def _run_text(doc: dict[str, Any]) -> str:
    started = doc.get("started")
    when = time.strftime(" started %Y-%m-%d %H:%M:%S", time.localtime(started)) \
        if isinstance(started, (int, float)) and not isinstance(started, bool) else ""
    return f"the last {doc.get('tool', '').capitalize() or 'journalled'} run here (run {doc.get('id')}{when})"


def _of_journal(store: Store, name: str, entry: dict[str, Any], doc: dict[str, Any]) -> Found:
    """A journalled step as the last-run summary would have it: done or cached by the realisation the store holds
    under the key the journal names, else its failure (its log, when its run started)."""
    from nixlib.view.history import live

    run = _run_text(doc)
    status = str(entry.get("status") or "unknown")
    if status in ("pending", "running") and not live(doc):
        status = "interrupted"  # its process ended before it could say so
    key = entry.get("resolved_key")
    key = key if isinstance(key, str) and nar.is_nar_hash(key) else None
    if status in ("done", "cached"):
        record = store.read_record("realisations", key) if key else None
        if record is None:
            raise NixWorkflowError(f"task '{name}' realised to {key} in {run}, but the store at {store.root} has no "
                                   "such realisation (removed by `nw gc`?). Run the task again.")
        return Found(name, record, {"status": status, "resolved_key": key}, run=run)
    found: dict[str, Any] = {"status": status, "error": entry.get("error") if isinstance(entry.get("error"), str)
                             else None, "recipe_key": entry.get("recipe_key")}
    log = store.log_path(key) if key else None
    if log is not None and os.path.isfile(log):
        found["log"] = str(log)
    return Found(name, None, found, run=run)


def executed_command(doc: dict[str, Any]) -> tuple[str, str | None]:
    """A record's command as it ran, and the keyed (normalised) form when that differs: a Snakemake job's record
    keeps the normalised command (options in a canonical order) and the command Snakemake ran in its provenance."""
    ran = (doc.get("provenance") or {}).get("shellcmd")
    if isinstance(ran, str) and ran.strip() and ran != doc["command"]:
        return ran, doc["command"]
    return doc["command"], None


def _by_content(store: Store, what: str, path: Path, out_dir: Path = Path(OUT_DIR)) -> Found:
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
    rel = os.path.relpath(os.path.abspath(path))
    here = _wrote_at(origins, rel, h) + _luigi_wrote_at(origins, rel, h)  # (a clone of a checkout too)
    here = _ran_here(store, here, out_dir) or here  # of those, the ones that ran in this very directory
    if here:  # the jobs that wrote it at this very path come first: others wrote the same bytes elsewhere
        origins = here + [d for d in origins if d not in here]
    names = list(dict.fromkeys(d["name"] for d in here or origins))
    if len(names) > 1:
        listed = "; ".join(f"'{d['name']}' (key {d['resolved_key']})" for d in origins[:10])
        raise NixWorkflowError(f"{what} has the content of outputs of several steps: {listed}. Identical bytes do "
                               "not say which step made this copy: give a step name of the last run here or a key.")
    return Found(names[0], origins[0], how="content", others=[d["resolved_key"] for d in origins[1:]])


def _outputs_are_paths(doc: dict[str, Any]) -> bool:
    """Whether a realisation names its outputs by their working-directory paths (a Snakemake job's do)."""
    return (doc.get("provenance") or {}).get("front_door") == "snakemake"


def _wrote_at(docs: list[dict[str, Any]], path: str, h: str) -> list[dict[str, Any]]:
    """The realisations among `docs` that wrote object `h` at `path` (relative to the working directory), newest
    first: of several Snakemake jobs that wrote the same bytes, the one whose output that file is."""
    return [d for d in docs if _outputs_are_paths(d) and d["outputs"].get(os.path.normpath(path)) == h]


def _luigi_wrote_at(docs: list[dict[str, Any]], path: str, h: str) -> list[dict[str, Any]]:
    """The realisations among `docs` of legacy Luigi tasks that declared a LocalTarget at `path` (relative to the
    working directory, as their keys name it, else absolute) and stored object `h` as it."""
    out = []
    for d in docs:
        if (d.get("provenance") or {}).get("front_door") != "luigi":
            continue
        declared = ((d.get("recipe") or {}).get("extra") or {}).get("luigi", {}).get("outputs")
        if not isinstance(declared, list):
            continue
        names = ("out", *(f"out{i}" for i in range(1, len(declared))))  # (luigi_nixworkflow.legacy.output_names)
        if any(p in (path, os.path.abspath(path)) and d["outputs"].get(n) == h
               for p, n in zip(declared, names, strict=True)):
            out.append(d)
    return out


def _ran_here(store: Store, docs: list[dict[str, Any]], out_dir: Path) -> list[dict[str, Any]]:
    """The realisations among `docs` made in this working directory: a Snakemake job's (its record names its
    working directory), or one that a Luigi run journalled here had. Another checkout's job that wrote the same
    bytes at the same relative path is not the one that made this file."""
    cwd = os.path.realpath(os.getcwd())
    keys: set[str] | None = None
    out = []
    for d in docs:
        workdir = (d.get("provenance") or {}).get("workdir")
        if _outputs_are_paths(d):
            if isinstance(workdir, str) and os.path.realpath(workdir) == cwd:
                out.append(d)
            continue
        if keys is None:
            from nixlib.view.history import journals

            root = os.path.realpath(store.root)
            keys = {e.get("resolved_key") for j in journals(out_dir, store.trusted)
                    if j.get("tool") in JOURNALLED and isinstance(j.get("store"), str)
                    and os.path.realpath(j["store"]) == root
                    for e in j["steps"].values() if isinstance(e, dict)}
        if d["resolved_key"] in keys:
            out.append(d)
    return out


def tree(store: Store, doc: dict[str, Any], seen: set[str] | None = None, depth: int = 100,
         found: Found | None = None) -> dict[str, Any]:
    """The upstream tree of a realisation, down to static inputs or `depth` levels; shared subtrees are
    expanded once. With `found` (what the query named), steps are called by the names they had in its run."""
    seen = set() if seen is None else seen
    name = found.step_name(doc["resolved_key"], doc["name"]) if found is not None else doc["name"]
    node: dict[str, Any] = {"name": name, "resolved_key": doc["resolved_key"], "outputs": doc["outputs"],
                            "command": doc["command"], "env": doc["env"], "provenance": doc.get("provenance", {}),
                            "inputs": []}
    if doc["resolved_key"] in seen:
        node["repeated"] = True
        return node
    if depth <= 0:
        node["truncated"] = True
        return node
    seen.add(doc["resolved_key"])
    listed: set[tuple[Any, ...]] = set()  # (records written before inputs were one per reference list repeats)
    for i in doc.get("inputs", []):  # a step input is followed by the realisation it had, never by its bytes
        if (i.get("object"), i.get("step"), i.get("output")) in listed:
            continue
        listed.add((i.get("object"), i.get("step"), i.get("output")))
        key = i.get("resolved_key")
        up = store.read_record("realisations", key) if isinstance(key, str) and nar.is_nar_hash(key) else None
        if up is not None and not i.get("pinned"):
            node["inputs"].append(tree(store, up, seen, depth - 1, found))
        else:
            kind = "pinned" if i.get("pinned") else "step, record gone" if i.get("step") else "static"
            step = found.step_name(key, i.get("step")) if found is not None and i.get("step") else i.get("step")
            node["inputs"].append({"name": step or kind, "kind": kind, "object": i["object"]})
    for name, h in doc.get("files", {}).items():  # files (Snakemake inputs) are known only by content
        origins = store.origins(h)
        producers = list(dict.fromkeys(d["name"] for d in origins))
        # a job that wrote the file at this path; else not a Snakemake job that wrote the same bytes elsewhere
        # (per-sample jobs writing equal counts, a rule that copies a source file verbatim): it did not make it
        candidates = _wrote_at(origins, name, h) or [d for d in origins if not _outputs_are_paths(d)]
        makers = list(dict.fromkeys(d["name"] for d in candidates))
        if len(makers) == 1:
            node["inputs"].append(tree(store, candidates[0], seen, depth - 1, found) | {"file": name})
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
    hashes = list(node.get("outputs", {}).values()) or [node.get("object", "")]
    stored = not str(node.get("kind", "")).startswith("file")  # (a Snakemake input file is known by its bytes only)
    if stored and any(nar.is_nar_hash(h) and not os.path.lexists(store.object_path(h)) for h in hashes):
        objects += " (missing from the store" + ("" if "kind" in node else ": the next run that needs it runs the "
                                                   "step again") + ")"
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


def log_changed(entry: dict[str, Any]) -> bool:
    """Whether the log an unsuccessful step's entry names was rewritten since the step stopped: by a later run of the
    same key (`logs/<key>.log` is per key), so it no longer holds what this attempt printed."""
    seen, log = entry.get("log_signature"), entry.get("log")
    if not (isinstance(seen, list) and isinstance(log, str)):
        return False
    try:
        st = os.stat(log)
    except OSError:
        return False  # gone: said as such where it is read
    return [st.st_ino, st.st_size, st.st_mtime_ns] != seen
