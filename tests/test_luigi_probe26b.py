"""Probing wave 26b (Luigi): the graph-wide output-path clash under `[core] parallel_scheduling` (complete() runs in
a process pool), `import pipeline` then `pipeline.Raw()` inside a method keying all of pipeline.py, and files a
SUCCESS event handler writes into an output. Each test fails on the code before its fix. Code digests are memoised
per process, so each run is a new `luigi` process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.luigi_run import LUIGI, luigi_cli, runs
from tests.test_luigi_probe25c import CLASH
from tests.test_luigi_probe26 import PIPELINE as PIPELINE_26

# ---- the clash of test_luigi_probe25c, scheduled by a process pool ----------------------------------------------


def _clash_project() -> None:
    Path("clash.py").write_text(CLASH)
    Path("luigi.cfg").write_text("[Clean]\nmin_qty=2\n[core]\nparallel_scheduling=true\n")
    Path("data").mkdir()
    Path("data/raw.csv").write_text("a,1\nb,2\nc,3\n")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_clash_is_refused_before_anything_runs_with_parallel_scheduling(workers: str) -> None:
    """With parallel_scheduling each complete() runs in a pool process and its claims were lost: Clean(min_qty=1)
    and Summarize ran (or the clash showed in one pool process only, as the complete() error of one task, while the
    other claimant ran in the scheduling process). The scheduling process now claims each answered task's graph
    itself: nothing runs, out/ is never written, and the message is the one paragraph of the serial check."""
    _clash_project()
    for _ in range(2):
        out = luigi_cli("--module", "clash", "All", "--workers", workers, ok=False)
        assert "Clean(min_qty=1) and Clean(min_qty=2)" in out, out[-3000:]
        assert "both declare the output" in out and "out/clean.csv" in out and "Traceback" not in out
        assert runs() == {} and not Path("out").exists(), out[-3000:]


def test_nested_outputs_of_two_branches_are_refused_with_parallel_scheduling() -> None:
    """Report declares out/report and Extra out/report/extra.txt, in two branches of Top (one Clean only)."""
    _clash_project()
    Path("luigi.cfg").write_text("[core]\nparallel_scheduling=true\n")
    out = luigi_cli("--module", "clash", "Top", "--workers", "2", ok=False)
    assert "Report() declares the directory" in out and "Extra() declares" in out, out[-3000:]
    assert "Traceback" not in out and runs() == {} and not Path("out").exists()


def test_distinct_paths_build_and_are_served_with_parallel_scheduling() -> None:
    """Control: the fixed pipeline (a path per min_qty) builds with parallel scheduling and two workers, and a re-run
    after `rm -rf out` runs nothing and restores every file."""
    _clash_project()
    Path("clash.py").write_text(CLASH.replace('"out/clean.csv"', 'f"out/clean-{self.min_qty}.csv"'))
    luigi_cli("--module", "clash", "All", "--workers", "2")
    assert runs() == {"Clean1": 1, "Clean2": 1, "Summarize": 1, "Threshold": 1}
    assert Path("out/summary.txt").read_text() == "3" and Path("out/threshold.txt").read_text() == "2"
    first = {p: p.read_bytes() for p in Path("out").iterdir()}
    for p in Path("out").iterdir():
        p.unlink()
    luigi_cli("--module", "clash", "All", "--workers", "2")
    assert runs() == {"Clean1": 1, "Clean2": 1, "Summarize": 1, "Threshold": 1}
    assert {p: p.read_bytes() for p in Path("out").iterdir()} == first


# ---- `import pipeline` then `pipeline.Raw()` inside a method -------------------------------------------------------

PIPELINE = PIPELINE_26.replace("return [Report(), lower.Uses(), Other()]",
                               "return [Report(), lower.Uses(), Other(), lower.Helped()]") + '''

def helper():
    return "helped"
'''

LOWER = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Load(NixTask):
    def requires(self):
        import pipeline  # (pipeline imports this module: a top-level import would be circular)
        return pipeline.Raw()

    def output(self):
        return luigi.LocalTarget("out/load.txt")

    def run(self):
        note("Load")
        with self.input().open() as f, self.output().open("w") as g:
            g.write(f.read().upper())


class Uses(NixTask):
    def output(self):
        return luigi.LocalTarget("out/uses.txt")

    def run(self):
        import pipeline as p
        note("Uses")
        with self.output().open("w") as g:
            g.write(f"factor {p.Scale().factor()}")


class Helped(NixTask):  # calls a function of the module: the module's file stays keyed
    def output(self):
        return luigi.LocalTarget("out/helped.txt")

    def run(self):
        import pipeline
        note("Helped")
        with self.output().open("w") as g:
            g.write(pipeline.helper())
'''


def test_a_module_imported_inside_requires_and_used_only_for_its_task_classes_is_not_keyed_whole() -> None:
    """`import pipeline` then `return pipeline.Raw()` in lower.Load's requires() keyed all of pipeline.py by content
    (luigi26 fixed only `from pipeline import Raw`): editing Other re-ran Load, Report and Uses. A module whose every
    use in that code is `module.TaskClass` is now keyed as those classes are (Raw by its result, Scale by its code as
    it runs inside Uses); Helped, which calls a function of the module, still keys the module's file."""
    Path("pipeline.py").write_text(PIPELINE)
    Path("lower.py").write_text(LOWER)
    Path("data").mkdir()
    Path("data/raw.txt").write_text("abc\n")
    luigi_cli("--module", "pipeline", "All")
    assert runs() == {"Load": 1, "Report": 1, "Uses": 1, "Other": 1, "Helped": 1}

    Path("pipeline.py").write_text(PIPELINE.replace("other v1", "other v2"))
    Path("runs.log").unlink()
    luigi_cli("--module", "pipeline", "All")
    assert runs() == {"Other": 1, "Helped": 1}, "an edit of Other re-ran tasks that only use task classes of it"
    assert Path("out/other.txt").read_text() == "other v2"

    Path("pipeline.py").write_text(PIPELINE.replace("other v1", "other v2").replace("return 2", "return 3"))
    Path("runs.log").unlink()
    luigi_cli("--module", "pipeline", "All")
    assert runs() == {"Uses": 1, "Helped": 1}, "Scale.factor() runs inside Uses: editing it must re-run Uses"
    assert Path("out/uses.txt").read_text() == "factor 3"

    Path("data/raw.txt").write_text("abd\n")
    Path("runs.log").unlink()
    luigi_cli("--module", "pipeline", "All")
    assert runs() == {"Load": 1, "Report": 1}
    assert Path("out/report.txt").read_text() == "report: ABD\n"


