"""Copies of restored outputs made by a helper process, while Snakemake's per-job work goes on.

Restoring a cached job copies its outputs back from the store: on a filesystem without reflinks that is the
kernel copying every byte, on the thread that also does Snakemake's bookkeeping of the job (about a quarter of
a cached 1 MB job's cost). A thread cannot take that over (the scheduler's thread then loses the GIL at each of
its own system calls), a process can: the restoring pass hands each copy to this helper, computes the next
jobs' keys and post-processes earlier ones meanwhile, and waits for a job's copies only right before its
post-processing, which needs the files.

The helper makes exactly the copy `Store.materialise` makes (nixlib.trees.place: a copy under a temporary name next
to the destination, then an atomic rename), so a restored output is a real file with a fresh mtime, never a link into
the store. A destination that is a real directory (not removed by Snakemake's `prepare`) is left to the caller,
which then calls `Store.materialise`, as is everything when the helper cannot start or dies.

This file runs as the helper's main program by path (`runpy`), so it imports only the standard library and
nixlib.trees at module level: the helper starts in a few tens of milliseconds, without Snakemake.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from typing import IO

SEND_EVERY = 8  # requests written to the helper at once (see Copier._send)
# Answers the helper may have written that were not read yet: at most ~250 bytes each (errors are cut short),
# well within a pipe's 64 KiB, so the helper never blocks on its answers while the caller writes requests.
MAX_UNREAD = 128
FALLBACK = "fallback"  # the helper's answer for a copy the caller must make itself (see module docstring)


def copy_into_place(src: str, dest: str, link: str) -> str:
    """What the helper does for one request: `Store.materialise(h, dest, mode=link)` (nixlib.trees.place) for a
    copy, reflink or auto mode, unless `dest` is a real directory (then FALLBACK, nothing changed: replacing a
    directory is left to the caller). Returns "ok" or FALLBACK."""
    from nixlib import trees

    if os.path.isdir(dest) and not os.path.islink(dest):
        return FALLBACK
    trees.place(src, dest, link=link)
    return "ok"


def serve(requests: IO[str], replies: IO[str]) -> None:
    """The helper's loop: one JSON request per line ([id, src, dest, link]), one JSON reply per line
    ([id, "ok" | FALLBACK | "error: ..."]), in order; ends at end of input."""
    for line in requests:
        ident, src, dest, link = json.loads(line)
        try:
            answer = copy_into_place(src, dest, link)
        except Exception as e:  # noqa: BLE001 - reported to the caller, which then copies itself
            answer = f"error: {e}"[:200]
        replies.write(json.dumps([ident, answer]) + "\n")
        replies.flush()


class Copier:
    """The parent's side: `submit` a copy (returns its id at once), `done(id)` (never blocks) and `wait(id)` for
    its answer. Single-threaded use only (the restoring pass runs on one thread). Any trouble with the helper
    makes it unavailable: `submit` then returns None, `wait` FALLBACK, and the caller copies in-process."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._next = 0
        self._answers: dict[int, str] = {}
        self._queued: list[bytes] = []
        self._unread = b""
        self._sent = self._received = 0  # requests written, answers read
        self.made = 0  # copies the helper made (and the caller waited for)
        self._broken = False

    def _start(self) -> subprocess.Popen[bytes] | None:
        if self._proc is None and not self._broken:
            import nixlib

            # Isolated (-I: no PYTHON* variables, no user site): only the standard library and nixlib.
            home = os.path.dirname(os.path.dirname(os.path.abspath(nixlib.__file__)))
            code = (f"import sys; sys.path.insert(0, {home!r}); import runpy; "
                    f"runpy.run_path({__file__!r}, run_name='__nixworkflow_copier__')")
            try:
                self._proc = subprocess.Popen([sys.executable, "-I", "-c", code], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, close_fds=True)
            except OSError:
                self._broken = True
        return self._proc

    def pid(self) -> int | None:
        """The helper's process id while it runs: a cancelled run stops its jobs' processes, never this one,
        which may be writing a restored output (it ends when `close` ends its input)."""
        return self._proc.pid if self._proc is not None else None

    def submit(self, src: str | os.PathLike, dest: str | os.PathLike, link: str) -> int | None:
        """Ask for a copy; None when the helper is unavailable (copy in-process then)."""
        proc = self._start()
        if proc is None or proc.stdin is None:
            return None
        ident = self._next
        self._next += 1
        self._queued.append(json.dumps([ident, os.fspath(src), os.fspath(dest), link]).encode() + b"\n")
        if len(self._queued) >= SEND_EVERY and not self._send():
            return None
        return ident

    def _send(self) -> bool:
        """Write the queued requests in one go: each write wakes the helper, which on a busy machine can take
        the caller's core for a moment, so requests go in groups, not one by one."""
        count, queued, self._queued = len(self._queued), b"".join(self._queued), []
        if not queued:
            return True
        while self._sent - self._received > MAX_UNREAD:  # the helper could be blocked writing its answers
            if not self._pump(block=True):
                return False
        proc = self._proc
        try:
            assert proc is not None and proc.stdin is not None
            proc.stdin.write(queued)
            proc.stdin.flush()
            self._sent += count
            return True
        except (OSError, ValueError, AssertionError):
            self._fail()
            return False

    def done(self, ident: int) -> bool:
        """Whether `wait(ident)` would return at once (answered, or the helper gone); never blocks."""
        if ident not in self._answers and self._proc is not None:
            self._pump(block=False)
        return ident in self._answers or self._proc is None

    def wait(self, ident: int) -> str:
        """The helper's answer for request `ident`: "ok", FALLBACK or "error: ..." (copy in-process then)."""
        self._send()
        while ident not in self._answers:
            if self._proc is None or not self._pump(block=True):
                return FALLBACK
        answer = self._answers.pop(ident)
        self.made += answer == "ok"
        return answer

    def _pump(self, block: bool) -> bool:
        """Take in the answers the helper has written (with `block`, wait for at least some); False, the helper
        given up, when it is gone or says something unreadable."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            return False
        fd = proc.stdout.fileno()
        try:
            if not block and not select.select([fd], [], [], 0)[0]:
                return True
            data = os.read(fd, 1 << 16)
            if data:
                *lines, self._unread = (self._unread + data).split(b"\n")
                for line in lines:
                    ident, answer = json.loads(line)
                    self._answers[int(ident)] = str(answer)
                self._received += len(lines)
                return True
        except (OSError, ValueError, TypeError):
            pass
        self._fail()
        return False

    def _fail(self) -> None:
        self._broken = True
        self.close()

    def close(self) -> None:
        """End the helper (it exits at end of input; killed if it does not)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    serve(sys.stdin, sys.stdout)


if __name__ == "__nixworkflow_copier__":
    main()
