"""Wave 9 probes: the structure of public Snakemake workflows through `snakemake --executor nixworkflow`.

Re-created from snakemake-workflows/rna-seq-star-deseq2, dna-seq-gatk-variant-calling, single-cell-rna-seq and
the Snakemake tutorial (workflow/rules/*.smk, scripts, schemas, sample sheets, wrappers, checkpoints,
scattergather, modules). Each test is a bug the probe found, compared with what Snakemake's local executor does.
Executions are counted from side effects ($NW_TEST_LOG).
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


WRAPPERS = {
    "Snakefile": '''
rule all:
    input: "genome.fa.fai"

rule faidx:
    input: "genome.fa"
    output: "genome.fa.fai"
    wrapper: "master/bio/samtools/faidx"
''',
    "genome.fa": ">c1\nACGT\n>c2\nGG\n",
    "wrappers/master/bio/samtools/faidx/environment.yaml": "channels: [conda-forge]\ndependencies: [samtools]\n",
    "wrappers/master/bio/samtools/faidx/wrapper.py": '''
import os
with open(os.environ["NW_TEST_LOG"], "a") as f:
    f.write("faidx\\n")
open(snakemake.output[0], "w").write("one\\n")
''',
}


def test_a_wrapper_is_keyed_by_its_code_not_only_its_name(tmp_path: Path, log: Path) -> None:
    """`wrapper: "master/bio/..."` (a moving branch) or a `--wrapper-prefix` whose wrapper changes: the key held
    the wrapper's name only, so after the wrapper's code changed and the outputs were deleted the store served
    the old wrapper's result. Snakemake's own `--cache` hashes the wrapper's source; so does the key now."""
    wf = write(tmp_path / "wf", WRAPPERS)
    prefix = ("--wrapper-prefix", f"file:{wf}/wrappers/")
    ok(snakemake(wf, *prefix))
    assert (wf / "genome.fa.fai").read_text() == "one\n"
    code = wf / "wrappers/master/bio/samtools/faidx/wrapper.py"
    code.write_text(code.read_text().replace('"one', '"two'))
    wipe(wf, "genome.fa.fai")
    ok(snakemake(wf, *prefix))
    assert executions(log) == Counter({"faidx": 2}), "the new wrapper code runs"
    assert (wf / "genome.fa.fai").read_text() == "two\n"
    wipe(wf, "genome.fa.fai")
    ok(snakemake(wf, *prefix))
    assert executions(log) == Counter({"faidx": 2}), "unchanged: restored"


def test_a_wrapper_that_cannot_be_fetched_is_a_clear_error(tmp_path: Path, log: Path, store_root: Path) -> None:
    """A wrapper missing under the prefix (or GitHub out of reach): the job fails naming the rule, the wrapper,
    where it was looked for and what to do, and nothing is stored."""
    wf = write(tmp_path / "wf", WRAPPERS)
    proc = snakemake(wf, "--wrapper-prefix", f"file:{wf}/nowhere/")
    assert proc.returncode != 0
    assert "rule faidx: the code of wrapper 'master/bio/samtools/faidx' cannot be read" in proc.stderr, proc.stderr
    assert f"none of wrapper.py, wrapper.R, wrapper.Rmd, wrapper.jl is in {wf}/nowhere/master" in proc.stderr
    assert "--wrapper-prefix file:///" in proc.stderr
    assert executions(log) == Counter()
    assert not list(store_root.glob("realisations/*.json")), "nothing is stored"


CLUSTERS = {
    "Snakefile": '''
rule all:
    input: "aggregated/a.txt", "aggregated/b.txt"

checkpoint clustering:
    input: "samples/{sample}.txt"
    output: clusters=directory("clustering/{sample}")
    shell:
        'echo clustering-{wildcards.sample} >> "$NW_TEST_LOG"; sleep $(cat {input}); mkdir {output}; '
        'for i in 1 2; do echo $i > {output}/$i.txt; done'

rule intermediate:
    input: "clustering/{sample}/{i}.txt"
    output: "post/{sample}/{i}.txt"
    shell: 'echo intermediate >> "$NW_TEST_LOG"; cp {input} {output}'

def aggregate_input(wildcards):
    out = checkpoints.clustering.get(**wildcards).output[0]
    return expand("post/{sample}/{i}.txt", sample=wildcards.sample, i=glob_wildcards(os.path.join(out, "{i}.txt")).i)

rule aggregate:
    input: aggregate_input
    output: "aggregated/{sample}.txt"
    shell: 'echo aggregate >> "$NW_TEST_LOG"; cat {input} > {output}'
''',
    "samples/a.txt": "0.2\n",
    "samples/b.txt": "1.2\n",
}


def test_checkpoints_of_two_samples_at_once_are_restored(tmp_path: Path, log: Path) -> None:
    """The checkpoint example of Snakemake's docs (`clustering/{sample}`, a directory per sample) with -c 2: the
    files sample a's checkpoint wrote while b's ran were recorded as b's undeclared writes (a's job had left the
    DAG, which Snakemake re-evaluates when a checkpoint finishes), so a clone ran b's checkpoint again with a
    warning that it writes files it does not declare."""
    one = write(tmp_path / "one", CLUSTERS)
    ok(snakemake(one))
    two = write(tmp_path / "two", CLUSTERS)
    proc = ok(snakemake(two))
    assert "does not declare" not in proc.stderr, proc.stderr
    assert executions(log) == Counter({"clustering-a": 1, "clustering-b": 1, "intermediate": 4, "aggregate": 2})
    assert (two / "aggregated/b.txt").read_text() == "1\n2\n"


