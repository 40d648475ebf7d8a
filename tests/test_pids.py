"""nixlib.pids.read_proc: the same bytes a buffered open() reads, also for a /proc file larger than one read."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nixlib.pids import read_proc
from tests.helpers import REPO


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
