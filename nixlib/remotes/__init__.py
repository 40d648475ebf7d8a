"""Remote storage backends: a small put-if-absent / get / exists interface over S3 and a plain directory.

nixlib.remote decides what is stored where and what is believed; a backend only moves bytes. Every backend
makes an upload visible atomically (a reader sees the whole object or nothing) and never lets a later writer
replace an earlier one unless asked (`replace=True`, used only to repair an object that failed its hash).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from nixlib.errors import NixWorkflowError


class RemoteDown(Exception):
    """The remote cannot be reached or used at all (network, server, missing directory or bucket): runs go on
    without it after one warning."""


class Stream:
    """A download: read(n) and close(), its size when the backend knows it, and an optional per-read callback
    (transfer progress) so callers need not wrap every stream they are handed."""

    def __init__(self, raw: Any, size: int | None) -> None:
        self.raw, self.size = raw, size
        self.on_read: Callable[[int], None] | None = None

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if self.on_read is not None:
            self.on_read(len(data))
        return data

    def close(self) -> None:
        self.raw.close()


Progress = Callable[[int], None]  # called with the number of bytes just sent


class Backend(Protocol):
    url: str
    guarantee: str  # one sentence for docs and `nw push`: what first-writer-wins means on this kind

    def get(self, key: str) -> Stream | None:
        """A readable stream of `key`, or None if absent."""

    def exists(self, key: str) -> bool:
        """True if `key` is present."""

    def put(self, path: str, key: str, replace: bool = False, progress: Progress | None = None) -> bool:
        """Upload the local file `path` as `key`; False (nothing written) if `key` exists and not `replace`.
        `progress(n)` is told of bytes sent as they go (as finely as the transport allows)."""

    def delete(self, key: str) -> None:
        """Remove `key` if present (used only for leases, never for objects or records)."""


def open_backend(url: str) -> Backend:
    """The backend for a remote URL: `s3://bucket/prefix[?endpoint=URL&region=R]` or `file:///dir`."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        try:
            from nixlib.remotes.s3 import S3Backend
        except ImportError:
            raise NixWorkflowError(f"remote {url!r} needs boto3: pip install 'nixworkflow[remote]'") from None
        return S3Backend(url)
    if parts.scheme == "file" or (not parts.scheme and url.startswith("/")):
        from nixlib.remotes.file import FileBackend

        if parts.netloc not in ("", "localhost"):
            raise NixWorkflowError(f"remote {url!r}: a file:// URL names an absolute directory on this host, "
                                   f"file:///DIRECTORY (three slashes); {parts.netloc!r} was read as a host name")

        return FileBackend(url)
    raise NixWorkflowError(f"remote {url!r}: unknown kind of URL; use s3://BUCKET/PREFIX (with ?endpoint=URL for a "
                           "non-AWS server) or file:///DIRECTORY")
