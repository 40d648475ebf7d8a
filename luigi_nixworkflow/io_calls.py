"""Which calls read and which write a path (`open(p)` vs `open(p, "w")`, `df.to_csv(p)`, `shutil.copy`):
a path the task writes is its output, not an input to key, and a read is what the unfollowed warning looks at."""

from __future__ import annotations

import ast

from luigi_nixworkflow.scopes import Scope
from nixlib import pycode

_COPIES = frozenset({"copy", "copy2", "copyfile", "copytree", "move", "rename", "replace", "symlink", "link"})
# (shutil's and os's: what they write is args[1])
_READERS = frozenset({"open", "read_text", "read_bytes", "read_csv", "read_table", "read_parquet", "read_json",
                      "read_excel", "read_pickle", "read_feather", "load", "loadtxt", "genfromtxt", "safe_load"})


def read_path(call: ast.Call) -> ast.expr | None:
    """The path a call reads: `open(p)` (not to write), `p.open()`, `p.read_text()`, `pd.read_csv(p)`, …; else
    None."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in _READERS or any(isinstance(a, ast.Starred) for a in call.args):
        return None
    if isinstance(func, ast.Attribute) and name in ("open", "read_text", "read_bytes") and (
            name != "open" or not call.args or open_mode(call.args[0]) is not None):
        mode = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "mode"), None)
        return None if set(open_mode(mode) or "") & set("wax") else func.value
    mode = call.args[1] if name == "open" and len(call.args) > 1 else \
        next((k.value for k in call.keywords if k.arg == "mode"), None)
    if set(open_mode(mode) or "") & set("wax") or not call.args:
        return None
    return call.args[0]


def written_nodes(fn: ast.AST, scope: Scope) -> set[int]:
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
            method = isinstance(call.func, ast.Attribute) and (not call.args or open_mode(first) is not None)
            mode = first if method else call.args[1] if len(call.args) > 1 else None
            mode = mode or next((k.value for k in call.keywords if k.arg == "mode"), None)
            if set(open_mode(mode) or "") & set("wax"):
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


def open_mode(node: ast.expr | None) -> str | None:
    """An open() mode given as a constant ("w", "rb", "a+"), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value \
            and set(node.value) <= set("rwaxbt+U"):
        return node.value
    return None
