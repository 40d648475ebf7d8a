"""Legacy Luigi pipelines migrated by changing only the base class (luigi.Task -> NixTask), probed through
luigi.build: a directory parameter listed with os.listdir / os.walk (the commonest way a public pipeline reads "every
file in a folder") was keyed by nothing, so an edited, added or removed file there was served stale (os.listdir
with a warning, os.walk silently). Each test builds in this process (tests.luigi_run.build); each module and class
has its own name (Luigi's task register)."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.luigi_run import build, runs


@pytest.fixture
def load() -> Iterator[object]:
    """Writes a module into the working directory and imports it (dropped from sys.modules afterwards)."""
    names: list[str] = []
    sys.path.insert(0, str(Path.cwd()))

    def _load(name: str, source: str) -> ModuleType:
        Path(f"{name}.py").write_text(source)
        names.append(name)
        return importlib.import_module(name)

    yield _load
    sys.path.remove(str(Path.cwd()))
    for name in names:
        sys.modules.pop(name, None)


LISTINGS = '''
import os

import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class ListDir25b(NixTask):
    src = luigi.Parameter(default="in1")

    def output(self):
        return luigi.LocalTarget("out/listdir.txt")

    def run(self):
        note("ListDir25b")
        text = ""
        for name in sorted(os.listdir(self.src)):
            if name.endswith(".txt"):
                with open(os.path.join(self.src, name)) as f:
                    text += f.read()
        with self.output().open("w") as f:
            f.write(text)


class Walk25b(NixTask):
    src = luigi.Parameter(default="in2")

    def output(self):
        return luigi.LocalTarget("out/walk.txt")

    def run(self):
        note("Walk25b")
        text = ""
        for root, _dirs, files in sorted(os.walk(self.src)):
            for name in sorted(files):
                with open(os.path.join(root, name)) as f:
                    text += f.read()
        with self.output().open("w") as f:
            f.write(text)


class All25b(luigi.WrapperTask):
    def requires(self):
        return [ListDir25b(), Walk25b()]
'''


@pytest.mark.parametrize("edit", ["in1/a.txt", "in1/new.txt", "-in1/b.txt", "in2/sub/deep.txt", "in2/new.txt"])
def test_luigi_keys_files_of_a_listed_directory_parameter(load, edit: str, caplog: pytest.LogCaptureFixture) -> None:
    """`os.listdir(self.src)` and `os.walk(self.src)` of a directory parameter: editing, adding or removing a file
    there ("-": removed) re-runs exactly the task that lists it, and the first build warns of nothing (the listing
    keys each file the loop opens). Old code: both served stale (`os.listdir` after a warning, `os.walk` silently)."""
    for name, text in {"in1/a.txt": "a", "in1/b.txt": "b", "in2/top.txt": "t", "in2/sub/deep.txt": "d"}.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text)
    module = load(f"listings25b_{abs(hash(edit))}", LISTINGS)
    with caplog.at_level(logging.WARNING, logger="luigi-interface"):
        build(module.All25b())
    build(module.All25b())
    assert runs() == {"ListDir25b": 1, "Walk25b": 1}, "an unchanged re-run must be served from the store"
    path = Path(edit.lstrip("-"))
    if edit.startswith("-"):
        path.unlink()
    else:
        path.write_text((path.read_text() if path.exists() else "") + "!")
    build(module.All25b())
    listed = "ListDir25b" if edit.lstrip("-").startswith("in1/") else "Walk25b"
    assert runs()[listed] == 2, f"after changing {edit}: a stale result"
    assert runs()[({"ListDir25b", "Walk25b"} - {listed}).pop()] == 1, f"after changing {edit}: a needless run"
    expected = "".join(p.read_text() for p in sorted(Path("in1").glob("*.txt"))) if listed == "ListDir25b" else None
    if expected is not None:
        assert Path("out/listdir.txt").read_text() == expected
    assert not [r for r in caplog.records if "cannot follow" in r.getMessage()]
