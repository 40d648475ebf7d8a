"""Paths a task's methods build from its parameters (keying.param_templates): pure AST work on the class's source,
each path a template of constant text and pieces to format with a task's values, exactly as Python would."""

from __future__ import annotations

import ast
import functools
import inspect
import os
import sys
import textwrap
import types
from pathlib import PurePath
from typing import Any

import luigi
import luigi.configuration

from nixlib import codefiles, pycode

Value = tuple[Any, ...]  # ("p", parameter, "" | "strftime" | "isoformat" | "str", strftime's argument) | ("c", text)
#                          | ("i", source, as "p", argument, loop, index): (a part of) an item of a list/tuple/
#                            interval parameter a loop or comprehension ranges over (`for name in self.names`; source
#                            a parameter, ("enumerate", source, start), ("zip", (source, ...)) or ("items"|"keys"|
#                            "values", source); loop its target's names, index where in the item unpacking puts it:
#                            `for i, (a, b) in enumerate(self.pairs)`: b is ("enumerate", "pairs", 0) at (1, 1))
#                          | ("cfg", section, option, default or None): luigi.cfg's get_config().get(...)
#                          | ("conf", Config class, parameter): a luigi.Config class's value (`Paths().root`)
#                          | ("sub", Value, Value): an item of a value (`self.files["raw"]`, `self.names[0]`)
#                          | ("m", Value, "strftime" | "isoformat" | "str", argument): one applied to an item or a
#                            config value (`self.days[0].strftime("%Y%m%d")`)
Piece = str | tuple[Any, ...]  # a constant, or ("f", Value, conversion, spec) | ("str", Value) (an operand of `+`)
#                                | ("fs", Value) (of `/`, os.path.join, Path()) | ("%", format, single, (Value, ...))
#                                | ("fmt", format, (Value, ...), ((name, Value), ...)) (str.format)
#                                | ("alt", (Template, ...)): one of several (a helper's `if`/`else`, a local assigned
#                                  in two branches); of_class keeps each alternative as a template of its own
Template = tuple[Piece, ...]

NOT_OPENED_IN = frozenset({"output", "requires", "complete", "deps", "on_success", "on_failure"})
_PATHS = frozenset({"Path", "PurePath", "PosixPath", "PurePosixPath"})
_FOLDS = {"dirname": os.path.dirname, "abspath": os.path.abspath, "realpath": os.path.realpath,
          "basename": os.path.basename}
_COPIES = frozenset({"copy", "copy2", "copyfile", "copytree", "move", "rename", "replace", "symlink", "link"})
# (shutil's and os's: what they write is args[1])
_BUDGET = 40  # names and helpers followed per template (a cycle, `x = f(x)`, ends there)
_ITEMS = 10_000  # paths one template may name for one task (its loops' items multiplied): beyond, none is keyed
_WHOLE = frozenset({"sorted", "list", "tuple", "set", "frozenset", "reversed"})  # (a loop over `sorted(self.names)`)
_WALKS = 64  # helper bodies _followed walks per class (each call that hands one the task's values walks it once)


class _Scope:
    """What the names of one function mean: its locals (each plain assignment of a name that no loop or `+=`
    assigns: one, or several to choose from), its loop variables over a parameter (`for name in self.names`, `for i,
    name in enumerate(self.names)`), the parameters a helper was called with (each an expression of the caller's
    scope), the attributes the task sets on self (`self.paths = Paths()`: _Members) and its module's globals."""

    def __init__(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, globs: dict[str, Any], params: frozenset[str],
                 self_name: str | None, bound: dict[str, tuple[ast.expr, _Scope]] | None = None, depth: int = 0,
                 members: _Members | None = None):
        self.globs, self.params, self.self_name, self.depth = globs, params, self_name, depth
        self.bound = bound or {}
        self.members = members
        stores: dict[str, list[ast.AST]] = {}
        defined: dict[str, list[ast.FunctionDef]] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                stores.setdefault(node.id, []).append(node)
            elif isinstance(node, ast.FunctionDef) and node is not fn:
                defined.setdefault(node.name, []).append(node)
        arguments = {a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs,
                                     *filter(None, (fn.args.vararg, fn.args.kwarg)))}
        self.locals: dict[str, list[ast.expr]] = {}
        # (the functions defined once in it, `def path_of(n): ...` in run(), a name nothing else assigns)
        self.nested = {name: nodes[0] for name, nodes in defined.items() if len(nodes) == 1 and name not in stores
                       and name not in arguments}
        self.loops: dict[str, tuple[Any, str, tuple[int, ...]]] = {}
        self.unknown = arguments - set(self.bound)
        assigned: dict[int, ast.expr] = {}
        iterated: dict[int, tuple[ast.expr, str, tuple[int, ...]]] = {}
        for node in ast.walk(fn):
            value = node.value if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
                node.value if isinstance(node, ast.AnnAssign) else None
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            if value is not None and isinstance(target, ast.Name):
                assigned[id(target)] = value
            if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
                unpacked = _unpacked(node.target)
                loop = ",".join(name.id for name, _ in unpacked)
                iterated.update((id(name), (node.iter, loop, index)) for name, index in unpacked)
        for name, nodes in stores.items():
            if name not in arguments and all(id(n) in assigned for n in nodes):
                values = [assigned[id(n)] for n in nodes]
                if not any(isinstance(m, ast.Name) and m.id == name for v in values for m in ast.walk(v)):
                    self.locals[name] = values  # (not `p = p + "/x"`: which value it has where is not followed)
        for name, nodes in stores.items():  # (after the locals: `names = self.names; for n in names`)
            if name not in arguments and name not in self.locals and all(id(n) in iterated for n in nodes):
                over = {self._over(*iterated[id(n)]) for n in nodes}
                if len(over) == 1 and next(iter(over))[0] is not None:
                    self.loops[name] = over.pop()
        self.unknown |= set(stores) - set(self.locals) - set(self.loops)

    def _over(self, node: ast.expr, loop: str, index: tuple[int, ...]) -> tuple[Any, str, tuple[int, ...]]:
        """A loop variable's (source, loop, index): `for i in range(len(self.names))` is the index of `for i, _ in
        enumerate(self.names)` (so `self.names[i]` is its item: _indexed)."""
        whole = _ranged(node)
        if whole is None:
            return self._iterated(node, [_BUDGET]), loop, index
        inner = self._iterated(whole, [_BUDGET])
        return (None if inner is None else ("enumerate", inner, 0)), loop, (0, *index)

    def _iterated(self, node: ast.expr, budget: list[int]) -> Any:
        """What a loop ranges over, as paths() takes its items from the task: a parameter (`self.names`,
        `self.interval.dates()`, `sorted(self.names)`, a local or a helper's argument that is one),
        `enumerate(...)`, `zip(...)`, a DictParameter's `.items()` / `.keys()` / `.values()`; else None."""
        budget[0] -= 1
        if budget[0] < 0:
            return None
        if isinstance(node, ast.Name):
            if node.id in self.bound:
                bound, outer = self.bound[node.id]
                return outer._iterated(bound, budget)
            values = self.locals.get(node.id, ())
            return self._iterated(values[0], budget) if len(values) == 1 else None
        if isinstance(node, ast.Call) and any(isinstance(a, ast.Starred) for a in node.args):
            return None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in self.locals \
                and node.func.id not in self.bound:
            name, args = node.func.id, node.args
            if name in _WHOLE and len(args) == 1 and not node.keywords:
                return self._iterated(args[0], budget)
            if name == "enumerate" and len(args) in (1, 2) and not node.keywords:
                start = args[1].value if len(args) == 2 and isinstance(args[1], ast.Constant) else 0 if \
                    len(args) == 1 else None
                inner = self._iterated(args[0], budget)
                return None if inner is None or not isinstance(start, int) else ("enumerate", inner, start)
            if name == "zip" and args and all(k.arg == "strict" for k in node.keywords):
                inner = tuple(self._iterated(a, budget) for a in args)
                return None if None in inner else ("zip", inner)
            return None
        if isinstance(node, ast.Call) and not node.args and not node.keywords \
                and isinstance(node.func, ast.Attribute) and node.func.attr in ("dates", "items", "keys", "values"):
            inner = self._iterated(node.func.value, budget)
            return inner if node.func.attr == "dates" or inner is None else (node.func.attr, inner)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == self.self_name \
                and self.self_name is not None and node.attr in self.params:
            return node.attr
        return None


