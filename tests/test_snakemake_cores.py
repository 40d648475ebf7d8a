"""A `run:` block reading the workflow's core count (`shell("make -j{workflow.cores}")`, `workflow.cores` in its code)
is keyed by it: a result made with `-c 1` was restored under `-c 2` (review16's finding; a `shell:` command formats
the value into its keyed text, a script has no `workflow`). A block that does not read it keeps being restored
across `-c` changes. Real snakemake CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_snakemake import ok, snakemake

SNAKEFILE = '''
rule all:
    input: "cores.txt", "plain.txt"

rule cores:
    output: "cores.txt"
    run:
        shell("echo {workflow.cores} > {output}")

rule plain:
    output: "plain.txt"
    run:
        shell("echo same > {output}")
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_run_block_reading_workflow_cores_is_keyed_by_it(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    ok(snakemake(tmp_path, "-c", "1"))
    assert (tmp_path / "cores.txt").read_text() == "1\n"
    for name in ("cores.txt", "plain.txt"):
        (tmp_path / name).unlink()
    second = ok(snakemake(tmp_path, "-c", "2"))
    assert (tmp_path / "cores.txt").read_text() == "2\n"  # (before: the stale "1")
    assert "restored the outputs of rule plain" in second.stderr + second.stdout
    assert "restored the outputs of rule cores" not in second.stderr + second.stdout
