"""Probing wave 14 (Luigi): idioms of other people's pipelines (event handlers, multiprocess workers, exit codes,
output formats and shapes, typed parameters, inheritance chains), written as plain Luigi and migrated by changing only
the base class, run with the real `luigi` command against a private store. Each test is a bug that probing found, and
fails on the code before its fix. Code digests are memoised per process, so each run is a new `luigi` process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import REPO
from tests.luigi_run import LUIGI, luigi_cli, runs

# ---- an ExternalTask that inherits from a migrated base ----------------------------------------------------------

EXTERNAL = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Base(NixTask):  # the project's base task, migrated: was `class Base(luigi.Task)`
    def output(self):
        return luigi.LocalTarget(f"data/{self.task_family}.txt")


class Raw(Base, luigi.ExternalTask):  # data something else writes
    pass


class RawMixin(NixTask, luigi.ExternalTask):  # NixTask added as a mixin
    def output(self):
        return luigi.LocalTarget("data/mixin.txt")


class Clean(Base):
    def requires(self):
        return [Raw(), RawMixin()]

    def run(self):
        note("Clean")
        with self.output().open("w") as g:
            g.write("".join(t.open().read() for t in self.input()).upper())
'''


def _luigi(*args: str) -> int:
    env = dict(os.environ, PYTHONPATH=f"{Path.cwd()}{os.pathsep}{REPO}")
    return subprocess.run([LUIGI, *args, "--local-scheduler"], env=env, capture_output=True, timeout=300).returncode


def test_an_external_task_deriving_from_a_nixtask_is_still_external() -> None:
    """`class Raw(Base, luigi.ExternalTask)` once the project's `Base` became a NixTask (or `class Raw(NixTask,
    luigi.ExternalTask)`): NixTask's run() came before ExternalTask's `run = None` in the MRO, so Luigi no longer saw
    an external task: it "ran" Raw (doing nothing), reported it done although its file was missing, and failed Clean
    with "Unfulfilled dependency at run time" (exit code of a failed task), where plain Luigi reports a missing
    external dependency and runs nothing."""
    Path("ext.py").write_text(EXTERNAL)
    assert _luigi("--module", "ext", "Clean", "--retcode-missing-data", "5", "--retcode-task-failed", "4") == 5
    assert runs() == {}
    out = luigi_cli("--module", "ext", "Clean", ok=False)
    assert "missing external dependencies" in out and "ran successfully" not in out
    Path("data").mkdir()
    Path("data/Raw.txt").write_text("a")
    Path("data/mixin.txt").write_text("b")
    luigi_cli("--module", "ext", "Clean")
    luigi_cli("--module", "ext", "Clean")
    assert Path("data/Clean.txt").read_text() == "AB" and runs() == {"Clean": 1}
    Path("data/mixin.txt").write_text("c")  # the external data changed: read again
    luigi_cli("--module", "ext", "Clean")
    assert Path("data/Clean.txt").read_text() == "AC" and runs() == {"Clean": 2}


# ---- two requirements that declare one output path ---------------------------------------------------------------

SHARED = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Part(NixTask):
    v = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget("out/part.txt")  # the classic slip: the path does not depend on v

    def run(self):
        note(f"Part{self.v}")
        with self.output().open("w") as g:
            g.write(str(self.v))


class Join(NixTask):
    def requires(self):
        return [Part(v=1), Part(v=2)]

    def output(self):
        return luigi.LocalTarget("out/join.txt")

    def run(self):
        note("Join")
        with self.output().open("w") as g:
            g.write("+".join(t.open().read() for t in self.input()))
'''


def test_two_requirements_declaring_one_path_are_refused() -> None:
    """`Part(v=1)` and `Part(v=2)` both declare out/part.txt: each ran and was stored with its own content, and Join
    read one file twice ("2+2" or "1+1", whichever was restored last) while its key and lineage record said it was
    made from "1" and "2" (a record that lies, and a result served again on every later run). Join now fails before
    its run(), naming both tasks and the path; nothing of it is stored."""
    Path("shared.py").write_text(SHARED)
    out = luigi_cli("--module", "shared", "Join", ok=False)
    assert "Part(v=1) and Part(v=2), which both declare the output" in out and "part.txt" in out
    assert "Traceback" not in out
    assert not Path("out/join.txt").exists() and runs()["Join"] == 0
    out = luigi_cli("--module", "shared", "Join", ok=False)  # nothing was stored: refused again, not served
    assert "which both declare the output" in out and runs()["Join"] == 0


# ---- a WrapperTask or a Luigi task base behind a migrated base -----------------------------------------------------

BASES = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Base(NixTask):  # the project's base task, migrated: was `class Base(luigi.Task)`
    pass


class Part(Base):
    v = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(f"out/part{self.v}.txt")

    def run(self):
        note(f"Part{self.v}")
        with self.output().open("w") as g:
            g.write(open("seed.txt").read() + str(self.v))


class Parts(Base, luigi.WrapperTask):
    def requires(self):
        return [Part(v=1), Part(v=2)]


class Report(Base):
    def requires(self):
        return Parts()

    def output(self):
        return luigi.LocalTarget("out/report.txt")

    def run(self):
        note("Report")
        with self.output().open("w") as g:
            g.write("+".join(open(f"out/part{v}.txt").read() for v in (1, 2)))


class Templated(luigi.Task):  # a library's task base that brings output() and run()
    name = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"out/{self.name}.txt")

    def run(self):
        note(self.name)
        with self.output().open("w") as g:
            g.write(self.text())


class Greeting(NixTask, Templated):  # NixTask added as a mixin
    def text(self):
        return "hello"
'''


def test_a_wrapper_task_behind_a_migrated_base_completes() -> None:
    """`class Parts(Base, luigi.WrapperTask)` once `Base` became a NixTask: NixTask's complete() came before
    WrapperTask's in the MRO, and with no output of its own the wrapper was never complete, so Report failed with
    "Unfulfilled dependency at run time" at every run (plain Luigi runs Report once, then nothing). Report is keyed
    through the wrapper: editing what the parts read re-runs them and it."""
    Path("bases.py").write_text(BASES)
    Path("seed.txt").write_text("a")
    out = luigi_cli("--module", "bases", "Report")
    assert "Unfulfilled" not in out and Path("out/report.txt").read_text() == "a1+a2"
    out = luigi_cli("--module", "bases", "Report")
    assert "Did not run any tasks" in out and runs() == {"Part1": 1, "Part2": 1, "Report": 1}
    Path("seed.txt").write_text("b")
    luigi_cli("--module", "bases", "Report")
    assert Path("out/report.txt").read_text() == "b1+b2" and runs() == {"Part1": 2, "Part2": 2, "Report": 2}


def test_an_output_a_luigi_base_brings_is_kept() -> None:
    """`class Greeting(NixTask, Templated)` where the Luigi task base `Templated` brings output() and run(): its run()
    was used but NixTask's output() hid its output(), so the task ran as plain Luigi with no output (its run() failed
    on `self.output().open`, and it would never be complete). Plain Luigi uses the base's output()."""
    Path("bases.py").write_text(BASES)
    luigi_cli("--module", "bases", "Greeting", "--name", "hi")
    out = luigi_cli("--module", "bases", "Greeting", "--name", "hi")
    assert "Did not run any tasks" in out and "runs as a plain Luigi task" not in out
    assert Path("out/hi.txt").read_text() == "hello" and runs() == {"hi": 1}
    Path("out/hi.txt").unlink()  # restored from the store, not run again
    luigi_cli("--module", "bases", "Greeting", "--name", "hi")
    assert Path("out/hi.txt").read_text() == "hello" and runs() == {"hi": 1}


# ---- the run journal right after a build, in an interpreter that lives on ----------------------------------------


class Slow(__import__("luigi_nixworkflow").NixTask):
    """A task whose produce() makes the journal flusher's mid-run write happen for sure (it writes every
    FLUSH_EVERY seconds while a run goes on; a test cannot wait for its tick without racing it)."""

    def produce(self, out: Path) -> None:
        from luigi_nixworkflow import journal

        for running in list(journal._BY_ENGINE.values()):  # the flusher's pass while this task runs:
            running.flush()  # the journal on disk says "running"
        (out / "v").write_text("v\n")


def test_the_run_journal_is_final_when_luigi_build_returns(store_root: Path, monkeypatch) -> None:
    """A long-lived interpreter (a notebook, a service, a test) that called luigi.build: the journal on disk was
    written by the shared flusher at most every FLUSH_EVERY seconds, so right after the build it could still say
    the last task was running, and `nw lineage` of its output link answered "running in the last Luigi run" instead
    of its lineage (tests/test_luigi_legacy.py::test_lineage_of_a_legacy_task failed so now and then)."""
    import luigi
    from luigi.task_register import Register

    import luigi_nixworkflow
    from nixlib.view import history
    from tests.helpers import nw

    monkeypatch.setattr(history, "_flush_later", lambda journal: None)  # no flusher: only the writes made here
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    assert luigi.build([Slow()], local_scheduler=True, log_level="WARNING")
    out = nw("lineage", f"nix-workflow-output/{Slow().task_id}")
    assert out.returncode == 0 and "running" not in out.stdout + out.stderr, out.stdout + out.stderr
    assert Slow().task_id in out.stdout
