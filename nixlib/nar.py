"""Nix archive (NAR) serialisation and hashing, byte-compatible with `nix-store --dump`.

Objects are named by the SHA-256 of their NAR so that `nix-hash --type sha256 --base32`
of a store object prints its own name. Serialisation is streamed into a sink in bounded
chunks, so hashing a multi-GB file or tree runs in constant memory.

Speed matters because every output is hashed (bench/README-hash.md has the numbers):

- a large file is hashed as fast as OpenSSL's SHA-256 allows: 1 MiB reads, no copies. (A
  thread reading the next chunk while this one is hashed gained 8 % with an idle core and
  lost 5 % without one: not kept.)
- a tree of small files costs four syscalls per file (open, fstat, read, close, as in
  Nix); entry types come from scandir's d_type, so no lstat per entry. (Threads cannot
  overlap these microsecond syscalls, as each hands the GIL over; a forked helper process
  could, but made hashing depend on fork safety and on the machine's load: not kept.)
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from nixlib import base32, trees

Sink = Callable[[bytes], object]
"""Receives the NAR in order, as bytes objects it may keep."""

_FLUSH = 1 << 20  # header and small-file bytes gathered before the sink sees them
_CHUNK = 1 << 20  # read size for large files: large enough for few syscalls, small enough to stay in cache
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # never follow, never block on a FIFO


def _str(data: bytes) -> bytes:
    """A NAR string: u64 little-endian length, bytes, zero padding to 8."""
    return len(data).to_bytes(8, "little") + data + b"\0" * (-len(data) % 8)


_MAGIC = _str(b"nix-archive-1")
_OPEN, _CLOSE = _str(b"("), _str(b")")
_FILE = _OPEN + _str(b"type") + _str(b"regular") + _str(b"contents")
_EXEC_FILE = _OPEN + _str(b"type") + _str(b"regular") + _str(b"executable") + _str(b"") + _str(b"contents")
_SYMLINK = _OPEN + _str(b"type") + _str(b"symlink") + _str(b"target")
_DIRECTORY = _OPEN + _str(b"type") + _str(b"directory")
_ENTRY = _str(b"entry") + _OPEN + _str(b"name")
_NODE = _str(b"node")
_PAD = [b"\0" * n for n in range(8)]
_S_IXUSR = stat.S_IXUSR  # the only mode bit a NAR keeps

Segment = tuple[bytes, int | None, bytes | None]
"""Literal NAR bytes, then the directory descriptor and name of a regular file whose node follows them
(or None, None). The descriptor is valid until the next segment is asked for."""


# --- the walk: everything but file contents -------------------------------------------


def _leaf(dir_fd: int | None, name: bytes, mode: int, root: bytes, names: list[bytes]) -> bytes:
    """The node of a symlink (its target is stored, never followed); anything else is refused, as Nix does."""
    if not stat.S_ISLNK(mode):
        raise trees.unstorable(root, names, mode, "archive")
    return _SYMLINK + _str(os.readlink(name, dir_fd=dir_fd)) + _CLOSE


def _segments(root: bytes) -> Iterator[Segment]:
    """The NAR of `root` as segments in stream order.

    Only file contents need reads, so the walk yields everything else as literal bytes. It is
    iterative (a stack of sorted directory listings) and relative to directory descriptors, so
    a tree may be of any depth and its paths longer than PATH_MAX.
    """
    mode = os.lstat(root).st_mode
    if stat.S_ISREG(mode):
        yield _MAGIC, None, root
        return
    if not stat.S_ISDIR(mode):
        yield _MAGIC + _leaf(None, root, mode, root, []), None, None
        return
    prefix = _MAGIC + _DIRECTORY
    names: list[bytes] = []  # the path below root, for error messages only
    try:
        top = trees.DirChain(root)
    except PermissionError:
        raise trees.unreadable(root, [], "archive") from None
    with top as chain:
        stack = [iter(trees.sorted_entries(chain.fd))]
        while stack:
            fd = chain.fd
            for name, entry in stack[-1]:
                prefix += _ENTRY + len(name).to_bytes(8, "little") + name + _PAD[-len(name) % 8] + _NODE
                if entry.is_file(follow_symlinks=False):
                    yield prefix, fd, name
                    prefix = _CLOSE
                elif entry.is_dir(follow_symlinks=False):
                    prefix += _DIRECTORY
                    try:
                        chain.push(name)
                    except PermissionError:
                        raise trees.unreadable(root, [*names, name], "archive") from None
                    names.append(name)
                    stack.append(iter(trees.sorted_entries(chain.fd)))
                    break
                else:
                    mode = entry.stat(follow_symlinks=False).st_mode
                    prefix += _leaf(fd, name, mode, root, [*names, name]) + _CLOSE
            else:
                stack.pop()
                if stack:
                    chain.pop()
                    names.pop()
                prefix += (_CLOSE + _CLOSE) if stack else _CLOSE  # the directory, then the entry holding it
    yield prefix, None, None


# --- file contents -----------------------------------------------------------------------


def _unreadable(name: bytes, dir_fd: int | None) -> trees.UnreadableFile:
    """The error for a file that cannot be opened for reading, named by its full path where it can be found."""
    where = b""
    if dir_fd is not None:
        try:
            where = os.fsencode(os.readlink(f"/proc/self/fd/{dir_fd}"))
        except OSError:
            pass
    return trees.unreadable(where or name, [name] if where else [], "archive")


def _shrank(path: bytes) -> OSError:
    return OSError(f"file shrank while being archived: {os.fsdecode(path)}")


def _read_exact(fd: int, size: int, path: bytes) -> bytes:
    """`size` (> 0) bytes from `fd`, usually in one read."""
    data = os.read(fd, size)
    while len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            raise _shrank(path)
        data += more
    return data


def _stream(fd: int, size: int, sink: Sink, path: bytes) -> None:
    """Feed a large file to the sink in 1 MiB reads (hashlib releases the GIL while it hashes them)."""
    remaining = size
    while remaining:
        data = os.read(fd, min(_CHUNK, remaining))
        if not data:
            raise _shrank(path)
        remaining -= len(data)
        sink(data)


class _Writer:
    """Gathers headers and small files so the sink sees few, large updates.

    Pieces are kept in a list and joined once per flush; a bytearray grown and cleared
    instead costs page faults on every cycle (clearing it frees its memory), about a quarter
    of the time on a tree of small files.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.parts: list[bytes] = []
        self.size = 0

    def put(self, data: bytes) -> None:
        if len(data) >= _FLUSH:
            self.flush()
            self.sink(data)
            return
        self.parts.append(data)
        self.size += len(data)
        if self.size >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.sink(b"".join(self.parts))
            self.parts.clear()
            self.size = 0

    def regular(self, path: bytes, dir_fd: int | None = None) -> None:
        """Append the node of a regular file: open, fstat, read, close (the hot path of small files)."""
        try:
            fd = os.open(path, _OPEN_FLAGS, dir_fd=dir_fd)
        except PermissionError:
            raise _unreadable(path, dir_fd) from None
        try:
            st = os.fstat(fd)
            mode, size = st.st_mode, st.st_size
            if not stat.S_ISREG(mode):
                raise OSError(f"{os.fsdecode(path)} changed type while being archived")
            header = (_EXEC_FILE if mode & _S_IXUSR else _FILE) + size.to_bytes(8, "little")
            if size > _FLUSH:
                self.put(header)
                self.flush()
                _stream(fd, size, self.sink, path)
                self.put(_PAD[-size % 8] + _CLOSE)
                return
            contents = os.read(fd, size) if size else b""
            if len(contents) < size:  # a short read: rare, but allowed
                contents += _read_exact(fd, size - len(contents), path)
        finally:
            os.close(fd)
        trailer = _PAD[-size % 8] + _CLOSE
        self.parts += (header, contents, trailer)
        self.size += len(header) + size + len(trailer)

    def segments(self, segments: Iterable[Segment]) -> None:
        """The hot loop for trees of small files."""
        parts = self.parts  # flush() empties this list in place
        for prefix, dir_fd, name in segments:
            parts.append(prefix)
            self.size += len(prefix)
            if name is not None:
                self.regular(name, dir_fd)
            if self.size >= _FLUSH:
                self.flush()


