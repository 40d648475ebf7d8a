"""Luigi keying gaps closed by luigi25, and probes of legacy pipelines migrated by changing only the base class.

A NixTask's run() reading a file whose path comes from an object it builds was keyed for positional dataclass
fields and plain locals (luigi24), but not for keyword-only dataclass fields (`kw_only=True`, after `KW_ONLY`: only
warned about) nor for `with Loader(...) as x:` locals, a constructor that opens the file itself or an `__enter__`
that does (not even warned about): an edit of that file was served stale. Each test builds through luigi.build
(local scheduler) in this process; each module and class has its own name (Luigi's task register)."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import luigi
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


def _files(files: dict[str, str]) -> None:
    for name, text in files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text)


def _edits(task: luigi.Task, name: str, files: dict[str, str], edits: list[tuple[str, bool]]) -> None:
    """Builds `task` twice (the second served from the store), then once after each edit (a "!" appended to the
    file): its body must run again exactly when the edit says True."""
    _files(files)
    build(task)
    build(task)
    count = 1
    assert runs()[name] == count, "an unchanged re-run must be served from the store"
    for path, again in edits:
        Path(path).write_text(Path(path).read_text() + "!")
        build(task)
        count += again
        assert runs()[name] == count, f"after editing {path}: {'a stale result' if again else 'a needless run'}"


# ---------------------------------------------------------------------------------------------------------------
# Keyword-only dataclass fields

KW_ONLY = '''
import dataclasses
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


@dataclasses.dataclass(kw_only=True)
class Tables25:
    root: str
    kind: str = "daily"

    def table(self):
        return f"{self.root}/{self.kind}/table.csv"


@dataclasses.dataclass
class Spec25:
    region: str
    _: dataclasses.KW_ONLY
    name: str = "main"

    @property
    def path(self):
        return f"specs/{self.region}/{self.name}.json"


class KwOnly25(NixTask):
    region = luigi.Parameter()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tables = Tables25(root=self.region, kind="hourly")

    def output(self):
        return luigi.LocalTarget(f"out/kw_{self.region}.txt")

    def run(self):
        note("KwOnly25")
        spec = Spec25(self.region, name="x")
        text = open(self.tables.table()).read() + open(spec.path).read()
        with self.output().open("w") as f:
            f.write(text)
'''

KW_FILES = {"eu/hourly/table.csv": "h", "specs/eu/x.json": "x", "eu/daily/table.csv": "d",
            "specs/eu/main.json": "m", "specs/us/x.json": "u"}
KW_READ = ["eu/hourly/table.csv", "specs/eu/x.json"]


@pytest.mark.parametrize("edited", KW_READ)
def test_luigi_keys_paths_of_keyword_only_dataclass_fields(load, edited: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """`Tables25(root=self.region, kind="hourly")` of a `kw_only=True` dataclass made in __init__, and
    `Spec25(self.region, name="x")` whose `name` follows `KW_ONLY`, made in run(): both reads were only warned about
    and an edit of the file was served stale. Now keyed, with no warning; the default kind's or name's file and
    another region's are no input (an edit runs nothing)."""
    module = load("kwonly25_" + edited.split("/")[0], KW_ONLY)
    with caplog.at_level(logging.WARNING, logger="luigi-interface"):
        _edits(module.KwOnly25(region="eu"), "KwOnly25", KW_FILES,
               [("eu/daily/table.csv", False), ("specs/eu/main.json", False), ("specs/us/x.json", False),
                (edited, True)])
    assert "cannot follow" not in caplog.text
    assert Path("out/kw_eu.txt").read_text() == "".join(KW_FILES[n] + ("!" if n == edited else "") for n in KW_READ)


# ---------------------------------------------------------------------------------------------------------------
# `with Loader(...) as x:` in run(), an __enter__ and a constructor that open the file

WITH = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Loader25:
    def __init__(self, region, version="v1"):
        self.folder = f"regions/{region}/{version}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def path(self):
        return self.folder + "/table.csv"

    def read(self):
        with open(self.folder + "/notes.txt") as f:
            return f.read()


