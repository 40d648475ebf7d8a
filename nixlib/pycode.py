"""Digests of the module-level Python code a step's own code uses, so that editing a helper re-runs the step.

A front door keys a Python step by its own code (a Luigi task class's source, a Snakemake `run:` block's
text); the helpers that code calls change its result just as much (`def clean(text): ...` edited,
`THRESHOLD = 0.5` raised). `uses(functions)` walks from the step's functions: it reads the names each code
object uses (co_names, through nested functions, lambdas and comprehensions) and looks each up where the code
looks it up (the function's globals). A user function is keyed by its bytecode and followed; a user class by
its members and followed into its methods; a user module named by the code (`utils.fmt(x)`) is looked into
for the other names the same code uses; a `functools.partial` (`norm = partial(clean, lower=True)`) by its
function and bound arguments; a plain value (str, number, bool, None, bytes, a date, a Path, a Decimal, a
compiled regex, an enum member, and lists, tuples, dicts, sets and namespaces of them, a ConfigParser's values,
up to 64 KB of JSON) by its canonical JSON. An enum or dataclass of the user's module is a user class although
its library wrote its functions. The values a user function closes over (a task class a factory makes) are
keyed as its globals are. A class the caller's `stop` accepts (an upstream Luigi task keyed by its result, a
Config keyed by its values) is returned to the caller, not followed.
Any other object (a logger, a DataFrame built at import) cannot be digested and is left out.

User code is code compiled from a file outside the installed libraries (the standard library,
site-packages): a project module, a Snakefile, a script. Installed code is part of the environment.

Bytecode rather than source: it needs no file (a Snakefile's functions, exec'd code), ignores comments and
layout (line numbers and file names are left out), and is what runs. It differs between Python versions,
so a new Python re-runs the steps that use helpers: the safe side, like every over-keying here (a name that
only looks like a helper's makes edits to that helper re-run the step).
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import datetime
import decimal
import enum
import fractions
import functools
import gc
import hashlib
import importlib.util
import json
import os
import re
import sys
import sysconfig
import types
import weakref
from collections.abc import Callable, Iterable
from pathlib import PurePath
from typing import Any

from nixlib import base32, envreads
from nixlib.recipe import canonical_json, digest

_OWN_PACKAGES = frozenset({"nixlib", "luigi_nixworkflow", "snakemake_executor_nixworkflow"})
MAX_VALUE = 65536  # characters of canonical JSON: a module-level value larger than this is data, not code
_Walk = list[tuple[types.CodeType, dict[str, Any], dict[str, Any]]]  # (code, its globals, the values it closes over)
_CONFIG_READERS = frozenset({"get_config"})  # names of code that reads luigi.cfg directly

# A front door's names for modules, set before any digest: Luigi's adapter names the script run as `__main__`
# (`python pipeline.py Task`) as it is imported (`luigi --module pipeline Task`), so both key a task alike.
MODULE_NAMES: dict[str, str] = {}


def module_name(name: str) -> str:
    """A module's name in keys (MODULE_NAMES)."""
    return MODULE_NAMES.get(name, name)


def qualified(obj: Any) -> str:
    """A class's or function's name in keys: its module (module_name) and qualified name."""
    return f"{module_name(obj.__module__)}.{obj.__qualname__}"


def uses(functions: Iterable[Any], stop: Callable[[type], bool] = lambda c: False,
         strings: set[str] | None = None, environ: set[str] | None = None,
         attributes: set[str] | None = None, written: set[str] | None = None,
         relocate: Callable[[Any], Any] | None = None, codes: _Walk | None = None
         ) -> tuple[dict[str, str], tuple[type, ...]]:
    """({qualified name: "def:"/"class:"/"value:" + digest}, classes `stop` accepted) for the user code
    `functions` (functions, methods, or any callable wrapping one) use, transitively. `strings`, if given,
    receives the string constants of all that code (paths of the scripts it runs: nixlib.codefiles); `environ`
    the names of the environment variables that code may read (`os.environ["SCALE"]`, `os.getenv("SCALE")`:
    _environ_names); `attributes` the global and attribute names all that code uses
    (`self.priority` read in run() or in a helper it calls); `written` the paths that code writes rather than
    reads (`written_strings`); `codes` each (code object, its globals, its closed-over values) walked, for a caller
    that reads the bytecode itself (a Snakemake `run:` block's config keys). `relocate`, if given, maps the plain
    form of each value keyed (strings, lists, dicts) before it is digested: a front door replaces the checkout's
    absolute paths (and temporary copies of its files) in it by placeholders, so `TABLE =
    workflow.source_path("t.tsv")` keys alike in every run."""
    found: dict[str, str] = {}
    stopped: dict[type, None] = {}
    starts = [f for f in map(_function, functions) if f is not None]
    todo: _Walk = [_walked(f) for f in starts]
    for f in starts:
        todo += _closure(f, found, stopped, stop, relocate)
    walked: set[tuple[int, ...]] = set()
    reads: list[tuple[types.CodeType, dict[str, Any], dict[str, Any], list[str]]] = []
    while todo:
        code, globs, cells = todo.pop()
        if (seen := (id(code), *map(id, cells.values()))) in walked:  # (a factory's code, once per closure)
            continue
        walked.add(seen)
        if codes is not None:
            codes.append((code, globs, cells))
        if strings is not None:
            strings.update(_strings(code))
        if written is not None:
            written.update(written_strings(code, globs))
        names = _names(code)
        if attributes is not None:
            attributes.update(names)
        if environ is not None:
            reads.append((code, globs, cells, names))
        if strings is not None and not _CONFIG_READERS.isdisjoint(names):
            strings.update(_global_strings(names, globs))  # `get_config().get(SECTION, "scale")`
        for name in dict.fromkeys(names):
            value = globs.get(name)
            if isinstance(value, types.ModuleType):  # `utils.fmt(x)`, `pkg.utils.fmt(x)`
                todo += _in_modules(value, set(names) - {name}, found, stopped, stop, relocate)
            elif name in globs:
                todo += _visit(globs.get("__name__", "?"), globs, {name}, found, stopped, stop, relocate)
    if environ is not None:
        environ.update(_environ_names(reads))
    return dict(sorted(found.items())), tuple(stopped)


def _walked(function: types.FunctionType) -> tuple[types.CodeType, dict[str, Any], dict[str, Any]]:
    """A function's code to walk, with its globals and the values it closes over by name (a function a factory made
    from `make(os.environ)` reads the environment through its cell: envreads.code_variables)."""
    return function.__code__, function.__globals__, _cells(function)


def _cells(function: types.FunctionType) -> dict[str, Any]:
    """{free variable: the value it holds} of a function's closure."""
    cells: dict[str, Any] = {}
    for name, cell in zip(function.__code__.co_freevars, function.__closure__ or (), strict=False):
        with contextlib.suppress(ValueError):  # (a cell not yet filled)
            cells[name] = cell.cell_contents
    return cells


