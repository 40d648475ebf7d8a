"""Presenting a task's result in the working tree: output links (GC roots) and a legacy task's files.

Done whenever a task is found complete, not only when it runs, so the working tree always shows the
current results (after an edit is reverted, the link shows the reverted result again) and `nw gc`
keeps what the current graph uses. Once per task and process; reset() presents everything again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from luigi.task import flatten

from luigi_nixworkflow import claims, dynamic, graph, legacy, registry, settings, shape
from nixlib.engine import Result

logger = logging.getLogger("luigi-interface")
_GENERATION = [0]  # bumped by reset(): outputs presented before are presented again (files may be gone)
GENERATION = _GENERATION  # read as GENERATION[0] where a function call per task would show (task.nix_requires)
PRESENTED = "_nw_presented"  # task attribute: (stamp, True) once presented
OWNED = "_nw_owned"  # task attribute: (stamp, Result) once the store is known to hold its result
_LINK_DIRS: dict[tuple[str, str], str] = {}  # (working directory, out_link) -> the absolute link directory
_STAMPS: dict[str, str] = {}  # store root -> stamp(root) of this generation (asked several times per task)


def reset() -> None:
    """Present every output again (task instances outlive a reset in Luigi's instance cache)."""
    _GENERATION[0] += 1
    _LINK_DIRS.clear()
    _STAMPS.clear()
    legacy.reset()
    claims.reset()


def generation() -> int:
    """Bumped at every luigi.build (reset()): what a task memoises from its own code (requires()) is made again."""
    return _GENERATION[0]


def stamp(root: str) -> str:
    """What a per-task memo of this process is valid for: the store root, until the next reset()."""
    found = _STAMPS.get(root)
    if found is None:  # (the string is the same until reset(), which clears these)
        found = _STAMPS[root] = f"{root}#{_GENERATION[0]}"
    return found


def present_all(task: Any, root: str | None = None) -> None:
    """Present this task's outputs and those of every NixTask it depends on, once per process: those it requires
    and those behind a plain task without outputs it requires (a WrapperTask), whose files plain Luigi would make
    again when they are gone (nothing plain Luigi finds complete lies between), as it keys them."""
    root = root or settings.store_root()
    now = stamp(root)
    pending = [task]
    while pending:
        for t in graph.unknown_of(pending.pop(), PRESENTED, now):
            result = graph.memo(t, OWNED, now)
            if result is not None:
                present(t, result, root)
                # behind a WrapperTask (`All` requires Enrich(d) for each day): keyed through it, presented too
                pending += [b for b in graph.grouped(t) if graph.memo(b, PRESENTED, now) is None
                            and b.nix_result(root) is not None]


def present(task: Any, result: Result, root: str | None = None) -> None:
    """Link each output (a GC root) and restore a legacy task's files where they differ from the store."""
    root = root or settings.store_root()
    objects = f"{root}/store"  # (store.object_path, without building a Path per output)
    outputs = result.outputs
    for name, h in sorted(outputs.items()) if len(outputs) > 1 else outputs.items():
        link_output(task.task_id if name == "out" else f"{task.task_id}.{name}", f"{objects}/{h}", root)
    if shape.kind(type(task)) == "legacy":
        for path in legacy.restore(task, settings.engine(root).store, outputs):
            logger.info("nixworkflow: %s: restored %s from the store", task.task_id, path)
    task.__dict__[PRESENTED] = (stamp(root), True)
    for sub in delegated(task):  # its run() ran them, as plain Luigi does again when their files are gone
        if sub.nix_result(root) is not None:
            present_all(sub, root)
    if shape.is_dynamic(type(task)):  # what its run() yielded is not in requires(): present it too
        for yielded, _ in dynamic.yielded(result.record):
            if registry.is_nix(yielded) and yielded.nix_result() is not None:
                present_all(yielded)


def delegated(task: Any) -> list[Any]:
    """The NixTasks a `luigi.util.delegates` task runs inside its own run() (`subtasks()`): each is stored as its own
    result when that run() calls its run(), but the scheduler never sees it, so nothing else presents it. Plain Luigi
    re-runs the delegating task when its files are gone, and its run() writes the subtasks' files again; served from
    the store, it must restore them too, or a re-build after deleting outputs leaves the subtasks' files missing."""
    deps = getattr(type(task), "deps", None)
    if getattr(deps, "__module__", None) != "luigi.util" or "delegates." not in getattr(deps, "__qualname__", ""):
        return []
    return [t for t in flatten(task.subtasks()) if registry.is_nix(t)]


def link_output(name: str, obj: str | os.PathLike[str], root: str | None = None) -> None:
    """Link a realised output at <out_link>/<name> (Store.link_output: atomic; the link directory is the GC root)."""
    directory = _link_dir()
    if directory is not None:
        settings.engine(root).store.link_output(directory, name, os.fspath(obj))


def _link_dir() -> str | None:
    """The absolute output-link directory (None: links are off), spelled as the GC roots have always named it."""
    directory = settings.settings().out_link
    if not directory or directory.lower() == "none":
        return None
    key = (os.getcwd(), directory)
    found = _LINK_DIRS.get(key)
    if found is None:
        found = _LINK_DIRS[key] = str(Path(directory).absolute())
    return found
