"""Probe 24: Ctrl-C under `snakemake --executor nixworkflow` while a job runs, through the real snakemake CLI.

The bug (these tests failed before the fix): Snakemake said "Terminating processes on user request", but a running
job was not stopped when the SIGINT reached Snakemake alone (`kill -INT`, a process manager), or when the job
ignores SIGINT (a terminal's Ctrl-C reaches the job's processes too): it ran to its end, was
stored in the content-addressed store as a success, and the next run restored it instead of running it. Now the
executor's cancel kills every process of the run's jobs (by the run's marker: grandchildren included), nothing of a
cancelled job is stored, and the next run runs it and stores it normally."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.test_snakemake import executions
from tests.test_snakemake_semantics import write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

# The job starts a grandchild (a bash named by a unique marker) that ignores SIGINT, as a program that catches Ctrl-C
# to finish its work does: a terminal's Ctrl-C alone does not stop it. It sleeps, then writes the output; its pid
# goes to `tree.pid` as soon as it runs.
SNAKEFILE = '''
rule all:
    input: "out/a.txt"
rule a:
    output: "out/a.txt"
    shell: "bash -c 'trap \\"\\" INT; echo $$ > tree.pid; sleep 6; echo x > {output}' MARK; echo a >> $NW_TEST_LOG"
'''


def start(where: Path) -> subprocess.Popen[str]:
    """The real snakemake CLI in a session of its own (its process group, as a terminal's foreground job)."""
    argv = [sys.executable, "-m", "snakemake", "-c", "1", "--nocolor", "--executor", "nixworkflow"]
    return subprocess.Popen(argv, cwd=where, env=dict(os.environ, PYTHONPATH=str(REPO)), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def marked(marker: str) -> list[int]:
    """Live processes whose command line carries `marker` (the job's grandchild)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    out.append(int(pid))
        except OSError:
            continue
    return out


def wait_for(check: object, what: str, deadline: float = 60.0) -> None:
    """Poll `check()` until true; fail naming `what` after a generous deadline (no timing is asserted)."""
    end = time.monotonic() + deadline
    while not check():  # type: ignore[operator]
        assert time.monotonic() < end, f"gave up waiting: {what}"
        time.sleep(0.1)


def stored_files(store: Path, *dirs: str) -> list[str]:
    return sorted(str(p.relative_to(store)) for d in dirs if (store / d).exists()
                  for p in (store / d).rglob("*") if p.is_file())


@pytest.mark.parametrize("how", ["group", "process"])
def test_ctrl_c_stops_a_running_job_stores_nothing_of_it_and_the_next_run_runs_it(
        tmp_path: Path, log: Path, how: str, reap: list[subprocess.Popen[str]]) -> None:
    store = Path(os.environ["NIX_WORKFLOW_STORE"])
    marker = f"p24-{uuid.uuid4().hex}"
    where = write(tmp_path / "wf", {"Snakefile": SNAKEFILE.replace("MARK", marker)})
    proc = start(where)
    reap.append(proc)
    wait_for(lambda: (where / "tree.pid").exists() and marked(marker), "the job's grandchild to start")
    if how == "group":  # Ctrl-C in a terminal: SIGINT to the whole foreground process group
        os.killpg(proc.pid, signal.SIGINT)
    else:  # SIGINT to Snakemake alone (kill -INT PID)
        os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out
    assert "Terminating processes on user request" in out
    wait_for(lambda: not marked(marker), "the cancelled job's processes to end", deadline=30)
    assert "Traceback" not in out
    assert not (where / "out" / "a.txt").exists(), out  # it never finished, and nothing late writes it
    assert executions(log)["a"] == 0
    assert stored_files(store, "realisations") == [], out
    assert stored_files(store, "tmp") == []  # its scratch directory was removed
    # The next run runs it (nothing was stored to restore), then stores it as usual.
    (where / "tree.pid").unlink()
    again = start(where)
    reap.append(again)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert executions(log)["a"] == 1, out
    assert (where / "out" / "a.txt").read_text() == "x\n"
    assert len(stored_files(store, "realisations")) == 1, out


def test_a_running_jobs_store_log_shows_its_command_while_it_runs(
        tmp_path: Path, log: Path, reap: list[subprocess.Popen[str]]) -> None:
    """`nw view` and `nw log` read a job's `logs/<key>.log`: it was written only once the job had ended, so the
    view's log panel said "(no log found)" for a running Snakemake job. Now it names the running command (and
    where its output goes) from the start, and says how it ended."""
    store = Path(os.environ["NIX_WORKFLOW_STORE"])
    marker = f"p24-{uuid.uuid4().hex}"
    where = write(tmp_path / "wf", {"Snakefile": SNAKEFILE.replace("MARK", marker).replace(
        'output: "out/a.txt"', 'output: "out/a.txt"\n    log: "logs/a.log"')})
    proc = start(where)
    reap.append(proc)
    wait_for(lambda: (where / "tree.pid").exists() and marked(marker), "the job's grandchild to start")
    logs = stored_files(store, "logs")
    assert len(logs) == 1, logs  # while the job runs
    text = (store / logs[0]).read_text()
    assert "rule a" in text and marker in text and "logs/a.log" in text, text
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert (store / logs[0]).read_text().startswith(text)
    assert "ended: its command succeeded" in (store / logs[0]).read_text()
    assert len(stored_files(store, "realisations")) == 1


def test_sigterm_is_snakemakes_graceful_stop_the_running_job_finishes_and_is_stored(
        tmp_path: Path, log: Path, reap: list[subprocess.Popen[str]]) -> None:
    """SIGTERM is not Ctrl-C: Snakemake (with its local executor too) starts no new job and lets the running ones
    finish. Such a job ended successfully, so it is stored, and the next run restores it instead of running it."""
    store = Path(os.environ["NIX_WORKFLOW_STORE"])
    marker = f"p24-{uuid.uuid4().hex}"
    where = write(tmp_path / "wf", {"Snakefile": SNAKEFILE.replace("MARK", marker)})
    proc = start(where)
    reap.append(proc)
    wait_for(lambda: (where / "tree.pid").exists() and marked(marker), "the job's grandchild to start")
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert "Will exit after finishing currently running jobs" in out, out
    assert proc.returncode != 0, out  # (Snakemake's own verdict on a stopped run, as with the local executor)
    assert executions(log)["a"] == 1
    assert (where / "out" / "a.txt").read_text() == "x\n"
    assert len(stored_files(store, "realisations")) == 1, out
    (where / "out" / "a.txt").unlink()
    again = start(where)
    reap.append(again)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert executions(log)["a"] == 1, out  # restored, not run
    assert (where / "out" / "a.txt").read_text() == "x\n"
