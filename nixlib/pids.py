"""Whether a process of this host still lives: how leftovers of dead processes (scratch directories, staging
entries, temp-root files, run journals) are told apart from those of running ones."""

from __future__ import annotations

import os


def alive(pid: object) -> bool:
    """True if a process with this pid exists on this host, or may (it belongs to another user)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # a number past any pid (from a planted file name) is no process
        return False
    except PermissionError:
        return True
    return True


def running(pid: object) -> bool:
    """alive(pid), and not a zombie: a killed process its parent has not reaped yet runs no more code."""
    if not alive(pid):
        return False
    state = _state(pid)
    return state is None or state != b"Z"  # (None: no /proc, or gone meanwhile: as alive() says)


def stopped(pid: int) -> bool:
    """True if process `pid` is stopped (SIGSTOP, Ctrl-Z, a debugger), so a wait for it will not end by itself."""
    return _state(pid) in (b"T", b"t")


def _state(pid: object) -> bytes | None:
    """The state letter of /proc/PID/stat (R, S, Z, T, ...), or None if it cannot be read."""
    try:
        fields = read_proc(f"/proc/{pid}/stat").rpartition(b")")[2].split()
    except OSError:
        return None
    return fields[0] if fields else None


def running_since(pid: object, since: float) -> bool:
    """running(pid), and that process started by `since` (epoch seconds): a process that started later only
    reuses the number (pid_max can be small) of the one that wrote `since`, which is dead."""
    if not running(pid):
        return False
    try:
        ticks = int(read_proc(f"/proc/{pid}/stat").rpartition(b")")[2].split()[19])  # field 22: start, in ticks
        return _boot_time() + ticks / os.sysconf("SC_CLK_TCK") <= since + 1  # btime has a 1 s resolution
    except (OSError, ValueError, IndexError, StopIteration):
        return True  # no /proc (or gone meanwhile): as running() says


def _boot_time() -> float:
    """The system's boot time in epoch seconds (/proc/stat's btime), read once."""
    if not _BOOT:
        line = next(ln for ln in read_proc("/proc/stat").splitlines() if ln.startswith(b"btime "))
        _BOOT.append(float(line.split()[1]))
    return _BOOT[0]


_BOOT: list[float] = []


def read_proc(path: str) -> bytes:
    """A /proc file's bytes with four system calls (open, read, read to the end, close) rather than the eight
    of a buffered open(); the reaper and the Luigi child walk read several per step, each syscall a few
    microseconds on a VM. Reads to the end: a /proc file may come a page at a time. Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
