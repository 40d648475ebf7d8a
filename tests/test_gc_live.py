"""`nw gc --min-age 0` in a loop beside running pipelines of all three front doors (issue 9, item 4).

Each pipeline has a step that uses a cached upstream output which nothing but the running process keeps:
its output links are removed (nw run, Luigi) or never existed (Snakemake), and gc runs with --min-age 0
so recency protects nothing either. The step waits (a GO file) until gc has run at least twice after
that, then reads the cached output. Before temp roots, gc deleted it and the step failed; now the
running process's temp roots keep it, every gc succeeds and the results are correct. Executions are
counted from a side file appended by each command (outside the store).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, nw

NUMBERS = "1\n2\n3\n4\n5\n"


class GcLoop:
    """`nw gc --min-age 0` run again and again in a thread until stopped; every run must succeed."""

    def __init__(self) -> None:
        self.completed = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> GcLoop:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            proc = nw("gc", "--min-age", "0")
            if proc.returncode != 0 or "Traceback" in proc.stderr:
                self.failures.append(proc.stderr)
            self.completed += 1

    def wait_for(self, more: int, timeout: float = 60) -> None:
        """Return once `more` further collections have completed from now."""
        target = self.completed + more + 1  # the one under way may have planned before the caller's change
        deadline = time.monotonic() + timeout
        while self.completed < target:
            assert time.monotonic() < deadline, "nw gc did not complete in time"
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self.failures, self.failures[0]


@pytest.fixture
def gc_loop() -> Iterator[GcLoop]:
    loop = GcLoop()
    try:
        yield loop
    finally:  # never leave a collector running into the next test (it would use that test's store)
        loop._stop.set()
        if loop._thread.is_alive():
            loop._thread.join(60)


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the pipeline ended before {path.name}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def gated(started: Path, go: Path) -> str:
    """Shell that signals it started, then waits for the test's GO."""
    return f"touch {started}; while [ ! -e {go} ]; do sleep 0.02; done"


def age_everything(root: Path, seconds: float = 7 * 24 * 3600) -> None:
    """Set every object and record into the past, so no min-age would protect them either."""
    past = time.time() - seconds
    for sub in ("store", "realisations"):
        for entry in (root / sub).iterdir():
            os.utime(entry, (past, past), follow_symlinks=False)


def counts(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


def finish(proc: subprocess.Popen[str], loop: GcLoop, go: Path) -> str:
    loop.wait_for(2)
    go.touch()
    out, err = proc.communicate(timeout=120)
    loop.stop()
    assert proc.returncode == 0, f"{out}\n{err}"
    return out + err


# ---- nw run -----------------------------------------------------------------------------------

def test_gc_loop_beside_nw_run_keeps_the_cached_input_it_uses(tmp_path: Path, store_root: Path,
                                                               gc_loop: GcLoop) -> None:
    count, started, go = tmp_path / "count", tmp_path / "started", tmp_path / "go"
    exp, raw = tmp_path / "exp.py", tmp_path / "raw.txt"
    raw.write_text("6\n")
    source = f"from nixlib import output, static\nraw = static('{raw}')\n" \
        f"data = output('echo data >> {count}; seq 1 5 > $out/v')\n"
    exp.write_text(source)
    nw("run", str(exp), check=True)
    exp.write_text(source + "total = output(f'" + gated(started, go)
                   + f"; echo total >> {count}; cat {{data}}/v {{raw}} > $out/sum')\n")
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO)))
    wait_for(started, proc)  # `data` was looked up (cached) and `total` is running
    shutil.rmtree("nix-workflow-output")  # nothing roots `data` any more but the running process
    age_everything(store_root)
    gc_loop.start()
    finish(proc, gc_loop, go)
    assert Path("nix-workflow-output/total/sum").read_text() == NUMBERS + "6\n"
    assert counts(count) == {"data": 1, "total": 1}
    nw("gc", "--min-age", "0", check=True)  # the run's links keep everything it produced
    third = nw("run", str(exp), check=True)
    assert "cached 2" in third.stderr, f"gc removed part of the run's results:\n{third.stderr}"
    assert counts(count) == {"data": 1, "total": 1}


