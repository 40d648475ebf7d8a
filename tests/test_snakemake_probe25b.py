"""Probe 25b: a workflow in the style of public snakemake-workflows (sample sheet read with csv, `include:`d helpers
called from a `run:` block, a `script:` importing a local module, `unpack()` input function, `multiext()`, lambda
params) through the real `snakemake --executor nixworkflow` CLI. The probe found no bug; this keeps what it checked:
a clean re-run restores every job with none executed, and an edit of a helper the `run:` block reaches only through
another helper re-runs exactly the jobs that call it (executions counted in a side file, outside the store)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

SNAKEFILE = """
configfile: "config.yaml"
include: "rules/common.smk"
UNITS = read_units(config["units"])

rule all:
    input: "results/table.tsv"

def unit_inputs(wildcards):
    u = UNITS[wildcards.unit]
    return {"a": u["r1"], "b": u["r2"]}

rule pair:
    input: unpack(unit_inputs)
    output: multiext("results/norm/{unit}", ".txt", ".meta")
    params: sep=lambda wc: config["sep"]
    wildcard_constraints: unit=r"u\\d+"
    run:
        note(f"pair {wildcards.unit}")
        shell("paste -d '{params.sep}' {input.a} {input.b} > {output[0]}")
        with open(output[1], "w") as fh:
            fh.write(describe(wildcards.unit))

rule table:
    input: expand("results/norm/{unit}.{ext}", unit=sorted(UNITS), ext=["txt", "meta"])
    output: "results/table.tsv"
    script: "scripts/table.py"
"""

COMMON = """
import csv
import os

def note(what):
    with open(os.environ["NW_EXEC_LOG"], "a") as fh:
        fh.write(what + "\\n")

def read_units(path):
    with open(path) as fh:
        return {r["unit"]: r for r in csv.DictReader(fh, delimiter="\\t")}

def label(unit):
    return f"unit:{unit}"

def describe(unit):
    return label(unit) + "\\n"
"""

TABLE = """
import os
import sys
sys.path.insert(0, os.path.dirname(__file__))
from tablelib import render
with open(os.environ["NW_EXEC_LOG"], "a") as fh:
    fh.write("table\\n")
rows = [open(p).read() for p in snakemake.input]
open(snakemake.output[0], "w").write(render(rows))
"""


def workflow(wf: Path) -> Path:
    """The workflow's files in `wf`."""
    files = {"Snakefile": SNAKEFILE, "rules/common.smk": COMMON, "scripts/table.py": TABLE,
             "scripts/tablelib.py": "def render(rows):\n    return ''.join(rows)\n",
             "config.yaml": "units: units.tsv\nsep: ','\n",
             "units.tsv": "unit\tr1\tr2\nu1\td/u1a\td/u1b\nu2\td/u2a\td/u2b\n",
             "d/u1a": "a\nb\n", "d/u1b": "1\n2\n", "d/u2a": "c\n", "d/u2b": "3\n"}
    for name, text in files.items():
        (wf / name).parent.mkdir(parents=True, exist_ok=True)
        (wf / name).write_text(text)
    return wf


def run(wf: Path) -> list[str]:
    """`snakemake -c 2 --executor nixworkflow` in `wf` (must succeed): the jobs that executed, sorted."""
    log = wf / "executions.log"
    log.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "snakemake", "-c", "2", "--nocolor", "--executor", "nixworkflow"]
    proc = subprocess.run(argv, cwd=wf, env=dict(os.environ, PYTHONPATH=str(REPO), NW_EXEC_LOG=str(log)),
                          text=True, capture_output=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    return sorted(log.read_text().splitlines()) if log.exists() else []


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
@pytest.mark.slow
def test_a_helper_reached_through_another_helper_reruns_exactly_its_callers(tmp_path: Path, isolated: Path) -> None:
    wf = workflow(tmp_path / "wf")
    assert run(wf) == ["pair u1", "pair u2", "table"]
    table = (wf / "results/table.tsv").read_bytes()
    assert table == b"a,1\nb,2\nunit:u1\nc,3\nunit:u2\n"

    shutil.rmtree(wf / "results")
    shutil.rmtree(wf / ".snakemake")
    assert run(wf) == []  # everything restored from the store
    assert (wf / "results/table.tsv").read_bytes() == table

    clone = workflow(tmp_path / "clone")  # a clone with the helper `describe` calls edited
    common = clone / "rules/common.smk"
    common.write_text(common.read_text().replace('f"unit:{unit}"', 'f"unit={unit}"'))
    assert run(clone) == ["pair u1", "pair u2", "table"]
    assert (clone / "results/table.tsv").read_bytes() == b"a,1\nb,2\nunit=u1\nc,3\nunit=u2\n"

    lib = clone / "scripts/tablelib.py"  # the script's local module: only the script's job re-runs
    lib.write_text("def render(rows):\n    return '|'.join(rows)\n")
    shutil.rmtree(clone / "results")
    assert run(clone) == ["table"]
