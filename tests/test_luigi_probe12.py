"""Probing wave 12: everyday Luigi idioms (luigi.util.delegates, a task class whose methods a task calls, a
TaskParameter), written as plain Luigi and migrated by changing only `luigi.Task` to `NixTask`, run with the real
`luigi` command against a private store. Each test is a bug that probing found, and fails on the code before its
fix. Code digests are memoised per process, so each run is a new `luigi` process, as a user's next run is."""

from __future__ import annotations

from pathlib import Path

from tests.luigi_run import luigi_cli, runs

# ---- luigi.util.delegates -----------------------------------------------------------------------------------------

DELEGATES = '''
import luigi
from luigi.util import delegates
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Raw(luigi.ExternalTask):
    def output(self):
        return luigi.LocalTarget("raw.txt")


class Clean(NixTask):
    def requires(self):
        return Raw()

    def output(self):
        return luigi.LocalTarget("out/clean.txt")

    def run(self):
        note("Clean")
        with self.input().open() as f, self.output().open("w") as g:
            g.write(f.read().upper())


class Counter(luigi.Task):
    def requires(self):
        return Clean()

    def count(self):
        with self.input().open() as f:
            return len(f.read().split()) * {FACTOR}


@delegates
class Report(NixTask):
    def subtasks(self):
        return Counter()

    def output(self):
        return luigi.LocalTarget("out/report.txt")

    def run(self):
        note("Report")
        with self.output().open("w") as g:
            g.write(f"{self.subtasks().count()} {self.subtasks().input().open().read()}")


class Extra(NixTask):
    """deps() overridden by hand, calling super().deps()."""
    def deps(self):
        return super().deps() + [Clean()]

    def output(self):
        return luigi.LocalTarget("out/extra.txt")

    def run(self):
        note("Extra")
        with open("out/clean.txt") as f, self.output().open("w") as g:
            g.write(f.read().lower())
'''


def test_a_delegating_task_is_keyed_by_its_subtasks_inputs_and_code() -> None:
    """`luigi.util.delegates` (and any overridden `deps()`) makes the scheduler run the subtasks' requirements first,
    and run() calls the subtasks' methods, which read them. The key walked only requires() (empty) and left the
    subtask class out (a task class named in the code counted as upstream, keyed by a result it never has), so an
    edited input or an edited subtask method served the old report. Now what deps() adds is keyed as a requirement
    is, and the code of a task class the task names without requiring it is keyed."""
    Path("raw.txt").write_text("a b\n")
    Path("deleg.py").write_text(DELEGATES.replace("{FACTOR}", "1"))
    luigi_cli("--module", "deleg", "Report")
    luigi_cli("--module", "deleg", "Extra")
    assert Path("out/report.txt").read_text() == "2 A B\n"
    assert Path("out/extra.txt").read_text() == "a b\n"
    luigi_cli("--module", "deleg", "Report")
    assert runs() == {"Clean": 1, "Report": 1, "Extra": 1}
    Path("raw.txt").write_text("a b c\n")
    luigi_cli("--module", "deleg", "Report")
    luigi_cli("--module", "deleg", "Extra")
    assert Path("out/report.txt").read_text() == "3 A B C\n"
    assert Path("out/extra.txt").read_text() == "a b c\n"
    Path("deleg.py").write_text(DELEGATES.replace("{FACTOR}", "10"))
    luigi_cli("--module", "deleg", "Report")
    assert Path("out/report.txt").read_text() == "30 A B C\n"
    assert runs() == {"Clean": 2, "Report": 3, "Extra": 2}


# ---- a task class whose methods a task calls, or that a TaskParameter names -----------------------------------------

HELPER_TASKS = '''
import luigi
from luigi.util import requires
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Powers(luigi.Task):
    n = luigi.IntParameter(default=2)

    def f(self, x):
        return x ** self.n{PLUS}


class Cubes(luigi.Task):
    def f(self, x):
        return x ** 3{PLUS}
{UNUSED}


class Source(NixTask):
    def output(self):
        return luigi.LocalTarget("out/source.txt")

    def run(self):
        note("Source")
        with self.output().open("w") as g:
            g.write("3")


class UsesHelper(NixTask):
    def requires(self):
        return Source()

    def output(self):
        return luigi.LocalTarget("out/uses.txt")

    def run(self):
        note("UsesHelper")
        with self.input().open() as f, self.output().open("w") as g:
            g.write(str(Powers().f(int(f.read()))))


class ByParam(NixTask):
    how = luigi.TaskParameter()

    def output(self):
        return luigi.LocalTarget(f"out/{self.how.__name__}.txt")

    def run(self):
        note("ByParam")
        with self.output().open("w") as g:
            g.write(str(self.how().f(4)))


@requires(ByParam)
class Down(NixTask):
    def output(self):
        return luigi.LocalTarget(f"out/down_{self.how.__name__}.txt")

    def run(self):
        note("Down")
        with self.input().open() as f, self.output().open("w") as g:
            g.write(f.read() + "!")
'''


def test_a_task_class_whose_methods_a_task_calls_is_keyed_by_its_code() -> None:
    """A run() that calls a method of a task class it does not require (`Powers().f(3)`), or of the class a
    TaskParameter names (`--how Cubes`), ran that code inside the task, but the class was never followed into (a task
    class counts as an upstream keyed by its result): editing `f` served the old result. Now its code is keyed; the
    task it does require keeps early cutoff (editing Source's code without changing its output re-runs only
    Source), and a TaskParameter's class is keyed by code in every task that holds it."""
    pipe = HELPER_TASKS.replace("{UNUSED}", "")
    Path("helpers_pipe.py").write_text(pipe.replace("{PLUS}", ""))
    luigi_cli("--module", "helpers_pipe", "UsesHelper")
    luigi_cli("--module", "helpers_pipe", "ByParam", "--how", "Cubes")
    assert (Path("out/uses.txt").read_text(), Path("out/Cubes.txt").read_text()) == ("9", "64")
    Path("helpers_pipe.py").write_text(pipe.replace("{PLUS}", " + 1"))
    luigi_cli("--module", "helpers_pipe", "UsesHelper")
    luigi_cli("--module", "helpers_pipe", "ByParam", "--how", "Cubes")
    assert (Path("out/uses.txt").read_text(), Path("out/Cubes.txt").read_text()) == ("10", "65")
    assert runs() == {"Source": 1, "UsesHelper": 2, "ByParam": 2}
    Path("helpers_pipe.py").write_text(pipe.replace("{PLUS}", " + 1").replace('g.write("3")', 'g.write("3" + "")'))
    luigi_cli("--module", "helpers_pipe", "UsesHelper")
    assert runs() == {"Source": 2, "UsesHelper": 2, "ByParam": 2}
    luigi_cli("--module", "helpers_pipe", "Down", "--how", "Cubes")
    assert Path("out/down_Cubes.txt").read_text() == "65!"
    unused = "\n    def g(self):\n        return 0\n"
    Path("helpers_pipe.py").write_text(HELPER_TASKS.replace("{UNUSED}", unused).replace("{PLUS}", " + 1"))
    luigi_cli("--module", "helpers_pipe", "Down", "--how", "Cubes")  # ByParam again (its output is the same), and
    # Down too, which only passes `how` on: the class a TaskParameter holds is keyed wherever it is held, since its
    # methods may run there as well (over-keying re-runs; keying it only upstream could serve a stale result)
    assert runs() == {"Source": 2, "UsesHelper": 2, "ByParam": 3, "Down": 2}
