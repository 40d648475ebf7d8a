"""Two windows that earlier tests could hit only by chance, made deterministic with nixlib.faults pause points.

- Ctrl-C while `snakemake --executor nixworkflow` restores cached jobs before scheduling, landing exactly between a
  job's outputs being in place and Snakemake's metadata record of it (`restore-settled`, an awaited point: asyncio's
  SIGINT handler cancels the restoring task, which raises at its next real suspension). Before smkdb27's fix the
  outputs of jobs copied back but not yet recorded stayed, taken for up to date with no record, and with jobs
  pending in the copying helper the interrupt was a `ValueError` traceback.
- `nw verify --repair` beside a step publishing a checkpoint, paused between the checkpoint's origins entry and its
  record: before the fix that record was written under the step's lock only, not the checkpoint key's, so verify
  took the fresh entry for a stale one and removed it.

Each pause notes itself in a file (NIX_WORKFLOW_PAUSED), which the test waits for and removes to end it.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import REPO, nw
from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import write

pytestmark = pytest.mark.slow

PAUSE = "60"  # seconds: far longer than the test needs (its Ctrl-C ends the pause)


def paused(proc: subprocess.Popen[str], note: Path, point: str, timeout: float = 120) -> None:
    """Wait until `proc` has reached its pause at `point` (nixlib.faults notes it in `note`)."""
    deadline = time.monotonic() + timeout
    while not (note.exists() and point in note.read_text().split()):
        assert proc.poll() is None, f"{point}: the process ended first:\n{proc.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, f"{point}: not reached in {timeout} s"
        time.sleep(0.01)


# ---- 1. Ctrl-C between a restored job's outputs and its metadata record ------------------------------------------


def fan(jobs: int) -> dict[str, str]:
    return {"Snakefile": f'''
rule all:
    input: expand("out/f/{{i}}.txt", i=range({jobs}))
rule f:
    output: "out/f/{{i}}.txt"
    shell: 'echo f >> "$NW_TEST_LOG"; echo {{wildcards.i}} > {{output}}'
'''}


def outputs(where: Path) -> dict[str, str]:
    return {str(p.relative_to(where)): p.read_text() for p in sorted((where / "out").rglob("*")) if p.is_file()}


def file_records(where: Path) -> set[str]:
    """The outputs Snakemake's file backend holds a metadata record of (each named by its path in base64)."""
    folder = where / ".snakemake/metadata"
    return {base64.urlsafe_b64decode(p.name).decode() for p in folder.iterdir()} if folder.exists() else set()


def wipe(where: Path) -> None:
    for p in sorted([*(where / "out").rglob("*"), *(where / ".snakemake/metadata").rglob("*")], reverse=True):
        p.unlink() if not p.is_dir() else p.rmdir()


