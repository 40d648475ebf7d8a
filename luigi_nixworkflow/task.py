"""NixTask: a Luigi task whose output is a content-addressed store object — the Luigi-facing class.

A subclass gives `command()` (a shell string) or `produce(out)` (Python), or keeps the legacy
shape, its own `run()` and `output()` (LocalTargets: see legacy.py), and optionally an `env`.
This class only answers Luigi: `complete()` is `Engine.lookup` of the task's recipe (translate.py),
and `run()` is `Engine.realise`, which takes the store's per-key lock, so two workers (or two task
ids with one recipe) never run the same recipe twice, on any host that shares the store. The
step itself runs in steps.py, results are shown in the working tree by present.py, and the class's
style is read by shape.py. Nothing here hashes, locks or writes to the store by itself.
"""

from __future__ import annotations

import functools
import gc
import logging
import sys
from pathlib import Path
from typing import Any, ClassVar

import luigi
import luigi.interface
from luigi.task import flatten, getpaths

from luigi_nixworkflow import (
    claims,
    commands,
    dynamic,
    failures,
    graph,
    legacy,
    present,
    registry,
    settings,
    shape,
    steps,
    translate,
)
from luigi_nixworkflow.inputs import Pending
from luigi_nixworkflow.instances import Instances
from luigi_nixworkflow.journal import failed as journal_failed
from luigi_nixworkflow.journal import flush as journal_flush
from luigi_nixworkflow.journal import pending as journal_pending
from luigi_nixworkflow.journal import waiting as journal_waiting
from luigi_nixworkflow.present import OWNED
from luigi_nixworkflow.target import NixTarget
from nixlib import context
from nixlib.engine import Result
from nixlib.errors import NixWorkflowError
from nixlib.recipe import Recipe

logger = logging.getLogger("luigi-interface")
_FORCED: set[str] = set()  # task ids forced to run that this process has run (they are complete now)
_UNMANAGED_WARNED: set[type] = set()


def reset() -> None:
    """Forget which forced tasks this process ran (a forced family runs again after this) and which
    outputs it presented (task instances outlive a reset in Luigi's instance cache)."""
    _FORCED.clear()
    present.reset()


