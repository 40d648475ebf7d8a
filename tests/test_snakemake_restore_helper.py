"""Issue 11 item 3, through the real CLI: a large batch of cached jobs is restored with its copies made by the
helper process (copier.py) while the executor post-processes earlier jobs.

What the user gets must not change: real, writable files with fresh mtimes (protected outputs read-only, as
Snakemake makes them), directory outputs whole, Snakemake's metadata such that its next run has nothing to do,
and a store that a user's edit of a restored file cannot reach.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

N = 60  # with the two rules below, more ready jobs than executor.HELPER_BATCH: the helper copies them

SNAKEFILE = f'''
rule all:
    input: expand("out/{{i}}.txt", i=range({N})), "prot.txt", "tree"

rule make:
    output: "out/{{i}}.txt"
    shell: 'echo make >> "$NW_TEST_LOG"; echo {{wildcards.i}} > {{output}}'

rule prot:
    output: protected("prot.txt")
    shell: 'echo prot >> "$NW_TEST_LOG"; echo p > {{output}}'

rule tree:
    output: directory("tree")
    shell: 'echo tree >> "$NW_TEST_LOG"; mkdir -p {{output}}/sub && echo t > {{output}}/sub/f'
'''



def test_a_large_cached_batch_is_copied_back_by_the_helper_with_snakemakes_semantics(tmp_path: Path,
                                                                                   log: Path) -> None:
    wf = write(tmp_path / "wf", {"Snakefile": SNAKEFILE})
    ok(snakemake(wf))
    wipe(wf, "out", "prot.txt", "tree")
    proc = ok(snakemake(wf, "--verbose"))
    assert executions(log) == {"make": N, "prot": 1, "tree": 1}, "nothing runs again"
    assert f"{N + 2} job(s) restored from the store before scheduling" in proc.stderr
    assert f"nixworkflow: {N + 2} output(s) copied back by the helper process" in proc.stderr
    assert proc.stderr.count("nixworkflow: restored the outputs") == N + 2, "one line per restored job, as before"
    for i in range(N):
        path = wf / "out" / f"{i}.txt"
        st = os.lstat(path)
        assert path.read_text() == f"{i}\n"
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and stat.S_IMODE(st.st_mode) == 0o644
    assert (wf / "tree" / "sub" / "f").read_text() == "t\n"
    assert (wf / "prot.txt").read_text() == "p\n"
    assert not os.stat(wf / "prot.txt").st_mode & 0o222, "protected() still applies to a restored output"
    again = ok(snakemake(wf, nixworkflow=False))
    assert "Nothing to be done" in again.stdout + again.stderr, "Snakemake's records of the restored jobs"

    with open(wf / "out" / "0.txt", "a") as f:  # a user's edit of a restored file stays in the working directory
        f.write("edited\n")
    wipe(wf, "out", "prot.txt", "tree")
    ok(snakemake(wf))
    assert executions(log) == {"make": N, "prot": 1, "tree": 1}
    assert (wf / "out" / "0.txt").read_text() == "0\n", "the store object was not changed by the edit"
