"""Luigi keying gaps closed by luigi22: a NixTask's run() reading a file by a path built from its parameters
(luigi_nixworkflow/templates.py) was served stale after that file was edited when run() listed a directory holding a
hidden file (`iterdir()`, `os.listdir`, `os.walk`: they yield dotfiles, glob.glob's `*` does not) or a file more
than four levels below it (`os.walk`, `rglob`), when the path came from a `@property` with several returns, from a
helper behind a decorator without functools.wraps, from a method of another object, or from `.strftime()` of an item
of a list parameter. Each test runs the real `luigi` command and failed before its fix; each has its own module and
class names, so no two Luigi runs share a command line (Luigi's pid lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.luigi_run import luigi_cli, runs


def _files(files: dict[str, str]) -> None:
    for name, text in files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text)


def _edits(module: str, source: str, task: list[str], files: dict[str, str],
           edits: list[tuple[str, str | None, bool]]) -> None:
    """Runs `task` twice (the second run served from the store), then once after each edit (a file's new text, or
    None to delete it): the task must run again exactly when the edit says True."""
    Path(f"{module}.py").write_text(source)
    _files(files)
    luigi_cli("--module", module, *task)
    luigi_cli("--module", module, *task)
    count = 1
    assert runs()[task[0]] == count, "an unchanged re-run must be served from the store"
    for name, text, again in edits:
        if text is None:
            Path(name).unlink()
        else:
            _files({name: text})
        luigi_cli("--module", module, *task)
        count += again
        assert runs()[task[0]] == count, f"after editing {name}"


# ---------------------------------------------------------------------------------------------------------------
# 1. Hidden files in a listed directory: what each listing API yields

HIDDEN = '''
import glob
import os
from pathlib import Path
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Hidden22(NixTask):
    kind = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget("out/hidden.txt")

    def run(self):
        note("Hidden22")
        text = ""
        for p in sorted(Path(f"data/{self.kind}").iterdir()):
            text += p.read_text()
        for name in sorted(os.listdir(f"more/{self.kind}")):
            text += open(os.path.join("more", self.kind, name)).read()
        for name in sorted(glob.glob(f"globbed/{self.kind}/*")):
            text += open(name).read()
        with self.output().open("w") as f:
            f.write(text)
'''


HIDDEN_FILES = {"data/k/a.txt": "a\n", "data/k/.extra": "x\n", "more/k/b.txt": "b\n", "more/k/.extra": "y\n",
                "globbed/k/c.txt": "c\n", "globbed/k/.extra": "z\n"}


@pytest.mark.parametrize("edited", ["data/k/.extra", "more/k/.extra", "more/k/.new"])
def test_luigi_keys_hidden_files_a_listing_yields(edited: str) -> None:
    """`Path(d).iterdir()` and `os.listdir(d)` yield `d/.extra`, so editing it (or adding `.new`) must re-run the
    task (it was served stale, each checked alone); `glob.glob(f"{d}/*")` does not yield it, so editing it there
    keeps the result."""
    module = "hidden22_" + edited.replace("/", "_").replace(".", "")
    _edits(module, HIDDEN, ["Hidden22", "--kind", "k"], HIDDEN_FILES,
           [("globbed/k/.extra", "z!\n", False), (edited, "new\n", True)])
    text = {**HIDDEN_FILES, edited: "new\n"}
    assert Path("out/hidden.txt").read_text() == "".join(
        text[n] for n in ["data/k/.extra", "data/k/a.txt", "more/k/.extra", *(["more/k/.new"] if ".new" in edited
                                                                               else []), "more/k/b.txt",
                          "globbed/k/c.txt"])


# ---------------------------------------------------------------------------------------------------------------
# 2. Recursive listings deeper than four levels

DEEP = '''
import os
from pathlib import Path
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Deep22(NixTask):
    kind = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget("out/deep.txt")

    def run(self):
        note("Deep22")
        text = ""
        for top, dirs, names in sorted(os.walk(f"walked/{self.kind}")):
            for name in sorted(names):
                text += open(os.path.join(top, name)).read()
        for p in sorted(Path(f"trees/{self.kind}").rglob("*.csv")):
            text += p.read_text()
        with self.output().open("w") as f:
            f.write(text)
'''


DEEP_FILES = {"walked/k/1/2/3/4/5/6/w.txt": "w\n", "trees/k/1/2/3/4/5/6/t.csv": "t\n",
              "trees/k/1/2/3/4/5/6/t.txt": "-\n", "trees/k/.hid/h.csv": "h\n"}


@pytest.mark.parametrize("edited", ["walked/k/1/2/3/4/5/6/w.txt", "walked/k/1/2/3/4/5/6/7/.new",
                                    "trees/k/1/2/3/4/5/6/t.csv", "trees/k/.hid/h.csv"])
def test_luigi_keys_recursive_listings_at_any_depth(edited: str) -> None:
    """`os.walk(d)` and `Path(d).rglob("*.csv")` read files six levels below d (and, as both yield them, in a
    hidden directory or named with a dot): editing or adding one was served stale (each checked alone); a file
    rglob's pattern does not match is no input."""
    module = "deep22_" + str(list(DEEP_FILES).index(edited) if edited in DEEP_FILES else 9)
    _edits(module, DEEP, ["Deep22", "--kind", "k"], DEEP_FILES,
           [("trees/k/1/2/3/4/5/6/t.txt", "-!\n", False), (edited, "new\n", True)])
    assert "new\n" in Path("out/deep.txt").read_text()


