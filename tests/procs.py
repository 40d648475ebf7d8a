"""Running a test tool to its end, for the compatibility runners (tests/*_compat.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path


def run_group(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """Run `argv` to its exit (code None: timed out), its output in a file rather than a pipe: a process it leaves
    behind (a `pipe()` reader whose writer failed) would hold a pipe open after it exited. It runs in a session of
    its own, and whatever is left of its process group afterwards is killed."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, text=True, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        out.seek(0)
        return code, out.read()
