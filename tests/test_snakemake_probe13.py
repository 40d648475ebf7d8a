"""Wave 13 probes of `snakemake --executor nixworkflow` with pipelines written the way the public
snakemake-workflows write them.

Each test is a bug the probe found, and failed before its fix.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.test_snakemake import ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


# `workflow.source_path(...)` returns a copy of the file in Snakemake's runtime source cache, a new temporary
# directory in every run: `params: script=workflow.source_path("../scripts/x.py")` then `python {params.script}`,
# or the copy as an input, is how many published workflows run their scripts.
SOURCE_PATH = {
    "workflow/Snakefile": '''
TOOL = workflow.source_path("../scripts/tool.py")

rule all:
    input: "results/b.txt", "results/c.txt", "results/d.txt", "results/e.txt"

rule b:
    input: "data/in.txt"
    output: "results/b.txt"
    params:
        script=workflow.source_path("../scripts/tool.py"),
    shell: "python3 {params.script} {input} > {output}"

rule c:
    input:
        script=workflow.source_path("../scripts/tool.py"),
        data="data/in.txt",
    output: "results/c.txt"
    shell: "python3 {input.script} {input.data} > {output}"

rule d:
    input: "data/in.txt"
    output: "results/d.txt"
    params:
        header=workflow.source_path("../resources/header.txt"),
    shell: "cat {params.header} {input} > {output}"

rule e:
    input: "data/in.txt"
    output: "results/e.txt"
    run:
        shell("python3 {TOOL} {input} > {output}")
''',
    "scripts/tool.py": "import sys\nprint(open(sys.argv[1]).read().strip()[::-1])\n",
    "resources/header.txt": "# header v1\n",
    "data/in.txt": "hello\n",
}


def restored(proc: subprocess.CompletedProcess[str]) -> set[str]:
    """The rules whose jobs this run restored from the store instead of running them."""
    return set(re.findall(r"restored the outputs of rule (\w+)\b", proc.stdout + proc.stderr))


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_file_named_through_workflow_source_path_is_keyed_by_its_path_and_content(tmp_path: Path) -> None:
    """Jobs naming a file by `workflow.source_path(...)` (a param the command runs, an input, a param naming a
    data file, a module-level variable a `run:` block formats) were keyed with the path of Snakemake's
    runtime source cache, a new temporary directory in each run: they were never served from the store, not
    after deleting their outputs, nor in a clone sharing it. The copy keys as its original's path, and its
    content is keyed: editing the script or the data file still re-runs exactly the jobs naming it."""
    wf = write(tmp_path / "wf", SOURCE_PATH)
    ok(snakemake(wf, "-s", "workflow/Snakefile"))
    assert (wf / "results/b.txt").read_text() == "olleh\n"
    assert (wf / "results/d.txt").read_text() == "# header v1\nhello\n"

    wipe(wf, "results")
    proc = ok(snakemake(wf, "-s", "workflow/Snakefile"))
    assert restored(proc) == set("bcde"), proc.stdout + proc.stderr

    # The copy's content is keyed: an edited script or data file is never served from the old result.
    (wf / "scripts/tool.py").write_text("import sys\nprint(open(sys.argv[1]).read().strip().upper())\n")
    (wf / "resources/header.txt").write_text("# header v2\n")
    wipe(wf, "results")
    proc = ok(snakemake(wf, "-s", "workflow/Snakefile"))
    assert restored(proc) == set(), proc.stdout + proc.stderr
    for name in "bce":
        assert (wf / f"results/{name}.txt").read_text() == "HELLO\n", name
    assert (wf / "results/d.txt").read_text() == "# header v2\nhello\n"

    wipe(wf, "results")
    proc = ok(snakemake(wf, "-s", "workflow/Snakefile"))
    assert restored(proc) == set("bcde"), proc.stdout + proc.stderr
    assert (wf / "results/c.txt").read_text() == "HELLO\n"


# A `run:` block's `shell()` formats module-level values by name from the Snakefile's globals: a use the
# block's bytecode does not show.
FORMATTED = {
    "Snakefile": '''
EXTRA = "--min-len 3"
N = 3
ADAPTERS = {"truseq": "AGATCG"}

rule all:
    input: "results/a.txt", "results/b.txt"

rule a:
    output: "results/a.txt"
    run:
        shell("echo trim {EXTRA} {ADAPTERS[truseq]} > {output}")

rule b:
    output: "results/b.txt"
    run:
        shell("seq {N} > {output}")
''',
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_module_level_value_a_run_blocks_shell_formats_is_keyed(tmp_path: Path) -> None:
    """`run: shell("trim {EXTRA} ...")` formats EXTRA from the Snakefile's globals. A plain value (a string,
    a number, a small dict) used only in such a format field was keyed by the paths in it only: after editing
    `EXTRA = ...` (Snakemake sees no code change) and deleting the outputs, the store served the output the
    old value made, where the local executor writes the new one."""
    wf = write(tmp_path / "wf", FORMATTED)
    ok(snakemake(wf))
    assert (wf / "results/a.txt").read_text() == "trim --min-len 3 AGATCG\n"
    wipe(wf, "results")
    assert restored(ok(snakemake(wf))) == {"a", "b"}  # unchanged values: served from the store

    snakefile = wf / "Snakefile"
    text = snakefile.read_text()
    snakefile.write_text(text.replace('"--min-len 3"', '"--min-len 5"').replace("N = 3", "N = 4")
                         .replace('"AGATCG"', '"CTGTCT"'))
    wipe(wf, "results")
    proc = ok(snakemake(wf))
    assert restored(proc) == set(), proc.stdout + proc.stderr
    assert (wf / "results/a.txt").read_text() == "trim --min-len 5 CTGTCT\n"
    assert (wf / "results/b.txt").read_text() == "1\n2\n3\n4\n"
