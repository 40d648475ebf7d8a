"""A command() as recipe text: rendered with placeholders, canonicalised, and each reference made an input.

What runs is the shell form (nothing reordered); what is keyed is the canonical form (whitespace
folded, `--key=value` options sorted), with every placeholder, pasted store path or LocalTarget path
of an upstream task turned into an input of the recipe.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import luigi

from luigi_nixworkflow import legacy, registry, settings
from luigi_nixworkflow.inputs import Pending, step_inputs
from luigi_nixworkflow.target import RENDERING
from nixlib import context
from nixlib.command import CommandSyntaxError, normalise, shell_form
from nixlib.errors import NixWorkflowError
from nixlib.recipe import Input

if TYPE_CHECKING:
    from luigi_nixworkflow.task import NixTask


def translate(task: NixTask, root: str, local: Mapping[str, str], deps: list[luigi.Task], mentioned: set[str],
           runnable: bool) -> tuple[str, str | None, list[Input]]:
    """The canonical command (keyed), its shell form (run: nothing reordered) and an input per reference
    in them; adds the referenced tasks to `mentioned`."""
    text = render(task, root)
    for path, h in local.items():  # a LocalTarget's path in the command reads its hashed copy instead
        text = _path_re(path).sub(f"{root}/store/{h}", text)
    try:
        text, shell = _normalise(text), shell_form(text) if runnable else None
    except CommandSyntaxError as e:
        raise NixWorkflowError(f"task {task.task_id}: command(): {e}. Close the quote or escape it.") from None
    for h in {h for h in local.values() if h in registry.LINKED_OUT} if shell is not None else ():
        # What runs reads such a directory with its outward links followed (the key covers their targets); the
        # store copy of the tree itself holds only the links, which dangle there.
        shell = shell.replace(f"{root}/store/{h}", f"{root}/store/{registry.materialised(h, root)}")
    inputs: dict[str, Input] = {}
    for ref in scan(task, root, text):
        if ref.token in inputs:
            continue
        up = ref.target or (None if ref.obj in registry.SOURCES else registry.owner(ref.obj, deps))
        if ref.target is not None:
            mentioned.add(ref.target.task_id)
        else:  # a pasted store path names every task that produced that object
            mentioned.update(registry.OWNERS.get(str(ref.obj), {}).keys())
        if up is not None:
            recipe = up.nix_recipe(root=root)
            if recipe is None:
                raise Pending(up.task_id)
            inputs[ref.token] = Input(ref.token, step=recipe)
        else:
            _check_object(task, root, str(ref.obj))
            inputs[ref.token] = Input(ref.token, obj=ref.obj)
    for up in deps:  # a legacy NixTask's LocalTargets in the command: its outputs, as the store holds them
        if not registry.is_nix(up) or up.nix_kind() != "legacy":
            continue
        written = [t.path for t in legacy.local_targets(up) or []]
        if not any(_path_re(path).search(text) for path in written):
            continue
        recipe = up.nix_recipe(root=root)
        if recipe is None:
            raise Pending(up.task_id)
        for i, path in zip(step_inputs(up, recipe, root), written, strict=True):
            text = _path_re(path).sub(lambda _m, t=i.token: t, text)
            shell = None if shell is None else _path_re(path).sub(lambda _m, t=i.token: t, shell)
            inputs[i.token] = i
        mentioned.add(up.task_id)
    return text, shell, list(inputs.values())


def render(task: NixTask, root: str) -> str:
    """command() with the task's own output spelled `$out` (the shell expands it in the build dir).

    While it renders, every NixTarget is its placeholder, realised or not: the command, and so the
    recipe key, is the same before and after the upstream tasks run (the engine substitutes the
    store paths when it runs the command)."""
    token = RENDERING.set(True)
    try:
        text = task.command()
    finally:
        RENDERING.reset(token)
    if not isinstance(text, str):
        raise NixWorkflowError(f"task {task.task_id}: command() must return a shell string, not "
                               f"{type(text).__name__}")
    return text.replace(task.nix_placeholder(root), "$out")


@functools.lru_cache(maxsize=4096)
def _normalise(text: str) -> str:
    """nixlib.command.normalise, memoised per process: a pure function of the text, and a pipeline's tasks
    often differ only in what is substituted into the same few commands."""
    return normalise(text)


@functools.lru_cache(maxsize=4096)
def _path_re(path: str) -> re.Pattern[str]:
    variants = sorted({path, os.path.abspath(path)}, key=len, reverse=True)
    return re.compile(r"(?<![\w./-])(?:" + "|".join(map(re.escape, variants)) + r")(?![\w.-])")


def scan(task: NixTask, root: str, text: str) -> list[context.Ref[NixTask]]:
    try:
        return registry.scanner(root).scan(text)
    except context.UnknownPlaceholder as e:
        raise NixWorkflowError(
            f"task {task.task_id}: command() references {e.token}, which is the output of no task known to this "
            "process (copied from another run?). Interpolate the task's output itself, e.g. "
            "f\"{self.input()}\", and list the task in requires()."
        ) from None


def referenced(task: NixTask, root: str) -> list[NixTask]:
    """NixTasks whose outputs the command interpolates: Luigi must schedule them first."""
    found: dict[str, NixTask] = {}
    deps = task.nix_requires()
    for ref in registry.scanner(root).scan(render(task, root)):
        up = ref.target or registry.owner(ref.obj, deps)
        if up is not None and up is not task:
            found.setdefault(up.task_id, up)
    return list(found.values())



def _check_object(task: NixTask, root: str, h: str) -> None:
    if h not in registry.SOURCES and not settings.engine(root).store.has(h):
        raise NixWorkflowError(f"task {task.task_id}: command() references store object {h}, which is not in the "
                               f"store at {root}. Use static(path) for local files.")