def _environ_names(reads: list[tuple[types.CodeType, dict[str, Any], dict[str, Any], list[str]]]) -> set[str]:
    """The environment variables the walked code reads by name (nixlib.envreads.code_variables, the scan script
    files get too: `os.environ.get("SCALE", "1")` keys SCALE, not "1"). Where one use cannot be followed (a name
    passed to a helper, `os.environ.copy()`, a module-level name another function rebinds), every string constant
    of all the walked code, and the module-level strings it names, may be one: more keyed, never less. HOME too for
    code that expands `~` or asks for the home directory (envreads.reads_home: `os.path.expanduser`, `Path.home()`)."""
    names = {"HOME"} if any(envreads.reads_home(c, g, cells) for c, g, cells, _ in reads) else set()
    relied: set[str] = set()
    for code, globs, cells, _ in reads:
        found, through = envreads.code_variables(code, globs, cells)
        if found is None:
            break
        names.update(found)
        relied.update(through)
    else:
        if not relied or relied.isdisjoint(envreads.stored_globals(c for c, _, _, _ in reads)):
            return names
    for code, globs, _, used in reads:
        strings = _strings(code, joined=False)  # (a joined path names no variable)
        names.update(strings, envreads.expanded_names(strings))
        names.update(_global_strings(used, globs))  # `for v in VARS: os.environ[v]` with `VARS = ("A", "B")`
    return names


def _in_modules(module: types.ModuleType, names: set[str], found: dict[str, str], stopped: dict[type, None],
                stop: Callable[[type], bool], relocate: Callable[[Any], Any] | None = None) -> _Walk:
    """Key the other names the code uses as they are defined in a user module it names (`utils.fmt(x)`), and in
    the user modules reached from that one by those names (`import pkg.utils` used as `pkg.utils.fmt(x)`: `utils`
    is an attribute of `pkg`); return the code to walk next."""
    more: _Walk = []
    modules, seen = [module], set()
    while modules:
        m = modules.pop()
        if id(m) in seen or not _user_module(m):
            continue
        seen.add(id(m))
        globs = vars(m)
        more += _visit(m.__name__, globs, names, found, stopped, stop, relocate)
        modules += [v for n in sorted(names) if isinstance(v := globs.get(n), types.ModuleType)]
    return more


def _visit(module: str, globs: dict[str, Any], names: set[str], found: dict[str, str], stopped: dict[type, None],
           stop: Callable[[type], bool], relocate: Callable[[Any], Any] | None = None) -> _Walk:
    """Key each of `names` defined in `globs` (module `module`); return the code to walk next."""
    more: _Walk = []
    for name in sorted(names):
        if name.startswith("__") or name not in globs:
            continue
        value = globs[name]
        if isinstance(value, type):
            if stop(value):
                stopped[value] = None
                continue
            more += _class_code(value, found, stopped, stop, relocate, own=value.__module__ == module)
            continue
        if isinstance(value, functools.partial):  # `norm = partial(clean, lower=True)`: its function and arguments
            key = f"{module_name(module)}.{name}"
            if key not in found:
                found[key] = "partial:" + _partial_digest(value)
                more += [_walked(f) for f in _partial_functions(value) if _user_code(f.__code__)]
            continue
        function = _function(value)
        if function is not None:
            if _user_code(function.__code__):
                more += _function_code(function, f"{module_name(module)}.{name}", found, stopped, stop, relocate)
                attributes = _function_attributes(value)  # (`@functools.singledispatch`: its `registry`)
                more += _held_code(attributes, f"{module_name(module)}.{name}.__attributes__", found, stopped, stop,
                                   relocate) if attributes else []
            continue
        key = f"{module_name(module)}.{name}"
        if key in found:
            continue
        factory = isinstance(value, dict) and getattr(value, "default_factory", None) is not None
        value_digest = None if callable(value) or factory else _value_digest(value, _home(globs), relocate)
        if value_digest is not None:
            found[key] = "value:" + value_digest
        else:  # (`STEPS = {"n": n}` called as `STEPS["n"]()`, `HELP = Helper()` as `HELP.n()`)
            more += _held_code(value, key, found, stopped, stop, relocate)
    return more


def _function_code(function: types.FunctionType, name: str, found: dict[str, str], stopped: dict[type, None],
                   stop: Callable[[type], bool], relocate: Callable[[Any], Any] | None = None) -> _Walk:
    """Key a user function by its code under its qualified name, or under `name` (the name it is bound to) when
    another function of that qualified name was keyed first (two module-level lambdas, `F = lambda: ...` and `G =
    lambda: ...`, are both `<lambda>`: the second was neither keyed nor walked); return its code to walk, with what
    its closure and its default arguments hold (`def run(steps=STEPS)`). (`uses` walks each code once per closure.)"""
    key, value = qualified(function), "def:" + function_digest(function)
    if found.setdefault(key, value) != value:
        found.setdefault(name, value)
    more = [_walked(function), *_closure(function, found, stopped, stop, relocate)]
    defaults = [*(function.__defaults__ or ()), *(function.__kwdefaults__ or {}).values()]
    if any(_value_digest(d) is None for d in defaults):
        more += _held_code(defaults, f"{key}.__defaults__", found, stopped, stop, relocate)
    return more


def _class_code(cls: type, found: dict[str, str], stopped: dict[type, None], stop: Callable[[type], bool],
                relocate: Callable[[Any], Any] | None = None, own: bool = False) -> _Walk:
    """Key a user class by its members and return its methods' code to walk, with the code its class attributes
    hold (`class Steps: FS = [n]`). `own`: defined in the module that names it (a class of attributes only, in a
    Snakefile, which is in no module _user_class can look at)."""
    key = qualified(cls)
    if key in found or not (own or _user_class(cls)):
        return []
    found[key] = "class:" + class_digest(cls)
    more = [_walked(f) for f in _members(cls) if _user_code(f.__code__)]
    attributes = [a for c in cls.__mro__ if c is cls or c is not object and _user_class(c) for n, a in vars(c).items()
                  if not n.startswith("__") and not _functions_of(a) and _value_digest(a) is None]
    return more + (_held_code(attributes, f"{key}.__attributes__", found, stopped, stop, relocate) if attributes
                   else [])


HELD_VALUES = 20_000  # values looked at in one module-level value for the user code it holds (_held_code)


def _held_code(value: Any, key: str, found: dict[str, str], stopped: dict[type, None], stop: Callable[[type], bool],
               relocate: Callable[[Any], Any] | None = None) -> _Walk:
    """Key a value no plain digest holds (_value_digest) by the user code inside it and return that code to walk:
    a function in a dict, list, tuple, set or namespace (`STEPS = {"n": n}` called as `STEPS["n"]()`, `FS =
    [lambda: ...]`), a defaultdict's factory, a partial's function and arguments, a bound method, an instance of
    a user class (`HELP = Helper()` used as `HELP.n()`: its class and its attributes), nested in any of these. The
    key is the value's form (_held_form: the code by digest, plain values by value, other objects by type), so
    editing the code or which key holds which function re-runs the step. A value holding no user code adds no key,
    as before (a library object: nixlib.pydata keys the data it can). A library object's `__dict__` is not looked
    into (its state is not the user's and seldom stable): code held there is what unfollowed_code reports. One that
    keeps no `__dict__` (a deque, a MappingProxyType, a ContextVar, a weak reference: _holdings) is looked into by
    what it holds, and keyed by that when it holds user code (else by its type, as before), as is an enum member's
    value (`N = enum.member(n)`)."""
    parts: list[Any] = []
    form = _held_form(value, parts, [HELD_VALUES], stop, stopped)
    if not parts:
        return []
    text = canonical_json(relocate(form) if relocate is not None else form)
    found[key] = "held:" + digest(text)
    more: _Walk = []
    for part in parts:
        if isinstance(part, type):
            more += _class_code(part, found, stopped, stop, relocate)
        else:
            more += _function_code(part, f"{key}.{part.__qualname__}", found, stopped, stop, relocate)
    return more


