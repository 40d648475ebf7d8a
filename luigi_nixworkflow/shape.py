"""The shape of a NixTask class: which style it is written in, and how its own run() is reached.

Three styles: `command()` (shell), `produce()` (Python in the worker) and the legacy one, the class's own
run() and output() as in plain Luigi. Decided once per class from what the class itself defines; the
NixTask base marks its defaults with `base`, so this module never needs to import the class.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import luigi

from luigi_nixworkflow import dynamic, settings
from nixlib.errors import NixWorkflowError

RUNNING = "_nw_running"  # task attribute: its own run() is executing now (inside the engine's action)


def base(method: Callable[..., Any]) -> Callable[..., Any]:
    """Mark NixTask's own default of a method a subclass defines to choose its style."""
    method._nw_base = True  # type: ignore[attr-defined]
    return method


def _own(method: Any) -> bool:
    """True if a subclass (not NixTask) defines this method."""
    return not getattr(method, "_nw_base", False)


@functools.cache  # (asked by every output() call)
def kind_declared(cls: type) -> bool:
    """True if the class is written in the store-native style: it (not NixTask) defines command() or produce()."""
    return _own(cls.command) or _own(cls.produce)


def plain(cls: type) -> str | None:
    """Why a class written in neither style has nothing for the store to run or hold, so that it runs as plain
    Luigi runs it (legacy.unmanaged, with a warning), or None. Either it declares no output() but says when it is
    done in its own complete() (Luigi's `RunOnceTask`, a row written to a database): its result lives outside any
    file; or it declares output() but has no run() (data something else writes, as a `luigi.ExternalTask`)."""
    if kind_declared(cls):
        return None
    own_run, own_output = getattr(cls.run, "_nw_wrapper", False), _own(cls.output)
    wrapper = getattr(cls.complete, "__wrapped__", None) is luigi.WrapperTask.complete  # (a base's: NixTask first)
    if not own_output and getattr(cls.complete, "_nw_wrapper", False) and not wrapper:
        return ("it declares no output() and its own complete() says when it is done, so there is nothing the store "
                "could hold. To cache it, declare what run() writes with output() (LocalTargets)")
    if own_output and not own_run:
        return ("it declares output() but no run(): it names data that something else writes (as a "
                "luigi.ExternalTask does), so there is nothing to run. Its files are keyed by content where other "
                "NixTasks read them")
    if not own_output and own_run:  # (Luigi runs such a task every time: it is never complete)
        return ("it declares no output(), so its run() leaves nothing the store could hold. To cache it, declare "
                "what run() writes with output() (LocalTargets, as in plain Luigi), or write it as produce(self, out)")
    if not own_output:
        return ("it defines none of run(), output(), command() or produce() (a task that only requires others, as a "
                "WrapperTask does), so there is nothing for the store to run or hold")
    return None


def externalized(cls: type) -> bool:
    """True for the copy `luigi.task.externalize(SomeTask)` makes of a class: a subclass hidden from the registry whose
    run() is None (so Luigi never runs it). It names the same data as the class it copies: a store-native task's
    copy is keyed as that class is and is complete when the store holds its result (a legacy task's copy runs as
    plain Luigi, as an ExternalTask: complete when its files exist, keyed by content where NixTasks read them)."""
    own = vars(cls)
    return (own.get("_visible_in_registry") is False and "run" in own and own["run"] is None
            and own.get("__wrapped__") in cls.__bases__
            and all(n in _EXTERNALIZED_COPY or n.startswith("_nw_") for n in own))


# Everything a class `luigi.task.externalize` makes has of its own (wraps' attributes, the registry flag, run = None,
# and what Luigi and this adapter memoise on a class: `_unconsumed_params`, `_nw_*`): a class with any other attribute
# of its own is a user's class, keyed by its own source.
_EXTERNALIZED_COPY = frozenset({"__abstractmethods__", "__annotations__", "__doc__", "__module__", "__name__",
                                "__qualname__", "__wrapped__", "_abc_impl", "_namespace_at_class_time",
                                "_visible_in_registry", "run", "__dict__", "__weakref__",
                                "_unconsumed_params"})


