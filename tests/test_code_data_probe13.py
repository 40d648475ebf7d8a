"""Data files a step's *code* names by a literal path without declaring them.

A legacy Luigi `run()` doing `open("data/lookup.csv")`, a helper it calls reading `THRESHOLDS =
"config/thresholds.tsv"`; a Snakemake `run:` block doing `shell("cat config/adapters.fa ...")` or `open(...)`, a
`script:` reading a literal path. Editing such a file and deleting the outputs made plain Luigi / Snakemake write
the new result while nixworkflow restored the old one. Such files are now keyed by content; a file a required task
(a rule) produces, and the step's own outputs, are not (their jobs are still restored).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PIPELINE = '''
import csv
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note

THRESHOLDS = "config/thresholds.tsv"


def threshold(name):
    with open(THRESHOLDS) as f:
        return dict(csv.reader(f, delimiter="\\t"))[name]


class Lookup(NixTask):
    def output(self):
        return luigi.LocalTarget("out/lookup.txt")

    def run(self):
        note("Lookup")
        with open("data/lookup.csv") as f, self.output().open("w") as g:
            g.write(f.read().upper())


class Cut(NixTask):
    def output(self):
        return luigi.LocalTarget("out/cut.txt")

    def run(self):
        note("Cut")
        with self.output().open("w") as g:
            g.write("cut=" + threshold("min"))


class Ref(NixTask):
    def output(self):
        return luigi.LocalTarget("out/ref.txt")

    def run(self):
        note("Ref")
        with open("data/ref.fa") as f, self.output().open("w") as g:
            g.write(f.read())


# Not data it reads from the project: the output of the task it requires, read by its literal path.
class Up(NixTask):
    def output(self):
        return luigi.LocalTarget("out/up.txt")

    def run(self):
        note("Up")
        with self.output().open("w") as g:
            g.write("up\\n")


class Down(NixTask):
    def requires(self):
        return Up()

    def output(self):
        return luigi.LocalTarget("out/down.txt")

    def run(self):
        note("Down")
        with open("out/up.txt") as f, self.output().open("w") as g:
            g.write(f.read() + "down\\n")


class All(luigi.WrapperTask):
    def requires(self):
        return [Lookup(), Cut(), Ref(), Down()]
'''

OUTS = ("lookup", "cut", "ref", "up", "down")


def _luigi_outputs() -> dict[str, str]:
    return {n: Path(f"out/{n}.txt").read_text() for n in OUTS}


def _luigi_wipe() -> None:
    for n in OUTS:
        Path(f"out/{n}.txt").unlink()


def test_luigi_a_data_file_the_code_opens_by_a_literal_path_is_keyed_by_content() -> None:
    """`open("data/lookup.csv")` in a legacy run(), `THRESHOLDS = "config/thresholds.tsv"` read by a helper it
    calls, `open("data/ref.fa")` where ref.fa is a symlink: editing the file (or what the link points to) and
    deleting the outputs re-runs the task with the new content (the old output was restored before). A
    downstream task opening its required task's output by its literal path keeps its key whether that file is on
    disk or not: both are restored, never re-run."""
    from tests.luigi_run import luigi_cli, runs

    Path("pipeline.py").write_text(PIPELINE)
    for name, text in {"data/lookup.csv": "a,1\n", "config/thresholds.tsv": "min\t3\n", "data/ref_v1.fa": "acgt\n"
                       }.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text)
    os.symlink("ref_v1.fa", "data/ref.fa")
    luigi_cli("--module", "pipeline", "All")
    assert _luigi_outputs() == {"lookup": "A,1\n", "cut": "cut=3", "ref": "acgt\n", "up": "up\n",
                                "down": "up\ndown\n"}
    assert runs() == dict.fromkeys(["Lookup", "Cut", "Ref", "Up", "Down"], 1)

    _luigi_wipe()
    luigi_cli("--module", "pipeline", "All")  # nothing changed: all restored
    assert runs() == dict.fromkeys(["Lookup", "Cut", "Ref", "Up", "Down"], 1)
    assert _luigi_outputs()["down"] == "up\ndown\n"

    Path("data/lookup.csv").write_text("b,2\n")
    Path("config/thresholds.tsv").write_text("min\t5\n")
    Path("data/ref_v1.fa").write_text("tttt\n")
    _luigi_wipe()
    luigi_cli("--module", "pipeline", "All")
    assert _luigi_outputs() == {"lookup": "B,2\n", "cut": "cut=5", "ref": "tttt\n", "up": "up\n",
                                "down": "up\ndown\n"}
    assert runs() == {"Lookup": 2, "Cut": 2, "Ref": 2, "Up": 1, "Down": 1}


# ---- Snakemake -------------------------------------------------------------------------------------------------

SNAKEFILE = '''
rule all:
    input: "out/a.txt", "out/b.txt", "out/c.txt", "out/d.txt", "out/e.txt"

rule a:
    input: "in.txt"
    output: "out/a.txt"
    run:
        shell("cat config/adapters.fa {input} > {output}")

rule b:
    input: "in.txt"
    output: "out/b.txt"
    run:
        with open("config/x.tsv") as f, open(output[0], "w") as g:
            g.write(f.read() + open(input[0]).read())

rule c:
    input: "in.txt"
    output: "out/c.txt"
    script: "scripts/c.py"

rule d:
    output: "out/d.txt"
    shell: "echo d > {output}"

# Not data it reads from the project: a file another rule produces, named by its literal path.
rule e:
    input: "out/d.txt"
    output: "out/e.txt"
    run:
        with open("out/d.txt") as f, open(output[0], "w") as g:
            g.write(f.read() + "e\\n")
'''

SCRIPT = '''
with open("config/table.tsv") as f, open(snakemake.output[0], "w") as g:
    g.write(f.read() + open(snakemake.input[0]).read())
'''

SMK_OUTS = [f"out/{x}.txt" for x in "abcde"]


def _restored(proc: subprocess.CompletedProcess[str]) -> set[str]:
    return set(re.findall(r"restored the outputs of rule (\w+)\b", proc.stdout + proc.stderr))


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_snakemake_a_data_file_a_run_block_or_script_names_by_a_literal_path_is_keyed_by_content(
        tmp_path: Path) -> None:
    """`shell("cat config/adapters.fa {input} > {output}")` and `open("config/x.tsv")` in a `run:` block, and
    `open("config/table.tsv")` in a `script:`: editing the file and deleting the outputs re-runs the job with the
    new content (the old outputs were restored before). A `run:` block opening another rule's output by its literal
    path is still restored."""
    pytest.importorskip("snakemake")
    from tests.test_snakemake import ok, snakemake
    from tests.test_snakemake_semantics import wipe, write

    wf = write(tmp_path / "wf", {"Snakefile": SNAKEFILE, "scripts/c.py": SCRIPT, "in.txt": "reads\n",
                                 "config/adapters.fa": ">a1\nACGT\n", "config/x.tsv": "x\t1\n",
                                 "config/table.tsv": "t\t1\n"})
    ok(snakemake(wf))
    assert [(wf / o).read_text() for o in SMK_OUTS] == [">a1\nACGT\nreads\n", "x\t1\nreads\n", "t\t1\nreads\n",
                                                         "d\n", "d\ne\n"]
    wipe(wf, *SMK_OUTS)
    assert _restored(ok(snakemake(wf))) == set("abcde")

    (wf / "config/adapters.fa").write_text(">a1\nTTTT\n")
    (wf / "config/x.tsv").write_text("x\t2\n")
    (wf / "config/table.tsv").write_text("t\t2\n")
    wipe(wf, *SMK_OUTS)
    proc = ok(snakemake(wf))
    assert _restored(proc) == {"d", "e"}, proc.stderr
    assert [(wf / o).read_text() for o in SMK_OUTS[:3]] == [">a1\nTTTT\nreads\n", "x\t2\nreads\n", "t\t2\nreads\n"]

    wipe(wf, *SMK_OUTS)
    assert _restored(ok(snakemake(wf))) == set("abcde")
