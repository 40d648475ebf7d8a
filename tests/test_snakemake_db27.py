"""Snakemake's database metadata backend (`--persistence-backend db`) and Ctrl-C with the executor.

Two gaps closed by smkdb27 (the Ctrl-C one is tested deterministically in tests/test_crash28.py):
- with the db backend, the metadata record of a job restored before scheduling started when a past run started
  (a runtime of hours) or, with no previous record, after its end (a negative runtime in `--report`): the start
  time fix for Snakemake's file backend (`internals.write_record`) did not reach Snakemake's own `finished`;
- Ctrl-C while jobs were being restored from the store before scheduling: a traceback (`ValueError: too many
  values to unpack`) instead of the executor's one-paragraph message, and the outputs of jobs whose copies were
  done but whose metadata record was not yet written stayed in place, taken for up to date with no record.
The rest pins what matched the local executor: re-runs, `--summary`, `--detailed-summary`, `--list-changes`,
`--report`, `--drop-metadata` with the db backend."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import write

pytest.importorskip("snakemake")
pytest.importorskip("sqlalchemy")

pytestmark = pytest.mark.slow

DB = ("--persistence-backend", "db")

CHAIN = {
    "Snakefile": '''
rule all:
    input: "out/c.txt"
rule a:
    output: "out/a.txt"
    params: p=1
    shell: 'echo a >> "$NW_TEST_LOG"; echo A > {output}'
rule b:
    input: "out/a.txt"
    output: "out/b.txt"
    shell: 'echo b >> "$NW_TEST_LOG"; cat {input} > {output}; echo B >> {output}'
rule c:
    input: "out/b.txt"
    output: "out/c.txt"
    shell: 'echo c >> "$NW_TEST_LOG"; cat {input} > {output}; echo C >> {output}'
''',
}


def records(where: Path) -> dict[str, dict]:
    """Snakemake's metadata records in `.snakemake/metadata.db`, by output path (stubs of incomplete markers
    left out)."""
    with sqlite3.connect(where / ".snakemake/metadata.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM snakemake_metadata WHERE record_format_version > 0").fetchall()
    return {row["target"]: dict(row) for row in rows}


def drop_records(where: Path) -> None:
    with sqlite3.connect(where / ".snakemake/metadata.db") as db:
        db.execute("DELETE FROM snakemake_metadata")


def outputs(where: Path) -> dict[str, str]:
    return {str(p.relative_to(where)): p.read_text() for p in sorted((where / "out").rglob("*")) if p.is_file()}


def wipe(where: Path) -> None:
    for p in sorted((where / "out").rglob("*"), reverse=True):
        p.unlink() if not p.is_dir() else p.rmdir()


def restore(where: Path, dropped: bool) -> None:
    """Delete the outputs (and with `dropped` the records), restore them all, and check each new record."""
    first = records(where)
    wipe(where)
    if dropped:
        drop_records(where)
    began = time.time()
    proc = ok(snakemake(where, *DB))
    assert "3 job(s) restored from the store before scheduling" in proc.stderr
    for target, record in records(where).items():
        assert began <= record["starttime"] <= record["endtime"], (dropped, target, record)
        assert record["incomplete"] == 0 and record["rule"] == target[4]
        assert record["code"] == first[target]["code"] and record["params"] == first[target]["params"]
        assert record["input_checksums"] == first[target]["input_checksums"]


def test_db_backend_records_restored_jobs_from_when_their_restore_began(tmp_path: Path, log: Path) -> None:
    """With `--persistence-backend db`, outputs deleted then restored, first with the first run's records still
    there, then with none: each restored job's record names its rule, code, params and input checksums as the
    run's did, and starts when this run restored it and not after its end (before the fix: the first run's
    start, then a start after the end, a negative runtime)."""
    where = write(tmp_path / "wf", CHAIN)
    ok(snakemake(where, *DB))
    restore(where, dropped=False)
    restore(where, dropped=True)
    assert executions(log) == Counter({"a": 1, "b": 1, "c": 1})
    assert outputs(where) == {"out/a.txt": "A\n", "out/b.txt": "A\nB\n", "out/c.txt": "A\nB\nC\n"}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_db_backend_reads_restored_jobs_records_as_the_local_executors(tmp_path: Path, log: Path) -> None:
    """After a restore with the db backend Snakemake has nothing to do (default and mtime triggers), and
    `--detailed-summary`, `--list-changes`, `--report` and `--drop-metadata` behave as with the local executor."""
    where = write(tmp_path / "wf", CHAIN)
    ok(snakemake(where, *DB))
    first = records(where)
    restore(where, dropped=True)
    for triggers in ((), ("--rerun-triggers", "mtime")):
        assert "Nothing to be done" in ok(snakemake(where, *DB, *triggers)).stderr
    summary = ok(snakemake(where, *DB, "--detailed-summary")).stdout
    assert "out/c.txt" in summary and "\tc\t\tout/b.txt\t" in summary and "no update" in summary
    for kind in ("code", "input"):
        assert ok(snakemake(where, *DB, "--list-changes", kind)).stdout.strip() == ""
    ok(snakemake(where, *DB, "--report", str(tmp_path / "report.html")))
    assert '"runtime": -' not in (tmp_path / "report.html").read_text()
    (where / "Snakefile").write_text(CHAIN["Snakefile"].replace("p=1", "p=2"))
    ok(snakemake(where, *DB, "--drop-metadata"))  # a runs (new params), b and c are restored
    assert executions(log) == Counter({"a": 2, "b": 1, "c": 1})
    assert records(where)["out/a.txt"]["params"] == first["out/a.txt"]["params"]  # not updated, as locally
