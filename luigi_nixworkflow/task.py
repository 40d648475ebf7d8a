"""NixTask: a Luigi task whose output is a content-addressed store object.

A subclass gives `command()` (a shell string) or `produce(out)` (Python), or keeps the legacy
shape, its own `run()` and `output()` (LocalTargets: see legacy.py), and optionally an `env`.
The adapter turns the task into a `nixlib.recipe.Recipe`; `complete()` is
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

from luigi_nixworkflow import children, dynamic, legacy, settings, translate
from luigi_nixworkflow.target import BUILDING, NixTarget
from nixlib import context, temproots
from nixlib.engine import Result, shell_action
from nixlib.errors import NixWorkflowError, StepFailed
from nixlib.recipe import Recipe
from nixlib.runner import Build

logger = logging.getLogger("luigi-interface")
RUNNING = "_nw_running"  # task attribute: its own run() is executing now (inside the engine's action)
_FORCED: set[str] = set()  # task ids forced to run that this process has run (they are complete now)
_UNMANAGED_WARNED: set[type] = set()


_GENERATION = [0]  # bumped by reset(): outputs presented before are presented again (files may be gone)


def reset() -> None:
    """Forget which forced tasks this process ran (a forced family runs again after this) and which
    outputs it presented (task instances outlive a reset in Luigi's instance cache)."""
    _FORCED.clear()
    _GENERATION[0] += 1


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
    # A persistent `$state` directory (os.environ["state"] in produce()) that survives failures and interrupts,
    # keyed by everything that determines the result: a changed input starts afresh.
    resumable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A class that defines its own run() (the legacy shape) gets it wrapped: Luigi's call realises the
        task through the store, whose action then calls the class's own run() (and super().run() calls
        from inside it reach the base class's own run(), not the store again)."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("run")
        if own is not None and not getattr(own, "_nw_wrapper", False):
            cls.run = _wrap_run(own)  # type: ignore[method-assign]

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
        """Asks the store (never runs anything). Found complete, the task's outputs (and those of the
        NixTasks it depends on) are presented: linked, and a legacy task's files restored from the store.
        A task forced by `[nixworkflow] force` is not complete until this process has run it."""
        if not self.nix_managed():
            return luigi.Task.complete(self)
        if settings.settings().forced(self.task_family) and self.task_id not in _FORCED:
            return False
        result = self.nix_result()
        if result is None:
            return False
        self._nw_present_all()
        return True

    @property
    def batchable(self) -> bool:
        """Never batched: Luigi would run one task for a batch (`batch_method=max`) and mark the others done,
        but each NixTask is its own cached result, so each runs (or is served) by itself."""
        return False

    @classmethod
    def bulk_complete(cls, parameter_tuples: Any) -> list[Any]:
        """Which of the parameter tuples are complete, each asked to the store (RangeDaily and friends use
        this rather than listing files: a file on disk is not a result the store vouches for)."""
        return luigi.task.MixinNaiveBulkComplete.bulk_complete.__func__(cls, parameter_tuples)  # type: ignore

    def deps(self) -> list[luigi.Task]:
        """requires(), plus tasks whose outputs command() interpolates without requiring them."""
        deps = list(self.nix_requires())
        if self.nix_kind() == "shell":
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
        """Realise the recipe: served from the store, or run once under the store's lock and recorded.

        Forced (`[nixworkflow] force`, or an overridden complete() that said "not complete" although the
        store has the result for these inputs), it runs again and its result replaces the stored one."""
        if not self.nix_managed():
            self._nw_run_own()
            return
        for memo in ("_nw_recipe", "_nw_owned", "_nw_presented"):  # inputs are hashed again now that they exist
            self.__dict__.pop(memo, None)
        recipe = self.nix_recipe(strict=True)
        assert recipe is not None
        engine = settings.engine()
        _add_sources(self, recipe)
        force = self._nw_forced(recipe)
        kind = self.nix_kind()
        action = {"shell": self._shell_action, "python": self._python_action, "legacy": self._legacy_action}[kind]
        provenance = self._provenance()
        if _dynamic(type(self)):  # filled while run() runs: the yielded tasks and their content
            provenance["dynamic"] = self._nw_seen = []
        result = engine.realise(recipe, action=action, provenance=provenance, force=force)
        if force:
            _FORCED.add(self.task_id)
        self._remember(result)
        self._nw_present(result)
        if result.cached:
            logger.info("nixworkflow: %s served from the store (%s)", self.task_id,
                        engine.store.object_path(result.outputs["out"]))

    def nix_kind(self) -> str:
        """"shell" (command()), "python" (produce()) or "legacy" (its own run() and output())."""
        return _kind(type(self))

    def nix_managed(self) -> bool:
        """False for a legacy task whose output() holds targets the store cannot hold (an HdfsTarget, a
        database table): it then behaves as a plain Luigi task (warned once per class)."""
        known = self.__dict__.get("_nw_managed")
        if known is None:
            known = self.nix_kind() != "legacy" or legacy.local_targets(self) is not None
            self._nw_managed = known
            if not known and type(self) not in _UNMANAGED_WARNED:
                _UNMANAGED_WARNED.add(type(self))
                logger.warning("nixworkflow: %s runs as a plain Luigi task, not cached nor recorded: its output() "
                               "returns %s, and only LocalTargets can be stored", self.task_family,
                               legacy.describe(self.output()))
        return known

    def _nw_forced(self, recipe: Recipe) -> bool:
        """Run again although the store has the result? Asked by the settings, or by a complete() override
        that returned False (Luigi calls run() only then) while the store holds this recipe's result."""
        if settings.settings().forced(self.task_family):
            return True
        found = settings.engine().lookup(recipe)
        if found is not None and _dynamic(type(self)) and dynamic.stale(found.record):
            return True  # a task it yielded last time has changed since
        return type(self).complete is not NixTask.complete and found is not None

    def _nw_present_all(self) -> None:
        """Present this task's outputs and those of every NixTask it depends on, once per process."""
        root = settings.store_root()
        generation = f"{root}#{_GENERATION[0]}"
        for task in _postorder(self, lambda t: _memo(t, "_nw_presented", generation) is None):
            result = _memo(task, "_nw_owned", root)
            if result is not None:
                task._nw_present(result)

    def _nw_present(self, result: Result) -> None:
        """Link each output (a GC root) and restore a legacy task's files where they differ from the store."""
        store = settings.engine().store
        for name, h in sorted(result.outputs.items()):
            settings.link_output(self.task_id if name == "out" else f"{self.task_id}.{name}", store.object_path(h))
        if self.nix_kind() == "legacy":
            for path in legacy.restore(self, store, result.outputs):
                logger.info("nixworkflow: %s: restored %s from the store", self.task_id, path)
        self._nw_presented = (f"{settings.store_root()}#{_GENERATION[0]}", True)
        if _dynamic(type(self)):  # what its run() yielded is not in requires(): present it too
            for task, _ in dynamic.yielded(result.record):
                if isinstance(task, NixTask) and task.nix_managed() and task.nix_result() is not None:
                    task._nw_present_all()

    def _nw_run_own(self) -> None:
        """Call the class's own run() (legacy shape); super().run() inside it reaches the base's own run().
        A run() that yields is driven to its end here (dynamic.drive), or stops at a task not yet complete."""
        self.__dict__[RUNNING] = True
        try:
            result = self.run()
            if inspect.isgenerator(result):
                dynamic.drive(result, self.__dict__.get("_nw_seen", []))
        finally:
            self.__dict__.pop(RUNNING, None)

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
            if result is None or (_dynamic(type(task)) and dynamic.stale(result.record)):
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
        """Run produce() in this process; while it runs, self.output() is the build's output."""
        takes_out = _takes_out(type(self))
        if takes_out:
            build.out.mkdir(exist_ok=True)
        else:  # produce() makes the output itself (a file or a directory) at self.output().path
            with contextlib.suppress(FileNotFoundError):
                build.out.rmdir()
        self.__dict__[BUILDING] = build.out
        try:
            self._in_step(build, command, "produce()", lambda: self._produce(build, takes_out))
        finally:
            self.__dict__.pop(BUILDING, None)
        _require_output(self, build)
        return {"out": build.out}

    def _legacy_action(self, build: Build, command: str) -> Mapping[str, Path]:
        """Run the class's own run(), which writes its LocalTargets in place as in plain Luigi; the engine
        then ingests copies of them. What a previous run left at those paths is moved aside first (and put
        back if this run fails), so a file run() did not write can never be stored as its result."""
        for dep in self.nix_requires():  # what run() reads is exactly what was keyed
            if isinstance(dep, NixTask) and dep.nix_managed() and dep.nix_kind() == "legacy":
                found = dep.nix_result()
                if found is not None:
                    dep._nw_present(found)
        outputs = legacy.paths(self)
        moved = legacy.move_aside(outputs)
        succeeded = False
        try:
            self._in_step(build, command, "run()", self._nw_run_own)
            legacy.check_written(self, outputs, type(self).allow_empty, str(build.log))
            succeeded = True
        finally:
            legacy.settle(moved, succeeded)
        return dict(zip(legacy.output_names(len(outputs)), outputs, strict=True))

    def _in_step(self, build: Build, command: str, what: str, body: Callable[[], None]) -> None:
        """Run `body` in this process as the step: the env's variables (PATH: its tools), output teed to the
        step log, and whatever it leaves running killed before anything is hashed."""
        leftovers = children.watch(build.marker)
        try:
            with open(build.log, "a", encoding="utf-8") as log, _environ({**build.environ(), **leftovers.variables}), \
                    _tee(log):
                print(f"$ {command}  # {type(self).__module__}.{type(self).__qualname__}", file=log, flush=True)
                try:
                    body()
                except dynamic.NeedsDependencies:
                    print("(stopped: it yielded tasks that are not complete; Luigi runs them first)", file=log)
                    raise
                except BaseException:
                    log.write(traceback.format_exc())
                    raise
        finally:
            killed = children.stop_leftovers(leftovers, self.task_id)
        if killed:
            note = (f"nixworkflow: {self.task_id}: killed {len(killed)} process(es) {what} left running (pids "
                    f"{', '.join(map(str, killed))}); a step ends when all of its processes end: wait for what "
                    f"{what} starts")
            logger.warning("%s", note)
            with open(build.log, "a", encoding="utf-8") as log:
                print(note, file=log)

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
            raise _yields_error(type(self), "produce()")


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
    """"shell", "python" or "legacy" (the class's own run() and output()); a mix is an error naming the fix."""
    shell = cls.command is not NixTask.command
    python = cls.produce is not NixTask.produce
    own_run = getattr(cls.run, "_nw_wrapper", False)
    own_output = cls.output is not NixTask.output
    name = cls.__qualname__
    if own_run:
        if shell or python:
            raise NixWorkflowError(f"NixTask {name} defines run() and {'command()' if shell else 'produce()'}: keep "
                                   "one. run() with output() is the plain Luigi shape; command()/produce() the "
                                   "store-native one (its output is a NixTarget)")
        if not own_output:
            raise NixWorkflowError(f"NixTask {name} defines run() but not output(): declare what run() writes with "
                                   "output() (LocalTargets, as in plain Luigi), or rename run() to produce(self), "
                                   "which writes self.output()")
        return "legacy"
    if own_output:
        raise NixWorkflowError(f"NixTask {name} overrides output() but has no run() of its own: a task that "
                               "declares its output() writes it in run(), as in plain Luigi; command()/produce() "
                               "write the NixTarget output NixTask provides")
    if shell == python:
        raise NixWorkflowError(f"NixTask {name} must define exactly one of command() (a shell step), "
                               f"produce(out) (a Python step) or run() with output() (the plain Luigi shape); it "
                               f"defines {'both command() and produce()' if shell else 'none of them'}")
    if python and cls.sandbox:
        raise NixWorkflowError(f"NixTask {name}: sandbox applies to command() steps; produce(out) "
                               "runs inside the Luigi worker")
    if python and inspect.isgeneratorfunction(cls.produce):
        raise _yields_error(cls, "produce()")
    return "shell" if shell else "python"


def _wrap_run(own: Callable[..., Any]) -> Callable[..., Any]:
    """run() as Luigi calls it: through the store, unless the task's own run() is already executing
    (then this is a super().run() from a subclass's run(), which must reach the base's own code).
    A yielding run() stays a generator for Luigi: tasks it yields that are not complete go to Luigi."""

    if inspect.isgeneratorfunction(own):
        @functools.wraps(own)
        def run(self: NixTask) -> Any:
            if self.__dict__.get(RUNNING):
                return (yield from own(self))
            while True:
                try:
                    return NixTask.run(self)
                except dynamic.NeedsDependencies as e:
                    yield e.requirements  # Luigi runs them (and calls run() again), or answers if complete
    else:
        @functools.wraps(own)
        def run(self: NixTask) -> Any:
            if self.__dict__.get(RUNNING):
                return own(self)
            return NixTask.run(self)

    run._nw_wrapper = True  # type: ignore[attr-defined]
    return run


def _dynamic(cls: type[NixTask]) -> bool:
    """A legacy task whose run() yields (dynamic dependencies)."""
    return inspect.isgeneratorfunction(getattr(cls.run, "__wrapped__", None))


def _yields_error(cls: type[NixTask], where: str) -> NixWorkflowError:
    return NixWorkflowError(
        f"NixTask {cls.__qualname__}: {where} yields (Luigi dynamic dependencies), which produce() does not "
        "support: the yielded tasks would never run and the output would be keyed without them. Return the tasks "
        "from requires() instead, or use the plain Luigi shape (run() with output()), where yield works."
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
    # Registered as temp roots first, so a concurrent `nw gc` keeps them from here on.
    temproots.of(store.root).add([i.obj for i in recipe.inputs if i.obj is not None])
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
