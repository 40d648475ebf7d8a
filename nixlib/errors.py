"""User-facing errors.

Every error a user can cause is a `NixWorkflowError` whose message is one paragraph
naming the step, file or key and saying what to do; the CLI prints it without a
traceback and exits non-zero.
"""

from __future__ import annotations

import os
import stat
from typing import Any


class NixWorkflowError(Exception):
    """An error caused by input the user can fix."""


class StepFailed(NixWorkflowError):
    """A step's command exited non-zero, was killed, or broke its output contract."""

    def __init__(self, step: str, message: str, log: str | None = None) -> None:
        self.step = step
        self.log = log
        suffix = f" Its log is kept at {log}." if log else ""
        super().__init__(f"step '{step}' failed: {message}.{suffix}")


class Interrupted(NixWorkflowError):
    """The run was stopped by Ctrl-C or SIGTERM; nothing partial entered the store. `results` holds what the run
    had finished (and an Interrupted for each step it stopped), so the steps that completed are still linked and
    recorded for `nw show`/`nw log`; `log` is a stopped step's log."""

    def __init__(self, message: str, results: dict[Any, Any] | None = None, log: str | None = None) -> None:
        super().__init__(message)
        self.results = results or {}
        self.log = log


def check_readable(path: str | os.PathLike, what: str) -> None:
    """Raise a one-paragraph NixWorkflowError unless `path` is a regular file this user can read.

    Front doors call this before handing a file to Python or Nix, whose own reports of a missing,
    unreadable or directory path are a raw `[Errno 2]` or a traceback. Opened non-blocking, so a FIFO
    given by mistake is reported, not waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NixWorkflowError(f"{what} {path} does not exist") from None
    except PermissionError:
        raise NixWorkflowError(f"{what} {path} cannot be read: permission denied. Check the permissions of the file "
                               "and of the directories above it.") from None
    except OSError as e:
        raise NixWorkflowError(f"{what} {path} cannot be read: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if stat.S_ISDIR(mode):
        raise NixWorkflowError(f"{what} {path} is a directory; give the path of the file itself")
    if not stat.S_ISREG(mode):
        raise NixWorkflowError(f"{what} {path} is not a regular file")
