"""Processes a produce() started and left running: stopped before its output is hashed.

produce() runs inside the Luigi worker, so it has no process group of its own: a
`subprocess.Popen` it never waited for, a `multiprocessing.Process` it never joined, or a
daemon a command left behind would keep writing into the output while the engine hashes and
stores it. After produce() returns (or fails) every such process is killed, and the output is
hashed only once none of them can write any more. Two ways find them (Linux /proc):

- processes whose environment carries the build's step marker (os.environ holds it while
  produce() runs, so every program it starts inherits it, daemons re-parented away from this
  process included);
- descendants of this process that did not exist before produce() started (forked helpers such
  as `multiprocessing` children, which never exec and so carry no marker in /proc).

Finding and killing is nixlib.reaper's (`reap_marked`); this module only knows what was there
before. The worker also carries the reaper's run marker while produce() runs, so the reaper's
watchdog kills these processes when the worker itself is killed. Without /proc nothing is found:
the documented rule is still that produce() waits for what it starts.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

from nixlib import reaper
from nixlib.errors import NixWorkflowError
from nixlib.pids import read_proc

_PROC = "/proc"


@dataclass
class Watch:
    """What existed before produce() started: the baseline for "processes it left running"."""

    marker: str  # the step marker's variable name (nixlib.runner.Build.marker)
    run_marker: str  # this worker's marker (nixlib.reaper): its watchdog kills marked processes if we die
    before: set[int]
    usage: tuple[float, ...]
    last_pid: int | None  # the pid namespace's most recently allocated pid, read before `before` was taken

    @property
    def variables(self) -> dict[str, str]:
        """Markers for os.environ while produce() runs."""
        return {self.marker: "1", self.run_marker: "1"}


def watch(marker: str) -> Watch:
    """Take the baseline just before produce() runs (the watchdog, started on first use, is part of it)."""
    run = reaper.run_marker()
    last = _last_pid()
    return Watch(marker, run, descendants(os.getpid()), _child_usage(), last)


def stop_leftovers(w: Watch, task: str, grace: float = 5.0) -> list[int]:
    """Kill every process produce() left running and wait until none can write; returns their pids.

    The common case costs one read: when no pid was allocated since the baseline (the namespace's last
    pid is unchanged), no process or thread can have been started, here or anywhere. Else (produce() started
    something, or another process on the machine did) a walk of this process's children, and a /proc scan
    only if produce() left something."""
    if w.last_pid is not None and _last_pid() == w.last_pid and _child_usage() == w.usage:
        return []
    me = os.getpid()
    if not descendants(me) - w.before and _child_usage() == w.usage:
        return []
    try:
        return reaper.reap_marked(w.marker, exclude=w.before, also=lambda: descendants(me) - w.before,
                                  deadline=grace)
    except reaper.StuckProcesses as e:
        raise NixWorkflowError(f"task {task}: processes {e.pids} that produce() started do not end after "
                               "SIGKILL; the output is not stored") from None


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
            out += [int(p) for p in read_proc(f"{_PROC}/{pid}/task/{tid}/children").split()]
        except OSError:
            continue
    return out


def _last_pid() -> int | None:
    """The last pid allocated in this pid namespace (/proc/loadavg's fifth field; a thread takes one too). Pids
    are allocated in increasing order, wrapping at pid_max: equal twice means nothing was started in between
    unless pid_max pids were taken meanwhile, which the children's usage (unchanged) also rules out for ours."""
    try:
        return int(read_proc(f"{_PROC}/loadavg").split()[4])
    except (OSError, ValueError, IndexError):
        return None


def _child_usage() -> tuple[float, ...]:
    """Changes whenever a child of this process was reaped (e.g. the shell of `cmd &`)."""
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (u.ru_utime, u.ru_stime, u.ru_minflt, u.ru_majflt, u.ru_nvcsw, u.ru_nivcsw)
