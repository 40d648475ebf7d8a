"""Luigi keying gaps closed by luigi24: a NixTask's run() reading a file whose path comes from an object (a dataclass
built from the task's parameters in `__init__`, an attribute or property of such an object, an object made as a
local in run()) was only warned about, and an edit of that file was served stale. Cases still not followed (a local
object the code changes, hands on, or a dataclass field with a factory default) must stay warned about. Each test
runs the real `luigi` command; each has its own module and class names (Luigi's pid lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.luigi_run import luigi_cli, runs


def _files(files: dict[str, str]) -> None:
    for name, text in files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text)


def _edits(module: str, source: str, task: list[str], files: dict[str, str],
           edits: list[tuple[str, bool]]) -> list[str]:
    """Runs `task` twice (the second run served from the store), then once after each edit (a "!" added to the
    file): the task must run again exactly when the edit says True. The luigi outputs."""
    Path(f"{module}.py").write_text(source)
    _files(files)
    outs = [luigi_cli("--module", module, *task), luigi_cli("--module", module, *task)]
    count = 1
    assert runs()[task[0]] == count, "an unchanged re-run must be served from the store"
    for name, again in edits:
        Path(name).write_text(Path(name).read_text() + "!")
        outs.append(luigi_cli("--module", module, *task))
        count += again
        assert runs()[task[0]] == count, f"after editing {name}: {'a stale result' if again else 'a needless run'}"
    return outs


def _output(files: dict[str, str], order: list[str], edited: str) -> str:
    return "".join(files[n] + ("!" if n == edited else "") for n in order)


# ---------------------------------------------------------------------------------------------------------------
# (a) A dataclass the task's __init__ builds from its parameters (its method and property give the path), and an
#     attribute of a plain object built there

BUILT = '''
import dataclasses
import os
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


@dataclasses.dataclass
class Layout:
    root: str
    kind: str = "daily"
    suffix = ".csv"

    def path_for(self, day):
        return os.path.join(self.root, self.kind, f"{day:%Y-%m-%d}{self.suffix}")

    @property
    def notes(self):
        return f"{self.root}/notes/{self.kind}.md"


class Plain:
    def __init__(self, root):
        self.base = os.path.join(root, "plain")


class Data24(NixTask):
    root = luigi.Parameter()
    day = luigi.DateParameter()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.layout = Layout(self.root, kind="hourly")
        self.plain = Plain(self.root)

    def output(self):
        return luigi.LocalTarget(f"out/data_{self.root}.txt")

    def run(self):
        note("Data24")
        text = open(self.layout.path_for(self.day)).read() + open(self.layout.notes).read()
        text += open(os.path.join(self.plain.base, f"{self.day}.txt")).read()
        with self.output().open("w") as f:
            f.write(text)
'''

BUILT_FILES = {"r/hourly/2024-01-02.csv": "h", "r/notes/hourly.md": "n", "r/plain/2024-01-02.txt": "p",
               "r/hourly/2024-01-03.csv": "o", "r/daily/2024-01-02.csv": "d", "r/notes/daily.md": "m"}
BUILT_READ = ["r/hourly/2024-01-02.csv", "r/notes/hourly.md", "r/plain/2024-01-02.txt"]


@pytest.mark.parametrize("edited", BUILT_READ)
def test_luigi_keys_paths_of_a_dataclass_and_an_attribute_of_an_object_made_in_init(edited: str) -> None:
    """`self.layout = Layout(self.root, kind="hourly")` of a @dataclass (its `__init__` is generated: no source),
    `self.layout.path_for(self.day)` and the property `self.layout.notes`, and `self.plain.base` of a plain object:
    each file was only warned about, and an edit of it was served stale. Now keyed, with no warning; another day's
    file or the other kind's is no input (its edit runs nothing)."""
    module = "data24_" + edited.split("/")[1]
    outs = _edits(module, BUILT, ["Data24", "--root", "r", "--day", "2024-01-02"], BUILT_FILES,
                  [("r/hourly/2024-01-03.csv", False), ("r/daily/2024-01-02.csv", False),
                   ("r/notes/daily.md", False), (edited, True)])
    assert "cannot follow" not in outs[0]
    assert Path("out/data_r.txt").read_text() == _output(BUILT_FILES, BUILT_READ, edited)


# ---------------------------------------------------------------------------------------------------------------
# (b) An object made as a local variable in run()

LOCAL = '''
import dataclasses
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Loader:
    def __init__(self, region, version="v1"):
        self.folder = f"regions/{region}/{version}"

    def path(self):
        return self.folder + "/table.csv"


@dataclasses.dataclass(frozen=True)
class Spec:
    region: str
    name: str

    @property
    def path(self):
        return f"specs/{self.region}/{self.name}.json"

    def read(self):
        with open(f"specs/{self.region}/{self.name}.txt") as f:
            return f.read()


class Local24(NixTask):
    region = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"out/local_{self.region}.txt")

    def run(self):
        note("Local24")
        loader = Loader(self.region)
        spec = Spec(self.region, name="main")
        text = open(loader.path()).read() + open(spec.path).read() + spec.read()
        with self.output().open("w") as f:
            f.write(text)
'''

