"""NixTask: a Luigi task whose output is a content-addressed store object.

A subclass gives `command()` (a shell string) or `produce(out)` (Python), and optionally an
`env`. The adapter turns the task into a `nixlib.recipe.Recipe`; `complete()` is
`Engine.lookup` and `run()` is `Engine.realise`, which takes the store's per-key lock, so two
workers (or two task ids with one recipe) never run the same recipe twice, on any host that
shares the store. Nothing here hashes, locks or writes to the store by itself.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, ClassVar

import luigi
from luigi.task import flatten, getpaths

from luigi_nixworkflow import children, settings, translate
from luigi_nixworkflow.target import BUILDING, NixTarget
from nixlib import context
from nixlib.engine import Result, shell_action
from nixlib.errors import NixWorkflowError, StepFailed
from nixlib.recipe import Recipe
from nixlib.runner import Build

logger = logging.getLogger("luigi-interface")
_PROVIDED = ("run", "output", "complete")


class NixTask(luigi.Task):
    """A Luigi task run through nixworkflow: pinned env, cached by content, recorded in the store.

    Subclasses define exactly one of:

    - `command(self) -> str`: a shell command. Interpolate `self.input()` targets and
      `self.output()` (which becomes `$out`, the output directory; the command also runs in it).
    - `produce(self, out: Path) -> None`: Python run in the worker's interpreter, writing into
      the directory `out`; or `produce(self) -> None`, writing the output at `self.output().path`
      (a single file: `open(self.output().path, "w")`, `self.output().open("w")`; or a directory it
      creates). The env pins the *subprocesses* it starts (PATH etc. are the env's while it runs),
      not the interpreter running it; processes it leaves running are killed when it returns.

    An output with nothing in it fails the task unless the class sets `allow_empty = True`.

    Class attributes: `env` (an Env spec, or the name of one in nixworkflow.yaml; default: the
    yaml's `steps:` entry for the task family, else `[nixworkflow] env` of luigi.cfg, else the
    yaml's default env, else the host), `version` (replaces the code digest), and `pure`,
    `sandbox`, `network`, `gpu` (how the command runs; default: as the env's yaml entry says).
    """

    env: ClassVar[Any] = None
    version: ClassVar[str | None] = None
    # None: as the env's entry in nixworkflow.yaml says, else the engine's defaults (loose, no sandbox)
    pure: ClassVar[bool | None] = None
    sandbox: ClassVar[bool | None] = None
    network: ClassVar[bool | None] = None
    gpu: ClassVar[bool | None] = None
    allow_empty: ClassVar[bool] = False  # an empty output (no file in the directory, an empty file) is intended

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        overridden = [name for name in _PROVIDED if name in cls.__dict__]
        if overridden:
            raise TypeError(f"{cls.__qualname__} overrides {', '.join(overridden)}(): a NixTask provides these "
                            "(run() realises it through the store). Define command() or produce(out) instead.")

    @classmethod
    def get_params(cls) -> list[tuple[str, luigi.Parameter]]:
        """Luigi walks dir(cls) on every instantiation (several times); a class's parameters are fixed
        when it is defined, and a cached complete() instantiates every upstream task, so keep them."""
        known = cls.__dict__.get("_nw_params")
        if known is None:
            known = super().get_params()
            cls._nw_params = known  # type: ignore[attr-defined]
        return list(known)

    # ---- what subclasses define ---------------------------------------------------------

    def command(self) -> str:
        """The shell command producing the output directory (`$out`, also its working directory)."""
        raise NotImplementedError

    def produce(self, out: Path) -> None:
        """Write the output into the directory `out` (Python steps)."""
        raise NotImplementedError

    # ---- Luigi's interface --------------------------------------------------------------

    def output(self) -> NixTarget:
        return NixTarget(self)

    def complete(self) -> bool:
        """Asks the store (memoised per process once true; never runs anything)."""
        return self.nix_result() is not None

    def deps(self) -> list[luigi.Task]:
        """requires(), plus tasks whose outputs command() interpolates without requiring them."""
        deps = list(self.nix_requires())
        if _kind(type(self)) == "shell":
            known = {d.task_id for d in deps}
            deps += [t for t in translate.referenced(self, settings.store_root()) if t.task_id not in known]
        return deps

    def input(self) -> Any:
        """The outputs of requires(); requires() is called once per task (instantiating Luigi tasks is
        not cheap, and complete(), deps() and command() all need them)."""
        return getpaths(self._nw_required())

    def nix_requires(self) -> list[luigi.Task]:
        """flatten(requires()), computed once per task."""
        known = self.__dict__.get("_nw_flat")
        if known is None:
            known = self._nw_flat = flatten(self._nw_required())
        return known

    def _nw_required(self) -> Any:
        if "_nw_requires" not in self.__dict__:
            self._nw_requires = self.requires()
        return self._nw_requires

    def run(self) -> None:
        """Realise the recipe: served from the store, or run once under the store's lock and recorded."""
        for memo in ("_nw_recipe", "_nw_owned"):  # inputs are hashed again now that they all exist
            self.__dict__.pop(memo, None)
        recipe = self.nix_recipe(strict=True)
        assert recipe is not None
        engine = settings.engine()
        _add_sources(self, recipe)
        action = self._shell_action if _kind(type(self)) == "shell" else self._python_action
        result = engine.realise(recipe, action=action, provenance=self._provenance())
        self._remember(result)
        settings.link_output(self.task_id, engine.store.object_path(result.outputs["out"]))
        if result.cached:
            logger.info("nixworkflow: %s served from the store (%s)", self.task_id,
                        engine.store.object_path(result.outputs["out"]))

    # ---- nixworkflow --------------------------------------------------------------------

    def nix_placeholder(self, root: str | None = None) -> str:
        """The token that stands for this task's output before it exists."""
        root = root or settings.store_root()
        known = self.__dict__.get("_nw_placeholder")
        if known is None or known[0] != root:
            cls = type(self)  # two classes may share a family (and so a task_id): their placeholders must differ
            token, hash32 = context.placeholder(root, f"{cls.__module__}.{cls.__qualname__}:{self.task_id}",
                                                self.task_family)
            known = self._nw_placeholder = (root, token, hash32)
        scanner = translate.scanner(root)
        if known[2] not in scanner.targets:  # (also after unpickling into a spawned worker process)
            scanner.register(known[2], self.task_family, self)
        return known[1]

    def nix_recipe(self, strict: bool = False) -> Recipe | None:
        """The recipe (memoised per store root); None while a plain upstream output is missing.

        Upstream recipes are built first, dependencies before dependants, without recursion: a
        Luigi chain (`Daily(day)` requires `Daily(day - 1)`) may be thousands of tasks deep."""
        root = settings.store_root()
        known = _memo(self, "_nw_recipe", root)
        if known is not None:
            return known
        for up in _postorder(self, lambda t: _memo(t, "_nw_recipe", root) is None)[:-1]:
            up._nw_build(root, strict=False)
        return self._nw_build(root, strict)

    def _nw_build(self, root: str, strict: bool) -> Recipe | None:
        """Build and memoise the recipe; `strict` (run()) means: runnable now, or an error."""
        if self.__dict__.get("_nw_busy"):
            raise NixWorkflowError(f"task {self.task_id} uses its own output through other tasks' commands: "
                                   "tasks form a cycle")
        self._nw_busy = True
        try:
            recipe = translate.build(self, root, _kind(type(self)), runnable=strict)
            recipe.key  # noqa: B018 - keys too are computed dependencies first (Recipe.key recurses)
        except translate.Pending as e:
            if strict:
                raise NixWorkflowError(f"task {self.task_id} cannot run: its input {e} does not exist") from None
            return None
        finally:
            self._nw_busy = False
        self._nw_recipe = (root, recipe)
        return recipe

    def nix_result(self) -> Result | None:
        """The store's realisation of this task, if any (None while its own recipe is being computed).

        Upstream tasks not yet known to be realised are looked up first, dependencies first: the first
        one missing means this one cannot be realised either, and no lookup recurses deeply."""
        if self.__dict__.get("_nw_busy") or self.nix_recipe() is None:
            return None
        root, engine = settings.store_root(), settings.engine()
        for task in _postorder(self, lambda t: _memo(t, "_nw_owned", root) is None):
            recipe = _memo(task, "_nw_recipe", root)
            result = engine.lookup(recipe) if recipe is not None else None
            if result is None:
                return None
            task._remember(result, root)
        return _memo(self, "_nw_owned", root)

    def _remember(self, result: Result, root: str | None = None) -> None:
        translate.remember_owner(result.outputs["out"], self)
        self._nw_owned = (root or settings.store_root(), result)

    def _provenance(self) -> dict[str, Any]:
        return {"front_door": "luigi", "task_id": self.task_id, "task_family": self.task_family,
                "params": self.to_str_params(only_significant=True)}

    def _shell_action(self, build: Build, command: str) -> Mapping[str, Path]:
        produced = shell_action(build, command)
        _require_output(self, build)
        return produced

    def _python_action(self, build: Build, command: str) -> Mapping[str, Path]:
        """Run produce() in this process, with the env's variables and output teed to the step log; while it
        runs, self.output() is the build's output; what it leaves running is killed before anything is hashed."""
        takes_out = _takes_out(type(self))
        if takes_out:
            build.out.mkdir(exist_ok=True)
        else:  # produce() makes the output itself (a file or a directory) at self.output().path
            with contextlib.suppress(FileNotFoundError):
                build.out.rmdir()
        leftovers = children.watch(build.marker)
        self.__dict__[BUILDING] = build.out
        try:
            with open(build.log, "a", encoding="utf-8") as log, _environ({**build.environ(), **leftovers.variables}), \
                    _tee(log):
                print(f"$ {command}  # {type(self).__module__}.{type(self).__qualname__}", file=log, flush=True)
                try:
                    self._produce(build, takes_out)
                except BaseException:
                    log.write(traceback.format_exc())
                    raise
        finally:
            self.__dict__.pop(BUILDING, None)
            killed = children.stop_leftovers(leftovers, self.task_id)
        if killed:
            note = (f"nixworkflow: {self.task_id}: killed {len(killed)} process(es) produce() left running (pids "
                    f"{', '.join(map(str, killed))}); a step ends when all of its processes end: wait for what "
                    "produce() starts")
            logger.warning("%s", note)
            with open(build.log, "a", encoding="utf-8") as log:
                print(note, file=log)
        _require_output(self, build)
        return {"out": build.out}

    def _produce(self, build: Build, takes_out: bool) -> None:
        try:
            result = self.produce(build.out) if takes_out else self.produce()  # type: ignore[call-arg]
        except IsADirectoryError as e:
            if str(build.out) not in (_abs(e.filename), _abs(e.filename2)):
                raise
            raise NixWorkflowError(
                f"task {self.task_id}: produce(out) opened its output directory {build.out} as a file. The output of "
                "produce(self, out) is the directory `out`: write files inside it (out / 'name'). To make the "
                "output one file, define produce(self) without `out` and write open(self.output().path, 'w')."
            ) from None
        except FileNotFoundError as e:
            if os.path.lexists(build.out) or not _abs(e.filename).startswith(f"{build.out}/"):
                raise
            raise NixWorkflowError(
                f"task {self.task_id}: produce() wrote {e.filename}, inside its output, but produce(self) makes its "
                "output itself and the directory does not exist yet. Create it first (os.makedirs(self.output()"
                ".path)), write through (self.output() / 'name').open('w'), or define produce(self, out) to get a "
                "ready output directory `out`."
            ) from None
        if inspect.isgenerator(result):
            result.close()
            raise _yields_error(type(self))


def _memo(task: NixTask, name: str, root: str) -> Any:
    """A per-task memo entry (root, value), valid for the store root it was made for."""
    known = task.__dict__.get(name)
    return known[1] if known is not None and known[0] == root else None


def _postorder(task: NixTask, unknown: Callable[[NixTask], bool]) -> list[NixTask]:
    """`task` and the NixTasks it requires, transitively, for which `unknown` holds (the walk does not
    go past known ones): dependencies first, `task` last. Iterative, so chains of any depth work."""
    order: list[NixTask] = []
    seen: set[str] = set()
    stack: list[tuple[NixTask, bool]] = [(task, False)]
    while stack:
        current, expanded = stack.pop()
        if expanded:
            order.append(current)
            continue
        if current.task_id in seen:
            continue
        seen.add(current.task_id)
        stack.append((current, True))
        stack.extend((d, False) for d in current.nix_requires() if isinstance(d, NixTask) and unknown(d))
    return order


def _abs(name: Any) -> str:
    """An OSError's file name, absolute (empty if it has none)."""
    return os.path.abspath(os.fsdecode(name)) if isinstance(name, str | bytes | os.PathLike) else ""


def _kind(cls: type[NixTask]) -> str:
    shell = cls.command is not NixTask.command
    python = cls.produce is not NixTask.produce
    if shell == python:
        raise NixWorkflowError(f"NixTask {cls.__qualname__} must define exactly one of command() (a shell step) "
                               f"or produce(out) (a Python step); it defines {'both' if shell else 'neither'}")
    if python and cls.sandbox:
        raise NixWorkflowError(f"NixTask {cls.__qualname__}: sandbox applies to command() steps; produce(out) "
                               "runs inside the Luigi worker")
    if python and inspect.isgeneratorfunction(cls.produce):
        raise _yields_error(cls)
    return "shell" if shell else "python"


def _yields_error(cls: type[NixTask]) -> NixWorkflowError:
    return NixWorkflowError(
        f"NixTask {cls.__qualname__}: produce() yields (Luigi dynamic dependencies), which a NixTask does not "
        "support yet: the yielded tasks would never run and the output would be keyed without them. Return the "
        "tasks from requires() instead, or keep this task a plain luigi.Task."
    )


@functools.cache
def _takes_out(cls: type[NixTask]) -> bool:
    """produce(self, out) gets a ready output directory; produce(self) makes its output itself."""
    try:
        params = list(inspect.signature(cls.produce).parameters.values())[1:]
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def _require_output(task: NixTask, build: Build) -> None:
    """A step that wrote nothing failed, unless the task says an empty output is intended: an empty object
    cached as a success would surface later, downstream, as a misleading missing file."""
    out = build.out
    empty = not os.path.lexists(out) or (out.is_dir() and not out.is_symlink() and not any(out.iterdir())) \
        or (out.is_file() and not out.is_symlink() and out.stat().st_size == 0)
    if not empty:
        return
    if type(task).allow_empty:
        if not os.path.lexists(out):
            out.mkdir()  # produce(self) that made nothing: the intended empty output is an empty directory
        return
    where = "$out" if _kind(type(task)) == "shell" else "its output (`out`, or self.output().path)"
    raise StepFailed(task.task_id, f"NixTask {task.task_family} wrote nothing into {where}, so there is no result "
                     "to store. Write the output, or set `allow_empty = True` on the class if an empty output is "
                     "intended", str(build.log))


def _add_sources(task: NixTask, recipe: Recipe) -> None:
    """Copy the static files and LocalTargets the command reads into the store, checking their hashes."""
    store = settings.engine().store
    for i in recipe.inputs:
        if i.obj is None or store.has(i.obj):
            continue
        source = translate.SOURCES.get(i.obj)
        if source is None:
            raise NixWorkflowError(f"task {task.task_id}: store object {i.obj} is missing from {store.root}")
        h = store.ingest(source)
        if h != i.obj:
            raise NixWorkflowError(f"task {task.task_id}: {source} changed while the pipeline ran (hash {h}, "
                                   f"expected {i.obj}); run it again")


@contextlib.contextmanager
def _environ(variables: Mapping[str, str]) -> Iterator[None]:
    """The step's environment for the duration of produce(): subprocesses it starts see the env's PATH."""
    saved = {name: os.environ.get(name) for name in set(os.environ) | set(variables)
             if os.environ.get(name) != variables.get(name)}
    _apply({name: variables.get(name) for name in saved})
    try:
        yield
    finally:
        _apply(saved)


def _apply(changes: Mapping[str, str | None]) -> None:
    """Set (or, for None, unset) only the variables that differ: each change is a putenv."""
    for name, value in changes.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


class _Tee:
    """Writes to several text streams; anything else (fileno, isatty, encoding) is the first one's."""

    def __init__(self, *streams: IO[str]) -> None:
        self.streams = streams

    def __getattr__(self, name: str) -> Any:
        return getattr(self.streams[0], name)

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


@contextlib.contextmanager
def _tee(log: IO[str]) -> Iterator[None]:
    """print() in produce() goes to the worker's console and to the step's log."""
    with contextlib.redirect_stdout(_Tee(sys.stdout, log)), contextlib.redirect_stderr(_Tee(sys.stderr, log)):
        yield
