"""Unpack a Nix archive (NAR) stream into a directory tree: the inverse of nixlib.nar, like `nix-store --restore`.

Remotes store objects as NAR streams; a pulled object is unpacked into a staging directory and then goes
through the store's ingest, which re-hashes it, so what enters the store is named by what it contains. This
reader is therefore strict where a lax one would let two different streams unpack to one tree: it accepts
only the canonical form nixlib.nar writes (and Nix writes) — entries in strictly increasing byte order, no
empty, `.`, `..` or slash-bearing names, zero padding, nothing after the root node — so a stream that
unpacks at all re-serialises to exactly its own bytes, and the SHA-256 of the stream (`Reader.digest`) is the
object's name before a byte of it is trusted.

Memory stays bounded whatever the object's size: file contents are copied in 1 MiB chunks, directories are
walked with an explicit stack of descriptors (no recursion limit, no path-length limit).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from nixlib import base32

Read = Callable[[int], bytes]
"""Returns up to n bytes (fewer only at the end of the stream), like a binary file's read."""

_CHUNK = 1 << 20
MAX_NAME = 255  # a longer entry name cannot be created on Linux filesystems anyway
MAX_TARGET = 4095  # PATH_MAX - 1: the longest symlink target Linux accepts
MAX_TOKEN = 64  # longest keyword ("nix-archive-1", "executable", ...)


class NarError(ValueError):
    """A stream that is not a canonical NAR; the message says what and where (byte offset)."""


class Reader:
    """Reads a NAR stream while hashing every byte, so the caller can compare the stream with its name."""

    def __init__(self, read: Read) -> None:
        self._read = read
        self.offset = 0
        self._sha = hashlib.sha256()

    def exact(self, n: int) -> bytes:
        parts, need = [], n
        while need:
            data = self._read(min(need, _CHUNK))
            if not data:
                raise NarError(f"stream ends early at byte {self.offset} (needed {need} more bytes)")
            parts.append(data)
            need -= len(data)
            self._sha.update(data)
            self.offset += len(data)
        return b"".join(parts)

    def length(self) -> int:
        return int.from_bytes(self.exact(8), "little")

    def padding(self, n: int) -> None:
        pad = -n % 8
        if pad and self.exact(pad) != b"\0" * pad:
            raise NarError(f"non-zero padding at byte {self.offset - pad}")

    def string(self, limit: int) -> bytes:
        n = self.length()
        if n > limit:
            raise NarError(f"string of {n} bytes at byte {self.offset - 8} (at most {limit} allowed here)")
        data = self.exact(n)
        self.padding(n)
        return data

    def expect(self, token: bytes) -> None:
        got = self.string(MAX_TOKEN)
        if got != token:
            raise NarError(f"expected {token.decode()!r} before byte {self.offset}, found {got[:40]!r}")

    def contents(self, fd: int) -> None:
        """Copy a file's contents (length-prefixed, padded) into `fd` in bounded chunks."""
        n = self.length()
        left = n
        while left:
            data = self.exact(min(left, _CHUNK))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            left -= len(data)
        self.padding(n)

    def at_end(self) -> bool:
        return not self._read(1)

    def digest(self) -> str:
        """Nix base32 SHA-256 of every byte read so far (the object's name, once the stream is complete)."""
        return base32.encode(self._sha.digest())


def restore(read: Read, dest: str | os.PathLike) -> str:
    """Unpack the NAR read through `read` at `dest` (which must not exist); returns the stream's Nix base32
    SHA-256. Raises NarError for a stream that is not a complete canonical NAR (what was unpacked so far is
    left for the caller to remove) and OSError for a filesystem failure."""
    r = Reader(read)
    r.expect(b"nix-archive-1")
    dest = Path(dest)
    parent = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _node(r, parent, os.fsencode(dest.name))
    finally:
        os.close(parent)
    if not r.at_end():
        raise NarError(f"trailing data after the archive at byte {r.offset}")
    return r.digest()


def _node(r: Reader, dir_fd: int, name: bytes) -> None:
    """Create the node `name` in `dir_fd`; a directory's entries are created iteratively (any depth)."""
    stack: list[tuple[int, bytes | None]] = []  # (descriptor of an open directory, last entry name)
    try:
        _create(r, dir_fd, name, stack)
        while stack:
            fd, last = stack[-1]
            token = r.string(MAX_TOKEN)
            if token == b")":
                os.close(fd)
                stack.pop()
                if stack:
                    r.expect(b")")  # closes the "entry" that held this directory
                continue
            if token != b"entry":
                raise NarError(f"expected 'entry' or ')' before byte {r.offset}, found {token[:40]!r}")
            r.expect(b"(")
            r.expect(b"name")
            entry = r.string(MAX_NAME)
            _check_name(entry, last, r.offset)
            stack[-1] = (fd, entry)
            r.expect(b"node")
            depth = len(stack)
            _create(r, fd, entry, stack)
            if len(stack) == depth:  # a file or symlink: its entry closes here
                r.expect(b")")
    finally:
        for fd, _ in stack:
            os.close(fd)


def _check_name(name: bytes, last: bytes | None, offset: int) -> None:
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise NarError(f"invalid entry name {name[:40]!r} before byte {offset}")
    if last is not None and name <= last:
        raise NarError(f"entry {name[:40]!r} before byte {offset} is not in strictly increasing order after "
                       f"{last[:40]!r}")


def _create(r: Reader, dir_fd: int, name: bytes, stack: list[tuple[int, bytes | None]]) -> None:
    """Read one node's header and create it; a directory is opened and pushed for its entries."""
    r.expect(b"(")
    r.expect(b"type")
    kind = r.string(MAX_TOKEN)
    if kind == b"regular":
        token = r.string(MAX_TOKEN)
        executable = token == b"executable"
        if executable:
            r.expect(b"")
            token = r.string(MAX_TOKEN)
        if token != b"contents":
            raise NarError(f"expected 'contents' before byte {r.offset}, found {token[:40]!r}")
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o755 if executable else 0o644, dir_fd=dir_fd)
        try:
            r.contents(fd)
            os.fchmod(fd, 0o755 if executable else 0o644)  # not narrowed by the umask
        finally:
            os.close(fd)
        r.expect(b")")
    elif kind == b"symlink":
        r.expect(b"target")
        target = r.string(MAX_TARGET)
        if not target or b"\0" in target:
            raise NarError(f"invalid symlink target before byte {r.offset}")
        os.symlink(target, name, dir_fd=dir_fd)
        r.expect(b")")
    elif kind == b"directory":
        os.mkdir(name, 0o755, dir_fd=dir_fd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        stack.append((fd, None))
    else:
        raise NarError(f"unknown node type {kind[:40]!r} before byte {r.offset}")
