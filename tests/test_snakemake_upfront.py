"""Issue 11 item 3: cached jobs are restored before Snakemake's scheduler starts, through the real CLI.

A job the store can serve is restored and finished at the executor's start-up, so it skips Snakemake's
per-job cycle (job selection, prepare, post-processing rounds). These tests pin that it happens, that
Snakemake's bookkeeping stays right (its next run has nothing to do), and that nothing Snakemake decides
to run for its own reasons (forcing, a params change) is restored instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

UPFRONT = "job(s) restored from the store before scheduling"
SELECTED = "Select jobs to execute"  # Snakemake's scheduler logs this before each job-selection round

CHAIN = '''
rule all:
    input: "out/c.txt"

rule a:
    output: "out/a.txt"
    shell: 'echo a >> "$NW_TEST_LOG"; echo a > {output}'

rule b:
    input: "out/a.txt"
    output: "out/b.txt"
    params: word=config.get("word", "one")
    shell: 'echo b >> "$NW_TEST_LOG"; (cat {input}; echo {params.word}) > {output}'

rule c:
    input: "out/b.txt"
    output: "out/c.txt"
    shell: 'echo c >> "$NW_TEST_LOG"; (cat {input}; echo c) > {output}'
'''



def test_a_fully_cached_chain_is_restored_before_scheduling(tmp_path: Path, log: Path) -> None:
    """Every job of a chain is restored up front (dependents once their inputs are back): the scheduler never
    selects a job, nothing runs, and Snakemake's metadata makes its next run a no-op."""
    wf = write(tmp_path / "wf", {"Snakefile": CHAIN})
    ok(snakemake(wf))
    expected = {name: (wf / f"out/{name}.txt").read_text() for name in "abc"}
    wipe(wf, "out")
    proc = ok(snakemake(wf))
    assert executions(log) == {"a": 1, "b": 1, "c": 1}, "nothing runs again"
    assert f"3 {UPFRONT}" in proc.stderr
    assert proc.stderr.count("nixworkflow: restored the outputs") == 3
    assert SELECTED not in proc.stderr, "restored jobs must not go through Snakemake's job selection"
    assert {name: (wf / f"out/{name}.txt").read_text() for name in "abc"} == expected
    again = ok(snakemake(wf, nixworkflow=False))
    assert "Nothing to be done" in again.stdout + again.stderr, "Snakemake's records of the restored jobs"


def test_a_params_change_still_runs_and_only_what_is_cached_is_restored_up_front(tmp_path: Path, log: Path) -> None:
    """A params change (Snakemake's rerun trigger, and part of the key) makes `b` and its dependent run,
    while `a`, unchanged, is restored before scheduling."""
    wf = write(tmp_path / "wf", {"Snakefile": CHAIN})
    ok(snakemake(wf))
    wipe(wf, "out")
    proc = ok(snakemake(wf, "--config", "word=two"))
    assert executions(log) == {"a": 1, "b": 2, "c": 2}
    assert f"1 {UPFRONT}" in proc.stderr
    assert (wf / "out/c.txt").read_text() == "a\ntwo\nc\n"


def test_a_params_change_with_outputs_present_runs_again(tmp_path: Path, log: Path) -> None:
    """Outputs present, params changed: Snakemake re-runs `b` (and `c`); nothing is restored instead."""
    wf = write(tmp_path / "wf", {"Snakefile": CHAIN})
    ok(snakemake(wf))
    proc = ok(snakemake(wf, "--config", "word=two"))
    assert executions(log) == {"a": 1, "b": 2, "c": 2}
    assert UPFRONT not in proc.stderr
    assert (wf / "out/c.txt").read_text() == "a\ntwo\nc\n"


@pytest.mark.parametrize("flags", [["--forceall"], ["-R", "b"]], ids=["forceall", "R"])
def test_forced_jobs_run_even_when_cached_and_outputs_are_deleted(tmp_path: Path, log: Path,
                                                                  flags: list[str]) -> None:
    """A forced job is never restored up front; jobs Snakemake does not force still are."""
    wf = write(tmp_path / "wf", {"Snakefile": CHAIN})
    ok(snakemake(wf))
    wipe(wf, "out")
    proc = ok(snakemake(wf, *flags))
    runs = executions(log)
    assert runs["b"] == 2, "the forced job must execute"
    if flags == ["--forceall"]:
        assert runs == {"a": 2, "b": 2, "c": 2} and UPFRONT not in proc.stderr
    else:
        assert runs["a"] == 1 and f"1 {UPFRONT}" in proc.stderr, "a (not forced) is restored before scheduling"


