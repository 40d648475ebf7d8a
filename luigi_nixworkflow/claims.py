"""Which task of this build declares each legacy output path: two tasks, one file, refused before either runs.

Two NixTasks of one build with different task ids may declare the same LocalTarget path (`Part(v=1)` and
`Part(v=2)` whose output() ignores `v`; `[Clean] min_qty=2` in luigi.cfg reaching Clean() but not the copy of
`min_qty` that `@requires(Clean)` makes in Summarize), or one may declare a directory and the other a file inside
it. There is one file on disk: every check restores each task's stored result there in turn, and a task reading it
reads whichever was put there last while its record says which it read. Every legacy task's recipe is built (by
its own complete() or a dependant's) before the task is restored or run, also one a run() yields, so each recipe
claims its paths here (translate.build) and the second claimant fails, whatever branches of the graph they are in.

Cost: one dict lookup per declared path, and one per directory above it not yet listed (a directory already
listed had its own ancestors checked then), so a build's claims are O(outputs). reset() starts each build afresh.
"""

from __future__ import annotations

import functools
import os
import traceback
from pathlib import Path
from typing import Any

import luigi.configuration
import luigi.worker
from luigi.task import flatten

from luigi_nixworkflow import legacy, registry
from nixlib.errors import NixWorkflowError

_OWNER: dict[str, Any] = {}  # declared output path -> the task declaring it, in this build
_BELOW: dict[str, tuple[Any, str]] = {}  # directory above a declared path -> (a task, its path below it)
_WALKED: dict[str, bool] = {}  # task id -> whether walked as reached by a recipe (parallel scheduling: _upstream)
_REFUSED: dict[str, NixWorkflowError] = {}  # task id -> the clash it is in (its run() builds its recipe again)


def reset() -> None:
    """Forget the claims (each luigi.build starts afresh: a task may have changed its output() since)."""
    _OWNER.clear()
    _BELOW.clear()
    _REFUSED.clear()
    _WALKED.clear()


def claim(task: Any, paths: list[Path]) -> None:
    """Note that `task` declares `paths` (absolute, distinct, not nested: legacy.paths); raise when another task
    of this build declares one of them, a directory holding one, or a path inside one. The first claimant was
    scheduled already (the clash shows at the second's complete()), so its run() (which claims again) is refused
    too: neither runs, and what needs either is not run."""
    refused = _REFUSED.get(task.task_id)
    if refused is not None:
        raise refused
    for p in paths:
        try:
            _claim(task, os.fspath(p))
        except _Clash as e:
            for t in e.tasks:
                _REFUSED.setdefault(t.task_id, e)
            raise


def _claim(task: Any, p: str) -> None:
    """Check first, then note: a refused claim leaves no half-noted state behind."""
    other = _OWNER.get(p)
    if other is not None:
        if other.task_id != task.task_id:
            raise _same(other, task, p)
        return  # (its recipe built again: run() builds it afresh)
    below = _BELOW.get(p)
    if below is not None and below[0].task_id != task.task_id:
        raise _nested(task, p, *below)
    above = []
    d, parent = p, os.path.dirname(p)
    while parent != d and parent not in _BELOW:
        d = parent
        owner = _OWNER.get(d)
        if owner is not None and owner.task_id != task.task_id:
            raise _nested(owner, d, task, p)
        above.append(d)
        parent = os.path.dirname(d)
    _OWNER[p] = task
    for d in above:
        _BELOW[d] = (task, p)


class _Clash(NixWorkflowError):
    """Two tasks of this build declaring one path (or one inside the other)."""

    def __init__(self, message: str, *tasks: Any) -> None:
        super().__init__(message)
        self.tasks = tasks


def _same(one: Any, other: Any, p: str) -> _Clash:
    first, second = sorted((one, other), key=repr)  # (the same message whichever was checked first)
    differ = _differing(first, second)
    names = ", ".join(differ) or "the parameters that tell the two tasks apart"
    fix = f"Make output() depend on {names} (a path that contains {'them' if len(differ) != 1 else 'it'})"
    in_cfg = [n for n in differ if _in_cfg(second.task_family, n)]
    if in_cfg:
        fix += (f", or give {', '.join(in_cfg)} {'their values' if len(in_cfg) > 1 else 'its value'} in one place: "
                f"luigi.cfg's [{second.task_family}] section sets it, but a task that copies {second.task_family}'s "
                "parameters with @requires or @inherits reads its own section, not this one (set it there too, or "
                "pass it on explicitly)")
    return _Clash(
        f"{first!r} and {second!r}, which both declare the output {p}, are two tasks of this build: there is one "
        "file at that path, so each check of one puts its own stored result there in place of the other's, and a "
        f"task that requires either reads whichever is there while its record says which. {fix}. "
        "Neither is run from now on", first, second)


def _in_cfg(section: str, name: str) -> bool:
    """True if luigi.cfg sets parameter `name` in `section` (as Luigi reads it: `min_qty` or `min-qty`)."""
    config = luigi.configuration.get_config()
    return any(config.has_option(section, n) for n in (name, name.replace("_", "-")))