def _held_form(value: Any, parts: list[Any], budget: list[int], stop: Callable[[type], bool],
               stopped: dict[type, None], depth: int = 0) -> Any:
    """The JSON form of a value for _held_code, adding to `parts` the user functions and classes found in it."""
    budget[0] -= 1
    if budget[0] < 0 or depth > 40:
        return "..."
    if value is None or isinstance(value, bool | int | float | str):
        return value

    def again(v: Any) -> Any:
        return _held_form(v, parts, budget, stop, stopped, depth + 1)

    try:
        scalar = _scalar(value)
    except TypeError:  # an enum member whose value is no plain value (`N = enum.member(n)`: a function)
        return {"enum": qualified(type(value)), "name": value.name, "value": again(value.value)}
    if scalar is not None:
        return scalar
    if isinstance(value, type):
        if stop(value):
            stopped[value] = None
        elif _user_type(value):
            parts.append(value)
            return {"class": qualified(value), "digest": class_digest(value)}
        return {"type": getattr(value, "__qualname__", "?")}
    if isinstance(value, functools.partial):
        return {"partial": [again(value.func), [again(a) for a in value.args],
                            [[k, again(v)] for k, v in sorted(value.keywords.items())]]}
    if isinstance(value, types.MethodType):
        return {"method": again(value.__func__), "self": again(value.__self__)}
    function = _function(value) if callable(value) and not _user_instance(value) else None
    if function is not None:
        if not _user_code(function.__code__):
            return {"function": f"{function.__module__}.{function.__qualname__}"}
        parts.append(function)
        return {"def": function_digest(function), "cells": [[n, again(v)] for n, v in sorted(_cells(function).items())
                                                            if n != "__class__"]}
    if isinstance(value, dict):
        form = {"dict": [[again(k), again(v)] for k, v in value.items()]}
        factory = getattr(value, "default_factory", None)
        return {**form, "factory": again(factory)} if factory is not None else form
    if isinstance(value, list | tuple):
        return [again(v) for v in value]
    if isinstance(value, set | frozenset):
        return {"set": sorted((again(v) for v in value), key=canonical_json)}
    if isinstance(value, types.SimpleNamespace | argparse.Namespace):
        return {"namespace": again(vars(value))}
    if _user_instance(value):
        if stop(type(value)):
            stopped[type(value)] = None
            return {"stopped": qualified(type(value))}
        parts.append(type(value))
        return {"instance": qualified(type(value)), "digest": class_digest(type(value)),
                "state": again(instance_state(value))}
    name = {"object": getattr(type(value), "__qualname__", "?")}
    found = len(parts)
    holds = [again(v) for v in _holdings(value)]  # (a deque, a MappingProxyType, a ContextVar, a weak reference)
    return {**name, "holds": holds} if len(parts) > found else name


def _holdings(value: Any) -> list[Any]:
    """What a library object that keeps no `__dict__` holds: a weak reference its target, any other object what it
    reports to the garbage collector (gc.get_referents: a C-implemented container's items, `__slots__` values),
    which is all an object can hold without a `__dict__`, so user code kept in one (`collections.deque([n])`,
    `types.MappingProxyType({"n": n})`, `itertools.cycle([n])`) is found whatever its type. A module, code or
    frame holds no value of its own (a module's names are looked up by name); an object with a `__dict__` is left
    to its caller (its state is seldom stable: _held_form keys it by type, unfollowed_code looks into it)."""
    if isinstance(value, weakref.ref):
        target = value()
        return [] if target is None else [target]
    if isinstance(value, types.ModuleType | types.CodeType | types.FrameType):
        return []
    try:
        if isinstance(getattr(value, "__dict__", None), dict):
            return []
    except Exception:  # noqa: BLE001 - an object whose attribute access fails: looked into as one without
        pass
    kind = type(value)
    return [v for v in gc.get_referents(value) if v is not kind]


def instance_state(value: Any) -> dict[str, Any]:
    """An instance's attributes: its `__dict__`, and those its classes keep in `__slots__` (a
    `@dataclass(slots=True)` instance has no `__dict__`: `SETTINGS = Settings(threshold=0.9)`)."""
    state = dict(getattr(value, "__dict__", None) or {})
    for cls in type(value).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(value, name):
                state.setdefault(name, getattr(value, name))
    return state


def _closure(function: types.FunctionType, found: dict[str, str], stopped: dict[type, None],
             stop: Callable[[type], bool], relocate: Callable[[Any], Any] | None = None) -> _Walk:
    """Key the values `function` closes over as its globals are keyed, under its qualified name: a task class a
    factory makes (`def make_export(sep): class Export(NixTask): ... sep.join(row) ...`) has one source for every
    call, so only the closure tells `make_export(",")` from `make_export(";")`. (`__class__`, the cell `super()`
    uses, is the class itself.)"""
    if not function.__closure__ or not _user_code(function.__code__):
        return []
    values = {f"{function.__qualname__}.{n}": v for n, v in _cells(function).items() if n != "__class__"}
    return _visit(function.__module__ or "?", values, set(values), found, stopped, stop, relocate) if values else []


@functools.cache
def code_digest(code: types.CodeType) -> str:
    """A digest of what a code object does: its bytecode, constants (nested code by its own digest), names
    and signature; not its line numbers or file name, so comments and layout change nothing."""
    consts = [code_digest(c) if isinstance(c, types.CodeType) else _const(c) for c in code.co_consts]
    return digest([sys.version_info[:2], code.co_code.hex(), getattr(code, "co_exceptiontable", b"").hex(), consts,
                   code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars, code.co_flags,
                   code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount])


def function_digest(function: types.FunctionType) -> str:
    """A function's code digest, with its default argument values (`def f(x, scale=2)`: not in its code)."""
    defaults = [*(function.__defaults__ or ()), *sorted((function.__kwdefaults__ or {}).items())]
    if not defaults:
        return code_digest(function.__code__)
    return digest([code_digest(function.__code__), [_value_digest(d) or type(d).__qualname__ for d in defaults]])


def _partial_digest(value: functools.partial[Any]) -> str:
    """A functools.partial by the function it calls and the arguments it binds: editing either changes what
    calling it computes, as editing a helper function does."""
    return digest([_argument_digest(value.func), [_argument_digest(a) for a in value.args],
                   [[k, _argument_digest(v)] for k, v in sorted(value.keywords.items())]])


def _argument_digest(value: Any) -> str:
    """A partial's function or bound argument: a user function by its code, a plain value by its JSON, a nested
    partial by its own digest; anything else by its type's name (as a default argument value is)."""
    if isinstance(value, functools.partial):
        return "partial:" + _partial_digest(value)
    function = _function(value) if callable(value) else None
    if function is not None:
        return "def:" + (function_digest(function) if _user_code(function.__code__) else qualified(function))
    return _value_digest(value) or type(value).__qualname__


def _partial_functions(value: functools.partial[Any]) -> list[types.FunctionType]:
    """The functions a partial calls or binds as arguments (`partial(apply, clean)`): code to walk next."""
    found = [_function(v) for v in (value.func, *value.args, *value.keywords.values()) if callable(v)]
    return [f for f in found if f is not None]


def _const(value: Any) -> str:
    """A constant as text that is the same in every process (a frozenset's order follows string hashing)."""
    if isinstance(value, frozenset):
        return "frozenset(" + ",".join(sorted(_const(v) for v in value)) + ")"
    if isinstance(value, tuple):
        return "(" + ",".join(_const(v) for v in value) + ")"
    return type(value).__name__ + ":" + repr(value)


