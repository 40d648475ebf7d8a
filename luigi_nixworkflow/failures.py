"""nixworkflow's own errors in Luigi's log: one paragraph, not a traceback of the adapter and engine.

Luigi logs a task whose run() raises with `logger.exception` (the whole stack), and a complete() or deps() that
raises with the formatted traceback. For a NixWorkflowError that stack is thirty lines of the engine and the
adapter around a message that already says what failed and where to look (a step's exit status and its kept
log, a parameter that cannot be keyed, a bad remote URL in luigi.cfg): those are logged as the message alone.
Any other exception (a bug, an error in the task's own Python code) keeps Luigi's traceback, which its author
needs. The hooks are Luigi's worker methods, wrapped once at import (pinned by tests/test_luigi_failures.py);
a Luigi without them keeps its own logging.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import luigi
import luigi.worker

from luigi_nixworkflow import journal, registry, settings
from nixlib.errors import NixWorkflowError

logger = logging.getLogger("luigi-interface")


def message_of(formatted: str) -> str | None:
    """The message of a formatted traceback whose (last) exception is a NixWorkflowError, else None.

    Luigi hands complete() and deps() errors over as text (`traceback.format_exc()`, also from the processes
    of parallel scheduling), which ends with `<module>.<class>: <message>`; the message may span lines."""
    names = {f"{c.__module__}.{c.__qualname__}" for c in _subclasses(NixWorkflowError)}
    lines = formatted.rstrip("\n").split("\n")
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Traceback (most recent call last):"):
            return None  # the last exception's own traceback begins after any line of ours
        head, sep, rest = lines[i].partition(": ")
        if sep and head in names:
            return "\n".join([rest, *lines[i + 1:]])
    return None


def _subclasses(cls: type) -> list[type]:
    found, todo = [], [cls]
    while todo:
        c = todo.pop()
        found.append(c)
        todo.extend(c.__subclasses__())
    return found


def explain(exception: BaseException) -> str | None:
    """What a NixTask's on_failure() sends the scheduler (luigid's page, error e-mails) for our own errors."""
    return f"nixworkflow: {exception}" if isinstance(exception, NixWorkflowError) else None


def _last_line(formatted: str) -> str:
    """`Type: message` of a formatted traceback (its last non-empty line)."""
    return next((line for line in reversed(formatted.strip().split("\n")) if line.strip()), "an error").strip()


def _journal_broken(task: Any, reason: str) -> None:
    """Show a NixTask whose complete() raised as failed in `nw view`: Luigi fires no failure event for it (only
    DEPENDENCY_MISSING), so without this it read as interrupted, as if its run had been killed."""
    try:
        if registry.is_nix(task):
            journal.failed(settings.engine(), task.task_id,
                           f"complete() raised {reason} (Luigi runs neither it nor what needs it)")
    except Exception as e:  # noqa: BLE001 - journalling never changes what Luigi does
        logger.debug("nixworkflow: could not journal the failed complete() of %s: %s", task, e)


def install() -> None:
    """Wrap Luigi's worker hooks once (idempotent)."""
    process = getattr(luigi.worker, "TaskProcess", None)
    worker = getattr(luigi.worker, "Worker", None)
    if process is not None and hasattr(process, "_handle_run_exception"):
        process._handle_run_exception = _run_failed(process._handle_run_exception)
    if worker is not None:
        for name in ("_log_complete_error", "_log_dependency_error"):
            if hasattr(worker, name):
                setattr(worker, name, _check_failed(getattr(worker, name), name))


def _run_failed(original: Any) -> Any:
    if getattr(original, "_nw_wrapper", False):
        return original

    def handle_run_exception(self: Any, ex: BaseException) -> Any:
        if not isinstance(ex, NixWorkflowError):
            return original(self, ex)
        logger.error("[pid %s] Worker %s failed    %s: %s", os.getpid(), self.worker_id, self.task, ex)
        self.task.trigger_event(luigi.Event.FAILURE, self.task, ex)
        return self.task.on_failure(ex)

    handle_run_exception._nw_wrapper = True  # type: ignore[attr-defined]
    return handle_run_exception


def _check_failed(original: Any, name: str) -> Any:
    if getattr(original, "_nw_wrapper", False):
        return original
    method = "complete()" if name == "_log_complete_error" else "deps()"

    def log_error(self: Any, task: Any, formatted: str) -> Any:
        message = message_of(formatted)
        if method == "complete()":
            _journal_broken(task, message or _last_line(formatted))
        if message is None:
            return original(self, task, formatted)
        logger.warning("Will not run %s or any dependencies due to an error in %s: %s", task, method, message)
        return None

    log_error._nw_wrapper = True  # type: ignore[attr-defined]
    return log_error
