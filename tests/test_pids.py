"""nixlib.pids.read_proc: the same bytes a buffered open() reads, also for a /proc file larger than one read."""

from __future__ import annotations

import os
import subprocess

import pytest

from nixlib.pids import read_proc


def test_read_proc_reads_a_large_proc_file_whole() -> None:
    big = "x" * 100_000  # an environment larger than one 64 KiB read (and than a page)
    proc = subprocess.Popen(["sleep", "30"], env=dict(os.environ, NW_BIG=big))
    try:
        path = f"/proc/{proc.pid}/environ"
        with open(path, "rb") as f:
            expected = f.read()
        assert b"NW_BIG=" + big.encode() in expected
        assert read_proc(path) == expected
    finally:
        proc.kill()
        proc.wait()


def test_read_proc_raises_for_a_process_that_is_gone() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(OSError):
        read_proc(f"/proc/{proc.pid}/stat")
