"""The data a Python step's code reads at run time beyond its code, and the modules it imports inside it.

nixlib.pycode keys the module-level *code* a step uses and plain values up to a size; what it leaves out can
change a result just as much. A Snakemake `run:` block reading `samples.loc[wildcards.s, "condition"]` from a
sample sheet loaded at the top of the Snakefile (`samples = pd.read_csv(...)`), a dict of 10,000 samples, an
instance of a class of the Snakefile (`scaler = Scaler(2)`), a helper module imported inside the block
(`import helpers`), a project script it formats into a `shell()` call: editing any of them must re-run the
step. `data_values` walks the same names pycode walks and returns those values, each rendered by the caller
(its canonical form: all of a table's values, never its elided repr); `imported` names what the code imports.
"""

from __future__ import annotations

import dis
import functools
import math
import os
import re
import string
import sys
from collections.abc import Callable, Mapping
from pathlib import PurePath
from types import CodeType, ModuleType
from typing import Any

from nixlib import codefiles, pycode


def data_values(function: Any, render: Callable[[Any], Any], strings: set[str] | None = None,
                imports: set[str] | None = None, stop: Callable[[type], bool] = lambda c: False,
                modules: set[str] | None = None, held: set[type] | None = None) -> dict[str, Any]:
    """{module.name: value} of the module-level data `function` and the user code it calls read that
    nixlib.pycode leaves out of a digest: a pandas table or numpy array (`samples = pd.read_csv(...)` read as
    `samples.loc[wildcards.s, "cond"]` in a `run:` block), a container too large to be code (a dict of 10,000
    samples), an instance of a class of the Snakefile (`scaler = Scaler(2)` used as `scaler.apply(x)`: its
    class's code and its attributes). The run block's result depends on them as on a param: an edited sample
    sheet must re-run it. Each is rendered by `render` (the front door's canonical form: all of a table's
    values); other objects (a logger, a lock) stay out, as before, and so does a value known only by its
    address (it would never key the same twice).
    `strings`, if given, receives the module-level strings that code reads (`SCRIPT = "scripts/clean.py"` run as
    `shell("python {SCRIPT} ...")`): paths of code files it may run; `imports` the modules it imports (top-level
    names); `modules` the same by full name, relative imports resolved (imported_modules). A class
    `stop` accepts (an upstream Luigi task, keyed by its result) is not walked into, as in pycode.uses.
    `held`, if given, receives such classes the code imports by name inside it (`from pipeline import Raw` in a
    Luigi task's `requires()`, the usual way around a circular import): the caller keys each of them (by result, or
    by code), so such an import does not list its module in `imports` or `modules`; so does `import pipeline` whose
    every use there is `pipeline.Raw` with Raw such a class. Listed, the whole module file was keyed, and editing any
    other task in it re-ran this one and everything after it (_unheld)."""
    found: dict[str, Any] = {}
    todo = [(function.__code__, function.__globals__)] if hasattr(function, "__code__") else []
    walked: set[tuple[int, int]] = set()
    while todo:
        code, globs = todo.pop()
        if (id(code), id(globs)) not in walked:
            walked.add((id(code), id(globs)))
            todo += _data_in(code, globs, found, strings if strings is not None else set(), render, stop)
            package = globs.get("__package__")
            keep = _all_imports if held is None else functools.partial(_unheld, package=package, stop=stop,
                                                                         held=held)
            if imports is not None:
                imports.update(imported(code, keep))
            if modules is not None:
                modules.update(imported_modules(code, package, keep))
    return dict(sorted(found.items()))


