"""Path templates (keying.param_templates): what a template is, and the paths it names for one task.

A task's code builds a read path from its parameters (`f"data/{self.day:%Y-%m-%d}.csv"`); the key must hash the
file that path names for each task, so a template keeps the path as constant text and pieces to format with a task's
values exactly as Python would (formatted, paths). The AST work that finds templates is in class_templates; this
module knows only their shape, so every other module can depend on it."""

from __future__ import annotations

import os
from typing import Any

import luigi
import luigi.configuration

Value = tuple[Any, ...]  # ("p", parameter, "" | "strftime" | "isoformat" | "str", strftime's argument) | ("c", text)
#                          | ("i", source, as "p", argument, loop, index): (a part of) an item of a list/tuple/
#                            interval parameter a loop or comprehension ranges over (`for name in self.names`; source
#                            a parameter, ("enumerate", source, start), ("zip", (source, ...)) or ("items"|"keys"|
#                            "values", source); loop its target's names, index where in the item unpacking puts it:
#                            `for i, (a, b) in enumerate(self.pairs)`: b is ("enumerate", "pairs", 0) at (1, 1))
#                          | ("cfg", section, option, default or None): luigi.cfg's get_config().get(...)
#                          | ("conf", Config class, parameter): a luigi.Config class's value (`Paths().root`)
#                          | ("sub", Value, Value): an item of a value (`self.files["raw"]`, `self.names[0]`)
#                          | ("m", Value, "strftime" | "isoformat" | "str", argument): one applied to an item or a
#                            config value (`self.days[0].strftime("%Y%m%d")`)
Piece = str | tuple[Any, ...]  # a constant, or ("f", Value, conversion, spec) | ("str", Value) (an operand of `+`)
#                                | ("fs", Value) (of `/`, os.path.join, Path()) | ("%", format, single, (Value, ...))
#                                | ("fmt", format, (Value, ...), ((name, Value), ...)) (str.format)
#                                | ("alt", (Template, ...)): one of several (a helper's `if`/`else`, a local assigned
#                                  in two branches); class_templates.of_class keeps each alternative as a template
#                                  of its own
Template = tuple[Piece, ...]
_ITEMS = 10_000  # paths one template may name for one task (its loops' items multiplied): beyond, none is keyed


def alternatives(pieces: Template) -> list[Template]:
    """A template with a choice ("alt") as each template it may be (`if old: return f"old/{d}"`), at most 64."""
    out: list[Template] = [()]
    for p in pieces:
        if isinstance(p, tuple) and p[0] == "alt":
            out = [o + a for o in out for alt in p[1] for a in alternatives(alt)][:64]
        else:
            out = [o + (p,) for o in out]
    return out


def path_like(pieces: Template) -> bool:
    """A template with a piece formatted from the task's parameters or luigi.cfg, and constant text that a path has:
    a directory or a suffix (also in a format string or strftime's argument)."""
    text = [p if isinstance(p, str) else p[1] if p[0] in ("%", "fmt") else p[3] if p[0] == "f" else ""
            for p in pieces]
    values = values_of(pieces)
    text += [v[3] for v in values if v[0] in ("p", "i", "m") and v[2] == "strftime"]
    return any(v[0] != "c" for v in values) and any("/" in t or "." in t for t in text)


def unknown_branches(pieces: Template) -> list[str]:
    """The expressions of the branches of a template's choices that are not known (expressions._choice), nested
    ones too."""
    out: list[str] = []
    for p in pieces:
        if isinstance(p, tuple) and p[0] == "alt":
            out += [*(p[2] if len(p) > 2 else ()), *(u for alt in p[1] for u in unknown_branches(alt))]
    return list(dict.fromkeys(out))


def is_constant(pieces: Template) -> bool:
    return all(isinstance(p, str) for p in pieces)


