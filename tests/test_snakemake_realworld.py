"""Idioms of published Snakemake workflows (snakemake-workflows style) through `--executor nixworkflow`.

Sample sheets read with pandas (an empty cell is NaN, the whole table passed as a param), params holding
absolute paths of the checkout, a config value only a script reads, an included rule file, and a module's
rule reused with other params: each must run as with the local executor, be restored when unchanged, and
re-run when what it computes from changes.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")
pytest.importorskip("pandas")

pytestmark = pytest.mark.slow


SHEET_WORKFLOW = '''
import pandas as pd

samples = pd.read_csv("samples.tsv", sep="\\t", dtype={"sample": str}).set_index("sample", drop=False)

rule all:
    input: expand("out/{s}.txt", s=samples.index[:2]), "out/table.txt"

rule extra:
    output: "out/{s}.txt"
    params: extra=lambda w: samples.loc[w.s, "extra"]
    shell: 'echo extra-{wildcards.s} >> "$NW_TEST_LOG"; echo {params.extra} > {output}'

rule table:
    output: "out/table.txt"
    params: samples=samples
    script: "table.py"
'''

TABLE = '''
import os
with open(os.environ["NW_TEST_LOG"], "a") as f:
    f.write("table\\n")
t = snakemake.params.samples
with open(snakemake.output[0], "w") as o:
    o.write("\\n".join(f"{s} {c}" for s, c in zip(t["sample"], t["condition"])) + "\\n")
'''


def sheet(condition_of_s50: str) -> str:
    """A sample sheet of 100 rows (pandas elides the middle of such a table in its repr); `extra` is empty
    (NaN) except for s00."""
    rows = ["sample\tcondition\textra", "s00\tctrl\t--fast"]
    rows += [f"s{i:02d}\t{condition_of_s50 if i == 50 else 'ctrl'}\t" for i in range(1, 100)]
    return "\n".join(rows) + "\n"


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_sample_sheet_nan_params_and_a_whole_table_param(tmp_path: Path, log: Path) -> None:
    """An empty sample-sheet cell gives a NaN param, which JSON cannot hold: the key computation raised
    ("Out of range float values are not JSON compliant") and every such job failed with a traceback. A
    DataFrame param was keyed by its repr, which elides the middle rows of a large table: after an edit of
    row 50 and `rm -rf out`, the store served the table of the old sheet."""
    wf = write(tmp_path / "wf", {"Snakefile": SHEET_WORKFLOW, "table.py": TABLE, "samples.tsv": sheet("ctrl")})
    ok(snakemake(wf))
    assert executions(log) == Counter({"extra-s00": 1, "extra-s01": 1, "table": 1})
    assert (wf / "out/s00.txt").read_text() == "--fast\n"
    assert (wf / "out/s01.txt").read_text() == "nan\n", "as with the local executor"

    wipe(wf, "out")
    log.unlink(missing_ok=True)
    ok(snakemake(wf))
    assert executions(log) == Counter(), "NaN params key the same on every run: everything is restored"

    (wf / "samples.tsv").write_text(sheet("treat"))
    wipe(wf, "out")
    log.unlink(missing_ok=True)
    ok(snakemake(wf))
    assert executions(log) == Counter({"table": 1}), "a row in the middle of the table changed what it computes"
    assert "s50 treat\n" in (wf / "out/table.txt").read_text()


ABSOLUTE_PARAMS = '''
import os

rule copy:
    input: "in.txt"
    output: "results/out.txt"
    params: outdir=os.path.abspath("results"), ref=workflow.basedir + "/in.txt"
    shell: 'echo copy >> "$NW_TEST_LOG"; cp {params.ref} {params.outdir}/out.txt'
'''


def test_a_clone_restores_jobs_whose_params_hold_absolute_paths_of_the_checkout(tmp_path: Path, log: Path) -> None:
    """Absolute paths of the working and Snakefile directories are replaced by placeholders in the command,
    but were not in the params' part of the key: a clone elsewhere, sharing the store, ran the job again."""
    one = write(tmp_path / "one", {"Snakefile": ABSOLUTE_PARAMS, "in.txt": "hi\n"})
    ok(snakemake(one))
    two = tmp_path / "elsewhere" / "two"
    two.parent.mkdir()
    shutil.copytree(one, two, ignore=shutil.ignore_patterns("results", ".snakemake"))
    proc = ok(snakemake(two))
    assert executions(log) == Counter({"copy": 1}), "the clone restores the job"
    assert "restored the outputs of rule copy" in proc.stderr
    assert (two / "results/out.txt").read_text() == "hi\n"


