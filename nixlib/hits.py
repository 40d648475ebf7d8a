"""The verified-hit memo: a realisation checked once is not parsed and validated again while nothing changed.

A cache hit costs a record read, its validation (shape, names, and a digest over its canonical JSON)
and the integrity check of its objects (a stat scan of each, compared with the stat memo's entry).
For an all-cached graph that is most of a lookup. This memo remembers, per resolved key, what a
full check found: which of the key's record names held the record, that file's stat identity
(device, inode, size, mtime, ctime, owner), the SHA-256 of its bytes, and the stat signature of
each output object the stat memo vouched for. A later lookup (Store.realisation) serves the key
from the memo only if, now,

- the file at that name has the same identity and its owner is still a trusted writer (the trust
  settings are read afresh by every process). If the record had *settled* when the entry was made (its
  last change older than the stat memo's 2 s racy window), that identity alone stands for its bytes:
  any later change, even one restoring size and mtime, changes its ctime (users cannot set ctime), and a
  replacement changes its inode, exactly the reasoning of the stat memo and of git's racy-clean check.
  Its outputs come from the entry and the record is read only if a caller asks for more than its
  outputs (`LazyRecord`). A record not yet settled is read and must re-hash to the same SHA-256;
- every output object re-scans to the same stat signature, so an object that was changed, replaced or
  quarantined is not served from here. An object of at most MAX_LISTED entries is re-scanned from the
  list of its entries (statmemo.rescan: one lstat each, no directory opened; an entry added or removed
  changes its directory's times), a larger one by a full scan.

Anything else is a miss of the memo, never of the store: the full check runs and decides (and
reports an invalid record, or quarantines a corrupt object, exactly as before). So the memo saves
the validation, not the checks that can find a change.

A shard is believed only in the boot that wrote it (nixlib.boot), as the stat memo's entries are, and each
entry only while its text still ends with its seal, a digest over its key and the rest of its text: a settled
entry is served from its own fields, so an entry edited to name another step's objects, or moved under another
key, must read as no entry at all (like a record's digest, this catches accidents and edits, not a forger).

The memo is believed, so it is private to its user like the stat memo: one directory per host,
`<root>/cache/<uid>/hits.<host>/` (in a directory only that user can write; else under
$XDG_CACHE_HOME), holding 32 shard files by the key's last character, each ignored unless owned by
the running user. A shard is read once per process, when the first key in it is looked up, and
written once, at exit (atomically, merged with what other processes wrote meanwhile), never per
task; an unreadable or unwritable shard only costs speed.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import stat
import sys
import threading
from collections.abc import Callable, Container, Iterator, Mapping
from pathlib import Path
from typing import Any

from nixlib import boot
from nixlib.statmemo import StatMemo, rescan, scan, user_cache_dir

_VERSION = 6  # 3: shards by the key's last character (the first of a 52-character key is only ever 0 or 1);
# 4: each entry stored as its own JSON text, parsed when its key is first asked for; 5: a header line, then one
# line per entry (`key<TAB>entry JSON`): a full shard (2,000 entries, ~1 MB) is split into lines in ~2 ms, where
# parsing it as one JSON document took ~2.8 ms, and a 1,000-task check of a long-used store reads all 32 shards;
# 6: each entry's text ends with its seal (`_seal`), a digest over its key and the rest of its text
MAX_ENTRIES = 2_000  # per shard (32 shards): above this, a save keeps the newest (~900 kB, ~2 ms to read)
MAX_LISTED = 256  # an object with more entries than this is re-checked by a full scan, not from a listing
_LIMIT = 64 << 20  # a shard file larger than this is not one we wrote
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # (what os.fsencode uses)
_BY_ROOT: dict[str, HitMemo] = {}
_REGISTRY_LOCK = threading.Lock()

# An entry: [name uid or None (the shared name), st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns, st_uid,
#            SHA-256 hex of the record's bytes, {object hash: stat signature}, settled (bool),
#            {output name: object hash}, {object hash: [entry paths in scan order] or None}]
Entry = list[Any]


def identity(st: os.stat_result) -> tuple[int, int, int, int, int, int]:
    """What must be unchanged about a record file: any rewrite or replacement changes its ctime or inode."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_uid


