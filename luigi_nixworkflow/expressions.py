"""The template of one expression (template_of) and the values formatted into it (value_of): the shapes
Python builds a path with (f-strings, `+`, `%`, `.format()`, os.path.join, pathlib's `/`) over the task's parameters,
luigi.cfg and Config values, locals, attributes and project helpers that return a path. Anything else is None, so a
path is keyed only as exactly as it can be formatted again."""

from __future__ import annotations

import ast
import os
from pathlib import PurePath
from typing import Any

import luigi

from luigi_nixworkflow.callees import as_object, callee_of, inner_scope
from luigi_nixworkflow.other_objects import Built, LiveObject, attribute_of
from luigi_nixworkflow.project_functions import inlinable
from luigi_nixworkflow.scopes import Scope, global_of, member_of
from luigi_nixworkflow.templates import Piece, Template, Value, is_constant

_PATHS = frozenset({"Path", "PurePath", "PosixPath", "PurePosixPath"})
_FOLDS = {"dirname": os.path.dirname, "abspath": os.path.abspath, "realpath": os.path.realpath,
          "basename": os.path.basename}


def is_io(node: ast.expr, scope: Scope) -> bool:
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


def template_of(node: ast.expr, scope: Scope, budget: list[int]) -> Template | None:
    """A path template's pieces, or None: anything but the shapes class_templates.of_class reads."""
    budget[0] -= 1
    if budget[0] < 0:
        return None
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str) and not any(c.isspace() for c in node.value):
            return (node.value,) if node.value else ()
        return None
    if isinstance(node, ast.Name):
        return _name(node.id, scope, budget, template_of)
    if isinstance(node, ast.JoinedStr):
        return _fstring(node, scope, budget)
    if isinstance(node, ast.BinOp):
        return _operator(node, scope, budget)
    if isinstance(node, ast.IfExp):  # (`a if c else b`, a property's several returns: scopes._either)
        return _choice([template_of(node.body, scope, budget), template_of(node.orelse, scope, budget)],
                       [node.body, node.orelse], scope)
    member = member_of(node, scope)
    member = attribute_of(node, scope) if member is None else member  # (`self.layout.notes`, `spec.path`)
    if isinstance(member, tuple):
        return template_of(member[0], member[1], budget)
    if isinstance(member, str | PurePath):
        return (os.fspath(member),) if os.fspath(member) else ()
    if isinstance(node, ast.Attribute) and node.attr == "parent" and is_path(node.value, scope, budget):
        inner = template_of(node.value, scope, budget)
        return (os.path.dirname("".join(inner)),) if inner is not None and is_constant(inner) else None
    if isinstance(node, ast.Call):
        return _call(node, scope, budget)
    return None


def _name(name: str, scope: Scope, budget: list[int], how: Any) -> Any:
    """What `how` (template_of or value_of) makes of a name: a helper's parameter, a local assigned once, or a
    module-level string or path."""
    if name in scope.bound:
        node, outer = scope.bound[name]
        return how(node, outer, budget)
    if name in scope.loops:
        source, loop, index = scope.loops[name]
        return ("i", source, "", "", loop, index) if how is value_of else None
    if name in scope.locals:
        values = scope.locals[name]
        if len(values) == 1:
            return how(values[0], scope, budget)
        if how is not template_of:
            return None
        return _choice([template_of(v, scope, budget) for v in values], values, scope)
    if name in scope.unknown or name not in scope.globs:
        return None
    value = scope.globs[name]
    if isinstance(value, PurePath):
        value = os.fspath(value)
    if not isinstance(value, str):
        return None
    return (value,) if how is template_of else ("c", value)


def _choice(options: list[Template | None], nodes: list[ast.expr], scope: Scope) -> Template | None:
    """One of several templates (a local assigned in two branches, a helper's returns): those that are templates.
    A path from the others is not known, so it is not keyed: the choice names their expressions (a third item of
    "alt") for unfollowed.unfollowed() to warn of, unless it is a constant (`return None`) or the task's parameter
    or input as it is (keyed as such: is_io)."""
    known = list(dict.fromkeys(o for o in options if o is not None))
    unknown = tuple(dict.fromkeys(ast.unparse(n) for o, n in zip(options, nodes, strict=True)
                                  if o is None and not isinstance(n, ast.Constant) and not is_io(n, scope)))
    if not known:
        return None
    if unknown:
        return (("alt", tuple(known), unknown),)
    return known[0] if len(known) == 1 else (("alt", tuple(known)),)