LOCAL_FILES = {"regions/eu/v1/table.csv": "t", "specs/eu/main.json": "j", "specs/eu/main.txt": "x",
               "regions/us/v1/table.csv": "u", "regions/eu/v2/table.csv": "w", "specs/eu/other.json": "o"}
LOCAL_READ = ["regions/eu/v1/table.csv", "specs/eu/main.json", "specs/eu/main.txt"]


@pytest.mark.parametrize("edited", LOCAL_READ)
def test_luigi_keys_paths_of_an_object_made_as_a_local_in_run(edited: str) -> None:
    """`loader = Loader(self.region); open(loader.path())` and `spec = Spec(self.region, name="main")` (a frozen
    dataclass: its property and a method that opens the file) in run(): each was only warned about, and an edit of
    the file was served stale. Now keyed, with no warning; another region's or version's file is no input."""
    module = "local24_" + edited.split("/")[0] + "_" + edited.rsplit(".", 1)[1]
    outs = _edits(module, LOCAL, ["Local24", "--region", "eu"], LOCAL_FILES,
                  [("regions/us/v1/table.csv", False), ("regions/eu/v2/table.csv", False),
                   ("specs/eu/other.json", False), (edited, True)])
    assert "cannot follow" not in outs[0]
    assert Path("out/local_eu.txt").read_text() == _output(LOCAL_FILES, LOCAL_READ, edited)


# ---------------------------------------------------------------------------------------------------------------
# Still warned: what cannot be followed safely

UNSAFE = '''
import dataclasses
import luigi
from luigi_nixworkflow import NixTask


class Loader:
    def __init__(self, region):
        self.folder = f"regions/{region}"

    def path(self):
        return self.folder + "/table.csv"


def tweak(loader):
    loader.folder = "elsewhere"


@dataclasses.dataclass
class Spec:
    region: str
    parts: list = dataclasses.field(default_factory=list)
    folder: str = "specs"

    def __post_init__(self):
        self.folder = self.folder + "/" + self.region

    def path(self):
        return f"{self.region}/{self.parts}.json"

    def other(self):
        return f"{self.folder}/{self.region}.json"


class Unsafe24(NixTask):
    region = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget("out/unsafe.txt")

    def run(self):
        changed = Loader(self.region)
        changed.folder = "moved"
        handed = Loader(self.region)
        tweak(handed)
        spec = Spec(self.region)
        text = open(changed.path()).read() + open(handed.path()).read()
        text += open(spec.path()).read() + open(spec.other()).read()
        with self.output().open("w") as f:
            f.write(text)
'''


def test_luigi_still_warns_of_objects_it_cannot_follow_safely() -> None:
    """A local object whose attribute run() sets (`changed.folder = "moved"`), one handed to a function that may
    change it (`tweak(handed)`), a dataclass field with a factory default (`parts`) and one its `__post_init__`
    sets again (`folder`): following them would key the wrong file (a stale result), so each read is named in the
    warning, with the line, as before."""
    Path("unsafe24.py").write_text(UNSAFE)
    _files({"moved/table.csv": "m", "elsewhere/table.csv": "e", "eu/[].json": "s", "specs/eu/eu.json": "x"})
    out = luigi_cli("--module", "unsafe24", "Unsafe24", "--region", "eu")
    lines = UNSAFE.splitlines()
    first = next(i for i, line in enumerate(lines, 1) if "text = open(changed.path())" in line)
    assert "Unsafe24 reads a file by a path the key cannot follow" in out
    for expression, line in [("changed.path()", first), ("handed.path()", first), ("spec.path()", first + 1),
                             ("spec.other()", first + 1)]:
        assert f"Unsafe24.run() line {line}: {expression}" in out, expression
    assert Path("out/unsafe.txt").read_text() == "mesx"


HANDED = '''
import luigi
from luigi_nixworkflow import NixTask


class Folder:
    def __init__(self, region):
        self.folder = f"regions/{region}"

    def path(self):
        return self.folder + "/table.csv"


def relocate(loader):
    loader.folder = "elsewhere"


class Handed24(NixTask):
    region = luigi.Parameter()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loader = Folder(self.region)

    def output(self):
        return luigi.LocalTarget("out/handed.txt")

    def run(self):
        relocate(self.loader)
        with self.output().open("w") as f:
            f.write(open(self.loader.path()).read())
'''


def test_luigi_does_not_follow_an_object_of_the_task_handed_to_a_function() -> None:
    """`self.loader = Folder(self.region)` in __init__, then `relocate(self.loader)` in run(): the object read is
    no longer what it was made as. Following it keyed regions/eu/table.csv while the task read elsewhere/table.csv,
    so an edit of the file it read was served stale with no warning; now the read is warned about, with its line."""
    Path("handed24.py").write_text(HANDED)
    _files({"regions/eu/table.csv": "r", "elsewhere/table.csv": "e"})
    out = luigi_cli("--module", "handed24", "Handed24", "--region", "eu")
    line = next(i for i, text in enumerate(HANDED.splitlines(), 1) if "open(self.loader.path())" in text)
    assert Path("out/handed.txt").read_text() == "e"
    assert "Handed24 reads a file by a path the key cannot follow" in out, out[-3000:]
    assert f"Handed24.run() line {line}: self.loader.path()" in out, out[-3000:]
