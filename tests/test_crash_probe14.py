"""Crash probe (wave 14): kill -9, SIGTERM and Ctrl-C at each phase of the two front-door paths that write into the
user's working tree: a Luigi legacy NixTask (run() writing its LocalTargets in place, moved aside first, restored from
the store on a hit) and the Snakemake executor restoring a hit's outputs (copy, hardlink and symlink link modes) or
storing a job's products. After each: nothing wrong is served (`nw verify`, the re-run's bytes), no file that was in
the working tree before is silently gone, and the next run succeeds with no manual cleanup (Snakemake's own lock
aside) and leaves the same files as an uninterrupted run. Regressions of what it found.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, nw

LUIGI = str(Path(sys.executable).with_name("luigi"))

# A file output, and a dict of a file and a directory, in one directory (data/). A run dies (SIGKILL, as the OOM
# killer would) where $DIE_AT says, from inside run(): deterministic, no timing.
PIPELINE = '''
import os
import signal

import luigi

from luigi_nixworkflow import NixTask


def die(where):
    if os.environ.get("DIE_AT") == where:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("FAIL_AT") == where:
        raise RuntimeError("failing on purpose")


class A(NixTask):
    def output(self):
        return luigi.LocalTarget("data/a.txt")

    def run(self):
        with self.output().open("w") as f:
            f.write("new A\\n")
            die("A-writing")


class B(NixTask):
    def output(self):
        return {"x": luigi.LocalTarget("data/b.txt"), "d": luigi.LocalTarget("data/bdir")}

    def run(self):
        with self.output()["x"].open("w") as f:
            f.write("new B\\n")
        os.makedirs(self.output()["d"].path)
        for name in "pq":
            with open(os.path.join(self.output()["d"].path, name), "w") as f:
                f.write(name * 3)
'''


def files(root: Path) -> dict[str, bytes | str]:
    """Every entry under root (hidden ones too), following symlinks: a file's bytes, "dir", or "dangling"."""
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root)] = "dir"
        for name in filenames:
            p = os.path.join(dirpath, name)
            found[os.path.relpath(p, root)] = Path(p).read_bytes() if os.path.exists(p) else "dangling"
    return dict(sorted(found.items()))


def luigi(task: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PYTHONPATH=f"{Path.cwd()}{os.pathsep}{REPO}", **env)
    return subprocess.run([LUIGI, "--module", "crashpipe", task, "--local-scheduler", "--no-lock"], env=full,
                          text=True, capture_output=True, timeout=300)


def succeeded(proc: subprocess.CompletedProcess[str]) -> bool:
    return "This progress looks :)" in proc.stdout + proc.stderr


@pytest.fixture
def pipeline() -> Path:
    """crashpipe.py in the working directory, and data/ holding what a plain Luigi run left there."""
    Path("crashpipe.py").write_text(PIPELINE)
    data = Path("data")
    data.mkdir()
    (data / "a.txt").write_text("old A of a plain run\n")
    (data / "b.txt").write_text("old B, edited by hand\n")
    (data / "bdir").mkdir()
    (data / "bdir" / "o").write_text("old\n")
    return data


def verify_clean() -> None:
    proc = nw("verify")
    assert proc.returncode == 0 and "0 problem(s)" in proc.stderr, proc.stdout + proc.stderr


# ---- Luigi legacy: a run killed while run() writes ------------------------------------------------------------------


def test_luigi_run_killed_mid_write_never_loses_the_old_output_to_another_tasks_run(pipeline: Path,
                                                                                     store_root: Path) -> None:
    """A's run moved the old data/a.txt aside, then was killed in run(), before it wrote a.txt. The next run, of B
    (same directory), swept the dead run's aside as litter and removed it: a.txt, a plain Luigi run's result that
    is in no store, was gone for good. It must be put back, the old file at its own name."""
    killed = luigi("A", DIE_AT="A-writing")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert not (pipeline / "a.txt").exists()  # moved aside by the killed run
    assert succeeded(luigi("B"))
    assert (pipeline / "a.txt").read_text() == "old A of a plain run\n"
    assert not [n for n in os.listdir(pipeline) if n.startswith(".nw-")], os.listdir(pipeline)
    assert succeeded(luigi("A"))  # and A's next run replaces it, as an uninterrupted run does
    assert (pipeline / "a.txt").read_text() == "new A\n"
    assert not [n for n in os.listdir(pipeline) if n.startswith(".nw-")], os.listdir(pipeline)
    verify_clean()