@functools.cache
def class_digest(cls: type) -> str:
    """A digest of a user class: its bases by name, its functions by bytecode, its plain attributes by value."""
    members: dict[str, str] = {}
    for name, attr in vars(cls).items():
        if name in ("__module__", "__qualname__", "__doc__", "__dict__", "__weakref__"):
            continue
        functions = _functions_of(attr)
        if isinstance(attr, functools.partial):  # (its bound arguments too, not only its function)
            members[name] = "partial:" + _partial_digest(attr)
        elif functions:
            members[name] = digest([function_digest(f) for f in functions])
        else:
            members[name] = _value_digest(attr) or type(attr).__qualname__
    bases = [qualified(b) for b in cls.__bases__]
    return digest([bases, dict(sorted(members.items()))])


def functions_in(cls: type) -> list[types.FunctionType]:
    """The functions a class defines itself: methods, static and class methods, properties' accessors."""
    return [f for a in vars(cls).values() for f in _functions_of(a)]


def _members(cls: type) -> list[types.FunctionType]:
    """The functions of a user class and of its user base classes."""
    return [f for c in cls.__mro__ if c is not object and _user_class(c) for f in functions_in(c)]


def _functions_of(attr: Any) -> list[types.FunctionType]:
    if isinstance(attr, staticmethod | classmethod):
        attr = attr.__func__
    if isinstance(attr, property):
        return [f for f in map(_function, (attr.fget, attr.fset, attr.fdel)) if f is not None]
    if isinstance(attr, functools.cached_property | functools.partial | functools.partialmethod):
        attr = attr.func
    function = _function(attr) if isinstance(attr, types.FunctionType) else None
    return [function] if function is not None else []


def _function(value: Any) -> types.FunctionType | None:
    """The plain function behind a value (through decorators that set __wrapped__, and the function a
    functools.partial calls), or None."""
    try:
        while not isinstance(value, types.FunctionType) and (hasattr(value, "__wrapped__")
                                                              or isinstance(value, functools.partial)):
            value = value.func if isinstance(value, functools.partial) else value.__wrapped__
        while isinstance(value, types.FunctionType) and isinstance(getattr(value, "__wrapped__", None),
                                                                    types.FunctionType):
            value = value.__wrapped__
    except Exception:  # noqa: BLE001 - an object whose attribute access fails is simply not a function
        return None
    return value if isinstance(value, types.FunctionType) else None


_names = envreads.code_names  # (the one walk of nested code: envreads', which reads it for the environment)


# Names through which code reads a function's locals without naming them: `locals()`, `vars()`, a frame's
# `f_locals` (`sys._getframe(1)`, `inspect.currentframe().f_back`), code run from a string (`eval`, `exec`).
FRAME_READERS = frozenset({"locals", "vars", "eval", "exec", "_getframe", "currentframe", "f_locals", "f_back",
                            "inspect"})