def paths(task: Any, pieces: Template) -> list[str]:
    """The paths a template names for a task: formatted once, or, where it holds loop variables, once for each item
    (each combination) of the parameters their loops range over (`for name in self.names: open(f"data/{name}.csv")`,
    `for i, name in enumerate(self.names)`, `for a, b in zip(self.xs, self.ys)`); a value its code could not format
    names no file (skipped), nor does a template naming more than _ITEMS."""
    loops = sorted({(v[1], v[4]) for v in values_of(pieces) if v[0] == "i"}, key=repr)
    if not loops:
        try:
            return [formatted(task, pieces)]
        except Exception:  # noqa: BLE001 - a value this template cannot format names no file
            return []
    combinations: list[dict[tuple[Any, str], Any]] = [{}]
    for loop in loops:
        try:
            items = _items(task, loop[0])
        except Exception:  # noqa: BLE001 - not iterable: the loop never ran as written
            return []
        if len(combinations) * len(items) > _ITEMS:
            return []
        combinations = [{**c, loop: item} for c in combinations for item in items]
    out = []
    for c in combinations:
        try:
            out.append(formatted(task, pieces, c))
        except Exception:  # noqa: BLE001
            continue
    return out


def _items(task: Any, source: Any) -> list[Any]:
    """The items a loop over `source` (Value "i") takes for this task, as Python's enumerate(), zip() and a dict's
    items() give them."""
    if isinstance(source, str):
        return list(getattr(task, source))
    if source[0] == "enumerate":
        return list(enumerate(_items(task, source[1]), source[2]))
    if source[0] == "zip":
        return list(zip(*(_items(task, s) for s in source[1]), strict=False))
    whole = getattr(task, source[1]) if isinstance(source[1], str) else dict(_items(task, source[1]))
    return list(getattr(whole, source[0])())  # (items, keys, values)


def values_of(pieces: Template) -> list[Value]:
    out: list[Value] = []
    for p in pieces:
        if isinstance(p, str):
            continue
        out += [p[1]] if p[0] in ("f", "str", "fs") else list(p[3]) if p[0] == "%" else [*p[2], *(v for _, v in p[3])]
    return [one for v in out for one in _flat(v)]


def _flat(value: Value) -> list[Value]:
    """A value and those it is made of (an item's container and key: `self.files[name]` in a loop)."""
    return [value, *_flat(value[1]), *_flat(value[2])] if value[0] == "sub" else \
        [value, *_flat(value[1])] if value[0] == "m" else [value]


def formatted(task: Any, pieces: Template, items: dict[tuple[Any, str], Any] | None = None) -> str:
    """A template formatted with the task's values (and `items`, the item each loop variable stands for), as its
    code formats them (an error where its code's would fail)."""
    return "".join(p if isinstance(p, str) else _piece(task, p, items or {}) for p in pieces)


def _piece(task: Any, piece: tuple[Any, ...], items: dict[tuple[Any, str], Any]) -> str:
    kind = piece[0]
    if kind == "f":
        value = _evaluate(task, piece[1], items)
        value = {"s": str, "r": repr, "a": ascii}.get(piece[2], lambda v: v)(value)
        return format(value, piece[3])
    if kind == "str":
        value = _evaluate(task, piece[1], items)
        if not isinstance(value, str):
            raise TypeError("only a str concatenates")
        return value
    if kind == "fs":
        return os.fspath(_evaluate(task, piece[1], items))
    if kind == "%":
        values = [_evaluate(task, v, items) for v in piece[3]]
        return str(piece[1] % (values[0] if piece[2] else tuple(values)))
    if kind == "fmt":
        return str(piece[1].format(*(_evaluate(task, v, items) for v in piece[2]),
                                   **{k: _evaluate(task, v, items) for k, v in piece[3]}))
    raise ValueError(kind)


def _part(item: Any, index: tuple[int, ...]) -> Any:
    """The part of a loop's item a target unpacks (`for i, (a, b) in ...`: b is item[1][1]); an error where the
    item does not unpack as written, as Python's would be."""
    for i in index:
        item = tuple(item)[i]
    return item


def _evaluate(task: Any, value: Value, items: dict[tuple[Any, str], Any]) -> Any:
    if value[0] == "c":
        return value[1]
    if value[0] == "cfg":
        cfg = luigi.configuration.get_config()
        return cfg.get(value[1], value[2]) if value[3] is None else cfg.get(value[1], value[2], value[3])
    if value[0] == "conf":
        return getattr(value[1](), value[2])
    if value[0] == "sub":
        return _evaluate(task, value[1], items)[_evaluate(task, value[2], items)]
    name, method, argument = value[1:4]
    v = _part(items[(name, value[4])], value[5]) if value[0] == "i" else _evaluate(task, name, items) \
        if value[0] == "m" else getattr(task, name)
    if method == "strftime":
        return v.strftime(argument)
    if method == "isoformat":
        return v.isoformat()
    if method == "str":
        return str(v)
    return v