# ---------------------------------------------------------------------------------------------------------------
# 3.-6. Paths from a property with branches, an undecorated wrapper, another object's method, a subscript's strftime

SHAPES = '''
import datetime
import json
import os
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


def plain_decorator(fn):
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


@plain_decorator
def notes_path(name):
    return f"notes/{name}.md"


class Layout:
    def __init__(self, root):
        self.root = root

    def path_for(self, day):
        return os.path.join(self.root, f"{day:%Y-%m-%d}.csv")


LAYOUT = Layout("daily")


class DateListParameter(luigi.ListParameter):
    """A project's list of dates, as JSON of ISO dates on the command line."""
    def parse(self, x):
        return tuple(datetime.date.fromisoformat(d) for d in json.loads(x))

    def serialize(self, x):
        return json.dumps([d.isoformat() for d in x])

    def normalize(self, x):
        return tuple(x)


class Shapes22(NixTask):
    name = luigi.Parameter()
    day = luigi.DateParameter()
    days = DateListParameter()
    tags = luigi.ListParameter()
    archived = luigi.BoolParameter()
    helper_obj = Layout("hourly")

    def output(self):
        return luigi.LocalTarget("out/shapes.txt")

    @property
    def folder(self):
        if self.archived:
            return "archive"
        return "current"

    def run(self):
        note("Shapes22")
        text = open(f"{self.folder}/{self.name}.txt").read() + open(notes_path(self.name)).read()
        text += open(LAYOUT.path_for(self.day)).read() + open(self.helper_obj.path_for(self.day)).read()
        text += open("days/" + str(self.tags[1]) + ".txt").read()
        text += open(self.days[0].strftime("firsts/%Y%m%d.txt")).read()
        with self.output().open("w") as f:
            f.write(text)
'''


SHAPE_FILES = {"current/n.txt": "c\n", "archive/n.txt": "a\n", "notes/n.md": "m\n", "daily/2024-01-02.csv": "d\n",
               "daily/2024-01-03.csv": "other\n", "hourly/2024-01-02.csv": "h\n", "days/x.txt": "x\n",
               "firsts/20240201.txt": "f\n"}


@pytest.mark.parametrize("edited", ["current/n.txt", "archive/n.txt", "notes/n.md", "daily/2024-01-02.csv",
                                    "hourly/2024-01-02.csv", "firsts/20240201.txt"])
