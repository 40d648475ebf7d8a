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

import luigi.configuration

from nixlib import pycode

Value = tuple[Any, ...]  # ("p", parameter, "" | "strftime" | "isoformat" | "str", strftime's argument) | ("c", text)
#                          | ("cfg", section, option, default or None): luigi.cfg's get_config().get(...)
Piece = str | tuple[Any, ...]  # a constant, or ("f", Value, conversion, spec) | ("str", Value) (an operand of `+`)
#                                | ("fs", Value) (of `/`, os.path.join, Path()) | ("%", format, single, (Value, ...))
#                                | ("fmt", format, (Value, ...), ((name, Value), ...)) (str.format)
Template = tuple[Piece, ...]

NOT_OPENED_IN = frozenset({"output", "requires", "complete", "deps", "on_success", "on_failure"})
_PATHS = frozenset({"Path", "PurePath", "PosixPath", "PurePosixPath"})
_FOLDS = {"dirname": os.path.dirname, "abspath": os.path.abspath, "realpath": os.path.realpath,
          "basename": os.path.basename}
_COPIES = frozenset({"copy", "copy2", "copyfile", "copytree", "move", "rename", "replace", "symlink", "link"})
# (shutil's and os's: what they write is args[1])
_BUDGET = 40  # names and helpers followed per template (a cycle, `x = f(x)`, ends there)


class _Scope:
    """What the names of one function mean: its locals assigned once, the parameters a helper was called with (each
    an expression of the caller's scope), and its module's globals."""

    def __init__(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, globs: dict[str, Any], params: frozenset[str],
                 self_name: str | None, bound: dict[str, tuple[ast.expr, _Scope]] | None = None, depth: int = 0):
        self.globs, self.params, self.self_name, self.depth = globs, params, self_name, depth
        self.bound = bound or {}
        stores: dict[str, list[ast.AST]] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                stores.setdefault(node.id, []).append(node)
        arguments = {a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs,
                                     *filter(None, (fn.args.vararg, fn.args.kwarg)))}
        self.locals: dict[str, ast.expr] = {}
        self.unknown = arguments - set(self.bound)
        for node in ast.walk(fn):
            value = node.value if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
                node.value if isinstance(node, ast.AnnAssign) else None
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            if value is not None and isinstance(target, ast.Name) and len(stores.get(target.id, ())) == 1 \
                    and target.id not in arguments:
                self.locals[target.id] = value
        self.unknown |= set(stores) - set(self.locals)


def of_class(cls: type, trees: tuple[ast.Module, ...], classes: list[type]) -> tuple[Template, ...]:
    """The templates of the methods of `classes` (the class and its own bases, `trees` their sources) other than
    output(), requires(), complete() and the like: the outermost expressions that build a path from constants, the
    task's parameters (`self.date`, `self.date.strftime("%Y%m%d")`, `self.date.isoformat()`, `str(self.n)`) and
    luigi.cfg values, by an f-string, `+`, `%`, `.format()`, `os.path.join`, `Path(...) / ...`, through locals
    assigned once and module-level project helpers that return such a path, and that it does not write."""
    params = frozenset(name for name, _ in cls.get_params())
    found: dict[Template, None] = {}
    for c, tree in zip(classes, trees, strict=True):
        module = sys.modules.get(c.__module__)
        globs = vars(module) if module is not None else {}
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for fn in node.body:
                if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) or fn.name in NOT_OPENED_IN:
                    continue
                first = (fn.args.posonlyargs + fn.args.args)[:1]
                scope = _Scope(fn, globs, params, first[0].arg if first else None)
                try:
                    _collect(fn, scope, _written_nodes(fn, scope), found)
                except RecursionError:
                    continue
    return tuple(found)


def _collect(node: ast.AST, scope: _Scope, written: set[int], found: dict[Template, None]) -> None:
    for child in ast.iter_child_nodes(node):
        if id(child) in written:
            continue
        if isinstance(child, ast.JoinedStr | ast.BinOp | ast.Call):
            pieces = _template(child, scope, [_BUDGET])
            if pieces is not None:
                if _path_like(pieces):
                    found[pieces] = None
                continue
        _collect(child, scope, written, found)


def _path_like(pieces: Template) -> bool:
    """A template with a piece formatted from the task's parameters or luigi.cfg, and constant text that a path has:
    a directory or a suffix (also in a format string or strftime's argument)."""
    text, dynamic = [], False
    for p in pieces:
        if isinstance(p, str):
            text.append(p)
            continue
        values = [p[1]] if p[0] in ("f", "str", "fs") else list(p[3]) if p[0] == "%" else \
            [*p[2], *(v for _, v in p[3])]
        text += [p[1]] if p[0] in ("%", "fmt") else [p[3]] if p[0] == "f" else []
        text += [v[3] for v in values if v[0] == "p" and v[2] == "strftime"]
        dynamic = dynamic or any(v[0] != "c" for v in values)
    return dynamic and any("/" in t or "." in t for t in text)


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
    if name in scope.locals:
        return how(scope.locals[name], scope, budget)
    if name in scope.unknown or name not in scope.globs:
        return None
    value = scope.globs[name]
    if isinstance(value, PurePath):
        value = os.fspath(value)
    if not isinstance(value, str):
        return None
    return (value,) if how is _template else ("c", value)


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
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        return _is_path(node.value, scope, budget)
    if isinstance(node, ast.Name):
        if node.id in scope.bound:
            bound, outer = scope.bound[node.id]
            return _is_path(bound, outer, budget)
        if node.id in scope.locals:
            return _is_path(scope.locals[node.id], scope, budget)
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
        return ("p", inner[1], "str", "") if inner is not None and inner[0] == "p" and not inner[2] else \
            inner if inner is not None and inner[0] == "c" else None
    if not isinstance(func, ast.Attribute) or node.keywords:
        return None
    if func.attr in ("strftime", "isoformat"):
        inner = _value(func.value, scope, budget)
        if inner is None or inner[0] != "p" or inner[2]:
            return None
        if func.attr == "isoformat" and not node.args:
            return ("p", inner[1], "isoformat", "")
        if func.attr == "strftime" and len(node.args) == 1 and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and not any(c.isspace() for c in node.args[0].value):
            return ("p", inner[1], "strftime", node.args[0].value)
        return None
    if func.attr == "get" and isinstance(func.value, ast.Call) and not func.value.args \
            and (getattr(func.value.func, "attr", None) or getattr(func.value.func, "id", None)) == "get_config" \
            and len(node.args) in (2, 3) and all(isinstance(a, ast.Constant) and isinstance(a.value, str)
                                                  for a in node.args):
        return ("cfg", node.args[0].value, node.args[1].value,  # type: ignore[attr-defined]
                node.args[2].value if len(node.args) == 3 else None)  # type: ignore[attr-defined]
    return None