def entry(name_uid: int | None, st: os.stat_result, data: bytes, objects: dict[str, str], outputs: dict[str, str],
          listings: dict[str, list[bytes] | None], now_ns: int) -> Entry:
    """A memo entry for a record read as `data` from a file with stat `st`, whose outputs are `outputs` and
    whose objects scanned as `objects` (each listed by statmemo.scan, or None). `now_ns` is when the record
    was read: a record changed less than the racy window before that is not *settled* (see `settled`)."""
    return [name_uid, *identity(st), hashlib.sha256(data).hexdigest(), dict(objects), settled(st, now_ns),
            dict(outputs), {h: None if v is None else [os.fsdecode(r) for r in v] for h, v in listings.items()}]


def settled(st: os.stat_result, now_ns: int) -> bool:
    """True if the file's last change is older than the racy window when it was read: a later change, even one
    that restored its size and mtime, then necessarily shows in its ctime (as git and the stat memo reason).
    Only then is its stat identity alone trusted to stand for its bytes."""
    return max(st.st_mtime_ns, st.st_ctime_ns) < now_ns - StatMemo.racy_ns


def same_bytes(e: Entry, st: os.stat_result, data: bytes) -> bool:
    """True if the record file read now (`st`, `data`) is the one the entry was made from."""
    return tuple(e[1:7]) == identity(st) and hashlib.sha256(data).hexdigest() == e[7]


def same_file(e: Entry, st: os.stat_result) -> bool:
    """True if a settled entry's record file, lstat'ed now as `st`, is still the file it was made from."""
    return bool(e[9]) and stat.S_ISREG(st.st_mode) and tuple(e[1:7]) == identity(st)


def objects_unchanged(e: Entry, objects_dir: str, owners: Container[int] | None = None) -> bool:
    """True if every output object re-scans to the signature it had: from its listing (one lstat per entry,
    statmemo.rescan) when the entry has one, else by a full scan. With `owners` (the trusted writers), an object
    with an entry of any other owner is never unchanged here (its owner can change bytes keeping every stat
    field: see StatMemo.checked), so the full check re-hashes it."""
    listings = e[11]
    for h, signature in e[8].items():
        path = f"{objects_dir}/{h}"
        listing = listings.get(h)
        try:
            if listing:  # (os.fsencode of each entry, without a call per entry)
                current = rescan(path, [r.encode(_FS_ENCODING, _FS_ERRORS) for r in listing], owners)
            else:
                scanned = scan(path, owners=owners)
                current = "" if scanned.foreign else scanned.signature
        except OSError:
            return False
        if current != signature:
            return False  # changed, replaced or quarantined since: the full check re-hashes it
    return True


class LazyRecord(Mapping[str, Any]):
    """A realisation record served from the memo: its outputs are known from the entry; the rest is read (and
    parsed) only when asked for, which an all-cached graph rarely does. Loaded, it is the record whose bytes
    the entry was made from, or whatever `load(*args)` finds valid at that name now (a record replaced since).

    One per cached task of a graph, kept for the whole run: slots and a loader with its arguments (no closure)
    keep it to a few objects, which the garbage collector then walks in every full collection."""

    __slots__ = ("_outputs", "_load", "_args", "_doc")

    def __init__(self, outputs: dict[str, str], load: Callable[..., Mapping[str, Any] | None], *args: Any) -> None:
        self._outputs = outputs
        self._load = load
        self._args = args
        self._doc: Mapping[str, Any] | None = None

    def _full(self) -> Mapping[str, Any]:
        if self._doc is None:
            self._doc = self._load(*self._args) or {"outputs": dict(self._outputs)}
        return self._doc

    def __getitem__(self, name: str) -> Any:
        if name == "outputs" and self._doc is None:
            return self._outputs
        return self._full()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())


