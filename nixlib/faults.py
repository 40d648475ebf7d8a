"""Crash and race injection for tests: `point(name)` SIGKILLs this process when NIX_WORKFLOW_FAULT names that
point, and sleeps there when NIX_WORKFLOW_PAUSE does.

The engine calls `point` between every two steps of running, storing and recording a result, so the
crash tests can kill a real `nw run`, Snakemake or Luigi process at each phase and then check that the
store is consistent. `NIX_WORKFLOW_FAULT=NAME` kills at the first pass through NAME, `NAME:N` at the
N-th (counted per process). `NIX_WORKFLOW_PAUSE=NAME:SECONDS` sleeps at each pass through NAME instead,
which widens a race window so that a test can make the other side's move land inside it every time. Unset,
a point costs one dict lookup: the variables are read once, at import.

Points (in the order a step passes them): step-ran, ingest-staged (inside the object publication code,
where its owner placed it), ingested, origins-indexed (its origins index entries written, its record not
yet), record-temp-written, realisation-written and origins-written (one place: both are written), recorded,
before-links (nw run only). Restoring a stored output into the working tree (nixlib.trees.place, for
Luigi and Snakemake): place-staged (the copy made under its temporary name), place-aside (a directory in the way
renamed aside, the copy not yet renamed into place); restore-placed (the Snakemake executor, after each output is
in place, before a symlink-mode one is registered again as a gc root). Removing a tree (nixlib.trees.remove, `nw gc`
on a dead run's `tmp/` entry): remove-unlock (a directory opened without following links, before its mode is
changed through that descriptor). Remotes: remote-upload-partial (part of an upload written), remote-objects-pushed
(a push's objects uploaded, its record not yet), remote-object-read (each part of an object a pull reads).
"""

from __future__ import annotations

import os
import signal
import threading
import time

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


def point(name: str) -> None:
    """Die here (SIGKILL, as a power cut or the OOM killer would) if this point is armed and due."""
    if name in _PAUSES:
        time.sleep(_PAUSES[name])
    if name not in _ARMED:
        return
    with _lock:
        _ARMED[name] -= 1
        due = _ARMED[name] == 0
    if due:
        os.kill(os.getpid(), signal.SIGKILL)