def parameter_reads(function: Any, name: str) -> frozenset[str] | None:
    """The attributes and constant keys that a function's code (and the code nested in it: lambdas,
    comprehensions) reads of its parameter or local `name`: {"mem_mb", "disk_mb"} for `resources.mem_mb` and
    `resources["disk_mb"]`, an empty set when it never uses it. None when it may use it otherwise: passes it on
    (`helper(resources)`), iterates, prints or reassigns it, or reads its locals by another way (`locals()`, a
    frame's `f_locals`, `eval`), so a caller keys all of it."""
    import dis

    code = getattr(_function(function), "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    read: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        stack += [k for k in c.co_consts if isinstance(k, types.CodeType)]
        if not FRAME_READERS.isdisjoint(c.co_names):
            return None
        ops = [i for i in dis.get_instructions(c) if i.opname not in ("CACHE", "EXTENDED_ARG")]
        for n, ins in enumerate(ops):
            arg = ins.argval
            if arg != name and not (isinstance(arg, tuple) and name in arg):
                continue
            if ins.opname in ("MAKE_CELL", "COPY_FREE_VARS", "LOAD_CLOSURE"):  # handed to nested code, looked at there
                continue
            if ins.opname not in _LOADS or n + 1 >= len(ops):  # stored, deleted, a superinstruction: all of it
                return None
            after = ops[n + 1]
            if after.opname == "LOAD_ATTR" and isinstance(after.argval, str):  # (a method: a name no resource has)
                read.add(after.argval)
            elif after.opname == "LOAD_CONST" and isinstance(after.argval, str) and n + 2 < len(ops) \
                    and ops[n + 2].opname == "BINARY_SUBSCR":
                read.add(after.argval)
            else:
                return None
    return frozenset(read)


def global_keys(code: types.CodeType, name: str) -> frozenset[str] | None:
    """The constant keys a code object (and the code nested in it) reads of the module-level mapping `name`:
    {"a", "b", "c"} for `config["a"]`, `config.get("b", 0)` and `"c" in config`, an empty set when it names it
    nowhere. None when one use is anything else (`cfg = config`, `helper(config)`, `config[k]`, `config["a"] =
    1`, `for k in config`, a local or attribute of that name): it may then read any key, so a caller keys all."""
    import dis

    keys: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        stack += [k for k in c.co_consts if isinstance(k, types.CodeType)]
        if name not in (*c.co_names, *c.co_varnames, *c.co_cellvars, *c.co_freevars):
            continue
        ops = [i for i in dis.get_instructions(c) if i.opname not in ("CACHE", "EXTENDED_ARG", "PRECALL", "PUSH_NULL")]
        for n, ins in enumerate(ops):
            if ins.argval == name or (isinstance(ins.argval, tuple) and name in ins.argval):
                key = _constant_key(ops, n)
                if key is None:
                    return None
                keys.add(key)
    return frozenset(keys)


def _constant_key(ops: list[Any], at: int) -> str | None:
    """The key of the read of a global mapping loaded at `at` (see global_keys), or None for any other use. A
    `.get` counts only with its constant key alone as first argument and at most one simple default after it."""
    def op(k: int, *names: str) -> Any:
        return ops[k] if 0 <= k < len(ops) and ops[k].opname in names else None

    if op(at, "LOAD_GLOBAL", "LOAD_NAME") is None:
        return None
    key = op(at + 1, "LOAD_CONST")
    if key is not None and isinstance(key.argval, str) and (op(at + 2, "BINARY_SUBSCR") or (
            op(at + 2, "BINARY_OP") and ops[at + 2].argrepr == "[]")):  # (Python 3.14 subscripts by BINARY_OP)
        return key.argval
    key = op(at - 1, "LOAD_CONST")
    if key is not None and isinstance(key.argval, str) and op(at + 1, "CONTAINS_OP"):
        return key.argval
    key = op(at + 2, "LOAD_CONST")
    if not (op(at + 1, "LOAD_METHOD", "LOAD_ATTR") and ops[at + 1].argval == "get" and key is not None
            and isinstance(key.argval, str)):
        return None
    call = op(at + 3, "CALL")
    if call is not None and call.arg == 1:
        return key.argval
    default = op(at + 3, "LOAD_CONST", "LOAD_FAST", "LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "BUILD_MAP", "BUILD_LIST")
    simple = default is not None and (default.opname.startswith("LOAD_") or default.arg == 0)  # (a name, `{}`, `[]`)
    call = op(at + 4, "CALL")
    return key.argval if simple and call is not None and call.arg == 2 else None


_NO_CODE = (str, bytes, int, float, complex, bool, type(None))  # values that cannot hold code


def unfollowed_code(codes: _Walk, skip: Callable[[Any], bool] = lambda value: False, limit: int = 100_000,
                    files: set[str] | None = None) -> bool:
    """Whether the code `uses` walked (`codes`) reads a value that holds user code `uses` does not walk, so a caller
    reading that code's bytecode (global_keys) does not see all it runs: an instance of a user class (`HELP.n()`:
    its methods), or, inside a container or an object (`STEPS = {"n": n}` called as `STEPS["n"]()`, a class's `FS =
    [n]`, a namespace, a defaultdict's factory, an object's `__dict__`, what a library object without one holds:
    _holdings), a user function, method or class. Values of globals, of attributes
    the code names of user modules and classes, and of its closures are looked into; `skip`: objects the caller
    knows hold none (Snakemake's `rules`). True too past `limit` values (a caller keys all), plain scalars not
    counted (`BIG = list(range(100_000))` is data, no reason to key all). Code `uses` did walk
    (_held_code: a function in a dict, an instance's methods) is seen: only what it could not follow counts (code
    held in a library object, or past its bounds). `files`, if given, receives the files that unwalked code was
    compiled from (past `limit`: those of all the walked code), which a caller keys whole by their text since it
    cannot key that code by itself; the whole walk is then done rather than stopping at the first."""
    walked = {id(c) for c, _, _ in codes}
    unfollowed = False
    for code, globs, cells in codes:
        names = set(_names(code))
        todo = [(globs[n], False) for n in names if n in globs] + [(v, False) for v in cells.values()]
        seen: set[int] = set()
        while todo:
            value, inside = todo.pop()
            if id(value) in seen or skip(value):
                continue
            seen.add(id(value))
            if len(seen) > limit:
                if files is not None:
                    files.update(c.co_filename for c, _, _ in codes if _user_code(c))
                return True
            if _user_instance(value) and _unwalked(type(value), walked) \
                    or inside and _is_user_code(value) and _unwalked(value, walked):
                if files is None:
                    return True
                unfollowed = True
                files.update(_code_files(type(value) if _user_instance(value) else value))
            todo += [(v, True) for v in _held(value) if not isinstance(v, _NO_CODE)]  # (data holds no code)
            if isinstance(value, types.ModuleType) and _user_module(value) or isinstance(value, type):
                todo += [(v, False) for n in names if (v := _static(value, n)) is not None]
    return unfollowed


def unfollowed_texts(codes: _Walk, skip: Callable[[Any], bool] = lambda value: False) -> dict[str, str]:
    """{"unfollowed:" + n: digest of the text} of each file holding user code the walked `codes` may run that `uses`
    could not walk, so not key by itself (unfollowed_code: a function kept in a library object's own state, a
    `queue.Queue`'s deque, that the code calls through): the whole file is keyed, so editing that code re-runs the
    step (as would editing anything else in that file: the safe side). By content, not path (a checkout moved keys
    alike). `skip`: objects the caller knows hold none (unfollowed_code)."""
    files: set[str] = set()
    if not unfollowed_code(codes, skip, files=files):
        return {}
    texts: list[str] = []
    for path in files:
        try:
            with open(path, "rb") as f:
                texts.append(base32.encode(hashlib.sha256(f.read()).digest()))
        except OSError:  # (code compiled from no file: `<string>`; its text cannot be read, its bytecode was seen)
            texts.append("unreadable:" + os.path.basename(path))
    return {f"unfollowed:{n}": t for n, t in enumerate(sorted(texts))}


def _code_files(value: Any) -> set[str]:
    """The files a user function's or class's code was compiled from (a class's: its methods', or its module's)."""
    if isinstance(value, type):
        found = {f.__code__.co_filename for f in _members(value) if _user_code(f.__code__)}
        module = sys.modules.get(value.__module__ or "")
        file = getattr(module, "__file__", None) if module is not None else None
        return found | ({file} if isinstance(file, str) else set())
    function = _function(getattr(value, "__func__", value))
    return {function.__code__.co_filename} if function is not None else set()


def _unwalked(value: Any, walked: set[int]) -> bool:
    """Whether a user function (method, partial of one) or class has code (a class: a method) `uses` did not walk
    (`walked`: the ids of the code objects it walked)."""
    if isinstance(value, type):
        return any(_user_code(f.__code__) and id(f.__code__) not in walked for f in _members(value))
    function = _function(getattr(value, "__func__", value))
    return function is None or id(function.__code__) not in walked


def _is_user_code(value: Any) -> bool:
    """Whether a value is a user function, method, partial of one, or user class."""
    if isinstance(value, type):
        return _user_class(value)
    function = _function(getattr(value, "__func__", value))
    return function is not None and _user_code(function.__code__)


def _user_instance(value: Any) -> bool:
    """Whether a value is an instance of a user class (not a class, function or module itself)."""
    return not isinstance(value, type | types.FunctionType | types.ModuleType) and _user_type(type(value))


@functools.cache
def _user_type(cls: type) -> bool:
    try:
        return _user_class(cls)
    except Exception:  # noqa: BLE001 - an odd class (a proxy): taken as the user's, the safe side
        return True


def _held(value: Any) -> list[Any]:
    """The values inside a container or an object's attributes (a defaultdict's factory too)."""
    if isinstance(value, dict):
        return [*value.keys(), *value.values(), getattr(value, "default_factory", None)]
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    if isinstance(value, functools.partial):
        return [*value.args, *value.keywords.values()]
    if isinstance(value, types.FunctionType):  # (its defaults, `def run(steps=STEPS)`, and attributes)
        return [*(value.__defaults__ or ()), *(value.__kwdefaults__ or {}).values(),
                *(v for n, v in vars(value).items() if not n.startswith("__"))]
    if isinstance(value, type | types.ModuleType):
        return []
    state = getattr(value, "__dict__", None) if not isinstance(value, weakref.ref) else None
    return list(state.values()) if isinstance(state, dict) else _holdings(value)


def _function_attributes(value: Any) -> list[Any]:
    """The values a function (or the wrapper a decorator returned) keeps as attributes and no plain digest holds:
    `@functools.singledispatch` keeps the functions registered for each type in its `registry` (a
    MappingProxyType), which its call runs. (Not `__wrapped__` and the other names a wrapper copies: the function
    it wraps is keyed as itself.)"""
    state = getattr(value, "__dict__", None) if isinstance(value, types.FunctionType) else None
    if not isinstance(state, dict):
        return []
    return [v for n, v in state.items() if not n.startswith("__") and _value_digest(v) is None]


def _static(owner: Any, name: str) -> Any:
    """An attribute of a module or class (along its MRO) as stored, without running a descriptor, or None."""
    for space in getattr(owner, "__mro__", (owner,)):
        state = getattr(space, "__dict__", {})
        if name in state:
            return state[name]
    return None


def unseen_templates(function: Any, formatter: Callable[[str, Any], bool]) -> bool:
    """Whether a function's code (or the code nested in it) calls a formatter that reads its caller's names
    (`formatter(name, module-level value)`: Snakemake's shell()) with a template that is not text the code holds: a
    string constant, a local set only to string constants, a module-level string (`CMD`, `lib.CMD`) or a constant
    key of a module-level container (`config["cmd"]`). Any other template (`shell(open(t).read())`, a computed
    one) may name any of the caller's locals (`{resources.mem_mb}`, `{threads}`): a caller keys all of them. Also
    True when the formatter is used other than by a direct call, or code positions are missing."""
    code = getattr(_function(function), "__code__", None)
    if not isinstance(code, types.CodeType):
        return True
    return code_unseen_templates(code, getattr(_function(function), "__globals__", {}), formatter)


def code_unseen_templates(code: types.CodeType, globs: dict[str, Any], formatter: Callable[[str, Any], bool]
                          ) -> bool:
    """unseen_templates of a code object (and the code nested in it) that looks names up in `globs`: a helper
    `uses` walked, which a caller checks as it checks its own function."""
    import dis

    stack = [code]
    while stack:
        c = stack.pop()
        stack += [k for k in c.co_consts if isinstance(k, types.CodeType)]
        ops = [i for i in dis.get_instructions(c) if i.opname not in ("CACHE", "EXTENDED_ARG", "PUSH_NULL", "PRECALL",
                                                                        "KW_NAMES")]
        constant = {o.argval for o in ops if o.opname in _STORES | {"STORE_GLOBAL"}} - {
            o.argval for n, o in enumerate(ops) if o.opname in _STORES | {"STORE_GLOBAL"}
            and not (n and ops[n - 1].opname == "LOAD_CONST" and isinstance(ops[n - 1].argval, str))}
        for i, ins in enumerate(ops):
            if ins.opname not in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_ATTR", "LOAD_METHOD", "LOAD_DEREF") \
                    or not isinstance(ins.argval, str) or not formatter(ins.argval, globs.get(ins.argval)):
                continue
            start = _start(ins)
            end = next((k for k in range(i + 1, len(ops)) if ops[k].opname in _CALLS and _start(ops[k]) == start),
                       None)
            if start is None or end is None:
                return True
            arguments = ops[i + 1:end]
            if not arguments:
                continue
            if arguments[0].opname in ("LOAD_ATTR", "LOAD_METHOD") and _start(arguments[0]) == start:
                continue  # (an attribute of it: `shell.executable("bash")` formats nothing)
            first = _start(arguments[0])
            if first is None or first < (ins.positions.end_lineno, ins.positions.end_col_offset):
                return True
            last = max(_span(o)[1] for o in arguments if _start(o) == first)
            template = [o for o in arguments if _inside(_span(o), (first, last))]
            if not _held_text(template, constant, globs):
                return True
    return False


def _held_text(ops: list[Any], constant: set[str], globs: dict[str, Any]) -> bool:
    """Whether the instructions that compute a template give text the code holds (see unseen_templates)."""
    kinds = [o.opname for o in ops]
    if kinds == ["LOAD_CONST"]:
        return isinstance(ops[0].argval, str)
    if len(ops) == 1 and kinds[0] in _LOADS and (ops[0].argval in constant or kinds[0] != "LOAD_NAME"):
        return ops[0].argval in constant
    if not ops or kinds[0] not in ("LOAD_GLOBAL", "LOAD_NAME") or ops[0].argval not in globs:
        return False
    value = globs[ops[0].argval]
    if kinds == ["LOAD_GLOBAL"] or kinds == ["LOAD_NAME"]:
        return isinstance(value, str)
    if kinds[1:] == ["LOAD_ATTR"] and isinstance(value, types.ModuleType) and _user_module(value):
        return isinstance(getattr(value, ops[1].argval, None), str)
    if kinds[1:] == ["LOAD_CONST", "BINARY_SUBSCR"] and isinstance(value, (dict, list, tuple)):
        try:
            return isinstance(value[ops[1].argval], str)
        except (KeyError, IndexError, TypeError):
            return False
    return False


def ordered_strings(functions: Iterable[Any], joined: bool = True) -> list[str]:
    """The string constants of the functions' code (and the code nested in it) in the order each code object
    holds them, which is the order they are first written in: `[sys.executable, "-m", "pkg.tool"]` keeps "-m"
    right before the module it names (codefiles.run_modules); with the paths runs of them build (_joined) unless
    not `joined` (an argument list read as a command: makefiles.of_code)."""
    found: list[str] = []
    for f in functions:
        code = getattr(f, "__code__", None)
        if isinstance(code, types.CodeType):
            found += _strings(code, joined)
    return found


def _global_strings(names: Iterable[str], globs: dict[str, Any]) -> list[str]:
    """The module-level strings (or tuples, lists, sets of strings) the names refer to: a variable or section name
    the code reads through a constant (`VAR = "SCALE"` read as `os.environ.get(VAR)`) rather than spelling it."""
    found: list[str] = []
    for name in dict.fromkeys(names):
        value = globs.get(name)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, (tuple, list, frozenset, set)) and len(value) <= 64:
            found += sorted(v for v in value if isinstance(v, str))
    return found


_WRITE_MODE = re.compile(r"[rbt]*[wax][rbt+]*\Z")  # open()'s modes that write: "w", "a", "wb", "x", "a+" (not "r+")
_WRITING_METHODS = frozenset({"write_text", "write_bytes", "touch", "mkdir", "unlink"})  # Path("x").write_text(...)
_WRITERS = frozenset({"to_csv", "to_parquet", "to_feather", "to_hdf", "to_excel", "to_pickle", "to_json",
                      "to_netcdf", "to_zarr", "savefig", "save", "savez", "savez_compressed", "savetxt", "to_file",
                      "dump", "save_pretrained", "save_model", "write_csv", "write_parquet", "write_json", "imwrite",
                      "imsave", "export", "FileHandler", "RotatingFileHandler", "basicConfig", "execute_notebook"})
# (writers whose first argument is read: papermill's execute_notebook(input_path, output_path, ...))
_READS_FIRST = frozenset({"execute_notebook"})
# (df.to_csv("x.csv"), np.save("x"); torch.save(model, "ckpt.pt"), joblib.dump(m, "m.pkl"), cv2.imwrite("a.png", im):
# a string argument of such a call at any position, also inside these calls that only build a path)
# (not `with_suffix`: `Path(src).with_suffix(".parquet")` writes a file beside `src`, which it may well read)
_PATH_BUILDERS = frozenset({"join", "Path", "PurePath", "PosixPath", "str", "fspath", "abspath", "expanduser",
                            "format", "joinpath"})
_PATH_METHODS = _WRITING_METHODS | {"open"}
_STORES = frozenset({"STORE_FAST", "STORE_NAME", "STORE_DEREF"})
_LOADS = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_NAME", "LOAD_DEREF"})
_CALLS = frozenset({"CALL", "CALL_KW"})  # (a call with keywords is CALL_KW from Python 3.13)
_CALLING = frozenset({"PRECALL", "CALL", "CALL_KW", "CALL_FUNCTION", "CALL_METHOD", "KW_NAMES", "CACHE"})


def written_strings(code: types.CodeType, globs: dict[str, Any] | None = None) -> set[str]:
    """The paths a code object (and the code nested in it) writes rather than reads, by the usual spellings: a
    string given to `open()` with a writing mode (`open("runs.log", "a")`, `Path("x").open("w")`), to a Path's
    write_text/touch, or to a writer (`df.to_csv("out.csv")`, `np.save(...)`, `logging.FileHandler("x.log")`),
    as a constant, a module-level string (`LOG = "runs.log"`) or a local name set to one (`out = "x.json"`; `with
    open(out, "w")`, the usual spelling). A heuristic: a data file the step appends to is then not keyed by
    content (which would change at every run and make the step never hit)."""
    import dis  # (only for code that names a data path: codefiles.data_words)

    found: set[str] = set()
    reads: set[str] = set()  # (what a writer reads: papermill's input notebook)
    stack = [code]
    while stack:
        c = stack.pop()
        stack += [k for k in c.co_consts if isinstance(k, types.CodeType)]
        ops = [i for i in dis.get_instructions(c) if i.opname not in ("CACHE", "PUSH_NULL", "PRECALL_NOP")]
        arguments, placed, read = _writer_arguments(ops)
        assigned: dict[str, str] = {}  # a local name (a script's global) set to a string: `out = "x.json"`
        for n, ins in enumerate(ops):
            if ins.opname == "LOAD_CONST" and isinstance(ins.argval, str) and n + 1 < len(ops) \
                    and ops[n + 1].opname in _STORES:
                assigned[ops[n + 1].argval] = ins.argval
            value = ins.argval if ins.opname == "LOAD_CONST" else globs.get(ins.argval) \
                if globs is not None and ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") else None
            if value is None and ins.opname in _LOADS:
                value = assigned.get(ins.argval)
            if not isinstance(value, str) or not value:
                continue
            if n in read:
                reads.add(value)
            before = ops[n - 1] if n else None
            if n in arguments or (before is not None and before.argval in _WRITERS and n - 1 not in placed
                                  and before.argval not in _READS_FIRST
                                  and before.opname in ("LOAD_METHOD", "LOAD_ATTR", "LOAD_GLOBAL", "LOAD_NAME")):
                found.add(value)
                continue
            if _written_after(ops[n + 1:n + 8]):
                found.add(value)
        for run in _const_runs(ops):  # a path built of constants (`OUT / "runs" / "x.csv"`) written as a whole
            end = run[-1] + 1
            while end < len(ops) and ops[end].opname == "BINARY_OP" and ops[end].argrepr == "/":
                end += 1
            values = [ops[i].argval for i in run]
            after = [i for i in ops[end:end + 9] if i.opname not in _CALLING or i.opname == "KW_NAMES"]
            if any(v in found for v in values) or _written_after(ops[end:end + 7]) or _mode_next(after, c.co_consts):
                found.update(_joins(values))
    return found - reads


def _mode_next(after: list[Any], consts: tuple[Any, ...]) -> bool:
    """A writing mode given right after a call that built the path (`open(os.path.join(D, "r", "m.csv"), "a")`),
    positional or as `mode=`, not another keyword's value (`sep="a"`). The keyword names: Python 3.11's KW_NAMES
    (an index into `consts`), 3.12's constant tuple before CALL_KW."""
    if not after or after[0].opname != "LOAD_CONST" or not isinstance(after[0].argval, str) \
            or not _WRITE_MODE.match(after[0].argval):
        return False
    names: Any = None
    if len(after) > 1 and after[1].opname == "KW_NAMES":
        names = consts[after[1].arg] if isinstance(after[1].arg, int) and after[1].arg < len(consts) else ()
    elif len(after) > 1 and after[1].opname == "LOAD_CONST" and isinstance(after[1].argval, tuple):
        names = after[1].argval
    return names is None or (isinstance(names, tuple) and names[-1:] == ("mode",))


def _written_after(after: list[Any]) -> bool:
    """Whether the instructions after a path's say it is written: a writing mode given with it (`open(p, "w")`), or a
    Path method that writes (`.write_text`, `.touch`, `.open("a")`)."""
    if after and after[0].opname == "LOAD_CONST" and isinstance(after[0].argval, str) \
            and _WRITE_MODE.match(after[0].argval):
        return True
    rest = [i for i in after if i.opname not in _CALLING]
    if not (rest and rest[0].opname in ("LOAD_METHOD", "LOAD_ATTR") and rest[0].argval in _PATH_METHODS):
        return False
    mode = rest[1] if len(rest) > 1 else None
    return rest[0].argval != "open" or (mode is not None and mode.opname == "LOAD_CONST"
                                        and isinstance(mode.argval, str) and bool(_WRITE_MODE.match(mode.argval)))


def _writer_arguments(ops: list[Any]) -> tuple[set[int], set[int], set[int]]:
    """(The indices of the instructions that load an argument of a call to a writer (`_WRITERS`), at any position
    (`torch.save(model.state_dict(), "ckpt.pt")`), or inside a call that only builds the path (`joblib.dump(m,
    os.path.join(OUT, "m.pkl"))`), but not inside another call (`np.save("a.npy", np.loadtxt("in.csv"))` reads
    in.csv), nor a path it derives the written one from (`df.to_csv(src + ".bak")`, `f"{src}.out"`: the left
    operand of an operator, the values of an f-string: `src` may be the file the code reads). Found by the source
    positions each instruction carries: a call's CALL spans from where its callee's expression starts to its closing
    parenthesis, an operator's from its left operand's start (its right operand's last instruction spans that one).
    And the indices of the writers whose call was so found: for the others (code without column positions), only
    the argument right after the writer's name counts (written_strings). And those of the first argument of a writer
    that reads it (_READS_FIRST: `execute_notebook("nb.ipynb", "nb.ipynb")` run in place reads it too).)"""
    found: set[int] = set()
    placed: set[int] = set()
    read: set[int] = set()
    for i, ins in enumerate(ops):
        if ins.argval not in _WRITERS or ins.opname not in ("LOAD_METHOD", "LOAD_ATTR", "LOAD_GLOBAL", "LOAD_NAME"):
            continue
        start = _start(ins)
        end = next((k for k in range(i + 1, len(ops)) if ops[k].opname in _CALLS and _start(ops[k]) == start), None)
        if start is None or end is None:
            continue
        placed.add(i)
        first = _start(ops[i + 1]) if ins.argval in _READS_FIRST and i + 1 < end else None
        if first is not None:  # (its first argument, to its last instruction starting where it starts, is read)
            nested_first = (first, max(_span(ops[k])[1] for k in range(i + 1, end) if _start(ops[k]) == first))
            read.update(k for k in range(i + 1, end) if _inside(_span(ops[k]), nested_first))
        else:
            nested_first = None
        nested = [_span(ops[k]) for k in range(i + 1, end) if ops[k].opname == "BUILD_STRING"
                  or (ops[k].opname in _CALLS and _callee(ops, i + 1, k) not in _PATH_BUILDERS)]
        nested += [(_span(ops[k])[0], _span(ops[k - 1])[0]) for k in range(i + 2, end) if ops[k].opname == "BINARY_OP"]
        nested += [nested_first] if nested_first is not None else []
        found.update(k for k in range(i + 1, end) if ops[k].opname in ("LOAD_CONST", *_LOADS, "LOAD_GLOBAL")
                     and not any(_inside(_span(ops[k]), outer) for outer in nested))
    return found, placed, read


def _start(ins: Any) -> tuple[int, int] | None:
    p = ins.positions
    return None if p is None or p.lineno is None or p.col_offset is None else (p.lineno, p.col_offset)


def _span(ins: Any) -> tuple[Any, Any]:
    p = ins.positions
    return ((p.lineno, p.col_offset), (p.end_lineno, p.end_col_offset)) if p is not None else ((None, None),) * 2


def _inside(inner: tuple[Any, Any], outer: tuple[Any, Any]) -> bool:
    return None not in (*inner[0], *inner[1], *outer[0], *outer[1]) and outer[0] <= inner[0] and inner[1] <= outer[1]


def _callee(ops: list[Any], first: int, call: int) -> Any:
    """The name of the function a CALL at `call` calls: the last name loaded from where its span starts."""
    start = _start(ops[call])
    names = [ops[k].argval for k in range(first, call) if _start(ops[k]) == start
             and ops[k].opname in ("LOAD_METHOD", "LOAD_ATTR", "LOAD_GLOBAL", "LOAD_NAME")]
    return names[-1] if names else None


def _strings(code: types.CodeType, joined: bool = True) -> list[str]:
    """The string constants of a code object and of the code nested in it (not in tuples: docstrings and
    names are strings too, but only a path is looked at by its user)."""
    found: list[str] = []
    stack = [code]
    while stack:
        c = stack.pop()
        for k in c.co_consts:
            if isinstance(k, str):
                found.append(k)
            elif isinstance(k, types.CodeType):
                stack.append(k)
            elif isinstance(k, tuple):  # a constant list of arguments: ("Rscript", "plot.R")
                found += [v for v in k if isinstance(v, str)]
        found += _joined(c) if joined else []
    return found


def _joined(code: types.CodeType) -> list[str]:
    """The paths a code object builds from consecutive string constants, as `HERE / "data" / "a.txt"`,
    `os.path.join(HERE, "data", "b.txt")` or `.joinpath("data", "c.txt")` do: "data/a.txt" (and each shorter
    tail of two parts or more), for a caller looking for the data files code reads beside it. Two constants
    that only stand together (a list) give a path that names no file: looked for, never found."""
    if sum(isinstance(k, str) for k in code.co_consts) < 2:
        return []
    import dis

    ops = [i for i in dis.get_instructions(code) if i.opname not in ("CACHE", "EXTENDED_ARG")]
    return [j for run in _const_runs(ops) for j in _joins([ops[i].argval for i in run])]


def _const_runs(ops: list[Any]) -> list[list[int]]:
    """The indices of each run of two or more one-line string constants loaded one after another, or joined by `/`
    (`HERE / "data" / "a.txt"`; the arguments of `os.path.join(HERE, "data", "b.txt")`)."""
    runs: list[list[int]] = []
    run: list[int] = []
    joined = False  # (the run so far: constants joined by `/`, else loaded one after another)
    for n, ins in enumerate(ops):
        if not (ins.opname == "LOAD_CONST" and isinstance(ins.argval, str) and ins.argval and "\n" not in ins.argval):
            if not (ins.opname == "BINARY_OP" and ins.argrepr == "/"):
                runs, run = runs + [run] if len(run) > 1 else runs, []
            continue
        divided = n + 1 < len(ops) and ops[n + 1].opname == "BINARY_OP" and ops[n + 1].argrepr == "/"
        if run and (joined != divided or (not divided and run[-1] != n - 1)):  # (`open(D / "a", "w")`: "w" ends it)
            runs, run = runs + [run] if len(run) > 1 else runs, []
        if not run:
            joined = divided
        run.append(n)
    return runs + [run] if len(run) > 1 else runs


def _joins(parts: list[str]) -> list[str]:
    """"a/b/c.txt" and "b/c.txt" for the parts ["a", "b", "c.txt"] (each tail of two parts or more)."""
    parts = [p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts)]
    return ["/".join(parts[i:]) for i in range(len(parts) - 1)]


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """Where installed code lives (the standard library, site-packages, this venv's), and nixworkflow's own
    packages wherever they lie (an editable install, a checkout on PYTHONPATH): the front doors' code, which a
    user's code calls (`static("tool.sh")`), is no part of the user's code, and its per-process registries (the
    files hashed so far) would make a key depend on what else the process happened to key first."""
    paths = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= {p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))}
    for name in _OWN_PACKAGES:
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(name)
            paths.update(spec.submodule_search_locations or () if spec is not None else ())
    return tuple(os.path.realpath(p) + os.sep for p in paths if p)


