"""Wave 15 probes (b) of `snakemake --executor nixworkflow`: jobs never cached, needless re-runs and stale results
in realistic Snakefiles, with the real snakemake CLI.

Each test is a bug the probe found, and failed before its fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


SOURCE_PATH_TABLE = {
    "Snakefile": '''
import os

TABLE = workflow.source_path("table.tsv")


def note(name):
    with open(os.environ["NW_TEST_LOG"], "a") as f:
        f.write(name + "\\n")


rule all:
    input: "out/n.txt"

rule count:
    output: "out/n.txt"
    run:
        note("count")
        with open(TABLE) as f:
            n = len(f.read().split())
        with open(output[0], "w") as f:
            f.write(f"{n}\\n")
''',
    "table.tsv": "a\tb\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_run_block_reading_a_source_path_copy_through_a_module_level_name_is_cached(tmp_path: Path,
                                                                                      log: Path) -> None:
    """`TABLE = workflow.source_path("table.tsv")` at the top of the Snakefile, opened by a `run:` block: the value
    is a path in Snakemake's runtime source cache, a new temporary directory in every run, and it was keyed by
    that value, so the job never hit. It must be restored while table.tsv is unchanged, and run again (with the
    new count) when it changes."""
    wf = write(tmp_path / "wf", SOURCE_PATH_TABLE)
    ok(snakemake(wf))
    assert executions(log) == Counter(["count"])

    wipe(wf, "out")
    ok(snakemake(wf))
    assert executions(log) == Counter(["count"]), "an unchanged job must be restored"
    assert (wf / "out/n.txt").read_text() == "2\n"

    wipe(wf, "out")
    (wf / "table.tsv").write_text("a\tb\tc\n")
    ok(snakemake(wf))
    assert (wf / "out/n.txt").read_text() == "3\n"
    assert executions(log) == Counter({"count": 2})


CHECKPOINT = {
    "Snakefile": '''
import os

rule all:
    input: "results/agg.txt"

checkpoint split:
    output: directory("split")
    shell:
        "echo split >> $NW_TEST_LOG; echo splitting into two parts; mkdir -p split; "
        "for i in 1 2; do echo $i > split/$i.txt; done"

def parts(wc):
    d = checkpoints.split.get(**wc).output[0]
    return sorted(os.path.join(d, f) for f in os.listdir(d))

rule agg:
    input: parts
    output: "results/agg.txt"
    shell: "echo agg >> $NW_TEST_LOG; cat {input} > {output}"
''',
}


def test_a_checkpoint_is_restored_when_snakemakes_own_output_goes_to_a_file_of_the_working_directory(
        tmp_path: Path, log: Path) -> None:
    """`snakemake ... > run.log 2>&1` (or `nohup snakemake ... &`, which writes nohup.out) in the project directory:
    Snakemake's own output grows while the checkpoint runs, so the checkpoint was recorded as writing a file it does
    not declare, and never restored ("it runs again") in any later run."""
    wf = write(tmp_path / "wf", CHECKPOINT)
    argv = [sys.executable, "-m", "snakemake", "-c", "1", "--nocolor", "--executor", "nixworkflow"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for _ in range(2):
        wipe(wf, "split", "results")
        with open(wf / "run.log", "w") as out:
            proc = subprocess.run(argv, cwd=wf, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=300)
        text = (wf / "run.log").read_text()
        assert proc.returncode == 0, text
    assert executions(log) == Counter(["split", "agg"]), text
    assert "does not declare" not in text
    assert (wf / "results/agg.txt").read_text() == "1\n2\n"


BENCHMARK = {
    "Snakefile": '''
rule all:
    input: "out/a.txt"

rule measure:
    output: "out/a.txt"
    benchmark: repeat("bench/a.tsv", 2)
    shell: "echo measure >> $NW_TEST_LOG; echo a > {output}"
''',
}


def test_a_benchmark_repeat_count_is_keyed(tmp_path: Path, log: Path) -> None:
    """`benchmark: repeat("bench/a.tsv", 2)` raised to 4: Snakemake runs the job 4 times and writes one row per run.
    The repeat count was not keyed, so after `rm -rf out bench` the old file (2 rows) was restored."""
    wf = write(tmp_path / "wf", BENCHMARK)
    ok(snakemake(wf))
    assert len((wf / "bench/a.tsv").read_text().splitlines()) == 1 + 2

    wipe(wf, "out", "bench")
    snakefile = wf / "Snakefile"
    snakefile.write_text(snakefile.read_text().replace('"bench/a.tsv", 2', '"bench/a.tsv", 4'))
    ok(snakemake(wf))
    assert len((wf / "bench/a.tsv").read_text().splitlines()) == 1 + 4
    assert executions(log) == Counter({"measure": 2 + 4})

    wipe(wf, "out", "bench")
    ok(snakemake(wf))
    assert executions(log) == Counter({"measure": 2 + 4}), "an unchanged job must be restored"
    assert len((wf / "bench/a.tsv").read_text().splitlines()) == 1 + 4


PATH_TABLES = {
    "Snakefile": '''
import os
from pathlib import Path

TABLE = Path("config/t.tsv")
COPIED = Path(workflow.source_path("config/s.tsv"))


def note(name):
    with open(os.environ["NW_TEST_LOG"], "a") as f:
        f.write(name + "\\n")


rule all:
    input: "out/t.txt", "out/s.txt"

rule t:
    output: "out/t.txt"
    run:
        note("t")
        Path(output[0]).write_text(TABLE.read_text())

rule s:
    output: "out/s.txt"
    run:
        note("s")
        Path(output[0]).write_text(COPIED.read_text())
''',
    "config/t.tsv": "t1\n",
    "config/s.tsv": "s1\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_module_level_path_object_a_run_block_reads_is_keyed_by_content(tmp_path: Path, log: Path) -> None:
    """`TABLE = Path("config/t.tsv")` at the top of the Snakefile (the modern spelling of `TABLE = "config/t.tsv"`),
    read by a `run:` block: a Path was keyed by value only, its file's content not at all, so after editing the
    table and `rm -rf out` the old result was restored. The same through `Path(workflow.source_path(...))`."""
    wf = write(tmp_path / "wf", PATH_TABLES)
    ok(snakemake(wf))
    wipe(wf, "out")
    ok(snakemake(wf))
    assert executions(log) == Counter(["t", "s"]), "unchanged jobs must be restored"

    wipe(wf, "out")
    (wf / "config/t.tsv").write_text("t2\n")
    (wf / "config/s.tsv").write_text("s2\n")
    ok(snakemake(wf))
    assert (wf / "out/t.txt").read_text() == "t2\n"
    assert (wf / "out/s.txt").read_text() == "s2\n"
    assert executions(log) == Counter({"t": 2, "s": 2})