class Handle25:
    def __init__(self, region):
        self.region = region

    def __enter__(self):
        self.file = open(f"handles/{self.region}.txt")
        return self.file

    def __exit__(self, *exc):
        self.file.close()


class Eager25:
    def __init__(self, region):
        with open(f"eager/{region}.txt") as f:
            self.text = f.read()


class With25(NixTask):
    region = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"out/with_{self.region}.txt")

    def run(self):
        note("With25")
        with Loader25(self.region) as loader:
            text = open(loader.path()).read() + loader.read()
        with Handle25(self.region) as handle:
            text += handle.read()
        text += Eager25(self.region).text
        with self.output().open("w") as f:
            f.write(text)
'''

WITH_FILES = {"regions/eu/v1/table.csv": "t", "regions/eu/v1/notes.txt": "n", "handles/eu.txt": "h",
              "eager/eu.txt": "e", "regions/eu/v2/table.csv": "w", "regions/us/v1/notes.txt": "u",
              "handles/us.txt": "o", "eager/us.txt": "p"}
WITH_READ = ["regions/eu/v1/table.csv", "regions/eu/v1/notes.txt", "handles/eu.txt", "eager/eu.txt"]


@pytest.mark.parametrize("edited", WITH_READ)
def test_luigi_keys_paths_of_a_with_local_an_enter_and_a_constructor(load, edited: str,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """`with Loader25(self.region) as loader: open(loader.path())` and `loader.read()` (its `__enter__` returns
    self), `with Handle25(self.region) as handle` whose `__enter__` opens the file, and `Eager25(self.region)` whose
    `__init__` reads it: none was keyed nor warned about, so an edit of the file was served stale. Now each is keyed;
    another region's or version's file is no input."""
    module = load("with25_" + edited.split("/")[0] + "_" + edited.rsplit(".", 1)[1], WITH)
    with caplog.at_level(logging.WARNING, logger="luigi-interface"):
        _edits(module.With25(region="eu"), "With25", WITH_FILES,
               [("regions/eu/v2/table.csv", False), ("regions/us/v1/notes.txt", False), ("handles/us.txt", False),
                ("eager/us.txt", False), (edited, True)])
    assert "cannot follow" not in caplog.text
    assert Path("out/with_eu.txt").read_text() == "".join(
        WITH_FILES[n] + ("!" if n == edited else "") for n in WITH_READ)


UNSAFE_WITH = '''
import luigi
from luigi_nixworkflow import NixTask


class Opened25:
    def __init__(self, region):
        self.folder = f"regions/{region}"

    def __enter__(self):
        return Opened25("elsewhere")

    def __exit__(self, *exc):
        return False

    def path(self):
        return self.folder + "/table.csv"


class UnsafeWith25(NixTask):
    region = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget("out/unsafe_with.txt")

    def run(self):
        with Opened25(self.region) as other:
            text = open(other.path()).read()
        with self.output().open("w") as f:
            f.write(text)
'''


def test_luigi_warns_of_a_with_local_whose_enter_returns_another_object(load,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """`with Opened25(self.region) as other` where `__enter__` returns a different object: following the
    constructor would key regions/eu/table.csv while the task reads regions/elsewhere/table.csv, so the read is
    warned about with its line instead (it was silent)."""
    module = load("unsafewith25", UNSAFE_WITH)
    _files({"regions/elsewhere/table.csv": "e", "regions/eu/table.csv": "r"})
    with caplog.at_level(logging.WARNING, logger="luigi-interface"):
        build(module.UnsafeWith25(region="eu"))
    line = next(i for i, text in enumerate(UNSAFE_WITH.splitlines(), 1) if "open(other.path())" in text)
    assert Path("out/unsafe_with.txt").read_text() == "e"
    assert f"UnsafeWith25.run() line {line}: other.path()" in caplog.text, caplog.text