LAYOUT = {
    "workflow/Snakefile": '''
configfile: "config/config.yaml"

rule all:
    input: expand("results/count/{s}.txt", s=config["samples"])

include: "rules/clean.smk"

module counting:
    snakefile: "rules/module.smk"

use rule count from counting as count_words with:
    params: extra=config["tag"]
''',
    "workflow/rules/clean.smk": '''
rule clean:
    input: lambda w: config["samples"][w.s]
    output: "results/clean/{s}.txt"
    script: "../scripts/clean.py"
''',
    "workflow/rules/module.smk": '''
rule count:
    input: "results/clean/{s}.txt"
    output: "results/count/{s}.txt"
    params: extra=""
    shell: 'echo count-{wildcards.s} >> "$NW_TEST_LOG"; wc -c < {input} > {output}; echo {params.extra} >> {output}'
''',
    "workflow/scripts/clean.py": '''
import os
with open(os.environ["NW_TEST_LOG"], "a") as f:
    f.write(f"clean-{snakemake.wildcards.s}\\n")
text = open(snakemake.input[0]).read()
if snakemake.config["upper"]:
    text = text.upper()
open(snakemake.output[0], "w").write(text)
''',
    "config/config.yaml": "samples: {a: data/a.txt, b: data/b.txt}\nupper: true\ntag: T1\n",
    "data/a.txt": "aa\n",
    "data/b.txt": "bbb\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_config_only_a_script_reads_an_included_rule_and_a_module_rule(tmp_path: Path, log: Path) -> None:
    """The snakemake-workflows layout (workflow/Snakefile, rules/*.smk, scripts/, config/): a config value
    only a script reads (Snakemake itself does not re-run for it) re-runs the script's jobs once their
    outputs are gone; an edit of an included rule file or of a module's rule re-runs that rule only."""
    wf = write(tmp_path / "wf", LAYOUT)
    args = ("-s", "workflow/Snakefile")
    ok(snakemake(wf, *args))
    assert executions(log) == Counter({"clean-a": 1, "clean-b": 1, "count-a": 1, "count-b": 1})
    assert (wf / "results/count/a.txt").read_text() == "3\nT1\n"

    def rerun(*extra: str) -> Counter[str]:
        log.unlink(missing_ok=True)
        ok(snakemake(wf, *args, *extra))
        return executions(log)

    wipe(wf, "results")
    assert rerun() == Counter(), "unchanged: everything is restored"

    config = wf / "config/config.yaml"
    config.write_text(config.read_text().replace("upper: true", "upper: false"))
    wipe(wf, "results")
    assert rerun() == Counter({"clean-a": 1, "clean-b": 1, "count-a": 1, "count-b": 1}), \
        "the scripts read the config: they run again, and so does what reads their new outputs"
    assert (wf / "results/clean/a.txt").read_text() == "aa\n"

    assert rerun("--config", "tag=T2") == Counter({"count-a": 1, "count-b": 1}), "the params the module rule gets"
    assert (wf / "results/count/b.txt").read_text() == "4\nT2\n"

    module = wf / "workflow/rules/module.smk"
    module.write_text(module.read_text().replace("wc -c <", "wc -l <"))
    assert rerun() == Counter({"count-a": 1, "count-b": 1})
    assert (wf / "results/count/b.txt").read_text() == "1\nT1\n"
    wipe(wf, "results")
    assert rerun() == Counter(), "every version is in the store"