@functools.cache
def _user_file(filename: str) -> bool:
    if not filename or filename.startswith("<"):
        return filename.startswith("<ipython-input") or filename == "<stdin>"  # a REPL's code is the user's own
    return not os.path.realpath(filename).startswith(_library_dirs())


def _user_code(code: types.CodeType) -> bool:
    return _user_file(code.co_filename)


def _user_module(module: types.ModuleType) -> bool:
    if (getattr(module, "__name__", None) or "").split(".")[0] in _OWN_PACKAGES:
        return False
    file = getattr(module, "__file__", None)
    if not file:  # a namespace package (a directory without __init__.py): by where it lies
        file = next(iter(getattr(module, "__path__", None) or ()), None)
    return bool(file) and _user_file(file)


def _user_class(cls: type) -> bool:
    """A class of the user's code: one of its functions was compiled from user code, or its module is the user's.
    (An enum or a dataclass of the user's has only functions its library wrote, `Enum.__new__` or a generated
    `__init__`: it is the user's by its module, or by having none: defined by code run without a module name, as a
    Snakefile is.)"""
    if (cls.__module__ or "").split(".")[0] in _OWN_PACKAGES:
        return False
    if cls.__module__ is None or any(_user_code(f.__code__) for f in functions_in(cls)):
        return True
    module = sys.modules.get(cls.__module__ or "")
    return module is not None and _user_module(module)