def test_luigi_keys_paths_from_branches_wrappers_objects_and_items(edited: str) -> None:
    """The files run() opens through a `@property` with an `if` and two returns (either branch's folder: current/,
    archive/), a helper behind a decorator that does not use functools.wraps (notes/), `LAYOUT.path_for(self.day)`
    of a module-level object (daily/) and `self.helper_obj.path_for(self.day)` of a class attribute (hourly/),
    and `self.days[0].strftime()` of a project parameter holding dates (firsts/): editing one was served stale
    (each checked alone). A file of another day is no input. (`str(self.tags[1])`, days/, was keyed already.)"""
    module = "shapes22_" + edited.split("/")[0]
    _edits(module, SHAPES, ["Shapes22", "--name", "n", "--day", "2024-01-02", "--days", '["2024-02-01"]',
                            "--tags", '["w", "x"]'], SHAPE_FILES,
           [("daily/2024-01-03.csv", "other!\n", False), (edited, SHAPE_FILES[edited].replace("\n", "!\n"), True)])
    assert Path("out/shapes.txt").read_text() == "".join(
        SHAPE_FILES[name].replace("\n", "!\n" if name == edited else "\n") for name in
        ["current/n.txt", "notes/n.md", "daily/2024-01-02.csv", "hourly/2024-01-02.csv", "days/x.txt",
         "firsts/20240201.txt"])


# ---------------------------------------------------------------------------------------------------------------
# 7. What the key cannot follow is warned about, naming the read

UNFOLLOWED = '''
import os, dataclasses
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


@dataclasses.dataclass  # (its __init__ is generated: nothing to read; session 23 follows a written __init__)
class Layout:
    root: str

    def path_for(self, day):
        return os.path.join(self.root, f"{day:%Y-%m-%d}.csv")


class Unfollowed22(NixTask):
    day = luigi.DateParameter()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.layout = Layout("daily"); self.layout.root = "daily"  # (changed after it is made: not followed)

    def output(self):
        return luigi.LocalTarget("out/unfollowed.txt")

    def run(self):
        note("Unfollowed22")
        text = open(self.layout.path_for(self.day)).read() + open(os.path.join("more", f"{self.day}.csv")).read()
        with self.output().open("w") as f:
            f.write(text)


class OnlyUnfollowed22(Unfollowed22):
    def output(self):
        return luigi.LocalTarget("out/only.txt")

    def run(self):
        with self.output().open("w") as f:
            f.write(open(self.layout.path_for(self.day)).read())
'''


def test_luigi_warns_of_a_read_path_the_key_cannot_follow() -> None:
    """`self.layout` is made in `__init__`, so the file `self.layout.path_for(self.day)` names is not in the key:
    editing it keeps the stored result, silently before. The run now warns, naming the class, the line and the
    expression, and how to declare it; the path it can follow (more/<day>.csv) is keyed and not named."""
    Path("unfollowed22.py").write_text(UNFOLLOWED)
    _files({"daily/2024-01-02.csv": "d\n", "more/2024-01-02.csv": "m\n"})
    out = luigi_cli("--module", "unfollowed22", "Unfollowed22", "--day", "2024-01-02")
    assert "Unfollowed22 reads a file by a path the key cannot follow" in out
    assert "Unfollowed22.run() line 28: self.layout.path_for(self.day)" in out
    assert "static()" in out and "more" not in out.split("cannot follow")[1].split(")")[0]
    _files({"more/2024-01-02.csv": "m!\n"})
    luigi_cli("--module", "unfollowed22", "Unfollowed22", "--day", "2024-01-02")
    assert runs()["Unfollowed22"] == 2
    out = luigi_cli("--module", "unfollowed22", "OnlyUnfollowed22", "--day", "2024-01-02")  # (its only read)
    assert "OnlyUnfollowed22.run() line 39: self.layout.path_for(self.day))" in out  # (not its base's run)


