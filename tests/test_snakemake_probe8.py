"""Wave 8 probes of `snakemake --executor nixworkflow` with Snakefiles written the way users write them.

Each test is a bug the probe found: after an edit that changes what a job computes, deleting its outputs and
re-running served the old result from the store instead of running the job (the local executor would have
produced different bytes). Executions are counted from side effects ($NW_TEST_LOG).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


def rerun(wf: Path, log: Path, *outputs: str) -> Counter[str]:
    """Delete `outputs` and Snakemake's metadata, run again, return what executed."""
    wipe(wf, *outputs)
    log.unlink(missing_ok=True)
    ok(snakemake(wf))
    return executions(log)


MODULE = {
    "Snakefile": '''
module m:
    snakefile: "mod/Snakefile"
    config: {"tag": "first"}

use rule * from m as m_*
''',
    "mod/Snakefile": '''
rule tagged:
    output: "out/tag.txt"
    script: "tag.py"
''',
    "mod/tag.py": '''
import os
open(os.environ["NW_TEST_LOG"], "a").write("tag\\n")
open(snakemake.output[0], "w").write(snakemake.config["tag"] + "\\n")
''',
}


def test_a_module_rule_is_keyed_with_the_config_the_module_gets(tmp_path: Path, log: Path) -> None:
    """A module's rules see the module's own config (`module m: config: {...}`), not the workflow's: the key
    held the workflow's (empty) config, so after editing the module's config the old output was restored."""
    wf = write(tmp_path / "wf", MODULE)
    ok(snakemake(wf))
    assert (wf / "out/tag.txt").read_text() == "first\n"
    assert rerun(wf, log, "out") == Counter(), "unchanged: restored"
    snakefile = wf / "Snakefile"
    snakefile.write_text(snakefile.read_text().replace('"first"', '"second"'))
    assert rerun(wf, log, "out") == Counter({"tag": 1})
    assert (wf / "out/tag.txt").read_text() == "second\n"


