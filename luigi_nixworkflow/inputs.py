"""A task's inputs as the key sees them: upstream NixTasks and the content of plain tasks' LocalTargets.

The walk goes through plain tasks (their requires(), a WrapperTask, a plain task between two
NixTasks) and stops at NixTasks, whose own keys cover what is upstream of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import luigi
from luigi.task import flatten

from luigi_nixworkflow import registry, settings
from luigi_nixworkflow.target import NixTarget
from nixlib import statics
from nixlib.recipe import Input, Recipe

if TYPE_CHECKING:
    from luigi_nixworkflow.task import NixTask


class Pending(Exception):  # noqa: N818 - a state, not an error: the recipe cannot be computed *yet*
    """An input does not exist yet (a plain upstream task has not written its LocalTarget)."""



def step_inputs(up: NixTask, recipe: Recipe, root: str) -> list[Input]:
    """One input per output of an upstream NixTask (a legacy one may declare several files)."""
    token = up.nix_placeholder(root)
    return [Input(token if name == "out" else f"{token}!{name}", step=recipe, output=name) for name in recipe.outputs]


def upstream(root: str, deps: list[luigi.Task], classes: set[type] | None = None,
             ) -> tuple[list[NixTask], dict[str, str], dict[str, str], list[Any]]:
    """NixTasks this task depends on, directly or through plain tasks (a WrapperTask, a plain task between
    two NixTasks); content hashes of plain tasks' LocalTargets by logical name and by the path as written;
    and the identity of plain outputs that cannot be hashed. The walk goes through plain tasks (their
    requires()) and stops at NixTasks, whose own keys cover what is upstream of them. A LocalTarget of a
    required task that is missing means the recipe is Pending; one further up is keyed as absent (Luigi
    never looks behind a complete task, so a cleaned-up intermediate file is legitimate). `classes`, if given,
    receives the classes of the tasks walked (keyed by their results: keying.named_tasks leaves their code out)."""
    if classes is not None:
        classes.update(map(type, deps))
    for dep in deps:
        if not registry.is_nix(dep):
            break
    else:  # the common case: no plain task to look through
        return list({dep.task_id: dep for dep in deps}.values()) if len(deps) > 1 else list(deps), {}, {}, []
    nix: dict[str, NixTask] = {}
    files: dict[str, str] = {}
    local: dict[str, str] = {}
    opaque: list[dict[str, Any]] = []
    store = settings.engine(root).store
    seen: set[str] = set()
    stack = [(dep, True) for dep in reversed(deps)]
    while stack:
        dep, direct = stack.pop()
        if dep.task_id in seen:
            continue
        seen.add(dep.task_id)
        if classes is not None:
            classes.add(type(dep))
        if registry.is_nix(dep):
            nix.setdefault(dep.task_id, dep)
            continue
        for target in flatten(dep.output()):
            if isinstance(target, luigi.LocalTarget):
                name = logical_name(target.path)
                if not os.path.exists(target.path):  # (a dangling symlink too: Luigi's exists() says so)
                    if direct:
                        raise Pending(f"{dep.task_id} ({target.path})")
                    files[name] = "absent"
                    continue
                # A symlinked file (`raw.csv -> /shared/raw_v3.csv`) is keyed by the data it points to, which
                # is what run() reads: the link's own text does not change when that data is edited.
                real = os.path.realpath(target.path)
                h, linked = statics.hashed(store.memo, real)
                registry.SOURCES.setdefault(h, Path(real))
                files[name] = h
                files.update((f"{name}/{rel}", lh) for rel, lh in linked.items())
                if linked:  # (a command reads its copy with those links followed: registry.materialised)
                    registry.LINKED_OUT[h] = real
                if direct:
                    local[target.path] = h
            else:  # a database table, a remote file: only its identity can enter the key
                opaque.append({"task": dep.task_id, "target": type(target).__name__,
                               "path": str(getattr(target, "path", ""))})
        stack.extend((d, False) for d in reversed(flatten(dep.requires())))
    return list(nix.values()), files, local, opaque


_LOOKED_THROUGH = (luigi.Task.complete, luigi.WrapperTask.complete)  # a task without outputs that only groups


def unhashable(task: NixTask) -> list[str]:
    """The targets `task` reads whose content the store cannot hash: an output of a task it requires that is
    neither a LocalTarget with a fixed path nor a NixTarget (a MockTarget, an S3 object, a database table), or a
    required task without outputs whose own complete() says what it made (a row in a database), also through
    required tasks that have no output of their own and Luigi's complete() (a WrapperTask). Only such a target's
    identity could enter the key, so a result stored for it would be served after its content changed: a task
    that reads one is not cached (legacy.unmanaged) or refused (store-native). Tasks further up are covered by
    the content of the files in between, as plain Luigi sees them."""
    found: list[str] = []
    seen: set[str] = set()
    stack = list(reversed(task.nix_requires()))
    while stack:
        dep = stack.pop()
        if dep.task_id in seen:
            continue
        seen.add(dep.task_id)
        if registry.is_task(dep) and (dep.__dict__.get("_nw_managed") or dep.nix_kind() != "legacy"):
            continue  # its outputs are held by the store (a NixTarget; LocalTargets, known to be)
        targets = flatten(dep.output())
        complete = type(dep).complete  # (a NixTask's wraps the WrapperTask's: task._wrap_complete)
        if not targets and getattr(complete, "__wrapped__", complete) not in _LOOKED_THROUGH:
            found.append(f"what {dep.task_id}'s complete() checks")  # (a database row, a remote flag: no file)
        elif not targets:
            stack.extend(reversed(flatten(dep.requires())))
        found += [f"{type(t).__name__}({getattr(t, 'path', '') or ''}) of {dep.task_id}" for t in targets
                  if not isinstance(t, NixTarget) and not (isinstance(t, luigi.LocalTarget) and not t.is_tmp)]
    return found


def logical_name(path: str) -> str:
    """A LocalTarget's name in the key: relative to the working directory when inside it, so the
    same pipeline in another checkout keys the same."""
    absolute = os.path.abspath(path)
    rel = os.path.relpath(absolute)
    return absolute if rel.startswith("..") else rel

