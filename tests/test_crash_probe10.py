"""Crash and concurrency probe (wave 10): kills, signals and racing processes on one store.

- a run waiting for a step's lock held by a stopped (SIGSTOP) process says which process it waits for, and
  SIGTERM (or Ctrl-C) ends it at once: it used to wait in flock(2) in a worker thread, silently, and the
  interrupt waited for that thread, so the run never ended while the holder was stopped;
- two `nw run`s of one experiment started at the same moment in two directories run each step once in total
  and both link the correct results;
- a full disk while an output or a static input is stored: a clear one-paragraph error (for Snakemake a warning,
  as for any failure to store after a job succeeded: its outputs are kept), nothing partial in the store; it used
  to be a traceback (Snakemake) or a raw "No space left on device" with advice about paths (nw run);
after each, the store's invariants hold (`nw verify`), and `nw gc` removes what the dead processes left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, nw

NW = [sys.executable, "-m", "nixlib.cli"]


def counts(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


def start(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    """Start a process in its own session; its stderr goes to cwd/stderr (readable while it runs)."""
    with open(cwd / "stderr", "w") as err:
        return subprocess.Popen(argv, cwd=cwd, env=dict(os.environ, PYTHONPATH=str(REPO)), text=True,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def wait_until(condition: object, timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def held_locks(root: Path) -> list[Path]:
    """The per-key lock files some process holds now."""
    from nixlib.plan import lock_held
    from nixlib.store import Store

    store = Store(root)
    return [p for p in (root / "locks").glob("*.lock") if p.stem != "gc" and lock_held(store, p.stem)]




def verify_clean() -> None:
    proc = nw("verify")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr


# ---- a stopped lock holder ------------------------------------------------------------------------------

def test_a_run_waiting_for_a_stopped_lock_holder_says_so_and_sigterm_ends_it(tmp_path: Path, store_root: Path,
                                                                           reap: list[subprocess.Popen[str]]) -> None:
    count = tmp_path / "count"
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\n"
                   f"a = output('echo a >> {count}; sleep 1.5; echo 1 > $out/v', name='a')\n")
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    holder = start([*NW, "run", str(exp)], one)
    reap.append(holder)
    wait_until(lambda: count.exists() and held_locks(store_root), what="the first run to take a's lock")
    os.kill(holder.pid, signal.SIGSTOP)  # the runner only: its step goes on and ends, the lock stays held
    waiter = start([*NW, "run", str(exp)], two)
    reap.append(waiter)
    wait_until(lambda: "waits for" in (two / "stderr").read_text(), what="the waiting run to say what it waits for")
    said = (two / "stderr").read_text()
    assert f"waits for process {holder.pid} (stopped: `kill -CONT {holder.pid}`" in said, said
    assert "step 'a'" in said, said
    waiter.send_signal(signal.SIGTERM)
    try:
        waiter.wait(5)
    except subprocess.TimeoutExpired:
        pytest.fail("SIGTERM did not end a run waiting for a lock held by a stopped process")
    assert waiter.returncode == 130, said
    said = (two / "stderr").read_text()
    assert "interrupted" in said and "Traceback" not in said, said
    os.kill(holder.pid, signal.SIGCONT)
    assert holder.wait(30) == 0, (one / "stderr").read_text()
    assert (one / "nix-workflow-output/a/v").read_text() == "1\n"
    assert counts(count) == {"a": 1}
    again = nw("run", str(exp), cwd=two, check=True)  # the interrupted run's rerun is served from the store
    assert "cached 1" in again.stderr, again.stderr
    assert counts(count) == {"a": 1}
    verify_clean()


# ---- two runs of one experiment at the same moment ------------------------------------------------------

def test_two_nw_runs_of_one_experiment_started_together_run_each_step_once(tmp_path: Path, store_root: Path,
                                                                          reap: list[subprocess.Popen[str]]) -> None:
    count = tmp_path / "count"
    exp = tmp_path / "exp.py"
    exp.write_text(
        "from nixlib import output\n"
        f"a = output('echo a >> {count}; sleep 0.3; echo 1 > $out/v', name='a')\n"
        f"b = output(f'echo b >> {count}; cat {{a}}/v > $out/v; echo 2 >> $out/v', name='b')\n"
        f"c = output(f'echo c >> {count}; cat {{a}}/v > $out/v; echo 3 >> $out/v', name='c')\n"
        f"d = output(f'echo d >> {count}; cat {{b}}/v {{c}}/v > $out/v', name='d')\n")
    dirs = [tmp_path / "one", tmp_path / "two"]
    for d in dirs:
        d.mkdir()
    runs = [start([*NW, "run", "-j", "2", str(exp)], d) for d in dirs]
    reap.extend(runs)
    for run, d in zip(runs, dirs, strict=True):
        assert run.wait(60) == 0, (d / "stderr").read_text()
        assert (d / "nix-workflow-output/d/v").read_text() == "1\n2\n1\n3\n"
    assert counts(count) == {"a": 1, "b": 1, "c": 1, "d": 1}
    verify_clean()


# ---- a full disk ----------------------------------------------------------------------------------------

@pytest.fixture
def small_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A store on a 1.5 MB tmpfs (needs root and mount(2); skipped otherwise)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    monkeypatch.setenv("NIX_WORKFLOW_STORE", str(mnt / "store"))
    try:
        yield mnt / "store"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def assert_nothing_stored(root: Path) -> None:
    assert not [n for n in os.listdir(root / "store")], os.listdir(root / "store")
    assert not list((root / "realisations").iterdir())
    gc = nw("gc", check=True)
    assert "Traceback" not in gc.stderr
    assert not list((root / "tmp").iterdir())
    verify_clean()


def test_a_full_disk_while_snakemake_stores_an_output_is_a_clear_warning_and_keeps_it(tmp_path: Path,
                                                                                    small_store: Path) -> None:
    pytest.importorskip("snakemake")
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text('rule big:\n    output: "big.txt"\n'
                                  '    shell: "head -c 2000000 /dev/zero | tr \\"\\\\0\\" x > {output}"\n')
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-c", "1", "--nocolor", "--executor", "nixworkflow"],
                          cwd=wf, env=dict(os.environ, PYTHONPATH=str(REPO)), text=True, capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr  # the job succeeded: the store is a cache (docs/snakemake.md)
    assert "Traceback" not in proc.stderr and "[Errno" not in proc.stderr, proc.stderr
    assert ("rule big (jobid 0) succeeded but its outputs could not be stored, so it will run again next time: "
            f"cannot store the outputs of step 'big': the filesystem of the store at {small_store} is full"
            in proc.stderr), proc.stderr
    assert (wf / "big.txt").read_bytes() == b"x" * 2_000_000, "the job's output is kept"
    assert_nothing_stored(small_store)


def test_a_full_disk_while_nw_run_stores_a_static_input_is_a_clear_error(tmp_path: Path, small_store: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * 2_000_000)
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output, static\n"
                   "big = static('big.bin')\n"
                   "a = output(f'wc -c < {big} > $out/v', name='a')\n")
    proc = nw("run", str(exp))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "[Errno" not in proc.stderr, proc.stderr
    assert f"the filesystem of the store at {small_store} is full" in proc.stderr, proc.stderr
    assert "big.bin" in proc.stderr, proc.stderr
    assert_nothing_stored(small_store)
