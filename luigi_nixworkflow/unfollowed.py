"""Reads of a path built from the task's parameters that the key cannot follow (unfollowed): a file that is
read but not keyed would be served stale after an edit, so keying warns of each, naming the line and how to declare
it, rather than guess."""

from __future__ import annotations

import ast
import inspect
import sys
import types

from luigi_nixworkflow.class_templates import NOT_OPENED_IN
from luigi_nixworkflow.expressions import is_io, template_of
from luigi_nixworkflow.io_calls import read_path, written_nodes
from luigi_nixworkflow.listings import listings_of
from luigi_nixworkflow.project_functions import helper_tree, unwrapped
from luigi_nixworkflow.scopes import BUDGET, Members, Scope, global_of
from luigi_nixworkflow.templates import alternatives, path_like, unknown_branches


def unfollowed(cls: type, trees: tuple[ast.Module, ...], classes: list[type]) -> list[str]:
    """Reads in the class's methods (not output(), requires(), ...) of a path built from the task's parameters that
    of_class cannot follow (`open(self.layout.path_for(self.day))` with `self.layout` made in `__init__`, a helper of
    an installed package): `Class.method() line N: <the path expression>` each. Their files are not in the key, so
    the caller warns, naming the declaration that keys them (static(), a plain task's LocalTarget, `version`)."""
    params = frozenset(name for name, _ in cls.get_params())
    members = Members(cls)
    methods: list[tuple[type, ast.FunctionDef | ast.AsyncFunctionDef, Scope]] = []
    for c, tree in zip(classes, trees, strict=True):
        module = sys.modules.get(c.__module__)
        globs = vars(module) if module is not None else {}
        for node in ast.walk(tree):
            for fn in node.body if isinstance(node, ast.ClassDef) else ():
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    first = (fn.args.posonlyargs + fn.args.args)[:1]
                    scope = Scope(fn, globs, params, first[0].arg if first else None, members=members)
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
        written = written_nodes(fn, scope)
        listed = _listed_directories(fn, scope)
        for call in ast.walk(fn):
            where = read_path(call) if isinstance(call, ast.Call) and id(call) not in written else None
            if where is None or id(where) in written or is_io(where, scope) or _entry_of(where, listed) \
                    or _parameter_item(where, scope):
                continue
            try:
                pieces = template_of(where, scope, [BUDGET])
            except RecursionError:
                pieces = None
            line = f"{c.__name__}.{fn.name}() line {where.lineno + start}: {ast.unparse(where)}"
            unknown = unknown_branches(pieces) if pieces is not None else []
            if unknown:  # (a property or helper with a branch it cannot follow: the others are keyed)
                out.append(f"{line} (a branch: {'; '.join(unknown)})")
            elif _mentions_params(where, scope) and (
                    pieces is None or not any(path_like(one) for one in alternatives(pieces))):
                out.append(line)
    return list(dict.fromkeys(out))


def _mentions_params(node: ast.expr, scope: Scope, depth: int = 0) -> bool:
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
        if isinstance(n, ast.Name) and depth < 3 and n.id not in scope.locals and _entered_object(n.id, scope) \
                and _mentions_params(scope.entered[n.id], scope, depth + 1):  # (`with Loader(self.day) as x`)
            return True
        if depth < 3 and _own_member(n, scope) and any(  # (`self.loader`, made from the parameters in __init__)
                _mentions_params(v, s, depth + 1) for v, s in scope.members.assigned.get(n.attr, ())):  # type: ignore[union-attr, attr-defined]
            return True
    return False


def _entered_object(name: str, scope: Scope) -> bool:
    """Whether `name` is bound by `with <a project class>(...) as name:`, its `__enter__` the project's (not `with
    open(...) as f`, whose file the key follows by the open() call itself, nor a library's context manager)."""
    entered = scope.entered.get(name)
    cls = global_of(entered.func, scope) if isinstance(entered, ast.Call) else None
    enter = unwrapped(inspect.getattr_static(cls, "__enter__", None)) if isinstance(cls, type) else None
    return isinstance(enter, types.FunctionType) and helper_tree(enter) is not None