def test_luigi_run_killed_mid_write_then_a_failing_rerun_puts_the_old_output_back(pipeline: Path,
                                                                                   store_root: Path) -> None:
    """Killed in run() (the old a.txt moved aside), then the next run of A fails: the old file must be back, as
    after a run that fails uninterrupted. The dead run's aside used to be removed by that run first."""
    assert luigi("A", DIE_AT="A-writing").returncode == -9
    failed = luigi("A", FAIL_AT="A-writing")
    assert not succeeded(failed) and "failing on purpose" in failed.stdout + failed.stderr
    assert (pipeline / "a.txt").read_text() == "old A of a plain run\n"
    assert succeeded(luigi("A"))
    assert (pipeline / "a.txt").read_text() == "new A\n"
    assert not [n for n in os.listdir(pipeline) if n.startswith(".nw-")], os.listdir(pipeline)
    verify_clean()


# ---- Luigi legacy: a hit's restore killed ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["place-staged", "place-staged:2", "place-aside"])
def test_luigi_restore_killed_leaves_nothing_beside_the_outputs_after_the_next_run(pipeline: Path, store_root: Path,
                                                                                  fault: str) -> None:
    """B is stored; the user edits b.txt and adds a file to bdir, so the next run restores both (a copy under a
    temporary name, then a rename; a directory in the way renamed aside first). Killed between, the temporary copy
    (`.nw-b.txt.<hex>`) or the user's renamed-aside directory (`.nw-old-bdir.<hex>`) stayed in data/ for good, read
    by anything that lists the directory. The next run must settle them: the same files as an uninterrupted run."""
    assert succeeded(luigi("B"))
    want = files(pipeline)
    (pipeline / "b.txt").write_text("edited\n")
    (pipeline / "bdir" / "new").write_text("user\n")
    killed = luigi("B", NIX_WORKFLOW_FAULT=fault)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert succeeded(luigi("B"))
    assert files(pipeline) == want
    verify_clean()


# ---- Snakemake ------------------------------------------------------------------------------------------------------

SNAKEFILE = '''
rule all:
    input: "res/c.txt"

rule a:
    output: "res/a.txt"
    shell: "echo 1 > {output}"

rule b:
    input: "res/a.txt"
    output: directory("res/bdir")
    shell: "mkdir -p {output}; cat {input} > {output}/x; echo 2 > {output}/y"

rule c:
    input: "res/a.txt", "res/bdir"
    output: "res/c.txt"
    shell: "cat {input[0]} {input[1]}/x {input[1]}/y > {output}"
'''
CLEAN = {"a.txt": b"1\n", "bdir": "dir", "bdir/.snakemake_timestamp": b"", "bdir/x": b"1\n", "bdir/y": b"2\n",
         "c.txt": b"1\n1\n2\n"}


def snakemake(mode: str, *more: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "snakemake", "-c", "1", "--nocolor", "--executor", "nixworkflow",
                           "--nixworkflow-link-mode", mode, *more], env=full, text=True, capture_output=True,
                          timeout=300)


@pytest.fixture
def workflow() -> Path:
    """The Snakefile, run once (all three jobs stored), then its outputs deleted: the next run restores them."""
    pytest.importorskip("snakemake")
    Path("Snakefile").write_text(SNAKEFILE)
    return Path("res")


def stored_then_deleted(mode: str, res: Path) -> None:
    first = snakemake(mode)
    assert first.returncode == 0, first.stderr
    assert files(res) == CLEAN
    shutil.rmtree(res)
    res.mkdir()


_RESTORE_FAULTS = ["place-staged", "place-staged:2", "place-staged:3"]
_RESTORE_MODES = ["copy", "hardlink", "symlink"]


@pytest.mark.parametrize(("fault", "mode"), [  # one fault per link mode here, every pair in make test-long
    pytest.param(f, m, marks=() if i == j else pytest.mark.long)  # (make test keeps the suite under 20 minutes)
    for j, m in enumerate(_RESTORE_MODES) for i, f in enumerate(_RESTORE_FAULTS)])
