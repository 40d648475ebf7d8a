"""Wave 11 probes of `snakemake --executor nixworkflow` with pipelines written the way other people write them
(sample sheets, per-sample rules, clones of the checkout sharing one store).

Each test is a bug the probe found, and failed before its fix.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import nw
from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


# Per-sample jobs whose outputs are the same bytes (a read count that happens to be equal), and a rule that
# copies a source file verbatim: two ways a file's bytes are also the output of a job that did not write it.
PER_SAMPLE = {
    "Snakefile": '''
SAMPLES = ["a", "b", "c"]

rule all:
    input: "results/report.txt"

rule trim:
    input: r1="data/{s}_1.fq", r2="data/{s}_2.fq"
    output: r1="results/trim/{s}.r1.fq", r2="results/trim/{s}.r2.fq"
    shell: "(echo trimmed {wildcards.s}; cat {input.r1}) > {output.r1}; cat {input.r2} > {output.r2}"

rule count:
    input: "results/trim/{s}.r1.fq", "results/trim/{s}.r2.fq"
    output: "results/count/{s}.txt"
    shell: "cat {input} | wc -l > {output}"

rule report:
    input: expand("results/count/{s}.txt", s=SAMPLES)
    output: "results/report.txt"
    shell: "cat {input} > {output}"
''',
    **{f"data/{s}_{n}.fq": f"@r\\n{s * 4}{n}\\n+\\nIIIII\\n".replace("\\n", "\n") for s in "abc" for n in (1, 2)},
}


def test_lineage_in_a_clone_names_the_job_that_wrote_each_file(tmp_path: Path) -> None:
    """`nw show results/count/b.txt` (in the checkout, or in a clone served from the shared store) showed the
    record of another sample's job, `wildcards: s=c` and its command, because the three count jobs wrote the same
    bytes and the newest record with them was picked; `nw lineage` did the same for each input of the report, and
    showed the source file data/a_2.fq as an output of trim (which copied it verbatim into results/trim/a.r2.fq),
    with that very trim job as its own upstream. A Snakemake job's outputs are named by their paths: the job that
    wrote the file at that path is the one to show, and a job that wrote those bytes elsewhere is not its
    producer."""
    wf = write(tmp_path / "wf", PER_SAMPLE)
    ok(snakemake(wf))
    clone = tmp_path / "clone"
    shutil.copytree(wf, clone, ignore=shutil.ignore_patterns("results", ".snakemake"))
    proc = ok(snakemake(clone))
    assert (proc.stdout + proc.stderr).count("restored the outputs of rule") == 7  # all served from the store
    counts = {(wf / f"results/count/{s}.txt").read_text() for s in "abc"}
    assert counts == {"9\n"}, counts  # the same bytes for every sample: the case this test is about

    for where in (wf, clone):
        for s in "abc":
            shown = nw("show", f"results/count/{s}.txt", cwd=where, check=True).stdout
            assert f"results/trim/{s}.r1.fq results/trim/{s}.r2.fq" in shown, shown
            assert f'"wildcards": {{"s": "{s}"}}' in shown, shown

        tree = nw("lineage", "results/report.txt", cwd=where, check=True).stdout
        for s in "abc":
            line = next(n for n, text in enumerate(tree.splitlines()) if f"count [results/count/{s}.txt]" in text)
            assert f"results/trim/{s}.r1.fq results/trim/{s}.r2.fq" in tree.splitlines()[line + 1], tree
        assert "trim [data/" not in tree, tree  # a source file is no job's output
        assert "data/a_2.fq (file, same bytes as outputs of trim)" in tree, tree
        assert "data/a_1.fq (file)" in tree, tree


CONFIG_TABLE = {
    "Snakefile": '''
import os
configfile: "config/config.yaml"

rule all:
    input: "results/annotated.txt", "results/counted.txt", "results/other.txt"

rule annotate:
    output: "results/annotated.txt"
    script: "scripts/annotate.py"

rule count:
    output: "results/counted.txt"
    run:
        open(os.environ["NW_TEST_LOG"], "a").write("count\\n")
        with open(config["thresholds"]["table"]) as t, open(output[0], "w") as o:
            o.write(str(len(t.read().split())) + "\\n")

rule other:
    output: "results/other.txt"
    script: "scripts/other.py"
''',
    "config/config.yaml": "thresholds:\n  table: config/thresholds.tsv\nlabel: demo\n",
    "config/thresholds.tsv": "gene\tmin\nA\t1\n",
    "scripts/annotate.py": '''
import os
open(os.environ["NW_TEST_LOG"], "a").write("annotate\\n")
with open(snakemake.config["thresholds"]["table"]) as t, open(snakemake.output[0], "w") as o:
    o.write(t.read().upper())
''',
    "scripts/other.py": '''
import os
open(os.environ["NW_TEST_LOG"], "a").write("other\\n")
open(snakemake.output[0], "w").write(snakemake.config["label"] + "\\n")
''',
}


def test_a_project_file_the_config_names_is_keyed_for_code_that_reads_the_config(tmp_path: Path, log: Path) -> None:
    """A `script:` or `run:` job reading a file of the project whose path is in the config (`thresholds: {table:
    config/thresholds.tsv}`, a sample sheet, a reference) without declaring it: after the file was edited and the
    outputs deleted, the old outputs were restored from the store (the local executor computes from the new
    table), as for a param naming a file before it was keyed by content. A job whose code names none of the keys
    leading to the file (`other` reads only `label`) keeps its result."""
    wf = write(tmp_path / "wf", CONFIG_TABLE)
    ok(snakemake(wf))
    assert (wf / "results/annotated.txt").read_text() == "GENE\tMIN\nA\t1\n"
    assert (wf / "results/counted.txt").read_text() == "4\n"
    (wf / "config/thresholds.tsv").write_text("gene\tmin\nA\t1\nB\t7\n")
    wipe(wf, "results")
    log.unlink()
    ok(snakemake(wf))
    assert (wf / "results/annotated.txt").read_text() == "GENE\tMIN\nA\t1\nB\t7\n"
    assert (wf / "results/counted.txt").read_text() == "6\n"
    assert executions(log) == Counter({"annotate": 1, "count": 1}), "other names no key leading to the table"