# ---------------------------------------------------------------------------------------------------------------
# 8. Probe: a legacy pipeline (prep -> features -> train -> evaluate -> report) migrated by base class only

CONSTANTS = '''
"""The project's constants, as a pipeline's settings module holds them."""
SCALE = 10
COLUMNS = ("x", "y")


def scaled(value):
    return value * SCALE
'''

PIPELINE = '''
import json
import struct

import luigi
import luigi.format
from luigi_nixworkflow import NixTask

import constants22
from tests.luigi_run import note


class TrainConfig(luigi.Config):
    epochs = luigi.IntParameter(default=3)
    rate = luigi.FloatParameter(default=0.5)


class Prepare(NixTask):
    date = luigi.DateParameter()

    def output(self):
        return luigi.LocalTarget(f"work/clean_{self.date:%Y%m%d}.bin", format=luigi.format.Nop)

    def run(self):
        note(f"Prepare:{self.date}")
        rows = [line.split(",") for line in open(f"raw/{self.date:%Y-%m-%d}.csv").read().split()[1:]]
        with self.output().open("w") as f:
            for x, y in rows:
                f.write(struct.pack("<dd", float(x), float(y)))


class Features(NixTask):
    date = luigi.DateParameter()
    options = luigi.DictParameter(default={"square": False})

    def requires(self):
        return Prepare(self.date)

    def output(self):
        return luigi.LocalTarget(f"work/features_{self.date:%Y%m%d}.bin", format=luigi.format.Nop)

    def run(self):
        note(f"Features:{self.date}")
        data = self.input().open("r").read()
        pairs = [struct.unpack_from("<dd", data, i) for i in range(0, len(data), 16)]
        with self.output().open("w") as f:
            for x, y in pairs:
                x = x * x if self.options["square"] else x
                f.write(struct.pack("<dd", constants22.scaled(x), y))


class Train(NixTask):
    date = luigi.DateParameter()

    def requires(self):
        return Features(self.date)

    def output(self):
        return luigi.LocalTarget(f"models/{self.date:%Y%m%d}.model", format=luigi.format.Nop)

    def run(self):
        note(f"Train:{self.date}")
        data = self.input().open("r").read()
        pairs = [struct.unpack_from("<dd", data, i) for i in range(0, len(data), 16)]
        w = 0.0
        for _ in range(TrainConfig().epochs):
            for x, y in pairs:
                w += TrainConfig().rate * (y - w * x) * x / (1 + x * x)
        with self.output().open("w") as f:
            f.write(struct.pack("<d", w))


class Evaluate(NixTask):
    date = luigi.DateParameter()

    def requires(self):
        return {"model": Train(self.date), "features": Features(self.date)}

    def output(self):
        return luigi.LocalTarget(f"metrics/{self.date:%Y%m%d}.json")

    def run(self):
        note(f"Evaluate:{self.date}")
        (w,) = struct.unpack("<d", self.input()["model"].open("r").read())
        data = self.input()["features"].open("r").read()
        pairs = [struct.unpack_from("<dd", data, i) for i in range(0, len(data), 16)]
        loss = sum((y - w * x) ** 2 for x, y in pairs) / len(pairs)
        with self.output().open("w") as f:
            json.dump({"w": round(w, 9), "loss": round(loss, 9), "columns": list(constants22.COLUMNS)}, f)


class Report(NixTask):
    dates = luigi.ListParameter()
    title = luigi.Parameter(default="Weekly")

    def requires(self):
        import datetime
        return [Evaluate(datetime.date.fromisoformat(d)) for d in self.dates]

    def output(self):
        return luigi.LocalTarget("report/summary.md")

    def run(self):
        note("Report")
        lines = [f"# {self.title}"]
        for d, target in zip(self.dates, self.input()):
            lines.append(f"{d}: {json.load(target.open('r'))}")
        with self.output().open("w") as f:
            f.write("\\n".join(lines) + "\\n")
'''

