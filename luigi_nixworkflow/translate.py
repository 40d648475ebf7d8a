"""A NixTask as a Recipe: what the engine keys, looks up and runs.

The key covers the task family, its significant parameters (canonical JSON), a digest of its
code, its env identity, the content of plain upstream LocalTargets and, through recipe inputs
with step references, its upstream NixTasks (their recipe keys before they exist, their
content hashes once realised: early cutoff comes from `Recipe.resolved_key`). Luigi's own
task_id covers only the parameters, which is why it cannot be the cache key.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import decimal
import enum
import functools
import inspect
import math
import os
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import luigi
from luigi.task import flatten
from luigi.task_register import Register

from luigi_nixworkflow import legacy, settings
from luigi_nixworkflow.target import RENDERING
from nixlib import context
from nixlib.command import CommandSyntaxError, normalise, shell_form
from nixlib.errors import NixWorkflowError
from nixlib.names import check_step_name
from nixlib.recipe import Input, Recipe, RunOptions, digest

if TYPE_CHECKING:
    from luigi_nixworkflow.task import NixTask

# Where each object a command may reference comes from, so run() can add it to the store:
# static() files and LocalTargets of plain upstream tasks, by NAR hash.
SOURCES: dict[str, Path] = {}
# NixTasks by the object they realised to, so a store path interpolated into a command is
# keyed as that task's output (stable before and after realisation), not as a loose object.
OWNERS: dict[str, dict[str, NixTask]] = {}
_SCANNERS: dict[str, context.Scanner[NixTask]] = {}
_CONFIG_VALUES: dict[type, dict[str, Any]] = {}  # per process: luigi.cfg is read once, as Luigi does
_SKIP_MODULES = frozenset({"luigi", "luigi_nixworkflow"})


def reset() -> None:
    for memo in (SOURCES, OWNERS, _SCANNERS, _CONFIG_VALUES):
        memo.clear()


class Pending(Exception):  # noqa: N818 - a state, not an error: the recipe cannot be computed *yet*
    """An input does not exist yet (a plain upstream task has not written its LocalTarget)."""


def scanner(root: str) -> context.Scanner[NixTask]:
    found = _SCANNERS.get(root)
    if found is None:
        found = _SCANNERS[root] = context.Scanner(root)
    return found


def static(path: str | os.PathLike) -> str:
    """A file or directory used by content (a tool, a config): its future store path, for commands.

    The key depends on the content, not on where the checkout lives; run() copies it into the
    store before the command runs, so the command reads exactly the bytes that were hashed.
    """
    source = Path(path).absolute()
    if not os.path.lexists(source):
        raise NixWorkflowError(f"static input {source} does not exist")
    root = settings.store_root()
    h = settings.engine(root).store.memo.hash(source)
    SOURCES[h] = source
    return f"{root}/store/{h}"


# ---- the recipe --------------------------------------------------------------------------


def is_nix(task: Any) -> bool:
    """A NixTask whose result the store holds (not a legacy one with outputs the store cannot hold).

    Duck-typed, so this module never imports task.py (task.py imports it)."""
    managed = getattr(task, "nix_managed", None)
    return managed is not None and managed()


def build(task: NixTask, root: str, kind: str, runnable: bool = False) -> Recipe:
    """The task's recipe; raises Pending while a plain upstream output is missing. Only a `runnable`
    recipe carries the shell form of its command (what runs; not keyed, so complete() skips it)."""
    cls = type(task)
    check_step_name(task.task_id, f"Luigi task {task.task_family} (its task_id names the step and its output link)")
    luigi_part: dict[str, Any] = {"family": task.task_family, "params": params(task), "code": code_digest(cls)}
    configs = config_values(cls)
    if configs:
        luigi_part["configs"] = configs
    extra: dict[str, Any] = {"luigi": luigi_part}
    settings.choose_env(cls)  # a misnamed env is an error now, even while inputs are still missing
    deps = task.nix_requires()
    upstream, files, local, opaque = _upstream(root, deps)
    mentioned: set[str] = set()
    shell: str | None = None
    outputs: tuple[str, ...] = ("out",)
    if kind == "shell":
        command, shell, inputs = _shell(task, root, local, deps, mentioned, runnable)
    elif kind == "legacy":
        written = legacy.paths(task)
        outputs = legacy.output_names(len(written))
        luigi_part["outputs"] = [logical_name(str(p)) for p in written]
        command, inputs = f"python {task.task_family}.run", []
    else:
        command, inputs = f"python {task.task_family}.produce", []
    for up in upstream:
        recipe = up.nix_recipe()
        if recipe is None:
            raise Pending(up.task_id)
        if up.task_id not in mentioned:  # required but not interpolated: keyed all the same
            inputs += step_inputs(up, recipe, root)
    env, configured = settings.resolve_env(cls, command)
    options = RunOptions(**{o: getattr(configured, o) if getattr(cls, o) is None else getattr(cls, o)
                            for o in ("pure", "sandbox", "network", "gpu")})
    if kind != "shell":  # run() and produce() run inside the worker: no sandbox can wrap them
        options = dataclasses.replace(options, sandbox=False)
    if getattr(cls, "allow_empty", False):
        options = dataclasses.replace(options, allow_empty=True)
    if getattr(cls, "resumable", False):  # a persistent $state keyed by the resolved key (nixlib.checkpoints)
        options = dataclasses.replace(options, resumable=True)
    if opaque:
        extra["opaque"] = opaque
    return Recipe(name=task.task_id, command=command, inputs=inputs, env=env.identity, env_paths=env.paths,
                  outputs=outputs, files=dict(sorted(files.items())), extra=extra, options=options, shell=shell)


def step_inputs(up: NixTask, recipe: Recipe, root: str) -> list[Input]:
    """One input per output of an upstream NixTask (a legacy one may declare several files)."""
    token = up.nix_placeholder(root)
    return [Input(token if name == "out" else f"{token}!{name}", step=recipe, output=name) for name in recipe.outputs]


def _upstream(root: str, deps: list[luigi.Task]) -> tuple[list[NixTask], dict[str, str], dict[str, str], list[Any]]:
    """NixTasks this task depends on, directly or through plain tasks (a WrapperTask, a plain task between
    two NixTasks); content hashes of plain tasks' LocalTargets by logical name and by the path as written;
    and the identity of plain outputs that cannot be hashed. The walk goes through plain tasks (their
    requires()) and stops at NixTasks, whose own keys cover what is upstream of them. A LocalTarget of a
    required task that is missing means the recipe is Pending; one further up is keyed as absent (Luigi
    never looks behind a complete task, so a cleaned-up intermediate file is legitimate)."""
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
        if is_nix(dep):
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
                SOURCES.setdefault(h, Path(target.path).absolute())
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


# ---- shell commands ----------------------------------------------------------------------


def _shell(task: NixTask, root: str, local: Mapping[str, str], deps: list[luigi.Task], mentioned: set[str],
           runnable: bool) -> tuple[str, str | None, list[Input]]:
    """The canonical command (keyed), its shell form (run: nothing reordered) and an input per reference
    in them; adds the referenced tasks to `mentioned`."""
    text = render(task, root)
    for path, h in local.items():  # a LocalTarget's path in the command reads its hashed copy instead
        text = _path_re(path).sub(f"{root}/store/{h}", text)
    try:
        text, shell = normalise(text), shell_form(text) if runnable else None
    except CommandSyntaxError as e:
        raise NixWorkflowError(f"task {task.task_id}: command(): {e}. Close the quote or escape it.") from None
    inputs: dict[str, Input] = {}
    for ref in scan(task, root, text):
        if ref.token in inputs:
            continue
        up = ref.target or (None if ref.obj in SOURCES else owner(ref.obj, deps))
        if ref.target is not None:
            mentioned.add(ref.target.task_id)
        else:  # a pasted store path names every task that produced that object
            mentioned.update(OWNERS.get(str(ref.obj), {}).keys())
        if up is not None:
            recipe = up.nix_recipe()
            if recipe is None:
                raise Pending(up.task_id)
            inputs[ref.token] = Input(ref.token, step=recipe)
        else:
            _check_object(task, root, str(ref.obj))
            inputs[ref.token] = Input(ref.token, obj=ref.obj)
    for up in deps:  # a legacy NixTask's LocalTargets in the command: its outputs, as the store holds them
        if not is_nix(up) or up.nix_kind() != "legacy":
            continue
        written = [t.path for t in legacy.local_targets(up) or []]
        if not any(_path_re(path).search(text) for path in written):
            continue
        recipe = up.nix_recipe()
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
def _path_re(path: str) -> re.Pattern[str]:
    variants = sorted({path, os.path.abspath(path)}, key=len, reverse=True)
    return re.compile(r"(?<![\w./-])(?:" + "|".join(map(re.escape, variants)) + r")(?![\w.-])")


def scan(task: NixTask, root: str, text: str) -> list[context.Ref[NixTask]]:
    try:
        return scanner(root).scan(text)
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
    for ref in scanner(root).scan(render(task, root)):
        up = ref.target or owner(ref.obj, deps)
        if up is not None and up is not task:
            found.setdefault(up.task_id, up)
    return list(found.values())


def owner(h: str | None, deps: list[luigi.Task]) -> NixTask | None:
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


def _check_object(task: NixTask, root: str, h: str) -> None:
    if h not in SOURCES and not settings.engine(root).store.has(h):
        raise NixWorkflowError(f"task {task.task_id}: command() references store object {h}, which is not in the "
                               f"store at {root}. Use static(path) for local files.")


# ---- parameters and code -----------------------------------------------------------------


class _NotCanonical(Exception):  # noqa: N818 - internal signal, turned into a NixWorkflowError
    pass


def params(task: luigi.Task) -> dict[str, Any]:
    """Significant parameters as canonical JSON values; a value without one is an error naming it."""
    out: dict[str, Any] = {}
    for name, param in type(task).get_params():  # (NixTask caches get_params per class)
        if not param.significant:
            continue
        value = task.param_kwargs[name]
        try:
            out[name] = _canonical(value)
            continue
        except _NotCanonical:
            pass
        out[name] = _typed(task, name, param, value)  # (outside the except: its error chains nothing internal)
    return out


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):  # JSON has no NaN or infinity
            raise _NotCanonical
        return value
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, datetime.date | datetime.time | datetime.timedelta | decimal.Decimal | PurePath):
        return {"type": type(value).__name__, "value": str(value)}
    if isinstance(value, enum.Enum):
        return {"type": type(value).__name__, "value": value.name}
    raise _NotCanonical


def _typed(task: luigi.Task, name: str, param: luigi.Parameter, value: Any) -> Any:
    """A typed Luigi parameter serialises its values canonically; the untyped one only strings."""
    if type(param) is not luigi.Parameter:
        try:
            text = param.serialize(value)
        except Exception:
            text = None
        if isinstance(text, str) and " at 0x" not in text:
            return {"serialized": text}
    raise NixWorkflowError(
        f"task {task.task_family}: parameter '{name}' has a value of type {type(value).__name__} ({value!r:.80}) "
        "that cannot be serialised canonically, so it cannot enter the cache key. Pass a JSON-like value "
        "(str, number, bool, list, dict with str keys) or use a typed luigi Parameter for it."
    )


@functools.cache
def code_digest(cls: type) -> str:
    """A digest of the task class's code (and of its own base classes), comments and layout ignored.

    `version` on the class replaces it: for code inspect cannot see (a REPL, exec), or to keep
    results across edits the author knows change nothing.
    """
    version = getattr(cls, "version", None)
    if version is not None:
        return "version:" + str(version)
    return digest([ast.dump(tree) for tree in _sources(cls)])


@functools.cache
def _sources(cls: type) -> tuple[ast.Module, ...]:
    """The parsed source of the class and of its own base classes (not Luigi's, not ours)."""
    trees = []
    for c in cls.__mro__:
        if c is object or c.__module__.split(".")[0] in _SKIP_MODULES:
            continue
        try:
            source = inspect.getsource(c)
        except (OSError, TypeError):
            raise NixWorkflowError(
                f"cannot read the source code of task class {c.__qualname__} (module {c.__module__}), which the "
                "cache key must cover. Set `version = \"1\"` on the class and change it whenever the code changes."
            ) from None
        trees.append(ast.parse(textwrap.dedent(source)))
    return tuple(trees)


@functools.cache
def _identifiers(cls: type) -> frozenset[str]:
    """Every name and attribute name the class's code mentions (None when its source cannot be read)."""
    try:
        trees = _sources(cls)
    except NixWorkflowError:
        return frozenset()
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
    return frozenset(names)


def config_classes(cls: type) -> list[type[luigi.Config]]:
    """The luigi.Config classes whose values the task reads: those its code names (`MyConfig().value`),
    plus those it declares in `configs = (MyConfig,)` (for values read by helpers outside the class)."""
    declared = list(getattr(cls, "configs", None) or ())
    for c in declared:
        if not (isinstance(c, type) and issubclass(c, luigi.Config)):
            raise NixWorkflowError(f"task {cls.__qualname__}: `configs` lists {c!r}, which is not a luigi.Config class")
    names = _identifiers(cls)
    found = [c for c in Register._reg if isinstance(c, type) and issubclass(c, luigi.Config)
             and c.__module__.split(".")[0] not in _SKIP_MODULES and c.__name__ in names]
    return list(dict.fromkeys([*declared, *found]))


def config_values(cls: type) -> dict[str, Any]:
    """The current values of the Config classes the task reads (luigi.cfg, environment), by family: they
    enter the key, so changing `[MyConfig] threshold` re-runs the tasks that read it."""
    known = _CONFIG_VALUES.get(cls)
    if known is None:
        known = _CONFIG_VALUES[cls] = {c.get_task_family(): params(c()) for c in config_classes(cls)}
    return known