class HitMemo:
    """One user's verified hits in one store, on this host: one shard file per last character of the key, so a
    process reads only the shards of the keys it looks up (a small build in a big store reads little)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = os.fspath(root)
        self.directory = user_cache_dir(root, f"hits.{os.uname().nodename}")
        self._shards: dict[str, _Shard] = {}
        self._lock = threading.Lock()

    def path_of(self, key: str) -> Path:
        """The shard file that holds `key`'s entry."""
        return self.directory / f"{key[-1:]}.json"

    def _shard(self, key: str) -> _Shard:
        found = self._shards.get(key[-1:])
        if found is None:
            with self._lock:
                found = self._shards.setdefault(key[-1:], _Shard(self.path_of(key), self.root))
        return found

    def get(self, key: str) -> Entry | None:
        """The entry of a resolved key, or None. A malformed entry reads as None (the caller drops it)."""
        return self._shard(key).get(key)

    def put(self, key: str, e: Entry) -> None:
        self._shard(key).put(key, e)

    def drop(self, key: str) -> None:
        """Forget a key whose entry no longer holds (the full check decides, and may put it back)."""
        self._shard(key).drop(key)

    def save(self) -> None:
        """Write the shards this process changed (at exit)."""
        for shard in list(self._shards.values()):
            shard.save()


class _Shard:
    """The entries of one shard file, read on first use and written back merged."""

    def __init__(self, path: Path, root: str) -> None:
        self.path, self.root = path, root
        self._entries: dict[str, Entry | str] | None = None  # an entry as its JSON text until first asked for
        self._loaded: tuple[int, ...] | None = None  # identity of the file as loaded
        self._changed: dict[str, Entry | None] = {}  # what this process added (an Entry) or dropped (None)
        self._used: set[str] = set()
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def get(self, key: str) -> Entry | None:
        if self._entries is None:
            self._load()
        e = self._entries.get(key)  # type: ignore[union-attr]
        if key in self._used:  # parsed and checked when first got, or made by this process
            return e  # type: ignore[return-value]
        e = _parse(e, key)
        if not _well_formed(e):
            return None
        with self._lock:
            self._entries[key] = e  # type: ignore[index]
            self._used.add(key)
        return e

    def put(self, key: str, e: Entry) -> None:
        if self._entries is None:
            self._load()
        with self._lock:
            if _parse(self._entries.get(key), key) != e:  # type: ignore[union-attr]
                self._entries[key] = e  # type: ignore[index]
                self._changed[key] = e
            self._used.add(key)

    def drop(self, key: str) -> None:
        with self._lock:
            if self._entries is not None and self._entries.pop(key, None) is not None:
                self._changed[key] = None

    def _load(self) -> None:
        with self._lock:
            if self._entries is None:
                self._entries, self._loaded = _read(self.path)

    def save(self) -> None:
        """Write what this process changed, merged into the file as it is now (another process of this user
        may have saved meanwhile); a no-op when nothing changed, or in a forked child."""
        with self._lock:
            if not self._changed or os.getpid() != self._pid or not os.path.isdir(self.root):
                return  # (a store removed meanwhile is not re-created by its cache)
            current, ident = _read(self.path)
            if ident == self._loaded and self._entries is not None:
                current = self._entries
            else:
                for key, e in self._changed.items():
                    if e is None:
                        current.pop(key, None)
                    else:
                        current[key] = e
            if len(current) > MAX_ENTRIES:  # keep the newest: what this process used, then the latest others
                ordered = {k: v for k, v in current.items() if k not in self._used}
                ordered.update((k, current[k]) for k in self._used if k in current)
                current = dict(list(ordered.items())[-MAX_ENTRIES:])
            data = _encode(current)
            with contextlib.suppress(OSError):
                _write_atomically(self.path, data)
                self._changed.clear()


def _parse(e: Any, key: str) -> Any:
    """An entry of `key` as stored (its sealed JSON text) parsed; anything else as it is; None for text whose seal
    does not match (see `_sealed`). Entries stay text until asked for: a shard holds up to MAX_ENTRIES of them, of
    which a run may use a few, and text is read far faster than nested lists and dicts, which would also all be
    walked by every full garbage collection of the process."""
    if type(e) is not str:
        return e
    cut = e.rfind(",")
    if cut < 0 or e[cut:] != f',"{_seal(key, e[:cut])}"]':
        return None  # changed since it was written (by hand, a bad copy, a damaged disk), or moved to another key
    try:
        return json.loads(e[:cut] + "]")
    except (ValueError, RecursionError):
        return None


