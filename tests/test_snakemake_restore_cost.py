"""Issue 11 item 3, the cuts to a restored job's cost: each keeps what Snakemake and the executor do.

`internals.memoise_signatures` has Snakemake look up the parameters of a rule's resource and param functions
once per run instead of per job and resource: every function must still receive exactly the arguments it asks
for, whether the job runs or is restored. `Executor.servable` reads a hit's full record only for checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

# Resource and param functions of every shape Snakefiles use: a subset of the parameters Snakemake offers, one
# taking **kwargs (it gets all of them), a param function reading the job's resources. The command prints them.
SHAPES = '''
def two(wildcards, attempt):
    return 100 + attempt

def three(wildcards, input, threads):
    return 10 * threads + len(input)

def anything(wildcards, **kwargs):
    return "+".join(sorted(kwargs))

rule all:
    input: "out/x.txt", "out/y.txt"

rule a:
    input: "in.txt"
    output: "out/{name}.txt"
    threads: 1
    resources: two=two, three=three, anything=anything
    params: p=lambda wildcards, resources: resources.two + 1
    shell:
        'echo a >> "$NW_TEST_LOG"; '
        'echo "{wildcards.name} {resources.two} {resources.three} {resources.anything} {params.p}" > {output}'
'''
EXPECTED = {name: f"{name} 101 11 async_run+attempt+input+rulename+threads 102\n" for name in "xy"}


@pytest.mark.slow
def test_resource_and_param_functions_get_their_arguments_when_run_and_when_restored(tmp_path: Path,
                                                                                     log: Path) -> None:
    """With the parameters of resource and param functions memoised, each function still gets exactly what it
    asks for (the local executor's values, written by hand above), in the run that executes the jobs (they are
    looked up, and memoised, before the scheduler runs them) and in the one that restores them (the key,
    made from the formatted command, is the first run's: nothing runs again)."""
    files = {"Snakefile": SHAPES, "in.txt": "x\n"}
    local = write(tmp_path / "local", files)
    ok(snakemake(local, nixworkflow=False))
    assert {n: (local / f"out/{n}.txt").read_text() for n in "xy"} == EXPECTED
    mine = write(tmp_path / "mine", files)
    ok(snakemake(mine))
    assert {n: (mine / f"out/{n}.txt").read_text() for n in "xy"} == EXPECTED
    wipe(mine, "out")
    proc = ok(snakemake(mine))
    assert "2 job(s) restored from the store before scheduling" in proc.stderr
    assert {n: (mine / f"out/{n}.txt").read_text() for n in "xy"} == EXPECTED
    assert executions(log) == {"a": 4}, "two runs of two jobs (local, then cold); the restoring run runs none"


def test_a_hits_full_record_is_read_only_for_a_checkpoint() -> None:
    """`servable` asks a hit's record for the undeclared files of the checkpoint that made it; the record is
    read lazily (nixlib.hits.LazyRecord), and for any other job it is not read at all."""
    from nixlib.engine import Result
    from nixlib.hits import LazyRecord
    from snakemake_executor_nixworkflow.executor import Executor

    loads: list[int] = []

    def load() -> dict:
        loads.append(1)
        return {"outputs": {}, "provenance": {"undeclared_writes": ["data/x"]}}

    warnings: list[str] = []
    me = SimpleNamespace(logger=SimpleNamespace(warning=warnings.append), unservable=SimpleNamespace(add=list().append))
    hit = Result(recipe=None, resolved_key="k", outputs={}, cached=True, record=LazyRecord({}, load))
    plain = SimpleNamespace(is_checkpoint=False, rule=SimpleNamespace(name="plain"))
    assert Executor.servable(me, plain, hit) is True
    assert loads == [] and warnings == []
    checkpoint = SimpleNamespace(is_checkpoint=True, rule=SimpleNamespace(name="split"))
    assert Executor.servable(me, checkpoint, hit) is False
    assert loads == [1] and "checkpoint split writes files it does not declare" in warnings[0]
