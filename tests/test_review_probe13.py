"""Files a step *writes* that the new data-file keying took for files it reads (review13).

Keyed by content, a file the step itself writes changes at every run (appended to, or holding a time): the next
lookup's key differs from the one stored, and the step never hit again. Two common spellings were missed: a `tee`
in a shell command (`... | tee -a logs/all.txt > {output}`), and a path the code opens for writing through a local
name (`scratch = "work/state.json"; with open(scratch, "w")`).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SNAKEFILE = '''
rule all:
    input: "out/a.txt", "out/b.txt"

rule a:
    input: "in.txt"
    output: "out/a.txt"
    shell: "mkdir -p logs; date +%s%N | tee -a logs/all.txt > /dev/null; cat {input} > {output}"

rule b:
    input: "in.txt"
    output: "out/b.txt"
    shell: "mkdir -p logs; cat {input} | tee logs/b_copy.txt {output}.tmp > /dev/null; "
           "date +%s%N | tee logs/stamp.txt; mv {output}.tmp {output}"
'''


def _restored(proc: subprocess.CompletedProcess[str]) -> set[str]:
    return set(re.findall(r"restored the outputs of rule (\w+)\b", proc.stdout + proc.stderr))


def test_snakemake_a_file_a_shell_command_tees_to_is_not_keyed(tmp_path: Path) -> None:
    """A shell command appending a time to an undeclared file through `tee -a` (and writing one with `tee`): after
    the outputs are deleted, the next run restores them (it ran the jobs again at every run)."""
    pytest.importorskip("snakemake")
    from tests.test_snakemake import ok, snakemake
    from tests.test_snakemake_semantics import wipe, write

    wf = write(tmp_path / "wf", {"Snakefile": SNAKEFILE, "in.txt": "reads\n"})
    ok(snakemake(wf))
    assert (wf / "out/a.txt").read_text() == "reads\n" and (wf / "out/b.txt").read_text() == "reads\n"
    for _ in range(2):
        wipe(wf, "out/a.txt", "out/b.txt")
        proc = ok(snakemake(wf))
        assert _restored(proc) == {"a", "b"}, proc.stderr
    assert len((wf / "logs/all.txt").read_text().split()) == 1  # (only the first run appended)


PIPELINE = '''
import json
import time

import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Scratch(NixTask):
    def output(self):
        return luigi.LocalTarget("out/scratch.txt")

    def run(self):
        note("Scratch")
        scratch = "work/state.json"
        with open(scratch, "w") as f:
            json.dump({"at": time.time()}, f)
        with self.output().open("w") as g:
            g.write("done\\n")
'''


def test_luigi_a_file_the_code_writes_through_a_local_name_is_not_keyed() -> None:
    """`scratch = "work/state.json"; with open(scratch, "w")` in run(): the file it writes (a time) is not keyed
    as data it reads, so after the output is deleted the next run restores it (it ran again at every run)."""
    from tests.luigi_run import luigi_cli, runs

    Path("pipeline.py").write_text(PIPELINE)
    Path("work").mkdir()
    luigi_cli("--module", "pipeline", "Scratch")
    assert runs() == {"Scratch": 1} and Path("work/state.json").exists()
    for _ in range(2):
        Path("out/scratch.txt").unlink()
        luigi_cli("--module", "pipeline", "Scratch")
        assert runs() == {"Scratch": 1}
        assert Path("out/scratch.txt").read_text() == "done\n"


RUN_SNAKEFILE = '''
TABLE = "config/table.tsv"


def table():
    with open(TABLE) as f:
        return f.read()


rule all:
    input: "out/a.txt", "out/b.txt"

rule a:
    output: "out/a.txt"
    run:
        with open(TABLE) as f, open(output[0], "w") as g:
            g.write(f.read())

rule b:
    output: "out/b.txt"
    run:
        with open(output[0], "w") as g:
            g.write(table())
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_snakemake_a_data_file_a_run_block_reads_through_a_module_level_name_is_keyed(tmp_path: Path) -> None:
    """`TABLE = "config/table.tsv"` at the top of the Snakefile, opened by a `run:` block (or a helper it calls):
    editing the table and deleting the outputs re-runs both jobs with the new content (the old outputs were
    restored: only a path spelled inside the block's own code was keyed)."""
    pytest.importorskip("snakemake")
    from tests.test_snakemake import ok, snakemake
    from tests.test_snakemake_semantics import wipe, write

    wf = write(tmp_path / "wf", {"Snakefile": RUN_SNAKEFILE, "config/table.tsv": "t1\n"})
    ok(snakemake(wf))
    wipe(wf, "out/a.txt", "out/b.txt")
    assert _restored(ok(snakemake(wf))) == {"a", "b"}

    (wf / "config/table.tsv").write_text("t2\n")
    wipe(wf, "out/a.txt", "out/b.txt")
    proc = ok(snakemake(wf))
    assert _restored(proc) == set(), proc.stderr
    assert (wf / "out/a.txt").read_text() == "t2\n" and (wf / "out/b.txt").read_text() == "t2\n"
