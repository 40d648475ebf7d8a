"""Running a NixTask's step: the actions the engine calls under the per-key lock, in the worker.

A command() runs as a shell step (nixlib.engine.shell_action); produce() and a legacy run() run in
this process, with the step's environment, teed into its log, and whatever they leave running killed
before anything is hashed. Each then checks that the step wrote something. Nothing here decides whether
a task runs: that is task.py's (asking the engine); this module only runs it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import multiprocessing
import os
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import luigi
import luigi.worker

from luigi_nixworkflow import children, dynamic, legacy, present, registry, settings, shape, stepio
from luigi_nixworkflow.target import BUILDING
from nixlib import temproots
from nixlib.engine import shell_action
from nixlib.errors import NixWorkflowError, StepFailed
from nixlib.recipe import Recipe
from nixlib.runner import Build, append_log

logger = logging.getLogger("luigi-interface")
STORING = "_nw_storing"  # task attribute: True while complete_on_run asks its complete() before storing


def action(task: Any) -> Callable[[Build, str], Mapping[str, Path]]:
    """The engine action that runs `task` in its style. Each returns only once nothing the step started can
    write any more (a command's processes are reaped, produce()'s and run()'s leftovers killed: in_step), so
    the engine may reuse its build directory for the next step (nixlib.engine.reuses_scratch)."""
    run = {"shell": shell, "python": python, "legacy": legacy_run}[shape.kind(type(task))]

    def act(build: Build, command: str) -> Mapping[str, Path]:
        return run(task, build, command)

    # Not in a worker process Luigi forks per task (--workers N): it ends with os._exit, so a directory kept for
    # a next step that never comes would be left to `nw gc`.
    act.reuses_scratch = multiprocessing.parent_process() is None  # type: ignore[attr-defined]
    return act


def shell(task: Any, build: Build, command: str) -> Mapping[str, Path]:
    produced = shell_action(build, command)
    require_output(task, build)
    return produced


def python(task: Any, build: Build, command: str) -> Mapping[str, Path]:
    """Run produce() in this process; while it runs, task.output() is the build's output."""
    takes_out = shape.takes_out(type(task))
    if takes_out:
        build.out.mkdir(exist_ok=True)
    else:  # produce() makes the output itself (a file or a directory) at task.output().path
        with contextlib.suppress(FileNotFoundError):
            build.out.rmdir()
    task.__dict__[BUILDING] = build.out
    try:
        in_step(task, build, command, "produce()", lambda: _produce(task, build, takes_out))
    finally:
        task.__dict__.pop(BUILDING, None)
    require_output(task, build)
    return {"out": build.out}


def legacy_run(task: Any, build: Build, command: str) -> Mapping[str, Path]:
    """Run the class's own run(), which writes its LocalTargets in place as in plain Luigi; the engine
    then ingests copies of them. What a previous run left at those paths is moved aside first (and put
    back if this run fails), so a file run() did not write can never be stored as its result."""
    read: dict[Path, tuple[Any, str]] = {}
    for dep in task.nix_requires():  # what run() reads is exactly what was keyed
        if registry.is_nix(dep) and dep.nix_kind() == "legacy":
            found = dep.nix_result()
            if found is not None:
                legacy.read_once(task, dep, found.outputs, read)
                present.present(dep, found)
    outputs = legacy.paths(task)
    legacy.apart(task, outputs, read)
    moved = legacy.move_aside(outputs)
    succeeded = False
    try:
        in_step(task, build, command, "run()", lambda: run_own(task))
        legacy.check_written(task, outputs, settings.of_class(type(task), "allow_empty"), str(build.log))
        complete_on_run(task, str(build.log))
        success_before_storing(task)
        succeeded = True
    finally:
        legacy.settle(moved, succeeded)
    return dict(zip(legacy.output_names(len(outputs)), outputs, strict=True))


def complete_on_run(task: Any, log: str) -> None:
    """Luigi's `[worker] check_complete_on_run`: a task whose complete() still says False once run() returned
    failed (luigi.worker.TaskProcess.run). Luigi asks only after the result is stored, so a legacy task's own
    complete() override is asked here, with run()'s files in place and the store's part taken as done (its
    products are stored if this passes): a run Luigi then calls failed is never stored."""
    wrapper = type(task).complete
    own = getattr(wrapper, "__wrapped__", None) if getattr(wrapper, "_nw_wrapper", False) else None
    if own is None or not luigi.worker.worker().check_complete_on_run:
        return
    task.__dict__[STORING] = True
    try:
        done = own(task)
    finally:
        task.__dict__.pop(STORING, None)
    if not done:
        raise StepFailed(task.task_id, "its run() returned but its complete() still says it is not complete "
                         "([worker] check_complete_on_run), so Luigi fails it; nothing is stored", log)


def success_before_storing(task: Any) -> None:
    """Call the task's own on_success() now, with run()'s files in place and before they are stored, as Luigi would
    right after run() returned: what it writes into the declared outputs (`open(os.path.join(self.output().path,
    "_SUCCESS"), "w")`, a marker a complete() override or a reader looks for) is then part of the stored result.
    Stored without it, each restore of the directory removed the marker, so the task ran at every build and what
    required it failed ("Unfulfilled dependency at run time"). What it returns or raises goes to Luigi when Luigi
    calls on_success() (shape.wrap_on_success): one that raises fails the task there, its result stored, as plain
    Luigi's files stay."""
    if not getattr(type(task).on_success, "_nw_wrapper", False):
        return
    task.__dict__[shape.SUCCESS_EARLY] = True
    try:
        done: tuple[Any, BaseException | None] = (task.on_success(), None)
    except Exception as e:
        done = (None, e)
    finally:
        task.__dict__.pop(shape.SUCCESS_EARLY, None)
    task.__dict__[shape.SUCCEEDED] = done


def unstored_after_success(task: Any, result: Any) -> None:
    """Warn when the class's SUCCESS event handlers changed a declared output of a task that just ran (or was served
    from the store by its run()): Luigi fires SUCCESS after run() and on_success(), after the outputs were stored, so
    a `_SUCCESS` marker a handler writes into an output directory is not in the stored result, and the next check
    restores the output without it. The handlers are not called early instead: a handler tells others the task
    succeeded (a notification, a scheduler's record), which it must not do before its result is stored, and calling
    them early means skipping Luigi's own call. Only classes with a SUCCESS handler pay for the comparison."""
    if not _success_handlers(task):
        return
    changed = legacy.differing(task, settings.engine().store, result.outputs)
    if changed:
        logger.warning(
            "nixworkflow: %s: a SUCCESS event handler changed %s after the result was stored: the change (a "
            "`_SUCCESS` marker written into an output directory, say) is not part of the stored result, so the next "
            "build restores the output as stored, without it, and a complete() or a task that looks for it finds it "
            "missing. Write such a file in run(), or in the task's own on_success(), which runs before the outputs "
            "are stored", task.task_id, ", ".join(map(str, changed)))


def _success_handlers(task: Any) -> bool:
    """True if a SUCCESS event handler is registered for the task's class or a base of it."""
    return any(isinstance(task, c) and callbacks.get(luigi.Event.SUCCESS)
               for c, callbacks in luigi.Task._event_callbacks.items())


def run_own(task: Any) -> Any:
    """Call the class's own run() (legacy shape); super().run() inside it reaches the base's own run().
    A run() that yields is driven to its end here (dynamic.drive), or stops at a task not yet complete.
    A class without a run() of its own (shape.plain) runs Luigi's, which does nothing. Returns what run()
    returned (a task run as plain Luigi is called so: `Task(...).run()` gives its value, as in Luigi)."""
    if not getattr(type(task).run, "_nw_wrapper", False):
        return None
    task.__dict__[shape.RUNNING] = True
    try:
        result = task.run()
        if inspect.isgenerator(result):
            dynamic.drive(result, task.__dict__.get("_nw_seen", []))
            return None
        return result
    finally:
        task.__dict__.pop(shape.RUNNING, None)


def in_step(task: Any, build: Build, command: str, what: str, body: Callable[[], None]) -> None:
    """Run `body` in this process as the step: the env's variables (PATH: its tools), output teed to the
    step log, and whatever it leaves running killed before anything is hashed."""
    leftovers = children.watch(build.marker)
    variables = {**build.environ(), **leftovers.variables}
    registry.IN_STEP.append(task.task_id)
    try:
        with append_log(build.log) as log, stepio.environ(variables), stepio.tee(log):
            cls = type(task)
            print(f"$ {command}  # {cls.__module__}.{cls.__qualname__}", file=log, flush=True)
            try:
                body()
            except dynamic.NeedsDependencies:
                print("(stopped: it yielded tasks that are not complete; Luigi runs them first)", file=log)
                raise
            except BaseException:
                log.write(traceback.format_exc())
                raise
    finally:
        registry.IN_STEP.pop()
        killed = children.stop_leftovers(leftovers, task.task_id)
    if killed:
        note = (f"nixworkflow: {task.task_id}: killed {len(killed)} process(es) {what} left running (pids "
                f"{', '.join(map(str, killed))}); a step ends when all of its processes end: wait for what "
                f"{what} starts")
        logger.warning("%s", note)
        with append_log(build.log) as log:
            print(note, file=log)


def _produce(task: Any, build: Build, takes_out: bool) -> None:
    try:
        result = task.produce(build.out) if takes_out else task.produce()  # type: ignore[call-arg]
    except IsADirectoryError as e:
        if str(build.out) not in (_abs(e.filename), _abs(e.filename2)):
            raise
        raise NixWorkflowError(
            f"task {task.task_id}: produce(out) opened its output directory {build.out} as a file. The output of "
            "produce(self, out) is the directory `out`: write files inside it (out / 'name'). To make the "
            "output one file, define produce(self) without `out` and write open(self.output().path, 'w')."
        ) from None
    except FileNotFoundError as e:
        if os.path.lexists(build.out) or not _abs(e.filename).startswith(f"{build.out}/"):
            raise
        raise NixWorkflowError(
            f"task {task.task_id}: produce() wrote {e.filename}, inside its output, but produce(self) makes its "
            "output itself and the directory does not exist yet. Create it first (os.makedirs(self.output()"
            ".path)), write through (self.output() / 'name').open('w'), or define produce(self, out) to get a "
            "ready output directory `out`."
        ) from None
    if inspect.isgenerator(result):
        result.close()
        raise shape.yields_error(type(task), "produce()")


def _abs(name: Any) -> str:
    """An OSError's file name, absolute (empty if it has none)."""
    return os.path.abspath(os.fsdecode(name)) if isinstance(name, str | bytes | os.PathLike) else ""


def require_output(task: Any, build: Build) -> None:
    """A step that wrote nothing failed, unless the task says an empty output is intended: an empty object
    cached as a success would surface later, downstream, as a misleading missing file."""
    out = build.out
    empty = not os.path.lexists(out) or (out.is_dir() and not out.is_symlink() and not any(out.iterdir())) \
        or (out.is_file() and not out.is_symlink() and out.stat().st_size == 0)
    if not empty:
        return
    if settings.of_class(type(task), "allow_empty"):
        if not os.path.lexists(out):
            out.mkdir()  # produce(self) that made nothing: the intended empty output is an empty directory
        return
    where = "$out" if shape.kind(type(task)) == "shell" else "its output (`out`, or self.output().path)"
    raise StepFailed(task.task_id, f"NixTask {task.task_family} wrote nothing into {where}, so there is no result "
                     "to store. Write the output, or set `allow_empty = True` on the class if an empty output is "
                     "intended", str(build.log))


def add_sources(task: Any, recipe: Recipe) -> None:
    """Copy the static files and LocalTargets the command reads into the store, checking their hashes."""
    store = settings.engine().store
    # Registered as temp roots first, so a concurrent `nw gc` keeps them from here on.
    temproots.of(store.root).add([i.obj for i in recipe.inputs if i.obj is not None])
    for i in recipe.inputs:
        if i.obj is None or store.has(i.obj):
            continue
        source = registry.SOURCES.get(i.obj)
        if source is None:
            raise NixWorkflowError(f"task {task.task_id}: store object {i.obj} is missing from {store.root}")
        h = store.ingest(source)
        if h != i.obj:
            raise NixWorkflowError(f"task {task.task_id}: {source} changed while the pipeline ran (hash {h}, "
                                   f"expected {i.obj}); run it again")
