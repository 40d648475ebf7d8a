"""Remote storage backends: a small put-if-absent / get / exists interface over S3 and a plain directory.

nixlib.remote decides what is stored where and what is believed; a backend only moves bytes. Every backend
makes an upload visible atomically (a reader sees the whole object or nothing) and never lets a later writer
replace an earlier one unless asked (`replace=True`, used only to repair an object that failed its hash).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit

from nixlib.errors import NixWorkflowError


class RemoteDown(Exception):
    """The remote cannot be reached or used at all (network, server, missing directory or bucket): runs go on
    without it after one warning."""


class NotAFile(Exception):
    """What a remote holds under a key is not a regular file: a FIFO, device, socket, directory or symbolic link
    planted (or left) in a `file://` remote. Reading it could block for ever (a FIFO nobody writes) or never end
    (/dev/zero), so it is never opened for reading: the caller treats the key as one that failed verification
    (a warning naming the key; the step is built locally). The message names what it is ("a FIFO")."""


class UnsafeDirectory(Exception):
    """A directory of a `file://` remote that a push would write through (`tmp/`, `nar/`, `realisations/`,
    `leases/`) is a symbolic link or no directory: planted by someone who can write the remote, it would make the
    pusher create and rename files wherever it leads (~/.ssh, a checkout), as the pushing user. Nothing is written
    through it: the caller skips that push with one warning naming the directory, and the run goes on."""


class UnreadableKey(Exception):
    """One key of a `file://` remote cannot be opened (EACCES: a file of another user's, mode 000). The key, not
    the remote, failed us: the caller treats it as one that failed verification and builds that step locally."""


class Grew(Exception):
    """A file read from a `file://` remote has more bytes than it had when it was opened: something keeps writing
    it (uploads are published whole, so no upload does), and reading on could never end. The caller treats the
    key as one that failed verification."""


class Stream:
    """A download: read(n) and close(), its size when the backend knows it, and an optional per-read callback
    (transfer progress) so callers need not wrap every stream they are handed. A read that fails (a share
    that went away mid-file: EIO, ESTALE; a connection reset in the client library) is RemoteDown, like a
    failed request: the remote failed us, which costs a warning, never the run (it was a raw OSError that
    failed `nw run` with "Input/output error")."""

    def __init__(self, raw: Any, size: int | None, where: str = "", bounded: bool = False,
                 ident: Any = None) -> None:
        self.raw, self.size, self.where = raw, size, where
        self.ident = ident  # which file this is, where the backend can tell (file://: device and inode)
        self.on_read: Callable[[int], None] | None = None
        self._left = size if bounded else None  # bytes the file had when it was opened, minus those given

    def read(self, n: int = -1) -> bytes:
        if self._left is not None:  # at most one byte past the size: it tells a file that grew (Grew)
            n = self._left + 1 if n < 0 else min(n, self._left + 1)
        try:
            data = self.raw.read(n)
        except Exception as e:  # noqa: BLE001 - OSError from a file, the client library's transfer errors
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)[:200]
            raise RemoteDown(f"reading {self.where or 'a download'} failed: {why}") from None
        if self._left is not None:
            self._left -= len(data)
            if self._left < 0:
                raise Grew(f"it grew past the {self.size} bytes it had when it was opened (still being written?)")
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


def split_url(text: str, remote: str | None = None) -> SplitResult:
    """urlsplit(`text`); a NixWorkflowError naming the remote URL if urllib cannot parse it. `remote`: the remote
    URL `text` is the ?endpoint= of, named with it (an endpoint's port is checked too: boto3 would use it)."""
    try:
        parts = urlsplit(text)
        if remote is not None:
            parts.port  # noqa: B018 - parsing the port is the check ("Port could not be cast to integer value")
    except ValueError as e:
        part = f": endpoint {text!r}" if remote is not None else ""
        raise NixWorkflowError(f"remote {remote or text!r}{part} is not a valid URL ({e}); write "
                               "s3://BUCKET/PREFIX[?endpoint=URL] or file:///DIRECTORY") from None
    return parts


def open_backend(url: str) -> Backend:
    """The backend for a remote URL: `s3://bucket/prefix[?endpoint=URL&region=R]` or `file:///dir`. A URL urllib
    cannot parse is a NixWorkflowError naming it (its bare ValueError, "Invalid IPv6 URL", escaped as a traceback
    from every caller that did not check the URL first)."""
    parts = split_url(url)
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
        if parts.scheme and (parts.query or parts.fragment or not parts.path.startswith("/")):
            # (settings were silently dropped, and file:DIR was relative to wherever a worker process ran)
            raise NixWorkflowError(f"remote {url!r}: a file:// URL is file:///DIRECTORY, an absolute path, with no "
                                   "settings after '?' or '#' (in a directory name, write them %3F and %23)")

        return FileBackend(url)
    raise NixWorkflowError(f"remote {url!r}: unknown kind of URL; use s3://BUCKET/PREFIX (with ?endpoint=URL for a "
                           "non-AWS server) or file:///DIRECTORY")
