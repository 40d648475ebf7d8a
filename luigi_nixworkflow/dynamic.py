"""Dynamic dependencies: a legacy NixTask whose run() yields tasks (Luigi's `yield` protocol).

What a run yields is known only while it runs, so it cannot be in the recipe key computed before.
Instead the realisation's record lists every yielded task with the content it had (`dynamic` in
its provenance), and a stored result is served only while each of them still has that content:
otherwise the task is stale and runs again, forced, replacing the record. run() itself executes
inside the engine's action; when it yields a task that is not complete, the action is abandoned
(nothing stored) and the requirement is handed to Luigi, which schedules it and calls run() again,
exactly as plain Luigi re-runs a generator from its start.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import luigi
from luigi.task import DynamicRequirements, flatten
from luigi.task_register import Register

from luigi_nixworkflow import registry, settings
from nixlib import statics


class NeedsDependencies(Exception):  # noqa: N818 - a state handed to Luigi, not an error
    """run() yielded tasks that are not complete yet: Luigi must run them first."""

    def __init__(self, requirements: Any) -> None:
        super().__init__("dynamic dependencies are not complete yet")
        self.requirements = requirements


def drive(generator: Generator[Any, Any, Any], seen: list[dict[str, Any]]) -> None:
    """Run a yielding run() to its end, answering each yield with the paths of complete tasks (each
    recorded in `seen` with its content); raises NeedsDependencies at the first incomplete one."""
    reply = None
    while True:
        try:
            yielded = generator.send(reply)
        except StopIteration:
            return
        requirements = yielded if isinstance(yielded, DynamicRequirements) else DynamicRequirements(yielded)
        if not requirements.complete():
            generator.close()
            raise NeedsDependencies(yielded)
        seen.extend(describe(t) for t in requirements.flat_requirements)
        reply = requirements.paths


def describe(task: luigi.Task) -> dict[str, Any]:
    """How to find the task again, and the content it has now."""
    return {"module": task.task_module, "family": task.task_family, "params": task.to_str_params(),
            "content": content(task)}


def content(task: luigi.Task) -> Any:
    """A NixTask's realised outputs; else the hashes of its LocalTargets (and identities of other targets)."""
    if registry.is_nix(task):
        result = task.nix_result()
        return None if result is None else dict(result.outputs)
    store = settings.engine().store
    found: list[Any] = []
    for target in flatten(task.output()):
        if isinstance(target, luigi.LocalTarget):
            found.append(_local(store.memo, target.path))
        else:
            found.append({"target": type(target).__name__, "path": str(getattr(target, "path", "")),
                          "exists": target.exists()})
    return found


def _local(memo: Any, path: str) -> Any:
    """A LocalTarget's content as inputs.upstream keys it: a symlinked file by the data it points to, a directory
    with its outward links' data too (None: missing)."""
    if not os.path.exists(path):
        return None
    h, linked = statics.hashed(memo, os.path.realpath(path))
    return {"hash": h, "links": linked} if linked else h


def yielded(record: dict[str, Any] | None) -> list[tuple[luigi.Task | None, dict[str, Any]]]:
    """The tasks a record lists as yielded (None where one can no longer be instantiated), with their entries."""
    found: list[tuple[luigi.Task | None, dict[str, Any]]] = []
    for entry in ((record or {}).get("provenance") or {}).get("dynamic") or []:
        try:
            task = _task_class(entry).from_str_params(entry["params"])
        except Exception:  # a task that no longer exists, or cannot be instantiated
            task = None
        found.append((task, entry))
    return found


def _task_class(entry: dict[str, Any]) -> type[luigi.Task]:
    """The class of a yielded task, by its family and module: two classes of one family (in two modules) make the
    family alone ambiguous to Luigi, and the task then counted as gone, so the result as stale (a needless re-run).
    Still ambiguous (one family twice in one module) or not found, Luigi's own lookup decides (and may raise)."""
    named = [c for c in Register._reg if getattr(c, "task_family", None) == entry["family"]
             and c.__module__ == entry.get("module")]
    return named[0] if len(named) == 1 else Register.get_task_cls(entry["family"])


def stale(record: dict[str, Any] | None) -> bool:
    """True if a yielded task the record lists no longer has the content it had when the result was made."""
    return any(task is None or content(task) != entry["content"] for task, entry in yielded(record))
