"""Wave 9 probes of `snakemake --executor nixworkflow`: everyday directives and command-line flags with the store.

Each test is a bug the probe found, compared with what Snakemake's local executor does. Executions are counted
from side effects ($NW_TEST_LOG).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


TIMED = {
    "Snakefile": '''
rule a:
    output: "out/a.txt"
    log: "logs/a.log"
    benchmark: "bench/a.tsv"
    shell: 'echo a >> "$NW_TEST_LOG"; echo same > {output}; date +%s%N > {log}'
''',
}


def test_a_forced_job_whose_log_and_benchmark_differ_is_not_reported_non_deterministic(tmp_path: Path,
                                                                                      log: Path) -> None:
    """`-R a` on a rule with a `log:` and a `benchmark:`: its output is the same bytes, but the benchmark file
    records times (and this log a timestamp), so they always differ; the run warned that the rule was not
    deterministic, naming them. Only outputs are results."""
    wf = write(tmp_path / "wf", TIMED)
    ok(snakemake(wf))
    proc = ok(snakemake(wf, "-R", "a"))
    assert executions(log) == Counter({"a": 2}), "the forced job runs"
    assert "not deterministic" not in proc.stderr, proc.stderr


BASEDIR = {
    "wf/Snakefile": '''
rule up:
    input: "in.txt"
    output: "res/up.txt"
    shell: 'echo up >> "$NW_TEST_LOG"; python3 {workflow.basedir}/scripts/up.py < {input} > {output}'
''',
    "wf/scripts/up.py": "import sys\nprint(sys.stdin.read().upper(), end='')\n",
    "w1/in.txt": "hello\n",
    "w2/in.txt": "hello\n",
}


def test_workflow_basedir_given_with_dotdot_keys_as_the_snakefile_directory(tmp_path: Path, log: Path) -> None:
    """`snakemake -s ../wf/Snakefile` keeps the `..` in `workflow.basedir` (`/x/w1/../wf`), which the command
    formats as such: it was keyed as `@{workdir}/../wf`, not as the Snakefile directory, so the same job run
    with `--directory w2 -s wf/Snakefile` (basedir `/x/wf`) missed the store and ran again."""
    root = write(tmp_path / "p", BASEDIR)
    ok(snakemake(root / "w1", "-s", "../wf/Snakefile"))
    ok(snakemake(root, "-s", "wf/Snakefile", "--directory", "w2"))
    assert executions(log) == Counter({"up": 1}), "the second directory is served from the store"
    assert (root / "w2/res/up.txt").read_text() == "HELLO\n"
    wipe(root / "w1", "res")
    (root / "wf/scripts/up.py").write_text("import sys\nprint(sys.stdin.read().lower(), end='')\n")
    ok(snakemake(root / "w1", "-s", "../wf/Snakefile"))
    assert executions(log) == Counter({"up": 2}), "the script, found through the `..` path, is still keyed"
    assert (root / "w1/res/up.txt").read_text() == "hello\n"


CHECKPOINT = {
    "Snakefile": '''
rule all:
    input: "agg.txt", "other.txt"

checkpoint split:
    output: directory("parts")
    shell: 'echo split >> "$NW_TEST_LOG"; sleep 1.5; mkdir parts; for i in 1 2; do echo $i > parts/$i.txt; done'

rule other:
    output: "other.txt"
    shell: 'echo other >> "$NW_TEST_LOG"; echo o > {output}'

def parts(w):
    d = checkpoints.split.get().output[0]
    return expand("parts/{i}.txt", i=glob_wildcards(d + "/{i}.txt").i)

rule agg:
    input: parts
    output: "agg.txt"
    shell: 'echo agg >> "$NW_TEST_LOG"; cat {input} > {output}'
''',
}


def test_a_store_inside_the_working_directory_is_not_a_checkpoints_undeclared_write(tmp_path: Path,
                                                                                   log: Path) -> None:
    """With the store in the working directory (`--nixworkflow-store .nw-store`), what the store wrote while a
    checkpoint ran (another job's result, its log and caches) was recorded as files the checkpoint writes without
    declaring them: the next run ran the checkpoint again instead of restoring it, with a warning naming store
    files."""
    wf = write(tmp_path / "wf", CHECKPOINT)
    ok(snakemake(wf, "--nixworkflow-store", ".nw-store"))
    wipe(wf, "parts", "agg.txt", "other.txt")
    proc = ok(snakemake(wf, "--nixworkflow-store", ".nw-store"))
    assert "does not declare" not in proc.stderr, proc.stderr
    assert executions(log) == Counter({"split": 1, "other": 1, "agg": 1}), "the second run restores everything"
    assert (wf / "agg.txt").read_text() == "1\n2\n"


LINKS = {
    "Snakefile": '''
rule link:
    input: "in.txt"
    output: directory("links")
    shell: 'echo link >> "$NW_TEST_LOG"; mkdir {output}; ln -s "$(realpath {input})" {output}/in.txt'
''',
    "in.txt": "data\n",
}


def test_a_dangling_symlink_inside_a_restored_directory_output_makes_the_job_run(tmp_path: Path,
                                                                                 log: Path) -> None:
    """A `directory()` output holding an absolute link into its checkout (`ln -s $(realpath {input})`), restored
    in a clone after the first checkout is gone: only a dangling link that *is* an output was detected, so the
    directory came back with a link to nothing (docs/snakemake.md promised the job runs instead). It runs, and
    the warning is given once, not again by the scheduler's path."""
    first = write(tmp_path / "first", LINKS)
    second = write(tmp_path / "second", LINKS)
    ok(snakemake(first))
    wipe(tmp_path, "first")
    proc = ok(snakemake(second))
    assert executions(log) == Counter({"link": 2}), "the stored links would dangle here: the job runs"
    assert (second / "links/in.txt").read_text() == "data\n"
    assert proc.stderr.count("do not exist here") == 1, proc.stderr