def test_snakemake_restore_killed_mid_copy_leaves_nothing_beside_the_outputs(workflow: Path, store_root: Path,
                                                                            mode: str, fault: str) -> None:
    """Killed while restoring an output (its copy, hard link or symlink made under a temporary name, not yet
    renamed into place): the temporary `.nw-<name>.<hex>` stayed in res/ for good, next to the outputs. The next
    run (after Snakemake's own --unlock) must leave exactly the files of an uninterrupted run."""
    stored_then_deleted(mode, workflow)
    killed = snakemake(mode, env={"NIX_WORKFLOW_FAULT": fault})
    assert killed.returncode == -9, killed.stderr
    assert snakemake(mode, "--unlock").returncode == 0
    again = snakemake(mode)
    assert again.returncode == 0, again.stderr
    assert files(workflow) == CLEAN
    verify_clean()


def test_snakemake_symlink_restore_killed_before_its_gc_root_never_leaves_an_output_gc_removes(
        workflow: Path, store_root: Path) -> None:
    """Symlink mode: c.txt restored as a link into the store, then the process killed before the link was
    registered as a gc root. The next run finds c.txt present and up to date (nothing to do), so nothing ever
    rooted it: `nw gc --min-age 0` removed its object and c.txt dangled, the user's result gone."""
    stored_then_deleted("symlink", workflow)
    killed = snakemake("symlink", env={"NIX_WORKFLOW_FAULT": "restore-placed:3"})
    assert killed.returncode == -9, killed.stderr
    assert os.path.islink(workflow / "c.txt")
    assert snakemake("symlink", "--unlock").returncode == 0
    again = snakemake("symlink")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stderr
    nw("gc", "--min-age", "0", check=True)
    assert files(workflow) == CLEAN
    verify_clean()


def _sleeping(pid: int) -> bool:
    """Whether the process's main thread sleeps in time.sleep (a nixlib.faults pause)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "hrtimer_nanosleep"
    except OSError:
        return False


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_ctrl_c_while_snakemake_restores_cached_jobs_is_one_clear_message(workflow: Path, store_root: Path) -> None:
    """Ctrl-C while the executor restores hits before Snakemake's scheduler starts (a long phase for a big cached
    workflow) printed two Python tracebacks (CancelledError, KeyboardInterrupt) and left Snakemake's lock, so the
    next run needed --unlock. It must be one message, and the next run must just work."""
    stored_then_deleted("copy", workflow)
    env = dict(os.environ, PYTHONPATH=str(REPO), NIX_WORKFLOW_PAUSE="place-staged:10")
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "-c", "1", "--nocolor", "--executor", "nixworkflow"],
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _sleeping(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, "the restore's pause was never reached"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert "nixworkflow: interrupted while restoring cached jobs from the store" in out, out
    again = snakemake("copy")
    assert again.returncode == 0, again.stderr
    assert files(workflow) == CLEAN
    verify_clean()


def test_a_dead_runs_aside_is_not_put_back_where_a_live_run_of_that_task_writes(pipeline: Path,
                                                                                 store_root: Path) -> None:
    """The guard of the put-back above (no regression of old code, which removed the aside): while a live process
    has a.txt moved aside (it runs A now, and a.txt is what it is writing), the old a.txt of a killed run is kept
    aside, never put back into the path that run writes; once nothing runs A, a run of A settles it."""
    assert luigi("A", DIE_AT="A-writing").returncode == -9
    [dead] = [n for n in os.listdir(pipeline) if n.startswith(".nw-previous-a.txt.")]
    host = dead.rpartition("@")[2]
    live = pipeline / f".nw-previous-a.txt.0123abcd.{os.getpid()}@{host}"  # this test's process: alive
    live.write_text("what the live run moved aside\n")
    assert succeeded(luigi("B"))
    assert not (pipeline / "a.txt").exists() and (pipeline / dead).exists(), os.listdir(pipeline)
    live.unlink()
    assert succeeded(luigi("A"))
    assert (pipeline / "a.txt").read_text() == "new A\n"
    assert not [n for n in os.listdir(pipeline) if n.startswith(".nw-")], os.listdir(pipeline)