# ---- Luigi ----------------------------------------------------------------------------------------

LUIGI_GRAPH = '''
import luigi
from luigi_nixworkflow import NixTask


class Data(NixTask):
    def command(self):
        return f"echo data >> {count}; seq 1 5 > {{self.output()}}/v"


class Total(NixTask):
    def requires(self):
        return Data()

    def command(self):
        return f"{gate}; echo total >> {count}; cat {{self.input()}}/v > {{self.output()}}/sum"
'''


def luigi(task: str) -> list[str]:
    return [str(Path(sys.executable).with_name("luigi")), "--module", "nwlive", task, "--local-scheduler", "--no-lock",
            "--retcode-task-failed", "3", "--retcode-scheduling-error", "4", "--retcode-unhandled-exception", "5"]


def test_gc_loop_beside_a_luigi_worker_keeps_the_cached_input_it_uses(tmp_path: Path, store_root: Path,
                                                                      gc_loop: GcLoop) -> None:
    count, started, go = tmp_path / "count", tmp_path / "started", tmp_path / "go"
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "nwlive.py").write_text(LUIGI_GRAPH.format(count=count, gate=gated(started, go)))
    env = dict(os.environ, PYTHONPATH=f"{modules}{os.pathsep}{REPO}")
    first = subprocess.run(luigi("Data"), env=env, text=True, capture_output=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    proc = subprocess.Popen(luigi("Total"), env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    wait_for(started, proc)
    shutil.rmtree("nix-workflow-output")
    age_everything(store_root)
    gc_loop.start()
    out = finish(proc, gc_loop, go)
    assert "This progress looks :)" in out, out
    total = next(Path("nix-workflow-output").glob("Total*"))
    assert (total / "sum").read_text() == NUMBERS
    assert counts(count) == {"data": 1, "total": 1}


# ---- Snakemake ------------------------------------------------------------------------------------

SNAKEFILE = '''
rule all:
    input: "results/sum.txt"

rule data:
    output: "data/v.txt"
    shell: "echo data >> {count}; seq 1 5 > {{output}}"

rule total:
    input: "data/v.txt"
    output: "results/sum.txt"
    shell: "{gate}; echo total >> {count}; cat {{input}} > {{output}}"
'''


def snakemake(wf: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-c", "1", "--nocolor", "--executor", "nixworkflow",
            "--nixworkflow-link-mode", "symlink", *args]


def test_gc_loop_beside_snakemake_keeps_the_cached_output_it_restored(tmp_path: Path, store_root: Path,
                                                                      gc_loop: GcLoop) -> None:
    """With --nixworkflow-link-mode symlink a restored output *is* the store object, so a job reading it
    reads the store: gc must keep it while the Snakemake process lives (Snakemake keeps no gc roots)."""
    pytest.importorskip("snakemake")
    count, started, go = tmp_path / "count", tmp_path / "started", tmp_path / "go"
    text = SNAKEFILE.format(count=count, gate=gated(started, go))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    one, two = tmp_path / "one", tmp_path / "two"
    for wf in (one, two):
        wf.mkdir()
        (wf / "Snakefile").write_text(text)
    first = subprocess.run(snakemake(one, "data/v.txt"), cwd=one, env=env, text=True, capture_output=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    age_everything(store_root)
    proc = subprocess.Popen(snakemake(two), cwd=two, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    wait_for(started, proc)  # `data` was restored from the store (a symlink into it); `total` is running
    assert os.path.realpath(two / "data/v.txt").startswith(str(store_root / "store"))
    gc_loop.start()
    finish(proc, gc_loop, go)
    assert (two / "results/sum.txt").read_text() == NUMBERS
    assert counts(count) == {"data": 1, "total": 1}
