"""Processes a produce() started and left running: stopped before its output is hashed.

produce() runs inside the Luigi worker, so it has no process group of its own: a
`subprocess.Popen` it never waited for, a `multiprocessing.Process` it never joined, or a
daemon a command left behind would keep writing into the output while the engine hashes and
stores it. After produce() returns (or fails) every such process is killed, and the output is
hashed only once none of them can write any more. Two ways find them (Linux /proc):

- descendants of this process that did not exist before produce() started (forked helpers such
  as `multiprocessing` children, which never exec and so carry no marker);
- processes whose environment carries the build's step marker (nixlib.reaper: os.environ holds
  it while produce() runs, so every program it starts inherits it, daemons re-parented away
  from this process included).

The worker also carries nixlib.reaper's run marker while produce() runs, so the reaper's watchdog
kills these processes when the worker itself is killed. Unlike a shell step, produce() has no
process group of its own (it is the worker's), so `reaper.reap`, which also kills the step's
group, cannot be used here. Without /proc nothing is found: the documented rule is still that
produce() waits for what it starts.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from dataclasses import dataclass

from nixlib import reaper
from nixlib.errors import NixWorkflowError

_PROC = "/proc"


@dataclass
class Watch:
    """What existed before produce() started: the baseline for "processes it left running"."""

    marker: str  # the step marker's variable name (nixlib.runner.Build.marker)
    run_marker: str  # this worker's marker (nixlib.reaper): its watchdog kills marked processes if we die
    before: set[int]
    usage: tuple[float, ...]

    @property
    def variables(self) -> dict[str, str]:
        """Markers for os.environ while produce() runs."""
        return {self.marker: "1", self.run_marker: "1"}


def watch(marker: str) -> Watch:
    """Take the baseline just before produce() runs (the watchdog, started on first use, is part of it)."""
    run = reaper.run_marker()
    return Watch(marker, run, descendants(os.getpid()), _child_usage())


def stop_leftovers(w: Watch, task: str, grace: float = 5.0) -> list[int]:
    """Kill every process produce() left running and wait until none can write; returns their pids.

    All of them are stopped (SIGSTOP) before any is killed: killed one by one, a shell whose `sleep` died
    first would run its next command (`echo late > $out/x`) before its own SIGKILL arrived."""
    stopped: list[int] = []
    for _ in range(50):  # one may have forked before it was stopped: look again until nothing new
        new = [pid for pid in _leftovers(w) - set(stopped) if _alive(pid)]
        if not new:
            break
        for pid in new:
            if _signal(pid, signal.SIGSTOP):
                stopped.append(pid)
    killed = [pid for pid in stopped if _signal(pid, signal.SIGKILL)]
    _wait_dead(killed, grace, task)
    _collect(killed)
    return killed


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _leftovers(w: Watch) -> set[int]:
    me = os.getpid()
    found = descendants(me) - w.before
    if found or _child_usage() != w.usage:  # some process ran: look for re-parented ones too
        found |= _marked(w.marker)
    found.discard(me)
    return found


def descendants(pid: int) -> set[int]:
    """All processes below `pid` (through every thread's children list); empty without /proc."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for child in _children(current):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        threads = os.listdir(f"{_PROC}/{pid}/task")
    except OSError:
        return out
    for tid in threads:
        try:
            with open(f"{_PROC}/{pid}/task/{tid}/children", encoding="ascii") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return out


def _marked(marker: str) -> set[int]:
    """Processes of this user whose environment (as they were executed) carries the marker variable."""
    needle = b"\0" + marker.encode() + b"="
    found: set[int] = set()
    try:
        entries = os.listdir(_PROC)
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"{_PROC}/{entry}/environ", "rb") as f:
                if needle in b"\0" + f.read():
                    found.add(int(entry))
        except OSError:
            continue
    return found


def _child_usage() -> tuple[float, ...]:
    """Changes whenever a child of this process was reaped (e.g. the shell of `cmd &`)."""
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (u.ru_utime, u.ru_stime, u.ru_minflt, u.ru_majflt, u.ru_nvcsw, u.ru_nivcsw)


def _alive(pid: int) -> bool:
    """Exists and is not a zombie (a zombie can no longer write anything)."""
    try:
        with open(f"{_PROC}/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _collect(pids: list[int]) -> None:
    """Reap the killed processes that are our children (orphans re-parented to us, the subreaper), so no
    zombie stays behind in a long-lived worker; only these pids, never "any child"."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue


def _wait_dead(pids: list[int], grace: float, task: str) -> None:
    deadline = time.monotonic() + grace
    delay = 0.001
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            raise NixWorkflowError(f"task {task}: processes {sorted(p for p in pids if _alive(p))} that produce() "
                                   "started do not end after SIGKILL; the output is not stored")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