def _own_member(node: ast.AST, scope: Scope) -> bool:
    """Whether `node` is `self.<name>` for an attribute the task's methods assign (Members.assigned)."""
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and scope.members is not None \
        and node.value.id == scope.self_name and node.attr in scope.members.assigned


def _listed_directories(fn: ast.AST, scope: Scope) -> set[str]:
    """The directories (as dumped expressions) the method lists in a way the key follows (listings.listings_of:
    `os.listdir(self.src)`, `Path(self.src).glob("*.csv")`): each file of them is keyed by that listing."""
    out: set[str] = set()
    for call in ast.walk(fn):
        if isinstance(call, ast.Call) and listings_of(call, scope):
            func = call.func
            where = call.args[0] if call.args and isinstance(func, ast.Attribute) and func.attr in (
                "listdir", "scandir", "walk") else func.value if isinstance(func, ast.Attribute) else None
            for one in (where, *_path_argument(where)):
                if one is not None:
                    out.add(ast.dump(one))
    return out


def _path_argument(node: ast.expr | None) -> list[ast.expr]:
    """`d` of `Path(d)` (a listing's directory given either way)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute) and len(node.args) == 1 \
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in ("Path", "PurePath"):
        return [node.args[0]]
    return []


def _entry_of(where: ast.expr, listed: set[str]) -> bool:
    """Whether a read path is an entry of a directory the method lists (`os.path.join(self.src, name)` for a `name`
    of `os.listdir(self.src)`, `Path(self.src) / name`): that listing keys every file in it, so no warning."""
    if not listed:
        return False
    if isinstance(where, ast.Call) and isinstance(where.func, ast.Attribute) and where.func.attr == "join" \
            and len(where.args) >= 2:
        first = where.args[0]
    elif isinstance(where, ast.BinOp) and isinstance(where.op, ast.Div):
        first = where.left
    else:
        return False
    return any(ast.dump(one) in listed for one in (first, *_path_argument(first)))


def _parameter_item(node: ast.expr, scope: Scope, depth: int = 0) -> bool:
    """Whether a read path is an item of a parameter as it is: `open(name)` for `for name in self.files` (a
    ListParameter of paths; also of `enumerate`, `zip`, a DictParameter's `.values()` / `.items()`), `self.files[0]`,
    `self.files["raw"]`, or a local assigned one. keying.param_files keys every string of a significant parameter's
    value that names a file, so that file is followed, as `open(self.path)` is (expressions.is_io)."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("str", "Path") \
            and len(node.args) == 1:
        node = node.args[0]
    if isinstance(node, ast.Subscript):
        inner = node.value
        return is_io(inner, scope) and not _calls(inner) or _parameter_item(inner, scope, depth)
    if not isinstance(node, ast.Name):
        return False
    if node.id in scope.loops:
        source, _, index = scope.loops[node.id]
        return _keyed_source(source, index)
    values = scope.locals.get(node.id, ())
    return depth < 3 and len(values) == 1 and _parameter_item(values[0], scope, depth + 1)


def _calls(node: ast.expr) -> bool:
    """Whether an expression calls something (`self.input()[0]` is an input, keyed as one, not a parameter item)."""
    return any(isinstance(n, ast.Call) for n in ast.walk(node))


def _keyed_source(source: object, index: tuple[int, ...]) -> bool:
    """Whether the loop item at `index` of `source` (scopes.Scope._iterated: a parameter's name, or ("enumerate",
    inner, start), ("zip", (inner, ...)), ("items" | "values" | "keys", inner)) is (in) a parameter value's string, as
    codefiles.strings_in finds them: never an enumerate count, nor a mapping's key."""
    if isinstance(source, str):
        return True
    if not isinstance(source, tuple) or not source:
        return False
    kind = source[0]
    if kind == "values":
        return _keyed_source(source[1], index)
    if kind in ("items", "enumerate"):
        return bool(index) and index[0] == 1 and _keyed_source(source[1], index[1:])
    if kind == "zip":
        return bool(index) and index[0] < len(source[1]) and _keyed_source(source[1][index[0]], index[1:])
    return False
