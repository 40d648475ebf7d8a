"""Temp roots: what a live process uses is kept by `nw gc` for as long as the process lives (as in Nix).

Output links keep a step's result once it has finished (nw run links each step as it ends), so a running
pipeline registers everything it looks up or produces here first. Each process keeps one file,
`<store>/temproots/<host>-<pid>-<random>`, created under the store's gc guard and held with an exclusive flock
for the process's life; it appends one name per line: object hashes and realisation keys (both 52-character
base32, so one list serves both; a listed realisation keeps its record, its outputs and their whole upstream).

The protocol that closes "gc planned, then a process found the object, then gc deleted it": a name is
appended while the process holds the gc guard shared, and only then does the process read the record or
check the object. `nw gc` holds the guard exclusive from planning to deleting, so either the name was
appended before gc planned (gc sees it and keeps it), or gc had finished (the object is gone, the check
fails, and the step counts as a miss: it runs again). The file is removed when the process exits
normally; a file whose flock gc can take has a dead owner (killed) and gc removes it. A forked child
(a Luigi worker process) shares its parent's file and lock.

Cost: one fd for the file and one for the guard per process and store; a registration of names not yet
registered by this process is flock + write + unlock (+ one stat), anything already registered costs
nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import secrets
import socket
import threading
from collections.abc import Iterable
from pathlib import Path

from nixlib import locks, nar, pids

DIR = "temproots"
_BY_ROOT: dict[Path, TempRoots] = {}
_REGISTRY_LOCK = threading.Lock()


class TempRoots:
    """This process's temp roots in one store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._fd: int | None = None  # the roots file, flocked exclusive for the life of the process
        self._path: Path | None = None
        self._pid = 0  # the process that created the file (a forked child shares it, never removes it)
        self._guard: int | None = None  # the store's gc.lock, taken shared around each registration
        self._guard_id: tuple[int, int] | None = None
        self._known: set[str] = set()
        self._guard_path = f"{root}/locks/gc.lock"  # (a string: a cached lookup registers one key per step)
        self.reading_only = False  # a store this process cannot write, opened to read (Store's `writable`)

    def add(self, names: Iterable[str], guarded: bool = False) -> None:
        """Register `names` (object hashes or realisation keys) before they are used. `guarded`: the
        caller already holds the store's gc guard (shared), e.g. while ingesting and recording."""
        if self.reading_only:
            return  # (none can be written there: a query that reads what its owner's `nw gc` removes finds it absent)
        known = self._known
        new = [n for n in names if n not in known]
        if not new:
            return
        with self._lock:
            # (one name, as a lookup registers: no de-duplication to do)
            new = [n for n in (new if len(new) == 1 else dict.fromkeys(new)) if n not in known]
            if not new:
                return
            if guarded:
                self._append(new)
                return
            guard = self._lock_guard()
            try:
                self._append(new)
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)

    def _lock_guard(self) -> int:
        """Take the gc guard shared on a descriptor kept open (the guard file is never removed; should it be
        replaced anyway, the new file is locked instead)."""
        path = self._guard_path
        while True:
            if self._guard is None:
                self._guard = locks.open_fd(Path(path))
                st = os.fstat(self._guard)
                self._guard_id = (st.st_dev, st.st_ino) if _identity(path) == (st.st_dev, st.st_ino) else None
            fcntl.flock(self._guard, fcntl.LOCK_SH)
            if self._guard_id is None or _identity(path) == self._guard_id:
                return self._guard
            os.close(self._guard)  # replaced while we held the old file: lock the new one
            self._guard = None

    def _append(self, new: list[str]) -> None:
        if self._fd is None:
            self._fd, self._path = _create(self.root)
            self._pid = os.getpid()
        os.write(self._fd, "".join(n + "\n" for n in new).encode())
        self._known.update(new)

    def release(self) -> None:
        """Remove the file at a normal exit (a killed process leaves it to gc, which sees the lock is free)."""
        if not self._lock.acquire(timeout=10):
            return
        try:
            if self._fd is not None and self._pid == os.getpid():
                with contextlib.suppress(OSError):
                    os.unlink(self._path)  # type: ignore[arg-type]
                os.close(self._fd)
                self._fd, self._path = None, None
                self._known.clear()
        finally:
            self._lock.release()


def _identity(path: Path | str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def of(root: Path) -> TempRoots:
    """The temp roots of this process in the store at `root` (one per process and store)."""
    found = _BY_ROOT.get(root)
    if found is None:
        with _REGISTRY_LOCK:
            found = _BY_ROOT.setdefault(root, TempRoots(root))
    return found


def _create(root: Path) -> tuple[int, Path]:
    """Create and lock this process's roots file (the caller holds the gc guard, so gc cannot see the file
    between its creation and its lock and take it for a dead process's)."""
    d = root / DIR
    if not d.is_dir():
        try:
            d.mkdir()
            d.chmod(0o1777)  # every user of a shared store keeps roots here
        except FileExistsError:
            pass
    path = d / f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
    os.fchmod(fd, 0o644)  # readable by another user's gc whatever the umask
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass  # no flock here (e.g. some NFS): gc then judges the owner by its pid
    return fd, path


def _after_fork() -> None:
    """A forked child (a Luigi worker process) shares its parent's files and their locks, which keeps the
    roots alive while either lives; it only needs fresh thread locks."""
    for t in _BY_ROOT.values():
        t._lock = threading.Lock()


def _release_all() -> None:
    for t in list(_BY_ROOT.values()):
        t.release()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(_release_all)


# ---- the collector's side ------------------------------------------------------------------------------

def live(root: Path) -> tuple[set[str], list[Path]]:
    """(names listed by live processes, files of dead ones). Call with the gc guard held exclusive."""
    names: set[str] = set()
    dead: list[Path] = []
    d = root / DIR
    try:
        entries = os.listdir(d)
    except FileNotFoundError:
        return names, dead
    for entry in entries:
        path = d / entry
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if _owner_alive(fd, entry):
                with os.fdopen(os.dup(fd), encoding="utf-8", errors="replace") as f:
                    names.update(line for line in f.read().split("\n") if nar.is_nar_hash(line))
            else:
                dead.append(path)
        finally:
            os.close(fd)
    return names, dead


def _owner_alive(fd: int, entry: str) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no flock on this filesystem: a file of this host is judged by its pid, others are kept
        host = socket.gethostname()
        pid = entry[len(host) + 1:].split("-")[0] if entry.startswith(f"{host}-") else ""
        return not pid.isdigit() or pids.running(int(pid))
    return False


