"""Probe 24 (lead, from helper view24's live-run probe): what `nw run` reports while and after steps run.

- A running step's log in the store held only its `$ command` line until the step ended or printed 8 KiB (the
  output was written through a buffer), so `nw view`'s live log tail and `nw log` of a running step showed nothing.
- A step skipped because the step it depends on was itself skipped was said to depend on a step "which failed".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO, nw


def _logs_saying(store: Path, text: str) -> list[Path]:
    logs = store / "logs"
    return [p for p in logs.glob("*.log") if text in p.read_text(errors="replace")] if logs.is_dir() else []


def test_a_running_steps_log_shows_its_output_as_it_comes(store_root: Path) -> None:
    Path("exp.py").write_text("from nixlib import output\n"
                              "slow = output('echo first-line-of-slow; sleep 60; echo x > $out/x')\n")
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", "exp.py"], env=dict(
        os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 40  # (the step sleeps 60 s after its first line: the log must show it before)
        while not _logs_saying(store_root, "first-line-of-slow\n") and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended early"
            time.sleep(0.2)
        shown = _logs_saying(store_root, "first-line-of-slow\n")
        assert shown and proc.poll() is None, "the running step's log did not show its first line"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)


def test_a_step_after_a_skipped_step_names_it_as_not_run(store_root: Path) -> None:
    Path("exp.py").write_text("from nixlib import output\n"
                              "a = output('exit 3')\n"
                              "b = output(f'cat {a}/x > $out/b')\n"
                              "c = output(f'cat {b}/b > $out/c')\n")
    proc = nw("run", "-k", "exp.py")
    assert proc.returncode != 0
    assert "it depends on 'a', which failed" in proc.stderr, proc.stderr
    assert "it depends on 'b', which was not run" in proc.stderr, proc.stderr
    assert "'b', which failed" not in proc.stderr, proc.stderr


def test_a_command_not_found_is_hinted_as_such_not_as_a_relative_path(store_root: Path) -> None:
    """Exit status 127 (the shell found no such command, as in a pure step whose env lacks the tool) came with the
    hint about relative data paths and $out as the working directory, which sent the user the wrong way."""
    Path("exp.py").write_text("from nixlib import output\n"
                              "a = output('no-such-tool-nw24 --in data.csv > $out/a')\n")
    proc = nw("run", "exp.py")
    assert proc.returncode == 1, proc.stderr
    assert "exited with status 127" in proc.stderr, proc.stderr
    assert "did not find a command" in proc.stderr, proc.stderr
    assert "relative path such as" not in proc.stderr, proc.stderr


def test_a_step_named_otherwise_than_its_variable_is_no_second_name(store_root: Path) -> None:
    """`a = output(..., name="alpha")` warned that "1 name(s) hold the same step as another name ... a is alpha", as
    if two names shared one step; only a second name holding the same step (`b = a`) is worth the warning."""
    Path("exp.py").write_text("from nixlib import output\na = output('echo 1 > $out/x', name='alpha')\n")
    proc = nw("run", "exp.py")
    assert proc.returncode == 0, proc.stderr
    assert "hold the same step" not in proc.stderr, proc.stderr
    Path("exp.py").write_text(Path("exp.py").read_text() + "b = a\n")
    proc = nw("run", "exp.py")
    assert "1 name(s) hold the same step as another name" in proc.stderr and "b is alpha" in proc.stderr, proc.stderr
