"""What the names of one function mean while its paths are followed (Scope), and what `self.<name>` stands for
(Members: an attribute the task sets once, a class attribute, a property).

A path is a template only if every name in it is known: a local assigned once, a loop over a parameter, a helper's
argument bound to the caller's expression. A name assigned in a way that cannot be followed is `unknown`, so a path
built from it is not keyed wrongly but left to the unfollowed-read warning."""

from __future__ import annotations

import ast
import functools
import inspect
import types
from pathlib import PurePath
from typing import Any

import luigi

from luigi_nixworkflow.project_functions import helper_tree, plain_body, unwrapped

BUDGET = 40  # names and helpers followed per template (a cycle, `x = f(x)`, ends there)
_WHOLE = frozenset({"sorted", "list", "tuple", "set", "frozenset", "reversed"})  # (a loop over `sorted(self.names)`)


class Scope:
    """What the names of one function mean: its locals (each plain assignment of a name that no loop or `+=`
    assigns: one, or several to choose from), its loop variables over a parameter (`for name in self.names`, `for i,
    name in enumerate(self.names)`), the parameters a helper was called with (each an expression of the caller's
    scope), the attributes the task sets on self (`self.paths = Paths()`: Members) and its module's globals."""

    def __init__(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, globs: dict[str, Any], params: frozenset[str],
                 self_name: str | None, bound: dict[str, tuple[ast.expr, Scope]] | None = None, depth: int = 0,
                 members: Members | None = None):
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
        self.escaped = _escaped(fn)
        # (`with Loader(self.path) as x:`, x assigned nowhere else: what it holds is what `__enter__` returns, so
        # it stays unknown here and other_objects follows it only where that is the object itself)
        self.entered = {item.optional_vars.id: item.context_expr for item in ast.walk(fn)
                        if isinstance(item, ast.withitem) and isinstance(item.optional_vars, ast.Name)
                        and len(stores.get(item.optional_vars.id, ())) == 1 and item.optional_vars.id not in arguments}

    def _over(self, node: ast.expr, loop: str, index: tuple[int, ...]) -> tuple[Any, str, tuple[int, ...]]:
        """A loop variable's (source, loop, index): `for i in range(len(self.names))` is the index of `for i, _ in
        enumerate(self.names)` (so `self.names[i]` is its item: expressions._indexed)."""
        whole = _ranged(node)
        if whole is None:
            return self._iterated(node, [BUDGET]), loop, index
        inner = self._iterated(whole, [BUDGET])
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


def _escaped(fn: ast.AST) -> set[str]:
    """The names a function uses otherwise than by reading an attribute of what they hold (`x.path()`, `x.root`):
    handed on (`tweak(x)`, `y = x`) or changed (`x.root = ...`, `x.parts[0] = ...`). An object such a local holds
    may not be what its constructor made when the path is built, so other_objects.built_object does not follow it
    (the read stays warned about)."""
    read: set[int] = set()
    out: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and isinstance(node.ctx, ast.Load):
            read.add(id(node.value))
        if isinstance(node, ast.Attribute | ast.Subscript) and not isinstance(node.ctx, ast.Load):
            root: ast.expr = node
            while isinstance(root, ast.Attribute | ast.Subscript | ast.Call):
                root = root.func if isinstance(root, ast.Call) else root.value
            if isinstance(root, ast.Name):
                out.add(root.id)
    return out | {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                  and id(n) not in read}


def _unpacked(target: ast.expr, index: tuple[int, ...] = ()) -> list[tuple[ast.Name, tuple[int, ...]]]:
    """The names a loop's target assigns, each with where in the item it takes its value: `name` at (), `i, name`
    at (0,) and (1,), `i, (a, b)` at (0,), (1, 0), (1, 1); a starred or attribute target: none of its names."""
    if isinstance(target, ast.Name):
        return [(target, index)]
    if isinstance(target, ast.Tuple | ast.List) and not any(isinstance(e, ast.Starred) for e in target.elts):
        return [one for i, e in enumerate(target.elts) for one in _unpacked(e, (*index, i))]
    return []


