"""A step ends when all of its processes end: finding and killing what a step left running.

A shell step's main process can exit while processes it started live on: `cmd &`, a
`setsid` daemon, a double-forked helper. They could keep writing into `$out` after it was
hashed, or into `$state` while a re-run of the same recipe uses it. Three mechanisms:

- **Markers.** Every process of a step carries two environment variables whose *names* are
  unique: `NW_STEP_<hex>` (this step) and `NW_RUN_<hex>` (this runner process). A child
  inherits them whatever it does with its process group or session. Names, not values, so a
  step that runs `nw` itself keeps its parent's markers beside its own, and the outer step
  still finds everything underneath. `/proc/PID/environ` shows a process's environment as
  it was executed, which is exactly what it inherited.
- **Reaping after the main process exits** (`reap`): its process group is killed, then every
  process carrying the step's marker (or still in its group or session) is SIGKILLed until
  none remain; only then are outputs hashed. The runner is a child subreaper
  (PR_SET_CHILD_SUBREAPER), so the step's orphans become its children: the common case (no
  leftovers) is decided from this process's own children list and the group, without
  scanning /proc, and killed orphans are reaped instead of left as zombies.
- **Reaping by marker alone** (`reap_marked`): for front doors whose steps run inside their own
  process (a Luigi produce()), so have no process group to kill; every marked process is stopped
  before any is killed.
- **A watchdog per runner process** (`run_marker`): a small process in its own session whose
  stdin is a pipe only the runner holds. When the runner dies, by any cause including
  SIGKILL, the pipe reaches EOF and the watchdog kills every process with the runner's
  marker. A runner that exits normally says goodbye first and the watchdog just exits.

- **Reaping by place** (`reap_inside`, before and after `reap`: `reap_leftovers`): a process that clears its environment
  (`env -i`) *and* leaves the step's session carries no marker, but it is still one of the runner's
  descendants (the subreaper's); one that works in, holds open or maps the step's build directory
  is killed too, as those are the only ways it could write into what is about to be stored.

What escapes: such a process that works elsewhere (it writes by name into a directory that is gone
once the output is stored); processes of other users (a setuid program); processes the step did
not start. cgroups would close that gap; they need delegation from systemd that a plain user
process does not have.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection

from nixlib.pids import read_proc

RUN_PREFIX = "NW_RUN_"
STEP_PREFIX = "NW_STEP_"
_PR_SET_CHILD_SUBREAPER = 36
_PROC = "/proc"

# The watchdog: waits for EOF on stdin; without the runner's goodbye, kills every process that carries
# the marker, looking again until none is left (a dying process may have forked once more).
_WATCHDOG = r"""
import os, signal, sys, time
needle = b"\0" + sys.argv[1].encode() + b"="
data = sys.stdin.buffer.read()
if data.endswith(b"bye"):
    sys.exit(0)
for attempt in range(500):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/" + entry + "/environ", "rb") as f:
                    if needle in b"\0" + f.read():
                        found.append(int(entry))
            except OSError:
                pass
    if not found:
        break
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.02)
"""


def new_marker(prefix: str = STEP_PREFIX) -> str:
    """A fresh marker variable name (128 random bits)."""
    return prefix + secrets.token_hex(16)


def inherited_markers(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The markers this process inherited (from an enclosing step or runner), to pass on even in pure mode."""
    return {k: v for k, v in environ.items() if k.startswith((RUN_PREFIX, STEP_PREFIX))}


# ---- the runner: subreaper and watchdog ------------------------------------------------------------

class _Runner:
    """Per-process state: this runner's marker and its watchdog (remade in a forked child)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = -1
        self.marker = ""
        self.pipe: int | None = None
        self.subreaper = False


_RUNNER = _Runner()


def run_marker() -> str:
    """This runner's marker; the first call in a process makes it a subreaper and starts its watchdog."""
    r = _RUNNER
    with r.lock:
        if r.pid != os.getpid():
            r.pid = os.getpid()
            r.marker = new_marker(RUN_PREFIX)
            r.subreaper = _become_subreaper()
            r.pipe = _start_watchdog(r.marker)
        return r.marker