def _value_digest(value: Any, home: str | None = None, relocate: Callable[[Any], Any] | None = None) -> str | None:
    """The digest of a plain value's canonical JSON; None for anything else or anything too large. `home`: the
    directory of the module that defines the value, which stands as `@{module}` in it (`DATA = Path(__file__).parent
    / "data"` keys alike in every checkout; the value relative to its module is what the code depends on).
    `relocate`: applied to the value's plain form first (uses)."""
    if isinstance(value, str | list | tuple | dict | set | frozenset) and len(value) > MAX_VALUE:
        return None  # (without encoding it first)
    try:
        plain = _plain(value)
        text = canonical_json(relocate(plain) if relocate is not None else plain)
    except (TypeError, ValueError, RecursionError):
        return None
    if "/store/" in text:  # a store object's path (a static() copy) is its content: keyed alike under every root
        text = _OBJECT_PATH.sub(r"@{store}/\1", text)
    if home is not None and home in text:
        text = re.sub(re.escape(home) + r'(?=[/"])', "@{module}", text)
    return digest(text) if len(text) <= MAX_VALUE else None


_OBJECT_PATH = re.compile(r'(?:[^"\s]*?)/store/([0-9a-df-np-sv-z]{52})(?![0-9a-z])')


def _home(globs: dict[str, Any]) -> str | None:
    """The directory of the module whose globals these are, as it appears in JSON text (None: no file, or `/`)."""
    file = globs.get("__file__")
    if not isinstance(file, str) or not file:
        return None
    home = os.path.dirname(os.path.abspath(file))
    return json.dumps(home)[1:-1] if home != "/" else None


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    scalar = _scalar(value)
    if scalar is not None:
        return scalar
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(canonical_json(_plain(v)) for v in value)
    if isinstance(value, types.SimpleNamespace | argparse.Namespace):  # `CFG = SimpleNamespace(threshold=0.5)`
        return {"namespace": _plain(vars(value))}
    if isinstance(value, configparser.RawConfigParser):  # `CONFIG.read("settings.ini")` at import: its values
        return {"ini": {name: dict(value.items(name, raw=True)) for name in value.sections()},
                "defaults": dict(value.defaults())}
    raise TypeError(type(value).__name__)


def _scalar(value: Any) -> dict[str, Any] | None:
    """A module-level constant of a common immutable type, by its exact value (None for any other type): a
    compiled regex (`PATTERN = re.compile(r"\\d+")`), a date, a Path, a Decimal, bytes, an enum member. Code
    reading them computes with them as with a number: editing one must re-run the steps that use it."""
    if isinstance(value, enum.Enum):
        return {"enum": qualified(type(value)), "name": value.name, "value": _plain(value.value)}
    if isinstance(value, re.Pattern):
        return {"regex": _plain(value.pattern), "flags": int(value.flags)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, datetime.date | datetime.time):
        zone = getattr(value, "tzinfo", None)  # (a date has none)
        return {type(value).__name__: value.isoformat(), "tz": repr(zone) if zone is not None else None}
    if isinstance(value, datetime.timedelta | decimal.Decimal | fractions.Fraction | PurePath | complex):
        return {type(value).__name__: str(value)}
    return None


# What nixlib.pydata walks with: the same names, code and classes, for the data they denote.
names, strings, function, members = _names, _strings, _function, _members
user_code, user_module, user_class, value_digest, home = _user_code, _user_module, _user_class, _value_digest, _home
