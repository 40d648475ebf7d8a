"""Progress of large transfers to and from a remote, shown only when stderr is a terminal.

A pull or push of a large object can take minutes, and on a terminal a silent wait looks like a hang. The
output is whole lines (a start line, one every few seconds, a last line), not a redrawn bar: `nw run`
redraws its own status line on the terminal, and several steps may transfer at once, so lines that first
clear the current terminal line interleave cleanly with both. Off a terminal (CI logs, pipes, Snakemake
and Luigi logs) nothing is printed: a log gains nothing from a byte counter.

`NIX_WORKFLOW_PROGRESS_MIN_BYTES` (default 32 MiB) is the smallest transfer shown;
`NIX_WORKFLOW_PROGRESS_EVERY` (default 2 seconds) the interval between lines of one transfer.
"""

from __future__ import annotations

import os
import sys
import threading
import time

_LOCK = threading.Lock()
_MIB = 1 << 20


def _number(variable: str, default: float) -> float:
    try:
        return float(os.environ.get(variable, default))
    except ValueError:
        return default


def _size(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / _MIB:.1f} MiB"


class Transfer:
    """Bytes moved for one object; prints on a terminal only, and only for a large transfer."""

    def __init__(self, verb: str, key: str, total: int | None) -> None:
        self.verb, self.key, self.total = verb, key, total
        self.done_bytes = 0
        self.enabled = (total is not None and total >= _number("NIX_WORKFLOW_PROGRESS_MIN_BYTES", 32 * _MIB)
                        and sys.stderr.isatty())
        self.every = _number("NIX_WORKFLOW_PROGRESS_EVERY", 2.0)
        self.start = self.last = time.monotonic()
        if self.enabled:
            self._line(f"{verb} {key} ({_size(total or 0)})")

    def add(self, n: int) -> None:
        """Count `n` more bytes; a line at most every `every` seconds."""
        self.done_bytes += n
        if self.enabled and n:
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                percent = 100 * self.done_bytes / self.total if self.total else 0.0
                self._line(f"{self.verb} {self.key}: {_size(self.done_bytes)} of {_size(self.total or 0)} "
                           f"({percent:.0f}%, {self._rate(now)})")

    def finish(self, ok: bool = True) -> None:
        """The last line: how much moved and how fast, or that the transfer stopped."""
        if self.enabled:
            now = time.monotonic()
            how = "done" if ok else "stopped"
            self._line(f"{self.verb} {self.key}: {how}, {_size(self.done_bytes)} in {now - self.start:.1f} s "
                       f"({self._rate(now)})")
            self.enabled = False

    def _rate(self, now: float) -> str:
        return f"{self.done_bytes / _MIB / max(now - self.start, 1e-6):.0f} MiB/s"

    @staticmethod
    def _line(text: str) -> None:
        with _LOCK:
            sys.stderr.write(f"\r\033[Knw: {text}\n")
            sys.stderr.flush()
