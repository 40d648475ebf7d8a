"""Wave 16 probes of `snakemake --executor nixworkflow`: needless re-runs and never-restored results in realistic
Snakefiles, with the real snakemake CLI.

Each test is a bug the probe found, and failed before its fix.
"""

from __future__ import annotations

import os
import shlex
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


RETRIES = {
    "Snakefile": '''
import os


def note(name):
    with open(os.environ["NW_TEST_LOG"], "a") as f:
        f.write(name + "\\n")


rule all:
    input: "out/block.txt", "out/script.txt", "out/mem.txt"

rule block:
    output: "out/block.txt"
    resources: mem_mb=lambda wc, attempt: 1000 * attempt
    run:
        note("block")
        if os.path.exists("oom-block"):  # the first attempt of the first run is killed for its memory
            os.remove("oom-block")
            raise MemoryError("killed")
        with open(output[0], "w") as f:
            f.write("block\\n")

rule script:
    output: "out/script.txt"
    threads: 2
    resources: mem_mb=lambda wc, attempt: 1000 * attempt, disk_mb=100
    script: "scripts/job.py"

rule mem:
    output: "out/mem.txt"
    resources: mem_mb=lambda wc, attempt: 1000 * attempt, disk_mb=100
    script: "scripts/mem.py"
''',
    "scripts/job.py": '''
import os

with open(os.environ["NW_TEST_LOG"], "a") as f:
    f.write("script\\n")
if os.path.exists("oom-script"):
    os.remove("oom-script")
    raise MemoryError("killed")
with open(snakemake.output[0], "w") as f:
    f.write("script\\n")
''',
    "scripts/mem.py": '''
import os

with open(os.environ["NW_TEST_LOG"], "a") as f:
    f.write("mem\\n")
with open(snakemake.output[0], "w") as f:
    f.write(f"sort -S {snakemake.resources.mem_mb}M\\n")
''',
    "oom-block": "",
    "oom-script": "",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_job_that_succeeded_at_its_second_attempt_is_restored_when_its_code_never_reads_resources(
        tmp_path: Path, log: Path) -> None:
    """`--retries 1` with `mem_mb=lambda wc, attempt: 1000 * attempt`: a `run:` block and a script that never read
    their resources (nor threads) succeed at attempt 2 of the first run. Their results were keyed with mem_mb=2000,
    and a later run, at attempt 1 (mem_mb=1000), missed them and ran them again; so did `-c 1` or a
    `--set-resources` change. A script that reads `snakemake.resources.mem_mb` keys that resource alone: another
    disk_mb restores it, another mem_mb runs it again."""
    wf = write(tmp_path / "wf", RETRIES)
    ok(snakemake(wf, "--retries", "1"))
    assert executions(log) == {"block": 2, "script": 2, "mem": 1}
    assert [(wf / "out" / f).read_text() for f in ("block.txt", "script.txt", "mem.txt")] == \
        ["block\n", "script\n", "sort -S 1000M\n"]
    wipe(wf, "out")
    proc = ok(snakemake(wf, "--retries", "1", "-c", "1", "--set-resources", "mem:disk_mb=200",
                        "script:disk_mb=300"))
    assert executions(log) == {"block": 2, "script": 2, "mem": 1}, proc.stderr
    assert [(wf / "out" / f).read_text() for f in ("block.txt", "script.txt", "mem.txt")] == \
        ["block\n", "script\n", "sort -S 1000M\n"]
    wipe(wf, "out")
    ok(snakemake(wf, "--set-resources", "mem:mem_mb=3000"))
    assert executions(log) == {"block": 2, "script": 2, "mem": 2}
    assert (wf / "out" / "mem.txt").read_text() == "sort -S 3000M\n"
    assert not os.path.exists(wf / "oom-block")


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


def test_a_checkpoint_is_restored_when_snakemakes_output_is_teed_into_a_file_of_the_working_directory(
        tmp_path: Path, log: Path) -> None:
    """`snakemake ... 2>&1 | tee run.log` in the project directory: run.log, written by tee, grows while the
    checkpoint runs, so the checkpoint was recorded as writing a file it does not declare and never restored ("it
    runs again") in any later run. (`> run.log` was fixed in wave 15.)"""
    wf = write(tmp_path / "wf", CHECKPOINT)
    command = (f"{shlex.quote(sys.executable)} -m snakemake -c 1 --nocolor --executor nixworkflow 2>&1"
               " | tee run.log; exit ${PIPESTATUS[0]}")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for _ in range(2):
        wipe(wf, "split", "results")
        proc = subprocess.run(["bash", "-c", command], cwd=wf, env=env, stdout=subprocess.DEVNULL, timeout=300)
        text = (wf / "run.log").read_text()
        assert proc.returncode == 0, text
    assert executions(log) == Counter(["split", "agg"]), text
    assert "does not declare" not in text
    assert (wf / "results/agg.txt").read_text() == "1\n2\n"