OUTPUTS = ["work/clean_20240101.bin", "work/clean_20240102.bin", "work/features_20240101.bin",
           "work/features_20240102.bin", "models/20240101.model", "models/20240102.model", "metrics/20240101.json",
           "metrics/20240102.json", "report/summary.md"]


def _pipeline(*extra: str) -> dict[str, int]:
    """Runs the report over both days in a new `luigi` process; which task bodies ran this time."""
    before = runs()
    out = luigi_cli("--module", "pipeline22", "Report", "--dates", '["2024-01-01", "2024-01-02"]', *extra)
    assert "cannot follow" not in out, "every path this pipeline reads is followed"
    return dict(runs() - before)


def test_luigi_probe_pipeline_migrated_by_base_class_reruns_exactly_what_an_edit_affects() -> None:
    """A pipeline in the style of public Luigi pipelines (binary `luigi.format.Nop` targets, DateParameter,
    DictParameter, ListParameter, a luigi.Config section, a helper module's constants): a cached re-run runs
    nothing and restores deleted outputs byte for byte; editing one day's data file, the helper module, a
    luigi.cfg value or a parameter re-runs exactly the tasks it reaches."""
    Path("constants22.py").write_text(CONSTANTS)
    Path("pipeline22.py").write_text(PIPELINE)
    _files({"raw/2024-01-01.csv": "x,y\n1,2\n2,4\n", "raw/2024-01-02.csv": "x,y\n1,3\n3,9\n",
            "luigi.cfg": "[TrainConfig]\nepochs = 3\n"})
    days = ("2024-01-01", "2024-01-02")
    every = {f"{family}:{d}": 1 for family in ("Prepare", "Features", "Train", "Evaluate") for d in days}
    assert _pipeline() == {**every, "Report": 1}
    first = {name: Path(name).read_bytes() for name in OUTPUTS}
    assert _pipeline() == {}
    for name in OUTPUTS:
        Path(name).unlink()
    assert _pipeline() == {}
    assert {name: Path(name).read_bytes() for name in OUTPUTS} == first

    _files({"raw/2024-01-02.csv": "x,y\n1,3\n3,10\n"})  # one day's data
    assert _pipeline() == {"Prepare:2024-01-02": 1, "Features:2024-01-02": 1, "Train:2024-01-02": 1,
                           "Evaluate:2024-01-02": 1, "Report": 1}
    Path("constants22.py").write_text(CONSTANTS.replace("SCALE = 10", "SCALE = 100"))  # the helper module
    assert _pipeline() == {f"{family}:{d}": 1 for family in ("Features", "Train", "Evaluate") for d in days} | {
        "Report": 1}
    Path("constants22.py").write_text(CONSTANTS.replace("SCALE = 10", "SCALE = 100").replace('"y")', '"y", "z")'))
    assert _pipeline() == {"Evaluate:2024-01-01": 1, "Evaluate:2024-01-02": 1, "Report": 1}  # (only it reads them)
    _files({"luigi.cfg": "[TrainConfig]\nepochs = 5\n"})  # a config value
    assert _pipeline() == {f"{family}:{d}": 1 for family in ("Train", "Evaluate") for d in days} | {"Report": 1}
    assert _pipeline("--title", "Daily") == {"Report": 1}  # a parameter
    assert _pipeline("--Features-options", '{"square": true}', "--title", "Daily") == {
        f"{family}:{d}": 1 for family in ("Features", "Train", "Evaluate") for d in days} | {"Report": 1}
    assert _pipeline("--Features-options", '{"square": true}', "--title", "Daily") == {}
    Path("pipeline22.py").write_text(PIPELINE.replace("class Report(NixTask):", "# reports\nclass Report(NixTask):"))
    _files({"raw/notes.txt": "not read\n", "luigi.cfg": "[TrainConfig]\nepochs = 5\n[Unread]\nx = 1\n"})
    assert _pipeline("--Features-options", '{"square": true}', "--title", "Daily") == {}  # (nothing it reads)
