"""Walking the NixTasks a task depends on, dependencies first, without recursion.

Luigi chains (`Daily(day)` requires `Daily(day - 1)`) may be thousands of tasks deep, so recipes,
lookups and presentation go through this iterative walk; per-task memos are stamped with what they
were made for (a store root), so a changed NIX_WORKFLOW_STORE never serves another store's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import luigi
from luigi.task import flatten

from luigi_nixworkflow import registry


def reusable(struct: Any) -> Any:
    """requires()'s value as a structure that can be walked more than once, with the same outputs for
    luigi.task.getpaths and flatten. Luigi calls requires() anew for every use, so a generator (the common
    `for x in xs: yield Task(x)`), alone or inside a dict or list, works there; remembered once per task, it
    would be consumed by its first use and read as "no inputs" by every later one. Generators and other
    one-shot iterables become lists (what getpaths makes of them); everything else is returned as it is."""
    if struct is None or isinstance(struct, luigi.task.Task | str | bytes):
        return struct
    if isinstance(struct, dict):
        items = {k: reusable(v) for k, v in struct.items()}
        if all(items[k] is v for k, v in struct.items()):
            return struct
        try:
            return struct.__class__(items)
        except TypeError:  # a mapping class built otherwise (a defaultdict): a dict maps the same
            return items
    if isinstance(struct, list | tuple):
        parts = [reusable(r) for r in struct]
        if all(p is r for p, r in zip(parts, struct, strict=True)):
            return struct
        if hasattr(struct, "_fields"):  # a namedtuple
            return struct.__class__(*parts)
        return parts if type(struct) is list else struct.__class__(parts)
    try:
        return [reusable(r) for r in struct]
    except TypeError:
        return struct  # not iterable: Luigi's own error for it is raised where it is used


def memo(task: Any, name: str, stamp: str) -> Any:
    """A per-task memo entry (stamp, value), valid for the store root (or generation) it was made for."""
    known = task.__dict__.get(name)
    return known[1] if known is not None and known[0] == stamp else None


def unknown_of(task: Any, name: str, stamp: str) -> list[Any]:
    """postorder(task, lambda t: memo(t, name, stamp) is None): `task` and the NixTasks it needs whose memo `name` is
    not made for `stamp` yet, dependencies first. The common case (every task it requires has it already: each
    Work of a cached graph once its Data was looked up) is checked here with one dict read per dependency, before
    any walk; that check runs for every task at each of complete()'s three walks (recipe, lookup, presentation)."""
    for d in task.nix_requires():
        known = getattr(d, "__dict__", _NO_MEMO).get(name)
        if (known is None or known[0] != stamp or known[1] is None) and registry.is_nix(d):
            return postorder(task, lambda t: memo(t, name, stamp) is None)
    return [task]


_NO_MEMO: dict[str, Any] = {}


def grouped(task: Any) -> list[Any]:
    """The NixTasks `task` requires through plain tasks without outputs of their own (a WrapperTask, a task that
    only groups, nested), which the key walks through (inputs.upstream) and plain Luigi would check and run. Not
    behind a plain task with outputs: plain Luigi does not look behind one it finds complete."""
    deps = task.nix_requires()
    for d in deps:
        if not registry.is_nix(d):
            break
    else:  # the common case: nothing in between
        return []
    found: list[Any] = []
    seen: set[str] = set()
    stack = [d for d in deps if not registry.is_nix(d)]
    while stack:
        dep = stack.pop()
        if dep.task_id in seen:
            continue
        seen.add(dep.task_id)
        if registry.is_nix(dep):
            found.append(dep)
        elif not flatten(dep.output()):
            stack.extend(flatten(dep.requires()))
    return found


def postorder(task: Any, unknown: Callable[[Any], bool]) -> list[Any]:
    """`task` and the NixTasks it requires, transitively, for which `unknown` holds (the walk does not
    go past known ones): dependencies first, `task` last. Iterative, so chains of any depth work. A NixTask that
    runs as plain Luigi (nix_managed() is False) is not among them: it has no result in the store, and its files
    are keyed as a plain task's (inputs.upstream)."""
    if not any(registry.is_nix(d) and unknown(d) for d in task.nix_requires()):
        return [task]  # the common case: everything it requires is known already
    order: list[Any] = []
    seen: set[str] = set()
    stack: list[tuple[Any, bool]] = [(task, False)]
    while stack:
        current, expanded = stack.pop()
        if expanded:
            order.append(current)
            continue
        if current.task_id in seen:
            continue
        seen.add(current.task_id)
        stack.append((current, True))
        stack.extend((d, False) for d in current.nix_requires() if registry.is_nix(d) and unknown(d))
    return order
