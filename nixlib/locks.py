"""Locks that every user of a shared store can take.

flock(2) works on a read-only descriptor, so a lock file is opened O_RDONLY (created world-
readable if missing): a lock file created by another user under any umask is still usable,
with no write access and no ownership check. A lock file nobody but its owner can open (mode
000, or a planted symlink) must not hang or fail the run: the lock falls back to a per-user
name beside it, then to a private file under the user's cache, and says so once. A fallback
lock no longer excludes the squatter's processes: at worst a recipe runs once per user
instead of once (never a wrong result: each user serves only records it trusts).

NIX_WORKFLOW_LOCKS=soft selects filelock's SoftFileLock (lock files created with O_EXCL) for
filesystems without working flock; soft locks are cooperative (see docs/trust.md).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import filelock

_warned: set[str] = set()
_warn_lock = threading.Lock()


def _open(path: Path) -> int:
    """Open (creating world-readable if missing) a lock file for flock; OSError if that is impossible."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return os.open(path, flags)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o666)  # the umask applies at creation; anyone must be able to open it later
    return fd


def private_dir() -> Path:
    """The user's own cache directory ($XDG_CACHE_HOME or ~/.cache, then nixworkflow)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nixworkflow"


def candidates(path: Path) -> Iterator[Path]:
    """Where the lock for `path` may live: the shared name, this user's name beside it, a private file. Made one
    at a time: every step takes a lock, and the shared name is almost always the one used."""
    yield path
    yield path.with_name(f"{path.stem}.{os.getuid()}{path.suffix}")
    yield private_dir() / "locks" / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.lock"


def held(path: Path) -> bool:
    """True if a process holds the lock for `path` now (in any of its `candidates`). Tested with a non-blocking
    shared flock on the existing files: nothing is created, nothing waited on. A soft lock is held while its
    file exists."""
    if os.environ.get("NIX_WORKFLOW_LOCKS") == "soft":
        return os.path.lexists(path)
    for candidate in candidates(path):
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
        finally:
            os.close(fd)
    return False


def open_fd(path: Path) -> int:
    """A descriptor to flock for `path`, falling back (with a warning) when the shared file is unusable."""
    errors = []
    for n, candidate in enumerate(candidates(path)):
        try:
            if n == 2:
                candidate.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = _open(candidate)
        except OSError as e:
            errors.append(f"{candidate}: {e.strerror or e}")
            continue
        if n:
            _warn(f"warning: lock file {path} cannot be opened ({errors[0]}); another user may have created it "
                  f"to block you. Using {candidate} instead: runs of that user are no longer excluded.")
        return fd
    from nixlib.errors import NixWorkflowError

    raise NixWorkflowError(f"cannot open any lock file for {path}: {'; '.join(errors)}. Ask the store's "
                           "administrator to remove the lock file, or use a private store (NIX_WORKFLOW_STORE=DIR).")


class FlockLock:
    """An exclusive or shared flock on a lock file; a context manager, reusable, safe across threads
    (each acquisition opens its own descriptor, and flock excludes descriptors of one process too)."""

    def __init__(self, path: str | os.PathLike, shared: bool = False) -> None:
        self.path = Path(path)
        self.shared = shared
        self._fds: list[int] = []
        self._guard = threading.Lock()

    def acquire(self, waiting: Callable[[float, int], None] | None = None) -> None:
        """Take the lock. With `waiting`, a held lock is polled instead of waited on in flock(2), and
        `waiting(seconds waited, descriptor)` is called between polls: it may report the wait or raise to give
        up (a blocking flock in a worker thread cannot be interrupted, so Ctrl-C would wait for the holder)."""
        while True:
            fd = open_fd(self.path)
            try:
                op = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
                if waiting is None:
                    _flock(fd, op)
                else:
                    _flock_polling(fd, op, waiting)
            except BaseException:
                os.close(fd)
                raise
            if _still_linked(fd, self.path):
                with self._guard:
                    self._fds.append(fd)
                return
            os.close(fd)  # removed (gc of idle locks) or replaced while we waited: lock the new file

    def held_fd(self) -> int | None:
        """The descriptor of the newest acquisition: a step's processes inherit it, so the lock stays held
        while anything of the step still runs, even if the runner itself was killed."""
        with self._guard:
            return self._fds[-1] if self._fds else None

    def release(self) -> None:
        with self._guard:
            fd = self._fds.pop() if self._fds else None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> FlockLock:
        self.acquire()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _flock(fd: int, op: int) -> None:
    while True:
        try:
            fcntl.flock(fd, op)
            return
        except InterruptedError:
            continue


def _flock_polling(fd: int, op: int, waiting: Callable[[float, int], None]) -> None:
    """flock(2) without blocking in the kernel: try, then call `waiting` and sleep (0.02 s, growing to 0.2 s)."""
    start = time.monotonic()
    pause = 0.02
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except InterruptedError:
            continue
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        waiting(time.monotonic() - start, fd)
        time.sleep(pause)
        pause = min(0.2, pause * 2)


def holder(fd: int) -> int | None:
    """The pid /proc/locks names for a flock on the file of `fd` held by another descriptor (the process that
    took it; a child that inherited it keeps it held after that pid is gone), or None if unknown."""
    st = os.fstat(fd)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
            continue  # "->" marks a blocked waiter, not a holder
        if fields[5] == wanted and fields[4].isdigit():
            return int(fields[4])
    return None


def _still_linked(fd: int, path: Path) -> bool:
    """True unless the path we locked was unlinked or replaced (then another process may lock a new file).
    Fallback files are checked by their own names, so only compare when the shared name is ours."""
    st = os.fstat(fd)
    for candidate in candidates(path):
        try:
            cst = os.stat(candidate, follow_symlinks=False)
        except OSError:
            continue
        if (cst.st_dev, cst.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def lock(path: str | os.PathLike) -> FlockLock | filelock.BaseFileLock:
    """The exclusive lock for `path` (a context manager), soft when NIX_WORKFLOW_LOCKS=soft."""
    if os.environ.get("NIX_WORKFLOW_LOCKS") == "soft":  # NFS without working flock
        return filelock.SoftFileLock(path, mode=0o666)
    return FlockLock(path)


@contextlib.contextmanager
def flocked(path: str | os.PathLike, shared: bool = False) -> Iterator[None]:
    """Hold a shared or exclusive flock on `path` for the duration of the block."""
    with FlockLock(path, shared=shared):
        yield


def remove_if_idle(path: str | os.PathLike) -> bool:
    """Remove a lock file nobody holds (gc); False if it is held or cannot be removed (another user's)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    try:
        path.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _warn(message: str) -> None:
    with _warn_lock:
        if message in _warned:
            return
        _warned.add(message)
    print(message, file=sys.stderr)