def _differing(first: Any, second: Any) -> list[str]:
    """The parameters (by name) whose values tell two tasks of one family apart; [] for different families."""
    if first.task_family != second.task_family:
        return []
    a, b = first.param_kwargs, second.param_kwargs
    return [n for n in a if n in b and a[n] != b[n]]


def _nested(outer: Any, directory: str, inner: Any, p: str) -> _Clash:
    return _Clash(
        f"{outer!r} and {inner!r} are two tasks of this build whose outputs are one inside the other: {outer!r} "
        f"declares the directory {directory}, and {inner!r} declares {p} inside the directory. Each check of a task "
        "restores its declared output exactly as that task made it, so the file would be removed and put back in "
        "turn, and a task that requires either would read whichever copy is there while its record says which. Declare "
        f"the outputs side by side (the file outside the directory, or have {outer!r} write it). Neither is run from "
        "now on", outer, inner)


# ---- parallel scheduling: complete() runs in a process pool, whose claims this process never sees ---------------

_PARALLEL = [False]  # True while Luigi's Worker.add checks completeness in a process pool (parallel_scheduling)


def install() -> None:
    """Wrap Luigi's Worker.add and Worker._add once (idempotent). With `[core] parallel_scheduling`, each complete()
    runs in a pool process, so what its recipe claimed there is lost and two clashing tasks could both run (each in
    a process that never saw the other). The scheduling process then claims each task's paths itself as Luigi takes
    its answer (_add runs here, before anything runs; the task processes of `--workers` are forked from here after
    scheduling, so its refusals reach their run()). A Luigi without these hooks keeps the in-process check only."""
    worker = getattr(luigi.worker, "Worker", None)
    if worker is None or not hasattr(worker, "add") or not hasattr(worker, "_add"):
        return
    if not getattr(worker.add, "_nw_wrapper", False):
        worker.add = _wrap_add(worker.add)
    if not getattr(worker._add, "_nw_wrapper", False):
        worker._add = _wrap_answer(worker._add)


def _wrap_add(original: Any) -> Any:
    @functools.wraps(original)
    def add(self: Any, task: Any, multiprocess: bool = False, processes: int = 0) -> Any:
        before, _PARALLEL[0] = _PARALLEL[0], bool(multiprocess)
        try:
            return original(self, task, multiprocess, processes)
        finally:
            _PARALLEL[0] = before

    add._nw_wrapper = True  # type: ignore[attr-defined]
    return add


def _wrap_answer(original: Any) -> Any:
    @functools.wraps(original)
    def _add(self: Any, task: Any, is_complete: Any) -> Any:
        if _PARALLEL[0]:
            is_complete = claim_here(task, is_complete)
        return original(self, task, is_complete)

    _add._nw_wrapper = True  # type: ignore[attr-defined]
    return _add


def claim_here(task: Any, is_complete: Any) -> Any:
    """`is_complete`, or Luigi's wrapper of a complete() error (logged as its one paragraph by failures.py: the task
    and what needs it are not run) when claiming in this process finds a clash. The task is claimed with every legacy
    NixTask upstream of it, as its complete() claimed them while building its recipe, whatever it answered: a task
    found complete has its upstream tasks scheduled by nobody, and one whose complete() failed on a clash (seen in
    the pool process) would otherwise leave the other claimant free to run here."""
    try:
        for t in _upstream(task):
            paths = _declared(t)
            if paths:
                claim(t, paths)
    except _Clash:
        return is_complete if is_complete not in (True, False) else \
            luigi.worker.TracebackWrapper(traceback.format_exc())
    return is_complete


def _upstream(task: Any) -> list[Any]:
    """The task and the tasks upstream of it that its recipe reaches (inputs.upstream: from a NixTask the store
    manages, through plain tasks), that no earlier answer of this build walked (each task is walked once per build:
    O(tasks) in all). Not past a plain task no such recipe reached, nor an unmanaged NixTask: their complete() built
    no recipe, and a requires() Luigi never calls may go on for ever (`Task(n - 1)` below a task found complete)."""
    found, stack = [], [(task, False)]
    while stack:
        t, reached = stack.pop()
        if _WALKED.get(t.task_id, -1) >= reached:  # (walked already, as far: a plain task first seen unreached is
            continue  # walked again once a recipe reaches it)
        if t.task_id not in _WALKED:
            found.append(t)
        _WALKED[t.task_id] = reached
        try:
            nix = registry.is_nix(t)
            if nix and t.nix_managed():
                stack.extend((u, True) for u in t.nix_requires())
            elif not nix and reached:
                stack.extend((u, True) for u in flatten(t.requires()))
        except Exception:  # noqa: BLE001 - its own complete() or deps() reports it
            continue
    return found


def _declared(task: Any) -> list[Path]:
    """The paths a legacy NixTask the store holds declares ([] for any other task: it claims nothing)."""
    try:
        if not registry.is_nix(task) or task.nix_kind() != "legacy":
            return []
        return legacy.paths(task)
    except Exception:  # noqa: BLE001 - its own complete() reports a bad output()
        return []
