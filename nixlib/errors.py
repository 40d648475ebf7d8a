"""User-facing errors.

Every error a user can cause is a `NixWorkflowError` whose message is one paragraph
naming the step, file or key and saying what to do; the CLI prints it without a
traceback and exits non-zero.
"""

from __future__ import annotations


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
    """The run was stopped by Ctrl-C or SIGTERM; nothing partial entered the store."""
