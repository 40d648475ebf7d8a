"""Probing wave 15 (Luigi): methods of a base that NixTask is mixed before (input(), deps(), bulk_complete()),
requirements whose outputs nest, and everyday Luigi idioms, written as plain Luigi and migrated by changing only the
base class, run with the real `luigi` command (or luigi.build) against a private store. Each test is a bug that
probing found, and fails on the code before its fix."""

from __future__ import annotations

from pathlib import Path

from tests.luigi_run import luigi_cli, runs

# ---- input() and deps() of a base after NixTask in the MRO ---------------------------------------------------------

HIDDEN = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Seed(luigi.ExternalTask):
    def output(self):
        return luigi.LocalTarget("seed.txt")


class Extra(NixTask):
    def output(self):
        return luigi.LocalTarget("out/extra.txt")

    def run(self):
        note("Extra")
        with self.output().open("w") as g:
            g.write(open("seed.txt").read() + "!")


class MyBase(luigi.Task):  # a library base: adds a dependency, and names what run() reads
    def deps(self):
        return super().deps() + [Extra()]

    def input(self):
        return {"extra": Extra().output(), "seed": luigi.task.getpaths(self.requires())}


class T(NixTask, MyBase):
    def requires(self):
        return Seed()

    def output(self):
        return luigi.LocalTarget("out/t.txt")

    def run(self):
        note("T")
        with self.output().open("w") as g:
            g.write(self.input()["extra"].open().read() + self.input()["seed"].open().read())
'''


def test_input_and_deps_of_a_base_after_nixtask_are_kept() -> None:
    """`class T(NixTask, MyBase)` where MyBase overrides input() and deps(): NixTask's own hid them, so Luigi never
    scheduled what MyBase's deps() adds and run() got requires()'s targets instead of MyBase's input() ("'LocalTarget'
    object is not subscriptable"). Plain Luigi uses MyBase's; now so does the migrated task, and what deps() adds is
    keyed (an edit upstream of it re-runs)."""
    Path("hidden.py").write_text(HIDDEN)
    Path("seed.txt").write_text("a")
    out = luigi_cli("--module", "hidden", "T")
    assert "Extra()" in out and Path("out/t.txt").read_text() == "a!a"
    luigi_cli("--module", "hidden", "T")
    assert runs() == {"Extra": 1, "T": 1}
    Path("seed.txt").write_text("b")
    luigi_cli("--module", "hidden", "T")
    assert Path("out/t.txt").read_text() == "b!b" and runs() == {"Extra": 2, "T": 2}


BULK = '''
import os

import luigi
from luigi_nixworkflow import NixTask


class Marked(luigi.Task):  # a fast range check: a listing of the days that are done
    @classmethod
    def bulk_complete(cls, parameter_tuples):
        done = open("done.txt").read().split() if os.path.exists("done.txt") else []
        return [p for p in parameter_tuples if str(p) in done]


class Daily(NixTask, Marked):
    d = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(f"out/{self.d}.txt")

    def run(self):
        with self.output().open("w") as g:
            g.write(str(self.d))
'''


def test_bulk_complete_of_a_base_after_nixtask_is_asked() -> None:
    """`class Daily(NixTask, Marked)` where Marked overrides bulk_complete() (what the range tools ask): NixTask's hid
    it, so a day Marked says is not done was reported complete. Now a tuple is complete when Marked's check says so
    and the store holds its result."""
    import sys

    from tests.luigi_run import build

    Path("bulk.py").write_text(BULK)
    sys.path.insert(0, str(Path.cwd()))
    try:
        import bulk
        Path("done.txt").write_text("1 3")
        build(bulk.Daily(d=1), bulk.Daily(d=2))
        assert list(bulk.Daily.bulk_complete([1, 2, 3])) == [1]
    finally:
        sys.path.remove(str(Path.cwd()))
        sys.modules.pop("bulk", None)


# ---- requirements whose outputs nest ---------------------------------------------------------------------------------

NESTED = '''
import os

import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Dir(NixTask):
    def output(self):
        return luigi.LocalTarget("out/d")

    def run(self):
        note("Dir")
        os.makedirs(self.output().path)
        for name in ("a", "b"):
            with open(f"out/d/{name}.txt", "w") as g:
                g.write(f"dir-{name}")


