"""Differences between two realisations of steps (`nw diff`, `nw why`, `nw check`, `nw run --force`).

A *side* is what a step is made of — its keyed recipe document, env paths and inputs — taken either from a
realisation record or from a recipe of the current experiment. Recipes are compared part by part (command,
env, each input, every other keyed parameter) so a user reads *which* part differs, not only that a key did.
Outputs are compared file by file, by content, with a unified diff of text files.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_REF = re.compile(r"@\{(?!(?:experiment|workdir|basedir|tmpdir|scriptdir)\})[^}]*\}")  # (not a relocated directory)
_TEXT_LIMIT = 256 * 1024  # larger files are compared by hash only


@dataclass
class Side:
    """What one realisation (or the current recipe) of a step is made of."""

    label: str
    recipe: dict[str, Any]
    env_paths: list[str]
    inputs: list[dict[str, Any]]  # step (name or None for a static), recipe_key, object (None: not realised yet)
    command: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)


def side_of_record(doc: dict[str, Any], label: str) -> Side:
    """A side from a realisation record (any front door's)."""
    inputs = [{"step": i.get("step"), "recipe_key": i.get("recipe_key"), "object": i.get("object")}
              for i in doc.get("inputs", [])]
    return Side(label, dict(doc.get("recipe") or {}), list(doc.get("env", {}).get("paths", [])), inputs,
                doc.get("command"), dict(doc.get("outputs", {})))


def side_of_recipe(recipe: Any, engine: Any, label: str, sources: dict[str, str] | None = None) -> Side:
    """A side from a recipe of the current experiment; an upstream step not realised yet has object None.
    `sources` names the file each static object was read from, for messages."""
    from nixlib.recipe import _by_recipe

    inputs = []
    for i in recipe.inputs:
        if i.step is None:
            inputs.append({"step": None, "recipe_key": None, "object": i.obj, "source": (sources or {}).get(i.obj)})
            continue
        up = engine.lookup(i.step)
        inputs.append({"step": i.step.name, "recipe_key": i.step.key,
                       "object": up.outputs.get(i.output) if up is not None else None})
    return Side(label, recipe.document(_by_recipe), list(recipe.env_paths), inputs)


def neutral(command: str) -> str:
    """A keyed command with each reference replaced by its position (`@{input 1}`), so a changed upstream does
    not show up as a changed command: it is reported as a changed input instead."""
    n = iter(range(1, 1 << 30))
    return _REF.sub(lambda m: f"@{{input {next(n)}}}", command)


def recipe_differences(old: Side, new: Side) -> list[str]:
    """Lines naming each part of the recipe that differs: command, env, inputs, other keyed parameters."""
    lines: list[str] = []
    a, b = neutral(str(old.recipe.get("command", ""))), neutral(str(new.recipe.get("command", "")))
    if a != b:
        lines.append("command differs:")
        lines += ["  " + x for x in _unified(a.splitlines(), b.splitlines(), old.label, new.label)]
    lines += _env_differences(old, new)
    lines += _input_differences(old.inputs, new.inputs)
    for key in sorted((set(old.recipe) | set(new.recipe)) - {"command", "env", "uses"}):
        if old.recipe.get(key) != new.recipe.get(key):
            if key == "extra":
                lines += _code_differences(old.recipe.get(key), new.recipe.get(key))
                lines += _data_differences(old.recipe.get(key), new.recipe.get(key))
                lines += _environment_differences(old.recipe.get(key), new.recipe.get(key))
            if key != "extra" or not _only_code(old.recipe.get(key), new.recipe.get(key)):
                lines.append(f"parameter '{key}' differs: {_short(old.recipe.get(key))} → "
                             f"{_short(new.recipe.get(key))}")
    return lines


def _only_code(a: Any, b: Any) -> bool:
    """True when two `extra` parameters differ only in their `code` part, a mapping of project scripts (what
    `_code_differences` reports; Luigi's `code` is one digest of a task's class, left to the generic line), their
    `data` part (project data files an experiment's command names, `_data_differences`) and their `environment` part
    (the host variables an experiment's command expands, `_environment_differences`)."""
    a, b = a if isinstance(a, dict) else {}, b if isinstance(b, dict) else {}
    named = ("code", "data", "environment")
    if not all(isinstance(x.get(k, {}), dict) for x in (a, b) for k in named):
        return False
    return {k: v for k, v in a.items() if k not in named} == {k: v for k, v in b.items() if k not in named}


def _environment_differences(a: Any, b: Any) -> list[str]:
    """One line per variable of nw's environment that the command expands (`extra.environment`: name -> digest
    of its value, or "unset") whose value changed, or that was set or unset. A variable only one side keys is not
    known to be set or unset on the other (its command did not expand it, or it was recorded before variables were
    keyed): that side is said to have not keyed it, never that it was unset."""
    old = a.get("environment", {}) if isinstance(a, dict) else {}
    new = b.get("environment", {}) if isinstance(b, dict) else {}
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return []
    lines = []
    for name in sorted(set(old) | set(new)):
        was, now = old.get(name), new.get(name)
        if was is None:
            lines.append(f"environment variable ${name} the step uses is keyed now "
                         f"({'not set' if now == 'unset' else 'set'}; it was not keyed before)")
        elif now is None:
            lines.append(f"environment variable ${name} is no longer keyed (neither the command nor a script it runs "
                         "reads it now, or the step is pure)")
        elif was == "unset" and now != "unset":
            lines.append(f"environment variable ${name} the step uses is set now (it was not)")
        elif now == "unset" and was != "unset":
            lines.append(f"environment variable ${name} the step uses is no longer set")
        elif was != now:
            lines.append(f"environment variable ${name} the step uses has another value")
    return lines


def _code_differences(a: Any, b: Any) -> list[str]:
    """One line per project script (`extra.code`: path -> digest) that was added, dropped or edited. A Python
    script's digest covers the local modules it imports, so an edit of `common.py` shows as its importer
    `./train.py`: the line says so, rather than name a file the user did not touch as if it changed."""
    return [f"project script {path} " + {
        "added": "is now run by the command (keyed by its content)",
        "dropped": "is no longer run by the command",
        "changed": f"changed (its content{' or a local module it imports' if str(path).endswith('.py') else ''})",
    }[how] for path, how in _changed_entries(a, b, "code")]


def _data_differences(a: Any, b: Any) -> list[str]:
    """One line per project data file an experiment's command names without static() (`extra.data`: path ->
    content hash) that was added, dropped or edited."""
    return [f"project file {path} " + {
        "added": "is now named by the command (keyed by its content)",
        "dropped": "is no longer named by the command, or no longer exists",
        "changed": "changed (its content)",
    }[how] for path, how in _changed_entries(a, b, "data")]


def _changed_entries(a: Any, b: Any, part: str) -> list[tuple[str, str]]:
    """(path, "added" | "dropped" | "changed") for each entry of the mapping `extra[part]` that differs."""
    old = a.get(part, {}) if isinstance(a, dict) else {}
    new = b.get(part, {}) if isinstance(b, dict) else {}
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return []
    return [(path, "added" if path not in old else "dropped" if path not in new else "changed")
            for path in sorted(set(old) | set(new)) if old.get(path) != new.get(path) or (path in old) != (path in new)]


def _env_differences(old: Side, new: Side) -> list[str]:
    if old.recipe.get("env") == new.recipe.get("env") and old.env_paths == new.env_paths:
        return []
    gone = [p for p in old.env_paths if p not in new.env_paths]
    added = [p for p in new.env_paths if p not in old.env_paths]
    lines = ["env differs:"] + [f"  - {p}" for p in gone] + [f"  + {p}" for p in added]
    if not gone and not added:
        lines += [f"  - {_short(old.recipe.get('env'))}", f"  + {_short(new.recipe.get('env'))}"]
    return lines


def _input_differences(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    if len(old) != len(new):
        return [f"inputs differ: {len(old)} input(s) ({_names(old)}) → {len(new)} ({_names(new)})"]
    lines = []
    for n, (a, b) in enumerate(zip(old, new, strict=True), 1):
        what = f"input {n} (step '{b['step']}')" if b["step"] else f"input {n} ({b.get('source') or 'a static file'})"
        if a["step"] != b["step"]:
            lines.append(f"input {n} differs: {_source(a)} → {_source(b)}")
            continue
        if b["step"] and a["recipe_key"] != b["recipe_key"]:
            same = b["object"] is not None and a["object"] == b["object"]  # (keys resolve through content)
            lines.append(f"{what}: its recipe differs (`nw why {b['step']}` tells how)" + (
                ", but it produced the same content: not a reason this step re-runs" if same else ""))
        if b["object"] is None:
            lines.append(f"{what} is not realised yet: it runs first, and whether this step re-runs depends on "
                         "what it produces")
        elif a["object"] != b["object"]:
            lines.append(f"{what}: content differs (object {a['object']} → {b['object']})")
    return lines


def _source(i: dict[str, Any]) -> str:
    return f"step '{i['step']}'" if i["step"] else f"static object {i['object']}"


def _names(inputs: list[dict[str, Any]]) -> str:
    return ", ".join(i["step"] or "static" for i in inputs) or "none"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 200 else text[:200] + "…"


def _unified(a: list[str], b: list[str], label_a: str, label_b: str) -> list[str]:
    return [line.rstrip("\n") for line in difflib.unified_diff(a, b, label_a, label_b, lineterm="")]


# ---- output files -------------------------------------------------------------------------------


def file_map(root: Path) -> dict[str, str]:
    """relative path -> what it is (`dir`, `-> target`, or `x|-` + SHA-256 of its bytes), never following links."""
    out: dict[str, str] = {}
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        return {".": _entry(root, st)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            pst = os.lstat(p)
            out[rel] = "dir" if stat.S_ISDIR(pst.st_mode) else _entry(p, pst)
    return out


def _entry(path: Path, st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "-> " + os.readlink(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return ("x" if st.st_mode & stat.S_IXUSR else "-") + h.hexdigest()


def differing_files(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Each path whose content, kind or presence differs, with how (`changed`, `only in A`, `only in B`)."""
    lines = []
    for rel in sorted(set(a) | set(b)):
        if rel not in b:
            lines.append(f"{rel} (only in the first)")
        elif rel not in a:
            lines.append(f"{rel} (only in the second)")
        elif a[rel] != b[rel]:
            lines.append(f"{rel} (content differs)")
    return lines


def text_diff(a: Path, b: Path, label_a: str, label_b: str) -> list[str]:
    """A unified diff of two text files; empty if either is binary or large (compared by hash only)."""
    texts = []
    for p in (a, b):
        try:
            if p.is_symlink() or not p.is_file() or p.stat().st_size > _TEXT_LIMIT:
                return []
            data = p.read_bytes()
            if b"\0" in data:
                return []
            texts.append(data.decode("utf-8").splitlines())
        except (OSError, UnicodeDecodeError):
            return []
    return _unified(texts[0], texts[1], label_a, label_b)


def output_differences(a_root: Path, b_root: Path, label_a: str, label_b: str) -> list[str]:
    """Differing files of two output trees, each changed text file followed by its unified diff."""
    fa, fb = file_map(a_root), file_map(b_root)
    lines = []
    for line in differing_files(fa, fb):
        lines.append(line)
        rel = line.rsplit(" (", 1)[0]
        if line.endswith("(content differs)"):
            pa, pb = (a_root, b_root) if rel == "." else (a_root / rel, b_root / rel)
            lines += ["  " + x for x in text_diff(pa, pb, f"{label_a}/{rel}", f"{label_b}/{rel}")]
    return lines


# ---- nw check -----------------------------------------------------------------------------------


def check(store: Any, doc: dict[str, Any]) -> list[str]:
    """Re-run a recorded `nw run` step in a scratch directory and compare its output with the stored object,
    like `nix-build --check`: [] if the bytes are identical, else the differing files (with text diffs).
    The store is not changed: the re-run's output and log live in a scratch directory removed afterwards."""
    from nixlib import nar, temproots
    from nixlib.errors import NixWorkflowError, StepFailed
    from nixlib.recipe import RunOptions
    from nixlib.runner import Build, run_shell
    from nixlib.store import force_remove

    name = doc["name"]
    if set(doc["outputs"]) != {"out"} or doc.get("provenance"):
        raise NixWorkflowError(f"step '{name}' was recorded by {doc.get('tool')} for another front door "
                               f"({', '.join(doc.get('provenance') or doc['outputs'])}); `nw check` re-runs the "
                               "shell commands of `nw run` steps only")
    objects = [i["object"] for i in doc.get("inputs", [])] + [doc["outputs"]["out"]]
    temproots.of(store.root).add(objects)  # gc keeps the inputs and the result while we compare
    gone = [h for h in objects if not store.has(h)]
    gone += [p for p in doc["env"].get("paths", []) if not os.path.exists(p)]
    if gone:
        raise NixWorkflowError(f"step '{name}' cannot be checked: {', '.join(gone)} are no longer present (removed "
                               "by `nw gc` or Nix's garbage collector); run the experiment again first")
    fields = set(RunOptions.__dataclass_fields__)
    options = RunOptions(**{k: v for k, v in doc.get("options", {}).items() if k in fields})
    tmp = store.new_tmp(f"check-{name}")
    try:
        build = Build(name=name, out=tmp / "out", state=tmp / "state" if options.resumable else None, tmp=tmp,
                      log=tmp / "log", store_root=store.root, env_paths=tuple(doc["env"].get("paths", [])),
                      options=options)
        build.out.mkdir()
        if build.state is not None:
            build.state.mkdir()
        try:
            run_shell(build, doc["command"])
        except StepFailed as e:
            tail = "".join(build.log.read_text(errors="replace").splitlines(keepends=True)[-15:])
            raise NixWorkflowError(f"step '{name}' failed when re-run for the check ({e}); the last lines of its "
                                   f"log:\n{tail}") from None
        stored = store.object_path(doc["outputs"]["out"])
        if nar.nar_hash(build.out) == doc["outputs"]["out"]:
            return []
        return output_differences(stored, build.out, "stored", "re-run") or ["the output differs (file modes)"]
    finally:
        force_remove(tmp)
