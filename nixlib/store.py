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
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock

from nixlib import nar
from nixlib.errors import NixWorkflowError
from nixlib.statmemo import StatMemo

DEFAULT_ROOT = "/nix-workflow"
SUBDIRS = ("store", "realisations", "recipes", "origins", "state", "tmp", "locks", "gcroots", "logs", "cache",
           "quarantine")
LINK_MODES = ("auto", "reflink", "copy", "hardlink", "symlink")
_FICLONE = 0x40049409


def default_root() -> Path:
    """The store root: `NIX_WORKFLOW_STORE` if set, else /nix-workflow."""
    return Path(os.environ.get("NIX_WORKFLOW_STORE") or DEFAULT_ROOT)


class Store:
    """A store root and the operations on it; cheap to construct, safe to share across threads."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root or default_root()).absolute()
        self._ensure_layout()
        self.memo = StatMemo(self.root / "cache" / "statmemo")
        self.host = socket.gethostname()

    # ---- layout -------------------------------------------------------------------------

    def _ensure_layout(self) -> None:
        if not self.root.is_dir():
            try:
                self.root.mkdir(parents=True)
                self.root.chmod(0o1777)
            except FileExistsError:
                pass  # another process created it first; checked below like any existing root
            except OSError as e:
                raise NixWorkflowError(
                    f"cannot create the store at {self.root}: {e.strerror}. Create it once with "
                    f"`sudo mkdir -m 1777 -p {self.root}` (world-writable with the sticky bit, like /tmp), "
                    "or choose another location with --store DIR or NIX_WORKFLOW_STORE=DIR."
                ) from None
        for sub in SUBDIRS:
            path = self.root / sub
            if not path.is_dir():
                try:
                    path.mkdir()
                    path.chmod(0o1777)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise self._unwritable(e) from None
        if not os.access(self.root / "tmp", os.W_OK | os.X_OK):
            raise self._unwritable(OSError(errno.EACCES, "permission denied"))

    def _unwritable(self, e: OSError) -> NixWorkflowError:
        return NixWorkflowError(
            f"the store at {self.root} is not writable ({e.strerror}). A shared store must be created with "
            f"`sudo mkdir -m 1777 -p {self.root}`; to use a private store instead pass --store DIR or set "
            "NIX_WORKFLOW_STORE=DIR."
        )

    # ---- objects ------------------------------------------------------------------------

    def object_path(self, h: str) -> Path:
        return self.root / "store" / h

    def has(self, h: str) -> bool:
        """True if object `h` is present and re-hashes to its name (memoised by stat signature)."""
        path = self.object_path(h)
        if not os.path.lexists(path):
            return False
        if self.memo.hash(path) == h:
            return True
        self.quarantine(h)
        return False

    def quarantine(self, h: str) -> Path | None:
        """Move a corrupt object aside so it is never served; returns where it went."""
        dest = self.root / "quarantine" / f"{h}.{int(time.time())}.{secrets.token_hex(3)}"
        try:
            os.rename(self.object_path(h), dest)
        except FileNotFoundError:
            return None
        return dest

    def ingest(self, path: str | os.PathLike, move: bool = False) -> str:
        """Add a file or tree to the store; returns its NAR hash. `move` consumes `path` (same filesystem);
        otherwise a copy is sealed, so the source stays as it is."""
        if move:
            return self._publish(Path(path))
        if not os.path.lexists(path):
            raise NixWorkflowError(f"cannot add {path} to the store: no such file or directory")
        scratch = self.new_tmp("ingest")
        try:
            staged = scratch / "object"
            copy_tree(Path(path), staged, writable=True)
            return self._publish(staged)
        finally:
            force_remove(scratch)

    def _publish(self, staged: Path) -> str:
        """Seal, hash and rename a staged object into place; an intact existing copy wins."""
        _seal(staged)
        h = nar.nar_hash(staged)
        dest = self.object_path(h)
        if self.has(h):
            force_remove(staged)
            return h
        try:
            _place(staged, dest)
        except FileExistsError:
            force_remove(staged)
            if not self.has(h):
                raise NixWorkflowError(f"object {h} appeared corrupt while being added; run `nw verify`") from None
            return h
        if dest.is_dir() and not dest.is_symlink():
            dest.chmod(0o555)
        os.utime(dest, follow_symlinks=False)  # the object's mtime says when it entered the store (gc's min age)
        self.memo.remember(dest, h, sealed=True)
        return h

    # ---- records ------------------------------------------------------------------------

    def _record_path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.json"

    def write_record(self, kind: str, key: str, doc: dict[str, Any], replace: bool = False) -> Path:
        """Write a JSON record atomically (temp file + rename). Records are immutable unless `replace`:
        callers hold the key's lock, so a concurrent second writer can only write the same facts.

        Records are not fsynced: the objects they name are (before the record exists), and a record
        lost or truncated by a crash reads as absent, which only costs a re-run."""
        path = self._record_path(kind, key)
        if not replace and path.exists():
            return path
        tmp = self.root / "tmp" / f".{key}.{os.getpid()}.{secrets.token_hex(4)}.json"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(doc, sort_keys=True, ensure_ascii=False))
            f.write("\n")
        os.replace(tmp, path)
        return path

    def read_record(self, kind: str, key: str) -> dict[str, Any] | None:
        try:
            with open(self._record_path(kind, key), encoding="utf-8") as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def realisation(self, resolved_key: str) -> dict[str, Any] | None:
        """The realisation of a resolved key if it exists and all its objects are intact."""
        doc = self.read_record("realisations", resolved_key)
        if doc is None or not all(self.has(h) for h in doc["outputs"].values()):
            return None
        return doc

    def record_realisation(self, doc: dict[str, Any]) -> None:
        """Write a realisation, index its outputs by object, and point its recipe at it."""
        rk = doc["resolved_key"]
        self.write_record("realisations", rk, doc)
        for h in doc["outputs"].values():
            origin = self.root / "origins" / h
            origin.mkdir(exist_ok=True)
            os.close(os.open(origin / rk, os.O_CREAT | os.O_WRONLY, 0o644))
        self.set_last(doc["recipe_key"], rk, doc["recipe"])

    def set_last(self, recipe_key: str, resolved_key: str, recipe: dict[str, Any] | None = None) -> None:
        """Point a recipe key at the resolved key it last realised to (the record is replaced atomically)."""
        if recipe is None:
            old = self.read_record("recipes", recipe_key)
            recipe = old.get("recipe") if old else None
        self.write_record("recipes", recipe_key, {"recipe_key": recipe_key, "recipe": recipe,
                                                  "last_resolved_key": resolved_key}, replace=True)

    def last(self, recipe_key: str) -> str | None:
        doc = self.read_record("recipes", recipe_key)
        return doc.get("last_resolved_key") if doc else None

    def origins(self, h: str) -> list[dict[str, Any]]:
        """Realisations that produced object `h`, newest first."""
        try:
            keys = os.listdir(self.root / "origins" / h)
        except FileNotFoundError:
            return []
        docs = [d for k in keys if (d := self.read_record("realisations", k)) is not None]
        return sorted(docs, key=lambda d: d.get("end", 0), reverse=True)

    def log_path(self, resolved_key: str) -> Path:
        return self.root / "logs" / f"{resolved_key}.log"

    # ---- locks, scratch space -----------------------------------------------------------

    def lock(self, key: str) -> filelock.BaseFileLock:
        """The per-key lock: held while a key is built so no two processes run the same recipe."""
        path = self.root / "locks" / f"{key}.lock"
        if os.environ.get("NIX_WORKFLOW_LOCKS") == "soft":  # NFS without working flock
            return filelock.SoftFileLock(path, mode=0o666)
        return filelock.FileLock(path, mode=0o666, preserve_lock_file=True)

    @contextlib.contextmanager
    def gc_guard(self, exclusive: bool = False) -> Iterator[None]:
        """Shared while writing objects and records; exclusive while collecting garbage."""
        fd = os.open(self.root / "locks" / "gc.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def new_tmp(self, label: str) -> Path:
        """A fresh scratch directory named after this host and process, so leftovers of dead builders are
        recognisable and reclaimable."""
        path = self.root / "tmp" / f"{self.host}-{os.getpid()}-{label}-{secrets.token_hex(4)}"
        path.mkdir(mode=0o700)
        return path

    def state_dir(self, recipe_key: str) -> Path:
        path = self.root / "state" / recipe_key
        path.mkdir(exist_ok=True)
        return path

    # ---- materialisation and roots ------------------------------------------------------

    def materialise(self, h: str, dest: str | os.PathLike, mode: str = "auto") -> None:
        """Put object `h` at `dest` (replaced atomically). `auto` reflinks where the filesystem can and
        copies otherwise: both leave the store object untouched whatever the user later does to `dest`."""
        if mode not in LINK_MODES:
            raise NixWorkflowError(f"unknown link mode '{mode}': choose one of {', '.join(LINK_MODES)}")
        src, dest = self.object_path(h), Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".nw-{dest.name}.{secrets.token_hex(4)}"
        if mode == "symlink":
            os.symlink(src, tmp)
        else:
            copy_tree(src, tmp, writable=True, link=mode)
        _replace(tmp, dest)

    def add_root(self, link: str | os.PathLike) -> Path:
        """Register `link` (a symlink the user keeps, e.g. ./nix-workflow-output/NAME) as a GC root."""
        link = Path(link).absolute()
        entry = self.root / "gcroots" / hashlib.sha256(str(link).encode()).hexdigest()[:32]
        if not (entry.is_symlink() and os.readlink(entry) == str(link)):
            tmp = entry.with_name(entry.name + f".{secrets.token_hex(3)}")
            os.symlink(link, tmp)
            os.replace(tmp, entry)
        return entry

    def rooted_objects(self) -> dict[str, list[str]]:
        """Object hash -> the root links that keep it; stale root entries are ignored."""
        store_dir = str(self.root / "store") + "/"
        out: dict[str, list[str]] = {}
        for entry in (self.root / "gcroots").iterdir():
            try:
                link = os.readlink(entry)
                target = os.path.normpath(os.path.join(os.path.dirname(link), os.readlink(link)))
            except OSError:
                continue
            if target.startswith(store_dir):
                out.setdefault(target[len(store_dir):].split("/")[0], []).append(link)
        return out


def _seal(path: Path) -> None:
    """Make a staged object read-only (0444/0555, dirs 0555 except the top, sealed after its rename) and
    flush its bytes to disk, so the rename that publishes it never exposes unsynced content."""
    for p in reversed(nar.file_paths(path)):
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            os.chmod(p, 0o555 if st.st_mode & stat.S_IXUSR else 0o444)
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        elif stat.S_ISDIR(st.st_mode) and p != path:
            os.chmod(p, 0o555)
        elif not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise NixWorkflowError(f"cannot store {p}: only regular files, directories and symlinks can be stored")


def _place(staged: Path, dest: Path) -> None:
    """Publish without ever replacing an existing object (FileExistsError if one is there)."""
    if staged.is_dir() and not staged.is_symlink():
        try:
            os.rename(staged, dest)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise FileExistsError(dest) from None
            raise
    else:
        os.link(staged, dest, follow_symlinks=False)
        os.unlink(staged)


def _replace(tmp: Path, dest: Path) -> None:
    if dest.is_dir() and not dest.is_symlink():
        trash = dest.parent / f".nw-old-{dest.name}.{secrets.token_hex(4)}"
        os.rename(dest, trash)
        os.rename(tmp, dest)
        force_remove(trash)
    else:
        os.replace(tmp, dest)


def force_remove(path: Path) -> None:
    """Remove a file or tree even if it was sealed read-only."""
    if not os.path.lexists(path):
        return
    if path.is_dir() and not path.is_symlink():
        for p in nar.file_paths(path):
            if p.is_dir() and not p.is_symlink():
                os.chmod(p, 0o700)
        shutil.rmtree(path)
    else:
        path.unlink()


def _copy_file(src: str, dst: str, link: str) -> None:
    if link == "hardlink":
        os.link(src, dst)
        return
    if link in ("auto", "reflink"):
        with open(src, "rb") as s, open(dst, "wb") as d:
            try:
                fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
                return
            except OSError:
                if link == "reflink":
                    raise NixWorkflowError(
                        f"cannot reflink {src}: the filesystem does not support it (use --link-mode auto)"
                    ) from None
    shutil.copyfile(src, dst)


def copy_tree(src: Path, dst: Path, writable: bool, link: str = "auto") -> None:
    """Copy a file, symlink or tree keeping only what a NAR keeps (contents, exec bit, symlink targets)."""
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, 0o755 if writable else 0o555)
        for name in sorted(os.listdir(src)):
            copy_tree(src / name, dst / name, writable, link)
    else:
        _copy_file(str(src), str(dst), link)
        if link != "hardlink":
            exe = st.st_mode & stat.S_IXUSR
            os.chmod(dst, (0o755 if exe else 0o644) if writable else (0o555 if exe else 0o444))