def test_dry_run_restores_nothing(tmp_path: Path, log: Path) -> None:
    """`-n` shows what would run and writes nothing, even when the store could serve every job."""
    wf = write(tmp_path / "wf", {"Snakefile": CHAIN})
    ok(snakemake(wf))
    wipe(wf, "out")
    proc = ok(snakemake(wf, "-n"))
    assert UPFRONT not in proc.stderr and not (wf / "out").exists()


# `a` is edited between runs to write the same bytes another way (Snakemake re-runs it for its code change and
# nixworkflow cannot serve it: its recipe changed); `b` writes a temp file that `c` consumes.
DOWNSTREAM = '''
rule all:
    input: "out/c.txt"

rule a:
    output: "out/a.txt"
    shell: 'echo a >> "$NW_TEST_LOG"; A_CODE'

rule b:
    input: "out/a.txt"
    output: temp("out/b.txt")
    shell: 'echo b >> "$NW_TEST_LOG"; (cat {input}; echo b) > {output}'

rule c:
    input: "out/b.txt"
    output: "out/c.txt"
    shell: 'echo c >> "$NW_TEST_LOG"; (cat {input}; echo c) > {output}'
'''


def downstream(wf: Path, a_code: str) -> Path:
    return write(wf, {"Snakefile": DOWNSTREAM.replace("A_CODE", a_code)})


def test_dependants_of_a_job_that_ran_are_restored_without_the_scheduler(tmp_path: Path, log: Path) -> None:
    """`a` runs (its code changed) and writes the bytes it wrote before: `b` and `c`, whose keys now resolve to
    stored results, are restored as soon as `a` is finished, before the scheduler's next round. The scheduler
    selects and runs `a` alone; temp handling, progress and Snakemake's records stay as after a run."""
    wf = downstream(tmp_path / "wf", "echo a > {output}")
    ok(snakemake(wf))
    expected = (wf / "out/c.txt").read_text()
    wipe(wf, "out")
    downstream(wf, 'printf "a\\\\n" > {output}')
    proc = ok(snakemake(wf))
    assert executions(log) == {"a": 2, "b": 1, "c": 1}
    assert proc.stderr.count("nixworkflow: restored the outputs") == 2
    assert "rule a:" in proc.stderr and "rule b:" not in proc.stderr and "rule c:" not in proc.stderr, \
        "b and c must not be submitted as jobs by Snakemake's scheduler"
    assert proc.stderr.count(SELECTED) == 1, "one selection round: for a"
    assert "4 of 4 steps (100%) done" in proc.stderr
    assert (wf / "out/c.txt").read_text() == expected
    assert not (wf / "out/b.txt").exists(), "b's temp output is removed once c is done, as after a run"
    again = ok(snakemake(wf, nixworkflow=False))
    assert "Nothing to be done" in again.stdout + again.stderr


def test_dependants_of_a_job_that_wrote_new_bytes_run(tmp_path: Path, log: Path) -> None:
    """`a` runs and writes different bytes: `b` and `c` are misses when looked up after it, and run."""
    wf = downstream(tmp_path / "wf", "echo a > {output}")
    ok(snakemake(wf))
    wipe(wf, "out")
    downstream(wf, "echo A > {output}")
    proc = ok(snakemake(wf))
    assert executions(log) == {"a": 2, "b": 2, "c": 2}
    assert "nixworkflow: restored the outputs" not in proc.stderr
    assert (wf / "out/c.txt").read_text() == "A\nb\nc\n"


def test_a_large_hit_downstream_of_a_job_that_ran_is_restored_by_the_scheduler(tmp_path: Path, log: Path) -> None:
    """The pass after a finished job runs on the scheduler's thread, so a hit with more than 64 MiB to copy is
    left to the scheduler's path (restored on a worker thread, not run): b is submitted by Snakemake, c is not."""
    big = DOWNSTREAM.replace("(cat {input}; echo b) > {output}", "(cat {input}; head -c 67108865 /dev/zero) > {output}")
    big = big.replace("(cat {input}; echo c) > {output}", "(head -c 2 {input}; echo c) > {output}")  # c: small
    wf = write(tmp_path / "wf", {"Snakefile": big.replace("A_CODE", "echo a > {output}")})
    ok(snakemake(wf))
    wipe(wf, "out")
    write(wf, {"Snakefile": big.replace("A_CODE", 'printf "a\\\\n" > {output}')})
    proc = ok(snakemake(wf))
    assert executions(log) == {"a": 2, "b": 1, "c": 1}
    assert "rule b:" in proc.stderr and "rule c:" not in proc.stderr
    assert proc.stderr.count("nixworkflow: restored the outputs") == 2
