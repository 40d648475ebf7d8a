"""Probing wave 9: Luigi pipelines written as their users write them, migrated by changing only `luigi.Task` to
`NixTask` (the legacy shape: own run() and output()), run with real Luigi against a private store and compared with
what plain Luigi does. Each test is a bug that probing found, and fails on the code before its fix."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import luigi
from luigi.mock import MockTarget
from luigi.task_register import Register

from luigi_nixworkflow import NixTask
from tests.helpers import REPO
from tests.luigi_run import build, note, runs

LUIGI = str(Path(sys.executable).with_name("luigi"))


# ---- a target the store cannot hash, upstream ------------------------------------------------------------------


class Remote(luigi.Task):
    """A plain task writing a MockTarget (as an S3 object or a database table would be): its content lives where
    the store cannot hash it."""

    def output(self) -> MockTarget:
        return MockTarget("probe9/remote")

    def run(self) -> None:
        with self.output().open("w") as f:
            f.write("v1")


class Shout(NixTask):
    def requires(self) -> luigi.Task:
        return Remote()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("shout.txt")

    def run(self) -> None:
        note("Shout")
        with self.input().open() as f, self.output().open("w") as g:
            g.write(f.read().upper())


def test_a_task_reading_a_target_the_store_cannot_hash_runs_as_plain_luigi(store_root: Path, caplog: object) -> None:
    """Plain Luigi, given a task whose output was deleted, runs it again on what its upstream holds now. A NixTask
    reading a MockTarget (an S3 object, a table) was keyed by the target's identity only: after the data changed,
    the old result was restored from the store ("V1" where Luigi writes "V2"). Now such a task runs as a plain
    Luigi task (not cached), with a warning naming the target, and nothing is stored for it."""
    MockTarget.fs.clear()
    build(Shout())
    assert Path("shout.txt").read_text() == "V1"
    MockTarget.fs.get_all_data()["probe9/remote"] = b"v2"  # the remote data is rewritten
    os.remove("shout.txt")
    build(Shout())
    assert Path("shout.txt").read_text() == "V2"
    assert runs() == {"Shout": 2}
    assert "MockTarget(probe9/remote)" in caplog.text  # type: ignore[attr-defined]
    assert not list((store_root / "realisations").rglob("*.json"))


class Both(luigi.WrapperTask):
    def requires(self) -> luigi.Task:
        return Remote()


class ShoutNative(NixTask):
    def requires(self) -> luigi.Task:
        return Both()

    def produce(self, out: Path) -> None:
        with Remote().output().open() as f:
            (out / "shout.txt").write_text(f.read().upper())


def test_a_store_native_task_reading_a_target_the_store_cannot_hash_is_refused_clearly(store_root: Path,
                                                                                       caplog: object) -> None:
    """The same through a WrapperTask, for a produce() task, which cannot run as plain Luigi: it was cached by
    the MockTarget's identity (served "V1" after the data became "v2"); now it fails before running, saying which
    target the store cannot hash and what to do, and nothing is stored."""
    MockTarget.fs.clear()
    build(ShoutNative(), ok=False)
    text = caplog.text  # type: ignore[attr-defined]
    assert "reads MockTarget(probe9/remote) of Remote" in text and "store cannot hash" in text, text
    assert not list((store_root / "realisations").rglob("*.json"))


class LoadTable(luigi.Task):
    """A plain task without output() whose complete() checks a database (luigi.contrib's table-loading style)."""

    def complete(self) -> bool:
        with sqlite3.connect("db.sqlite") as db:
            db.execute("create table if not exists t(v text)")
            return db.execute("select count(*) from t").fetchone()[0] > 0

    def run(self) -> None:
        with sqlite3.connect("db.sqlite") as db:
            db.execute("insert into t values('v1')")


class Query(NixTask):
    def requires(self) -> luigi.Task:
        return LoadTable()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("query.txt")

    def run(self) -> None:
        note("Query")
        with sqlite3.connect("db.sqlite") as db, self.output().open("w") as f:
            f.write(",".join(row[0] for row in db.execute("select v from t")))


def test_a_task_reading_what_an_upstream_complete_checks_runs_as_plain_luigi(store_root: Path) -> None:
    """An upstream task with no output() whose complete() checks a database row: what the NixTask reads is in the
    database, which the store cannot see; the NixTask was keyed without it and restored "v1" after the row became
    "v2". Now it runs as plain Luigi runs it."""
    build(Query())
    with sqlite3.connect("db.sqlite") as db:
        db.execute("update t set v='v2'")
    os.remove("query.txt")
    build(Query())
    assert Path("query.txt").read_text() == "v2"
    assert runs() == {"Query": 2}


# ---- `python pipeline.py Task` and `luigi --module pipeline Task` ----------------------------------------------

PIPELINE = '''
import luigi
from luigi_nixworkflow import NixTask

GREETING = "hello"


def note(name):
    with open("runs.log", "a") as f:
        f.write(name + "\\n")


class Base:
    def shout(self, text):
        return text


class Formatter(Base):  # a helper class whose base is the script's own
    pass


class Hello(NixTask):
    def output(self):
        return luigi.LocalTarget("hello.txt")

    def run(self):
        note("Hello")
        with self.output().open("w") as f:
            f.write(Formatter().shout(GREETING))


if __name__ == "__main__":
    luigi.run()
'''


def test_python_pipeline_py_and_luigi_module_key_a_task_the_same(tmp_path: Path) -> None:
    """Luigi's docs run a pipeline both ways: `python pipeline.py Task` (luigi.run() under __main__) and
    `luigi --module pipeline Task`. The module-level helpers a task uses were keyed by their qualified name,
    `__main__.note` one way and `pipeline.note` the other, so switching re-ran every task that uses a helper
    although nothing changed (so did a helper class, by its base's name). Now both key the same: the second run
    restores the file instead of running."""
    Path("pipeline.py").write_text(PIPELINE)
    env = dict(os.environ, PYTHONPATH=f"{Path.cwd()}{os.pathsep}{REPO}")
    for command in ([sys.executable, "pipeline.py"], [LUIGI, "--module", "pipeline"]):
        proc = subprocess.run([*command, "Hello", "--local-scheduler"], env=env, text=True, capture_output=True,
                              timeout=120)
        assert proc.returncode == 0 and "This progress looks :)" in proc.stderr + proc.stdout, proc.stderr[-2000:]
        assert Path("hello.txt").read_text() == "hello"
        os.remove("hello.txt")
    assert runs() == {"Hello": 1}


# ---- builds in one interpreter ------------------------------------------------------------------------------------


class Sample(NixTask):
    name = luigi.Parameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(f"samples/{self.name}.txt")

    def run(self) -> None:
        with self.output().open("w") as f:
            f.write(self.name)


class Gather(NixTask):
    def requires(self) -> list[luigi.Task]:
        return [Sample(name=n) for n in Path("sheet.txt").read_text().split()]  # a sample sheet

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("gathered.txt")

    def run(self) -> None:
        note("Gather")
        with self.output().open("w") as f:
            f.write("+".join(t.open().read() for t in self.input()))


def test_a_second_build_in_one_interpreter_calls_requires_again(store_root: Path) -> None:
    """In a notebook, Luigi's instance cache hands the second luigi.build the same task instances. Plain Luigi
    calls requires() again, so a sample added to the sheet in between is gathered; NixTask kept the first build's
    requires(), keyed the task with the old samples and restored the old result ("a+b" where Luigi writes
    "a+b+c"). Now requires() is asked once per build."""
    Path("sheet.txt").write_text("a b")
    Register.clear_instance_cache()
    build(Gather(), afresh=False)
    assert Path("gathered.txt").read_text() == "a+b"
    Path("sheet.txt").write_text("a b c")
    os.remove("gathered.txt")
    build(Gather(), afresh=False)
    assert Path("gathered.txt").read_text() == "a+b+c"
    assert runs() == {"Gather": 2}
