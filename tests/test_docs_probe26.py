"""Docs probe (wave 26): what README.md and docs/*.md point a newcomer at must exist, mechanically checked.

Each test reads the docs as they are now and fails when they drift from the repository or the CLI: a relative
link or its #anchor to nothing, a repository path named in the text that is gone, an `nw` option the command's
--help does not list, the Snakemake executor's option list, the engine API's imports, or the showcase graph the
README draws."""

from __future__ import annotations

import dataclasses
import importlib
import re
import shutil
from functools import cache
from pathlib import Path

import pytest

from tests.helpers import REPO, nw

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Paths in the text that name this repository's files (docs also name a user's `scripts/prep.py`, and
# snakemake-compat.md Snakemake's own tests/common.py: those prefixes are not checked).
REPO_PREFIXES = ("examples/", "nixlib/", "docs/", "bench/")


def fenced(text: str) -> tuple[list[list[str]], str]:
    """The fenced code blocks of a Markdown text (as line lists) and the prose outside them, so that a heading
    in a code block (`# host A: …` in a sh block) is not taken for one, and links are read from prose only."""
    blocks: list[list[str]] = []
    prose: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
        else:
            prose.append(line)
    return blocks, "\n".join(prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text (a link's text, no backticks), lower-cased, punctuation
    other than '-' and '_' dropped, each space a '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """The anchors the headings of a Markdown file give."""
    _, prose = fenced(path.read_text())
    return frozenset(slug(h) for h in re.findall(r"^#+ (.*)$", prose, re.M))


def links(path: Path) -> list[tuple[str, str]]:
    """(target, anchor) of each relative Markdown link or image in the prose of `path`."""
    _, prose = fenced(path.read_text())
    found = []
    for target, anchor in re.findall(r"\]\(([^)\s#]*)(?:#([^)\s]*))?\)", prose):
        if not re.match(r"[a-z][a-z0-9+.-]*:", target):
            found.append((target, anchor))
    return found


def test_every_relative_link_and_anchor_in_readme_and_docs_exists() -> None:
    """README.md and docs/*.md link each other, bench/README-*.md, docs/view.png and headings of other pages
    (`slurm.md#snakemake-on-slurm---nixworkflow-backend-slurm`): a renamed file or heading left a link to
    nothing, which no test noticed."""
    broken = []
    count = 0
    for doc in DOCS:
        for target, anchor in links(doc):
            count += 1
            where = (doc.parent / target) if target else doc
            if not where.exists():
                broken.append(f"{doc.relative_to(REPO)}: ({target}) does not exist")
            elif anchor and anchor not in anchors(where):
                broken.append(f"{doc.relative_to(REPO)}: ({target}#{anchor}): no such heading in {where.name}")
    assert count > 20, "the link parser found almost no links: it no longer matches the docs"
    assert not broken, "\n".join(broken)


def test_repository_paths_named_in_readme_and_docs_exist() -> None:
    """The docs send a newcomer to `examples/showcase/experiment_env.py`, `examples/luigi/`, `nixlib/envreads.py`,
    `bench/README-engine.md`, ... by path, outside links: each must be in the repository."""
    missing = []
    named = set()
    pattern = r"(?<![\w/.$-])((?:" + "|".join(REPO_PREFIXES) + r")[\w./-]*[\w/])"
    for doc in DOCS:
        for path in re.findall(pattern, doc.read_text()):
            named.add(path)
            if not (REPO / path).exists():
                missing.append(f"{doc.relative_to(REPO)}: {path}")
    assert {"examples/showcase/experiment_env.py", "examples/luigi/", "nixlib/envreads.py"} <= named, named
    assert not missing, "\n".join(missing)


@cache
def help_text(command: str) -> str:
    """`nw COMMAND --help`, or '' when there is no such command."""
    proc = nw(command, "--help")
    return proc.stdout if proc.returncode == 0 else ""


NW_CALL = re.compile(r"(?:^|[;&|(]\s*|\S+=\S+\s+|^\$ )nw ([a-z]+)([^;&|]*)")


def nw_calls(doc: Path) -> list[tuple[str, str]]:
    """(command, arguments) of each `nw COMMAND …` a reader may copy from `doc`: lines of its code blocks
    (comments cut) and inline code spans of its prose. Arguments after ` -- ` are the experiment's."""
    blocks, prose = fenced(doc.read_text())
    texts = [re.split(r"\s#\s|\s{2,}#", line)[0] for block in blocks for line in block]
    texts += re.findall(r"`([^`]+)`", prose)
    return [(m.group(1), m.group(2).split(" -- ")[0]) for text in texts for m in NW_CALL.finditer(text)]


def test_every_nw_command_and_option_the_docs_show_is_in_its_help() -> None:
    """Each `nw COMMAND -x --option` in README.md and docs/*.md (`nw run --keep-failed`, `nw pin STEP --checkpoint
    NAME`, `nw view --no-browser --port 0`, ...) must be a command whose --help lists that option: a renamed or
    removed option leaves a line that fails with exit 2 when copied."""
    calls = [(doc, command, args) for doc in DOCS for command, args in nw_calls(doc)]
    assert len(calls) > 100, "the parser found few `nw` calls: it no longer matches the docs"
    wrong = []
    for doc, command, args in calls:
        text = help_text(command)
        if not text:
            wrong.append(f"{doc.relative_to(REPO)}: `nw {command}` is no command")
            continue
        for option in re.findall(r"(?<!\S)(--?[A-Za-z][\w-]*)", args):
            if not re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", text):
                wrong.append(f"{doc.relative_to(REPO)}: `nw {command} {option}` is not in `nw {command} --help`")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_readme_lists_exactly_the_snakemake_executor_options() -> None:
    """README: "Options (`--nixworkflow-store`, `-config`, `-env`, …)": the list must be the executor's settings,
    each `--nixworkflow-NAME` for a field of ExecutorSettings (as Snakemake derives the flags), none missing."""
    settings = importlib.import_module("snakemake_executor_nixworkflow.settings")
    fields = {f.name.replace("_", "-") for f in dataclasses.fields(settings.ExecutorSettings)}
    text = (REPO / "README.md").read_text()
    listed = re.search(r"Options \(`--nixworkflow-store`(.*?)\), what keys", text, re.S)
    assert listed, "README's list of the executor's options is gone"
    names = {"store", *re.findall(r"`-([a-z-]+)`", listed.group(1))}
    assert names == fields, f"README lists {sorted(names)}; the executor has {sorted(fields)}"


def test_engine_api_imports_and_dotted_names_exist() -> None:
    """docs/ENGINE-API.md is what an adapter author copies: every `from nixlib… import a, b` line of its code and
    every `nixlib.module.name` it names must import."""
    text = (REPO / "docs" / "ENGINE-API.md").read_text()
    missing = []
    imports = re.findall(r"^from (nixlib[\w.]*) import ([\w, ]+)", text, re.M)
    assert len(imports) >= 5, imports
    for module, names in imports:
        mod = importlib.import_module(module)
        missing += [f"{module}.{n.strip()}" for n in names.split(",") if not hasattr(mod, n.strip())]
    for dotted in set(re.findall(r"\b(nixlib(?:\.[A-Za-z_]\w*)+)", text)):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for attribute in parts[cut:]:
                obj = getattr(obj, attribute, None)
            if obj is None:
                missing.append(dotted)
            break
    assert not missing, f"docs/ENGINE-API.md names what nixlib does not have: {sorted(set(missing))}"


def test_readme_mermaid_graph_is_what_nw_dag_prints_for_the_showcase(tmp_path: Path) -> None:
    """README: "The showcase before its first run, from `nw dag examples/showcase/experiment.py --format mermaid`":
    the block shown must be that command's output on an empty store (a step added to or renamed in the showcase
    left the README's graph stale)."""
    shown = re.search(r"```mermaid\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert shown, "README's mermaid graph is gone"
    showcase = tmp_path / "showcase"
    shutil.copytree(REPO / "examples" / "showcase", showcase)
    proc = nw("dag", str(showcase / "experiment.py"), "--format", "mermaid", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == shown.group(1)


@pytest.mark.parametrize("broken", ["link", "anchor"])
def test_the_link_check_sees_a_broken_link(tmp_path: Path, broken: str) -> None:
    """The checker above, on a page with one good and one broken link, reports the broken one only."""
    (tmp_path / "other.md").write_text("# A heading (with `code`)\n")
    bad = "[x](missing.md)" if broken == "link" else "[x](other.md#no-such-heading)"
    page = tmp_path / "page.md"
    page.write_text(f"see [y](other.md#a-heading-with-code) and {bad}\n```sh\n# not a heading\n```\n")
    problems = [(t, a) for t, a in links(page)
                if not (tmp_path / t).exists() or (a and a not in anchors(tmp_path / t))]
    assert problems == ([("missing.md", "")] if broken == "link" else [("other.md", "no-such-heading")])
