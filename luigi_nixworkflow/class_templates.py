"""The path templates of a task class's methods (of_class): every template its methods, and the project
helpers and objects they hand its values to, build and do not write. keying.param_templates formats them per task
(templates.paths) and hashes the files they name."""

from __future__ import annotations

import ast
import sys

from luigi_nixworkflow.callees import as_object, callee_of, inner_scope
from luigi_nixworkflow.expressions import template_of
from luigi_nixworkflow.io_calls import written_nodes
from luigi_nixworkflow.listings import listings_of
from luigi_nixworkflow.other_objects import Built, LiveObject, attribute_of, built_object
from luigi_nixworkflow.scopes import BUDGET, Members, Scope
from luigi_nixworkflow.templates import Template, alternatives, path_like

NOT_OPENED_IN = frozenset({"output", "requires", "complete", "deps", "on_success", "on_failure"})
_WALKS = 64  # helper bodies _followed walks per class (each call that hands one the task's values walks it once)


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
    members = Members(cls)
    methods: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, Scope]] = []
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
                scope = Scope(fn, globs, params, first[0].arg if first else None, members=members)
                members.add(fn, scope)
                if fn.name not in NOT_OPENED_IN:
                    methods.append((fn, scope))
    walks = [_WALKS]
    for fn, scope in methods:
        try:
            _collect(fn, scope, written_nodes(fn, scope), found, walks)
        except RecursionError:
            continue
    return tuple(found)


def _collect(node: ast.AST, scope: Scope, written: set[int], found: dict[Template, None], walks: list[int]) -> None:
    for child in ast.iter_child_nodes(node):
        if id(child) in written:
            continue
        if isinstance(child, ast.withitem) and isinstance(child.context_expr, ast.Call) and scope.depth < 3:
            _implicit(child.context_expr, "__enter__", scope, found, walks)  # (`with Loader(self.region) as x:`)
        if isinstance(child, ast.Call):
            _followed(child, scope, found, walks)
            for listed in listings_of(child, scope):
                for one in alternatives(listed):
                    if path_like(one):
                        found[one] = None
        if isinstance(child, ast.JoinedStr | ast.BinOp | ast.Call) or isinstance(child, ast.Attribute) \
                and attribute_of(child, scope) is not None:  # (`open(self.layout.notes)`: a built object's)
            pieces = template_of(child, scope, [BUDGET])
            if pieces is not None:
                for one in alternatives(pieces):
                    if path_like(one):
                        found[one] = None
                continue
        _collect(child, scope, written, found, walks)


def _followed(call: ast.Call, scope: Scope, found: dict[Template, None], walks: list[int]) -> None:
    """The templates in the body of a project function, a method of the task or a function nested in the method
    that a call hands the task, a parameter, a loop's item or a path to (`self.load(self.names)`, `read_all(self)`,
    `self.read_one(name)` in a loop, `load(name)` defined in run()): its parameters stand for the call's arguments,
    `self` for the task (a loop in the helper over an argument ranges over the parameter it is), and a method of an
    object built from the task's values also without arguments (`spec.read()`: the object holds them). Three calls
    deep at most, _WALKS bodies per class."""
    if scope.depth >= 3 or walks[0] <= 0 or any(isinstance(a, ast.Starred) for a in call.args) \
            or any(k.arg is None for k in call.keywords):
        return
    callee = callee_of(call.func, scope)
    if callee is None:
        _constructed(call, scope, found, walks)
        return
    fn, globs, method, closure = callee
    if not (call.args or call.keywords) and not isinstance(method, Built):
        return
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    if isinstance(method, LiveObject | Built):  # (its self is the object: LiveObject, Built)
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
    inner = inner_scope(fn, globs, scope, bound, self_name, closure)
    if isinstance(method, LiveObject | Built):
        as_object(inner, own, method)
    _collect(fn, inner, written_nodes(fn, inner), found, walks)


def _constructed(call: ast.Call, scope: Scope, found: dict[Template, None], walks: list[int]) -> None:
    """The templates in the `__init__` (and a dataclass's `__post_init__`) of a project class a call makes from the
    task's values (`Loader(self.region)`, whose constructor opens `f"regions/{region}.csv"`): its parameters stand
    for the call's arguments, its self for the object (other_objects.built_object)."""
    built = built_object(call, scope) if call.args or call.keywords else None
    if built is None or built.init is None or built.scope is None:
        return
    walks[0] -= 1
    _collect(built.init, built.scope, written_nodes(built.init, built.scope), found, walks)
    _implicit(call, "__post_init__", scope, found, walks)


def _implicit(call: ast.Call, name: str, scope: Scope, found: dict[Template, None], walks: list[int]) -> None:
    """The templates in a method Python calls for the code (`__post_init__` after a dataclass's `__init__`,
    `__enter__` of `with Loader(self.region) as x:`) of the object a call makes (other_objects.built_object)."""
    callee = callee_of(ast.Attribute(value=call, attr=name, ctx=ast.Load()), scope) if walks[0] > 0 else None
    if callee is None or not isinstance(callee[2], Built):
        return
    walks[0] -= 1
    fn, globs, built = callee[0], callee[1], callee[2]
    inner = inner_scope(fn, globs, scope, {}, None, None)
    as_object(inner, (fn.args.posonlyargs + fn.args.args)[0].arg, built)
    _collect(fn, inner, written_nodes(fn, inner), found, walks)