class File(NixTask):
    def output(self):
        return luigi.LocalTarget("out/d/b.txt")  # inside Dir's output directory

    def run(self):
        note("File")
        os.makedirs("out/d", exist_ok=True)
        with self.output().open("w") as g:
            g.write("file-b")


class Join(NixTask):
    first = luigi.Parameter(default="File")

    def requires(self):
        return {"File": [File(), Dir()], "Dir": [Dir(), File()]}[self.first]

    def output(self):
        return luigi.LocalTarget(f"out/join-{self.first}.txt")

    def run(self):
        note("Join")
        with self.output().open("w") as g:
            g.write(File().output().open().read())
'''


def test_nested_outputs_of_two_requirements_are_refused() -> None:
    """Dir() declares the directory out/d and File() the file out/d/b.txt inside it; Join requires both. There is
    one out/d/b.txt: Join read Dir's copy ("dir-b") through File's target while its record said it was made from
    File's "file-b" (and served so on every later run). Join now fails before its run(), in either order of its
    requirements, naming both tasks and both paths; nothing is stored."""
    Path("nested.py").write_text(NESTED)
    for first in ("File", "Dir"):
        out = luigi_cli("--module", "nested", "Join", "--first", first, ok=False)
        assert "requires" in out and "whose outputs are one inside the other" in out, out[-3000:]
        assert "Dir() declares the directory" in out and "File() declares" in out and "b.txt" in out
        assert "Traceback" not in out and not Path(f"out/join-{first}.txt").exists()
    assert runs()["Join"] == 0
    out = luigi_cli("--module", "nested", "Join", ok=False)  # nothing was stored: refused again, not served
    assert "one inside the other" in out and runs()["Join"] == 0


# ---- Luigi parameters named like a NixTask class setting ----------------------------------------------------------

SETTING_NAMES = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Train(NixTask):
    version = luigi.Parameter(default="v1")  # a model's version: a common parameter name

    def output(self):
        return luigi.LocalTarget(f"out/model-{self.version}.txt")

    def run(self):
        note("Train")
        with self.output().open("w") as g:
            g.write("code-A " + self.version)


class Deploy(NixTask):
    env = luigi.Parameter(default="staging")  # the deployment target
    gpu = luigi.BoolParameter()

    def requires(self):
        return Train()

    def output(self):
        return luigi.LocalTarget(f"out/deploy-{self.env}-{self.gpu}.txt")

    def run(self):
        note("Deploy")
        with self.output().open("w") as g:
            g.write(f"{self.input().open().read()} to {self.env} gpu={self.gpu}")
'''


def test_parameters_named_env_version_or_gpu_are_parameters() -> None:
    """`env = luigi.Parameter()`, `version = luigi.Parameter()`, `gpu = luigi.BoolParameter()` on a migrated task were
    read as NixTask's class settings: the env spec was the Parameter object ("unsupported env spec", nothing ran),
    the code version was its repr (an address, new in every process: never served, and a code edit not keyed by its
    source), and a gpu Parameter object could not be written into the record. They are the task's parameters."""
    Path("names.py").write_text(SETTING_NAMES)
    luigi_cli("--module", "names", "Deploy")
    luigi_cli("--module", "names", "Deploy")
    assert runs() == {"Train": 1, "Deploy": 1}
    assert Path("out/deploy-staging-False.txt").read_text() == "code-A v1 to staging gpu=False"
    luigi_cli("--module", "names", "Deploy", "--env", "prod", "--gpu")
    assert Path("out/deploy-prod-True.txt").read_text() == "code-A v1 to prod gpu=True"
    assert runs() == {"Train": 1, "Deploy": 2}
    Path("names.py").write_text(SETTING_NAMES.replace("code-A", "code-B"))  # a code edit re-runs Train and Deploy
    luigi_cli("--module", "names", "Deploy")
    assert Path("out/deploy-staging-False.txt").read_text() == "code-B v1 to staging gpu=False"
    assert runs() == {"Train": 2, "Deploy": 3}
