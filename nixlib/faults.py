"""Crash and race injection for tests: `point(name)` SIGKILLs this process when NIX_WORKFLOW_FAULT names that
point, and sleeps there when NIX_WORKFLOW_PAUSE does.

The engine calls `point` between every two steps of running, storing and recording a result, so the
crash tests can kill a real `nw run`, Snakemake or Luigi process at each phase and then check that the
store is consistent. `NIX_WORKFLOW_FAULT=NAME` kills at the first pass through NAME, `NAME:N` at the
N-th (counted per process). `NIX_WORKFLOW_PAUSE=NAME:SECONDS` sleeps at each pass through NAME instead,
which widens a race window so that a test can make the other side's move land inside it every time; with
`NIX_WORKFLOW_PAUSED=FILE` each pause appends its point's name to FILE as it begins (the test waits for that)
and ends as soon as the test removes FILE.
Unset, a point costs one dict lookup: the variables are read once, at import.

Points (in the order a step passes them): step-ran, ingest-staged (inside the object publication code,
where its owner placed it), ingested, origins-indexed (its origins index entries written, its record not
yet), record-temp-written, realisation-written and origins-written (one place: both are written), recorded,
before-links (nw run only). Restoring a stored output into the working tree (nixlib.trees.place, for
Luigi and Snakemake): place-staged (the copy made under its temporary name), place-aside (a directory in the way
renamed aside, the copy not yet renamed into place); restore-placed (the Snakemake executor, after each output is
in place, before a symlink-mode one is registered again as a gc root), restore-settled (the Snakemake executor's
restoring pass, after a job's outputs are all in place, before Snakemake's metadata record of it: an awaited
point, see `suspend`). Removing a tree (nixlib.trees.remove, `nw gc`
on a dead run's `tmp/` entry): remove-unlock (a directory opened without following links, before its mode is
changed through that descriptor). Remotes: remote-upload-partial (part of an upload written), remote-objects-pushed
(a push's objects uploaded, its record not yet), remote-object-read (each part of an object a pull reads).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

_ARMED: dict[str, int] = {}
_PAUSES: dict[str, float] = {}
_lock = threading.Lock()


def _arm(spec: str) -> None:
    name, _, count = spec.partition(":")
    if name:
        _ARMED[name] = int(count) if count.isdigit() and int(count) > 0 else 1


def _pause(spec: str) -> None:
    name, _, seconds = spec.partition(":")
    try:
        _PAUSES[name] = float(seconds)
    except ValueError:
        return


_arm(os.environ.get("NIX_WORKFLOW_FAULT", ""))
_pause(os.environ.get("NIX_WORKFLOW_PAUSE", ""))
# A file each pause appends its point's name to as it begins, and that the test removes to end the pause: the main
# thread's state (/proc/PID/wchan) cannot tell the pause from another sleep, such as a subprocess wait.
_NOTE = os.environ.get("NIX_WORKFLOW_PAUSED", "")


def point(name: str) -> None:
    """Die here (SIGKILL, as a power cut or the OOM killer would) if this point is armed and due."""
    if name in _PAUSES:
        _pause_at(name)
    _die_if_due(name)


async def suspend(name: str) -> None:
    """`point(name)` in a coroutine, its pause ended early by a Ctrl-C and followed by a real suspension of the
    task: asyncio's SIGINT handler only cancels the running task, which then raises CancelledError right here,
    as at an await that truly waits, instead of at whichever later await first does. Unset, it costs one dict
    lookup and a coroutine, and never suspends."""
    if name in _PAUSES:
        import asyncio  # (only in a paused test run: nothing else here needs it)

        task = asyncio.current_task()
        _pause_at(name, lambda: task is not None and task.cancelling() > 0)
        await asyncio.sleep(0)
    _die_if_due(name)


def _pause_at(name: str, stop: Callable[[], bool] | None = None) -> None:
    """Sleep at `name` for its seconds; with NIX_WORKFLOW_PAUSED, note the pause in that file first and end it
    early once the test removes the file (its move made) or `stop()` says so."""
    seconds = _PAUSES[name]
    if not _NOTE and stop is None:
        time.sleep(seconds)  # one sleep: some tests look for it in /proc/PID/wchan
        return
    if _NOTE:
        with open(_NOTE, "a") as note:
            note.write(f"{name}\n")
    end = time.monotonic() + seconds
    while time.monotonic() < end and (not _NOTE or os.path.exists(_NOTE)) and not (stop is not None and stop()):
        time.sleep(0.01)


def _die_if_due(name: str) -> None:
    if name not in _ARMED:
        return
    with _lock:
        _ARMED[name] -= 1
        due = _ARMED[name] == 0
    if due:
        os.kill(os.getpid(), signal.SIGKILL)
