"""nixworkflow's own errors in Luigi's log are one paragraph (luigi_nixworkflow/failures.py).

Before, a NixTask whose command failed logged a 30-line traceback of the adapter and the engine around the message
that already named the exit status and the kept log, and a bad luigi.cfg [nixworkflow] remote printed a traceback
for every task's complete(). Errors in a task's own Python code keep Luigi's traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import luigi
import luigi.worker
import pytest

from luigi_nixworkflow import NixTask, failures
from nixlib.errors import NixWorkflowError, StepFailed

REPO = Path(__file__).resolve().parent.parent

PIPELINE = '''
import luigi
from luigi_nixworkflow import NixTask

class Bad(NixTask):
    def command(self):
        return "echo oops >&2; exit 3"

class Own(NixTask):
    def output(self):
        return luigi.LocalTarget("own.txt")

    def run(self):
        raise ValueError("boom in the task's own code")

class Fine(NixTask):
    x = luigi.IntParameter()

    def command(self):
        return f"echo {self.x} > $out/x"
'''


def luigi_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    env = dict(os.environ, PYTHONPATH=f"{REPO}:{tmp_path}")
    return subprocess.run([sys.executable, "-m", "luigi", "--module", "pipeline", *args, "--local-scheduler"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_a_failed_command_is_one_line_naming_its_status_and_log(tmp_path: Path) -> None:
    out = luigi_cli(tmp_path, "Bad")
    log = out.stdout + out.stderr
    assert "failed    Bad(): step 'Bad__99914b932b' failed: command exited with status 3. Its log is kept" in log, log
    assert "Traceback" not in log, log
    assert "1 failed:" in log


def test_an_error_in_the_tasks_own_run_keeps_lugis_traceback(tmp_path: Path) -> None:
    out = luigi_cli(tmp_path, "Own")
    log = out.stdout + out.stderr
    assert "Traceback (most recent call last):" in log and "ValueError: boom in the task's own code" in log, log


@pytest.mark.parametrize("parallel", [False, True])
def test_a_bad_remote_in_luigi_cfg_is_one_paragraph_not_a_traceback(tmp_path: Path, parallel: bool) -> None:
    (tmp_path / "luigi.cfg").write_text("[nixworkflow]\nremote = ftp://nowhere/cache\n")
    out = luigi_cli(tmp_path, "Fine", "--x", "1", *(["--parallel-scheduling", "--workers", "2"] if parallel else []))
    log = out.stdout + out.stderr
    assert ("Will not run Fine(x=1) or any dependencies due to an error in complete(): remote 'ftp://nowhere/cache': "
            "unknown kind of URL") in log, log
    assert "Traceback" not in log, log
    assert "1 failed scheduling" in log


def test_the_scheduler_is_told_the_message_not_the_stack(store_root: Path) -> None:
    class Broken(NixTask):
        def command(self) -> str:
            return "exit 7"

    result = luigi.build([Broken()], local_scheduler=True, detailed_summary=True)
    assert not result.scheduling_succeeded or result.status.name != "SUCCESS"
    error = json.loads(result.worker._scheduler.fetch_error(Broken().task_id)["error"])  # (Luigi JSON-encodes it)
    assert error.startswith("nixworkflow: step 'Broken__99914b932b' failed: command exited with status 7"), error
    assert "Traceback" not in error


def test_message_of_reads_only_a_last_exception_of_ours() -> None:
    ours = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    raise E\n"
            "nixlib.errors.StepFailed: step 'a' failed: it wrote nothing.\nsecond line of the message\n")
    assert failures.message_of(ours) == "step 'a' failed: it wrote nothing.\nsecond line of the message"
    chained = (ours + "\nDuring handling of the above exception, another exception occurred:\n\n"
               "Traceback (most recent call last):\n  File \"y.py\", line 2, in g\nKeyError: 'k'\n")
    assert failures.message_of(chained) is None  # the last exception is not ours: Luigi's traceback stays
    assert failures.message_of("Traceback (most recent call last):\nValueError: nixlib.errors.NixWorkflowError: x\n") \
        is None
    assert failures.explain(StepFailed("s", "it wrote nothing")) == "nixworkflow: step 's' failed: it wrote nothing."
    assert failures.explain(ValueError("v")) is None
    assert issubclass(StepFailed, NixWorkflowError)


def test_lugis_hooks_are_wrapped_once() -> None:
    """The Luigi internals failures.py wraps (a Luigi upgrade that renames them shows here)."""
    assert luigi.worker.TaskProcess._handle_run_exception._nw_wrapper
    assert luigi.worker.Worker._log_complete_error._nw_wrapper
    assert luigi.worker.Worker._log_dependency_error._nw_wrapper
    before = luigi.worker.TaskProcess._handle_run_exception
    failures.install()
    assert luigi.worker.TaskProcess._handle_run_exception is before