@pytest.mark.parametrize("jobs", [pytest.param(5, id="in-process"), pytest.param(60, id="helper")])
def test_ctrl_c_between_a_restored_jobs_outputs_and_its_record_leaves_only_recorded_outputs(
        tmp_path: Path, log: Path, jobs: int) -> None:
    """SIGINT to Snakemake while its restoring pass is paused after the first restored job's outputs are in place
    and before its metadata record (5 jobs copied in-process, or 60, copied by the helper process, more of them
    pending): one paragraph, no traceback, a non-zero exit; every output left has its record (before: the paused
    job's output stayed with none, so Snakemake took it for up to date and would never re-run it for a code
    change; with jobs pending in the helper, a `ValueError` traceback too); the next run restores exactly the
    rest, nothing runs again, and the files are those of the first run."""
    pytest.importorskip("snakemake")
    where = write(tmp_path / "wf", fan(jobs))
    ok(snakemake(where))
    whole = outputs(where)
    assert len(whole) == jobs and executions(log) == Counter({"f": jobs})
    wipe(where)
    argv = [sys.executable, "-m", "snakemake", "-c", "2", "--nocolor", "--executor", "nixworkflow"]
    note = tmp_path / "paused"
    env = dict(os.environ, PYTHONPATH=str(REPO), NIX_WORKFLOW_PAUSE=f"restore-settled:{PAUSE}",
               NIX_WORKFLOW_PAUSED=str(note))
    proc = subprocess.Popen(argv, cwd=where, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        paused(proc, note, "restore-settled")
        assert outputs(where) and not file_records(where)  # the window: an output in place, no record yet
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, out[-3000:]
    assert "Traceback" not in out and "nixworkflow: interrupted while restoring cached jobs" in out, out[-3000:]
    left = outputs(where)
    assert set(left) <= file_records(where), sorted(set(left) - file_records(where))[:5]
    assert len(left) < jobs and all(whole[name] == text for name, text in left.items())
    again = ok(snakemake(where))
    assert f"{jobs - len(left)} job(s) restored from the store before scheduling" in again.stderr, again.stderr
    assert outputs(where) == whole and file_records(where) == set(whole)
    assert executions(log) == Counter({"f": jobs})
    assert "Nothing to be done" in ok(snakemake(where)).stderr


# ---- 2. `nw verify --repair` beside a checkpoint between its origins entry and its record ------------------------

PUBLISHING = ('from nixlib import output\n'
              'train = output("mkdir $NW_CHECKPOINTS/epoch-1.tmp; echo one > $NW_CHECKPOINTS/epoch-1.tmp/w; '
              'mv $NW_CHECKPOINTS/epoch-1.tmp $NW_CHECKPOINTS/epoch-1; echo final > $out/model", '
              'name="train", checkpoints=True)\n')


def release(proc: subprocess.Popen[str], note: Path) -> str:
    """End every pause of `proc` (each notes itself in `note` again) until it exits; its output."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        note.unlink(missing_ok=True)
        time.sleep(0.01)
    return proc.communicate(timeout=60)[0]


def test_verify_repair_beside_a_checkpoint_between_its_origins_entry_and_its_record_keeps_the_entry(
        tmp_path: Path, store_root: Path) -> None:
    """A step publishing a checkpoint, paused between the checkpoint's origins entry and its record: `nw verify
    --repair` must see the entry as one being written (before: the record is written under the step's lock, not
    the checkpoint key's, so verify called the entry stale and removed it, and once the record was written verify
    reported it "missing index entry" until `nw gc` re-indexed it)."""
    warm = tmp_path / "warm"  # verify refuses a store that does not exist yet
    warm.mkdir()
    (warm / "experiment.py").write_text('from nixlib import output\nwarm = output("echo warm > $out/v")\n')
    nw("run", "experiment.py", cwd=warm, check=True)
    (tmp_path / "experiment.py").write_text(PUBLISHING)
    before = set((store_root / "origins").glob("*/*"))
    note = tmp_path / "paused"
    env = dict(os.environ, PYTHONPATH=str(REPO), NIX_WORKFLOW_PAUSE="origins-indexed:60",
               NIX_WORKFLOW_PAUSED=str(note))
    run = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", "experiment.py"], cwd=tmp_path, env=env,
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        paused(run, note, "origins-indexed")
        [entry] = set((store_root / "origins").glob("*/*")) - before  # the checkpoint's: the step is still running
        assert not list((store_root / "realisations").glob(f"{entry.name}*"))
        v = nw("verify", "--repair")
        assert run.poll() is None and note.exists(), "the run's pause ended before verify finished"
        assert v.returncode == 0 and "stale" not in v.stdout + v.stderr, v.stdout + v.stderr
        assert entry.exists()
    finally:
        out = release(run, note)
    assert run.returncode == 0, out
    listed = nw("checkpoints", "train", "--file", "experiment.py", cwd=tmp_path, check=True).stdout
    assert listed.startswith("epoch-1\t"), listed
    after = nw("verify")
    assert after.returncode == 0 and "0 problem(s)" in after.stderr, after.stdout + after.stderr
    assert "missing index entry" not in after.stdout + after.stderr and entry.exists()