def _ranged(node: ast.expr) -> ast.expr | None:
    """X of `range(len(X))` (what a loop over the indexes of X takes), else None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" \
            and len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Call) \
            and isinstance(node.args[0].func, ast.Name) and node.args[0].func.id == "len" \
            and len(node.args[0].args) == 1 and not node.args[0].keywords:
        return node.args[0].args[0]
    return None


def _unpacked(target: ast.expr, index: tuple[int, ...] = ()) -> list[tuple[ast.Name, tuple[int, ...]]]:
    """The names a loop's target assigns, each with where in the item it takes its value: `name` at (), `i, name`
    at (0,) and (1,), `i, (a, b)` at (0,), (1, 0), (1, 1); a starred or attribute target: none of its names."""
    if isinstance(target, ast.Name):
        return [(target, index)]
    if isinstance(target, ast.Tuple | ast.List) and not any(isinstance(e, ast.Starred) for e in target.elts):
        return [one for i, e in enumerate(target.elts) for one in _unpacked(e, (*index, i))]
    return []


class _Members:
    """The attributes a task's own classes set on self (`self.paths = Paths()` in __init__, `self.root =
    Paths().root`: one plain assignment in all their methods, with the scope it is made in) and its class attributes
    (`paths = Paths()`, `root = "data"`), which `self.<name>` stands for where it is not a parameter."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.assigned: dict[str, list[tuple[ast.expr, _Scope]]] = {}
        self.other: set[str] = set()
        self.mutated: set[str] = set()  # (`self.layout.root = ...`: what `self.layout` holds is changed)

    def add(self, fn: ast.AST, scope: _Scope) -> None:
        """The assignments to self's attributes in one method (any other store to one: not known)."""
        single: set[int] = set()
        for node in ast.walk(fn):
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
                node.target if isinstance(node, ast.AnnAssign) and node.value is not None else None
            if self._own(target, scope):
                single.add(id(target))
                self.assigned.setdefault(target.attr, []).append((node.value, scope))  # type: ignore[union-attr]
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load) and id(node) not in single \
                    and self._own(node, scope):
                self.other.add(node.attr)
            if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load) and self._own(node.value, scope):
                self.mutated.add(node.value.attr)  # type: ignore[attr-defined]

    @staticmethod
    def _own(node: ast.AST | None, scope: _Scope) -> bool:
        return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and scope.self_name is not None \
            and node.value.id == scope.self_name

    def of(self, name: str) -> tuple[ast.expr, _Scope] | None:
        """The expression `self.<name>` was assigned once, with its method's scope, else None."""
        if name in self.other:
            return None
        found = self.assigned.get(name, [])
        return found[0] if len(found) == 1 else None

    def static(self, name: str) -> Any:
        """The class attribute `name` if no method assigns it (a luigi.Config instance, a str, a path), else None."""
        if name in self.other or name in self.assigned:
            return None
        try:
            value = inspect.getattr_static(self.cls, name)
        except AttributeError:
            return None
        return value if isinstance(value, luigi.Config | str | PurePath) else None


def _member(node: ast.expr, scope: _Scope) -> tuple[ast.expr, _Scope] | Any | None:
    """What `self.<name>` (not a parameter) stands for: (its one assigned expression, its scope), a class attribute
    (_Members.static), else None."""
    if not isinstance(node, ast.Attribute) or not isinstance(node.value, ast.Name) or scope.members is None \
            or scope.self_name is None or node.value.id != scope.self_name or node.attr in scope.params \
            or scope.self_name in scope.locals or scope.self_name in scope.bound:
        return None
    return scope.members.of(node.attr) or scope.members.static(node.attr) or _property(node.attr, scope)


def _property(name: str, scope: _Scope) -> tuple[ast.expr, _Scope] | None:
    """What `self.<name>` stands for where it is a `@property` (or functools.cached_property) of the task whose
    getter is a project function returning one expression (`return f"data/{self.name}.csv"`): that expression, in
    the getter's scope (its self the task), else None."""
    members = scope.members
    static = inspect.getattr_static(members.cls, name, None) if members is not None and scope.depth < 3 else None
    getter = _unwrapped(static.fget if isinstance(static, property) else getattr(static, "func", None)
                        if isinstance(static, functools.cached_property) else None)
    fn = _helper_tree(getter) if isinstance(getter, types.FunctionType) else None
    returns = [r.value for r in ast.walk(fn) if isinstance(r, ast.Return) and r.value is not None] if fn else []
    if fn is None or not returns or not _plain(fn.body) or not fn.args.args:
        return None
    inner = _Scope(fn, getter.__globals__, scope.params, fn.args.args[0].arg, depth=scope.depth + 1, members=members)
    return _either(returns), inner


def _either(returns: list[ast.expr]) -> ast.expr:
    """One expression for what a function's several `return`s may give (`if self.archived: return "archive"`,
    `return "current"`): `a if ... else b` chained, which _template reads as a choice of each."""
    either = returns[-1]
    for r in reversed(returns[:-1]):
        either = ast.IfExp(test=ast.Constant(value=True), body=r, orelse=either)
    return either


def of_class(cls: type, trees: tuple[ast.Module, ...], classes: list[type]) -> tuple[Template, ...]:
    """The templates of the methods of `classes` (the class and its own bases, `trees` their sources) other than
    output(), requires(), complete() and the like: the outermost expressions that build a path from constants, the
    task's parameters (`self.date`, `self.date.strftime("%Y%m%d")`, `self.date.isoformat()`, `str(self.n)`, an item
    of one a loop ranges over) and luigi.cfg values, by an f-string, `+`, `%`, `.format()`, `os.path.join`,
    `Path(...) / ...`, through locals assigned once, attributes set on self once (`self.paths = Paths()`) or in the
    class, module-level project helpers that return such a path, and the bodies of the project functions and methods
    they call with such values (`self.load(self.names)`: _followed), and that it does not write."""
    params = frozenset(name for name, _ in cls.get_params())
    found: dict[Template, None] = {}
    members = _Members(cls)
    methods: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, _Scope]] = []
    for c, tree in zip(classes, trees, strict=True):
        module = sys.modules.get(c.__module__)
        globs = vars(module) if module is not None else {}
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for fn in node.body:
                if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                first = (fn.args.posonlyargs + fn.args.args)[:1]
                scope = _Scope(fn, globs, params, first[0].arg if first else None, members=members)
                members.add(fn, scope)
                if fn.name not in NOT_OPENED_IN:
                    methods.append((fn, scope))
    walks = [_WALKS]
    for fn, scope in methods:
        try:
            _collect(fn, scope, _written_nodes(fn, scope), found, walks)
        except RecursionError:
            continue
    return tuple(found)


_READERS = frozenset({"open", "read_text", "read_bytes", "read_csv", "read_table", "read_parquet", "read_json",
                      "read_excel", "read_pickle", "read_feather", "load", "loadtxt", "genfromtxt", "safe_load"})


def unfollowed(cls: type, trees: tuple[ast.Module, ...], classes: list[type]) -> list[str]:
    """Reads in the class's methods (not output(), requires(), ...) of a path built from the task's parameters that
    of_class cannot follow (`open(self.layout.path_for(self.day))` with `self.layout` made in `__init__`, a helper of
    an installed package): `Class.method() line N: <the path expression>` each. Their files are not in the key, so
    the caller warns, naming the declaration that keys them (static(), a plain task's LocalTarget, `version`)."""
    params = frozenset(name for name, _ in cls.get_params())
    members = _Members(cls)
    methods: list[tuple[type, ast.FunctionDef | ast.AsyncFunctionDef, _Scope]] = []
    for c, tree in zip(classes, trees, strict=True):
        module = sys.modules.get(c.__module__)
        globs = vars(module) if module is not None else {}
        for node in ast.walk(tree):
            for fn in node.body if isinstance(node, ast.ClassDef) else ():
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    first = (fn.args.posonlyargs + fn.args.args)[:1]
                    scope = _Scope(fn, globs, params, first[0].arg if first else None, members=members)
                    members.add(fn, scope)
                    owner = next((k for k in cls.__mro__ if fn.name in vars(k)), None)
                    if fn.name not in NOT_OPENED_IN and owner is c:  # (not one a subclass overrides)
                        methods.append((c, fn, scope))
    out = []
    for c, fn, scope in methods:
        try:
            start = inspect.getsourcelines(c)[1] - 1  # (the tree is the class's source: its lines from 1)
        except (OSError, TypeError):
            start = 0
        written = _written_nodes(fn, scope)
        for call in ast.walk(fn):
            where = _read_path(call) if isinstance(call, ast.Call) and id(call) not in written else None
            if where is None or id(where) in written or _io(where, scope):
                continue
            try:
                pieces = _template(where, scope, [_BUDGET])
            except RecursionError:
                pieces = None
            line = f"{c.__name__}.{fn.name}() line {where.lineno + start}: {ast.unparse(where)}"
            unknown = _unknown_branches(pieces) if pieces is not None else []
            if unknown:  # (a property or helper with a branch it cannot follow: the others are keyed)
                out.append(f"{line} (a branch: {'; '.join(unknown)})")
            elif _mentions_params(where, scope) and (
                    pieces is None or not any(_path_like(one) for one in _alternatives(pieces))):
                out.append(line)
    return list(dict.fromkeys(out))


def _read_path(call: ast.Call) -> ast.expr | None:
    """The path a call reads: `open(p)` (not to write), `p.open()`, `p.read_text()`, `pd.read_csv(p)`, …; else
    None."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in _READERS or any(isinstance(a, ast.Starred) for a in call.args):
        return None
    if isinstance(func, ast.Attribute) and name in ("open", "read_text", "read_bytes") and (
            name != "open" or not call.args or _mode(call.args[0]) is not None):
        mode = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "mode"), None)
        return None if set(_mode(mode) or "") & set("wax") else func.value
    mode = call.args[1] if name == "open" and len(call.args) > 1 else \
        next((k.value for k in call.keywords if k.arg == "mode"), None)
    if set(_mode(mode) or "") & set("wax") or not call.args:
        return None
    return call.args[0]


def _mentions_params(node: ast.expr, scope: _Scope, depth: int = 0) -> bool:
    """Whether an expression reads a parameter of the task (`self.day`), also through a local assigned from one."""
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == scope.self_name \
                and n.attr in scope.params:
            return True
        if isinstance(n, ast.Name) and depth < 3 and n.id in scope.locals \
                and any(_mentions_params(v, scope, depth + 1) for v in scope.locals[n.id]):
            return True
        if isinstance(n, ast.Name) and n.id in scope.loops:
            return True
    return False


def _io(node: ast.expr, scope: _Scope) -> bool:
    """Whether a read path is a parameter as it is (`open(self.path)`, `str(self.path)`: keying.param_files keys the
    file it names) or is made from the task's inputs or outputs (`self.input().path`: keyed as such)."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("str", "Path") \
            and len(node.args) == 1:
        node = node.args[0]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == scope.self_name \
            and node.attr in scope.params:
        return True
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("input", "output")
               for n in ast.walk(node))


def _collect(node: ast.AST, scope: _Scope, written: set[int], found: dict[Template, None], walks: list[int]) -> None:
    for child in ast.iter_child_nodes(node):
        if id(child) in written:
            continue
        if isinstance(child, ast.Call):
            _followed(child, scope, found, walks)
            for listed in _listed(child, scope):
                for one in _alternatives(listed):
                    if _path_like(one):
                        found[one] = None
        if isinstance(child, ast.JoinedStr | ast.BinOp | ast.Call):
            pieces = _template(child, scope, [_BUDGET])
            if pieces is not None:
                for one in _alternatives(pieces):
                    if _path_like(one):
                        found[one] = None
                continue
        _collect(child, scope, written, found, walks)


def _followed(call: ast.Call, scope: _Scope, found: dict[Template, None], walks: list[int]) -> None:
    """The templates in the body of a project function, a method of the task or a function nested in the method
    that a call hands the task, a parameter, a loop's item or a path to (`self.load(self.names)`, `read_all(self)`,
    `self.read_one(name)` in a loop, `load(name)` defined in run()): its parameters stand for the call's arguments,
    `self` for the task (a loop in the helper over an argument ranges over the parameter it is). Three calls deep
    at most, _WALKS bodies per class."""
    if scope.depth >= 3 or walks[0] <= 0 or not (call.args or call.keywords) \
            or any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return
    callee = _callee(call.func, scope)
    if callee is None:
        return
    fn, globs, method, closure = callee
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    if isinstance(method, _Object | _Built):  # (its self is the object: _Object, _Built)
        own, names = names[0], names[1:]
    args = [ast.Name(id=scope.self_name, ctx=ast.Load()), *call.args] if method is True else list(call.args)
    if len(args) > len(names):
        return
    bound = {n: (a, scope) for n, a in zip(names, args, strict=False)}
    keywords = {*names, *(a.arg for a in fn.args.kwonlyargs)}
    bound.update((k.arg, (k.value, scope)) for k in call.keywords if k.arg in keywords)
    self_name = next((n for n, (a, _) in bound.items() if isinstance(a, ast.Name) and a.id == scope.self_name
                      and scope.self_name is not None and scope.self_name not in scope.locals
                      and scope.self_name not in scope.bound), None)
    if self_name is not None:
        del bound[self_name]
    walks[0] -= 1
    inner = _inner(fn, globs, scope, bound, self_name, closure)
    if isinstance(method, _Object | _Built):
        _as_object(inner, own, method)
    _collect(fn, inner, _written_nodes(fn, inner), found, walks)


def _as_object(inner: _Scope, own: str, obj: _Object | _Built) -> None:
    """Makes a method's scope one of another object's: `own` (its self) is that object, and no name is a task
    parameter (`self.root` is the object's root)."""
    inner.self_name, inner.members, inner.params = own, obj, frozenset()
    inner.unknown.discard(own)


def _inner(fn: ast.FunctionDef, globs: dict[str, Any], scope: _Scope, bound: dict[str, tuple[ast.expr, _Scope]],
           self_name: str | None, closure: _Scope | None) -> _Scope:
    """The scope of a helper's body called from `scope` with `bound` arguments; a function nested in a method
    (`closure`) also sees that method's names it does not assign itself (`self`, its locals, its loop variables)."""
    if closure is not None and self_name is None:
        self_name = closure.self_name
    members = scope.members if self_name is not None else None
    inner = _Scope(fn, globs, scope.params, self_name, bound, scope.depth + 1, members)
    if closure is not None:
        own = set(inner.bound) | set(inner.locals) | set(inner.loops) | inner.unknown
        if self_name in own - set(bound):
            inner.self_name, inner.members = None, None
        inner.bound.update((n, (ast.Name(id=n, ctx=ast.Load()), closure))
                           for n in (*closure.bound, *closure.locals, *closure.loops) if n not in own)
        inner.unknown |= closure.unknown - own  # (run()'s own names that are not known shadow the module's)
        inner.nested = {**closure.nested, **inner.nested}
    return inner


def _listed(call: ast.Call, scope: _Scope) -> list[Template]:
    """The files a listing of a directory built from the task's values names, as listing words (nixlib.codefiles.
    listing_word: keyed as what that same call yields when the key is computed, so a file added, edited or removed
    there changes it, a hidden one and one at any depth where the call yields it): `Path(d).iterdir()`,
    `os.listdir(d)`, `os.scandir(d)`, `os.walk(d)`, `Path(d).glob(pattern)`, `Path(d).rglob(pattern)`,
    `glob.glob(pattern, recursive=True)`; else none (a plain `glob.glob(pattern)` is a template of its own)."""
    func = call.func
    if not isinstance(func, ast.Attribute) or any(isinstance(a, ast.Starred) for a in call.args):
        return []
    module = isinstance(func.value, ast.Name) and func.value.id not in scope.unknown \
        and isinstance(scope.globs.get(func.value.id), types.ModuleType)
    budget = [_BUDGET]
    if module and func.attr in ("glob", "iglob") and call.args \
            and any(k.arg == "recursive" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                    for k in call.keywords):
        pattern = _template(call.args[0], scope, budget)
        return [] if pattern is None else [(*pattern, codefiles.LISTED, "recursive")]
    where, pattern, how = None, None, ""
    if module and func.attr in ("listdir", "scandir", "walk") and len(call.args) == 1:
        where, pattern, how = call.args[0], (), "walk" if func.attr == "walk" else "entries"
    elif not module and func.attr == "iterdir" and not call.args:
        where, pattern, how = func.value, (), "entries"
    elif not module and func.attr in ("glob", "rglob") and len(call.args) == 1 and _is_path(func.value, scope, budget):
        where, how = func.value, "pathglob" if func.attr == "glob" else "rglob"
        pattern = _template(call.args[0], scope, budget)
        pattern = None if pattern == () else pattern
    directory = _template(where, scope, budget) if where is not None and pattern is not None else None
    if directory is None or pattern is None:
        return []
    return [(*directory, codefiles.LISTED, how, *(("/", *pattern) if pattern else ()))]


def _callee(func: ast.expr, scope: _Scope) -> tuple[ast.FunctionDef, dict[str, Any], bool, _Scope | None] | None:
    """The function a call calls, parsed, with its globals, whether it is handed self (`self.load(...)`, a method of
    the task) and the scope it is nested in (`load(name)` for a `def load(n)` in the method): a project function
    (`helper(...)`, `mod.helper(...)`, also one decorated with functools.wraps or lru_cache: the function it
    wraps), a method or staticmethod of the task, or a function nested in the calling method; else None."""
    if isinstance(func, ast.Name) and func.id in scope.nested and func.id not in scope.bound:
        return scope.nested[func.id], scope.globs, False, scope
    target: Any = _global(func, scope)
    method: bool | _Object = False
    if target is None and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
            and scope.members is not None and scope.self_name is not None and func.value.id == scope.self_name \
            and scope.self_name not in scope.locals and scope.self_name not in scope.bound:
        target = inspect.getattr_static(scope.members.cls, func.attr, None)
        if isinstance(target, staticmethod):
            target = target.__func__
        else:
            method = True
    if target is None and isinstance(func, ast.Attribute):  # (`LAYOUT.path_for(day)`, `self.layout.path_for(day)`)
        obj = _instance(func.value, scope)
        built = _built(func.value, scope) if obj is None else None  # (`self.layout = Layout(self.root)` in __init__)
        owner = type(obj) if obj is not None else built.cls if built is not None else None
        target = inspect.getattr_static(owner, func.attr, None) if owner is not None else None
        if isinstance(target, staticmethod):
            target = target.__func__
        elif isinstance(target, types.FunctionType):
            method = _Object(obj) if obj is not None else built  # type: ignore[assignment]
    target = _unwrapped(target)
    fn = _helper_tree(target) if isinstance(target, types.FunctionType) else None
    if fn is not None and isinstance(method, _Object | _Built) and not (fn.args.posonlyargs + fn.args.args):
        return None
    return None if fn is None else (fn, target.__globals__, method, None)


class _Object:
    """Another object whose method a task calls (`LAYOUT.path_for(self.day)` of a module-level `LAYOUT =
    Layout("daily")`, `self.layout.path_for(...)` of a class attribute): `self.<name>` in that method is the
    object's attribute as it is (a str, a path, a luigi.Config; _member), never a task parameter."""

    def __init__(self, obj: Any) -> None:
        self.obj, self.cls = obj, type(obj)

    def of(self, name: str) -> None:
        return None

    def static(self, name: str) -> Any:
        value = self.raw(name)
        return value if isinstance(value, luigi.Config | str | PurePath) else None

    def raw(self, name: str) -> Any:
        try:
            return inspect.getattr_static(self.obj, name)
        except AttributeError:
            return None


class _Built(_Members):
    """An object the task builds from its values (`self.layout = Layout(self.root, kind="hourly")` in `__init__`),
    whose method a task calls: `self.<name>` in that method is what its
    class's methods assign to it once (`self.base = os.path.join(root, kind)` in `__init__`, whose parameters stand
    for the constructor call's arguments, in the scope that call is made in) or a class attribute (_Members)."""


def _built(node: ast.expr, scope: _Scope) -> _Built | None:
    """The object `node` stands for when it is a project class called with arguments (`self.layout`, or a helper's
    argument that is it, assigned once from `Layout(self.root, kind="hourly")` and none of its attributes set by the
    task: `self.layout.root = ...`), its `__init__` the project's own (not a dataclass's generated one: not
    followed, so still warned about); else None. (A local `layout = Layout(...)` is not followed: what run() sets
    on it later is not seen.)"""
    budget = _BUDGET
    while budget > 0:
        budget -= 1
        if isinstance(node, ast.Name) and node.id in scope.bound:
            node, scope = scope.bound[node.id]
        elif isinstance(node, ast.Attribute) and scope.members is not None \
                and node.attr not in getattr(scope.members, "mutated", ()) \
                and isinstance(member := _member(node, scope), tuple):
            node, scope = member
        else:
            break
    if not isinstance(node, ast.Call) or scope.depth >= 3 or any(isinstance(a, ast.Starred) for a in node.args) \
            or any(k.arg is None for k in node.keywords):
        return None
    cls = _global(node.func, scope)
    if not isinstance(cls, type) or issubclass(cls, luigi.Task | luigi.Config | luigi.Parameter):
        return None
    init = _unwrapped(inspect.getattr_static(cls, "__init__", None))
    fn = _helper_tree(init) if isinstance(init, types.FunctionType) else None
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)][1:] if fn is not None else []
    if fn is None or not (fn.args.posonlyargs + fn.args.args) or len(node.args) > len(names):
        return None
    built = _Built(cls)
    inner = _Scope(fn, init.__globals__, frozenset(), (fn.args.posonlyargs + fn.args.args)[0].arg, {},
                   scope.depth + 1, built)
    inner.bound.update((n, (a, scope)) for n, a in zip(names, node.args, strict=False))
    inner.bound.update((k.arg, (k.value, scope)) for k in node.keywords if k.arg in names)
    defaults = dict(zip(names[len(names) - len(fn.args.defaults):], fn.args.defaults, strict=True))
    inner.bound.update((n, (d, inner)) for n, d in defaults.items() if n not in inner.bound)
    inner.unknown -= set(inner.bound)
    built.add(fn, inner)
    for method, globs in _other_methods(cls, fn):  # (an attribute any other method assigns too: not known)
        first = (method.args.posonlyargs + method.args.args)[:1]
        built.add(method, _Scope(method, globs, frozenset(), first[0].arg if first else None, members=built))
    return built


def _other_methods(cls: type, init: ast.FunctionDef) -> list[tuple[ast.FunctionDef, dict[str, Any]]]:
    """The methods of a project class and its project bases, other than the `__init__` _built binds."""
    out = []
    for c in cls.__mro__:
        for value in vars(c).values():
            fn = _unwrapped(value.__func__ if isinstance(value, staticmethod | classmethod) else value)
            tree = _helper_tree(fn) if isinstance(fn, types.FunctionType) else None
            if tree is not None and tree is not init:
                out.append((tree, fn.__globals__))
    return out


def _instance(node: ast.expr, scope: _Scope) -> Any:
    """The project object `node` names, whose method a call calls: a module-level one (`LAYOUT`) or an attribute of
    self that no method assigns (a class attribute of the task, or of another _Object); else None."""
    value: Any = None
    if isinstance(node, ast.Name) and node.id not in scope.bound and node.id not in scope.locals \
            and node.id not in scope.unknown and node.id != scope.self_name:
        value = scope.globs.get(node.id)
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and scope.members is not None \
            and scope.self_name is not None and node.value.id == scope.self_name and node.attr not in scope.params \
            and scope.self_name not in scope.locals and scope.self_name not in scope.bound:
        members = scope.members
        if isinstance(members, _Object):
            value = members.raw(node.attr)
        elif node.attr not in members.other and node.attr not in members.assigned:
            value = inspect.getattr_static(members.cls, node.attr, None)
    plain = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, property,
             staticmethod, classmethod, functools.cached_property, luigi.Task, luigi.Parameter, str, bytes, int,
             float, PurePath)
    return None if value is None or isinstance(value, plain) else value


def _global(func: ast.expr, scope: _Scope) -> Any:
    """What a called name means at module level: a global of the code (`helper`, `Paths`) that no local or bound
    name hides, or an attribute of a module it imported (`mod.helper`); else None."""
    if isinstance(func, ast.Name) and func.id not in scope.bound and func.id not in scope.locals \
            and func.id not in scope.unknown:
        return scope.globs.get(func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id not in scope.unknown \
            and isinstance(scope.globs.get(func.value.id), types.ModuleType):
        return getattr(scope.globs[func.value.id], func.attr, None)
    return None


def _unwrapped(target: Any) -> Any:
    """The function a decorator wraps: one that keeps it as `__wrapped__` (functools.wraps, lru_cache, cache,
    contextmanager), or a project wrapper that only hands its arguments on (_passed_on); else `target`."""
    for _ in range(8):  # (decorators stacked on one function)
        if target is None:
            return target
        if hasattr(target, "__wrapped__"):
            try:
                target = inspect.unwrap(target)
            except ValueError:  # (a cycle of __wrapped__)
                return target
            continue
        inner = _passed_on(target)
        if inner is None:
            return target
        target = inner
    return target


def _passed_on(wrapper: Any) -> types.FunctionType | None:
    """The function a decorator's wrapper without functools.wraps calls with its own arguments, as they came
    (`def wrapper(*args, **kwargs): log(...); return fn(*args, **kwargs)`, `fn` a function of its closure): what
    runs with the call's arguments and what it returns is that function's. A wrapper that changes them or what is
    returned (`return "data/" + fn(*args)`): None (not followed)."""
    code = getattr(wrapper, "__code__", None)
    if not isinstance(wrapper, types.FunctionType) or not wrapper.__closure__ or code is None:
        return None
    cells = {name: cell.cell_contents for name, cell in zip(code.co_freevars, wrapper.__closure__, strict=True)
             if _filled(cell) and isinstance(cell.cell_contents, types.FunctionType)}
    fn = _helper_tree(wrapper) if cells else None
    if fn is None or fn.args.posonlyargs or fn.args.args or fn.args.kwonlyargs or fn.args.vararg is None:
        return None
    star, double = fn.args.vararg.arg, fn.args.kwarg.arg if fn.args.kwarg else None
    returns = [r.value for r in ast.walk(fn) if isinstance(r, ast.Return)]
    stored = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    called = {_handed_on(r, star, double) for r in returns}
    if not returns or len(called) != 1 or None in called or stored & {star, double}:
        return None
    return cells.get(called.pop())  # type: ignore[arg-type]


def _handed_on(node: ast.expr | None, star: str, double: str | None) -> str | None:
    """The name `node` calls if it is `name(*star, **double)` (the wrapper's own arguments), else None."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return None
    args_ok = len(node.args) == 1 and isinstance(node.args[0], ast.Starred) \
        and isinstance(node.args[0].value, ast.Name) and node.args[0].value.id == star
    kwargs_ok = not node.keywords if double is None else len(node.keywords) == 1 \
        and node.keywords[0].arg is None and isinstance(node.keywords[0].value, ast.Name) \
        and node.keywords[0].value.id == double
    return node.func.id if args_ok and kwargs_ok else None


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _alternatives(pieces: Template) -> list[Template]:
    """A template with a choice ("alt") as each template it may be (`if old: return f"old/{d}"`), at most 64."""
    out: list[Template] = [()]
    for p in pieces:
        if isinstance(p, tuple) and p[0] == "alt":
            out = [o + a for o in out for alt in p[1] for a in _alternatives(alt)][:64]
        else:
            out = [o + (p,) for o in out]
    return out


def _path_like(pieces: Template) -> bool:
    """A template with a piece formatted from the task's parameters or luigi.cfg, and constant text that a path has:
    a directory or a suffix (also in a format string or strftime's argument)."""
    text = [p if isinstance(p, str) else p[1] if p[0] in ("%", "fmt") else p[3] if p[0] == "f" else ""
            for p in pieces]
    values = _values(pieces)
    text += [v[3] for v in values if v[0] in ("p", "i", "m") and v[2] == "strftime"]
    return any(v[0] != "c" for v in values) and any("/" in t or "." in t for t in text)


def _template(node: ast.expr, scope: _Scope, budget: list[int]) -> Template | None:
    """A path template's pieces, or None: anything but the shapes of_class reads."""
    budget[0] -= 1
    if budget[0] < 0:
        return None
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str) and not any(c.isspace() for c in node.value):
            return (node.value,) if node.value else ()
        return None
    if isinstance(node, ast.Name):
        return _name(node.id, scope, budget, _template)
    if isinstance(node, ast.JoinedStr):
        return _fstring(node, scope, budget)
    if isinstance(node, ast.BinOp):
        return _operator(node, scope, budget)
    if isinstance(node, ast.IfExp):  # (`a if c else b`, a property's several returns: _either)
        return _choice([_template(node.body, scope, budget), _template(node.orelse, scope, budget)],
                       [node.body, node.orelse], scope)
    member = _member(node, scope)
    if isinstance(member, tuple):
        return _template(member[0], member[1], budget)
    if isinstance(member, str | PurePath):
        return (os.fspath(member),) if os.fspath(member) else ()
    if isinstance(node, ast.Attribute) and node.attr == "parent" and _is_path(node.value, scope, budget):
        inner = _template(node.value, scope, budget)
        return (os.path.dirname("".join(inner)),) if inner is not None and _constant(inner) else None
    if isinstance(node, ast.Call):
        return _call(node, scope, budget)
    return None


def _name(name: str, scope: _Scope, budget: list[int], how: Any) -> Any:
    """What `how` (_template or _value) makes of a name: a helper's parameter, a local assigned once, or a
    module-level string or path."""
    if name in scope.bound:
        node, outer = scope.bound[name]
        return how(node, outer, budget)
    if name in scope.loops:
        source, loop, index = scope.loops[name]
        return ("i", source, "", "", loop, index) if how is _value else None
    if name in scope.locals:
        values = scope.locals[name]
        if len(values) == 1:
            return how(values[0], scope, budget)
        if how is not _template:
            return None
        return _choice([_template(v, scope, budget) for v in values], values, scope)
    if name in scope.unknown or name not in scope.globs:
        return None
    value = scope.globs[name]
    if isinstance(value, PurePath):
        value = os.fspath(value)
    if not isinstance(value, str):
        return None
    return (value,) if how is _template else ("c", value)


def _choice(options: list[Template | None], nodes: list[ast.expr], scope: _Scope) -> Template | None:
    """One of several templates (a local assigned in two branches, a helper's returns): those that are templates.
    A path from the others is not known, so it is not keyed: the choice names their expressions (a third item of
    "alt") for unfollowed() to warn of, unless it is a constant (`return None`) or the task's parameter or input
    as it is (keyed as such: _io)."""
    known = list(dict.fromkeys(o for o in options if o is not None))
    unknown = tuple(dict.fromkeys(ast.unparse(n) for o, n in zip(options, nodes, strict=True)
                                  if o is None and not isinstance(n, ast.Constant) and not _io(n, scope)))
    if not known:
        return None
    if unknown:
        return (("alt", tuple(known), unknown),)
    return known[0] if len(known) == 1 else (("alt", tuple(known)),)


def _unknown_branches(pieces: Template) -> list[str]:
    """The expressions of the branches of a template's choices that are not known (_choice), nested ones too."""
    out: list[str] = []
    for p in pieces:
        if isinstance(p, tuple) and p[0] == "alt":
            out += [*(p[2] if len(p) > 2 else ()), *(u for alt in p[1] for u in _unknown_branches(alt))]
    return list(dict.fromkeys(out))


def _fstring(node: ast.JoinedStr, scope: _Scope, budget: list[int]) -> Template | None:
    pieces: list[Piece] = []
    for v in node.values:
        if isinstance(v, ast.Constant):
            if not isinstance(v.value, str) or any(c.isspace() for c in v.value):
                return None
            pieces.append(v.value)
            continue
        if not isinstance(v, ast.FormattedValue):
            return None
        spec = ""
        if v.format_spec is not None:
            if not all(isinstance(s, ast.Constant) for s in v.format_spec.values):  # type: ignore[attr-defined]
                return None
            spec = "".join(str(s.value) for s in v.format_spec.values)  # type: ignore[attr-defined]
        conversion = chr(v.conversion) if v.conversion > 0 else ""
        value = _value(v.value, scope, budget)
        if value is not None:
            pieces.append(("f", value, conversion, spec))
            continue
        inner = _template(v.value, scope, budget)  # (a local or a helper's path, put in as it is: `f"{root}/x"`)
        if inner is None or spec or conversion not in ("", "s"):
            return None
        pieces += inner
    return tuple(pieces)


def _operand(node: ast.expr, scope: _Scope, budget: list[int], kind: str) -> Template | None:
    """An operand: a template, or a value taken as it is (`"data/" + self.name`: kind "str"; `Path("d") /
    self.name`, `os.path.join("d", self.name)`: kind "fs")."""
    value = _value(node, scope, budget)
    if value is not None:
        return (value[1],) if value[0] == "c" else ((kind, value),)
    return _template(node, scope, budget)


def _operator(node: ast.BinOp, scope: _Scope, budget: list[int]) -> Template | None:
    if isinstance(node.op, ast.Add):
        left, right = _operand(node.left, scope, budget, "str"), _operand(node.right, scope, budget, "str")
        return None if left is None or right is None else left + right
    if isinstance(node.op, ast.Div):
        if not _is_path(node.left, scope, budget):
            return None
        left, right = _template(node.left, scope, budget), _operand(node.right, scope, budget, "fs")
        return None if left is None or right is None else (*left, "/", *right)
    if isinstance(node.op, ast.Mod):
        fmt = _template(node.left, scope, budget)
        if fmt is None or not _constant(fmt):
            return None
        items = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
        values = [_value(v, scope, budget) for v in items]
        if any(v is None for v in values):
            return None
        return (("%", "".join(fmt), not isinstance(node.right, ast.Tuple), tuple(values)),)
    return None


def _call(node: ast.Call, scope: _Scope, budget: list[int]) -> Template | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    starred = any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords)
    if name is None or starred:
        return None
    if name == "join" and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute) \
            and func.value.attr == "path" and node.args and not node.keywords:  # os.path.join(...)
        return _joined(node.args, scope, budget)
    if name in _PATHS and not node.keywords:
        return _joined(node.args, scope, budget) if node.args else (".",)
    if name in _FOLDS and isinstance(func, ast.Attribute) and len(node.args) == 1 and not node.keywords:
        inner = _template(node.args[0], scope, budget)  # os.path.dirname(__file__): folded, as it is constant
        return (_FOLDS[name]("".join(inner)),) if inner is not None and _constant(inner) else None
    if name in ("resolve", "absolute") and isinstance(func, ast.Attribute) and not node.args \
            and _is_path(func.value, scope, budget):
        inner = _template(func.value, scope, budget)
        return (os.path.realpath("".join(inner)),) if inner is not None and _constant(inner) else None
    if name == "format" and isinstance(func, ast.Attribute):
        fmt = _template(func.value, scope, budget)
        if fmt is None or not _constant(fmt):
            return None
        args = tuple(_value(a, scope, budget) for a in node.args)
        kwargs = tuple((k.arg, _value(k.value, scope, budget)) for k in node.keywords)
        if any(a is None for a in args) or any(v is None for _, v in kwargs):
            return None
        return (("fmt", "".join(fmt), args, kwargs),)
    if name == "str" and isinstance(func, ast.Name) and len(node.args) == 1 and not node.keywords:
        value = _value(node.args[0], scope, budget)
        if value is not None:
            return (value[1],) if value[0] == "c" else (("f", value, "s", ""),)
        return _template(node.args[0], scope, budget)
    value = _value(node, scope, budget)  # self.date.strftime("data/%Y.csv"), luigi.cfg's value
    if value is not None:
        return (value[1],) if value[0] == "c" else (("f", value, "", ""),)
    return _inlined(node, scope, budget)


def _joined(args: list[ast.expr], scope: _Scope, budget: list[int]) -> Template | None:
    joined: list[Piece] = []
    for i, a in enumerate(args):
        part = _operand(a, scope, budget, "fs")
        if part is None:
            return None
        joined += [*(["/"] if i else []), *part]
    return tuple(joined)


def _constant(pieces: Template) -> bool:
    return all(isinstance(p, str) for p in pieces)


def _is_path(node: ast.expr, scope: _Scope, budget: list[int]) -> bool:
    """Whether `node` is a pathlib path (the left of `/`): Path(...), a `/` of one, its `.parent`, `.resolve()`, a
    local or module-level one."""
    budget[0] -= 1
    if budget[0] < 0:
        return False
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("resolve", "absolute"):
            return _is_path(func.value, scope, budget)
        return (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)) in _PATHS
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _is_path(node.left, scope, budget)
    if isinstance(node, ast.IfExp):
        return _is_path(node.body, scope, budget) and _is_path(node.orelse, scope, budget)
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        return _is_path(node.value, scope, budget)
    member = _member(node, scope)
    if member is not None:
        return _is_path(member[0], member[1], budget) if isinstance(member, tuple) else isinstance(member, PurePath)
    if isinstance(node, ast.Name):
        if node.id in scope.bound:
            bound, outer = scope.bound[node.id]
            return _is_path(bound, outer, budget)
        if node.id in scope.locals:
            return all(_is_path(v, scope, budget) for v in scope.locals[node.id])
        return node.id not in scope.unknown and isinstance(scope.globs.get(node.id), PurePath)
    return False


def _value(node: ast.expr, scope: _Scope, budget: list[int]) -> Value | None:
    """A value to format: a parameter (`self.date`), its `.strftime("<constant>")`, `.isoformat()` or `str()`, a
    luigi.cfg value (`get_config().get("paths", "raw")`), or a constant text."""
    budget[0] -= 1
    if budget[0] < 0:
        return None
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == scope.self_name \
            and node.attr in scope.params and scope.self_name not in scope.locals:
        return ("p", node.attr, "", "")
    if isinstance(node, ast.Subscript):
        return _indexed(node, scope, budget)
    member = _member(node, scope)
    if isinstance(member, tuple):  # (`self.root = Paths().root` in __init__)
        return _value(member[0], member[1], budget)
    if isinstance(member, str):
        return ("c", member) if not any(c.isspace() for c in member) else None
    if isinstance(node, ast.Attribute):
        config = _config_class(node.value, scope, budget)
        return ("conf", config, node.attr) if config is not None and node.attr in dict(config.get_params()) \
            else None
    if isinstance(node, ast.Name):
        return _name(node.id, scope, budget, _value)
    if isinstance(node, ast.Constant):
        return ("c", node.value) if isinstance(node.value, str) and not any(c.isspace() for c in node.value) \
            else None
    if not isinstance(node, ast.Call) or any(isinstance(a, ast.Starred) for a in node.args):
        return None
    func = node.func
    if isinstance(func, ast.Name) and func.id == "str" and len(node.args) == 1 and not node.keywords:
        inner = _value(node.args[0], scope, budget)
        if inner is not None and inner[0] in ("sub", "conf", "cfg", "m"):
            return ("m", inner, "str", "")
        return (inner[0], inner[1], "str", "", *inner[4:]) if inner is not None and inner[0] in ("p", "i") \
            and not inner[2] else inner if inner is not None and inner[0] == "c" else None
    if not isinstance(func, ast.Attribute) or node.keywords:
        return None
    if func.attr in ("strftime", "isoformat"):
        inner = _value(func.value, scope, budget)
        if inner is None or inner[0] not in ("p", "i", "sub", "conf", "cfg") or inner[0] in ("p", "i") and inner[2]:
            return None
        # (an item, `self.days[0].strftime(...)`, or a config value: applied to what it evaluates to, "m")
        head = (inner[0], inner[1]) if inner[0] in ("p", "i") else ("m", inner)
        if func.attr == "isoformat" and not node.args:
            return (*head, "isoformat", "", *inner[4:])
        if func.attr == "strftime" and len(node.args) == 1 and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and not any(c.isspace() for c in node.args[0].value):
            return (*head, "strftime", node.args[0].value, *inner[4:])
        return None
    if func.attr == "get" and isinstance(func.value, ast.Call) and not func.value.args \
            and (getattr(func.value.func, "attr", None) or getattr(func.value.func, "id", None)) == "get_config" \
            and len(node.args) in (2, 3) and all(isinstance(a, ast.Constant) and isinstance(a.value, str)
                                                  for a in node.args):
        return ("cfg", node.args[0].value, node.args[1].value,  # type: ignore[attr-defined]
                node.args[2].value if len(node.args) == 3 else None)  # type: ignore[attr-defined]
    return None


def _indexed(node: ast.Subscript, scope: _Scope, budget: list[int]) -> Value | None:
    """`self.names[i]` in a loop `for i in range(len(self.names))`: that loop's item (as `name` of `for i, name in
    enumerate(self.names)`); else an item of a value by a key or index (`self.names[0]`, `self.files["raw"]`,
    `self.files[kind]`: ("sub", container, key))."""
    key, outer = node.slice, scope
    while isinstance(key, ast.Name) and key.id in outer.bound:  # (a helper handed the loop's index)
        key, outer = outer.bound[key.id]
    loop = outer.loops.get(key.id) if isinstance(key, ast.Name) else None
    if loop is not None and isinstance(loop[0], tuple) and loop[0][0] == "enumerate" and loop[0][2] == 0 \
            and loop[2] == (0,) and scope._iterated(node.value, budget) == loop[0][1]:
        return ("i", loop[0], "", "", loop[1], (1,))
    container = _value(node.value, scope, budget)
    if container is None or container[0] == "c":
        return None
    index = ("c", node.slice.value) if isinstance(node.slice, ast.Constant) \
        and isinstance(node.slice.value, int | str) else _value(node.slice, scope, budget)
    return None if index is None else ("sub", container, index)


def _config_class(node: ast.expr, scope: _Scope, budget: list[int]) -> type | None:
    """The luigi.Config class `node` makes an instance of without arguments (`Paths()`, `conf.Paths()`, a local
    `paths = Paths()`, a helper's argument, an instance set on self or in the class), else None."""
    budget[0] -= 1
    if budget[0] < 0:
        return None
    if isinstance(node, ast.Name) and node.id in scope.bound:
        bound, outer = scope.bound[node.id]
        return _config_class(bound, outer, budget)
    if isinstance(node, ast.Name) and node.id in scope.locals and len(scope.locals[node.id]) == 1:
        return _config_class(scope.locals[node.id][0], scope, budget)
    member = _member(node, scope)  # (`self.paths = Paths()` in __init__, `paths = Paths()` in the class)
    if isinstance(member, tuple):
        return _config_class(member[0], member[1], budget)
    if isinstance(member, luigi.Config):
        return type(member)
    if not isinstance(node, ast.Call) or node.args or node.keywords:
        return None
    target = _global(node.func, scope)
    return target if isinstance(target, type) and issubclass(target, luigi.Config) else None


def _inlined(node: ast.Call, scope: _Scope, budget: list[int]) -> Template | None:
    """A call of a project function (module-level, decorated with functools.wraps or lru_cache, or nested in the
    method) whose body is (a docstring,) assignments, calls and `if`/`else` around `return`s of templates over its
    parameters (`def raw_path(day): return f"data/{day:%Y-%m-%d}.csv"`), with its arguments: each path it may
    return (those it returns from elsewhere are not known)."""
    callee = _callee(node.func, scope) if scope.depth < 3 else None
    if callee is None or callee[2] is True or not _inlinable(callee[0]):
        return None
    fn, globs, method, closure = callee
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    own = names.pop(0) if isinstance(method, _Object | _Built) else None
    if len(node.args) > len(names) or fn.args.vararg or fn.args.kwarg or fn.args.kwonlyargs:
        return None
    bound = {n: (a, scope) for n, a in zip(names, node.args, strict=False)}
    for k in node.keywords:
        if k.arg not in names or k.arg in bound:
            return None
        bound[k.arg] = (k.value, scope)
    defaults = dict(zip(names[len(names) - len(fn.args.defaults):], fn.args.defaults, strict=True))
    if any(n not in bound and n not in defaults for n in names):
        return None
    inner = _Scope(fn, globs, frozenset(), None, {}, scope.depth + 1) if closure is None else \
        _inner(fn, globs, scope, {}, None, closure)
    for n in names:
        inner.bound[n] = bound.get(n) or (defaults[n], inner)
    inner.unknown -= set(names)
    if own is not None:
        _as_object(inner, own, method)  # type: ignore[arg-type]
    returns = [r.value for r in ast.walk(fn) if isinstance(r, ast.Return) and r.value is not None]
    return _choice([_template(r, inner, budget) for r in returns], returns, inner)  # (each path it may return)


def _inlinable(fn: ast.FunctionDef) -> bool:
    """Whether a helper has the shape _inlined follows: a plain body (_plain) with a `return` of a value."""
    return _plain(fn.body) and any(isinstance(r, ast.Return) and r.value is not None for r in ast.walk(fn))


@functools.lru_cache(maxsize=256)
def _helper_tree(fn: types.FunctionType) -> ast.FunctionDef | None:
    """The parsed function if it is the project's (not the standard library's, Luigi's or an installed package's),
    else None. A decorated one is the function itself (a decorator that registers it) or the one a wrapper keeps as
    `__wrapped__` (_unwrapped): its body is what runs with the call's arguments."""
    module = (fn.__module__ or "").split(".")[0]
    file = getattr(fn.__code__, "co_filename", "")
    if module in sys.stdlib_module_names or module in ("luigi", "luigi_nixworkflow") or "site-packages" in file \
            or not pycode._user_code(fn.__code__):
        return None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError, ValueError):
        return None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef) or not node.body:
        return None
    return node


def _plain(body: list[ast.stmt]) -> bool:
    """Statements a helper _inlined follows may have: assignments, calls (`os.makedirs(...)`, a docstring), `if`/
    `else`, `return` and `raise`; not a loop, `with`, `try` or a nested function (what it returns there is not
    followed)."""
    return all(isinstance(s, ast.Assign | ast.AnnAssign | ast.Expr | ast.Return | ast.Raise | ast.Pass)
               or isinstance(s, ast.If) and _plain(s.body) and _plain(s.orelse) for s in body)


def _written_nodes(fn: ast.AST, scope: _Scope) -> set[int]:
    """The ids of the expressions a function writes to (`open(p, "w")`, `p.open("w")`, `df.to_csv(p)`,
    `p.write_text(...)`, `shutil.copy(src, p)`, `os.replace(tmp, p)`) and of everything inside them, and of what a
    local so written was assigned."""
    out: set[int] = set()
    for call in ast.walk(fn):
        if not isinstance(call, ast.Call):
            continue
        name = getattr(call.func, "attr", getattr(call.func, "id", None))
        args: list[ast.expr] = []
        if name == "open":
            first = call.args[0] if call.args else None
            method = isinstance(call.func, ast.Attribute) and (not call.args or _mode(first) is not None)
            mode = first if method else call.args[1] if len(call.args) > 1 else None
            mode = mode or next((k.value for k in call.keywords if k.arg == "mode"), None)
            if set(_mode(mode) or "") & set("wax"):
                args = [call.func.value] if method else call.args[:1]  # type: ignore[attr-defined]
        elif name in pycode._WRITERS:  # (df.to_csv(p), np.save(p), torch.save(m, p))
            args = list(call.args)
        elif name in ("write_text", "write_bytes", "mkdir", "touch") and isinstance(call.func, ast.Attribute):
            args = [call.func.value]
        elif name in _COPIES and isinstance(call.func, ast.Attribute) and len(call.args) >= 2:
            args = call.args[1:2]
        for a in args:
            for n in ast.walk(a):
                out.add(id(n))
                if isinstance(n, ast.Name) and len(scope.locals.get(n.id, ())) == 1:  # (`p = ...` twice: which
                    out.update(id(m) for m in ast.walk(scope.locals[n.id][0]))     # one is written is not known)
    return out


def _mode(node: ast.expr | None) -> str | None:
    """An open() mode given as a constant ("w", "rb", "a+"), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value \
            and set(node.value) <= set("rwaxbt+U"):
        return node.value
    return None


def paths(task: Any, pieces: Template) -> list[str]:
    """The paths a template names for a task: formatted once, or, where it holds loop variables, once for each item
    (each combination) of the parameters their loops range over (`for name in self.names: open(f"data/{name}.csv")`,
    `for i, name in enumerate(self.names)`, `for a, b in zip(self.xs, self.ys)`); a value its code could not format
    names no file (skipped), nor does a template naming more than _ITEMS."""
    loops = sorted({(v[1], v[4]) for v in _values(pieces) if v[0] == "i"}, key=repr)
    if not loops:
        try:
            return [formatted(task, pieces)]
        except Exception:  # noqa: BLE001 - a value this template cannot format names no file
            return []
    combinations: list[dict[tuple[Any, str], Any]] = [{}]
    for loop in loops:
        try:
            items = _items(task, loop[0])
        except Exception:  # noqa: BLE001 - not iterable: the loop never ran as written
            return []
        if len(combinations) * len(items) > _ITEMS:
            return []
        combinations = [{**c, loop: item} for c in combinations for item in items]
    out = []
    for c in combinations:
        try:
            out.append(formatted(task, pieces, c))
        except Exception:  # noqa: BLE001
            continue
    return out


def _items(task: Any, source: Any) -> list[Any]:
    """The items a loop over `source` (Value "i") takes for this task, as Python's enumerate(), zip() and a dict's
    items() give them."""
    if isinstance(source, str):
        return list(getattr(task, source))
    if source[0] == "enumerate":
        return list(enumerate(_items(task, source[1]), source[2]))
    if source[0] == "zip":
        return list(zip(*(_items(task, s) for s in source[1]), strict=False))
    whole = getattr(task, source[1]) if isinstance(source[1], str) else dict(_items(task, source[1]))
    return list(getattr(whole, source[0])())  # (items, keys, values)


def _values(pieces: Template) -> list[Value]:
    out: list[Value] = []
    for p in pieces:
        if isinstance(p, str):
            continue
        out += [p[1]] if p[0] in ("f", "str", "fs") else list(p[3]) if p[0] == "%" else [*p[2], *(v for _, v in p[3])]
    return [one for v in out for one in _flat(v)]


def _flat(value: Value) -> list[Value]:
    """A value and those it is made of (an item's container and key: `self.files[name]` in a loop)."""
    return [value, *_flat(value[1]), *_flat(value[2])] if value[0] == "sub" else \
        [value, *_flat(value[1])] if value[0] == "m" else [value]


def formatted(task: Any, pieces: Template, items: dict[tuple[Any, str], Any] | None = None) -> str:
    """A template formatted with the task's values (and `items`, the item each loop variable stands for), as its
    code formats them (an error where its code's would fail)."""
    return "".join(p if isinstance(p, str) else _piece(task, p, items or {}) for p in pieces)


def _piece(task: Any, piece: tuple[Any, ...], items: dict[tuple[Any, str], Any]) -> str:
    kind = piece[0]
    if kind == "f":
        value = _evaluate(task, piece[1], items)
        value = {"s": str, "r": repr, "a": ascii}.get(piece[2], lambda v: v)(value)
        return format(value, piece[3])
    if kind == "str":
        value = _evaluate(task, piece[1], items)
        if not isinstance(value, str):
            raise TypeError("only a str concatenates")
        return value
    if kind == "fs":
        return os.fspath(_evaluate(task, piece[1], items))
    if kind == "%":
        values = [_evaluate(task, v, items) for v in piece[3]]
        return str(piece[1] % (values[0] if piece[2] else tuple(values)))
    if kind == "fmt":
        return str(piece[1].format(*(_evaluate(task, v, items) for v in piece[2]),
                                   **{k: _evaluate(task, v, items) for k, v in piece[3]}))
    raise ValueError(kind)


def _part(item: Any, index: tuple[int, ...]) -> Any:
    """The part of a loop's item a target unpacks (`for i, (a, b) in ...`: b is item[1][1]); an error where the
    item does not unpack as written, as Python's would be."""
    for i in index:
        item = tuple(item)[i]
    return item


def _evaluate(task: Any, value: Value, items: dict[tuple[Any, str], Any]) -> Any:
    if value[0] == "c":
        return value[1]
    if value[0] == "cfg":
        cfg = luigi.configuration.get_config()
        return cfg.get(value[1], value[2]) if value[3] is None else cfg.get(value[1], value[2], value[3])
    if value[0] == "conf":
        return getattr(value[1](), value[2])
    if value[0] == "sub":
        return _evaluate(task, value[1], items)[_evaluate(task, value[2], items)]
    name, method, argument = value[1:4]
    v = _part(items[(name, value[4])], value[5]) if value[0] == "i" else _evaluate(task, name, items) \
        if value[0] == "m" else getattr(task, name)
    if method == "strftime":
        return v.strftime(argument)
    if method == "isoformat":
        return v.isoformat()
    if method == "str":
        return str(v)
    return v
