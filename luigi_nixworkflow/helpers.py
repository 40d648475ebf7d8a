"""The module-level code a task class uses: the functions, classes and plain values its methods name.

A task's code digest covers its class's source; the helpers its run() or command() calls change results
just as much (`def clean(text): ...` edited, `THRESHOLD = 0.5` raised), so they enter the digest too. The
walk starts at the class's methods (and its own base classes'), reads the global names each code object
uses (co_names, through nested functions, lambdas and comprehensions), and looks them up where the code
looks them up (the function's module globals); a module the code names (`utils.clean(x)`) is looked into
for the other names the same code uses. It follows helper functions and classes into what they use in turn.

Only the user's code is followed: nothing from the standard library, site-packages, Luigi or nixworkflow
(what those do is the environment's identity). A `luigi.Task` named in the code (an upstream task) is
keyed through its own result, never by its source (so early cutoff holds); a `luigi.Config` class is
returned for its values to be keyed (keying.config_values). A plain value (str, number, bool, None, and
lists, tuples and dicts of them) enters by its canonical JSON; any other object (a compiled regex, a
DataFrame) cannot be digested and is left out (docs/luigi.md). Over-keying is the safe side: a name that
only looks like a helper's makes edits to that helper re-run the task.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import os
import sys
import sysconfig
import textwrap
import types
from typing import Any

import luigi

from nixlib.recipe import canonical_json, digest

_SKIP_PACKAGES = frozenset({"luigi", "luigi_nixworkflow", "nixlib"})
_MAX_VALUE = 65536  # characters of canonical JSON: a module-level value larger than this is data, not code


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """Where installed code lives (stdlib, site-packages, the venv's): code there is the environment's."""
    paths = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= {p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))}
    return tuple(os.path.realpath(p) + os.sep for p in paths if p)


@functools.cache
def _is_user_module(name: str | None) -> bool:
    """True for a module of the user's own code (a file outside the installed libraries)."""
    if not name or name.split(".")[0] in _SKIP_PACKAGES:
        return False
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None)
    if not file:
        return name == "__main__"  # a script run as __main__ has a file; one without (a REPL) has no source
    return not os.path.realpath(file).startswith(_library_dirs())


@functools.cache
def used_by(cls: type) -> tuple[dict[str, str], tuple[type, ...]]:
    """({qualified name: what it is and its digest}, Config classes reached) for the user code `cls` uses
    (once per class and process: a class's code and its module's helpers are defined once)."""
    found: dict[str, str] = {}
    configs: dict[type, None] = {}
    todo = _methods(cls, task=True)
    seen_code: set[int] = set()
    while todo:
        code, globs = todo.pop()
        if id(code) in seen_code:
            continue
        seen_code.add(id(code))
        for name in _names(code):
            if name not in globs:
                continue
            value = globs[name]
            if isinstance(value, types.ModuleType):
                if _is_user_module(value.__name__):  # `utils.clean(x)`: the other names of this code, looked up there
                    todo += _visit(value.__name__, vars(value), set(_names(code)) - {name}, found, configs)
                continue
            todo += _visit(globs.get("__name__"), globs, {name}, found, configs)
    return dict(sorted(found.items())), tuple(configs)


def _visit(module: str | None, globs: dict[str, Any], names: set[str], found: dict[str, str],
           configs: dict[type, None]) -> list[tuple[types.CodeType, dict[str, Any]]]:
    """Describe each of `names` defined in `globs` (the module `module`); return the code to walk next."""
    more: list[tuple[types.CodeType, dict[str, Any]]] = []
    for name in sorted(names):
        if name not in globs or name.startswith("__"):
            continue
        value = globs[name]
        if isinstance(value, type):
            if luigi.Config in value.__mro__:
                configs[value] = None
                continue
            key = f"{value.__module__}.{value.__qualname__}"  # (by where it is defined, not where it was imported)
            if key in found or luigi.Task in value.__mro__ or not _is_user_module(value.__module__):
                continue
            found[key] = "class:" + _source_digest(value)
            more += _methods(value)
        elif isinstance(value, types.FunctionType):
            function = inspect.unwrap(value)
            if not isinstance(function, types.FunctionType) or not _is_user_module(function.__module__):
                continue
            key = f"{function.__module__}.{function.__qualname__}"
            if key in found:
                continue
            found[key] = "def:" + _source_digest(function)
            more.append((function.__code__, function.__globals__))
        elif _is_user_module(module) and f"{module}.{name}" not in found:
            value_digest = _value_digest(value)
            if value_digest is not None:
                found[f"{module}.{name}"] = "value:" + value_digest
    return more


def _methods(cls: type, task: bool = False) -> list[tuple[types.CodeType, dict[str, Any]]]:
    """The code objects of the functions defined in the class and its own user-code base classes (for the
    task class itself: wherever it is installed, as its code digest covers its source wherever it is)."""
    out = []
    for c in cls.__mro__:
        module = c.__module__ or ""
        if c is object or module.split(".")[0] in _SKIP_PACKAGES or not (task or _is_user_module(module)):
            continue
        for attr in vars(c).values():
            for f in _functions_of(attr):
                f = inspect.unwrap(f)
                if isinstance(f, types.FunctionType):
                    out.append((f.__code__, f.__globals__))
    return out


def _functions_of(attr: Any) -> list[Any]:
    if isinstance(attr, staticmethod | classmethod):
        return [attr.__func__]
    if isinstance(attr, property):
        return [f for f in (attr.fget, attr.fset, attr.fdel) if f is not None]
    if isinstance(attr, functools.cached_property):
        return [attr.func]
    return [attr] if isinstance(attr, types.FunctionType) else []


def _names(code: types.CodeType) -> list[str]:
    """The global and attribute names a code object and the code nested in it use."""
    names: list[str] = []
    stack = [code]
    while stack:
        c = stack.pop()
        names += c.co_names
        stack += [k for k in c.co_consts if isinstance(k, types.CodeType)]
    return names


@functools.cache
def _source_digest(obj: Any) -> str:
    """A digest of a function's or class's source, comments and layout ignored; of its name when the
    source cannot be read (a function made by exec), which then changes only when the name does."""
    try:
        source = textwrap.dedent(inspect.getsource(obj))
        return digest(ast.dump(ast.parse(source)))
    except (OSError, TypeError, SyntaxError):
        return digest("unreadable:" + getattr(obj, "__qualname__", repr(type(obj))))


def _value_digest(value: Any) -> str | None:
    """The digest of a plain value's canonical JSON; None for anything else or anything too large."""
    if callable(value):
        return None
    try:
        text = canonical_json(_plain(value))
    except (TypeError, ValueError, RecursionError):
        return None
    return digest(text) if len(text) <= _MAX_VALUE else None


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(json.dumps(_plain(v), sort_keys=True) for v in value)
    raise TypeError(type(value).__name__)
