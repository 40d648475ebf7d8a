"""Directory listings whose directory is built from the task's values (`os.listdir(f"raw/{self.day}")`,
`Path(d).rglob("*.csv")`): keyed as what that same call yields when the key is computed (nixlib.codefiles
listing words), so a file added, edited or removed there changes the key."""

from __future__ import annotations

import ast
import types

from luigi_nixworkflow.expressions import is_path, template_of, value_of
from luigi_nixworkflow.scopes import BUDGET, Scope
from luigi_nixworkflow.templates import Template
from nixlib import codefiles


def listings_of(call: ast.Call, scope: Scope) -> list[Template]:
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
    budget = [BUDGET]
    if module and func.attr in ("glob", "iglob") and call.args \
            and any(k.arg == "recursive" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                    for k in call.keywords):
        pattern = template_of(call.args[0], scope, budget)
        return [] if pattern is None else [(*pattern, codefiles.LISTED, "recursive")]
    where, pattern, how = None, None, ""
    if module and func.attr in ("listdir", "scandir", "walk") and len(call.args) == 1:
        where, pattern, how = call.args[0], (), "walk" if func.attr == "walk" else "entries"
    elif not module and func.attr == "iterdir" and not call.args:
        where, pattern, how = func.value, (), "entries"
    elif not module and func.attr in ("glob", "rglob") and len(call.args) == 1 and is_path(func.value, scope, budget):
        where, how = func.value, "pathglob" if func.attr == "glob" else "rglob"
        pattern = template_of(call.args[0], scope, budget)
        pattern = None if pattern == () else pattern
    directory = _directory(where, scope, budget) if where is not None and pattern is not None else None
    if directory is None or pattern is None:
        return []
    return [(*directory, codefiles.LISTED, how, *(("/", *pattern) if pattern else ()))]


def _directory(where: ast.expr, scope: Scope, budget: list[int]) -> Template | None:
    """The template of a listed directory: a path built from the task's values, or the value itself
    (`os.listdir(self.src)`, `os.walk(self.data_dir)`, `os.listdir(Paths().raw)`): a directory parameter is the most
    common listing of all, and template_of takes a bare value for no path (it has no directory or suffix of its
    own), so such a listing was keyed by nothing and an edit there was served stale."""
    directory = template_of(where, scope, budget)
    if directory is not None:
        return directory
    value = value_of(where, scope, budget)
    return None if value is None or value[0] == "c" else (("fs", value),)
