"""What a call calls, and the scope its body is read in: a project function, a method of the task, a
function nested in the calling method, or another object's method (other_objects). The callee's parameters stand for
the call's arguments in the caller's scope, so a path it builds from them is the caller's path."""

from __future__ import annotations

import ast
import inspect
import types
from typing import Any

from luigi_nixworkflow.other_objects import Built, LiveObject, built_object, instance_of
from luigi_nixworkflow.project_functions import helper_tree, unwrapped
from luigi_nixworkflow.scopes import Scope, global_of


def as_object(inner: Scope, own: str, obj: LiveObject | Built) -> None:
    """Makes a method's scope one of another object's: `own` (its self) is that object, and no name is a task
    parameter (`self.root` is the object's root)."""
    inner.self_name, inner.members, inner.params = own, obj, frozenset()
    inner.unknown.discard(own)


def inner_scope(fn: ast.FunctionDef, globs: dict[str, Any], scope: Scope, bound: dict[str, tuple[ast.expr, Scope]],
           self_name: str | None, closure: Scope | None) -> Scope:
    """The scope of a helper's body called from `scope` with `bound` arguments; a function nested in a method
    (`closure`) also sees that method's names it does not assign itself (`self`, its locals, its loop variables)."""
    if closure is not None and self_name is None:
        self_name = closure.self_name
    members = scope.members if self_name is not None else None
    inner = Scope(fn, globs, scope.params, self_name, bound, scope.depth + 1, members)
    if closure is not None:
        own = set(inner.bound) | set(inner.locals) | set(inner.loops) | inner.unknown
        if self_name in own - set(bound):
            inner.self_name, inner.members = None, None
        inner.bound.update((n, (ast.Name(id=n, ctx=ast.Load()), closure))
                           for n in (*closure.bound, *closure.locals, *closure.loops) if n not in own)
        inner.unknown |= closure.unknown - own  # (run()'s own names that are not known shadow the module's)
        inner.nested = {**closure.nested, **inner.nested}
    return inner


def callee_of(func: ast.expr, scope: Scope) -> tuple[ast.FunctionDef, dict[str, Any], bool, Scope | None] | None:
    """The function a call calls, parsed, with its globals, whether it is handed self (`self.load(...)`, a method of
    the task) and the scope it is nested in (`load(name)` for a `def load(n)` in the method): a project function
    (`helper(...)`, `mod.helper(...)`, also one decorated with functools.wraps or lru_cache: the function it
    wraps), a method or staticmethod of the task, or a function nested in the calling method; else None."""
    if isinstance(func, ast.Name) and func.id in scope.nested and func.id not in scope.bound:
        return scope.nested[func.id], scope.globs, False, scope
    target: Any = global_of(func, scope)
    method: bool | LiveObject = False
    if target is None and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
            and scope.members is not None and scope.self_name is not None and func.value.id == scope.self_name \
            and scope.self_name not in scope.locals and scope.self_name not in scope.bound:
        target = inspect.getattr_static(scope.members.cls, func.attr, None)
        if isinstance(target, staticmethod):
            target = target.__func__
        else:
            method = True
    if target is None and isinstance(func, ast.Attribute):  # (`LAYOUT.path_for(day)`, `self.layout.path_for(day)`)
        obj = instance_of(func.value, scope)
        built = built_object(func.value, scope) if obj is None else None  # (`self.layout = Layout(self.root)`)
        owner = type(obj) if obj is not None else built.cls if built is not None else None
        target = inspect.getattr_static(owner, func.attr, None) if owner is not None else None
        if isinstance(target, staticmethod):
            target = target.__func__
        elif isinstance(target, types.FunctionType):
            method = LiveObject(obj) if obj is not None else built  # type: ignore[assignment]
    target = unwrapped(target)
    fn = helper_tree(target) if isinstance(target, types.FunctionType) else None
    if fn is not None and isinstance(method, LiveObject | Built) and not (fn.args.posonlyargs + fn.args.args):
        return None
    return None if fn is None else (fn, target.__globals__, method, None)