def _handed_on(node: ast.AST) -> list[ast.expr]:
    """The expressions `node` hands to code that may change them: a call's arguments (`tweak(self.layout)`) and the
    value of an assignment (`layout = self.layout`, changed through the alias later). What such a `self.<name>` holds
    may differ from what it was made as, so it is not followed (a read through it is warned about instead)."""
    if isinstance(node, ast.Call):
        return [*node.args, *(k.value for k in node.keywords)]
    if isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr) and node.value is not None:
        return [node.value]
    return []


class Members:
    """The attributes a task's own classes set on self (`self.paths = Paths()` in __init__, `self.root =
    Paths().root`: one plain assignment in all their methods, with the scope it is made in) and its class attributes
    (`paths = Paths()`, `root = "data"`), which `self.<name>` stands for where it is not a parameter."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.assigned: dict[str, list[tuple[ast.expr, Scope]]] = {}
        self.other: set[str] = set()
        self.mutated: set[str] = set()  # (`self.layout.root = ...`, `tweak(self.layout)`: what it holds may change)

    def add(self, fn: ast.AST, scope: Scope) -> None:
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
            self.mutated.update(a.attr for a in _handed_on(node) if self._own(a, scope))  # type: ignore[attr-defined]

    @staticmethod
    def _own(node: ast.AST | None, scope: Scope) -> bool:
        return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and scope.self_name is not None \
            and node.value.id == scope.self_name

    def of(self, name: str) -> tuple[ast.expr, Scope] | None:
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


def member_of(node: ast.expr, scope: Scope) -> tuple[ast.expr, Scope] | Any | None:
    """What `self.<name>` (not a parameter) stands for: (its one assigned expression, its scope), a class attribute
    (Members.static), else None."""
    if not isinstance(node, ast.Attribute) or not isinstance(node.value, ast.Name) or scope.members is None \
            or scope.self_name is None or node.value.id != scope.self_name or node.attr in scope.params \
            or scope.self_name in scope.locals or scope.self_name in scope.bound:
        return None
    return scope.members.of(node.attr) or scope.members.static(node.attr) or _property(node.attr, scope)


def _property(name: str, scope: Scope) -> tuple[ast.expr, Scope] | None:
    """What `self.<name>` stands for where it is a `@property` (or functools.cached_property) of the task whose
    getter is a project function returning one expression (`return f"data/{self.name}.csv"`): that expression, in
    the getter's scope (its self the task), else None."""
    members = scope.members
    static = inspect.getattr_static(members.cls, name, None) if members is not None and scope.depth < 3 else None
    getter = unwrapped(static.fget if isinstance(static, property) else getattr(static, "func", None)
                        if isinstance(static, functools.cached_property) else None)
    fn = helper_tree(getter) if isinstance(getter, types.FunctionType) else None
    returns = [r.value for r in ast.walk(fn) if isinstance(r, ast.Return) and r.value is not None] if fn else []
    if fn is None or not returns or not plain_body(fn.body) or not fn.args.args:
        return None
    inner = Scope(fn, getter.__globals__, scope.params, fn.args.args[0].arg, depth=scope.depth + 1, members=members)
    return _either(returns), inner


def _either(returns: list[ast.expr]) -> ast.expr:
    """One expression for what a function's several `return`s may give (`if self.archived: return "archive"`,
    `return "current"`): `a if ... else b` chained, which template_of reads as a choice of each."""
    either = returns[-1]
    for r in reversed(returns[:-1]):
        either = ast.IfExp(test=ast.Constant(value=True), body=r, orelse=either)
    return either


def global_of(func: ast.expr, scope: Scope) -> Any:
    """What a called name means at module level: a global of the code (`helper`, `Paths`) that no local or bound
    name hides, or an attribute of a module it imported (`mod.helper`); else None."""
    if isinstance(func, ast.Name) and func.id not in scope.bound and func.id not in scope.locals \
            and func.id not in scope.unknown:
        return scope.globs.get(func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id not in scope.unknown \
            and isinstance(scope.globs.get(func.value.id), types.ModuleType):
        return getattr(scope.globs[func.value.id], func.attr, None)
    return None