def mark_runner_environ() -> str:
    """For front doors that start step processes themselves (Snakemake's shell(), a Luigi produce()): put
    this runner's marker into os.environ, so every process started from now on dies with the runner."""
    marker = run_marker()
    os.environ[marker] = "1"
    return marker


def _become_subreaper() -> bool:
    """Orphans of our steps are re-parented to us (not to init), so we can find and reap them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _start_watchdog(marker: str) -> int | None:
    """Start the watchdog; returns the write end of its stdin (None if it cannot start: then a killed
    runner's steps are not stopped, but nothing else changes). It runs this very interpreter binary: by its path,
    else as /proc/self/exe, for a user who cannot reach it by its path (an interpreter under a directory only root
    may enter, started for that user through setpriv or sudo: it ran, but its children cannot run it again by name,
    and a SIGKILLed run's steps used to go on, unwatched, beside the run that took them over)."""
    env = {k: v for k, v in os.environ.items() if k != marker}
    proc = None
    for interpreter in (sys.executable, "/proc/self/exe"):
        try:
            proc = subprocess.Popen([interpreter, "-I", "-S", "-c", _WATCHDOG, marker], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/", env=env,
                                    start_new_session=True, close_fds=True)
            break
        except OSError:
            continue
    if proc is None:
        return None
    assert proc.stdin is not None
    fd = os.dup(proc.stdin.fileno())  # non-inheritable (PEP 446): steps never hold the write end
    proc.stdin.close()
    proc.returncode = 0  # never waited for here: it outlives us on purpose; keep Popen from tracking it
    atexit.register(_goodbye, fd)
    return fd


def _goodbye(fd: int) -> None:
    """A normal exit: tell the watchdog so it leaves alone what it would kill after a crash."""
    if _RUNNER.pid != os.getpid():
        return
    try:
        os.write(fd, b"bye")
        os.close(fd)
    except OSError:
        pass


# ---- reaping a step ---------------------------------------------------------------------------------

class StuckProcesses(Exception):
    """Processes of a step that did not die after SIGKILL within the deadline (uninterruptible I/O)."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(", ".join(map(str, pids)))
        self.pids = pids


def reap(marker: str, group: int, deadline: float = 30.0) -> int:
    """Kill every process of a step whose main process (pid `group`, leader of its own session) has exited
    and been waited for; returns how many were killed. Returns only once none of them can run any more.

    Members are found by the step's marker, and by its process group and session as long as the number
    `group` is not a live pid again (Linux keeps a pid number allocated while a group or session uses it)."""
    killed: set[tuple[int, int]] = set()
    end = time.monotonic() + deadline
    delay = 0.001
    unsettled_rounds = 0
    while True:
        if os.path.lexists(f"{_PROC}/{group}"):
            group = -1  # the number was reused (pid_max can be small): group and session no longer name the step
        if _fast_clear(marker, group):
            break
        alive, zombies, unsettled = _members(marker, group, killed)
        _reap_adopted(zombies)
        if not alive:
            if unsettled and unsettled_rounds < UNSETTLED_ROUNDS:  # (one mid-exec may be the step's)
                unsettled_rounds += 1
                time.sleep(0.004)
                continue
            break
        starts = dict(alive)
        killed.update((pid, starts[pid]) for pid in _stop_then_kill(list(starts)))
        if group > 0:
            _signal_group(group, signal.SIGKILL)  # members forked since the scan
        if time.monotonic() > end:
            raise StuckProcesses(sorted(pid for pid, _ in alive))
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return len(killed)


def reap_leftovers(marker: str, places: Collection[str], group: int | None = None) -> int:
    """Kill everything a finished step left running; returns how many. By place first (reap_inside): a leftover
    without the marker (`setsid env -i …`) shows an empty environment, so the reaping by marker looks again while
    it is there, time in which it could write into what is about to be stored. Then by marker: with the step's
    process `group` (nw run: reap), or by marker alone (the common case, none left, told from our children: a job
    run through another program, Snakemake's shell()). By place again: one forked meanwhile."""
    killed = reap_inside(places)
    if group is not None:
        killed += reap(marker, group)
    elif not none_left(marker):
        killed += len(reap_marked(marker))
    return killed + reap_inside(places)


def reap_marked(marker: str, exclude: Collection[int] = (), also: Callable[[], set[int]] | None = None,
                deadline: float = 30.0) -> list[int]:
    """Kill every live process that carries `marker` (or that `also()` names), except this process and
    `exclude`; returns their pids once none of them can run any more (StuckProcesses after `deadline`).

    For front doors whose steps have no process group of their own (a Luigi produce() runs inside the
    worker): the step's processes are found by marker alone, and every one is stopped before any is
    killed, looking again until no new one appears, so none can fork away or run its next command (a
    shell whose `sleep` died first would otherwise `echo late > $out/x` before its own SIGKILL)."""
    skip = {os.getpid(), *exclude}
    stopped: list[int] = []
    unsettled_rounds = 0
    for _ in range(50 + UNSETTLED_ROUNDS):  # one may have forked before it was stopped: look until nothing new
        marked, unsettled = _marked_since(marker)
        named = also() if also is not None else set()
        new = [pid for pid in (set(marked) | named) - skip - set(stopped) if _alive(pid)]
        if not new:
            if unsettled - skip and unsettled_rounds < UNSETTLED_ROUNDS:  # (one mid-exec may be the step's)
                unsettled_rounds += 1
                time.sleep(0.004)
                continue
            break
        halted = [pid for pid in new if _signal(pid, signal.SIGSTOP)]
        stopped += _still_ours(halted, marker, marked, also)
    killed = [pid for pid in stopped if _signal(pid, signal.SIGKILL)]
    _wait_dead(killed, deadline)
    _reap_adopted(killed)
    return killed


def none_left(marker: str) -> bool:
    """True when no process carrying `marker` can be alive, told from this subreaper's children alone (a /proc scan
    costs milliseconds per step): a step's process whose parent exited was re-parented to us, one whose parent
    lives descends from such a child, which carries the marker too. False when that cannot be told (not a
    subreaper, no children list) or a child is a zombie (it may have forked one just before exiting)."""
    return _children_clear(marker, -1, zombie_clear=False)


def _marker_or_unknown(pid: int, marker: str) -> bool:
    """Whether a process carries `marker`, or its environment cannot be read now: a process in the middle of an
    exec (a step's daemon just after its shell exited) can show none for an instant, and must not pass for one
    without the marker."""
    try:
        environ = read_proc(f"{_PROC}/{pid}/environ")
    except FileNotFoundError:
        return False  # (gone)
    except OSError:
        return True
    return not environ or _carries(environ, marker)


def _still_ours(halted: list[int], marker: str, marked: dict[int, int],
                also: Callable[[], set[int]] | None) -> list[int]:
    """Of the processes just stopped, those that are still the step's; the others are resumed (SIGCONT). Between
    the scan and the SIGSTOP a process can exit and its pid be reused by an unrelated one. A pid found by its
    marker is the same process if its start time is the one read before its environment was; otherwise (and for a
    pid only `also()` named) it must carry the marker, or be named by `also()`, now that it is stopped."""
    ours = [pid for pid in halted if pid in marked and _start(pid) == marked[pid]]
    doubtful = [pid for pid in halted if pid not in ours]
    if doubtful:
        named = also() if also is not None else set()
        for pid in doubtful:
            if pid in named or _has_marker(pid, marker):
                ours.append(pid)
            else:
                _signal(pid, signal.SIGCONT)
    return ours


def _stop_then_kill(pids: list[int]) -> list[int]:
    """SIGSTOP all, then SIGKILL all: a process killed while its siblings still run cannot be replaced by
    one of them forking; returns the pids that were signalled (the others were already gone)."""
    stopped = [pid for pid in pids if _signal(pid, signal.SIGSTOP)]
    return [pid for pid in stopped if _signal(pid, signal.SIGKILL)]


UNSETTLED_ROUNDS = 25  # looks again (4 ms apart) while a process shows no environment: ~0.1-0.2 s at most


def _marked_since(marker: str) -> tuple[dict[int, int], set[int]]:
    """Processes whose environment (as they were executed) carries the marker variable, with each one's start
    time read before its environment: a pid with the same start time later is still the process that carried it.
    Also the live orphans (adopted by us, the subreaper, or by init) whose environment reads empty: a process in
    the middle of an exec (a step's daemon exec'ing `setsid` as its shell exits) shows none for an instant, so it
    may be one of them."""
    found: dict[int, int] = {}
    unsettled: set[int] = set()
    try:
        entries = os.listdir(_PROC)
    except OSError:
        return found, unsettled
    for entry in entries:
        if entry.isdigit():
            pid = int(entry)
            st = _stat(pid)
            if st is None:
                continue
            environ = _environ(pid)
            if environ is not None and _carries(environ, marker):
                found[pid] = st[4]
            elif environ == b"" and st[0] not in (b"Z", b"X") and _orphan(pid, st):
                unsettled.add(pid)
    return found, unsettled


def _carries(environ: bytes, marker: str) -> bool:
    """Whether an environment (as /proc/PID/environ shows it) holds the marker variable."""
    return b"\0" + marker.encode() + b"=" in b"\0" + environ


def _orphan(pid: int, st: tuple[bytes, int, int, int, int]) -> bool:
    """Adopted by us, as a step's daemon is once its shell exits (by init when we are no subreaper); not init
    itself and no kernel thread (both show no environment)."""
    me = os.getpid()
    subreaper = _RUNNER.subreaper and _RUNNER.pid == me
    return pid > 2 and (st[1] == me or (st[1] == 1 and not subreaper))


def _environ(pid: int) -> bytes | None:
    """A process's environment as it was executed (b"" for none, or mid-exec), None if it cannot be read."""
    try:
        return read_proc(f"{_PROC}/{pid}/environ")
    except OSError:
        return None


def _start(pid: int) -> int | None:
    st = _stat(pid)
    return st[4] if st is not None else None


def _alive(pid: int) -> bool:
    """Exists and is not a zombie (a zombie can no longer run or write anything)."""
    st = _stat(pid)
    return st is not None and st[0] not in (b"Z", b"X")


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait_dead(pids: list[int], deadline: float) -> None:
    end = time.monotonic() + deadline
    delay = 0.001
    while True:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return
        if time.monotonic() > end:
            raise StuckProcesses(sorted(alive))
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _fast_clear(marker: str, group: int) -> bool:
    """True when nothing of the step can be left: its group is empty and none of our children (orphans come
    to us, the subreaper) carries its marker or shows no environment (mid-exec). Without subreaper we cannot tell
    cheaply: False."""
    if group > 0:
        try:
            os.killpg(group, 0)
            return False
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
    return _children_clear(marker, group, zombie_clear=True)


def _children_clear(marker: str, group: int, zombie_clear: bool) -> bool:
    """Whether none of this subreaper's children can be a live process of the step: in its group or session
    (`group` > 0), carrying its marker, or with an environment that cannot be read now (a process mid-exec shows
    none for an instant). A zombie of another group counts as clear only with `zombie_clear` (a caller that has
    no group to tell the step's from others' takes a zombie as a reason to scan). False when this process is no
    subreaper or its children cannot be listed."""
    if not _RUNNER.subreaper or _RUNNER.pid != os.getpid():
        return False
    children = _children()
    if children is None:
        return False
    for pid in children:
        st = _stat(pid)
        if st is None:
            continue
        state, _, pgid, sid, _ = st
        if group > 0 and group in (pgid, sid):
            return False  # alive, or a zombie of the step to collect
        if state in (b"Z", b"X"):
            if not zombie_clear:
                return False
        elif _marker_or_unknown(pid, marker):
            return False
    return True


def _children() -> list[int] | None:
    """This process's children (every thread's list), or None when that cannot be told: no
    /proc/PID/task/TID/children, or the list changed while it was read. The kernel reads that list by position,
    so a child exiting (or one forked) meanwhile can shift it and skip another child: a daemon a step left behind
    would then be missed and go on writing into what was stored. So it is read twice, and only two equal readings
    are believed; the callers then scan /proc instead."""
    first = _children_once()
    if first is None:
        return None
    second = _children_once()
    return first if second is not None and sorted(second) == sorted(first) else None


def _children_once() -> list[int] | None:
    """One reading of this process's children (every thread's list), or None without the lists."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"{_PROC}/self/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            out += [int(p) for p in read_proc(f"{_PROC}/self/task/{tid}/children").split()]
        except FileNotFoundError:
            continue  # the thread ended
        except OSError:
            return None
    return out


def working_inside(path: str) -> bool:
    """Whether a process descended from this one has its working directory in `path` (True when that cannot be
    told). A process that escaped a step's reaping (`setsid env -i …`, no marker, its own session) is still
    ours as the subreaper's adopted orphan; one whose working directory is a step's build directory would write
    into the next step's $out were that directory reused (engine._Scratch asks before reusing one)."""
    pids = _descendants()
    if pids is None:
        return True
    inside = [os.fsencode(path.rstrip(os.sep) + os.sep)]
    return any(_cwd_inside(pid, inside) for pid in pids)


def reap_inside(paths: Collection[str], deadline: float = 30.0) -> int:
    """Kill every process descended from this runner that works in one of `paths` (a finished step's build
    directory, holding its $out and $TMPDIR; a job's output files and directories) or holds one of them, or a file
    under one, open or mapped; returns how many (reap_leftovers runs it around the reaping by marker): one that also
    cleared its environment (`setsid env -i …`) carries no marker, but is still ours to find as the subreaper's
    adopted orphan (or its descendant), and such a process is the only kind that could write into what is about
    to be stored (once a build directory is renamed into the store, a path by name no longer reaches it; a working
    directory, a descriptor or a mapping does). A process another running step started does not work in this
    step's paths. Nothing is found without subreaper or children lists."""
    inside = [os.fsencode(p.rstrip(os.sep) + os.sep) for p in paths]
    end = time.monotonic() + deadline
    killed: list[int] = []
    for _ in range(50):  # one may fork as it is found: look until none is left
        found = [pid for pid in _descendants() or () if _cwd_inside(pid, inside) or _holds_inside(pid, inside)]
        if found and any(_fork_of_ours(pid) for pid in found):
            found = [pid for pid in _past_exec(found) if _cwd_inside(pid, inside) or _holds_inside(pid, inside)]
        if not found:
            break
        stopped = _stop_then_kill(found)
        killed += stopped
        _wait_dead(stopped, max(0.0, end - time.monotonic()))
        _reap_adopted(stopped)
    return len(killed)


EXEC_WAIT = 0.5  # seconds a fork of this process gets to exec before it counts as holding what it inherited


def _fork_of_ours(pid: int) -> bool:
    """Whether a process is a child of this one still running this process's program with its command line: a
    fork another thread made to start a program (another job's shell) that has not exec'd yet. It holds a copy
    of every descriptor this process had open, a file an in-process job (a Snakemake template, a `run:` block in
    a thread) was writing included, until its exec closes them."""
    st = _stat(pid)
    if st is None or st[1] != os.getpid():
        return False
    try:
        return (os.readlink(f"{_PROC}/{pid}/exe") == os.readlink(f"{_PROC}/self/exe")
                and read_proc(f"{_PROC}/{pid}/cmdline") == read_proc(f"{_PROC}/self/cmdline"))
    except OSError:
        return False


def _past_exec(pids: list[int]) -> list[int]:
    """`pids` once the forks of ours among them have exec'd (or EXEC_WAIT passed: a fork that never execs, a
    `multiprocessing` worker, is judged as it is), so what they hold is theirs, not a copy of ours."""
    end = time.monotonic() + EXEC_WAIT
    while any(_fork_of_ours(pid) for pid in pids) and time.monotonic() < end:
        time.sleep(0.002)
    return pids


def _under(path: bytes, inside: list[bytes]) -> bool:
    """Whether `path` is one of `inside` (each ending in a slash) or under one."""
    path += b"/"
    return any(path.startswith(prefix) for prefix in inside)


def _descendants() -> list[int] | None:
    """Every live process descended from this one (children lists, thread by thread), or None when that cannot
    be told (no subreaper, no children lists). As the subreaper, the orphans of every step are among them."""
    if not _RUNNER.subreaper or _RUNNER.pid != os.getpid():
        return None
    todo = next((c for c in (_children() for _ in range(3)) if c is not None), None)
    if todo is None:  # the list kept changing (jobs starting and ending beside): from every process's parent
        return _descendants_by_parent()
    seen: dict[int, None] = {}  # (ordered, for a stable kill order)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen[pid] = None
        try:
            tasks = os.listdir(f"{_PROC}/{pid}/task")
        except OSError:
            continue  # gone, or another user's (then not one of the step's: it ran as us)
        for tid in tasks:
            with contextlib.suppress(OSError):
                todo += [int(p) for p in read_proc(f"{_PROC}/{pid}/task/{tid}/children").split()]
    return list(seen)


def _descendants_by_parent() -> list[int]:
    """Every live process descended from this one, from one scan of /proc (each process's parent): slower than
    the children lists, but not misled by a list that changes while it is read."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir(_PROC):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            kids.setdefault(st[1], []).append(int(entry))
    found: list[int] = []
    todo = list(kids.get(os.getpid(), ()))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += kids.get(pid, ())
    return found


def _cwd_inside(pid: int, inside: list[bytes]) -> bool:
    try:
        return _under(os.fsencode(os.readlink(f"{_PROC}/{pid}/cwd")), inside)
    except OSError:
        return False  # gone, or a zombie


def _holds_inside(pid: int, inside: list[bytes]) -> bool:
    """Whether a process has one of `inside`, or a file or directory under one, open or mapped."""
    fds = f"{_PROC}/{pid}/fd"
    with contextlib.suppress(OSError):
        for fd in os.listdir(fds):
            with contextlib.suppress(OSError):
                if _under(os.fsencode(os.readlink(f"{fds}/{fd}")), inside):
                    return True
    try:
        maps = read_proc(f"{_PROC}/{pid}/maps")
    except OSError:
        return False
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and _under(fields[5], inside):
            return True
    return False


def _members(marker: str, group: int, killed: set[tuple[int, int]]
             ) -> tuple[list[tuple[int, int]], list[int], set[int]]:
    """Scan /proc: (live processes of the step as (pid, start time), zombies of ours that belong to it, live
    orphans showing no environment, which may be the step's caught mid-exec: see _marked_since)."""
    me = os.getpid()
    alive: list[tuple[int, int]] = []
    zombies: list[int] = []
    unsettled: set[int] = set()
    for entry in os.listdir(_PROC):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        st = _stat(pid)
        if st is None:
            continue
        state, ppid, pgid, sid, start = st
        ours = pgid == group or sid == group or (pid, start) in killed
        if state in (b"Z", b"X"):
            if ours and ppid == me:
                zombies.append(pid)
            continue
        environ = b"" if ours else _environ(pid)
        if ours or (environ is not None and _carries(environ, marker)):
            alive.append((pid, start))
        elif environ == b"" and _orphan(pid, st):
            unsettled.add(pid)
    return alive, zombies, unsettled


def _reap_adopted(pids: list[int]) -> None:
    """Collect the exit status of orphans of the step that were re-parented to us. Only these pids: a
    wait for any child would steal the status of another thread's subprocess."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _stat(pid: int) -> tuple[bytes, int, int, int, int] | None:
    """(state, ppid, pgid, session, start time) of a process, or None if it is gone."""
    try:
        data = read_proc(f"{_PROC}/{pid}/stat")
        rest = data[data.rindex(b")") + 2:].split()
        return rest[0], int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19])
    except (OSError, ValueError, IndexError):
        return None


def _has_marker(pid: int, marker: str) -> bool:
    environ = _environ(pid)
    return environ is not None and _carries(environ, marker)


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass
