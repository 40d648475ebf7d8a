"""Snakemake's metadata records of restored jobs (internals.write_record), through the real CLI.

A job restored before scheduling gets its `.snakemake/metadata` record from `internals.write_record`, which
stands in for Snakemake's `Persistence.finished` (the same record, written with less work). These tests pin
that the records are the ones Snakemake writes for the same jobs when it runs them itself, field for field
(times aside), with and without a previous record to merge into, so a Snakemake release that changes its
record fails here by name.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.test_snakemake import ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

SNAKEFILE = '''
rule all:
    input: "out/a.txt", "out/b.txt", "out/c1.txt", "tree"

rule a:
    input: "in.txt"
    output: "out/a.txt"
    log: "logs/a.log"
    params: word="hello", n=3
    shell: "(cat {input}; echo {params.word} {params.n}) > {output}; echo done > {log}"

rule b:
    input: "out/a.txt"
    output: "out/b.txt"
    shell: "cat {input} {input} > {output}"

rule c:
    input: "out/b.txt"
    output: "out/c1.txt", "out/c2.txt"
    shell: "cp {input} {output[0]}; echo two > {output[1]}"

rule tree:
    output: directory("tree")
    shell: "mkdir -p {output}/x && echo t > {output}/x/f"
'''

TIMES = ("starttime", "endtime")  # and job_hash, Python's hash of the job object: differs between any two runs


def records(wf: Path) -> dict[str, dict]:
    """Output path -> its metadata record, times removed (they differ between any two runs)."""
    out = {}
    for path in (wf / ".snakemake" / "metadata").iterdir():
        record = json.loads(path.read_text())
        for key in TIMES:
            assert isinstance(record.pop(key), float), f"{key} of {path.name}"
        assert isinstance(record.pop("job_hash"), int)
        out[base64.urlsafe_b64decode(path.name).decode()] = record
    return out


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    where = write(tmp_path / "wf", {"Snakefile": SNAKEFILE, "in.txt": "input\n"})
    ok(snakemake(where))  # the scheduler runs every job: Snakemake's own records
    return where


def test_records_of_restored_jobs_are_snakemakes_own(wf: Path) -> None:
    expected = records(wf)
    assert set(expected) == {"out/a.txt", "out/b.txt", "out/c1.txt", "out/c2.txt", "tree"}
    assert expected["out/b.txt"]["input_checksums"], "small inputs are checksummed: the case is covered"
    wipe(wf, "out", "logs", "tree")
    proc = ok(snakemake(wf))
    assert "4 job(s) restored from the store before scheduling" in proc.stderr
    assert records(wf) == expected
    again = ok(snakemake(wf, nixworkflow=False))
    assert "Nothing to be done" in again.stdout + again.stderr


def test_records_are_merged_into_previous_ones_as_snakemake_does(wf: Path) -> None:
    """Outputs deleted but `.snakemake/` kept: each previous record is updated in place, as by Snakemake."""
    expected = records(wf)
    path = wf / ".snakemake" / "metadata" / base64.urlsafe_b64encode(b"out/b.txt").decode()
    kept = json.loads(path.read_text())
    kept["external_jobid"] = "slurm-42"  # a field Snakemake keeps from the previous record
    path.write_text(json.dumps(kept))
    wipe(wf, "out", "logs", "tree")
    (wf / ".snakemake").mkdir()  # wipe removed it; put the records back
    for name, record in expected.items():
        if name == "out/b.txt":
            record = {**record, "external_jobid": "slurm-42"}
        target = wf / ".snakemake" / "metadata" / base64.urlsafe_b64encode(name.encode()).decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({**record, "starttime": 1.0, "endtime": 2.0, "job_hash": 3}))
    ok(snakemake(wf))
    got = records(wf)
    assert got["out/b.txt"]["external_jobid"] == "slurm-42"
    assert got == {**expected, "out/b.txt": {**expected["out/b.txt"], "external_jobid": "slurm-42"}}


def test_a_fresh_record_has_snakemakes_fields_in_its_order() -> None:
    """internals.RECORD_DEFAULTS is what a new MetadataRecord dumps to (a new field fails here)."""
    from snakemake.persistence import MetadataRecord

    from snakemake_executor_nixworkflow.internals import RECORD_DEFAULTS

    fresh = dict(MetadataRecord().items())
    assert list(fresh) == list(RECORD_DEFAULTS) and fresh == RECORD_DEFAULTS


def test_lean_records_only_for_snakemakes_file_backend() -> None:
    """write_record writes `.snakemake/metadata` files: it must never stand in for another backend."""
    from snakemake.persistence.file import FilePersistence

    from snakemake_executor_nixworkflow import internals

    class Settings:
        keep_metadata = True

    class Workflow:
        persistence = object.__new__(FilePersistence)
        exec_mode = None
        execution_settings = Settings()

    from snakemake_interface_executor_plugins.settings import ExecMode

    Workflow.exec_mode = ExecMode.DEFAULT
    assert internals.lean_records(Workflow())
    Workflow.persistence = object()
    assert not internals.lean_records(Workflow())
    Workflow.persistence = object.__new__(FilePersistence)
    Settings.keep_metadata = False
    assert not internals.lean_records(Workflow())
