"""Objects other than the task whose methods build a path the task reads: a live one (a module-level
`LAYOUT`, a class attribute: LiveObject) or one the task builds from its values (`self.layout = Layout(self.root)`
in `__init__`: Built). Their `self.<name>` is the object's attribute, never a task parameter, so they need a scope
of their own."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import sys
import types
from pathlib import PurePath
from typing import Any

import luigi

from luigi_nixworkflow.project_functions import helper_tree, unwrapped
from luigi_nixworkflow.scopes import BUDGET, Members, Scope, global_of, member_of


class LiveObject:
    """Another object whose method a task calls (`LAYOUT.path_for(self.day)` of a module-level `LAYOUT =
    Layout("daily")`, `self.layout.path_for(...)` of a class attribute): `self.<name>` in that method is the
    object's attribute as it is (a str, a path, a luigi.Config; member_of), never a task parameter."""

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


class Built(Members):
    """An object the task builds from its values (`self.layout = Layout(self.root, kind="hourly")` in `__init__`),
    whose method a task calls: `self.<name>` in that method is what its
    class's methods assign to it once (`self.base = os.path.join(root, kind)` in `__init__`, whose parameters stand
    for the constructor call's arguments, in the scope that call is made in) or a class attribute (Members).
    `scope` is that `__init__`'s scope, whose self is the object (attribute_of reads `obj.<name>` in it)."""

    scope: Scope | None = None
    init: ast.FunctionDef | None = None


def built_object(node: ast.expr, scope: Scope) -> Built | None:
    """The object `node` stands for when it is a project class called with arguments (`self.layout`, or a helper's
    argument that is it, assigned once from `Layout(self.root, kind="hourly")` and none of its attributes set by the
    task: `self.layout.root = ...`; or a local of the method assigned once and only read from, `loader =
    Loader(self.region)`: Scope.escaped), its `__init__` the project's own or a dataclass's generated one
    (_generated_init); else None (not followed, so still warned about)."""
    node, scope = _constructed(node, scope)
    if not isinstance(node, ast.Call) or scope.depth >= 3 or any(isinstance(a, ast.Starred) for a in node.args) \
            or any(k.arg is None for k in node.keywords):
        return None
    cls = global_of(node.func, scope)
    if not isinstance(cls, type) or issubclass(cls, luigi.Task | luigi.Config | luigi.Parameter):
        return None
    init = unwrapped(inspect.getattr_static(cls, "__init__", None))
    fn = helper_tree(init) if isinstance(init, types.FunctionType) else None
    globs = init.__globals__ if fn is not None else {}
    if fn is None:
        fn, globs = _generated_init(cls, init) or (None, {})
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)][1:] if fn is not None else []
    if fn is None or not (fn.args.posonlyargs + fn.args.args) or len(node.args) > len(names):
        return None
    built = Built(cls)
    inner = Scope(fn, globs, frozenset(), (fn.args.posonlyargs + fn.args.args)[0].arg, {}, scope.depth + 1, built)
    built.scope, built.init = inner, fn
    inner.bound.update(_arguments(fn, node, scope, names, inner))
    inner.unknown -= set(inner.bound)
    built.add(fn, inner)
    for method, globs in _other_methods(cls, fn):  # (an attribute any other method assigns too: not known)
        first = (method.args.posonlyargs + method.args.args)[:1]
        built.add(method, Scope(method, globs, frozenset(), first[0].arg if first else None, members=built))
    return built


def _arguments(fn: ast.FunctionDef, call: ast.Call, scope: Scope, names: list[str],
               inner: Scope) -> dict[str, tuple[ast.expr, Scope]]:
    """What each parameter of a constructor stands for: the call's argument (positional, or by keyword: also a
    keyword-only one, `Paths(root=self.root)` of `def __init__(self, *, root)` or a `kw_only` dataclass), else its
    default (read in the constructor's own scope)."""
    keyword_only = [a.arg for a in fn.args.kwonlyargs]
    bound = {n: (a, scope) for n, a in zip(names, call.args, strict=False)}
    bound.update((k.arg, (k.value, scope)) for k in call.keywords if k.arg in names or k.arg in keyword_only)
    defaults = dict(zip(names[len(names) - len(fn.args.defaults):], fn.args.defaults, strict=True))
    defaults.update((n, d) for n, d in zip(keyword_only, fn.args.kw_defaults, strict=True) if d is not None)
    bound.update((n, (d, inner)) for n, d in defaults.items() if n not in bound)
    return bound


def _constructed(node: ast.expr, scope: Scope) -> tuple[ast.expr, Scope]:
    """The expression an object is made by, through a helper's argument, an attribute the task sets once and does
    not change, or a local assigned once that the method only reads attributes of (Scope.escaped)."""
    budget = BUDGET
    while budget > 0:
        budget -= 1
        if isinstance(node, ast.Name) and node.id in scope.bound:
            node, scope = scope.bound[node.id]
        elif isinstance(node, ast.Name) and len(scope.locals.get(node.id, ())) == 1 and node.id not in scope.escaped:
            node = scope.locals[node.id][0]
        elif isinstance(node, ast.Name) and node.id in scope.entered and node.id not in scope.escaped \
                and _enters_itself(scope.entered[node.id], scope):
            node = scope.entered[node.id]
        elif isinstance(node, ast.Attribute) and scope.members is not None \
                and node.attr not in getattr(scope.members, "mutated", ()) \
                and isinstance(member := member_of(node, scope), tuple):
            node, scope = member
        else:
            break
    return node, scope