# ---- a SUCCESS event handler writing a marker into an output directory --------------------------------------------

MARKED = '''
import os
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Parts(NixTask):
    def output(self):
        return luigi.LocalTarget("out/parts")

    def run(self):
        note("Parts")
        os.makedirs(self.output().path)
        for i in range(2):
            with open(f"{self.output().path}/part-{i}", "w") as g:
                g.write(str(i))


@Parts.event_handler(luigi.Event.SUCCESS)
def mark(task):
    note("mark")
    open(os.path.join(task.output().path, "_SUCCESS"), "w").close()


class Plain(NixTask):  # a SUCCESS handler that writes elsewhere: nothing to warn of
    def output(self):
        return luigi.LocalTarget("out/plain.txt")

    def run(self):
        with self.output().open("w") as g:
            g.write("plain")


@Plain.event_handler(luigi.Event.SUCCESS)
def elsewhere(task):
    note("elsewhere")
    with open("notified.txt", "a") as g:
        g.write(task.task_id + "\\n")


class All(luigi.WrapperTask):
    def requires(self):
        return [Parts(), Plain()]
'''


def test_a_marker_a_success_handler_writes_into_an_output_is_warned_of() -> None:
    """Luigi fires SUCCESS after the outputs were stored, so a `_SUCCESS` marker a handler writes into an output
    directory was silently left out of the stored result (the next check restores the directory without it). The
    handlers are not run early (a handler announces success, which must not come before the result is stored, and
    calling them early means skipping Luigi's call): the task now warns, naming the task, the path and the fix. A
    handler writing outside the outputs is not warned of, and each handler is called once per run."""
    Path("marked.py").write_text(MARKED)
    out = luigi_cli("--module", "marked", "All", "--workers", "2")
    assert "Parts__99914b932b: a SUCCESS event handler changed" in out, out[-3000:]
    assert f"{Path.cwd()}/out/parts" in out and "own on_success()" in out and "Traceback" not in out
    assert "Plain__99914b932b: a SUCCESS" not in out
    assert runs() == {"Parts": 1, "mark": 1, "elsewhere": 1}
    out = luigi_cli("--module", "marked", "All")  # cached: no SUCCESS event, no warning, the stored result restored
    assert "SUCCESS event handler" not in out and runs() == {"Parts": 1, "mark": 1, "elsewhere": 1}
    assert sorted(p.name for p in Path("out/parts").iterdir()) == ["part-0", "part-1"]


# A task graph Luigi only ever explores where complete() says no: below a complete task, requires() goes on for ever
# (`Ladder(n - 1)` down to minus infinity), as in Luigi's own worker_parallel_scheduling_test.
LADDER = '''
import os

import luigi
from luigi_nixworkflow import NixTask


class Ladder(NixTask):
    n = luigi.IntParameter()

    def complete(self):
        return self.n <= 0 or os.path.exists(f"done-{self.n}")

    def requires(self):
        return [Ladder(self.n - 1)]

    def run(self):
        open(f"done-{self.n}", "w").close()
'''


def test_parallel_scheduling_walks_no_requires_luigi_never_calls() -> None:
    """The scheduling process's claims walked requires() of every answered task, complete or not, so a graph that
    goes on below a complete task (Luigi never asks) was walked for ever: `luigi --workers 1` with parallel
    scheduling hung (3 of Luigi's own parallel-scheduling tests timed out). It walks now only what a recipe reaches
    (from a NixTask the store manages, through plain tasks): this unmanaged task (no output) is not walked into."""
    Path("ladder.py").write_text(LADDER)
    Path("luigi.cfg").write_text("[core]\nparallel_scheduling=true\n")
    env = dict(os.environ, PYTHONPATH=f"{Path.cwd()}{os.pathsep}{REPO}")
    try:
        proc = subprocess.run([LUIGI, "--module", "ladder", "Ladder", "--n", "3", "--local-scheduler", "--no-lock"],
                              env=env, text=True, capture_output=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("luigi did not finish: the claims walked an endless requires() chain")
    out = proc.stdout + proc.stderr
    assert "This progress looks :)" in out, out[-3000:]