def _inlined(node: ast.Call, scope: _Scope, budget: list[int]) -> Template | None:
    """A call of a module-level project function whose body is (a docstring,) assignments and one `return` of a
    template over its parameters (`def raw_path(day): return f"data/{day:%Y-%m-%d}.csv"`), with its arguments."""
    func = node.func
    target: Any = None
    if isinstance(func, ast.Name) and func.id not in scope.bound and func.id not in scope.locals \
            and func.id not in scope.unknown:
        target = scope.globs.get(func.id)
    elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
            and isinstance(scope.globs.get(func.value.id), types.ModuleType) and func.value.id not in scope.unknown:
        target = getattr(scope.globs[func.value.id], func.attr, None)
    if not isinstance(target, types.FunctionType) or scope.depth >= 3:
        return None
    fn = _function_tree(target)
    if fn is None:
        return None
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    if len(node.args) > len(names) or fn.args.vararg or fn.args.kwarg or fn.args.kwonlyargs:
        return None
    bound = {n: (a, scope) for n, a in zip(names, node.args, strict=False)}
    for k in node.keywords:
        if k.arg not in names or k.arg in bound:
            return None
        bound[k.arg] = (k.value, scope)
    defaults = dict(zip(names[len(names) - len(fn.args.defaults):], fn.args.defaults, strict=True))
    inner = _Scope(fn, target.__globals__, frozenset(), None, {}, scope.depth + 1)
    for n in names:
        if n not in bound and n not in defaults:
            return None
        inner.bound[n] = bound.get(n) or (defaults[n], inner)
    inner.unknown -= set(names)
    return _template(fn.body[-1].value, inner, budget)  # type: ignore[attr-defined,arg-type]


@functools.lru_cache(maxsize=256)
def _function_tree(fn: types.FunctionType) -> ast.FunctionDef | None:
    """The parsed function if it is a project helper of the shape _inlined follows, else None."""
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
    if not isinstance(node, ast.FunctionDef) or node.decorator_list or not node.body:
        return None
    body = node.body[1:] if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) \
        else node.body
    if not body or not isinstance(body[-1], ast.Return) or body[-1].value is None \
            or not all(isinstance(s, ast.Assign | ast.AnnAssign) for s in body[:-1]):
        return None
    return node


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
                if isinstance(n, ast.Name) and n.id in scope.locals:
                    out.update(id(m) for m in ast.walk(scope.locals[n.id]))
    return out


def _mode(node: ast.expr | None) -> str | None:
    """An open() mode given as a constant ("w", "rb", "a+"), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value \
            and set(node.value) <= set("rwaxbt+U"):
        return node.value
    return None


def formatted(task: Any, pieces: Template) -> str:
    """A template formatted with the task's values, as its code formats them (an error where its code's would
    fail)."""
    return "".join(p if isinstance(p, str) else _piece(task, p) for p in pieces)


def _piece(task: Any, piece: tuple[Any, ...]) -> str:
    kind = piece[0]
    if kind == "f":
        value = _evaluate(task, piece[1])
        value = {"s": str, "r": repr, "a": ascii}.get(piece[2], lambda v: v)(value)
        return format(value, piece[3])
    if kind == "str":
        value = _evaluate(task, piece[1])
        if not isinstance(value, str):
            raise TypeError("only a str concatenates")
        return value
    if kind == "fs":
        return os.fspath(_evaluate(task, piece[1]))
    if kind == "%":
        values = [_evaluate(task, v) for v in piece[3]]
        return str(piece[1] % (values[0] if piece[2] else tuple(values)))
    if kind == "fmt":
        return str(piece[1].format(*(_evaluate(task, v) for v in piece[2]),
                                   **{k: _evaluate(task, v) for k, v in piece[3]}))
    raise ValueError(kind)


def _evaluate(task: Any, value: Value) -> Any:
    if value[0] == "c":
        return value[1]
    if value[0] == "cfg":
        cfg = luigi.configuration.get_config()
        return cfg.get(value[1], value[2]) if value[3] is None else cfg.get(value[1], value[2], value[3])
    _, name, method, argument = value
    v = getattr(task, name)
    if method == "strftime":
        return v.strftime(argument)
    if method == "isoformat":
        return v.isoformat()
    if method == "str":
        return str(v)
    return v
