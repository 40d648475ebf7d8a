"""What the Luigi probe tests share: a build as a script runs it, the `luigi` command, and a log of which task
bodies ran."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import luigi
from luigi.task_register import Register

import luigi_nixworkflow
from tests.helpers import REPO

LUIGI = str(Path(sys.executable).with_name("luigi"))


def build(*tasks: luigi.Task, ok: bool = True, afresh: bool = True) -> str:
    """luigi.build as a script calls it, asserting success (or failure, `ok=False`); its summary. `afresh=False`
    keeps Luigi's instance cache, as a notebook's second build does."""
    if afresh:
        Register.clear_instance_cache()
        luigi_nixworkflow.reset()
    result = luigi.build(list(tasks), local_scheduler=True, detailed_summary=True, log_level="WARNING")
    assert (result.status == luigi.execution_summary.LuigiStatusCode.SUCCESS) is ok, result.summary_text
    return result.summary_text


def luigi_cli(*args: str, ok: bool = True) -> str:
    """`luigi --module ... --local-scheduler` in the working directory (which is on PYTHONPATH); its output.
    A new process each time, as a user's next run is (code digests are memoised per process)."""
    env = dict(os.environ, PYTHONPATH=f"{Path.cwd()}{os.pathsep}{REPO}")
    # (--no-lock: Luigi refuses to start while a process with the same command line runs, "Pid(s) … already running",
    # and tests side by side under pytest -n may share one)
    proc = subprocess.run([LUIGI, *args, "--local-scheduler", "--no-lock"], env=env, text=True, capture_output=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert ("This progress looks :)" in out) is ok, out[-3000:]
    return out


def note(name: str) -> None:
    """Called by a task's body: counts its executions (runs.log in the test's working directory)."""
    with open("runs.log", "a") as f:
        f.write(name + "\n")


def runs() -> Counter[str]:
    path = Path("runs.log")
    return Counter(path.read_text().split()) if path.exists() else Counter()
