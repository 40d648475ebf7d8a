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
a store over NFS keep separate memos. An entry is believed only in the boot that wrote it
(nixlib.boot): after an OS crash a file can keep its stat fields and lose its data. Files are
written atomically; an unreadable or corrupt memo is a miss and an unwritable directory only costs
speed, never correctness.

A memo entry is believed without re-hashing, so it is private to its user: a store's memo
lives in `<root>/cache/<uid>/statmemo` (a directory only that user can write), or under
$XDG_CACHE_HOME when another user squatted that name; an entry file not owned by the
running user is ignored (another user's entry made a victim use the wrong bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import sys
import time
from collections.abc import Container
from pathlib import Path
from typing import Any, NamedTuple

from nixlib import boot, nar, trees

_VERSION = 1
_RECORD = struct.Struct("<IBBqqqQQI")  # name length, type, exec, size, mtime, ctime, inode, device, target length


class Scan(NamedTuple):
    """The stat signature of a tree and its newest timestamp (for the racy check); `content`, if asked for, is the
    signature without the top entry's ctime (and, for a directory, its mtime), which publishing an object changes
    (a rename or link, a chmod, a utime) while everything that says its bytes did not change stays: each entry's
    size, inode and times, and the top file's mtime (see Store._publish)."""

    signature: str
    newest_ns: int
    content: str = ""
    foreign: bool = False  # with `owners`: some entry is another uid's, or a file writable by group or others


def _now_ns() -> int:
    return time.time_ns()


def now_ns() -> int:
    """The clock racy checks compare timestamps with (tests move it forward to age what they made)."""
    return _now_ns()


def _absolute(path: str | os.PathLike) -> str:
    """The memo key: absolute and normalised, but symlinks are not resolved (a NAR stores them)."""
    return os.fsdecode(os.path.abspath(os.fsdecode(path)))


def _record(rel: bytes, st: os.stat_result, target: bytes) -> bytes:
    mode = st.st_mode
    fields = (len(rel), stat.S_IFMT(mode) >> 12, bool(mode & stat.S_IXUSR), st.st_size,
              st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, len(target))
    return _RECORD.pack(*fields) + rel + target


def scan(path: str | os.PathLike, listing: list[bytes] | None = None, content: bool = False,
         links: list[bytes] | None = None, owners: Container[int] | None = None) -> Scan:
    """lstat every entry under `path` (symlinks are not followed) into one digest; `listing`, if given,
    receives every entry's relative path in the order it was recorded (see `rescan`); `content` asks for
    Scan.content too; `links`, if given, receives the relative path of every symlink inside a directory;
    `owners`, if given, sets Scan.foreign when any entry belongs to another uid, or is a file writable by group
    or others (see StatMemo.checked).

    One lstat per entry is the floor (a directory's times do not change when a file in it is
    rewritten), so the loop keeps the rest of the per-entry work small.
    """
    root = os.fsencode(path)
    st = os.lstat(root)
    top_target = os.readlink(root) if stat.S_ISLNK(st.st_mode) else b""
    digest = hashlib.sha256(_record(b"", st, top_target))
    same = hashlib.sha256(_record(b"", _published(st), top_target)) if content else None
    records: list[bytes] = []
    if listing is not None:
        listing.append(b"")
    newest = max(st.st_mtime_ns, st.st_ctime_ns)
    foreign = owners is not None and _foreign(st, owners)
    if not stat.S_ISDIR(st.st_mode):
        return Scan(digest.hexdigest(), newest, same.hexdigest() if same else "", foreign)
    # Depth first, last subdirectory first, relative to directory descriptors: any depth, any path length.
    try:
        top = trees.DirChain(root)
    except PermissionError:
        raise trees.unreadable(root, [], "hash") from None
    with top as chain:
        todo: list[list[bytes]] = [[]]
        rels = [b""]
        while True:  # entered a directory: record its entries, then find the next one to enter
            fd, prefix = chain.fd, rels[-1] + b"/" if rels[-1] else b""
            for name, entry in trees.sorted_entries(fd):
                st = entry.stat(follow_symlinks=False)
                link = stat.S_ISLNK(st.st_mode)
                records.append(_record(prefix + name, st, os.readlink(name, dir_fd=fd) if link else b""))
                if link and links is not None:
                    links.append(prefix + name)
                if listing is not None:
                    listing.append(prefix + name)
                newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
                if owners is not None and _foreign(st, owners):
                    foreign = True
                if stat.S_ISDIR(st.st_mode):
                    todo[-1].append(name)
            if len(records) >= 4096:  # bounded memory for huge trees
                _update(digest, same, b"".join(records))
                records.clear()
            while len(todo) > 1 and not todo[-1]:
                todo.pop()
                rels.pop()
                chain.pop()
            if not todo[-1]:
                break
            name = todo[-1].pop()
            try:
                chain.push(name)
            except PermissionError:
                raise trees.unreadable(root, [*rels[-1].split(b"/"), name] if rels[-1] else [name], "hash") from None
            rels.append((rels[-1] + b"/" if rels[-1] else b"") + name)
            todo.append([])
    _update(digest, same, b"".join(records))
    return Scan(digest.hexdigest(), newest, same.hexdigest() if same else "", foreign)


def _foreign(st: os.stat_result, owners: Container[int]) -> bool:
    """True for an entry another user than `owners` may write: theirs, or a file writable by group or others."""
    return st.st_uid not in owners or (bool(st.st_mode & 0o022) and stat.S_ISREG(st.st_mode))


def _update(digest: Any, same: Any, data: bytes) -> None:
    digest.update(data)
    if same is not None:
        same.update(data)


def _published(st: os.stat_result) -> os.stat_result:
    """`st` of a tree's top entry as Scan.content records it: ctime zeroed, and mtime too for a directory."""
    fields = list(st)
    mtime = 0 if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns
    fields[8] = mtime // 1_000_000_000  # st_mtime, st_ctime (integer seconds; _record reads the _ns fields)
    fields[9] = 0
    return os.stat_result(fields, {"st_mtime_ns": mtime, "st_ctime_ns": 0})


def rescan(path: str | os.PathLike, rels: list[bytes], owners: Container[int] | None = None) -> str:
    """The signature scan(path) gives, computed from one lstat per listed entry (no directory is opened
    or read), for a tree whose entries were listed, in order, by scan(path, listing).

    Equal to scan(path) while the tree is unchanged, and different once it changed: an entry added,
    removed or renamed changes its directory's mtime and ctime (recorded here for every directory), and a
    changed entry changes its own ctime. So it serves to re-check a tree known to have had these entries
    (nixlib.hits) at a fraction of a full scan's system calls; an entry gone raises OSError. With `owners`, ""
    (which is no signature) when an entry is foreign (see `scan`)."""
    root = os.fsencode(path)
    parts = []
    for rel in rels:
        p = root + b"/" + rel if rel else root
        st = os.lstat(p)
        if owners is not None and _foreign(st, owners):
            return ""
        parts.append(_record(rel, st, os.readlink(p) if stat.S_ISLNK(st.st_mode) else b""))
    return hashlib.sha256(b"".join(parts)).hexdigest()


def user_cache_dir(root: str | os.PathLike, name: str) -> Path:
    """This user's private cache `name` for the store at `root`: `<root>/cache/<uid>/<name>` when that
    directory is ours and writable by nobody else, else `$XDG_CACHE_HOME/nixworkflow/<root digest>/<name>`."""
    shared = Path(root) / "cache" / str(os.getuid())
    if _own_private_dir(shared):
        return shared / name
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tag = hashlib.sha256(os.fsencode(os.path.abspath(root))).hexdigest()[:16]
    return Path(base) / "nixworkflow" / tag / name


def _own_private_dir(path: Path) -> bool:
    """Create `path` (0700) if missing; True if it is a real directory of ours that others cannot write."""
    try:
        os.mkdir(path, 0o700)
    except OSError:
        pass
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


class StatMemo:
    """NAR hashes memoised by stat signature, stored as files under `directory`."""

    racy_ns = 2_000_000_000  # entries changed this close to a scan make it unrecordable

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.host = os.uname().nodename

    @classmethod
    def for_store(cls, root: str | os.PathLike) -> StatMemo:
        """The running user's memo for the store at `root` (never shared with other users)."""
        return cls(user_cache_dir(root, "statmemo"))

    def signature(self, path: str | os.PathLike) -> str:
        """Digest over the lstat fields of every entry of the tree at `path`."""
        return scan(path).signature

    def hash(self, path: str | os.PathLike) -> str:
        """The Nix base32 NAR hash of `path`, from the memo when its signature is unchanged."""
        return self.checked(path)[0]

    def checked(self, path: str | os.PathLike, links: list[bytes] | None = None,
                owners: Container[int] | None = None) -> tuple[str, str | None]:
        """(NAR hash of `path`, its stat signature) — the signature only when this memo vouches for it (an
        entry matched, or the hash was recorded: not racily new), so others may reuse it (nixlib.hits).
        `links`, if given, receives the symlinks inside the tree, from the same scan (see `scan`).

        `owners` (a store object's trusted writers): a tree with an entry of any other owner, or a file that
        group or others may write, is hashed in full every time, never vouched for by its stat signature.
        Whoever can write a file can change its bytes and keep every stat field: a write through a shared
        writable mmap to a page already dirty updates neither mtime nor ctime (the kernel sets them at the
        page's first write fault only). Only files nobody but the running user and trusted users may write
        are believed unchanged because they scan the same."""
        target = _absolute(path)
        started = _now_ns()
        current = scan(target, links=links, owners=owners)
        if current.foreign:
            return nar.nar_hash(target), None
        known = self._load(target)
        if known is not None and known.get("signature") == current.signature:
            return known["nar_hash"], current.signature
        h = nar.nar_hash(target)
        return h, current.signature if self._save(target, current, started, h) else None

    def remember(self, path: str | os.PathLike, nar_hash: str, sealed: bool = False, content: str = "",
                 owners: Container[int] | None = None) -> bool:
        """Record a hash computed elsewhere (the store calls this after ingesting an object).

        `sealed` vouches that nothing writes to `path` any more (a store object: read-only, its
        writer's process group gone), so the racy-timestamp guard is not needed; without it, every
        fresh object would be hashed again in full on its first cache hit. `content`, the tree's
        Scan.content from before `nar_hash` was computed, checks that: if the tree scans otherwise
        now, something wrote to it meanwhile, nothing is recorded and False is returned (else True). `owners`: a
        tree with an entry others may write is never recorded (see `checked`)."""
        if not nar.is_nar_hash(nar_hash):
            raise ValueError(f"not a Nix base32 SHA-256: {nar_hash!r}")
        target = _absolute(path)
        started = _now_ns()
        current = scan(target, content=bool(content), owners=owners)
        if content and current.content != content:
            return False
        if current.foreign:
            return True  # (never vouched for: see `checked`)
        self._save(target, current, started, nar_hash, racy_ok=sealed)
        return True

    def memo_file(self, path: str | os.PathLike) -> Path:
        """Where the memo of `path` lives: named by host and absolute path, never by content."""
        return Path(self._memo_path(_absolute(path)))

    def _memo_path(self, target: str) -> str:
        """memo_file of an absolute path, as a string (a cached lookup checks one object per step: no pathlib)."""
        key = hashlib.sha256(self.host.encode() + b"\0" + os.fsencode(target)).hexdigest()
        return f"{self.directory}/{key}.json"

    def _load(self, target: str) -> dict | None:
        try:
            fd = os.open(self._memo_path(target), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            with open(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_uid != os.getuid():
                    return None  # planted by another user: never believed
                if st.st_size >= 1 << 20:
                    return None  # not a memo entry we wrote (they are ~300 bytes)
                data = json.loads(f.read(st.st_size + 1))  # (a read of 1 MiB would allocate 1 MiB each time)
        except (OSError, ValueError):
            return None
        valid = (isinstance(data, dict) and data.get("v") == _VERSION and data.get("host") == self.host
                 and data.get("boot") == boot.boot_id()  # (nixlib.boot: nothing from before an OS crash)
                 and data.get("path") == target and isinstance(data.get("nar_hash"), str)
                 and nar.is_nar_hash(data["nar_hash"]))
        return data if valid else None

    def _save(self, target: str, current: Scan, started: int, nar_hash: str, racy_ok: bool = False) -> bool:
        """Record an entry; False if it was not (racily new, or the cache is not writable)."""
        if not racy_ok and current.newest_ns >= started - self.racy_ns:
            return False  # racily clean: a change in the same clock tick could hide behind this signature
        entry = {"v": _VERSION, "host": self.host, "boot": boot.boot_id(), "path": target,
                 "signature": current.signature, "nar_hash": nar_hash}
        try:
            _write_atomically(self.memo_file(target), json.dumps(entry, sort_keys=True).encode())
        except OSError:
            return False  # a read-only or full cache only costs speed
        return True


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