SHEET_IN_RUN = {
    "Snakefile": '''
import os
import pandas as pd

samples = pd.read_csv("samples.tsv", sep="\\t").set_index("sample", drop=False)

rule all:
    input: expand("r/{s}.txt", s=samples.index)

rule r:
    output: "r/{s}.txt"
    run:
        with open(os.environ["NW_TEST_LOG"], "a") as f:
            f.write(f"r-{wildcards.s}\\n")
        with open(output[0], "w") as o:
            o.write(samples.loc[wildcards.s, "condition"] + "\\n")
''',
    "samples.tsv": "sample\tcondition\ns1\tcontrol\ns2\ttreated\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_run_block_reading_a_sample_sheet_table_is_keyed_by_its_values(tmp_path: Path, log: Path) -> None:
    """`samples = pd.read_csv(...)` at the top of the Snakefile, read by a `run:` block: nixlib.pycode cannot
    digest a DataFrame and left it out, so after editing a cell the old output was restored."""
    pytest.importorskip("pandas")
    wf = write(tmp_path / "wf", SHEET_IN_RUN)
    ok(snakemake(wf))
    assert rerun(wf, log, "r") == Counter(), "unchanged: restored"
    (wf / "samples.tsv").write_text("sample\tcondition\ns1\tCHANGED\ns2\ttreated\n")
    assert rerun(wf, log, "r") == Counter({"r-s1": 1, "r-s2": 1}), "the whole table is keyed"
    assert (wf / "r/s1.txt").read_text() == "CHANGED\n"
    assert (wf / "r/s2.txt").read_text() == "treated\n"


SCRIPT_IN_RUN = {
    "Snakefile": '''
CLEAN = "scripts/clean.py"

rule all:
    input: "out.txt", "out2.txt"

rule r:
    output: "out.txt"
    run:
        shell("echo r >> $NW_TEST_LOG; python3 scripts/clean.py > {output}")

rule r2:
    output: "out2.txt"
    run:
        shell("echo r2 >> $NW_TEST_LOG; python3 {CLEAN} > {output}")
''',
    "scripts/clean.py": 'print("v1")\n',
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_script_a_run_block_runs_through_shell_is_keyed_by_content(tmp_path: Path, log: Path) -> None:
    """`run: shell("python3 scripts/clean.py ...")`, or `shell("python3 {CLEAN} ...")` with the path in a
    module-level variable the shell formats at run time: the script was keyed when named by a `shell:` command
    but not by a `run:` block, so after editing it the old outputs were restored."""
    wf = write(tmp_path / "wf", SCRIPT_IN_RUN)
    ok(snakemake(wf))
    assert rerun(wf, log, "out.txt", "out2.txt") == Counter(), "unchanged: restored"
    (wf / "scripts/clean.py").write_text('print("v2")\n')
    assert rerun(wf, log, "out.txt", "out2.txt") == Counter({"r": 1, "r2": 1})
    assert (wf / "out.txt").read_text() == (wf / "out2.txt").read_text() == "v2\n"


INSTANCE_IN_RUN = {
    "Snakefile": '''
import os

class Scaler:
    def __init__(self, k):
        self.k = k

    def apply(self, text):
        return text * self.k

scaler = Scaler(2)

rule r:
    output: "out.txt"
    run:
        open(os.environ["NW_TEST_LOG"], "a").write("r\\n")
        open(output[0], "w").write(scaler.apply("ab") + "\\n")
''',
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_an_instance_of_a_snakefile_class_a_run_block_uses_is_keyed(tmp_path: Path, log: Path) -> None:
    """`scaler = Scaler(2)` at module level, used as `scaler.apply(...)` in a `run:` block: nixlib.pycode keys
    neither an instance nor (not being named) its class, so a changed argument or method served the old output.
    (The probe also found that a class defined in a Snakefile has `__module__` None: no crash.)"""
    wf = write(tmp_path / "wf", INSTANCE_IN_RUN)
    ok(snakemake(wf))
    assert (wf / "out.txt").read_text() == "abab\n"
    assert rerun(wf, log, "out.txt") == Counter(), "unchanged: restored"
    snakefile = wf / "Snakefile"
    snakefile.write_text(snakefile.read_text().replace("Scaler(2)", "Scaler(3)"))
    assert rerun(wf, log, "out.txt") == Counter({"r": 1}), "an attribute of the instance changed"
    assert (wf / "out.txt").read_text() == "ababab\n"
    snakefile.write_text(snakefile.read_text().replace("text * self.k", "text * self.k + '!'"))
    assert rerun(wf, log, "out.txt") == Counter({"r": 1}), "a method of its class changed"
    assert (wf / "out.txt").read_text() == "ababab!\n"


LARGE_DICT_IN_RUN = {
    "Snakefile": '''
import os

SIZES = {f"sample{i:05d}": i for i in range(10000)}  # built from a sample sheet, say: too large for pycode

rule r:
    output: "out.txt"
    run:
        open(os.environ["NW_TEST_LOG"], "a").write("r\\n")
        open(output[0], "w").write(str(SIZES["sample00042"]) + "\\n")
''',
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_large_module_level_dict_a_run_block_reads_is_keyed(tmp_path: Path, log: Path) -> None:
    """nixlib.pycode leaves a module-level value of more than 64 KB of JSON out of a digest (data, not code):
    a `run:` block reading such a dict served the old output after one of its values changed."""
    wf = write(tmp_path / "wf", LARGE_DICT_IN_RUN)
    ok(snakemake(wf))
    assert rerun(wf, log, "out.txt") == Counter(), "unchanged: restored"
    snakefile = wf / "Snakefile"
    snakefile.write_text(snakefile.read_text().replace("for i in range(10000)}", "for i in range(10000)} | "
                                                       '{"sample00042": -1}'))
    assert rerun(wf, log, "out.txt") == Counter({"r": 1})
    assert (wf / "out.txt").read_text() == "-1\n"


IMPORT_IN_RUN = {
    "Snakefile": '''
rule all:
    input: "a.txt", "b.txt"

rule a:
    output: "a.txt"
    run:
        import os
        import helpers
        open(os.environ["NW_TEST_LOG"], "a").write("a\\n")
        open(output[0], "w").write(helpers.f() + "\\n")

rule b:
    output: "b.txt"
    run:
        import os
        from helpers import f
        open(os.environ["NW_TEST_LOG"], "a").write("b\\n")
        open(output[0], "w").write(f() + "\\n")
''',
    "helpers.py": 'def f():\n    return "v1"\n',
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_local_module_a_run_block_imports_inside_it_is_keyed(tmp_path: Path, log: Path) -> None:
    """`import helpers` inside a `run:` block (not at the top of the Snakefile, where pycode follows it): the
    module was not keyed, so after editing helpers.py the old outputs were restored."""
    wf = write(tmp_path / "wf", IMPORT_IN_RUN)
    ok(snakemake(wf))
    assert rerun(wf, log, "a.txt", "b.txt") == Counter(), "unchanged: restored"
    (wf / "helpers.py").write_text('def f():\n    return "v2"\n')
    assert rerun(wf, log, "a.txt", "b.txt") == Counter({"a": 1, "b": 1})
    assert (wf / "a.txt").read_text() == (wf / "b.txt").read_text() == "v2\n"


SCRIPT_RUNS_SCRIPT = {
    "Snakefile": '''
rule a:
    output: "a.txt"
    script: "scripts/main.py"
''',
    "scripts/main.py": '''
import os
import subprocess
open(os.environ["NW_TEST_LOG"], "a").write("a\\n")
out = subprocess.run(["bash", "scripts/inner.sh"], capture_output=True, text=True, check=True).stdout
open(snakemake.output[0], "w").write(out)
''',
    "scripts/inner.sh": "echo v1\n",
}


def test_a_project_script_a_python_script_runs_is_keyed_by_content(tmp_path: Path, log: Path) -> None:
    """A `script:` that runs another script of the project (`subprocess.run(["bash", "scripts/inner.sh"])`):
    a shell command naming it keyed it, a script naming it did not, so after editing inner.sh the old output
    was restored."""
    wf = write(tmp_path / "wf", SCRIPT_RUNS_SCRIPT)
    ok(snakemake(wf))
    assert rerun(wf, log, "a.txt") == Counter(), "unchanged: restored"
    (wf / "scripts/inner.sh").write_text("echo v2\n")
    assert rerun(wf, log, "a.txt") == Counter({"a": 1})
    assert (wf / "a.txt").read_text() == "v2\n"


PYTHON_M = {
    "Snakefile": '''
rule all:
    input: "out/model.txt"

rule train:
    output: "out/model.txt"
    shell: 'echo train >> "$NW_TEST_LOG"; python3 -m mypkg.train > {output}'
''',
    "mypkg/__init__.py": "",
    "mypkg/train.py": "from mypkg import util\nprint(util.RATE)\n",
    "mypkg/util.py": "RATE = 1\n",
}


def test_a_project_module_a_shell_command_runs_with_python_m_is_keyed(tmp_path: Path, log: Path) -> None:
    """`python3 -m mypkg.train` runs a package of the working directory as a script does: editing a module of it
    must re-run the job (before, only path-like words were keyed, and the old output was restored)."""
    wf = write(tmp_path / "wf", PYTHON_M)
    ok(snakemake(wf))
    assert (wf / "out/model.txt").read_text() == "1\n"
    assert rerun(wf, log, "out") == Counter(), "unchanged: restored"
    (wf / "mypkg/util.py").write_text("RATE = 2\n")
    assert rerun(wf, log, "out") == Counter({"train": 1})
    assert (wf / "out/model.txt").read_text() == "2\n"


ENVVARS = {
    "Snakefile": '''
envvars: "REF_VERSION", "API_TOKEN"

rule all:
    input: "out/ref.txt", "out/plain.txt"

rule ref:
    output: "out/ref.txt"
    shell: 'echo ref >> "$NW_TEST_LOG"; echo "$REF_VERSION" > {output}'

rule plain:
    output: "out/plain.txt"
    shell: 'echo plain >> "$NW_TEST_LOG"; echo same > {output}'
''',
}


def test_a_declared_envvar_a_job_reads_is_keyed_by_its_value(tmp_path: Path, log: Path) -> None:
    """`envvars: "REF_VERSION"` and `echo $REF_VERSION > {output}`: after changing the variable and deleting the
    output, Snakemake runs the job with the new value; the old output was restored. A declared variable no code
    of the job names (a token a storage plugin uses) is not keyed: rotating it re-runs nothing."""
    wf = write(tmp_path / "wf", ENVVARS)

    def run(ref: str, token: str) -> Counter[str]:
        wipe(wf, "out")
        log.unlink(missing_ok=True)
        ok(snakemake(wf, env={"REF_VERSION": ref, "API_TOKEN": token}))
        return executions(log)

    assert run("ref-one", "token-one") == Counter({"ref": 1, "plain": 1})
    assert run("ref-one", "token-two") == Counter(), "unchanged (a token no job names rotated): restored"
    assert run("ref-two", "token-two") == Counter({"ref": 1})
    assert (wf / "out/ref.txt").read_text() == "ref-two\n"
    records = "".join(p.read_text() for p in Path(os.environ["NIX_WORKFLOW_STORE"], "realisations").rglob("*.json"))
    assert "ref-two" not in records and "token-two" not in records, "values are keyed by digest, never stored"