class NixTask(luigi.Task, metaclass=Instances):
    """A Luigi task run through nixworkflow: pinned env, cached by content, recorded in the store.

    Subclasses define exactly one of:

    - `command(self) -> str`: a shell command. Interpolate `self.input()` targets and
      `self.output()` (which becomes `$out`, the output directory; the command also runs in it).
    - `produce(self, out: Path) -> None`: Python run in the worker's interpreter, writing into
      the directory `out`; or `produce(self) -> None`, writing the output at `self.output().path`
      (a single file: `open(self.output().path, "w")`, `self.output().open("w")`; or a directory it
      creates). The env pins the *subprocesses* it starts (PATH etc. are the env's while it runs),
      not the interpreter running it; processes it leaves running are killed when it returns.

    An output with nothing in it fails the task unless the class sets `allow_empty = True` (a class with its
    own run(), the legacy shape, may leave a declared LocalTarget an empty file: Luigi's marker file).

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
        own = _own_run(cls)
        if own is not None:
            cls.run = shape.wrap_run(own, NixTask.run)  # type: ignore[method-assign]
        elif _external(cls):
            cls.run = None  # type: ignore[assignment,method-assign]
        hidden_output = None if shape.kind_declared(cls) else _hidden(cls, "output")
        if hidden_output is not None:
            cls.output = hidden_output  # type: ignore[method-assign]
        _keep_hidden(cls)
        own_complete = _own_complete(cls)
        if own_complete is not None:
            cls.complete = _wrap_complete(own_complete)  # type: ignore[method-assign]
        own_success = _own_method(cls, "on_success")
        if own_success is not None:
            cls.on_success = shape.wrap_on_success(own_success)  # type: ignore[method-assign]

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

    @shape.base
    def command(self) -> str:
        """The shell command producing the output directory (`$out`, also its working directory)."""
        raise NotImplementedError

    @shape.base
    def produce(self, out: Path) -> None:
        """Write the output into the directory `out` (Python steps)."""
        raise NotImplementedError

    # ---- Luigi's interface --------------------------------------------------------------

    @shape.base
    def output(self) -> Any:
        return NixTarget(self) if shape.kind_declared(type(self)) else []  # [] as Luigi's, when it declares none

    def complete(self) -> bool:
        """Asks the store (never runs anything). Found complete, the task's outputs (and those of the
        NixTasks it depends on) are presented: linked, and a legacy task's files restored from the store.
        A task forced by `[nixworkflow] force` is not complete until this process has run it."""
        if not self.nix_managed():
            return luigi.task.Task.complete(self)
        if self.__dict__.get(steps.STORING):  # (steps.complete_on_run: its products are stored if this says so)
            return True
        if settings.settings().force and settings.settings().forced(self.task_family) and self.task_id not in _FORCED:
            return False  # (force names no family in most runs: task_family is then not asked)
        root = settings.store_root()
        result = self.nix_result(root)
        if result is None:
            journal_pending(settings.engine(root), self)  # nw view lists it, also when no lookup could
            return False
        present.present_all(self, root)
        return True

    def trigger_event(self, event: str, *args: Any, **kwargs: Any) -> None:
        """Luigi's, then for SUCCESS a warning if the class's handlers changed a stored output (steps.py)."""
        super().trigger_event(event, *args, **kwargs)
        if event == luigi.Event.SUCCESS and self.nix_kind() == "legacy" and self.nix_managed():
            known = self.__dict__.get(OWNED)
            if known is not None:
                steps.unstored_after_success(self, known[1])

    def on_failure(self, exception: BaseException) -> Any:
        """What the scheduler shows for a failure (luigid's page, error e-mails): for nixworkflow's own errors
        (a step's exit status and its kept log, a task that cannot be keyed) the message, not the stack."""
        return failures.explain(exception) or super().on_failure(exception)

    @property
    def batchable(self) -> bool:
        """Never batched: Luigi would run one task for a batch (`batch_method=max`) and mark the others done,
        but each NixTask is its own cached result, so each runs (or is served) by itself."""
        return False

    @classmethod
    def bulk_complete(cls, parameter_tuples: Any) -> list[Any]:
        """Which of the parameter tuples are complete, each asked to the store (RangeDaily and friends use
        this rather than listing files: a file on disk is not a result the store vouches for). A class that runs as
        plain Luigi (shape.plain) answers as a plain task does (NotImplementedError: the range tool then looks at its
        files)."""
        of = getattr(cls, "func", cls)  # (the range tools pass a functools.partial of the class)
        if isinstance(of, type) and shape.plain(of):
            return luigi.task.Task.bulk_complete.__func__(cls, parameter_tuples)  # type: ignore[attr-defined]
        named = _range_parameter(sys._getframe(1))
        if named is not None:  # `RangeDaily(of=T, param_name="date")`: each value is that parameter's
            return [p for p in parameter_tuples if cls(**{named: p}).complete()]
        return luigi.task.MixinNaiveBulkComplete.bulk_complete.__func__(cls, parameter_tuples)  # type: ignore

    def deps(self) -> list[luigi.Task]:
        """requires(), plus tasks whose outputs command() interpolates without requiring them."""
        deps = list(self.nix_requires())
        if self.nix_kind() == "shell":
            known = {d.task_id for d in deps}
            deps += [t for t in commands.referenced(self, settings.store_root()) if t.task_id not in known]
        return deps

    def input(self) -> Any:
        """The outputs of requires(); requires() is called once per task (instantiating Luigi tasks is
        not cheap, and complete(), deps() and command() all need them)."""
        return getpaths(self._nw_required())

    def nix_requires(self) -> list[luigi.Task]:
        """flatten(requires()), computed once per task and build, and what an overridden deps() adds."""
        known, generation = self.__dict__.get("_nw_flat"), present.GENERATION[0]
        if known is None or known[0] != generation:
            if self.__dict__.get("_nw_in_deps"):  # (an overridden deps() calling super().deps())
                return flatten(self._nw_required())
            found = flatten(self._nw_required())
            if type(self).deps is not NixTask.deps:
                found += self._nw_more_deps(found)
            known = self._nw_flat = (generation, found)
        return known[1]

    def _nw_more_deps(self, required: list[luigi.Task]) -> list[luigi.Task]:
        """What an overridden deps() adds to requires() (`luigi.util.delegates`: its subtasks' requirements). The
        scheduler runs them first and run() reads them, so they are keyed as what it requires is."""
        self.__dict__["_nw_in_deps"] = True
        try:
            more = flatten(self.deps())
        finally:
            self.__dict__.pop("_nw_in_deps", None)
        known = {d.task_id for d in required}
        extra = []
        for d in more:
            if d.task_id not in known:
                known.add(d.task_id)
                extra.append(d)
        return extra

    def _nw_required(self) -> Any:
        """requires() once per build: Luigi's instance cache keeps a task between the builds of one interpreter (a
        notebook), and a requires() that reads a sample sheet must see it as it is at the next build."""
        known, generation = self.__dict__.get("_nw_requires"), present.GENERATION[0]
        if known is None or known[0] != generation:
            known = self._nw_requires = (generation, graph.reusable(self.requires()))
        return known[1]

    def run(self) -> Any:
        """Realise the recipe: served from the store, or run once under the store's lock and recorded.

        Forced (`[nixworkflow] force`, or an overridden complete() that said "not complete" although the
        store has the result for these inputs), it runs again and its result replaces the stored one."""
        if not self.nix_managed():
            return steps.run_own(self)
        for memo in ("_nw_recipe", OWNED, present.PRESENTED):  # inputs are hashed again now that they exist
            self.__dict__.pop(memo, None)
        recipe = self.nix_recipe(strict=True)
        assert recipe is not None
        engine = settings.engine()
        steps.add_sources(self, recipe)
        force = self._nw_forced(recipe)
        provenance = self._provenance()
        if shape.is_dynamic(type(self)):  # filled while run() runs: the yielded tasks and their content
            provenance["dynamic"] = self._nw_seen = []
        try:
            result = engine.realise(recipe, action=steps.action(self), provenance=provenance, force=force)
        except dynamic.NeedsDependencies as e:  # not a failure: Luigi runs what it yielded, then run() again
            journal_waiting(engine, self.task_id, e.requirements)
            raise
        if force:
            _FORCED.add(self.task_id)
        self._remember(result)
        present.present(self, result)
        if result.cached:
            logger.info("nixworkflow: %s served from the store (%s)", self.task_id,
                        engine.store.object_path(result.outputs["out"]))

    def nix_kind(self) -> str:
        """"shell" (command()), "python" (produce()) or "legacy" (its own run() and output())."""
        return shape.kind(type(self))

    def nix_managed(self) -> bool:
        """False for a legacy task whose output() holds targets the store cannot hold (an HdfsTarget, a
        database table), or that reads one (legacy.unmanaged): it then behaves as a plain Luigi task (warned
        once per class)."""
        known = self.__dict__.get("_nw_managed")
        if known is None:
            why = legacy.unmanaged(self) if self.nix_kind() == "legacy" else None
            known = self._nw_managed = why is None
            if not known and type(self) not in _UNMANAGED_WARNED:
                _UNMANAGED_WARNED.add(type(self))
                logger.warning("nixworkflow: %s runs as a plain Luigi task, not cached nor recorded: %s",
                               self.task_family, why)
        return known

    def _nw_forced(self, recipe: Recipe) -> bool:
        """Run again although the store has the result? Asked by the settings, or by a complete() override
        that returned False (Luigi calls run() only then) while the store holds this recipe's result."""
        if settings.settings().forced(self.task_family):
            return True
        dynamic_task, own_complete = shape.is_dynamic(type(self)), type(self).complete is not NixTask.complete
        if not (dynamic_task or own_complete):
            return False  # (no lookup: realise() makes its own, under the recipe's lock)
        found = settings.engine().lookup(recipe)
        if found is not None and dynamic_task and dynamic.stale(found.record):
            return True  # a task it yielded last time has changed since
        return own_complete and found is not None

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
        scanner = registry.scanner(root)
        if known[2] not in scanner.targets:  # (also after unpickling into a spawned worker process)
            scanner.register(known[2], self.task_family, self)
        return known[1]

    def nix_recipe(self, strict: bool = False, root: str | None = None) -> Recipe | None:
        """The recipe (memoised per store root); None while a plain upstream output is missing.

        Upstream recipes are built first, dependencies before dependants, without recursion: a
        Luigi chain (`Daily(day)` requires `Daily(day - 1)`) may be thousands of tasks deep."""
        root = root or settings.store_root()
        now = present.stamp(root)
        known = graph.memo(self, "_nw_recipe", now)
        if known is not None:
            return known
        for up in graph.unknown_of(self, "_nw_recipe", now)[:-1]:
            up._nw_build(root, strict=False)
        return self._nw_build(root, strict)

    def _nw_build(self, root: str, strict: bool) -> Recipe | None:
        """Build and memoise the recipe; `strict` (run()) means: runnable now, or an error."""
        if self.__dict__.get("_nw_busy"):
            raise NixWorkflowError(f"task {self.task_id} uses its own output through other tasks' commands: "
                                   "tasks form a cycle")
        self._nw_busy = True
        try:
            recipe = translate.build(self, root, shape.kind(type(self)), runnable=strict)
        except Pending as e:
            if strict:
                raise NixWorkflowError(f"task {self.task_id} cannot run: its input {e} does not exist") from None
            return None
        finally:
            self._nw_busy = False
        self._nw_recipe = (present.stamp(root), recipe)
        return recipe

    def nix_result(self, root: str | None = None) -> Result | None:
        """The store's realisation of this task, if any (None while its own recipe is being computed).

        Upstream tasks not yet known to be realised are looked up first, dependencies first: the first
        one missing means this one cannot be realised either, and no lookup recurses deeply."""
        root = root or settings.store_root()
        now = present.stamp(root)
        known = graph.memo(self, OWNED, now)
        if known is not None and not shape.is_dynamic(type(self)):
            # Luigi asks complete() again (of each dependency of every task it runs, before running it), and this
            # process's engine would answer from its per-recipe memo all the same. run() drops OWNED before
            # realising (a task that ran here answers with what it produced), reset() starts a new generation (and
            # engine), and a dynamic task is re-checked (what it yielded may have run since).
            return known
        if self.__dict__.get("_nw_busy") or self.nix_recipe(root=root) is None:
            return None
        engine = settings.engine(root)
        for task in graph.unknown_of(self, OWNED, now):
            recipe = graph.memo(task, "_nw_recipe", now)
            result = engine.lookup(recipe) if recipe is not None else None
            if result is None or (shape.is_dynamic(type(task)) and dynamic.stale(result.record)):
                return None
            task._remember(result, root, now)
        return graph.memo(self, OWNED, now)

    def _remember(self, result: Result, root: str | None = None, now: str | None = None) -> None:
        """Note the store's result of this task (`now`: present.stamp(root), if the caller has it)."""
        registry.remember_owner(result.outputs["out"], self)
        self.__dict__[OWNED] = (now or present.stamp(root or settings.store_root()), result)

    def _provenance(self) -> dict[str, Any]:
        return {"front_door": "luigi", "task_id": self.task_id, "task_family": self.task_family,
                "params": self.to_str_params(only_significant=True)}  # (never a private one)


def _range_parameter(caller: Any) -> str | None:
    """The parameter a range tool calling bulk_complete names with `param_name` (RangeDaily(of=T, param_name="date")):
    Luigi passes each value alone, which MixinNaiveBulkComplete gives to T's first positional parameter, where the
    range tool means `param_name` (plain Luigi's bulk_complete raises, and the range tool then instantiates
    T(date=...) itself). None when not called by a range tool or when it names none (then both mean the first)."""
    rng = caller.f_locals.get("self")
    range_module = sys.modules.get("luigi.tools.range")
    if range_module is None or not isinstance(rng, range_module.RangeBase):
        return None
    return rng.param_name or None


def _own_run(cls: type) -> Any:
    """The run() the class would run that is not yet wrapped: its own, or one it inherits from a base that is
    not a NixTask (NixTask added as a mixin: `class Sort(NixTask, ExternalProgramTask)`, in either order).
    None when it has none but Luigi's empty default, when a NixTask base's run() is wrapped already, or when the
    class is written in the store-native style (command() or produce()), whose run() is NixTask's own."""
    own = cls.__dict__.get("run")
    if own is not None:
        return None if getattr(own, "_nw_wrapper", False) else own
    if shape.kind_declared(cls):
        return None
    for c in cls.__mro__:
        run = c.__dict__.get("run")
        if run is None or c is NixTask:
            continue
        if run is luigi.task.Task.run or getattr(run, "_nw_wrapper", False):
            return None
        return run
    return None


def _external(cls: type) -> bool:
    """True if, without NixTask, the class would be a `luigi.ExternalTask`: the first class of its MRO that sets
    `run` sets it to None (Luigi's mark of an external task, luigi.worker._is_external). NixTask comes before
    ExternalTask in the MRO of `class Raw(NixTask, luigi.ExternalTask)`, and of `class Raw(Base,
    luigi.ExternalTask)` once the project's `Base` is migrated, so its run() hid that mark: Luigi then "ran" the
    data something else writes (doing nothing), called it done while the file was missing, and failed what needs
    it with "Unfulfilled dependency at run time" where plain Luigi reports a missing external dependency."""
    if shape.kind_declared(cls):
        return False
    for c in cls.__mro__:
        if c is not NixTask and "run" in c.__dict__:
            run = c.__dict__["run"]
            return run is None or run is NotImplemented
    return False


def _own_complete(cls: type) -> Any:
    """The complete() override the class would use that is not yet wrapped (its own, or one a base or mixin
    brings), or None when it uses NixTask's (or Luigi's default, which NixTask replaces)."""
    return _own_method(cls, "complete")


def _own_method(cls: type, name: str) -> Any:
    """The override of Luigi's Task method `name` the class would use that is not yet wrapped (its own, or one a
    base or mixin brings), or None when it uses NixTask's or Luigi's own."""
    for c in cls.__mro__:
        found = c.__dict__.get(name)
        if found is None or c is NixTask:  # (NixTask's own must not hide a later base's: `luigi.WrapperTask`)
            continue
        if found is getattr(luigi.task.Task, name) or getattr(found, "_nw_wrapper", False):
            return None
        return found
    return None


def _hidden(cls: type, name: str) -> Any:
    """The method `name` of a base that comes after NixTask in the class's MRO, which NixTask's own default hides
    (`class Load(Base, CopyToTable)` once the project's `Base` is migrated: CopyToTable's output()), or None when
    the class or a base before NixTask defines it, or only Luigi's Task does. Plain Luigi would use that base's."""
    after = False
    for c in cls.__mro__:
        if name not in c.__dict__:
            continue
        if c is NixTask:
            after = True
            continue
        return c.__dict__[name] if after and c is not luigi.task.Task else None
    return None


def _keep_hidden(cls: type) -> None:
    """Honour input(), deps() and bulk_complete() of a base after NixTask in the MRO (`class T(NixTask, MyBase)`, or
    `class T(Base, MyBase)` once `Base` is migrated), which NixTask's own would hide, as _hidden does for output().
    That base's input() is what run() reads, so it is the class's. Its deps() is what Luigi schedules first, so it is
    asked by nix_requires (and keyed) as a subclass's own deps() is. Its bulk_complete() (a range tool's check of
    many files) says complete only where the store also holds the result, as an overridden complete() does."""
    found = _hidden(cls, "input")
    if found is not None:
        cls.input = found  # type: ignore[method-assign]
    found = _hidden(cls, "deps")
    if found is not None:
        cls.deps = _base_deps(found)  # type: ignore[method-assign]
    found = _hidden(cls, "bulk_complete")
    if isinstance(found, classmethod):
        cls.bulk_complete = _base_bulk_complete(found.__func__)  # type: ignore[method-assign]


def _base_deps(base: Any) -> Any:
    """deps() of a class whose base (after NixTask) overrides it: NixTask's (requires(), the base's deps() through
    nix_requires, and what command() references), and the base's itself when nix_requires asks it."""

    @functools.wraps(base)
    def deps(self: Any) -> Any:
        if self.__dict__.get("_nw_in_deps"):
            return base(self)
        return NixTask.deps(self)

    return deps


def _base_bulk_complete(base: Any) -> Any:
    """bulk_complete() of a class whose base (after NixTask) overrides it: the tuples the base's check says complete
    that the store also holds (NixTask.bulk_complete); the base's alone for a class that runs as plain Luigi."""

    @functools.wraps(base)
    def bulk_complete(cls: Any, parameter_tuples: Any) -> list[Any]:
        tuples = list(parameter_tuples)
        own = list(base(cls, tuples) or [])
        of = getattr(cls, "func", cls)
        if isinstance(of, type) and shape.plain(of):
            return own
        stored = NixTask.bulk_complete.__func__(cls, tuples)  # type: ignore[attr-defined]
        return [p for p in own if p in stored]

    return classmethod(bulk_complete)


def _wrap_complete(own: Any) -> Any:
    """A complete() override asks the store too: complete only if the store holds the result for the current
    inputs, code and parameters *and* the override agrees. Real pipelines override complete() to check their
    files (`all(t.exists() for t in flatten(self.output()))`, a `_SUCCESS` marker); alone, such a check said
    "complete" after an input edit (a stale result kept) and "not complete" after the files were deleted (a
    re-run where the store could restore them). The store is asked first, so what it restores is on disk
    when the override looks; an override that still says "not complete" forces a run (task.run)."""

    @functools.wraps(own)
    def complete(self: Any) -> bool:
        if not self.nix_managed():
            return own(self)
        stored = NixTask.complete(self)
        return bool(own(self)) and stored

    complete._nw_wrapper = True  # type: ignore[attr-defined]
    return complete


@NixTask.event_handler(luigi.Event.FAILURE)
@NixTask.event_handler(luigi.Event.BROKEN_TASK)
@NixTask.event_handler(luigi.Event.PROCESS_FAILURE)
@NixTask.event_handler(luigi.Event.TIMEOUT)
def _journal_failure(task: luigi.Task, error: BaseException | str) -> None:
    """Show a NixTask that failed where the engine could not see it as failed in `nw view`: before its
    realisation (a dependency missing at run time, a recipe that cannot be built), in complete() (broken), or
    a worker process that died or timed out (the scheduler's side). A failure inside the realisation is
    journalled already (noting it again changes nothing)."""
    if isinstance(task, NixTask) and task.nix_managed():
        journal_failed(settings.engine(), task.task_id, error)


def _each_build_afresh() -> None:
    """Start a new generation at every luigi.build / luigi.run / `luigi` command. Luigi's instance cache keeps
    task instances across the builds of one interpreter (a notebook, a service that calls luigi.build), and
    their recipes, results and presented outputs are memoised per generation: without this, a second build
    would serve the first one's keys although an input file, a parameter's file or an upstream result changed
    in between. Both entry points go through luigi.interface._schedule_and_run (pinned by a test)."""
    original = luigi.interface._schedule_and_run
    if getattr(original, "_nw_afresh", False):
        return

    @functools.wraps(original)
    def schedule_and_run(*args: Any, **kwargs: Any) -> Any:
        reset()
        gc.freeze()  # what exists now (modules, classes) is not walked by the build's full collections
        try:
            return original(*args, **kwargs)
        finally:
            gc.unfreeze()
            journal_flush()  # what `nw lineage`/`nw show` read right after the build is its final state

    schedule_and_run._nw_afresh = True  # type: ignore[attr-defined]
    luigi.interface._schedule_and_run = schedule_and_run


_each_build_afresh()
failures.install()
claims.install()
