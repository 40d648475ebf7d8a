"""Whether a process of this host still lives: how leftovers of dead processes (scratch directories, staging
entries, temp-root files, run journals) are told apart from those of running ones."""

from __future__ import annotations

import os


def alive(pid: object) -> bool:
    """True if a process with this pid exists on this host, or may (it belongs to another user)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(pid: object) -> bool:
    """alive(pid), and not a zombie: a killed process its parent has not reaped yet runs no more code."""
    if not alive(pid):
        return False
    try:
        state = read_proc(f"/proc/{pid}/stat").rpartition(b")")[2].split()[:1]
    except OSError:
        return True  # no /proc (or gone meanwhile): as alive() says
    return state != [b"Z"]


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
