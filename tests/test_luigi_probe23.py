"""Luigi keying gaps closed by luigi23 (luigi_nixworkflow/templates.py): a NixTask's run() reading a file through an
object its `__init__` builds from its parameters (`self.layout = Layout(self.root)`, whose method builds the path)
was warned about but served stale after that file was edited; a `@property` or helper with one branch returning a
path the key cannot follow keyed only its other branches, silently. And Luigi idioms probed: `luigi.Event.SUCCESS`
handlers. Each test runs the real `luigi` command; each has its own module and class names, so no two Luigi runs
share a command line (Luigi's pid lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.luigi_run import luigi_cli, runs


def _files(files: dict[str, str]) -> None:
    for name, text in files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text)


def _edits(module: str, source: str, task: list[str], files: dict[str, str],
           edits: list[tuple[str, str, bool]]) -> list[str]:
    """Runs `task` twice (the second run served from the store), then once after each edit (a file's new text):
    the task must run again exactly when the edit says True. The luigi outputs."""
    Path(f"{module}.py").write_text(source)
    _files(files)
    outs = [luigi_cli("--module", module, *task), luigi_cli("--module", module, *task)]
    count = 1
    assert runs()[task[0]] == count, "an unchanged re-run must be served from the store"
    for name, text, again in edits:
        _files({name: text})
        outs.append(luigi_cli("--module", module, *task))
        count += again
        assert runs()[task[0]] == count, f"after editing {name}"
    return outs


# ---------------------------------------------------------------------------------------------------------------
# 1a. An object __init__ builds from the task's parameters, whose method builds the path run() reads

BUILT = '''
import os
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Layout:
    suffix = ".csv"

    def __init__(self, root, kind="daily"):
        self.root = root
        self.base = os.path.join(root, kind)

    def path_for(self, day):
        return os.path.join(self.base, f"{day:%Y-%m-%d}{self.suffix}")

    def read_notes(self, day):
        with open(f"{self.root}/notes/{day}.md") as f:
            return f.read()


class Built23(NixTask):
    root = luigi.Parameter()
    day = luigi.DateParameter()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.layout = Layout(self.root, kind="hourly")

    def output(self):
        return luigi.LocalTarget(f"out/built_{self.root}.txt")

    def run(self):
        note("Built23")
        text = open(self.layout.path_for(self.day)).read() + self.layout.read_notes(self.day)
        with self.output().open("w") as f:
            f.write(text)


class Moved23(Built23):
    def output(self):
        return luigi.LocalTarget("out/moved.txt")

    def run(self):
        self.layout.base = "r/daily"  # (changes what the object built in __init__ holds)
        with self.output().open("w") as f:
            f.write(open(self.layout.path_for(self.day)).read())
'''

BUILT_FILES = {"r/hourly/2024-01-02.csv": "h\n", "r/notes/2024-01-02.md": "n\n", "r/hourly/2024-01-03.csv": "o\n",
               "r/daily/2024-01-02.csv": "d\n"}


@pytest.mark.parametrize("edited", ["r/hourly/2024-01-02.csv", "r/notes/2024-01-02.md"])
def test_luigi_keys_a_path_an_object_made_in_init_builds(edited: str) -> None:
    """`self.layout = Layout(self.root, kind="hourly")` in `__init__`: the file `self.layout.path_for(self.day)`
    names (its `self.base` built from the constructor's arguments) and the one its `read_notes()` opens were not in
    the key (only warned about): editing one was served stale. Now followed: no warning; another day's file, or
    the other kind's, is no input."""
    module = "built23_" + edited.split("/")[1]
    outs = _edits(module, BUILT, ["Built23", "--root", "r", "--day", "2024-01-02"], BUILT_FILES,
                  [("r/hourly/2024-01-03.csv", "o!\n", False), ("r/daily/2024-01-02.csv", "d!\n", False),
                   (edited, BUILT_FILES[edited].replace("\n", "!\n"), True)])
    assert "cannot follow" not in outs[0]
    assert Path("out/built_r.txt").read_text() == "".join(
        BUILT_FILES[n].replace("\n", "!\n" if n == edited else "\n")
        for n in ["r/hourly/2024-01-02.csv", "r/notes/2024-01-02.md"])


# ---------------------------------------------------------------------------------------------------------------
# 1b. A property or helper with one branch the key cannot follow

BRANCHES = '''
import json
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


def indexed(name):
    """Where the index says a name's data is (a path read from a file: not a template)."""
    with open("index.json") as f:
        return json.load(f)[name]


def data_path(name, indexed_ok):
    if indexed_ok:
        return indexed(name)
    return f"plain/{name}.csv"


class Branches23(NixTask):
    name = luigi.Parameter()
    remote = luigi.BoolParameter()

    def output(self):
        return luigi.LocalTarget(f"out/branches_{self.name}.txt")

    @property
    def source(self):
        if self.remote:
            return json.load(open("index.json"))[self.name]
        return f"local/{self.name}.csv"

    def run(self):
        note("Branches23")
        text = open(self.source).read() + open(data_path(self.name, self.remote)).read()
        with self.output().open("w") as f:
            f.write(text)
'''


def test_luigi_warns_of_a_branch_whose_path_the_key_cannot_follow() -> None:
    """`self.source` and `data_path()` return a path built from the task's values on one branch (keyed) and a path
    looked up in a file on the other: the key held only the first, without a word, so with `--remote` an edit of
    the file it reads was served stale silently. Now a warning names each read and the branch it cannot follow; the
    followed branch is keyed as before."""
    Path("branches23.py").write_text(BRANCHES)
    _files({"local/n.csv": "l\n", "plain/n.csv": "p\n", "index.json": '{"n": "far/n.csv"}', "far/n.csv": "f\n"})
    out = luigi_cli("--module", "branches23", "Branches23", "--name", "n", "--remote")
    assert "Branches23 reads a file by a path the key cannot follow" in out
    assert "Branches23.run() line 35: self.source (a branch: json.load(open('index.json'))[self.name])" in out
    assert "Branches23.run() line 35: data_path(self.name, self.remote) (a branch: indexed(name))" in out
    assert runs()["Branches23"] == 1
    _files({"local/n.csv": "l!\n"})  # (the followed branch is keyed as before)
    luigi_cli("--module", "branches23", "Branches23", "--name", "n")
    luigi_cli("--module", "branches23", "Branches23", "--name", "n")
    _files({"local/n.csv": "l!!\n"})
    luigi_cli("--module", "branches23", "Branches23", "--name", "n")
    assert runs()["Branches23"] == 3
    assert Path("out/branches_n.txt").read_text() == "l!!\np\n"


# ---------------------------------------------------------------------------------------------------------------
# 2. Probe: idioms together (requires/inherits/clone, an ExternalTask the user edits, a Gzip target, --workers 3 with
#    a shared upstream, a retried task whose failed attempt left a partial file, a SUCCESS event handler)

IDIOMS = '''
import os
import luigi
import luigi.format
from luigi.task import flatten
from luigi.util import inherits, requires
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


@NixTask.event_handler(luigi.Event.SUCCESS)
def succeeded(task):
    """A project's success hook: sees the task's outputs in place."""
    with open("events.log", "a") as f:
        f.write(f"{task.task_family} {all(t.exists() for t in flatten(task.output()))}\\n")


class Raw23(luigi.ExternalTask):
    name = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"raw/{self.name}.txt")


@requires(Raw23)
class Shared23(NixTask):
    def output(self):
        return luigi.LocalTarget(f"work/shared_{self.name}.gz", format=luigi.format.Gzip)

    def run(self):
        note("Shared23")
        with self.input().open() as src, self.output().open("w") as dst:
            dst.write(src.read().upper().encode())


@inherits(Shared23)
class Part23(NixTask):
    k = luigi.IntParameter()

    def requires(self):
        return self.clone(Shared23)

    def output(self):
        return luigi.LocalTarget(f"work/part_{self.name}_{self.k}.txt")

    def run(self):
        note(f"Part23:{self.k}")
        with self.input().open() as src, self.output().open("w") as dst:
            dst.write(src.read().decode().strip() * self.k + "\\n")


class Flaky23(NixTask):
    name = luigi.Parameter()
    retry_count = 2

    def requires(self):
        return [Part23(name=self.name, k=k) for k in (1, 2, 3)]

    def output(self):
        return luigi.LocalTarget(f"out/flaky_{self.name}.txt")

    def run(self):
        note("Flaky23")
        os.makedirs("out", exist_ok=True)
        with open(self.output().path, "w") as f:  # (in place, not through a temporary file)
            if not os.path.exists("attempted"):
                open("attempted", "w").close()
                f.write("partial\\n")
                f.flush()
                raise RuntimeError("first attempt fails")
            f.write("full " + "".join(t.open().read() for t in self.input()))
'''

RETRY = ["--workers", "3", "--worker-keep-alive", "--scheduler-retry-delay", "0.2", "--worker-wait-interval", "0.1"]


def test_luigi_probe_idioms_with_workers_retry_gzip_and_a_success_handler() -> None:
    """A retried task's failed attempt, which left a partial file at its output path, is never served (the retry
    runs and its result is stored); a SUCCESS handler sees each task's outputs; the Gzip target is restored
    byte-identical; an edit of the ExternalTask's file re-runs everything below it once, with 3 workers."""
    import gzip
    Path("idioms23.py").write_text(IDIOMS)
    _files({"raw/n.txt": "ab\n"})
    out = luigi_cli("--module", "idioms23", "Flaky23", "--name", "n", *RETRY)
    assert "first attempt fails" in out
    assert runs() == {"Shared23": 1, "Part23:1": 1, "Part23:2": 1, "Part23:3": 1, "Flaky23": 2}
    assert Path("out/flaky_n.txt").read_text() == "full AB\nABAB\nABABAB\n"
    assert sorted(Path("events.log").read_text().split("\n")) == sorted(
        ["", "Shared23 True", "Part23 True", "Part23 True", "Part23 True", "Flaky23 True"])
    packed = Path("work/shared_n.gz").read_bytes()
    assert gzip.decompress(packed) == b"AB\n"
    for p in [*Path("work").iterdir(), *Path("out").iterdir()]:
        p.unlink()
    luigi_cli("--module", "idioms23", "Flaky23", "--name", "n", *RETRY)
    assert sum(runs().values()) == 6, runs()  # (nothing ran: all restored)
    assert Path("work/shared_n.gz").read_bytes() == packed
    assert Path("out/flaky_n.txt").read_text() == "full AB\nABAB\nABABAB\n"
    _files({"raw/n.txt": "cd\n"})
    luigi_cli("--module", "idioms23", "Flaky23", "--name", "n", *RETRY)
    assert runs() == {"Shared23": 2, "Part23:1": 2, "Part23:2": 2, "Part23:3": 2, "Flaky23": 3}
    assert Path("out/flaky_n.txt").read_text() == "full CD\nCDCD\nCDCDCD\n"


def test_luigi_warns_of_an_object_built_in_init_that_the_task_changes() -> None:
    """What `self.layout` holds is changed by run() (`self.layout.base = ...`), so the path its method builds is not
    the one `__init__` made: not followed (it would key the wrong file), warned about instead."""
    Path("moved23.py").write_text(BUILT)
    _files(BUILT_FILES)
    out = luigi_cli("--module", "moved23", "Moved23", "--root", "r", "--day", "2024-01-02")
    assert "Moved23.run() line 48: self.layout.path_for(self.day)" in out
    assert Path("out/moved.txt").read_text() == "d\n"
