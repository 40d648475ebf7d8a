"""The content-addressed store: objects, records, locks, ingest and materialisation.

Everything is one file per record (no database on the shared path), so a store works
from many hosts over a shared filesystem and can be copied with `cp -a`. Writes are
atomic (temp file or directory + rename into place) and records are immutable, so an
interrupted writer never leaves anything half-written where a reader would serve it;
an object that does not re-hash to its name is treated as absent and quarantined.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import socket
import stat
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import filelock

from nixlib import context, faults, hits, locks, nar, records, statmemo, temproots, trees, trust
from nixlib.errors import NixWorkflowError
from nixlib.statmemo import StatMemo, scan, user_cache_dir

DEFAULT_ROOT = "/nix-workflow"
SUBDIRS = ("store", "realisations", "recipes", "origins", "state", "tmp", "locks", "gcroots", "logs", "cache",
           "quarantine", "failed", "nix-gcroots", "temproots")  # (checkpoints.FAILED, env.GCROOTS, temproots.DIR:
# every directory `nw gc` reads is made and checked with the layout, never left for another user to plant first)
LINK_MODES = ("auto", "reflink", "copy", "hardlink", "symlink")
_FICLONE = 0x40049409
DEFAULT_SETTING = "NIX_WORKFLOW_STORE=DIR"
"""How a user chooses the store, for a caller that does not say (each front door passes its own way: Store)."""


def default_root() -> Path:
    """The store root: `NIX_WORKFLOW_STORE` if set, else /nix-workflow."""
    return Path(os.environ.get("NIX_WORKFLOW_STORE") or DEFAULT_ROOT)


def read_raw(path: Path | str) -> tuple[int, bytes]:
    """(owner uid, bytes) of a record file. Never follows a symlink, never blocks on a FIFO, and never reads
    more than records.MAX_BYTES; raises OSError or records.InvalidRecord."""
    st, data = read_stat(path)
    return st.st_uid, data


def read_stat(path: Path | str) -> tuple[os.stat_result, bytes]:
    """read_raw, with the whole fstat of the file the bytes were read from (the verified-hit memo's identity)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise records.InvalidRecord("not a regular file")
        data = _read_at_most(f, st.st_size, records.MAX_BYTES)
    if len(data) > records.MAX_BYTES:
        raise records.InvalidRecord(f"larger than {records.MAX_BYTES} bytes")
    return st, data


def _read_at_most(f: Any, size: int, limit: int) -> bytes:
    """Up to `limit` + 1 bytes of an open file whose fstat said `size`. Asking for the size first, not the
    limit: a read of 64 MiB allocates 64 MiB before the kernel returns 2 kB (a cached lookup reads one record
    per step). A file that grew since its fstat is read on, up to the limit, so nothing is cut short."""
    data = f.read(min(size, limit) + 1)
    if len(data) > size and len(data) <= limit:
        data += f.read(limit + 1 - len(data))
    return data


def parse_raw(data: bytes) -> Any:
    """The JSON value of a record's bytes; records.InvalidRecord if they are not UTF-8 JSON."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise records.InvalidRecord(f"not JSON ({str(e)[:80]})") from None


_reported: set[str] = set()


def _report_invalid(path: Path | str, why: str, prefix: str = "ignoring invalid record") -> None:
    """Say once per process that a record is not used, and why (it is treated as absent)."""
    message = f"{prefix} {path}: {why}" if prefix != "warning" else f"warning: {why}"
    if message not in _reported:
        _reported.add(message)
        print(message, file=sys.stderr)


def check_root(root: Path, setting: str = DEFAULT_SETTING) -> None:
    """Refuse a store root that cannot be used, creating nothing: a file, or a path beneath one; a store that does
    not exist and cannot be made (the nearest existing directory above it is read-only or not writable); an
    existing store on a read-only filesystem. Store runs it before it makes the store directory; a front door that
    takes the setting long before it opens the store (Snakemake's settings) runs it there, so the error comes first
    and names `setting`, the user's way to choose the store (see Store). Missing directories above the store are
    created with it, as Nix creates a `--store` path and Luigi and Snakemake their outputs' directories: every
    front door treats every way of naming the store alike."""
    root = Path(root).absolute()
    if os.path.lexists(root) and not root.is_dir() or _file_above(root):
        raise _not_a_directory(root, setting)
    if root.is_dir():
        if _read_only_fs(root):
            raise _unwritable(root, OSError(errno.EROFS, os.strerror(errno.EROFS)), setting)
        return
    existing = root.parent
    while not existing.is_dir() and existing != existing.parent:
        existing = existing.parent
    if _read_only_fs(existing):
        raise _cannot_create(root, OSError(errno.EROFS, os.strerror(errno.EROFS)), setting, existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _cannot_create(root, OSError(errno.EACCES, os.strerror(errno.EACCES)), setting, existing)


def _file_above(root: Path) -> bool:
    """True if a directory above `root` is a file (nothing can be created beneath it)."""
    path = root.parent
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return not path.is_dir()


def _not_a_directory(root: Path, setting: str) -> NixWorkflowError:
    """The store root, or a directory above it, is a file: `sudo mkdir` cannot fix that, so say which path it is
    and how to choose another store."""
    path = root
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    what = "is a file" if path == root else f"lies under {path}, which is a file"
    return NixWorkflowError(f"cannot use {root} as the store: it {what}, not a directory. Choose another location "
                            f"with {setting} (or move the file out of the way).")


def _cannot_create(root: Path, e: OSError, setting: str, where: Path | None = None) -> NixWorkflowError:
    return NixWorkflowError(
        f"cannot create the store at {root}: {_reason(e, where or root.parent)}. Create it once with "
        f"`sudo mkdir -m 1777 -p {root}` (world-writable with the sticky bit, like /tmp), or choose another "
        f"location with {setting}.")


def _unwritable(root: Path, e: OSError, setting: str) -> NixWorkflowError:
    if e.errno == errno.EROFS or _read_only_fs(root):
        return NixWorkflowError(
            f"the store at {root} is on a read-only filesystem, and this command needs to write to it. Remount it "
            f"read-write, or use a store on a writable filesystem ({setting}); the commands that only read a store "
            "(nw show, log, lineage, diff, why) work on a read-only one.")
    return NixWorkflowError(
        f"the store at {root} is not writable ({e.strerror}). A shared store must be created with "
        f"`sudo mkdir -m 1777 -p {root}`; to use a private store instead choose one with {setting}.")


class Store:
    """A store root and the operations on it; cheap to construct, safe to share across threads.

    `setting` says how the user of the calling front door chooses the store (nw: `--store DIR`; Snakemake:
    `--nixworkflow-store DIR`; Luigi: luigi.cfg's `store`), so an error about the store names the user's own
    way to fix it: nixlib never imports the adapters, they pass it. `writable=False` opens an existing store
    for reading only (nw show, log, lineage, diff, why): nothing is created in it, and a store this user cannot
    write (a read-only mount, another user's store) is still read. Such a store object must not be written to;
    its lookups still treat a corrupt object as absent (it is only not moved to quarantine/)."""

    def __init__(self, root: str | os.PathLike | None = None, *, setting: str = DEFAULT_SETTING,
                 writable: bool = True) -> None:
        self.root = Path(root or default_root()).absolute()
        self.setting = setting
        self.read_only = False
        self._ensure_layout(writable)
        self.memo = StatMemo.for_store(self.root)
        self.hits = hits.of(self.root)  # verified hits: read on the first lookup, written at exit
        self._rooted_dirs: set[str] = set()  # output-link directories registered as GC roots (link_output)
        self.host = socket.gethostname()
        self._trusted: frozenset[int] | None = None

    # ---- layout -------------------------------------------------------------------------

    def _ensure_layout(self, writable: bool = True) -> None:
        """Create the store directory (and any missing directory above it) and its subdirectories, and check
        them. For a reader (`writable` False) of a store it cannot write, only the checks: the store is then
        read-only for this process."""
        if not self.root.is_dir():
            self._create_root()
        if not writable and self.unwritable_reason() is not None:
            self.read_only = True
            temproots.of(self.root).reading_only = True  # (a lookup's temp root could not be written)
            for sub in SUBDIRS:
                _check_shared_dir(self.root / sub, self.setting, reading=True)
            return
        for sub in SUBDIRS:
            path = self.root / sub
            if not path.is_dir():
                try:
                    path.mkdir()
                    path.chmod(0o1777)
                except FileExistsError:
                    pass
                except NotADirectoryError:
                    raise self._not_a_directory() from None
                except OSError as e:
                    raise self._unwritable(e) from None
            _check_shared_dir(path, self.setting)
        try:  # placeholders name paths beneath this regular file: never a writable location
            context.seal_placeholders(self.root)
        except OSError as e:
            raise self._unwritable(e) from None
        if not os.access(self.root / "tmp", os.W_OK | os.X_OK):
            raise self._unwritable(OSError(errno.EACCES, "permission denied"))

    def _create_root(self) -> None:
        """Make the store directory (1777, like /tmp) and any missing directory above it (as `mkdir -p` would)."""
        check_root(self.root, self.setting)
        try:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self.root.mkdir()
            self.root.chmod(0o1777)
        except FileExistsError:
            pass  # another process created it first; checked below like any existing root
        except OSError as e:  # (check_root found none of these: something changed meanwhile)
            raise _cannot_create(self.root, e, self.setting) from None

    def unwritable_reason(self) -> str | None:
        """Why this user cannot add to the store (a read-only filesystem, permissions), or None if it can."""
        if _read_only_fs(self.root):
            return "it is on a read-only filesystem"
        for path in (self.root, *(self.root / sub for sub in SUBDIRS)):
            if os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK):
                return f"permission denied on {path}"
        return None

    def _not_a_directory(self) -> NixWorkflowError:
        return _not_a_directory(self.root, self.setting)

    def _unwritable(self, e: OSError) -> NixWorkflowError:
        return _unwritable(self.root, e, self.setting)

    # ---- objects ------------------------------------------------------------------------

    def object_path(self, h: str) -> Path:
        return self.root / "store" / h

    def has(self, h: str) -> bool:
        """True if object `h` is present and re-hashes to its name (memoised by stat signature)."""
        return self._intact(h) is not None

    def _intact(self, h: str) -> str | None:
        """has(h) as the stat signature the stat memo vouched for ("" if it did not: a racily new object),
        or None if `h` is absent or corrupt (then quarantined)."""
        if not records.is_name(h):
            return None  # never let a name that is not an object name become a path
        path = f"{self.root}/store/{h}"  # object_path, without pathlib: a cached lookup checks one per step
        if not os.path.lexists(path):
            return None
        try:
            actual, signature = self.memo.checked(path, owners=self.trusted)  # (another's object: re-hashed)
        except trees.UnstorableFile:  # its owner made it unreadable or put a FIFO in it (docs/trust.md): corrupt
            self.quarantine(h)
            return None
        except OSError:  # removed meanwhile (a `nw gc` beside `nw show`), or unreadable: not intact, never served
            return None
        if actual == h:
            return signature or ""
        self.quarantine(h)
        return None

    def quarantine(self, h: str) -> Path | None:
        """Move a corrupt object aside so it is never served; returns where it went, or None if it is gone or
        cannot be moved (another user's object in the sticky store/: `has` still treats it as absent, and
        only its owner or root can move it). Moving a directory to another parent needs write permission on
        the directory itself, so a sealed one we own is opened (u+w) for the move and sealed again."""
        if self.read_only:
            return None  # (a store opened for reading it cannot write: the object is still treated as absent)
        src = self.object_path(h)
        dest = self.root / "quarantine" / f"{h}.{int(time.time())}.{secrets.token_hex(3)}"
        try:
            os.rename(src, dest)
            return dest
        except FileNotFoundError:
            return None
        except PermissionError:
            pass
        try:
            pfd = os.open(src, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)  # every chmod reaches this inode, never
        except OSError:                                                   # a symlink swapped in for it (trees.remove)
            return None
        try:
            st = os.fstat(pfd)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                return None
            held = f"/proc/self/fd/{pfd}"
            os.chmod(held, st.st_mode | stat.S_IWUSR)
            try:
                os.rename(src, dest)
            except OSError:
                os.chmod(held, st.st_mode)
                return None
            os.chmod(held, st.st_mode)
            return dest
        except OSError:
            return None
        finally:
            os.close(pfd)

    def ingest(self, path: str | os.PathLike, move: bool = False, label: str | None = None, links: int = 1) -> str:
        """Add a file or tree to the store; returns its NAR hash. `move` consumes `path` (same filesystem);
        otherwise a copy is sealed, so the source stays as it is. `label` names what is stored in errors
        (e.g. "output 'out' of step 'fit'"). `links` (with `move`): how many hard links a file may have and still
        be published as it is, for a caller that linked it itself (trees.seal); a file with more is copied."""
        try:
            if move:
                return self._publish(Path(path), links)
            if not os.path.lexists(path):
                raise NixWorkflowError(f"cannot add {path} to the store: no such file or directory")
            scratch = self.new_tmp("ingest")
            try:
                staged = scratch / "object"
                copy_tree(Path(path), staged, writable=True)
                return self._publish(staged)
            finally:
                force_remove(scratch)
        except trees.UnstorableFile as e:
            raise e if label is None else e.within(label) from None
        except ChangedWhileStored as e:
            raise ChangedWhileStored(label or str(path)) from e
        except OSError as e:
            full = disk_full(e, label or str(path), self.root)
            if full is None:
                raise
            raise full from None

    def _publish(self, staged: Path, links: int = 1) -> str:
        """Seal, hash and publish a staged object; an intact existing copy wins.

        An object is read-only from the moment its name exists: a directory is moved into store/ under a
        hidden name that is never an object name (trees.stage_name), sealed there, then renamed within
        store/ (which needs no write permission on the directory itself). A kill in between leaves only
        that hidden name, which `trees.dead_stage_leftovers` finds for gc.

        Its stat memo entry vouches for its hash without a re-hash, so it is written only if the object
        scans now as it did before it was hashed (Scan.content): a process of the step that escaped its
        reaping and still writes to it (an open descriptor outlives the seal) would otherwise have its
        bytes served under the name of what was hashed. Such an object is quarantined and ChangedWhileStored
        raised."""
        _seal(staged, links)
        if not staged.is_dir() or staged.is_symlink():
            os.utime(staged, follow_symlinks=False)  # the object's mtime says when it entered the store (gc's min
        before = scan(staged, content=True).content  # age); set before the scan: Scan.content keeps a file's mtime
        h = nar.nar_hash(staged)
        dest = self.object_path(h)
        if self.has(h):
            force_remove(staged)
            return h
        if staged.is_dir() and not staged.is_symlink():
            hidden = self.root / "store" / trees.stage_name()
            os.rename(staged, hidden)
            staged = hidden
            try:
                os.chmod(hidden, 0o555)
                os.utime(hidden)  # the object's mtime says when it entered the store (gc's min age)
            except BaseException:
                force_remove(hidden)
                raise
        faults.point("ingest-staged")
        try:
            _place(staged, dest)
        except FileExistsError:
            force_remove(staged)
            if not self.has(h):
                raise self._stuck(h) from None
            return h
        except BaseException:
            force_remove(staged)
            raise
        if not self.memo.remember(dest, h, sealed=True, content=before, owners=self.trusted):
            self.quarantine(h)
            raise ChangedWhileStored(str(staged))
        return h

    def _stuck(self, h: str) -> NixWorkflowError:
        """A corrupt object that could not be moved aside blocks publishing the intact one."""
        try:
            owner = f"uid {os.lstat(self.object_path(h)).st_uid}"
        except OSError:
            owner = "another process"
        return NixWorkflowError(
            f"object {h} in {self.root / 'store'} is corrupt and could not be moved aside (it belongs to "
            f"{owner}), so the intact copy just produced cannot replace it. Ask its owner or root to run "
            "`nw verify --repair` (or `nw verify`) on this store, then run again."
        )

    # ---- records ------------------------------------------------------------------------
    # Records live in world-writable directories, so none is used before it is checked: its owner must be a
    # trusted writer (nixlib.trust), its content a valid, intact record (nixlib.records). A user who cannot
    # write the shared name (another user's file is there) writes `<key>.<uid>.json` beside it.

    @property
    def trusted(self) -> frozenset[int]:
        """The uids whose records this process serves: its own, root's, and the configured trusted users."""
        if self._trusted is None:
            self._trusted = trust.trusted_uids(self.root)
        return self._trusted

    def record_paths(self, kind: str, key: str) -> list[Path]:
        """Where a record of `key` may be, in lookup order: the shared name, then each trusted user's own
        name (this user's first). Empty for a key that is not a valid name (it never becomes a path)."""
        return [Path(p) for p in self._record_paths(kind, key)]

    def _record_paths(self, kind: str, key: str) -> list[str]:
        """record_paths as strings (each lookup reads a record: no pathlib on that path)."""
        if kind not in records.KINDS or not records.is_name(key):
            return []
        d, me = f"{self.root}/{kind}", os.getuid()
        return [f"{d}/{key}.json"] + [f"{d}/{key}.{uid}.json" for uid in [me, *sorted(self.trusted - {me})]]

    def record_files(self, kind: str) -> Iterator[tuple[str | None, Path]]:
        """Every entry of a record directory as (key, path); key is None for names that are not records."""
        d = self.root / kind
        try:
            names = os.listdir(d)
        except OSError:
            return
        for name in names:
            parsed = records.parse_file_name(name)
            yield (parsed[0] if parsed else None), d / name

    def load_record(self, kind: str, key: str, path: Path | str) -> dict[str, Any] | None:
        """The record at `path` if a trusted user wrote it and it is a valid, intact record of `key`.
        A trusted but invalid record is reported once per process (`ignoring invalid record PATH: why`)."""
        got = self._checked_record(kind, key, path)
        return None if got is None else got[0]

    def _checked_record(self, kind: str, key: str, path: Path | str
                        ) -> tuple[dict[str, Any], os.stat_result, bytes] | None:
        """load_record, with the stat and the bytes it was checked from."""
        try:
            st, data = read_stat(path)
        except FileNotFoundError:
            return None
        except (OSError, records.InvalidRecord) as e:
            _report_invalid(path, str(e) if isinstance(e, records.InvalidRecord) else (e.strerror or str(e)))
            return None
        if st.st_uid not in self.trusted:
            return None  # another user's record: not ours to believe (see docs/trust.md)
        try:
            return records.check(kind, key, parse_raw(data)), st, data
        except records.InvalidRecord as e:
            _report_invalid(path, str(e))
            return None

    def read_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """The first trusted, valid record of `key` (objects not checked: see `realisation`)."""
        return next(self._valid_records(kind, key), None)

    def _valid_records(self, kind: str, key: str) -> Iterator[dict[str, Any]]:
        for path in self._record_paths(kind, key):
            doc = self.load_record(kind, key, path)
            if doc is not None:
                yield doc

    def realisation(self, resolved_key: str) -> Mapping[str, Any] | None:
        """The realisation of a resolved key: the first trusted, valid record whose objects are all intact.

        A key this user found so before is served by the verified-hit memo (nixlib.hits) when its record file
        is unchanged, still of a trusted writer, and its objects scan as they did; then only the record's
        validation is skipped (and, for a settled record, its reading: the result is a hits.LazyRecord that
        reads the record if more than its outputs is asked for). Anything else takes the full check."""
        if not records.is_name(resolved_key):
            return None  # never a path
        known = self.hits.get(resolved_key)
        if known is not None:
            doc = self._memoised_hit(resolved_key, known)
            if doc is not None:
                return doc
            self.hits.drop(resolved_key)
        d, me = f"{self.root}/realisations", os.getuid()
        for name_uid in [None, me, *sorted(self.trusted - {me})]:  # the order of record_paths
            path = f"{d}/{resolved_key}.json" if name_uid is None else f"{d}/{resolved_key}.{name_uid}.json"
            now = statmemo.now_ns()
            got = self._checked_record("realisations", resolved_key, path)
            if got is None:
                continue
            doc, st, data = got
            signatures = {h: self._intact(h) for h in doc["outputs"].values()}
            if any(s is None for s in signatures.values()):
                continue
            if all(signatures.values()):  # every object vouched for by the stat memo (none racily new)
                listings = {h: self._listing(h, s) for h, s in signatures.items()}  # type: ignore[arg-type]
                self.hits.put(resolved_key, hits.entry(name_uid, st, data, signatures, doc["outputs"],  # type: ignore[arg-type]
                                                       listings, now))
            return doc
        return None

    def _listing(self, h: str, signature: str) -> list[bytes] | None:
        """The entries of object `h` in scan order, if it has at most hits.MAX_LISTED of them and still scans to
        `signature` (what the stat memo vouched for); else None (the memo then re-checks it by a full scan)."""
        listing: list[bytes] = []
        try:
            if scan(f"{self.root}/store/{h}", listing).signature != signature:
                return None
        except OSError:
            return None
        return listing if len(listing) <= hits.MAX_LISTED else None

    def _memoised_hit(self, key: str, e: hits.Entry) -> Mapping[str, Any] | None:
        """The record a verified-hit entry stands for, if everything it vouched for still holds; else None."""
        name_uid, owner = e[0], e[6]
        if owner not in self.trusted or (name_uid is not None and name_uid not in self.trusted):
            return None  # trust is read afresh by every process: a writer no longer trusted is not served
        d = f"{self.root}/realisations"
        path = f"{d}/{key}.json" if name_uid is None else f"{d}/{key}.{name_uid}.json"
        doc: Mapping[str, Any]
        if e[9]:  # settled: its stat identity stands for its bytes (nixlib.hits)
            try:
                if not hits.same_file(e, os.lstat(path)):
                    return None  # rewritten, replaced or removed: the full check decides
            except OSError:
                return None
            doc = hits.LazyRecord(e[10], self._reload, key, path, e)
        else:
            now = statmemo.now_ns()
            try:
                st, data = read_stat(path)
            except (OSError, records.InvalidRecord):
                return None
            if not hits.same_bytes(e, st, data):
                return None
            try:
                doc = parse_raw(data)
            except records.InvalidRecord:
                return None
            outputs = doc.get("outputs") if isinstance(doc, dict) else None
            if outputs != e[10]:
                return None
            if hits.settled(st, now):  # the bytes it was made from, now past the racy window: settle it
                self.hits.put(key, [*e[:9], True, *e[10:]])
        if not all(records.is_name(h) for h in e[8]) or not hits.objects_unchanged(e, f"{self.root}/store",
                                                                                   self.trusted):
            return None  # changed, replaced or quarantined since: the full check re-hashes it
        return doc

    def _reload(self, key: str, path: str, e: hits.Entry) -> dict[str, Any] | None:
        """The record a LazyRecord stands for: the bytes the entry was made from if they are still there
        (they were validated then), else the valid record that name holds now if it names the same outputs
        (a forced run that reproduced them); else None (the LazyRecord then has its outputs only: a record
        of other outputs never describes these)."""
        try:
            st, data = read_stat(path)
            if hits.same_bytes(e, st, data):
                return parse_raw(data)
        except (OSError, records.InvalidRecord):
            pass
        current = self.load_record("realisations", key, path)
        return current if current is not None and current["outputs"] == e[10] else None

    def write_record(self, kind: str, key: str, doc: dict[str, Any], replace: bool = False) -> Path | None:
        """Write a record (sealed with its digest) atomically: temp file + rename, read-only. An existing
        valid record of a trusted writer is kept unless `replace`; an invalid one of ours is replaced; one of
        another user's is never touched (ours goes to `<key>.<uid>.json`). Returns where it is, or None if
        both names are taken by other users (warned; the step simply re-runs next time).

        Records are not fsynced: the objects they name are (before the record exists), and a record
        lost or truncated by a crash reads as absent, which only costs a re-run."""
        if kind not in records.KINDS or not records.is_name(key):
            raise ValueError(f"not a record: {kind}/{key}")
        sealed = records.seal(doc)
        me = os.getuid()
        paths = self.record_paths(kind, key)[:2]
        for path in paths:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                st = None
            if st is not None and not replace and self.load_record(kind, key, path) is not None:
                return path  # a trusted writer recorded it already: records are immutable
            if st is not None and st.st_uid != me:
                continue
            try:
                self._write_at(path, key, sealed)
                return path
            except PermissionError:
                continue  # another user's file appeared there meanwhile (sticky directory)
        _report_invalid(paths[0], f"cannot record {kind}/{key}: {' and '.join(str(p) for p in paths)} belong to "
                        "other users; it will be derived again next time (ask the store's administrator to remove "
                        "them)", prefix="warning")
        return None

    def _write_at(self, path: Path, key: str, doc: dict[str, Any]) -> None:
        tmp = self.root / "tmp" / f"{self.host}-{os.getpid()}-{key}.{secrets.token_hex(4)}.json"  # gc: dead pid
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
        try:
            with open(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(doc, sort_keys=True, ensure_ascii=False))
                f.write("\n")
            faults.point("record-temp-written")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def record_realisation(self, doc: dict[str, Any]) -> None:
        """Write a realisation, index its outputs by object, and point its recipe at it. The caller holds the
        key's lock and found nothing servable, so any existing record of ours is replaced (a dangling or
        invalid record is repaired by the re-run). The indexes are best effort: records are the truth.

        The origins entries are written before the record: a kill between leaves an entry naming no realisation,
        which readers skip and gc removes, never a record that `nw why` cannot find its producer by (nor one `nw
        verify` calls a missing index entry) until the next `nw gc`."""
        rk = doc["resolved_key"]
        for h in doc["outputs"].values():
            self._index_origin(h, rk)
        faults.point("origins-indexed")
        try:
            written = self.write_record("realisations", rk, doc, replace=True)
        except OSError as e:  # (write_record handles another user's file itself: this is the disk failing us)
            raise NixWorkflowError(
                f"cannot record the result of step '{doc.get('name')}' in {self.root / 'realisations'}: "
                f"{e.strerror or e}. Nothing was recorded, so nothing of this run is served and the step runs again "
                "next time; free some space (or fix the store's filesystem) and run again.") from None
        faults.point("realisation-written")
        faults.point("origins-written")  # (the record and its index entries are written: kept for the crash tests)
        with contextlib.suppress(OSError):
            if not (doc["recipe_key"] == rk and written is not None and self._link_recipe(written, rk)):
                self.set_last(doc["recipe_key"], rk, doc["recipe"])

    def _link_recipe(self, realisation: Path, key: str) -> bool:
        """Point recipe `key` at its own realisation by a hard link `recipes/<key>.json` → the realisation file
        (a step without upstream steps realises to its recipe key: see records._check_recipe), replacing a
        record of ours like set_last does, beside another user's like write_record does. A link costs a
        directory entry where a second record costs an inode. False if no link could be made (then the caller
        writes the record)."""
        try:
            src = os.lstat(realisation)
        except OSError:
            return False
        me = os.getuid()
        for path in self._record_paths("recipes", key)[:2]:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) == (src.st_dev, src.st_ino):
                return True
            if st is not None and st.st_uid != me:
                continue
            tmp = f"{self.root}/tmp/{self.host}-{os.getpid()}-{key}.{secrets.token_hex(4)}.json"  # gc: dead pid
            try:
                os.link(realisation, tmp, follow_symlinks=False)
            except OSError:
                return False
            try:
                faults.point("record-temp-written")  # as for a written record: a kill here leaves tmp/ to gc
                os.replace(tmp, path)
                return True
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                if not isinstance(e, PermissionError):
                    return False  # (PermissionError: another user's file appeared there: try our own name)
        return False

    def _index_origin(self, h: str, rk: str) -> None:
        """Add `origins/<h>/<rk>` (or, when another user's directory is in the way, `origins/<h>.<uid>/<rk>`);
        nothing another user made first ever blocks, and readers check every entry against a trusted record."""
        if not (records.is_name(h) and records.is_name(rk)):
            return
        for d in self.origin_dirs(h)[:2]:
            try:
                try:
                    d.mkdir()
                    d.chmod(0o1777)  # every user may add the records that produced this object
                except FileExistsError:
                    if not stat.S_ISDIR(os.lstat(d).st_mode):
                        continue  # another user's symlink (or file): never create anything where it points
                if os.path.lexists(d / rk):
                    return
                _new_origin_entry(self.root, f"{d}/{rk}")
                return
            except OSError:
                continue

    def origin_dirs(self, h: str) -> list[Path]:
        """The index directories of object `h`: the shared one, then each trusted user's own (this user's first)."""
        me = os.getuid()
        d = self.root / "origins"
        return [d / h] + [d / f"{h}.{uid}" for uid in [me, *sorted(self.trusted - {me})]]

    def set_last(self, recipe_key: str, resolved_key: str, recipe: dict[str, Any] | None = None) -> None:
        """Point a recipe key at the resolved key it last realised to (the record is replaced atomically)."""
        if recipe is None:
            old = self.read_record("recipes", recipe_key)
            recipe = old.get("recipe") if old else None
        self.write_record("recipes", recipe_key, {"recipe_key": recipe_key, "recipe": recipe,
                                                  "last_resolved_key": resolved_key}, replace=True)

    def last(self, recipe_key: str) -> str | None:
        """The resolved key a recipe key last realised to, from a trusted, valid recipes/ record."""
        doc = self.read_record("recipes", recipe_key)
        return doc["last_resolved_key"] if doc else None

    def origins(self, h: str) -> list[dict[str, Any]]:
        """Trusted, valid realisations that produced object `h`, newest first."""
        if not records.is_name(h):
            return []
        keys: set[str] = set()
        for d in self.origin_dirs(h):
            with contextlib.suppress(OSError):
                keys.update(os.listdir(d))
        docs = []
        for k in sorted(keys):
            doc = next((d for d in self._valid_records("realisations", k) if h in d["outputs"].values()), None)
            if doc is not None:
                docs.append(doc)
        return sorted(docs, key=lambda d: d["end"], reverse=True)

    def log_path(self, resolved_key: str) -> Path:
        """The log of a key's run: `logs/<key>.log`, or this user's own name when another user's file (or
        symlink, or a hard link to some file of ours) holds that name, so nobody can make a run fail or write
        through a planted path."""
        uid = os.getuid()
        candidates = [self.root / "logs" / f"{resolved_key}.log", self.root / "logs" / f"{resolved_key}.{uid}.log"]
        for path in candidates:
            try:
                st = os.lstat(path)
            except OSError:
                return path
            if st.st_uid == uid and stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                return path  # (a second link: a file of ours linked there, to be overwritten by the log: not ours)
        private = user_cache_dir(self.root, "logs")
        with contextlib.suppress(OSError):
            private.mkdir(parents=True, exist_ok=True)
        return private / f"{resolved_key}.log"

    # ---- locks, scratch space -----------------------------------------------------------

    def lock(self, key: str) -> locks.FlockLock | filelock.BaseFileLock:
        """The per-key lock: held while a key is built so no two processes run the same recipe. Usable by every
        user of a shared store; a lock file another user made unopenable falls back to a per-user one."""
        if not records.is_name(key):
            raise ValueError(f"not a key: {key!r}")
        return locks.lock(self.root / "locks" / f"{key}.lock")

    @contextlib.contextmanager
    def gc_guard(self, exclusive: bool = False, waiting: Any = None) -> Iterator[None]:
        """Shared while writing objects and records; exclusive while collecting garbage. `waiting`: as for
        locks.FlockLock.acquire (a collection says whom it waits for)."""
        guard = locks.FlockLock(self.root / "locks" / "gc.lock", shared=not exclusive)
        guard.acquire(waiting)
        try:
            yield
        finally:
            guard.release()

    def new_tmp(self, label: str) -> Path:
        """A fresh scratch directory named after this host and process, so leftovers of dead builders are
        recognisable and reclaimable."""
        path = self.root / "tmp" / f"{self.host}-{os.getpid()}-{label}-{secrets.token_hex(4)}"
        path.mkdir(mode=0o700)
        return path

    def state_dir(self, recipe_key: str) -> Path:
        """The persistent $state of a resumable step: `state/<key>`, or (when another user holds that name)
        `state/<key>.<uid>`, or this user's private cache; only ever a directory this user owns."""
        if not records.is_name(recipe_key):
            raise ValueError(f"not a key: {recipe_key!r}")
        uid = os.getuid()
        candidates = self._state_candidates(recipe_key)
        for path in candidates:
            with contextlib.suppress(OSError):
                path.mkdir(parents=path == candidates[-1], exist_ok=True)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_uid == uid:
                return path
        raise NixWorkflowError(f"cannot create a $state directory for recipe {recipe_key}: "
                               f"{', '.join(map(str, candidates))} are taken or not writable")

    def _state_candidates(self, recipe_key: str) -> list[Path]:
        return [self.root / "state" / recipe_key, self.root / "state" / f"{recipe_key}.{os.getuid()}",
                user_cache_dir(self.root, "state") / recipe_key]

    def kept_state(self, recipe_key: str) -> Path | None:
        """The $state a resumable step would resume from (state_dir's, only if it exists, is this user's and holds
        something), without creating one: `nw status` says that an interrupted step resumes."""
        if not records.is_name(recipe_key):
            return None
        for path in self._state_candidates(recipe_key):
            try:
                st = os.lstat(path)
                if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and os.listdir(path):
                    return path
            except OSError:
                continue
        return None

    # ---- materialisation and roots ------------------------------------------------------

    def materialise(self, h: str, dest: str | os.PathLike, mode: str = "auto") -> None:
        """Put object `h` at `dest` (replaced atomically). `auto` reflinks where the filesystem can and
        copies otherwise: both leave the store object untouched whatever the user later does to `dest`."""
        if mode not in LINK_MODES:
            raise NixWorkflowError(f"unknown link mode '{mode}': choose one of {', '.join(LINK_MODES)}")
        trees.place(self.object_path(h), dest, link=mode)

    def add_root(self, link: str | os.PathLike) -> str | None:
        """Register `link` (a symlink the user keeps, e.g. ./nix-workflow-output/NAME) as a GC root. Only an entry
        this user owns counts as registered (another user's could vanish); if the name is taken by another user,
        `<name>.<uid>` is used; returns the entry (a str: a cached run registers every output), None (warned)
        if both are."""
        text = os.fspath(link)
        if not (text.startswith("/") and os.path.normpath(text) == text):  # (an absolute, normal str: as is)
            text = str(Path(link).absolute())
        link = text
        name, uid = hashlib.sha256(text.encode()).hexdigest()[:32], os.getuid()
        for entry in (f"{self.root}/gcroots/{name}", f"{self.root}/gcroots/{name}.{uid}"):  # (no pathlib: a cached
            try:                                                                              # run registers each)
                st = os.lstat(entry)
            except FileNotFoundError:
                st = None
            if st is not None and st.st_uid != uid:
                continue
            if st is not None and stat.S_ISLNK(st.st_mode) and os.readlink(entry) == text:
                return entry
            tmp = f"{entry}.{secrets.token_hex(3)}"
            os.symlink(link, tmp)
            try:
                os.replace(tmp, entry)
                return entry
            except OSError:
                os.unlink(tmp)
        _report_invalid(self.root / "gcroots" / name, f"cannot register {link} as a gc root: its entries in "
                        f"{self.root / 'gcroots'} belong to other users", prefix="warning")
        return None

    def add_root_dir(self, directory: str | os.PathLike) -> str | None:
        """Register a directory of output links (./nix-workflow-output) as one GC root: every symlink directly in
        it that points into the store keeps its object (see rooted_objects). One entry per directory instead of
        one per link: `link_output` registers it once per Store, and a new link then costs no root file."""
        return self.add_root(directory)

    def link_output(self, directory: str, name: str, target: str) -> None:
        """Point `<directory>/<name>` (an absolute directory, a plain file name) at `target`, replaced atomically;
        the directory is the link's GC root. A link already right costs one readlink: a cached run presents
        every output, so nothing is written on that path."""
        self._root_dir(directory)
        link = f"{directory}/{name}"
        try:
            if os.readlink(link) == target:
                return
        except OSError:
            pass
        tmp = f"{directory}/.{name}.{os.getpid()}.{secrets.token_hex(3)}"
        try:
            os.symlink(target, tmp)
        except FileNotFoundError:  # the directory was removed while this process ran: made and rooted again
            self._rooted_dirs.discard(directory)
            self._root_dir(directory)
            os.symlink(target, tmp)
        try:
            os.replace(tmp, link)
        except OSError as e:  # e.g. the user put a directory of their own where the link goes
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise NixWorkflowError(
                f"cannot put the output link {link} (to {target}): {e.strerror or e}. Something other than an output "
                "link is at that name; move it away and run again (the result itself is stored and stays cached)."
            ) from None
        # Registered again (its entry is checked: two syscalls, only when a link is written): a gc that ran while
        # the directory was gone dropped the entry as stale, and the directory may be back since (remade by this
        # run's journal or another link), so the memo of _root_dir alone would leave this link unrooted.
        self.add_root_dir(directory)

    def _root_dir(self, directory: str) -> None:
        if directory not in self._rooted_dirs:
            os.makedirs(directory, exist_ok=True)
            self.add_root_dir(directory)
            self._rooted_dirs.add(directory)

    def rooted_objects(self) -> dict[str, list[str]]:
        """Object hash -> the root links that keep it; stale root entries are ignored. An entry naming a
        directory (add_root_dir) roots every symlink directly in it."""
        store_dir = str(self.root / "store") + "/"
        out: dict[str, list[str]] = {}
        for entry in (self.root / "gcroots").iterdir():
            try:
                named = os.readlink(entry)
                links = _links_in(named) if _is_real_dir(named) else [named]
            except OSError:
                continue
            for link in links:
                try:
                    target = os.path.normpath(os.path.join(os.path.dirname(link), os.readlink(link)))
                except OSError:
                    continue
                if target.startswith(store_dir):
                    out.setdefault(target[len(store_dir):].split("/")[0], []).append(link)
        return out


class ChangedWhileStored(NixWorkflowError):
    """Something wrote to an object between its hashing and its publication: nothing of it is stored."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"cannot store {what}: its files changed while it was being stored, so it was not stored (what was "
            "published was moved to quarantine/). A process the step started is probably still writing to it: the "
            "engine stops every process of a step before storing its outputs, but one that left the step's session "
            "and cleared its environment (`setsid env -i ...`) escapes that (docs/trust.md). Make the step wait for "
            "the processes it starts, and run it again.")


SETTLE_SECONDS = 3.0
"""How long a store subdirectory another user has just made may stay short of 1777 before it is refused: its
maker creates it (mode 0755 under the usual umask) and makes it 1777 right after (Store._ensure_layout)."""


def _check_shared_dir(path: Path, setting: str = DEFAULT_SETTING, reading: bool = False) -> None:
    """Refuse a store subdirectory that another user made unusable or made to point elsewhere (it was there before
    we looked, so whoever ran first chose it): a symlink or non-directory of another user, or a directory of another
    user that not everyone may add to (1777, like /tmp). Else every write into it would fail half-way through a run
    with a bare "Permission denied", or go where that user chose.

    A directory made in the last few seconds that is not 1777 yet is waited for (up to SETTLE_SECONDS): two users'
    first runs on a fresh shared store race to make its subdirectories, and the loser used to see the winner's new
    directory between its mkdir and its chmod, and refuse the whole store.

    `reading` (a store opened only to read, which this user cannot write): a directory others may not add to is
    no fault then (nothing is added), but one that is no real directory still is (it points reads elsewhere)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        try:
            st = os.lstat(path)
        except OSError:
            return  # (the writability checks that follow say what is wrong)
        why, st = _shared_dir_fault(path, st)
        if why is None or (reading and stat.S_ISDIR(st.st_mode)):  # (a mode fault: a directory, not 1777)
            return
        if not (stat.S_ISDIR(st.st_mode) and time.time() - st.st_ctime < SETTLE_SECONDS
                and time.monotonic() < deadline):
            break
        time.sleep(0.01)
    # (chmod of a symlink or a file would not help: only a directory can be made 1777)
    chmod = f", or `sudo chmod 1777 {path}`" if stat.S_ISDIR(st.st_mode) else ""
    raise NixWorkflowError(
        f"{path} {why}, and it belongs to {trust.user_name(st.st_uid)}: every directory of a shared store must "
        "be a real directory that every user may add to and nobody may empty, so nw will not use this store. "
        f"Ask that user or the store's administrator to remove it (nw creates it again){chmod}; or use a "
        f"private store (choose one with {setting}).")


def _shared_dir_fault(path: Path, st: os.stat_result) -> tuple[str | None, os.stat_result]:
    """What is wrong with store subdirectory `path` (lstat `st`) for this user, or None (see _check_shared_dir),
    with the stat of what was judged (the target of our own symlink)."""
    mine = (os.getuid(), 0)
    if stat.S_ISLNK(st.st_mode) and st.st_uid in mine:
        try:
            st = os.stat(path)  # our own (or root's) link to a directory elsewhere, e.g. a bigger disk: judge that
        except OSError:
            return None, st
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory" + (" but a symlink" if stat.S_ISLNK(st.st_mode) else ""), st
    if st.st_uid not in mine and stat.S_IMODE(st.st_mode) & 0o1777 != 0o1777:
        mode = oct(stat.S_IMODE(st.st_mode))
        return f"is a directory of mode {mode}, not 1777 (world-writable with the sticky bit)", st
    return None, st


def _read_only_fs(path: Path) -> bool:
    """True if `path` (or, when it does not exist, the nearest directory above it) is on a read-only filesystem."""
    while not os.path.exists(path) and path != path.parent:
        path = path.parent
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _reason(e: OSError, where: Path) -> str:
    """The reason of an OSError about creating something in `where`, in words (a read-only filesystem, whose
    EROFS is easy to mistake for a permission problem, named as such)."""
    if e.errno == errno.EROFS or _read_only_fs(where):
        return f"{where} is on a read-only filesystem"
    return e.strerror or str(e)


def _is_real_dir(path: str) -> bool:
    """A directory, not a symlink to one (a root entry naming a link to a directory roots that link's target)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _links_in(directory: str) -> list[str]:
    """The symlinks directly in `directory` (not below it: a directory root is one level of output links)."""
    with os.scandir(directory) as it:
        return [e.path for e in it if e.is_symlink()]


_ORIGIN_MARKERS: dict[Path, str | None] = {}  # store root -> this user's origins marker file (None: cannot link)


def _new_origin_entry(root: Path, entry: str) -> None:
    """Create the index entry `entry` (an empty read-only file: only its name and owner mean anything) as a
    hard link to this user's empty marker file, `<root>/cache/<uid>/origins-entry`: a new name for an
    existing inode costs a directory entry, where a new file costs an inode (about 1 ms on ext4 here, once
    per stored object). Readers look at the name and the owner only, and the owner is the same (the marker
    is ours, in our private cache directory); removing an entry removes that name only. Where a link is not
    possible (the marker is missing or at the link limit, the cache is on another filesystem) the entry is
    created as a file of its own, as it always was. Raises OSError (FileExistsError) like that creation."""
    marker = _ORIGIN_MARKERS[root] if root in _ORIGIN_MARKERS else _origin_marker(root)
    if marker:
        try:
            os.link(marker, entry, follow_symlinks=False)
            return
        except FileExistsError:
            raise
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EMLINK):  # removed, or 65,000 entries share it: start a new one
                with contextlib.suppress(OSError):
                    os.unlink(marker)
                _ORIGIN_MARKERS.pop(root, None)
            elif e.errno in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP):  # no link to it possible: stop trying
                _ORIGIN_MARKERS[root] = None
            # (anything else, e.g. EACCES, is about the index directory: the creation below reports it)
    os.close(os.open(entry, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o444))


def _origin_marker(root: Path) -> str | None:
    """This user's marker file for origins entries (created empty, 0444, if missing), or None if there is no
    usable one: it must be a regular empty file of ours."""
    path = str(user_cache_dir(root, "origins-entry"))
    try:
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444))
        except FileExistsError:
            pass
        st = os.lstat(path)
        usable = stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and st.st_size == 0
    except OSError:
        usable = False
    _ORIGIN_MARKERS[root] = path if usable else None
    return _ORIGIN_MARKERS[root]


def _seal(path: Path, links: int = 1) -> None:
    """Make a staged object read-only (files 0444/0555, directories 0555 except the top, which the caller
    seals where no object name can see it yet) and flush its bytes to disk, so the rename that publishes
    it never exposes writable or unsynced content. Any depth (see nixlib.trees)."""
    trees.seal(path, links)


def _place(staged: Path, dest: Path) -> None:
    """Publish without ever replacing an existing object (FileExistsError if one is there)."""
    if staged.is_dir() and not staged.is_symlink():
        try:
            os.rename(staged, dest)
        except OSError as e:  # EPERM, not EEXIST, when another user's object has the name in sticky store/
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY) or os.path.lexists(dest):
                raise FileExistsError(dest) from None
            raise
    else:
        os.link(staged, dest, follow_symlinks=False)
        os.unlink(staged)


def force_remove(path: Path) -> None:
    """Remove a file or tree even if it was sealed read-only, at any depth and path length."""
    trees.remove(path)


def _copy_file(src: str, dst: str, link: str) -> None:
    """Kept for callers: copy (or reflink, or hardlink) one file; see nixlib.trees.copy."""
    trees.copy(src, dst, writable=True, link=link)


def disk_full(error: OSError, what: str, root: Path) -> NixWorkflowError | None:
    """The one-paragraph error for storing `what` on a full filesystem (or over quota), or None for any other
    error. Nothing partial is stored then: staging is private, so this only needs to be said clearly."""
    if error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    return NixWorkflowError(
        f"cannot store {what}: the filesystem of the store at {root} is full ({error.strerror}); nothing of it "
        "was stored. Free space there (`nw gc` removes results no output link uses) and run again.")


def copy_tree(src: Path, dst: Path, writable: bool, link: str = "auto") -> None:
    """Copy a file, symlink or tree keeping only what a NAR keeps (contents, exec bit, symlink targets),
    at any depth and path length."""
    trees.copy(src, dst, writable, link)