def _data_in(code: Any, globs: dict[str, Any], found: dict[str, Any], strings: set[str],
             render: Callable[[Any], Any], stop: Callable[[type], bool]) -> list[tuple[Any, dict[str, Any]]]:
    """Add to `found` the data the names of `code` denote in `globs` (to `strings` the strings among them);
    return the user code to walk next."""
    more: list[tuple[Any, dict[str, Any]]] = []
    named = pycode.names(code)
    formatted = set(format_names(code)).difference(named)  # used only as `{NAME}`: pycode.uses never sees it
    for name in dict.fromkeys([*named, *formatted]):
        if name not in globs:
            continue
        value, key = globs[name], f"{pycode.module_name(globs.get('__name__', '?'))}.{name}"
        if isinstance(value, ModuleType):
            if pycode.user_module(value):  # `utils.SHEET`: the names this code uses, looked up in utils
                more.append((code, vars(value)))
        elif isinstance(value, type):
            if pycode.user_class(value) and not stop(value):
                more += [(f.__code__, f.__globals__) for f in pycode.members(value) if pycode.user_code(f.__code__)]
        elif (inner := pycode.function(value) if callable(value) else None) is not None:
            if pycode.user_code(inner.__code__):
                more.append((inner.__code__, inner.__globals__))
        elif is_data(value):
            rendered = render(value)
            if " at 0x" not in repr(rendered):
                found[key] = rendered
        elif isinstance(value, str | PurePath | int | float | list | tuple | dict | set | frozenset) or value is None:
            strings.update(codefiles.strings_in(value))  # a plain value pycode keys (`Path("t.tsv")`): its paths,
            if name in formatted:  # unless only a format field names it (`shell("tool {OPTS} ...")`)
                found[key] = render(value)
        elif pycode.user_class(type(value)) and not stop(type(value)):  # an instance: class code, stable state
            state = render(pycode.instance_state(value))
            found[key] = {"class": pycode.class_digest(type(value)),
                          **({"state": state} if " at 0x" not in repr(state) else {})}
            more += [(f.__code__, f.__globals__) for f in pycode.members(type(value))
                     if pycode.user_code(f.__code__)]
    return more


ImportFilter = Callable[[str, int, tuple[Any, ...], tuple[str, ...] | None], bool]


def _all_imports(name: str, level: int, fromlist: tuple[Any, ...], attrs: tuple[str, ...] | None) -> bool:
    return True


def _unheld(name: str, level: int, fromlist: tuple[Any, ...], attrs: tuple[str, ...] | None, package: str | None,
            stop: Callable[[type], bool], held: set[type]) -> bool:
    """False (and the classes added to `held`) for `from m import A, B`, or `import m` whose every use in that code is
    `m.A` or `m.B` (`attrs`), where m is imported already and each name is a user class `stop` accepts (a Luigi task
    or Config class, which the caller keys itself); else True. A module not imported yet (an import inside a run()
    that has not run) cannot be looked into: its file stays keyed."""
    names = fromlist or attrs or ()
    full = codefiles.absolute_module(name, level, package)
    module = sys.modules.get(full) if full else None
    if module is None or not names or "*" in names:
        return True
    found = [getattr(module, a, None) for a in names]
    if not all(isinstance(c, type) and pycode.user_class(c) and stop(c) for c in found):
        return True
    held.update(c for c in found if isinstance(c, type))
    return False


_FAST_NAMES = ("LOAD_FAST", "LOAD_FAST_CHECK")  # a plain read of a function's local (3.11, 3.12+)
_ATTRIBUTE = ("LOAD_ATTR", "LOAD_METHOD")  # `m.A` and `m.A()` (3.11; 3.12+ reads both as LOAD_ATTR)


def _import_sites(code: Any) -> list[tuple[str, int, tuple[Any, ...], tuple[str, ...] | None]]:
    """(module name as written, level, fromlist, attributes) of each import statement of a code object and the code
    nested in it, by its bytecode. `attributes`: for `import m` (or `import m as x`) bound to a local of a function,
    the attributes every read of that local takes (`m.A()`, `m.B`), or None when the module is used otherwise (a
    function of it called is an attribute too, but the caller looks at what each attribute is)."""
    sites = []
    stack = [code]
    while stack:
        c = stack.pop()
        instructions = list(dis.get_instructions(c))
        for i, ins in enumerate(instructions):
            if ins.opname != "IMPORT_NAME":
                continue
            level = instructions[i - 2].argval if i >= 2 and instructions[i - 2].opname == "LOAD_CONST" else 0
            fromlist = instructions[i - 1].argval if i >= 1 and instructions[i - 1].opname == "LOAD_CONST" else None
            fromlist = tuple(fromlist) if isinstance(fromlist, tuple) else ()
            attrs = _attributes_used(instructions, i) if not fromlist and "." not in str(ins.argval) else None
            sites.append((str(ins.argval), level if isinstance(level, int) else 0, fromlist, attrs))
        stack += [k for k in c.co_consts if isinstance(k, CodeType)]
    return sites


