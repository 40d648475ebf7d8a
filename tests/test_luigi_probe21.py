"""Luigi keying gaps closed by luigi21: a NixTask's run() opening a file by a path built from its parameters
(luigi_nixworkflow/templates.py) was served stale after that file was edited when the path came from a list parameter
indexed by a `range(len(...))` loop, a function nested in run(), a decorated helper (`functools.lru_cache`,
`functools.cache`, a project decorator using functools.wraps) or a `@property`, or a listing of a directory built
from the parameters (`Path(...).iterdir()`, `os.listdir`, `Path(...).glob(...)`). Each test runs the real `luigi`
command and failed before its fix. Each test has its own module and class names, so no two Luigi runs share a
command line (Luigi's pid lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.luigi_run import luigi_cli, runs


def _write(files: dict[str, str]) -> None:
    for name, text in files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text)


def _check(module: str, source: str, tasks: list[list[str]], files: dict[str, str],
           edits: list[tuple[str, str | None, tuple[str, ...]]]) -> dict[str, int]:
    """Runs each of `tasks` (`[Class, --param, value, ...]`) twice (the second run all cached), then, for each edit
    (a file's new text, or None to delete it), once more: exactly the classes named with it must re-run."""
    Path(f"{module}.py").write_text(source)
    _write(files)

    def everything() -> None:
        for task in tasks:
            luigi_cli("--module", module, *task)

    count = {task[0]: 1 for task in tasks}
    everything()
    everything()
    assert runs() == count, "an unchanged re-run must be restored from the store"
    for name, text, again in edits:
        if text is None:
            Path(name).unlink()
        else:
            _write({name: text})
        everything()
        count.update({task: count[task] + 1 for task in again})
        assert runs() == count, f"after editing {name}"
    return count


# ---------------------------------------------------------------------------------------------------------------
# 1. A list parameter indexed by a loop index

INDEXED = '''
import os
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Indexed21(NixTask):
    names = luigi.ListParameter()

    def output(self):
        return luigi.LocalTarget("out/indexed.txt")

    def run(self):
        note("Indexed21")
        text = ""
        for i in range(len(self.names)):
            text += f"{i} " + open(f"data/{self.names[i]}.csv").read()
        with self.output().open("w") as f:
            f.write(text)


class IndexedPairs21(NixTask):
    names = luigi.ListParameter()
    days = luigi.ListParameter()

    def output(self):
        return luigi.LocalTarget("out/pairs.txt")

    def run(self):
        note("IndexedPairs21")
        names = self.names
        parts = [open(os.path.join("data", names[k], self.days[k] + ".txt")).read() for k in range(len(names))]
        with self.output().open("w") as f:
            f.write("".join(parts))
'''


def test_luigi_keys_a_list_parameter_indexed_by_a_range_loop() -> None:
    """`for i in range(len(self.names)): open(f"data/{self.names[i]}.csv")` and a comprehension over
    `range(len(names))` indexing two list parameters: the files were not keyed, so editing one served the old
    result. The index is the item's position: `days[k]` pairs with `names[k]` only (data/a/d2.txt is no task's)."""
    _check("indexed21", INDEXED,
           [["Indexed21", "--names", '["a", "b"]'],
            ["IndexedPairs21", "--names", '["a", "b"]', "--days", '["d1", "d2"]']],
           {"data/a.csv": "a\n", "data/b.csv": "b\n", "data/c.csv": "c\n", "data/a/d1.txt": "a1\n",
            "data/a/d2.txt": "a2\n", "data/b/d2.txt": "b2\n"},
           [("data/c.csv", "c!\n", ()), ("data/a/d2.txt", "a2!\n", ()),
            ("data/b.csv", "b!\n", ("Indexed21",)), ("data/b/d2.txt", "b2!\n", ("IndexedPairs21",))])
    assert Path("out/indexed.txt").read_text() == "0 a\n1 b!\n"
    assert Path("out/pairs.txt").read_text() == "a1\nb2!\n"


# ---------------------------------------------------------------------------------------------------------------
# 2. A function nested in run()

NESTED = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Nested21(NixTask):
    names = luigi.ListParameter()
    day = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget("out/nested.txt")

    def run(self):
        note("Nested21")

        def path_of(n):
            return f"data/{n}.csv"

        def load(n):
            with open(f"notes/{self.day}/{n}.md") as f:
                return f.read()

        text = "".join(open(path_of(name)).read() for name in self.names)
        text += load(self.names[0])
        with self.output().open("w") as f:
            f.write(text)
'''


def test_luigi_keys_paths_built_by_a_function_nested_in_run() -> None:
    """run() defines `def path_of(n): return f"data/{n}.csv"` and opens `path_of(name)` in a loop, and defines
    `def load(n)` that opens `f"notes/{self.day}/{n}.md"` and calls it: neither file was keyed."""
    _check("nested21", NESTED, [["Nested21", "--names", '["a", "b"]', "--day", "d1"]],
           {"data/a.csv": "a\n", "data/b.csv": "b\n", "notes/d1/a.md": "na\n", "notes/d1/b.md": "nb\n",
            "notes/d2/a.md": "other\n"},
           [("notes/d2/a.md", "other!\n", ()), ("data/b.csv", "b!\n", ("Nested21",)),
            ("notes/d1/a.md", "na!\n", ("Nested21",))])
    assert Path("out/nested.txt").read_text() == "a\nb!\nna!\n"


# ---------------------------------------------------------------------------------------------------------------
# 3. Decorated helpers and properties

DECORATED = '''
import functools
import os
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


def logged(fn):
    """A project decorator, as functools.wraps writes one."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


@functools.lru_cache(maxsize=None)
def lookup(name):
    with open(f"data/{name}.csv") as f:
        return f.read()


@functools.cache
def raw_path(day):
    return f"raw/{day}.json"


@logged
def notes_path(name):
    return f"notes/{name}.md"


class Decorated21(NixTask):
    name = luigi.Parameter()
    day = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget("out/decorated.txt")

    @property
    def folder(self):
        return f"extra/{self.name}"

    @functools.lru_cache()
    def read_more(self, name):
        return open(f"more/{name}.txt").read()

    def run(self):
        note("Decorated21")
        text = lookup(self.name) + open(raw_path(self.day)).read() + open(notes_path(self.name)).read()
        text += open(os.path.join(self.folder, "e.txt")).read() + self.read_more(self.name)
        with self.output().open("w") as f:
            f.write(text)
'''


def test_luigi_keys_paths_of_decorated_helpers_and_properties() -> None:
    """Helpers decorated with `functools.lru_cache`, `functools.cache` or a project decorator (functools.wraps), a
    method decorated with `functools.lru_cache()`, and a `@property` giving the directory a path is joined to: none
    of these files was keyed (only undecorated helpers and staticmethods were followed)."""
    _check("decorated21", DECORATED, [["Decorated21", "--name", "a", "--day", "d1"]],
           {"data/a.csv": "a\n", "raw/d1.json": "r1\n", "notes/a.md": "na\n", "extra/a/e.txt": "ea\n",
            "more/a.txt": "ma\n", "data/b.csv": "b\n"},
           [("data/b.csv", "b!\n", ()), ("data/a.csv", "a!\n", ("Decorated21",)),
            ("raw/d1.json", "r1!\n", ("Decorated21",)), ("notes/a.md", "na!\n", ("Decorated21",)),
            ("extra/a/e.txt", "ea!\n", ("Decorated21",)), ("more/a.txt", "ma!\n", ("Decorated21",))])
    assert Path("out/decorated.txt").read_text() == "a!\nr1!\nna!\nea!\nma!\n"


# ---------------------------------------------------------------------------------------------------------------
# 4. Listings of a directory built from the parameters

LISTED = '''
import glob
import os
from pathlib import Path
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Globbed21(NixTask):
    month = luigi.MonthParameter()

    def output(self):
        return luigi.LocalTarget(f"out/globbed-{self.month:%Y-%m}.txt")

    def run(self):
        note("Globbed21")
        text = "".join(open(p).read() for p in sorted(glob.glob(f"data/{self.month:%Y-%m}/*.csv")))
        with self.output().open("w") as f:
            f.write(text)


class Listed21(NixTask):
    region = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget("out/listed.txt")

    def run(self):
        note("Listed21")
        text = "".join(p.read_text() for p in sorted(Path("regions", self.region).iterdir()))
        base = os.path.join("shared", self.region)
        text += "".join(open(os.path.join(base, n)).read() for n in sorted(os.listdir(base)))
        text += "".join(p.read_text() for p in sorted(Path(f"logs/{self.region}").glob("*.log")))
        with self.output().open("w") as f:
            f.write(text)
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_luigi_keys_the_directories_a_task_lists_by_its_parameters() -> None:
    """`glob.glob(f"data/{self.month:%Y-%m}/*.csv")`, `Path("regions", self.region).iterdir()`,
    `os.listdir(os.path.join("shared", self.region))` and `Path(f"logs/{self.region}").glob("*.log")`: a file edited,
    added or removed in the listed directory re-runs the task; the same in another month's or region's does not."""
    _check("listed21", LISTED, [["Globbed21", "--month", "2024-01"], ["Listed21", "--region", "eu"]],
           {"data/2024-01/a.csv": "a\n", "data/2024-02/a.csv": "feb\n", "regions/eu/x.txt": "x\n",
            "regions/us/x.txt": "us\n", "shared/eu/s.txt": "s\n", "logs/eu/l.log": "l\n", "logs/eu/skip.txt": "k\n"},
           [("data/2024-02/a.csv", "feb!\n", ()), ("regions/us/x.txt", "us!\n", ()),
            ("logs/eu/skip.txt", "k!\n", ()),
            ("data/2024-01/a.csv", "a!\n", ("Globbed21",)), ("data/2024-01/b.csv", "b\n", ("Globbed21",)),
            ("regions/eu/x.txt", "x!\n", ("Listed21",)), ("regions/eu/y.txt", "y\n", ("Listed21",)),
            ("shared/eu/t.txt", "t\n", ("Listed21",)), ("logs/eu/m.log", "m\n", ("Listed21",)),
            ("regions/eu/x.txt", None, ("Listed21",))])
    assert Path("out/globbed-2024-01.txt").read_text() == "a!\nb\n"
    assert Path("out/listed.txt").read_text() == "y\ns\nt\nl\nm\n"


# ---------------------------------------------------------------------------------------------------------------
# 5. More everyday shapes: a dict parameter looked up by another, a directory walked, an ExternalTask's helper path

EVERYDAY = '''
import glob
import os
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


def raw_path(day):
    return os.path.join("raw", f"{day}.json")


class RawFile21(luigi.ExternalTask):
    day = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(raw_path(self.day))


class Lookup21(NixTask):
    files = luigi.DictParameter()
    kind = luigi.Parameter()
    names = luigi.ListParameter()

    def output(self):
        return luigi.LocalTarget("out/lookup.txt")

    def run(self):
        note("Lookup21")
        text = open(f"data/{self.files[self.kind]}.csv").read() + open(f"first/{self.names[0]}.txt").read()
        with self.output().open("w") as f:
            f.write(text)


class Walked21(NixTask):
    region = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget("out/walked.txt")

    def run(self):
        note("Walked21")
        text = ""
        for top, _, names in sorted(os.walk(f"tree/{self.region}")):
            text += "".join(open(os.path.join(top, n)).read() for n in sorted(names))
        text += "".join(open(p).read() for p in sorted(glob.glob(f"deep/{self.region}/**/*.txt", recursive=True)))
        with self.output().open("w") as f:
            f.write(text)


class External21(NixTask):
    day = luigi.Parameter()

    def requires(self):
        return RawFile21(self.day)

    def output(self):
        return luigi.LocalTarget("out/external.txt")

    def run(self):
        note("External21")
        with self.input().open() as src, self.output().open("w") as f:
            f.write(src.read())
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_luigi_keys_dict_lookups_walked_directories_and_external_inputs() -> None:
    """`open(f"data/{self.files[self.kind]}.csv")` (a dict parameter looked up by another parameter),
    `self.names[0]`, `os.walk(f"tree/{self.region}")` and `glob.glob(f"deep/{self.region}/**/*.txt",
    recursive=True)` (a file edited or added any level down), and the file of a plain ExternalTask whose output()
    path a helper builds: each edit re-runs the task that reads it, and no other."""
    _check("everyday21", EVERYDAY,
           [["Lookup21", "--files", '{"train": "tr", "test": "te"}', "--kind", "test", "--names", '["a", "b"]'],
            ["Walked21", "--region", "eu"], ["External21", "--day", "d1"]],
           {"data/tr.csv": "tr\n", "data/te.csv": "te\n", "first/a.txt": "fa\n", "first/b.txt": "fb\n",
            "tree/eu/t.txt": "t\n", "tree/eu/sub/u.txt": "u\n", "tree/us/t.txt": "us\n",
            "deep/eu/d.txt": "d\n", "deep/eu/x/y/e.txt": "e\n", "raw/d1.json": "r1\n", "raw/d2.json": "r2\n"},
           [("data/tr.csv", "tr!\n", ()), ("first/b.txt", "fb!\n", ()), ("tree/us/t.txt", "us!\n", ()),
            ("raw/d2.json", "r2!\n", ()),
            ("data/te.csv", "te!\n", ("Lookup21",)), ("first/a.txt", "fa!\n", ("Lookup21",)),
            ("tree/eu/sub/u.txt", "u!\n", ("Walked21",)), ("tree/eu/sub/v.txt", "v\n", ("Walked21",)),
            ("deep/eu/d.txt", "d!\n", ("Walked21",)), ("deep/eu/x/y/e.txt", "e!\n", ("Walked21",)),
            ("raw/d1.json", "r1!\n", ("External21",))])
    assert Path("out/lookup.txt").read_text() == "te!\nfa!\n"
    assert Path("out/walked.txt").read_text() == "t\nu!\nv\nd!\ne!\n"
    assert Path("out/external.txt").read_text() == "r1!\n"
