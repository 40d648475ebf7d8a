"""The project's own functions, parsed: which functions the keying may follow into.

A helper of the project can build a path the task reads, so its body is read; the standard library's, Luigi's and an
installed package's are not (their files are not the user's to edit, and their source is not ours to interpret). A
decorator hides the function it wraps, so it is unwrapped first (functools.wraps, or a wrapper that only hands its
arguments on)."""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import textwrap
import types
from typing import Any

from nixlib import pycode


def unwrapped(target: Any) -> Any:
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
    fn = helper_tree(wrapper) if cells else None
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


def inlinable(fn: ast.FunctionDef) -> bool:
    """Whether a helper has the shape expressions._inlined follows: a plain body (plain_body) with a `return` of a
    value."""
    return plain_body(fn.body) and any(isinstance(r, ast.Return) and r.value is not None for r in ast.walk(fn))


@functools.lru_cache(maxsize=256)
def helper_tree(fn: types.FunctionType) -> ast.FunctionDef | None:
    """The parsed function if it is the project's (not the standard library's, Luigi's or an installed package's),
    else None. A decorated one is the function itself (a decorator that registers it) or the one a wrapper keeps as
    `__wrapped__` (unwrapped): its body is what runs with the call's arguments."""
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


def plain_body(body: list[ast.stmt]) -> bool:
    """Statements a helper expressions._inlined follows may have: assignments, calls (`os.makedirs(...)`, a
    docstring), `if`/`else`, `return` and `raise`; not a loop, `with`, `try` or a nested function (what it returns
    there is not followed)."""
    return all(isinstance(s, ast.Assign | ast.AnnAssign | ast.Expr | ast.Return | ast.Raise | ast.Pass)
               or isinstance(s, ast.If) and plain_body(s.body) and plain_body(s.orelse) for s in body)