SYS_PATH = {
    "workflow/Snakefile": '''
rule plot:
    output: "results/plot.txt"
    script: "scripts/plot.py"
''',
    "workflow/scripts/plot.py": '''
import os
import sys
sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "lib"))
from plotting import STYLE
with open(os.environ["NW_TEST_LOG"], "a") as f:
    f.write("plot\\n")
open(snakemake.output[0], "w").write(STYLE + "\\n")
''',
    "workflow/lib/plotting.py": 'STYLE = "one"\n',
}


def test_a_module_a_script_imports_through_its_own_sys_path_line_is_keyed(tmp_path: Path, log: Path) -> None:
    """`sys.path.insert(0, os.path.join(snakemake.scriptdir, "..", "lib"))` then `from plotting import ...`, as
    published workflows share code between scripts: only modules next to the script were keyed, so after an edit
    of workflow/lib/plotting.py and `rm -rf results` the store served the old plot."""
    wf = write(tmp_path / "wf", SYS_PATH)
    ok(snakemake(wf, "-s", "workflow/Snakefile"))
    (wf / "workflow/lib/plotting.py").write_text('STYLE = "two"\n')
    wipe(wf, "results")
    ok(snakemake(wf, "-s", "workflow/Snakefile"))
    assert executions(log) == Counter({"plot": 2}), "the edited module changes what the script computes"
    assert (wf / "results/plot.txt").read_text() == "two\n"


SCRIPTDIR = {
    "workflow/Snakefile": '''
rule all:
    input: "results/a.txt", "results/b.txt"

rule a:
    output: "results/a.txt"
    script: "scripts/a.sh"

rule b:
    output: "results/b.txt"
    script: "scripts/b.py"
''',
    "workflow/scripts/a.sh": '''
source "${snakemake[scriptdir]}/lib.sh"
echo a >> "$NW_TEST_LOG"
greet > "${snakemake_output[0]}"
''',
    "workflow/scripts/lib.sh": "greet() { echo one; }\n",
    "workflow/scripts/b.py": '''
import os
import subprocess
with open(os.environ["NW_TEST_LOG"], "a") as f:
    f.write("b\\n")
out = subprocess.run(["bash", snakemake.scriptdir + "/inner.sh"], capture_output=True, text=True, check=True)
open(snakemake.output[0], "w").write(out.stdout)
''',
    "workflow/scripts/inner.sh": "echo one\n",
}


def test_code_a_script_names_beside_itself_through_scriptdir_is_keyed(tmp_path: Path, log: Path) -> None:
    """Scripts find their siblings through their own directory (`source "${snakemake[scriptdir]}/lib.sh"`, R's
    `source(file.path(snakemake@scriptdir, "common.R"))`, `snakemake.scriptdir + "/inner.sh"`): the words were
    resolved against the working directory only, so after editing the sibling and `rm -rf results` the store
    served the old results."""
    wf = write(tmp_path / "wf", SCRIPTDIR)
    ok(snakemake(wf, "-s", "workflow/Snakefile"))
    for name in ("lib.sh", "inner.sh"):
        sibling = wf / "workflow/scripts" / name
        sibling.write_text(sibling.read_text().replace("one", "two"))
    wipe(wf, "results")
    ok(snakemake(wf, "-s", "workflow/Snakefile"))
    assert executions(log) == Counter({"a": 2, "b": 2})
    assert (wf / "results/a.txt").read_text() == (wf / "results/b.txt").read_text() == "two\n"


SANDBOXED = {
    "workflow/Snakefile": '''
rule all:
    input: "results/script.txt", "results/run.txt"

rule script:
    input: ref=config["ref"]
    output: "results/script.txt"
    script: "scripts/count.py"

rule run_block:
    input: "results/script.txt"
    output: "results/run.txt"
    run:
        with open(input[0]) as i, open(output[0], "w") as o:
            o.write("run " + i.read())
''',
    "workflow/scripts/count.py": '''
import sys
sys.path.insert(0, snakemake.scriptdir + "/..")
from lib import label
open(snakemake.output[0], "w").write(label(len(open(snakemake.input.ref).read().split())))
''',
    "workflow/lib.py": "def label(n):\n    return f'{n} words\\n'\n",
    "data/ref.txt": "a b c\n",
}


def test_the_sandbox_runs_script_and_run_rules_of_a_published_layout(tmp_path: Path) -> None:
    """`--nixworkflow-sandbox` on the snakemake-workflows layout: every `script:` job failed (`/bin/sh: 1:
    .../bin/python: not found`: Snakemake's interpreter lives in a virtualenv, not a system directory), every
    `run:` job too (its Snakemake process also wrote its source cache under ~/.cache), and so did jobs reading
    the Snakefile's directory or a reference outside the working directory. They are readable (never writable)
    in the sandbox now, and the spawned Snakemake caches in the sandbox's scratch space."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    root = write(tmp_path / "p", SANDBOXED)
    work = root / "run"
    work.mkdir()
    ok(snakemake(work, "-s", "../workflow/Snakefile", "--config", f"ref={root}/data/ref.txt",
                 "--nixworkflow-sandbox"))
    assert (work / "results/run.txt").read_text() == "run 3 words\n"