@functools.cache
def kind(cls: type) -> str:
    """"shell", "python" or "legacy" (the class's own run() and output()); a mix is an error naming the fix."""
    shell = _own(cls.command)
    python = _own(cls.produce)
    own_run = getattr(cls.run, "_nw_wrapper", False)
    own_output = _own(cls.output)
    name = cls.__qualname__
    if plain(cls):
        return "legacy"  # runs as plain Luigi (legacy.unmanaged): nothing for the store to run or hold
    if own_run:
        if (shell or python) and getattr(inspect.unwrap(cls.run), "__module__", None) == "luigi.util":
            raise NixWorkflowError(f"NixTask {name} defines {'command()' if shell else 'produce()'}, and a decorator "
                                   "of luigi.util (delegates, copies) gives it a run(): such a task needs the plain "
                                   "Luigi shape, run() with output() (LocalTargets), as the decorator expects")
        if shell or python:
            raise NixWorkflowError(f"NixTask {name} defines run() and {'command()' if shell else 'produce()'}: keep "
                                   "one. run() with output() is the plain Luigi shape; command()/produce() the "
                                   "store-native one (its output is a NixTarget)")
        return "legacy"
    if own_output:
        raise NixWorkflowError(f"NixTask {name} overrides output() but has no run() of its own: a task that "
                               "declares its output() writes it in run(), as in plain Luigi; command()/produce() "
                               "write the NixTarget output NixTask provides")
    if shell and python:  # (a class defining none of them runs as plain Luigi: plain())
        raise NixWorkflowError(f"NixTask {name} must define exactly one of command() (a shell step), "
                               "produce(out) (a Python step) or run() with output() (the plain Luigi shape); it "
                               "defines both command() and produce()")
    if python and settings.of_class(cls, "sandbox"):
        raise NixWorkflowError(f"NixTask {name}: sandbox applies to command() steps; produce(out) "
                               "runs inside the Luigi worker")
    if python and inspect.isgeneratorfunction(cls.produce):
        raise yields_error(cls, "produce()")
    return "shell" if shell else "python"



def wrap_run(own: Callable[..., Any], through_store: Callable[[Any], Any]) -> Callable[..., Any]:
    """run() as Luigi calls it: through the store, unless the task's own run() is already executing
    (then this is a super().run() from a subclass's run(), which must reach the base's own code).
    A yielding run() stays a generator for Luigi: tasks it yields that are not complete go to Luigi."""

    if inspect.isgeneratorfunction(own):
        @functools.wraps(own)
        def run(self: Any) -> Any:
            if self.__dict__.get(RUNNING):
                return (yield from own(self))
            if not self.nix_managed():  # plain Luigi: Luigi itself drives the generator, as for any task
                self.__dict__[RUNNING] = True
                try:
                    return (yield from own(self))
                finally:
                    self.__dict__.pop(RUNNING, None)
            while True:
                try:
                    return through_store(self)
                except dynamic.NeedsDependencies as e:
                    yield e.requirements  # Luigi runs them (and calls run() again), or answers if complete
    else:
        @functools.wraps(own)
        def run(self: Any) -> Any:
            if self.__dict__.get(RUNNING):
                return own(self)
            return through_store(self)

    run._nw_wrapper = True  # type: ignore[attr-defined]
    return run


SUCCESS_EARLY = "_nw_success_early"  # task attribute: its own on_success() is being called before the storing
SUCCEEDED = "_nw_succeeded"  # task attribute: (what on_success() returned, what it raised) when called before storing


def wrap_on_success(own: Callable[..., Any]) -> Callable[..., Any]:
    """on_success() as Luigi calls it, once run() returned: a legacy task's own on_success() was called already,
    before its outputs were stored (steps.success_before_storing), so what it writes into them (a `_SUCCESS` marker
    in an output directory) is part of the stored result; Luigi then gets what that call returned or raised. Called
    otherwise (a task served from the store, run as plain Luigi, a store-native one), it is the task's own."""

    @functools.wraps(own)
    def on_success(self: Any) -> Any:
        if self.__dict__.get(SUCCESS_EARLY):  # (the early call, and a super().on_success() inside it)
            return own(self)
        done = self.__dict__.pop(SUCCEEDED, None)
        if done is None:
            return own(self)
        returned, raised = done
        if raised is not None:
            raise raised
        return returned

    on_success._nw_wrapper = True  # type: ignore[attr-defined]
    return on_success


@functools.cache
def is_dynamic(cls: type) -> bool:
    """A legacy task whose run() yields (dynamic dependencies). Fixed per class, as its kind is."""
    return inspect.isgeneratorfunction(getattr(cls.run, "__wrapped__", None))


def yields_error(cls: type, where: str) -> NixWorkflowError:
    return NixWorkflowError(
        f"NixTask {cls.__qualname__}: {where} yields (Luigi dynamic dependencies), which produce() does not "
        "support: the yielded tasks would never run and the output would be keyed without them. Return the tasks "
        "from requires() instead, or use the plain Luigi shape (run() with output()), where yield works."
    )


@functools.cache
def takes_out(cls: type) -> bool:
    """produce(self, out) gets a ready output directory; produce(self) makes its output itself."""
    try:
        params = list(inspect.signature(cls.produce).parameters.values())[1:]
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)
