"""Probe of Luigi's own offline examples (hello_world, foo_complex, execution_summary_example,
per_task_retry_policy, …) migrated by changing base classes only. The pipelines here are small ones
written for these tests, in the shapes those examples use: a run() that yields a task that fails
(per_task_retry_policy's DynamicErrorTaskSubmitter), and a task that fails and then succeeds on a retry.
What `nw show` and `nw view` report for them must be what Luigi did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nixlib.store import Store
from nixlib.view.data import ViewData
from tests.helpers import REPO
from tests.test_luigi_processes import LUIGI, STRICT

NW = str(Path(sys.executable).with_name("nw"))

PIPELINE = '''
import os

import luigi

from luigi_nixworkflow import NixTask


class Broken(NixTask):
    def output(self):
        return luigi.LocalTarget("out/broken.txt")

    def run(self):
        raise RuntimeError("broken on purpose")


class Waiter(NixTask):
    """Yields a task that always fails: Luigi leaves it pending, it never fails itself."""

    def output(self):
        return luigi.LocalTarget("out/waiter.txt")

    def run(self):
        yield Broken()
        with self.output().open("w") as f:
            f.write("never\\n")


class Flaky(NixTask):
    """Fails on its first attempt, succeeds on Luigi's retry (the same instance: one worker)."""

    retry_count = 3
    attempts = 0

    def output(self):
        return luigi.LocalTarget("out/flaky.txt")

    def run(self):
        self.attempts += 1
        if self.attempts == 1:
            raise RuntimeError("first attempt fails")
        with self.output().open("w") as f:
            f.write("attempt %d\\n" % self.attempts)


class Collect(NixTask):
    def output(self):
        return luigi.LocalTarget("out/collect.txt")

    def run(self):
        flaky = yield Flaky()
        with self.output().open("w") as f:
            f.write("got " + flaky.open().read())
'''


def luigi(task: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=f"{Path.cwd()}{os.pathsep}{REPO}")
    return subprocess.run([LUIGI, "--module", "probepipe", task, "--local-scheduler", *STRICT, *args], env=env,
                          text=True, capture_output=True, timeout=120)


def show(step: str) -> str:
    proc = subprocess.run([NW, "show", step], text=True, capture_output=True, timeout=60)
    return proc.stdout + proc.stderr


def test_a_task_waiting_for_a_yielded_task_that_failed_is_not_reported_as_failed(store_root: Path) -> None:
    Path("probepipe.py").write_text(PIPELINE)
    proc = luigi("Waiter")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 6, out  # as plain Luigi: Waiter is left pending, "missing" what it yielded
    summary = out.split("===== Luigi Execution Summary =====")[1]
    failed = summary.split("* 1 failed:")[1].split("\n*")[0]
    assert "Broken()" in failed and "Waiter()" not in failed, summary  # Luigi: Waiter was left pending
    assert not Path("out/waiter.txt").exists()

    broken = show("Broken")
    assert "failed" in broken and "broken on purpose" in broken, broken
    waiter = show("Waiter")
    assert "status:" in waiter and "failed" not in waiter, waiter  # it never failed: it waited for Broken
    assert "Broken__" in waiter, waiter  # and says what it waited for


def test_a_task_that_succeeded_on_a_retry_shows_no_error_in_nw_view(store_root: Path) -> None:
    Path("probepipe.py").write_text(PIPELINE)
    proc = luigi("Collect", "--worker-keep-alive", "--scheduler-retry-delay", "0.2", "--worker-wait-interval", "0.1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "first attempt fails" in out, out
    assert Path("out/collect.txt").read_text() == "got attempt 2\n"

    view = ViewData(Store(store_root), Path.cwd())
    run = next(r for r in view.runs() if r["label"] == "luigi")
    nodes = {n["name"].split("__")[0]: n for n in view.run(run["id"])["nodes"]}
    assert nodes["Flaky"]["status"] == "done" and "error" not in nodes["Flaky"], nodes["Flaky"]
    assert nodes["Collect"]["status"] == "done" and "error" not in nodes["Collect"], nodes["Collect"]
