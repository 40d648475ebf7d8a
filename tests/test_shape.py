"""The project's shape: nixlib (the engine) imports nothing from the front doors' adapters, and no package has an
import-time circle between its modules (a module's top-level imports, `if TYPE_CHECKING:` blocks aside). Read from
the source with ast, so a violation names the modules."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("nixlib", "luigi_nixworkflow", "snakemake_executor_plugin_nixworkflow", "snakemake_executor_nixworkflow")
ADAPTERS = PACKAGES[1:]


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def top_level_imports(name: str, path: Path, known: set[str], anywhere: bool = False) -> set[str]:
    """The project modules `name` imports when it is imported (not inside functions, classes or TYPE_CHECKING),
    or, `anywhere`, at all (a function's deferred import too)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.parse(path.read_text()).body:
        if not anywhere and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if not anywhere and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for n in ast.walk(node):
            if isinstance(n, ast.Import):
                out.update(a.name for a in n.names)
            elif isinstance(n, ast.ImportFrom):
                base = n.module or ""
                if n.level:
                    parent = package.split(".")[: len(package.split(".")) - n.level + 1]
                    base = ".".join([*parent, *([n.module] if n.module else [])])
                submodules = {f"{base}.{a.name}" for a in n.names} & known
                out.update(submodules or {base})
    return (out & known) - {name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def graph(anywhere: bool = False) -> dict[str, set[str]]:
    found = modules()
    return {name: top_level_imports(name, path, set(found), anywhere) for name, path in found.items()}


def test_the_engine_imports_no_adapter() -> None:
    """Not even inside a function (a deferred import is a dependency all the same)."""
    wrong = {m: sorted(d for d in deps if d.startswith(ADAPTERS)) for m, deps in graph(anywhere=True).items()
             if m.startswith("nixlib")}
    assert {m: d for m, d in wrong.items() if d} == {}


def test_no_import_time_circles() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
