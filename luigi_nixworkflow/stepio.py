"""The step's surroundings while its Python runs inside the Luigi worker: its environment and its log.

run() and produce() are not subprocesses, so the step's environment (the env's PATH and variables,
its markers) is put into os.environ for exactly as long as they run, and what they print goes both
to the worker's console and to the step's log.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from typing import IO, Any

_OUTSIDE: list[dict[str, str]] = []  # the worker's own environment, while steps run (innermost last)


@contextlib.contextmanager
def environ(variables: Mapping[str, str]) -> Iterator[None]:
    """The step's environment for the duration of produce(): subprocesses it starts see the env's PATH."""
    saved = {name: os.environ.get(name) for name in set(os.environ) | set(variables)
             if os.environ.get(name) != variables.get(name)}
    _OUTSIDE.append(dict(os.environ))
    _apply({name: variables.get(name) for name in saved})
    try:
        yield
    finally:
        _apply(saved)
        _OUTSIDE.pop()


def outside() -> Mapping[str, str]:
    """The environment Luigi runs in, also while a step's run() has put its own in os.environ: a task that run()
    yields is keyed inside it (keying.environment) with the variables it is keyed with outside."""
    return _OUTSIDE[0] if _OUTSIDE else os.environ


def _apply(changes: Mapping[str, str | None]) -> None:
    """Set (or, for None, unset) only the variables that differ: each change is a putenv."""
    for name, value in changes.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


class _Tee:
    """Writes to several text streams; anything else (fileno, isatty, encoding) is the first one's."""

    def __init__(self, *streams: IO[str]) -> None:
        self.streams = streams

    def __getattr__(self, name: str) -> Any:
        return getattr(self.streams[0], name)

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


@contextlib.contextmanager
def tee(log: IO[str]) -> Iterator[None]:
    """print() in produce() goes to the worker's console and to the step's log."""
    with contextlib.redirect_stdout(_Tee(sys.stdout, log)), contextlib.redirect_stderr(_Tee(sys.stderr, log)):
        yield
