"""nixlib.pids: read_proc gives the same bytes a buffered open() reads, also for a /proc file larger than one
read; running() tells a zombie from a live process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixlib import pids, trees
from nixlib.pids import read_proc
from nixlib.store import Store
from tests.helpers import REPO, nw


def test_read_proc_reads_a_large_proc_file_whole() -> None:
    """A process reads its own environment, larger than one 64 KiB read (and than a page), both ways."""
    code = ("import sys\nfrom nixlib.pids import read_proc\n"
            "data = read_proc('/proc/self/environ')\n"
            "assert data == open('/proc/self/environ', 'rb').read(), 'differs'\n"
            "assert b'NW_BIG=' + b'x' * 100000 in data, 'not found'\n")
    env = dict(os.environ, NW_BIG="x" * 100_000, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_read_proc_raises_for_a_process_that_is_gone() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(OSError):
        read_proc(f"/proc/{proc.pid}/stat")


def test_a_zombie_is_alive_but_not_running() -> None:
    """A killed process its parent has not reaped keeps its pid (alive) but runs no more code (not running): what
    it left behind may be cleaned up (luigi_nixworkflow.legacy: files a killed worker moved aside)."""
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while pids.read_proc(f"/proc/{child.pid}/stat").rpartition(b")")[2].split()[:1] != [b"Z"]:
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    try:
        assert pids.alive(child.pid) and not pids.running(child.pid)
    finally:
        child.wait()
    assert pids.running(os.getpid())


def test_gc_removes_what_a_zombie_left(store_root: Path) -> None:
    """A killed step's process that nobody reaps (its parent died too, and PID 1 of many containers reaps
    nothing) stays a zombie forever: its scratch directory and staged object must still be collected, not kept
    as a live process's (a CI stress run kept one and failed)."""
    Store(store_root)
    host = socket.gethostname()
    code = ("import os, sys\n"
            "root, host = sys.argv[1], sys.argv[2]\n"
            "os.mkdir(f'{root}/tmp/{host}-{os.getpid()}-build-x')\n"
            f"os.mkdir(f'{{root}}/store/{trees.STAGE_PREFIX}{{host}}-{{os.getpid()}}-y')\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(store_root), host])
    try:
        deadline = time.monotonic() + 30
        while pids.read_proc(f"/proc/{child.pid}/stat").rpartition(b")")[2].split()[:1] != [b"Z"]:
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        scratch = store_root / "tmp" / f"{host}-{child.pid}-build-x"
        staged = store_root / "store" / f"{trees.STAGE_PREFIX}{host}-{child.pid}-y"
        assert scratch.is_dir() and staged.is_dir()
        assert not trees.stage_in_use(staged.name)
        gc = nw("gc", "--min-age", "0", env={"NIX_WORKFLOW_STORE": str(store_root)})
        assert gc.returncode == 0, gc.stderr
        assert not scratch.exists() and not staged.exists()
    finally:
        child.wait()