# --- public API ----------------------------------------------------------------------------


def dump(path: str | os.PathLike, sink: Sink) -> None:
    """Stream the NAR serialisation of `path` into `sink` (symlinks are not followed)."""
    writer = _Writer(sink)
    writer.segments(_segments(os.fsencode(path)))
    writer.flush()


def nar_size(path: str | os.PathLike) -> int:
    """The length of `path`'s NAR (Nix's `NarSize`) from a walk of its tree, no file contents read: a remote
    record signs it, so a pull can stop an object that streams more bytes than its producer archived."""
    total = 0
    for prefix, dir_fd, name in _segments(os.fsencode(path)):
        total += len(prefix)
        if name is not None:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            header = _EXEC_FILE if st.st_mode & _S_IXUSR else _FILE
            total += len(header) + 8 + st.st_size + (-st.st_size % 8) + len(_CLOSE)
    return total


def nar_digest(path: str | os.PathLike, algorithm: str = "sha256") -> bytes:
    """Digest of the NAR of `path` (sha256 unless told; Nix also knows sha1, md5, sha512)."""
    h = hashlib.new(algorithm)
    dump(path, h.update)
    return h.digest()


def nar_hash(path: str | os.PathLike) -> str:
    """Nix base32 SHA-256 of the NAR of `path`: what `nix-hash --type sha256 --base32` prints."""
    return base32.encode(nar_digest(path))


def is_nar_hash(text: str) -> bool:
    """True for a 52-character Nix base32 string (a store object name). A regex, not a loop over the
    characters: every record read checks a dozen names, and a cached lookup reads one record per step."""
    return len(text) == 52 and _NAR_HASH.fullmatch(text) is not None


_NAR_HASH = re.compile(f"[{re.escape(base32.ALPHABET)}]{{52}}")


def file_paths(root: Path) -> list[Path]:
    """Every path inside `root` (itself included), parents before children (kept for callers; see trees)."""
    return trees.file_paths(root)


if __name__ == "__main__":
    print(nar_hash(sys.argv[1]))