def _fstring(node: ast.JoinedStr, scope: Scope, budget: list[int]) -> Template | None:
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
        value = value_of(v.value, scope, budget)
        if value is not None:
            pieces.append(("f", value, conversion, spec))
            continue
        inner = template_of(v.value, scope, budget)  # (a local or a helper's path, put in as it is: `f"{root}/x"`)
        if inner is None or spec or conversion not in ("", "s"):
            return None
        pieces += inner
    return tuple(pieces)


def _operand(node: ast.expr, scope: Scope, budget: list[int], kind: str) -> Template | None:
    """An operand: a template, or a value taken as it is (`"data/" + self.name`: kind "str"; `Path("d") /
    self.name`, `os.path.join("d", self.name)`: kind "fs")."""
    value = value_of(node, scope, budget)
    if value is not None:
        return (value[1],) if value[0] == "c" else ((kind, value),)
    return template_of(node, scope, budget)


def _operator(node: ast.BinOp, scope: Scope, budget: list[int]) -> Template | None:
    if isinstance(node.op, ast.Add):
        left, right = _operand(node.left, scope, budget, "str"), _operand(node.right, scope, budget, "str")
        return None if left is None or right is None else left + right
    if isinstance(node.op, ast.Div):
        if not is_path(node.left, scope, budget):
            return None
        left, right = template_of(node.left, scope, budget), _operand(node.right, scope, budget, "fs")
        return None if left is None or right is None else (*left, "/", *right)
    if isinstance(node.op, ast.Mod):
        fmt = template_of(node.left, scope, budget)
        if fmt is None or not is_constant(fmt):
            return None
        items = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
        values = [value_of(v, scope, budget) for v in items]
        if any(v is None for v in values):
            return None
        return (("%", "".join(fmt), not isinstance(node.right, ast.Tuple), tuple(values)),)
    return None


def _call(node: ast.Call, scope: Scope, budget: list[int]) -> Template | None:
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
        inner = template_of(node.args[0], scope, budget)  # os.path.dirname(__file__): folded, as it is constant
        return (_FOLDS[name]("".join(inner)),) if inner is not None and is_constant(inner) else None
    if name in ("resolve", "absolute") and isinstance(func, ast.Attribute) and not node.args \
            and is_path(func.value, scope, budget):
        inner = template_of(func.value, scope, budget)
        return (os.path.realpath("".join(inner)),) if inner is not None and is_constant(inner) else None
    if name == "format" and isinstance(func, ast.Attribute):
        fmt = template_of(func.value, scope, budget)
        if fmt is None or not is_constant(fmt):
            return None
        args = tuple(value_of(a, scope, budget) for a in node.args)
        kwargs = tuple((k.arg, value_of(k.value, scope, budget)) for k in node.keywords)
        if any(a is None for a in args) or any(v is None for _, v in kwargs):
            return None
        return (("fmt", "".join(fmt), args, kwargs),)
    if name == "str" and isinstance(func, ast.Name) and len(node.args) == 1 and not node.keywords:
        value = value_of(node.args[0], scope, budget)
        if value is not None:
            return (value[1],) if value[0] == "c" else (("f", value, "s", ""),)
        return template_of(node.args[0], scope, budget)
    value = value_of(node, scope, budget)  # self.date.strftime("data/%Y.csv"), luigi.cfg's value
    if value is not None:
        return (value[1],) if value[0] == "c" else (("f", value, "", ""),)
    return _inlined(node, scope, budget)


def _joined(args: list[ast.expr], scope: Scope, budget: list[int]) -> Template | None:
    joined: list[Piece] = []
    for i, a in enumerate(args):
        part = _operand(a, scope, budget, "fs")
        if part is None:
            return None
        joined += [*(["/"] if i else []), *part]
    return tuple(joined)


def is_path(node: ast.expr, scope: Scope, budget: list[int]) -> bool:
    """Whether `node` is a pathlib path (the left of `/`): Path(...), a `/` of one, its `.parent`, `.resolve()`, a
    local or module-level one."""
    budget[0] -= 1
    if budget[0] < 0:
        return False
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("resolve", "absolute"):
            return is_path(func.value, scope, budget)
        return (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)) in _PATHS
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return is_path(node.left, scope, budget)
    if isinstance(node, ast.IfExp):
        return is_path(node.body, scope, budget) and is_path(node.orelse, scope, budget)
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        return is_path(node.value, scope, budget)
    member = member_of(node, scope)
    member = attribute_of(node, scope) if member is None else member
    if member is not None:
        return is_path(member[0], member[1], budget) if isinstance(member, tuple) else isinstance(member, PurePath)
    if isinstance(node, ast.Name):
        if node.id in scope.bound:
            bound, outer = scope.bound[node.id]
            return is_path(bound, outer, budget)
        if node.id in scope.locals:
            return all(is_path(v, scope, budget) for v in scope.locals[node.id])
        return node.id not in scope.unknown and isinstance(scope.globs.get(node.id), PurePath)
    return False


