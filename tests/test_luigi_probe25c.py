"""Probing wave 25c (Luigi): two tasks of one build that declare one output path (or one inside the other) in
different branches of the graph, and a false "cannot follow" warning for a ListParameter of files. Each test fails
on the code before its fix. Code digests are memoised per process, so each run is a new `luigi` process."""

from __future__ import annotations

from pathlib import Path

from tests.luigi_run import luigi_cli, runs

# ---- @requires(Clean) plus a per-task luigi.cfg section: two Clean tasks, one output path ---------------------------

CLASH = '''
import luigi
from luigi.util import requires
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Raw(NixTask, luigi.ExternalTask):
    def output(self):
        return luigi.LocalTarget("data/raw.csv")


class Clean(NixTask):
    min_qty = luigi.IntParameter(default=1)

    def requires(self):
        return Raw()

    def output(self):
        return luigi.LocalTarget("out/clean.csv")  # the slip: the path does not depend on min_qty

    def run(self):
        note(f"Clean{self.min_qty}")
        rows = [r for r in self.input().open().read().split() if int(r.split(",")[1]) >= self.min_qty]
        with self.output().open("w") as g:
            g.write("\\n".join(rows) + "\\n")


@requires(Clean)  # copies min_qty, read from [Summarize] (so 1), not from [Clean]
class Summarize(NixTask):
    def output(self):
        return luigi.LocalTarget("out/summary.txt")

    def run(self):
        note("Summarize")
        with self.output().open("w") as g:
            g.write(str(len(self.input().open().read().split())))


class Threshold(NixTask):
    def requires(self):
        return Clean()  # min_qty from [Clean]: 2

    def output(self):
        return luigi.LocalTarget("out/threshold.txt")

    def run(self):
        note("Threshold")
        with self.output().open("w") as g:
            g.write(str(len(self.input().open().read().split())))


class All(luigi.WrapperTask):
    def requires(self):
        return [Summarize(), Threshold()]


class Report(NixTask):  # a directory output in one branch ...
    def output(self):
        return luigi.LocalTarget("out/report")

    def run(self):
        note("Report")
        import os
        os.makedirs(self.output().path)
        with open(self.output().path + "/index.txt", "w") as g:
            g.write("report")


class Extra(NixTask):  # ... and a file inside it in another
    def output(self):
        return luigi.LocalTarget("out/report/extra.txt")

    def run(self):
        note("Extra")
        with self.output().open("w") as g:
            g.write("extra")


class Top(NixTask):
    def requires(self):
        return {"r": [Summarize(), Report()], "e": [Threshold(), Extra()]}

    def output(self):
        return luigi.LocalTarget("out/top.txt")

    def run(self):
        note("Top")
        with self.output().open("w") as g:
            g.write("top")


class Dyn(NixTask):  # yields Clean(min_qty=2) while Summarize (in the other branch) requires Clean(min_qty=1)
    def output(self):
        return luigi.LocalTarget("out/dyn.txt")

    def run(self):
        note("Dyn")
        clean = yield Clean()
        with self.output().open("w") as g:
            g.write(clean.open().read())


class WithDyn(luigi.WrapperTask):
    def requires(self):
        return [Summarize(), Dyn()]
'''


def _project() -> None:
    Path("clash.py").write_text(CLASH)
    Path("luigi.cfg").write_text("[Clean]\nmin_qty=2\n")
    Path("data").mkdir()
    Path("data/raw.csv").write_text("a,1\nb,2\nc,3\n")


def test_two_tasks_of_a_build_declaring_one_path_in_different_branches_are_refused() -> None:
    """`[Clean] min_qty=2` reaches Clean() that Threshold requires, but not the copy of min_qty that `@requires(Clean)`
    makes in Summarize: Clean(min_qty=1) and Clean(min_qty=2) both declare out/clean.csv. No task required both, so
    both ran, the file flipped between their stored results with the order of completeness checks, and Summarize read
    whichever was there while its record said it read the other. The build now fails before anything runs or is
    restored, naming both tasks with their parameters, the path, and how to fix it; a re-run is refused again."""
    _project()
    for _ in range(2):
        out = luigi_cli("--module", "clash", "All", ok=False)
        assert "Clean(min_qty=1) and Clean(min_qty=2)" in out or "Clean(min_qty=2) and Clean(min_qty=1)" in out, \
            out[-3000:]
        assert "both declare the output" in out and "out/clean.csv" in out and "min_qty" in out
        assert "Traceback" not in out
        assert runs() == {} and not Path("out").exists()


