"""Per-process registries the recipes of one Luigi run share: where store objects come from, who made them.

A command interpolates paths, and a path alone does not say what it is: these maps turn a path back
into a key input. `SOURCES` holds static() files and plain tasks' LocalTargets by NAR hash, so run()
can add them to the store before the command reads them; `OWNERS` holds NixTasks by the object they
realised to, so a store path pasted into a command is keyed as that task's output (stable before and
after realisation); the scanners recognise each task's placeholder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luigi_nixworkflow import settings
from nixlib import context, statics, temproots
from nixlib.errors import NixWorkflowError

if TYPE_CHECKING:
    from luigi_nixworkflow.task import NixTask

SOURCES: dict[str, Path] = {}
LINKED_OUT: dict[str, str] = {}  # plain LocalTarget directories with links out of them, by NAR hash: their real path
OWNERS: dict[str, dict[str, NixTask]] = {}
_SCANNERS: dict[str, context.Scanner[NixTask]] = {}


def reset() -> None:
    for memo in (SOURCES, LINKED_OUT, OWNERS, _SCANNERS):
        memo.clear()


def scanner(root: str) -> context.Scanner[NixTask]:
    found = _SCANNERS.get(root)
    if found is None:
        found = _SCANNERS[root] = context.Scanner(root)
    return found


IN_STEP: list[str] = []  # the task id whose run() or produce() is running in this process (steps.in_step)


def static(path: str | os.PathLike) -> str:
    """A file or directory used by content (a tool, a config): its store path.

    The key depends on the content, not on where the checkout lives. A command interpolates it (the
    reference is keyed); a run() or produce() reads the path from a module-level name or a class attribute
    (`LOOKUP = static("lookup.csv")`), whose value the code digest keys. The copy is added to the store
    now, so it exists when the step reads it, and it holds exactly the bytes that were hashed. Called
    inside run() or produce(), after the key was computed, it is an error: an edit would be served stale.
    """
    written = Path(path).absolute()
    if IN_STEP:
        raise NixWorkflowError(
            f"task {IN_STEP[-1]}: static({os.fspath(path)!r}) was called while its run() or produce() runs, after "
            "its key was computed, so that file's content is not in the key and an edit to it would be served "
            "stale. Call static() where the key sees it: at module level (LOOKUP = static(\"lookup.csv\")) or in "
            "the class body, and read that path in run()")
    if not os.path.exists(written):  # (a dangling link too)
        raise NixWorkflowError(f"static input {written} does not exist")
    root = settings.store_root()
    store = settings.engine(root).store
    source, h = statics.content(store.memo, written)  # (a symlink: the data it points to)
    SOURCES[h] = source
    temproots.of(store.root).add([h])  # (kept from `nw gc` while this process may read it)
    if not store.has(h) and store.ingest(source) != h:
        raise NixWorkflowError(f"static input {written} changed while it was read; run again")
    return f"{root}/store/{h}"


def materialised(h: str, root: str) -> str:
    """The object a command reads for the plain input directory `h` (in LINKED_OUT): its copy with the links out of
    it followed (nixlib.statics.materialised), made afresh for each run: the data behind the links may have
    changed since an earlier run in this process (its key, which covers that data, has then changed too)."""
    return statics.materialised(settings.engine(root).store, LINKED_OUT[h])


def owner(h: str | None, deps: list[Any]) -> NixTask | None:
    """The NixTask that realised object `h`, preferring one of `deps` (the task's requires())."""
    owners = OWNERS.get(h or "")
    if not owners:
        return None
    if len(owners) > 1:
        for dep in deps:
            if dep.task_id in owners:
                return owners[dep.task_id]
    return next(iter(owners.values()))


def remember_owner(h: str, task: NixTask) -> None:
    OWNERS.setdefault(h, {}).setdefault(task.task_id, task)



def is_task(obj: Any) -> bool:
    """A NixTask (managed or not). Duck-typed, so no module below task.py imports it."""
    return callable(getattr(obj, "nix_managed", None))


def is_nix(task: Any) -> bool:
    """A NixTask whose result the store holds (not a legacy one with outputs the store cannot hold). Read from the
    instance's memo when nix_managed() has answered before (graph walks ask it of every dependency)."""
    known = getattr(task, "__dict__", {}).get("_nw_managed")
    if known is not None:
        return bool(known)
    return is_task(task) and task.nix_managed()
