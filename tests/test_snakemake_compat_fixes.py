"""Executor bugs found by running Snakemake's own test workflows (tests/snakemake_compat.py), each pinned down
on a small workflow through the real `snakemake` CLI, compared with the local executor where it matters."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_snakemake import ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

# Snakemake's `default_resources` test: resources computed from input sizes. The command prints them, so a
# value Snakemake could not compute (`<TBD>`) would be written (and stored) instead of failing.
SIZED = '''
rule all:
    input: "b.txt"

rule a:
    input: "in.txt"
    output: "a.txt"
    resources: mem_mb=lambda wc, input: max(2 * input.size_mb, 1000)
    shell: "echo 'a {resources.mem_mb} {resources.disk_mb}' > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    resources: mem_mb=lambda wc, input: max(2 * input.size_mb, 1001)
    shell: "cat {input} > {output}; echo 'b {resources.mem_mb} {resources.disk_mb}' >> {output}"
'''


def test_resources_computed_from_input_sizes_are_evaluated(tmp_path: Path) -> None:
    """A resource computed from input sizes (`input.size_mb`, every `--default-resources` expression) was
    `<TBD>` for every job the executor looked up before the scheduler selected it (its restore passes run
    inside an event loop, where Snakemake cannot compute sizes, and the scheduler evaluates a job's
    resources only once): the job ran `echo <TBD>`, or failed, where the local executor runs `echo 1000`.
    That covers a source job (looked up before the first round) and a downstream job (looked up when its
    input's job finished). The results must be the local executor's, also restored from the store."""
    files = {"Snakefile": SIZED, "in.txt": "x\n"}
    args = ("--default-resources", "disk_mb=max(2*input.size, 1000)")
    local = write(tmp_path / "local", files)
    ok(snakemake(local, *args, nixworkflow=False))
    expected = (local / "b.txt").read_text()
    assert expected == "a 1000 1000\nb 1001 1000\n"  # what the local executor computes
    mine = write(tmp_path / "mine", files)
    proc = ok(snakemake(mine, *args))
    assert (mine / "b.txt").read_text() == expected
    assert "TBD" not in proc.stdout + proc.stderr
    wipe(mine, "a.txt", "b.txt")
    proc = ok(snakemake(mine, *args))
    assert "restored the outputs of rule b" in proc.stdout + proc.stderr
    assert (mine / "b.txt").read_text() == expected
