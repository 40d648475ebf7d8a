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
from nixlib.recipe import Input, Recipe

if TYPE_CHECKING:
    from luigi_nixworkflow.task import NixTask


class Pending(Exception):  # noqa: N818 - a state, not an error: the recipe cannot be computed *yet*
    """An input does not exist yet (a plain upstream task has not written its LocalTarget)."""



def step_inputs(up: NixTask, recipe: Recipe, root: str) -> list[Input]:
    """One input per output of an upstream NixTask (a legacy one may declare several files)."""
    token = up.nix_placeholder(root)
    return [Input(token if name == "out" else f"{token}!{name}", step=recipe, output=name) for name in recipe.outputs]


def upstream(root: str, deps: list[luigi.Task]) -> tuple[list[NixTask], dict[str, str], dict[str, str], list[Any]]:
    """NixTasks this task depends on, directly or through plain tasks (a WrapperTask, a plain task between
    two NixTasks); content hashes of plain tasks' LocalTargets by logical name and by the path as written;
    and the identity of plain outputs that cannot be hashed. The walk goes through plain tasks (their
    requires()) and stops at NixTasks, whose own keys cover what is upstream of them. A LocalTarget of a
    required task that is missing means the recipe is Pending; one further up is keyed as absent (Luigi
    never looks behind a complete task, so a cleaned-up intermediate file is legitimate)."""
    if all(registry.is_nix(dep) for dep in deps):  # the common case: no plain task to look through
        return list({dep.task_id: dep for dep in deps}.values()), {}, {}, []
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
        if registry.is_nix(dep):
            nix.setdefault(dep.task_id, dep)
            continue
        for target in flatten(dep.output()):
            if isinstance(target, luigi.LocalTarget):
                name = logical_name(target.path)
                if not os.path.lexists(target.path):
                    if direct:
                        raise Pending(f"{dep.task_id} ({target.path})")
                    files[name] = "absent"
                    continue
                h = store.memo.hash(target.path)
                registry.SOURCES.setdefault(h, Path(target.path).absolute())
                files[name] = h
                if direct:
                    local[target.path] = h
            else:  # a database table, a remote file: only its identity can enter the key
                opaque.append({"task": dep.task_id, "target": type(target).__name__,
                               "path": str(getattr(target, "path", ""))})
        stack.extend((d, False) for d in reversed(flatten(dep.requires())))
    return list(nix.values()), files, local, opaque


def logical_name(path: str) -> str:
    """A LocalTarget's name in the key: relative to the working directory when inside it, so the
    same pipeline in another checkout keys the same."""
    absolute = os.path.abspath(path)
    rel = os.path.relpath(absolute)
    return absolute if rel.startswith("..") else rel

