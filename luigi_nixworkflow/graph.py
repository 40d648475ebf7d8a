"""Walking the NixTasks a task depends on, dependencies first, without recursion.

Luigi chains (`Daily(day)` requires `Daily(day - 1)`) may be thousands of tasks deep, so recipes,
lookups and presentation go through this iterative walk; per-task memos are stamped with what they
were made for (a store root), so a changed NIX_WORKFLOW_STORE never serves another store's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from luigi_nixworkflow import registry


def memo(task: Any, name: str, stamp: str) -> Any:
    """A per-task memo entry (stamp, value), valid for the store root (or generation) it was made for."""
    known = task.__dict__.get(name)
    return known[1] if known is not None and known[0] == stamp else None


def postorder(task: Any, unknown: Callable[[Any], bool]) -> list[Any]:
    """`task` and the NixTasks it requires, transitively, for which `unknown` holds (the walk does not
    go past known ones): dependencies first, `task` last. Iterative, so chains of any depth work."""
    if not any(registry.is_task(d) and unknown(d) for d in task.nix_requires()):
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
        stack.extend((d, False) for d in current.nix_requires() if registry.is_task(d) and unknown(d))
    return order