def test_a_file_inside_a_directory_output_of_another_branch_is_refused() -> None:
    """Report declares the directory out/report and Extra, in another branch of Top, the file out/report/extra.txt:
    each check of Report restored its directory exactly as stored, removing Extra's file (put back when Extra was
    checked). Refused before anything runs, naming both tasks and both paths (the Clean clash of the same graph may be
    the one named first: both are errors of the build)."""
    _project()
    Path("luigi.cfg").write_text("")  # one Clean only: the nested outputs are the build's one error
    out = luigi_cli("--module", "clash", "Top", ok=False)
    assert "Report() declares the directory" in out and "Extra() declares" in out, out[-3000:]
    assert "out/report/extra.txt" in out and "Traceback" not in out
    assert runs() == {} and not Path("out").exists()


def test_a_yielded_task_declaring_the_path_of_another_branchs_task_is_refused() -> None:
    """Dyn yields Clean() (min_qty=2 from luigi.cfg) while Summarize requires Clean(min_qty=1): the clash is known
    only once Dyn's run() yields, and Dyn then fails naming both tasks; its output is not written."""
    _project()
    out = luigi_cli("--module", "clash", "WithDyn", ok=False)
    assert "Clean(min_qty=1) and Clean(min_qty=2)" in out or "Clean(min_qty=2) and Clean(min_qty=1)" in out, \
        out[-3000:]
    assert "both declare the output" in out and "Traceback" not in out
    assert not Path("out/dyn.txt").exists()
    assert runs()["Clean2"] == 0 and runs()["Dyn"] <= 1  # (its body ran up to the yield)


def test_distinct_paths_per_parameter_still_build() -> None:
    """The fix the message suggests: output() depends on min_qty; both Clean tasks run and the build succeeds."""
    _project()
    Path("clash.py").write_text(CLASH.replace('"out/clean.csv"', 'f"out/clean-{self.min_qty}.csv"'))
    luigi_cli("--module", "clash", "All")
    assert Path("out/summary.txt").read_text() == "3" and Path("out/threshold.txt").read_text() == "2"
    assert runs() == {"Clean1": 1, "Clean2": 1, "Summarize": 1, "Threshold": 1}


# ---- a ListParameter of file paths read in a loop: keyed, so no "cannot follow" warning ---------------------------

FILES = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Cat(NixTask):
    files = luigi.ListParameter(default=["f/a.txt", "f/b.txt"])
    named = luigi.DictParameter(default={"extra": "f/c.txt"})

    def output(self):
        return luigi.LocalTarget("out/cat.txt")

    def run(self):
        note("Cat")
        text = ""
        for name in self.files:
            with open(name) as f:
                text += f.read()
        for i, item in enumerate(self.files):
            text += str(i) + open(item).read()
        text += open(self.files[1]).read()
        for path in self.named.values():
            text += open(path).read()
        with self.output().open("w") as g:
            g.write(text + open(self.named["extra"]).read())
'''


def test_files_of_a_list_parameter_read_in_a_loop_are_not_warned_of() -> None:
    """`for name in self.files: open(name)` (and `enumerate(self.files)`, `self.files[1]`, a DictParameter's values)
    warned "reads a file by a path the key cannot follow" although keying.param_files keys each file a parameter value
    names (an edit re-ran the task): a false warning that taught users to ignore the true ones. No warning now; an
    edit still re-runs."""
    Path("files.py").write_text(FILES)
    Path("f").mkdir()
    for name, text in (("a", "A"), ("b", "B"), ("c", "C")):
        Path(f"f/{name}.txt").write_text(text)
    out = luigi_cli("--module", "files", "Cat")
    assert "cannot follow" not in out, out[-3000:]
    assert Path("out/cat.txt").read_text() == "AB0A1BBCC" and runs() == {"Cat": 1}
    Path("f/b.txt").write_text("b")  # keyed: the task runs again
    luigi_cli("--module", "files", "Cat")
    assert Path("out/cat.txt").read_text() == "Ab0A1bbCC" and runs() == {"Cat": 2}
    Path("f/c.txt").write_text("c")
    luigi_cli("--module", "files", "Cat")
    assert Path("out/cat.txt").read_text() == "Ab0A1bbcc" and runs() == {"Cat": 3}