def _seal(key: str, text: str) -> str:
    """The digest that ends an entry's text: over its key and the rest of its text. A settled entry is served from
    its fields alone (its record is only lstat'ed), so its outputs are believed as they stand in the shard: an
    entry edited to name another step's objects, or moved to another key, must read as no entry at all. (Like a
    record's digest, it catches accidents and edits, not a forger: the shard is private to its user.)"""
    return hashlib.sha256(f"{key}\t{text}".encode()).hexdigest()[:32]


def _sealed(key: str, e: Entry) -> str:
    """An entry's text as a shard stores it: its JSON list with its seal as one more, last, element."""
    body = json.dumps(e, separators=(",", ":"))[:-1]
    return f'{body},"{_seal(key, body)}"]'


def _well_formed(e: Any) -> bool:
    """The shape of an entry (a shard is ours, but an entry from an older version or a bad write is not served)."""
    if type(e) is not list or len(e) != 12:
        return False
    name_uid, dev, ino, size, mtime, ctime, uid, sha, objects, is_settled, outputs, listings = e
    if not ((name_uid is None or type(name_uid) is int) and type(dev) is type(ino) is type(size) is type(mtime)
            is type(ctime) is type(uid) is int and type(sha) is str and type(is_settled) is bool):
        return False
    if not (type(objects) is dict and type(outputs) is dict and type(listings) is dict and objects
            and set(outputs.values()) == objects.keys()):
        return False
    for signature in objects.values():
        if type(signature) is not str:
            return False
    for listing in listings.values():
        if listing is not None and (type(listing) is not list or not all(type(r) is str for r in listing)):
            return False
    return True


def _read(path: Path) -> tuple[dict[str, Entry | str], tuple[int, ...] | None]:
    """(entries, file identity) of the memo file; empty when absent, unreadable, not ours or not a memo."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}, None
    with open(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_size > _LIMIT:
            return {}, None  # planted by another user, or not ours: never believed
        try:
            data = f.read(st.st_size + 1)
        except OSError:
            return {}, None
    return decode(data), identity(st)


def _encode(entries: Mapping[str, Entry | str]) -> bytes:
    """A shard file: a JSON header line (version, boot), then `key<TAB>sealed entry JSON` per line (JSON text holds
    no raw tab or newline, and a key is 52 base32 characters). Text read from the file is written back as it was."""
    header = json.dumps({"v": _VERSION, "boot": boot.boot_id()}, separators=(",", ":"))
    lines = [header, *(f"{k}\t{v if type(v) is str else _sealed(k, v)}" for k, v in entries.items())]
    return ("\n".join(lines) + "\n").encode()


def decode(data: bytes) -> dict[str, str]:
    """{key: entry JSON text} of a shard file's bytes; empty for another version, another boot (an OS crash may have
    lost data it vouches for) or bytes that are not a shard. A line that is not `key<TAB>text` is left out (its key
    is then a miss of the memo: the full check decides)."""
    try:
        text = data.decode()
        header, _, body = text.partition("\n")
        doc = json.loads(header)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}
    if not isinstance(doc, dict) or doc.get("v") != _VERSION or doc.get("boot") != boot.boot_id():
        return {}
    entries: dict[str, str] = {}
    for line in body.split("\n"):
        key, tab, value = line.partition("\t")
        if tab:
            entries[key] = value
    return entries


def _write_atomically(dest: Path, data: bytes) -> None:
    """Temp file beside `dest`, renamed over it: a reader never sees half a memo."""
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with open(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def of(root: str | os.PathLike) -> HitMemo:
    """This process's memo for the store at `root` (read on first use, written at exit)."""
    key = os.fspath(root)
    found = _BY_ROOT.get(key)
    if found is None:
        with _REGISTRY_LOCK:
            found = _BY_ROOT.setdefault(key, HitMemo(root))
    return found


def save_all() -> None:
    """Write every memo this process changed (at exit; tests call it to end a "process")."""
    for memo in list(_BY_ROOT.values()):
        memo.save()


def forget() -> None:
    """Save, then drop every loaded memo: the next lookup reads the file again, as a new process would."""
    save_all()
    _BY_ROOT.clear()


atexit.register(save_all)
