"""A stat memo: unchanged inputs and store objects are not re-hashed.

Hashing reads every byte; a stat signature only lstats every entry. The memo maps an
absolute path to (signature, NAR hash) and serves the hash while the signature is
unchanged. The signature covers, for every entry of the tree, its relative path, type,
owner-execute bit, size, mtime, ctime, inode, device and symlink target. ctime cannot be
set by tools like `touch` or `cp -p`, so a content change is seen even when size and mtime
are restored.

Timestamps have a granularity: a file changed in the same clock tick as our scan can keep
its ctime. As git does with "racily clean" entries, a tree with an entry newer than
`racy_ns` before the scan started is never recorded, so it is hashed again next time
(1-2 s granularities exist: FAT, ext3, and clocks differing between NFS client and server).

One small JSON file per (host, absolute path): inode numbers are per host, so hosts sharing
a store over NFS keep separate memos. Files are written atomically; an unreadable or
corrupt memo is a miss and an unwritable directory only costs speed, never correctness.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import sys
import time
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

from nixlib import nar

_VERSION = 1
_RECORD = struct.Struct("<IBBqqqQQI")  # name length, type, exec, size, mtime, ctime, inode, device, target length
_by_name = attrgetter("name")


class Scan(NamedTuple):
    """The stat signature of a tree and its newest timestamp (for the racy check)."""

    signature: str
    newest_ns: int


def _now_ns() -> int:
    return time.time_ns()


def _absolute(path: str | os.PathLike) -> str:
    """The memo key: absolute and normalised, but symlinks are not resolved (a NAR stores them)."""
    return os.fsdecode(os.path.abspath(os.fsdecode(path)))


def _record(rel: bytes, st: os.stat_result, target: bytes) -> bytes:
    mode = st.st_mode
    fields = (len(rel), stat.S_IFMT(mode) >> 12, bool(mode & stat.S_IXUSR), st.st_size,
              st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, len(target))
    return _RECORD.pack(*fields) + rel + target


def _entries(directory: bytes) -> list[os.DirEntry[bytes]]:
    with os.scandir(directory) as it:
        return sorted(it, key=_by_name)


def scan(path: str | os.PathLike) -> Scan:
    """lstat every entry under `path` (symlinks are not followed) into one digest.

    One lstat per entry is the floor (a directory's times do not change when a file in it is
    rewritten), so the loop keeps the rest of the per-entry work small.
    """
    root = os.fsencode(path)
    digest = hashlib.sha256()
    st = os.lstat(root)
    records = [_record(b"", st, os.readlink(root) if stat.S_ISLNK(st.st_mode) else b"")]
    newest = max(st.st_mtime_ns, st.st_ctime_ns)
    pending = [(root, b"")] if stat.S_ISDIR(st.st_mode) else []
    while pending:
        directory, rel = pending.pop()
        prefix = rel + b"/" if rel else b""
        for entry in _entries(directory):
            st = entry.stat(follow_symlinks=False)
            child = prefix + entry.name
            link = stat.S_ISLNK(st.st_mode)
            records.append(_record(child, st, os.readlink(entry.path) if link else b""))
            newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
            if stat.S_ISDIR(st.st_mode):
                pending.append((entry.path, child))
        if len(records) >= 4096:  # bounded memory for huge trees
            digest.update(b"".join(records))
            records.clear()
    digest.update(b"".join(records))
    return Scan(digest.hexdigest(), newest)


class StatMemo:
    """NAR hashes memoised by stat signature, stored as files under `directory`."""

    racy_ns = 2_000_000_000  # entries changed this close to a scan make it unrecordable

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.host = os.uname().nodename

    def signature(self, path: str | os.PathLike) -> str:
        """Digest over the lstat fields of every entry of the tree at `path`."""
        return scan(path).signature

    def hash(self, path: str | os.PathLike) -> str:
        """The Nix base32 NAR hash of `path`, from the memo when its signature is unchanged."""
        target = _absolute(path)
        started = _now_ns()
        current = scan(target)
        known = self._load(target)
        if known is not None and known.get("signature") == current.signature:
            return known["nar_hash"]
        h = nar.nar_hash(target)
        self._save(target, current, started, h)
        return h

    def remember(self, path: str | os.PathLike, nar_hash: str, sealed: bool = False) -> None:
        """Record a hash computed elsewhere (the store calls this after ingesting an object).

        `sealed` vouches that nothing writes to `path` any more (a store object: read-only, its
        writer's process group gone), so the racy-timestamp guard is not needed; without it, every
        fresh object would be hashed again in full on its first cache hit."""
        if not nar.is_nar_hash(nar_hash):
            raise ValueError(f"not a Nix base32 SHA-256: {nar_hash!r}")
        target = _absolute(path)
        started = _now_ns()
        self._save(target, scan(target), started, nar_hash, racy_ok=sealed)

    def memo_file(self, path: str | os.PathLike) -> Path:
        """Where the memo of `path` lives: named by host and absolute path, never by content."""
        key = hashlib.sha256(self.host.encode() + b"\0" + os.fsencode(_absolute(path))).hexdigest()
        return self.directory / f"{key}.json"

    def _load(self, target: str) -> dict | None:
        try:
            data = json.loads(self.memo_file(target).read_bytes())
        except (OSError, ValueError):
            return None
        valid = (isinstance(data, dict) and data.get("v") == _VERSION and data.get("host") == self.host
                 and data.get("path") == target and isinstance(data.get("nar_hash"), str)
                 and nar.is_nar_hash(data["nar_hash"]))
        return data if valid else None

    def _save(self, target: str, current: Scan, started: int, nar_hash: str, racy_ok: bool = False) -> None:
        if not racy_ok and current.newest_ns >= started - self.racy_ns:
            return  # racily clean: a change in the same clock tick could hide behind this signature
        entry = {"v": _VERSION, "host": self.host, "path": target, "signature": current.signature,
                 "nar_hash": nar_hash}
        try:
            _write_atomically(self.memo_file(target), json.dumps(entry, sort_keys=True).encode())
        except OSError:
            pass  # a read-only or full cache only costs speed


def _write_atomically(dest: Path, data: bytes) -> None:
    """Write a temp file beside `dest` and rename it over, so readers never see half a memo."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with open(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    print(StatMemo(Path(sys.argv[2])).hash(sys.argv[1]))
