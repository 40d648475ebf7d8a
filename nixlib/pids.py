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