def value_of(node: ast.expr, scope: Scope, budget: list[int]) -> Value | None:
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
    member = member_of(node, scope)
    if isinstance(member, tuple):  # (`self.root = Paths().root` in __init__)
        return value_of(member[0], member[1], budget)
    if isinstance(member, str):
        return ("c", member) if not any(c.isspace() for c in member) else None
    if isinstance(node, ast.Attribute):
        config = _config_class(node.value, scope, budget)
        return ("conf", config, node.attr) if config is not None and node.attr in dict(config.get_params()) \
            else None
    if isinstance(node, ast.Name):
        return _name(node.id, scope, budget, value_of)
    if isinstance(node, ast.Constant):
        return ("c", node.value) if isinstance(node.value, str) and not any(c.isspace() for c in node.value) \
            else None
    if not isinstance(node, ast.Call) or any(isinstance(a, ast.Starred) for a in node.args):
        return None
    func = node.func
    if isinstance(func, ast.Name) and func.id == "str" and len(node.args) == 1 and not node.keywords:
        inner = value_of(node.args[0], scope, budget)
        if inner is not None and inner[0] in ("sub", "conf", "cfg", "m"):
            return ("m", inner, "str", "")
        return (inner[0], inner[1], "str", "", *inner[4:]) if inner is not None and inner[0] in ("p", "i") \
            and not inner[2] else inner if inner is not None and inner[0] == "c" else None
    if not isinstance(func, ast.Attribute) or node.keywords:
        return None
    if func.attr in ("strftime", "isoformat"):
        inner = value_of(func.value, scope, budget)
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


def _indexed(node: ast.Subscript, scope: Scope, budget: list[int]) -> Value | None:
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
    container = value_of(node.value, scope, budget)
    if container is None or container[0] == "c":
        return None
    index = ("c", node.slice.value) if isinstance(node.slice, ast.Constant) \
        and isinstance(node.slice.value, int | str) else value_of(node.slice, scope, budget)
    return None if index is None else ("sub", container, index)


def _config_class(node: ast.expr, scope: Scope, budget: list[int]) -> type | None:
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
    member = member_of(node, scope)  # (`self.paths = Paths()` in __init__, `paths = Paths()` in the class)
    if isinstance(member, tuple):
        return _config_class(member[0], member[1], budget)
    if isinstance(member, luigi.Config):
        return type(member)
    if not isinstance(node, ast.Call) or node.args or node.keywords:
        return None
    target = global_of(node.func, scope)
    return target if isinstance(target, type) and issubclass(target, luigi.Config) else None


def _inlined(node: ast.Call, scope: Scope, budget: list[int]) -> Template | None:
    """A call of a project function (module-level, decorated with functools.wraps or lru_cache, or nested in the
    method) whose body is (a docstring,) assignments, calls and `if`/`else` around `return`s of templates over its
    parameters (`def raw_path(day): return f"data/{day:%Y-%m-%d}.csv"`), with its arguments: each path it may
    return (those it returns from elsewhere are not known)."""
    callee = callee_of(node.func, scope) if scope.depth < 3 else None
    if callee is None or callee[2] is True or not inlinable(callee[0]):
        return None
    fn, globs, method, closure = callee
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    own = names.pop(0) if isinstance(method, LiveObject | Built) else None
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
    inner = Scope(fn, globs, frozenset(), None, {}, scope.depth + 1) if closure is None else \
        inner_scope(fn, globs, scope, {}, None, closure)
    for n in names:
        inner.bound[n] = bound.get(n) or (defaults[n], inner)
    inner.unknown -= set(names)
    if own is not None:
        as_object(inner, own, method)  # type: ignore[arg-type]
    returns = [r.value for r in ast.walk(fn) if isinstance(r, ast.Return) and r.value is not None]
    return _choice([template_of(r, inner, budget) for r in returns], returns, inner)  # (each path it may return)