def _attributes_used(instructions: list[dis.Instruction], at: int) -> tuple[str, ...] | None:
    """The attributes taken of the local that the `import m` at `at` binds, if every other mention of that local in
    the code object is a plain read followed by an attribute (`m.A`); else None (passed on, rebound, a closure's)."""
    if at + 1 >= len(instructions) or instructions[at + 1].opname != "STORE_FAST":
        return None
    local, store = instructions[at + 1].argval, at + 1
    attrs: list[str] = []
    for j, ins in enumerate(instructions):
        if j == store or "FAST" not in ins.opname:
            continue
        mentioned = ins.argval == local or (isinstance(ins.argval, tuple) and local in ins.argval)
        if not mentioned:
            continue
        after = instructions[j + 1] if j + 1 < len(instructions) else None
        if ins.opname not in _FAST_NAMES or after is None or after.opname not in _ATTRIBUTE:
            return None
        attrs.append(str(after.argval))
    return tuple(dict.fromkeys(attrs)) or None


def imported(code: Any, keep: ImportFilter = _all_imports) -> set[str]:
    """Top-level names of the modules a code object and the code nested in it import (`import helpers`,
    `from helpers.io import f`: "helpers"), by its bytecode; only the imports `keep` accepts."""
    return {name.split(".")[0] for name, level, fromlist, attrs in _import_sites(code)
            if keep(name, level, fromlist, attrs)} - {""}


def imported_modules(code: Any, package: str | None, keep: ImportFilter = _all_imports) -> set[str]:
    """Full names of the modules a code object and the code nested in it import, by its bytecode: a relative
    import resolved against `package` (`from . import helpers` in `proj.tasks`: "proj" and "proj.helpers"), and
    for `from m import a` also "m.a" (`a` may be a submodule). A relative import without a package is left out,
    and so is one `keep` refuses."""
    names: set[str] = set()
    for written, level, fromlist, attrs in _import_sites(code):
        name = codefiles.absolute_module(written, level, package)
        if name and keep(written, level, fromlist, attrs):
            names.add(name)
            names.update(f"{name}.{a}" for a in fromlist if isinstance(a, str) and a != "*")
    return names


_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def format_names(code: Any) -> list[str]:
    """The names the `{...}` fields of the code's string constants start with: `shell("python {SCRIPT} ...")`
    formats them from the caller's globals at run time, a use no name of the bytecode shows."""
    names: list[str] = []
    for text in pycode.strings(code):
        if "{" not in text:
            continue
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(text) if field]
        except ValueError:  # not a format string
            continue
        names += [m.group() for m in map(_IDENTIFIER.match, fields) if m]
    return names


def is_data(value: Any) -> bool:
    """A value pycode cannot digest that still determines what code computes: a pandas or numpy object, or a
    plain container beyond pycode's size limit."""
    kind = (type(value).__module__ or "").split(".")[0]
    if kind in ("pandas", "numpy"):
        return not isinstance(value, type) and not callable(value)
    return isinstance(value, str | list | tuple | dict | set | frozenset) and pycode.value_digest(value) is None


