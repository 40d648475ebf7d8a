"""Probing wave 16 (Luigi): a task writing into the output of a task it requires, runs killed with kill -9, and
everyday Luigi idioms, written as plain Luigi and migrated by changing only the base class, run with the real
`luigi` command against a private store. Each test is a bug that probing found, and fails on the code before its
fix."""

from __future__ import annotations

from pathlib import Path

from tests.luigi_run import luigi_cli, runs

# ---- a task writing into the output directory of a task it requires ----------------------------------------------

INSIDE = '''
import os
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class A(NixTask):
    def output(self):
        return luigi.LocalTarget("out/d")

    def run(self):
        note("A")
        os.makedirs(self.output().path)
        with open(os.path.join(self.output().path, "a.txt"), "w") as f:
            f.write("from A")


class B(NixTask):  # writes into A's directory
    def requires(self):
        return A()

    def output(self):
        return luigi.LocalTarget("out/d/extra.txt")

    def run(self):
        note("B")
        with self.output().open("w") as f:
            f.write("from B")


class Up(NixTask):
    def output(self):
        return luigi.LocalTarget("out/e/up.txt")

    def run(self):
        note("Up")
        with self.output().open("w") as f:
            f.write("up")


class Around(NixTask):  # declares the directory holding Up's file
    def requires(self):
        return Up()

    def output(self):
        return luigi.LocalTarget("out/e")

    def run(self):
        note("Around")
        os.makedirs(self.output().path, exist_ok=True)
        with open(os.path.join(self.output().path, "mine.txt"), "w") as f:
            f.write(self.input().open().read() + "!")
'''


def test_an_output_inside_a_required_tasks_directory_is_refused() -> None:
    """A declares the directory out/d and B, which requires A, writes out/d/extra.txt into it: every check of A
    restored its directory exactly as stored, removing B's file (put back when B was checked: a file vanishing
    under a reader of another worker), and `nw lineage out/d` found no producer. The other way round, Around's
    run() moved aside the directory out/e holding Up's file, so its own run() could not read its input. Both are
    refused before run(), naming both tasks and the paths; nothing is stored."""
    Path("inside.py").write_text(INSIDE)
    out = luigi_cli("--module", "inside", "B", ok=False)
    assert "inside the directory" in out and "A()" in out and "extra.txt" in out and "out/d" in out, out[-3000:]
    assert "Traceback" not in out and not Path("out/d/extra.txt").exists()
    out = luigi_cli("--module", "inside", "B", ok=False)  # nothing was stored: refused again, not served
    assert "inside the directory" in out
    out = luigi_cli("--module", "inside", "Around", ok=False)
    assert "declares the directory" in out and "Up()" in out and "up.txt" in out and "Traceback" not in out, out[-3000:]
    assert runs() == {}  # (the clash is found while Luigi schedules: neither task runs)
    assert not Path("out/e/up.txt").exists()


# ---- what a worker killed with kill -9 moved aside, in a long-lived interpreter -------------------------------------

KILLED = '''
import os
import signal
import luigi
from luigi_nixworkflow import NixTask


class T(NixTask):
    def output(self):
        return luigi.LocalTarget("out/t.txt")

    def run(self):
        os.makedirs("out", exist_ok=True)
        with open(self.output().path, "w") as f:  # written in place (not through a temporary file)
            f.write("partial")
            f.flush()
            if os.environ.get("".join(["D", "IE"])):  # (a name the key cannot see: the same task, killed)
                os.kill(os.getpid(), signal.SIGKILL)
            f.write(" done")
'''


def test_what_a_killed_worker_moved_aside_is_settled_by_the_next_build(monkeypatch) -> None:
    """A notebook (or a service calling luigi.build) runs with workers=2; the worker process running T is killed
    with kill -9 after moving T's previous output aside and writing part of the new one. The next luigi.build in
    the same interpreter found T complete and restored out/t.txt from the store, but never looked at the
    directory again (it was swept once per process), so `.nw-previous-t.txt.*` stayed next to the outputs for the
    interpreter's lifetime. Each build sweeps afresh: the old file is dropped once the stored result is back."""
    import sys

    import luigi
    from luigi.task_register import Register

    import luigi_nixworkflow

    Path("killed.py").write_text(KILLED)
    monkeypatch.syspath_prepend(str(Path.cwd()))
    sys.modules.pop("killed", None)
    import killed  # type: ignore[import-not-found]

    def build(workers: int) -> bool:
        Register.clear_instance_cache()
        luigi_nixworkflow.reset()
        result = luigi.build([killed.T()], local_scheduler=True, workers=workers, log_level="WARNING")
        return result

    assert build(1) and Path("out/t.txt").read_text() == "partial done"
    monkeypatch.setenv("NIX_WORKFLOW_FORCE", "T")  # run it again although stored, and kill its worker process
    monkeypatch.setenv("DIE", "1")
    assert not build(2)
    assert [p.name for p in Path("out").iterdir() if p.name.startswith(".nw-previous-")], "nothing was moved aside"
    monkeypatch.delenv("NIX_WORKFLOW_FORCE")
    monkeypatch.delenv("DIE")
    assert build(1)
    assert sorted(p.name for p in Path("out").iterdir()) == ["t.txt"]
    assert Path("out/t.txt").read_text() == "partial done"


# ---- a task writing into the directory of a plain task it requires --------------------------------------------------

INTO_PLAIN = '''
import os
import time
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Setup(luigi.Task):  # plain Luigi: makes the results directory with a config file in it
    def output(self):
        return luigi.LocalTarget("results")

    def run(self):
        os.makedirs("results/conf")
        with open("results/conf/params.txt", "w") as f:
            f.write(open("seed.txt").read())


class Report(NixTask):  # migrated: writes its report into Setup's directory
    def requires(self):
        return Setup()

    def output(self):
        return luigi.LocalTarget("results/report.txt")

    def run(self):
        note("Report")
        with self.output().open("w") as f:
            f.write(f"{open('results/conf/params.txt').read()} at {time.time_ns()}")
'''


def test_an_output_inside_a_plain_required_directory_does_not_key_itself() -> None:
    """Setup (plain Luigi) declares the directory results/, and Report, migrated by its base class, writes
    results/report.txt into it. Report was keyed by the whole directory, its own report included: its first
    result changed its own key, so it ran again at every build (its report names the time it was made), where
    plain Luigi runs it once. It is keyed by the directory without its own output: run once, then complete, and
    an edit of the directory's other content runs it again."""
    Path("into.py").write_text(INTO_PLAIN)
    Path("seed.txt").write_text("alpha")
    for _ in range(3):
        luigi_cli("--module", "into", "Report")
    assert runs() == {"Report": 1}
    assert Path("results/report.txt").read_text().startswith("alpha at ")
    Path("results/conf/params.txt").write_text("beta")  # what Report reads changed: it runs again, once
    luigi_cli("--module", "into", "Report")
    luigi_cli("--module", "into", "Report")
    assert runs() == {"Report": 2}
    assert Path("results/report.txt").read_text().startswith("beta at ")
