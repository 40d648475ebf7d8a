"""Review of the wave-12 changes (link modes, hardlink-mode storing, Luigi keying): regression tests for what the
review found. Each uses the real snakemake CLI and a temporary store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_snakemake import ok, snakemake
from tests.test_snakemake_semantics import write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


def test_a_symlink_output_to_an_outside_directory_is_restored_though_that_directory_holds_a_broken_link(
        tmp_path: Path) -> None:
    """An output that is itself a symlink (`ref -> /data/genome`, made with `ln -s`) is stored as that link. The
    check for restored links that dangle here walked into the directory it points at, which is not the product:
    a broken link anywhere in there (and the walk itself, over a whole reference tree) made every restore fail
    with "the stored output(s) ref/sub/broken are symlinks whose targets do not exist here", so the job ran
    again on every run in every checkout, where the local executor's run had left the very same link."""
    outside = tmp_path / "data"
    (outside / "sub").mkdir(parents=True)
    (outside / "genome.fa").write_text(">chr1\nACGT\n")
    os.symlink(tmp_path / "nowhere", outside / "sub" / "broken")
    log = tmp_path / "runs.log"
    snakefile = f'''
rule all:
    input: "ref"
rule link:
    output: directory("ref")
    shell: "ln -s {outside} {{output}}; echo link >> {log}"
'''
    env = {"NIX_WORKFLOW_STORE": str(tmp_path / "store")}
    first = write(tmp_path / "one", {"Snakefile": snakefile})
    second = write(tmp_path / "two", {"Snakefile": snakefile})
    ok(snakemake(first, env=env))
    proc = ok(snakemake(second, env=env))  # another checkout sharing the store: served from it
    assert "restored the outputs of rule link" in proc.stderr, proc.stderr
    assert "whose targets do not exist here" not in proc.stderr, proc.stderr
    assert log.read_text().split() == ["link"]
    assert os.readlink(second / "ref") == str(outside)
    assert (second / "ref" / "genome.fa").read_text() == ">chr1\nACGT\n"


# ---- Luigi: a method of a required task class, called downstream ---------------------------------------------------

CALLS_UPSTREAM = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Powers(NixTask):
    n = luigi.IntParameter(default=2)

    def output(self):
        return luigi.LocalTarget(f"out/p{self.n}.txt")

    def run(self):
        note("Powers")
        with self.output().open("w") as g:
            g.write(str(self.n))

    def f(self, x):
        return x ** self.n{PLUS}


class Use(NixTask):
    def requires(self):
        return Powers(n=2)

    def output(self):
        return luigi.LocalTarget("out/use.txt")

    def run(self):
        note("Use")
        with self.input().open() as f, self.output().open("w") as g:
            g.write(f.read() + " " + str(self.requires().f(3)))
'''


def test_a_method_of_a_required_task_class_called_downstream_is_keyed_by_its_code() -> None:
    """A task class the task requires was keyed by its result only (early cutoff), also where the task's own
    run() calls one of that class's methods (`self.requires().f(3)`), code that runs inside the task. Editing `f`
    re-ran Powers, whose output is unchanged, so Use was served its old result ("2 9" where plain Luigi writes
    "2 10"). Now such a class is also keyed by its code in the task that calls into it."""
    from tests.luigi_run import runs
    from tests.test_luigi_probe12 import luigi_cli

    Path("calls_up.py").write_text(CALLS_UPSTREAM.replace("{PLUS}", ""))
    luigi_cli("--module", "calls_up", "Use")
    assert Path("out/use.txt").read_text() == "2 9"
    Path("calls_up.py").write_text(CALLS_UPSTREAM.replace("{PLUS}", " + 1"))
    luigi_cli("--module", "calls_up", "Use")
    assert Path("out/use.txt").read_text() == "2 10"
    assert runs() == {"Powers": 2, "Use": 2}