def render(value: Any, again: Callable[[Any], Any] | None = None) -> Any:
    """A value as canonical JSON-able data, by all of its values: paths as text, a float that is not finite (NaN
    from an empty sample-sheet cell, inf) tagged, containers item by item (`again` renders the items: a front
    door's own renderer, for its own types), a pandas or numpy object whole; anything else by its repr."""
    again = again or render
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(float(value))}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): again(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [again(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return whole(value, again)


def whole(value: Any, again: Callable[[Any], Any] | None = None) -> Any:
    """A pandas table, series or index, or a numpy array, by all its values, not by its repr, which elides
    the middle of a large one (an edited row must re-run); anything else by its repr."""
    again = again or render
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    try:
        if kind.startswith("pandas.") and hasattr(value, "to_frame"):  # a series or an index: a one-column table
            value = value.to_frame()
        if kind.startswith("pandas.") and hasattr(value, "columns"):
            return {kind: again(value.to_dict(orient="split"))}  # index, columns, rows: duplicates kept
        if kind.startswith("numpy.") and hasattr(value, "tolist"):
            return {kind: again(value.tolist())}
    except Exception:  # noqa: BLE001 - an unexpected shape: its repr, as for any other object
        pass
    return repr(value)


def opaque_values(function: Any, skip: Callable[[Any], bool] = lambda value: False) -> dict[str, Any]:
    """{module.name: value} of the module-level values `function` and the user code it calls read (walked as
    data_values walks) that no key holds whole: neither pycode (a plain value, a function's default or closed-over
    value) nor data_values (a table, a large container, an instance whose attributes all are such values) keys
    them by value. An instance of a class of the Snakefile holding another (`Settings(config)` keeping `self.inner
    = Inner(cfg)`), a library object (`OmegaConf.create(config)`), a default argument that is an object: what they
    hold can change (a config value they were built from) while the key does not, so a front door cannot rule out
    that the code reads what it was built from. `skip`: values the caller knows hold nothing of the kind."""
    found: dict[str, Any] = {}
    todo = [(function.__code__, function.__globals__)] if hasattr(function, "__code__") else []
    walked: set[tuple[int, int]] = set()
    while todo:
        code, globs = todo.pop()
        if (id(code), id(globs)) in walked:
            continue
        walked.add((id(code), id(globs)))
        for name in dict.fromkeys([*pycode.names(code), *format_names(code)]):
            if name not in globs or name.startswith("__"):
                continue
            value, key = globs[name], f"{pycode.module_name(globs.get('__name__', '?'))}.{name}"
            if isinstance(value, ModuleType):
                if pycode.user_module(value):
                    todo.append((code, vars(value)))
            elif isinstance(value, type):
                if pycode.user_class(value):
                    todo += [(f.__code__, f.__globals__) for f in pycode.members(value) if pycode.user_code(f.__code__)]
                    if not all(_whole(v, skip) for n, v in vars(value).items() if not n.startswith("_")
                               and not callable(v) and not isinstance(v, staticmethod | classmethod | property)):
                        found[key] = value  # (a class attribute that is an object: `class S: opts = Opts(config)`)
            elif callable(value) and (inner := pycode.function(value)) is not None:
                if pycode.user_code(inner.__code__) or isinstance(value, functools.partial):
                    todo += [(inner.__code__, inner.__globals__)] if pycode.user_code(inner.__code__) else []
                    if not all(_whole(v, skip, frozenset({id(value)})) for v in _bound(value)):
                        found[key] = value  # (`def lr(s=settings)`, a closure or partial binding an object)
            elif not _whole(value, skip):
                found[key] = value
    return dict(sorted(found.items()))


def _bound(value: Any) -> list[Any]:
    """The values a callable binds besides its code: a partial's arguments, a function's defaults and the values
    it closes over (through the decorators pycode.function follows)."""
    out: list[Any] = []
    while True:
        if isinstance(value, functools.partial):
            out += [*value.args, *value.keywords.values()]
            value = value.func
            continue
        for cell in getattr(value, "__closure__", None) or ():
            try:
                out.append(cell.cell_contents)
            except ValueError:  # an empty cell
                continue
        out += [*(getattr(value, "__defaults__", None) or ()), *(getattr(value, "__kwdefaults__", None) or {}).values()]
        inner = getattr(value, "__wrapped__", None)
        if inner is None or inner is value:
            break
        value = inner
    return [v for v in out if not (callable(v) and pycode.function(v) is not None)]


def _whole(value: Any, skip: Callable[[Any], bool], seen: frozenset[int] = frozenset()) -> bool:
    """Whether a key holds `value` by all of what it is (opaque_values): a plain value, a table, a container of
    such values, a library function or a user function binding only such values, and at the top level (`seen`
    empty: data_values renders its attributes; a nested one only by its repr) an instance of a user class whose
    attributes all are such values."""
    if value is None or isinstance(value, bool | int | float | str | bytes | ModuleType | type) or skip(value):
        return True
    if id(value) in seen:  # (a value holding itself)
        return False
    bound = seen | {id(value)}  # (what it holds is nested: an instance there is keyed by its repr or type only)
    if isinstance(value, functools.partial):
        return all(_whole(v, skip, bound) for v in _bound(value))
    function = pycode.function(value) if callable(value) else None
    if function is not None:
        return not pycode.user_code(function.__code__) or all(_whole(v, skip, bound) for v in _bound(value))
    try:
        has_state = hasattr(value, "__dict__")
    except Exception:  # noqa: BLE001 - an object whose attribute lookup raises (a proxy): not seen through
        return False
    if callable(value) and not has_state:  # a builtin function or method
        return True
    kind = (type(value).__module__ or "").split(".")[0]
    if pycode.value_digest(value) is not None or kind in ("pandas", "numpy"):
        return True
    if isinstance(value, Mapping):
        return all(_whole(k, skip, bound) and _whole(v, skip, bound) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return all(_whole(v, skip, bound) for v in value)
    if not seen and pycode.user_class(type(value)):
        return all(_whole(v, skip, bound) for v in pycode.instance_state(value).values())
    return False
