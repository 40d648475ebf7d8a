"""Leases on a remote: `leases/<resolved key>` says "host H, process P is building this recipe until T".

Without them, two hosts that miss the same recipe at once both build it, and the second upload is dropped
(first writer wins). A lease is created with the backend's put-if-absent (S3 `If-None-Match: *`, link(2) on a
file:// remote), so of two hosts only one gets it; the other waits for the holder's record and substitutes it.
A lease is a courtesy, never a source of truth: it carries no result and is never trusted for one. So every
failure mode ends in "build it here": a waiter gives up after a bounded wait (with a warning), an expired
lease (a crashed or partitioned holder) is taken over, as is at once the lease of a process of this host and
boot that is gone (a run killed here), and a holder that fails releases its lease.

The holder renews its lease every third of its lifetime from a daemon thread while it builds, so a build may
last longer than the lease; hosts' clocks must agree to well within a lease's lifetime (default 5 minutes).

Settings: NIX_WORKFLOW_LEASE_SECONDS (lifetime, default 300), NIX_WORKFLOW_LEASE_WAIT (longest wait for
another host's lease, default 3600 s), NIX_WORKFLOW_LEASE_POLL (how often a waiter looks, default 5 s).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

from nixlib import boot, pids
from nixlib.remotes import Backend, Grew, NotAFile, RemoteDown, UnreadableKey, UnsafeDirectory


def _seconds(variable: str, default: float) -> float:
    try:
        value = float(os.environ.get(variable, default))
    except ValueError:
        return default
    return value if value >= 0 else default


def lifetime() -> float:
    return max(_seconds("NIX_WORKFLOW_LEASE_SECONDS", 300), 1.0)


def longest_wait() -> float:
    return _seconds("NIX_WORKFLOW_LEASE_WAIT", 3600)


def poll_interval() -> float:
    return max(_seconds("NIX_WORKFLOW_LEASE_POLL", 5), 0.05)


class Lease:
    """A lease this process holds (or tries to take) on one resolved key."""

    def __init__(self, backend: Backend, scratch: Path, rk: str) -> None:
        self.backend, self.scratch, self.rk = backend, scratch, rk
        self.key = f"leases/{rk}.json"
        self.token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return json.dumps({"host": socket.gethostname(), "boot": boot.boot_id(), "pid": os.getpid(), "user": user,
                           "token": self.token, "expires": time.time() + lifetime()}).encode()

    def _write(self, replace: bool, stale: Any = None) -> bool:
        """Publish this lease: put-if-absent, or over a lease (`replace`: renewing this one's, or taking over one
        found expired or garbled). `stale`: the identity of the lease found, which a backend that can (`take_over`:
        file:// by rename and link, S3 by a write conditional on the ETag read) replaces only if it is still there,
        so one of several takers wins."""
        path = self.scratch / f"lease-{self.token}"
        try:
            path.write_bytes(self._body())
            take_over = getattr(self.backend, "take_over", None)
            if replace and stale is not None and take_over is not None:
                return take_over(str(path), self.key, stale)
            return self.backend.put(str(path), self.key, replace=replace)
        finally:
            with contextlib.suppress(OSError):
                path.unlink()

    def take(self, replace: bool = False, stale: Any = None) -> bool:
        """Create the lease (put-if-absent; `replace`: take over an expired or garbled one, `stale` as in _write)
        and keep renewing it."""
        if not self._write(replace, stale):
            return False
        self._thread = threading.Thread(target=self._renew, name=f"nw-lease-{self.rk[:8]}", daemon=True)
        self._thread.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(lifetime() / 3):
            # (a missed renewal at worst lets another host build too)
            with contextlib.suppress(RemoteDown, UnsafeDirectory, OSError):
                self._write(replace=True)

    def release(self) -> None:
        """Stop renewing and remove the lease if it is still ours (best effort: it expires anyway)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(RemoteDown, UnsafeDirectory, OSError):
            current = read(self.backend, self.rk)
            if current is not None and current.get("token") == self.token:
                self.backend.delete(self.key)


MAX_AHEAD = 86400.0  # seconds: no holder states an expiry further ahead than this (or than two of its lifetimes)

PRESENT = object()  # inspect()'s identity of a lease that is there but that the backend cannot identify
# inspect()'s identity of something under a lease's name that is no regular file (file://: a FIFO, a directory, a
# symbolic link, planted or left there): no holder writes one, and, never replaced, it made that key unleasable for
# ever (every pushing host built without a lease). The backend's take_over moves it aside only if it still is one.
NOT_A_FILE: tuple[None, bytes] = (None, b"")


def read(backend: Backend, rk: str) -> dict[str, Any] | None:
    """The lease on `rk`, or None. A lease that cannot be parsed counts as absent (leases are never trusted for
    anything but waiting, and a garbled one must not make a host wait)."""
    return inspect(backend, rk)[0]


def inspect(backend: Backend, rk: str) -> tuple[dict[str, Any] | None, Any]:
    """(the lease on `rk` or None, as read(); which file was read, if one was: its Stream.ident (file://: inode,
    size and mtime; S3: the ETag) and the bytes read (for a backend's take_over), or PRESENT where the backend cannot
    tell, NOT_A_FILE for no regular file, or None if there is none). A garbled lease (None, with an identity)
    is taken over like an expired one: it made every pushing host build without a lease, for ever. So is one
    stating an expiry no holder writes (`Infinity`, or further ahead than MAX_AHEAD or two lifetimes), which made
    every host wait for its longest wait."""
    try:
        stream = backend.get(f"leases/{rk}.json")
    except NotAFile:  # (a FIFO, a directory, a link: never read; garbled, so taken over: see NOT_A_FILE)
        return None, NOT_A_FILE
    except UnreadableKey:  # (another user's 000 file: never read, counts as absent)
        return None, None
    if stream is None:
        return None, None
    with contextlib.closing(stream):
        try:
            data = stream.read(4096)
        except Grew:  # (being written as it is read: counts as absent, like any garbled lease)
            return None, PRESENT
    return _parse(data), PRESENT if stream.ident is None else (stream.ident, data)


def _parse(data: bytes) -> dict[str, Any] | None:
    """A lease's document, or None if it is garbled or states an expiry no holder writes."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            return None
        expires = float(doc["expires"])
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
        return None
    if not math.isfinite(expires) or expires - time.time() > max(MAX_AHEAD, 2 * lifetime()):
        return None
    return doc


def live(doc: dict[str, Any] | None) -> bool:
    """Not expired, and not the lease of a process of this very host and boot that is gone: a run killed here
    (^C twice, the OOM killer, a power cut's twin) left a lease that made the next run here wait for a
    dead process until it expired (5 minutes by default)."""
    if doc is None or float(doc["expires"]) <= time.time():
        return False
    mine = doc.get("host") == socket.gethostname() and doc.get("boot") is not None and doc.get("boot") == boot.boot_id()
    return not mine or pids.running(doc.get("pid"))


def holder(doc: dict[str, Any]) -> str:
    return f"{str(doc.get('user', '?'))[:40]}@{str(doc.get('host', '?'))[:80]} (pid {str(doc.get('pid', '?'))[:12]})"