def _enters_itself(node: ast.expr, scope: Scope) -> bool:
    """Whether `with node as x:` binds x to the object `node` makes: a project class whose `__enter__` (its own or a
    project base's) ends in `return self` and returns nothing else (a file it opens, a copy: not followed)."""
    cls = global_of(node.func, scope) if isinstance(node, ast.Call) else None
    enter = unwrapped(inspect.getattr_static(cls, "__enter__", None)) if isinstance(cls, type) else None
    fn = helper_tree(enter) if isinstance(enter, types.FunctionType) else None
    first = (fn.args.posonlyargs + fn.args.args)[:1] if fn is not None else []
    if fn is None or not first or not fn.body or not isinstance(fn.body[-1], ast.Return):
        return False
    return all(isinstance(r.value, ast.Name) and r.value.id == first[0].arg
               for r in ast.walk(fn) if isinstance(r, ast.Return))


_CONSTANTS = (str, int, float, bool, type(None))


def _generated_init(cls: type, init: Any) -> tuple[ast.FunctionDef, dict[str, Any]] | None:
    """A dataclass's generated `__init__` (it has no source), as the source it stands for: `def __init__(self, root,
    kind="daily"): self.root = root; self.kind = kind`, one assignment per field it sets. A default that is not a
    constant (a default_factory, an object) is a name nothing binds, so a path built from it is not known; keyword-
    only fields (`kw_only=True`, after `KW_ONLY`) are keyword-only parameters. Else None."""
    owner = next((c for c in cls.__mro__ if "__init__" in vars(c)), None)
    if owner is None or "__dataclass_fields__" not in vars(owner) or getattr(init, "__code__", None) is None \
            or init.__code__.co_filename != "<string>":
        return None
    try:
        parameters = list(inspect.signature(init).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    fields = {f.name for f in dataclasses.fields(owner) if f.init}
    if any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in parameters):
        return None
    args = [p.name + ("" if p.default is p.empty else f"={p.default!r}" if type(p.default) in _CONSTANTS
                      else "=_no_default_known_") for p in parameters]
    keyword_only = next((i for i, p in enumerate(parameters) if p.kind is p.KEYWORD_ONLY), None)
    if keyword_only is not None:  # (`kw_only=True`, fields after `KW_ONLY`: `def __init__(self, region, *, name)`)
        args.insert(keyword_only, "*")
    body = [f"self.{p.name} = {p.name}" for p in parameters if p.name in fields] or ["pass"]
    tree = ast.parse(f"def __init__(self, {', '.join(args)}):\n    " + "\n    ".join(body)).body[0]
    module = sys.modules.get(owner.__module__)
    return tree, vars(module) if module is not None else {}  # type: ignore[return-value]


def attribute_of(node: ast.expr, scope: Scope) -> tuple[ast.expr, Scope] | Any | None:
    """What `obj.<name>` stands for where obj is an object the task builds (built_object): the expression its class
    assigns to that attribute once, a class attribute or a property (scopes.member_of, read in the object's own
    scope), else None."""
    if not isinstance(node, ast.Attribute) or not isinstance(node.ctx, ast.Load):
        return None
    built = built_object(node.value, scope)
    own = built.scope if built is not None else None
    if own is None or own.self_name is None:
        return None
    return member_of(ast.Attribute(value=ast.Name(id=own.self_name, ctx=ast.Load()), attr=node.attr,
                                   ctx=ast.Load()), own)


def _other_methods(cls: type, init: ast.FunctionDef) -> list[tuple[ast.FunctionDef, dict[str, Any]]]:
    """The methods of a project class and its project bases, other than the `__init__` built_object binds."""
    out = []
    for c in cls.__mro__:
        for value in vars(c).values():
            fn = unwrapped(value.__func__ if isinstance(value, staticmethod | classmethod) else value)
            tree = helper_tree(fn) if isinstance(fn, types.FunctionType) else None
            if tree is not None and tree is not init:
                out.append((tree, fn.__globals__))
    return out


def instance_of(node: ast.expr, scope: Scope) -> Any:
    """The project object `node` names, whose method a call calls: a module-level one (`LAYOUT`) or an attribute of
    self that no method assigns (a class attribute of the task, or of another LiveObject); else None."""
    value: Any = None
    if isinstance(node, ast.Name) and node.id not in scope.bound and node.id not in scope.locals \
            and node.id not in scope.unknown and node.id != scope.self_name:
        value = scope.globs.get(node.id)
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and scope.members is not None \
            and scope.self_name is not None and node.value.id == scope.self_name and node.attr not in scope.params \
            and scope.self_name not in scope.locals and scope.self_name not in scope.bound:
        members = scope.members
        if isinstance(members, LiveObject):
            value = members.raw(node.attr)
        elif node.attr not in members.other and node.attr not in members.assigned:
            value = inspect.getattr_static(members.cls, node.attr, None)
    plain = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, property,
             staticmethod, classmethod, functools.cached_property, luigi.Task, luigi.Parameter, str, bytes, int,
             float, PurePath)
    return None if value is None or isinstance(value, plain) else value
