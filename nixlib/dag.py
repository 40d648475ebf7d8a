"""`nw dag`: an experiment's graph as Graphviz dot, Mermaid or JSON, each step marked with its state against
the store (cached, to run, pinned, running elsewhere), for CI logs, docs and `dot -Tsvg`. Nothing runs."""

from __future__ import annotations

import json

from nixlib.plan import CACHED, PINNED, PINNED_MISSING, RUN, RUNNING, StepState

FORMATS = ("dot", "mermaid", "json")
_COLOURS = {CACHED: "#c8e6c9", RUN: "#fff59d", PINNED: "#bbdefb", PINNED_MISSING: "#ffcdd2", RUNNING: "#ffe0b2"}
_CLASSES = {CACHED: "cached", RUN: "torun", PINNED: "pinned", PINNED_MISSING: "missing", RUNNING: "running"}


def render(steps: list[StepState], fmt: str) -> str:
    """The graph of `steps` (dependencies first) in `fmt`."""
    return {"dot": _dot, "mermaid": _mermaid, "json": _json}[fmt](steps)


def _dot(steps: list[StepState]) -> str:
    lines = ["digraph nixworkflow {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontname="sans"];']
    for s in steps:
        label = f'"{_escape(s.name)}\\n{_escape(s.state)}"'  # \n: a line break in the node
        lines.append(f"  {_q(s.name)} [label={label}, fillcolor={_q(_COLOURS[s.state])}];")
    for s in steps:
        lines += [f"  {_q(u)} -> {_q(s.name)};" for u in s.upstream]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    """A dot double-quoted string."""
    return f'"{_escape(text)}"'


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _mermaid(steps: list[StepState]) -> str:
    ids = {s.name: f"s{n}" for n, s in enumerate(steps)}
    lines = ["flowchart LR"]
    for s in steps:
        text = f"{_mermaid_text(s.name)}<br/>{s.state}"
        lines.append(f'  {ids[s.name]}["{text}"]:::{_CLASSES[s.state]}')
    for s in steps:
        lines += [f"  {ids[u]} --> {ids[s.name]}" for u in s.upstream if u in ids]
    lines += [f"  classDef {cls} fill:{_COLOURS[state]},stroke:#555" for state, cls in _CLASSES.items()]
    return "\n".join(lines) + "\n"


def _mermaid_text(name: str) -> str:
    """A step name as Mermaid label text: Mermaid renders labels as HTML, so `<`, `>` and `&` are written as its
    entity codes (`#lt;`...), and `#` itself too, which starts one."""
    for char, code in (("#", "#35;"), ("&", "#amp;"), ("<", "#lt;"), (">", "#gt;"), ('"', "#quot;")):
        name = name.replace(char, code)
    return name


def _json(steps: list[StepState]) -> str:
    nodes = [s.as_json() for s in steps]
    edges = [{"from": u, "to": s.name} for s in steps for u in s.upstream]
    return json.dumps({"nodes": nodes, "edges": edges}, indent=2, sort_keys=True) + "\n"
