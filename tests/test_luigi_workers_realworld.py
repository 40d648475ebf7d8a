"""Migrated Luigi pipelines run the way production runs them: the `luigi` command with forked workers
(`--workers 3`), interrupted and run again. Each test uses the real CLI in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO

LUIGI = str(Path(sys.executable).with_name("luigi"))

PIPELINE = '''
import os, time
import luigi
from luigi_nixworkflow import NixTask


class Source(luigi.Task):
    def output(self):
        return luigi.LocalTarget("source.txt")


class Part(NixTask):
    """Legacy shape: writes results/part<i>.txt in place (directly, not through a temporary file)."""
    i = luigi.IntParameter()

    def requires(self):
        return Source()

    def output(self):
        return luigi.LocalTarget(f"results/part{self.i}.txt")

    def run(self):
        os.makedirs("results", exist_ok=True)
        with open(self.output().path, "w") as f:
            f.write(f"{self.i}:{open(self.input().path).read()}")
            f.flush()
            if os.environ.get("NW_TEST_HANG"):
                open(f"started{self.i}", "w").close()
                time.sleep(60)


class Merge(NixTask):
    """Reads every file of the results directory, as pipelines that list a directory do."""

    def requires(self):
        return [Part(i) for i in range(2)]

    def output(self):
        return luigi.LocalTarget("merged.txt")

    def run(self):
        with self.output().open("w") as out:
            for name in sorted(os.listdir("results")):
                out.write(open(os.path.join("results", name)).read())
'''


def luigi_cmd(*args: str) -> list[str]:
    return [LUIGI, "--module", "pipeline", "Merge", "--workers", "3", "--local-scheduler", "--no-lock",
            "--retcode-task-failed", "3", *args]


def test_sigterm_mid_run_then_rerun_leaves_no_stale_file_for_readers(tmp_path: Path) -> None:
    """A legacy run moves the previous result aside before run() writes; SIGTERM of the process group kills the
    workers without `finally`, and the moved-aside old result used to stay in results/ forever. The re-run then
    listed the directory, merged the stale old part into its output and stored that as a success."""
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    Path("source.txt").write_text("v1\n")
    first = subprocess.run(luigi_cmd(), env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert Path("merged.txt").read_text() == "0:v1\n1:v1\n"

    Path("source.txt").write_text("v2\n")  # both parts must run again
    hung = subprocess.Popen(luigi_cmd(), env=dict(env, NW_TEST_HANG="1"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (Path("started0").exists() and Path("started1").exists()):
            assert hung.poll() is None and time.monotonic() < deadline, "the parts never started"
            time.sleep(0.05)
    finally:
        os.killpg(hung.pid, signal.SIGTERM)
        hung.wait(20)

    again = subprocess.run(luigi_cmd(), env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert Path("merged.txt").read_text() == "0:v2\n1:v2\n"
    assert sorted(os.listdir("results")) == ["part0.txt", "part1.txt"]
    third = subprocess.run(luigi_cmd(), env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and "Did not run any tasks" in third.stdout + third.stderr
