"""`nw verify`: check everything the store and this user's caches hold; `--repair` fixes what it may.

Checked: every object (re-hashed without the memo; read-only permissions), every record
(readable, shape, digest, key, writer trusted, objects present), the indexes (origins,
recipes) against the records, this user's stat-memo and evaluation-cache entries, and the
permissions of the store's directories. Other users' records are not ours to judge or
remove: they are listed as ignored (a run never serves them), not as problems.

Repair only touches what this user owns (a sticky store allows nothing else): corrupt
objects are quarantined, invalid or dangling records and stale index entries removed (the
steps re-run, and the re-run writes valid records), missing origins entries rebuilt from
the records, invalid cache entries dropped, and write bits cleared on our objects.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixlib import faults, locks, nar, records, statmemo, trees, trust
from nixlib.errors import NixWorkflowError
from nixlib.evalcache import VERSION as EVAL_VERSION
from nixlib.recipe import digest
from nixlib.store import SUBDIRS, Store, parse_raw, read_raw


@dataclass
class Report:
    """What verify found (problems: each one line) and did (repairs); ignored lists other users' entries."""

    objects: int = 0
    records: int = 0
    corrupt: list[tuple[str, str, Path | None]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unrepaired: int = 0
    ignored: list[str] = field(default_factory=list)


class _Check:
    def __init__(self, store: Store, repair: bool) -> None:
        self.store, self.repair, self.me = store, repair, os.getuid()
        self.report = Report()
        self.valid: dict[str, list[dict[str, Any]]] = {}  # resolved key -> trusted valid realisations

    def problem(self, message: str, fix: Callable[[], str | None] | None = None) -> None:
        """Report a problem; with --repair, try `fix` (returns what it did, or None if it could not)."""
        self.report.problems.append(message)
        done = None
        if self.repair and fix is not None:
            try:
                done = fix()
            except OSError as e:
                done = None
                self.report.problems.append(f"  could not repair: {e.strerror or e}")
        if done:
            self.report.repaired.append(done)
        else:
            self.report.unrepaired += 1

    def tidy(self, message: str, fix: Callable[[], str | None]) -> None:
        """Something harmless but stale (readers skip it): noted, not a problem; --repair cleans it up."""
        self.report.ignored.append(f"note: {message}")
        if self.repair:
            try:
                done = fix()
            except OSError:
                done = None
            if done:
                self.report.repaired.append(done)

    def remove(self, path: Path, what: str) -> Callable[[], str | None]:
        """A fix that removes our own file (never another user's). One below a store subdirectory's subdirectory
        (origins/<object>/<key>) is reached without following a symlink (trees.beneath): another user may have
        put one there, pointing at a directory of ours."""
        def fix() -> str | None:
            rel = path.relative_to(self.store.root).parts if path.is_relative_to(self.store.root) else ()
            with (trees.beneath(self.store.root / rel[0], path) if len(rel) > 2
                  else contextlib.nullcontext(str(path))) as safe:
                if os.lstat(safe).st_uid != self.me:
                    return None
                os.unlink(safe)
            return f"removed {what} {path}"
        return fix


def verify(store: Store, repair: bool = False) -> Report:
    """Check the whole store (see the module docstring); with `repair`, fix what this user may."""
    c = _Check(store, repair)
    with store.gc_guard():  # (shared, as a run storing a result holds it): a `nw gc` meanwhile removed objects and
        _layout(c)          # records as they were checked, and each one showed as corrupt or dangling; it waits now
        _objects(c)
        _realisations(c)
        faults.point("verify-realisations-read")
        _recipes(c)
        _origins(c)
        _memo(c)
        _eval_cache(c)
    return c.report


def _layout(c: _Check) -> None:
    for d in [c.store.root, *(c.store.root / s for s in SUBDIRS)]:
        try:
            st = os.lstat(d)
        except OSError:
            continue
        if st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX:
            def fix(d: Path = d, st: os.stat_result = st) -> str | None:
                if st.st_uid != c.me:
                    return None
                os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_ISVTX)
                return f"set the sticky bit on {d}"
            c.problem(f"unsafe directory {d}: world-writable without the sticky bit, so any user can delete or "
                      "replace others' entries (chmod +t)", fix)


def _objects(c: _Check) -> None:
    d = c.store.root / "store"
    for h in _names(d):
        path = d / h
        if trees.stage_in_use(h):  # being published by an ingest, or removed by a gc, right now: not a problem
            continue
        if h.startswith(trees.STAGE_PREFIX):  # a dead process's: never an object name, so never served
            c.tidy(f"{path}: an object a killed process was publishing, never served (`nw gc` removes it)",
                   _remover(c, path, "staging leftover"))
            continue
        c.report.objects += 1
        if not records.is_name(h):
            c.problem(f"unexpected entry {path}: not an object name", _remover(c, path, "entry"))
            continue
        try:
            actual = nar.nar_hash(path)
        except (OSError, NixWorkflowError) as e:
            actual = f"(unreadable: {e})"
        if actual != h:
            try:
                moved = c.store.quarantine(h)
            except OSError as e:
                moved = None
                c.report.problems.append(f"  could not quarantine {path}: {e.strerror or e}")
            c.report.corrupt.append((h, actual, moved))
            where = f"moved to {moved}" if moved else _not_moved(path)
            c.problem(f"corrupt: {h} hashes to {actual}; {where}",
                      (lambda m=moved, h=h: f"quarantined {h} to {m}") if moved else None)
            continue
        c.store.memo.remember(path, h, owners=c.store.trusted)
        _object_modes(c, path)


def _not_moved(path: Path) -> str:
    """What keeps a corrupt object where it is (it is never served either way), and who can move it."""
    owner = _owner(path)
    if owner is None:
        return "it is gone"
    if owner == os.getuid():
        return "it could not be moved aside (run `nw verify --repair` again, or move it into quarantine/ by hand)"
    return (f"it could not be moved aside: it belongs to {trust.user_name(owner)}, so only they or root can "
            "(`nw verify` as that user moves it); until then it is never served, and a step producing it fails")


def _object_modes(c: _Check, obj: Path) -> None:
    """An object must be read-only all the way down (files 0444/0555, directories 0555)."""
    for p, st in trees.stat_tree(obj):  # descriptor-relative: objects deeper than PATH_MAX are checked too
        if stat.S_ISLNK(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode)
        want = 0o555 if stat.S_ISDIR(st.st_mode) else (0o555 if mode & 0o100 else 0o444)
        if mode != want:
            def fix(p: Path = p, st: os.stat_result = st, want: int = want) -> str | None:
                if st.st_uid != c.me:
                    return None
                os.chmod(p, want)
                return f"made {p} read-only ({oct(want)})"
            owner = "" if st.st_uid == c.me else f" (owned by {trust.user_name(st.st_uid)})"
            c.problem(f"writable object {p}: mode {oct(mode)}, expected {oct(want)}{owner}", fix)


def _read(c: _Check, kind: str, key: str | None, path: Path) -> dict[str, Any] | None:
    """A record's valid doc, reporting why not; other users' records are listed as ignored."""
    if key is None:
        c.problem(f"unexpected entry {path}: not a record name", _remover(c, path, "entry"))
        return None
    c.report.records += 1
    try:
        owner, data = read_raw(path)
    except FileNotFoundError:
        return None
    except (OSError, records.InvalidRecord) as e:
        c.problem(f"invalid record {path}: {e.strerror if isinstance(e, OSError) else e}", c.remove(path, "record"))
        return None
    if owner not in c.store.trusted:
        c.report.ignored.append(f"ignored: {path} was written by {trust.user_name(owner)}, not a trusted user "
                                "(never served to you; see docs/trust.md)")
        return None
    try:
        return records.check(kind, key, parse_raw(data))
    except records.InvalidRecord as e:
        mine = "" if owner == c.me else f" (written by {trust.user_name(owner)}: only they or root can remove it)"
        c.problem(f"invalid record {path}: {e}{mine}", c.remove(path, "invalid record"))
        return None


def _realisations(c: _Check) -> None:
    for key, path in c.store.record_files("realisations"):
        doc = _read(c, "realisations", key, path)
        if doc is None or key is None:
            continue
        missing = [f"{n} ({h})" for n, h in doc["outputs"].items() if not c.store.has(h)]
        if missing:
            c.problem(f"dangling record {path}: output object(s) {', '.join(missing)} missing or corrupt "
                      "(the step re-runs)", c.remove(path, "dangling record"))
            continue
        c.valid.setdefault(key, []).append(doc)


def _valid_now(c: _Check, rk: str) -> bool:
    """Whether `rk` has a valid realisation: one seen by `_realisations`, or one a live run recorded since (an index
    entry read after that scan may name a realisation it did not see: re-read it before calling the entry stale;
    --repair removed the live run's fresh entries)."""
    if rk not in c.valid and records.is_name(rk):
        docs = [d for d in c.store._valid_records("realisations", rk)
                if all(c.store.has(h) for h in d["outputs"].values())]
        if docs:
            c.valid[rk] = docs
    return rk in c.valid


def _being_recorded(c: _Check, rk: str) -> bool:
    """Whether a live process holds `rk`'s lock now: a run writes a realisation's index entries and then the record
    under it, so an index entry of a locked key without its record yet is one being written, not stale (and a
    missing entry of a locked key, recorded by a store of an older version in the other order, not a problem)."""
    return locks.held(c.store.root / "locks" / f"{rk}.lock")


def _recipes(c: _Check) -> None:
    for key, path in c.store.record_files("recipes"):
        doc = _read(c, "recipes", key, path)
        if doc is not None and not _valid_now(c, doc["last_resolved_key"]):
            c.problem(f"stale index entry {path}: its realisation {doc['last_resolved_key']} is missing or invalid",
                      c.remove(path, "stale index entry"))


def _origins(c: _Check) -> None:
    d = c.store.root / "origins"
    for name in _names(d):
        h = name.split(".")[0]
        if not records.is_name(h) or not _real_dir(d / name):
            c.problem(f"unexpected entry {d / name}: not an object's index directory", _remover(c, d / name, "entry"))
            continue
        for rk in _names(d / name):
            if _valid_now(c, rk) and any(h in doc["outputs"].values() for doc in c.valid[rk]):
                continue
            if _being_recorded(c, rk) and not _valid_now(c, rk):  # written before its record, under the key's lock
                continue
            entry = d / name / rk
            owner = _owner(entry)
            if owner is not None and owner not in c.store.trusted:
                c.report.ignored.append(f"ignored: index entry {entry} by {trust.user_name(owner)} (not trusted)")
                continue
            c.tidy(f"stale index entry {entry}: no valid realisation {rk} produced {h} (skipped by readers)",
                   c.remove(entry, "stale index entry"))
    for rk, docs in c.valid.items():
        for doc in docs:
            for h in doc["outputs"].values():
                if not any(os.path.lexists(o / rk) for o in c.store.origin_dirs(h)) and not (
                        _being_recorded(c, rk) or any(os.path.lexists(o / rk) for o in c.store.origin_dirs(h))):
                    c.problem(f"missing index entry {d / h / rk} (realisation {rk} produced {h})",
                              lambda h=h, rk=rk: _rebuild(c, h, rk))


def _rebuild(c: _Check, h: str, rk: str) -> str | None:
    c.store._index_origin(h, rk)
    entry = next((o / rk for o in c.store.origin_dirs(h) if os.path.lexists(o / rk)), None)
    return f"rebuilt index entry {entry}" if entry else None


def _memo(c: _Check) -> None:
    memo = c.store.memo
    for name in _names(memo.directory):
        path = memo.directory / name
        why = _memo_problem(memo, path)
        if why:
            c.problem(f"invalid memo entry {path}: {why}", c.remove(path, "memo entry"))


def _memo_problem(memo: statmemo.StatMemo, path: Path) -> str | None:
    try:
        if os.lstat(path).st_uid != os.getuid():
            return "not written by you"
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        return f"unreadable ({e})"
    fields = ("v", "host", "path", "signature", "nar_hash")
    if not isinstance(data, dict) or any(not isinstance(data.get(f), (str, int)) for f in fields):
        return "not a memo entry"
    if not nar.is_nar_hash(str(data["nar_hash"])) or memo.memo_file(str(data["path"])) != path:
        return "malformed (name or hash)"
    if data["host"] != memo.host or not os.path.lexists(data["path"]):
        return None
    try:
        if memo.signature(data["path"]) != data["signature"]:
            return None  # stale: a miss, harmless
        actual = nar.nar_hash(data["path"])
    except (OSError, NixWorkflowError):
        return None
    return None if actual == data["nar_hash"] else f"claims {data['path']} hashes to {data['nar_hash']}, it is {actual}"


def _eval_cache(c: _Check) -> None:
    d = statmemo.user_cache_dir(c.store.root, "nix-eval")
    for name in _names(d):
        path = d / name
        try:
            if os.lstat(path).st_uid != c.me:
                why = "not written by you"
            else:
                entry = json.loads(path.read_bytes())
                ok = (isinstance(entry, dict) and isinstance(entry.get("deps"), dict) and "request" in entry
                      and name == f"{digest({'v': EVAL_VERSION, 'request': entry['request']})}.json")
                why = None if ok else "not an evaluation-cache entry for its name"
        except (OSError, ValueError) as e:
            why = f"unreadable ({e})"
        if why:
            c.problem(f"invalid evaluation-cache entry {path}: {why}", c.remove(path, "evaluation-cache entry"))


def _remover(c: _Check, path: Path, what: str) -> Callable[[], str | None]:
    def fix() -> str | None:
        if _owner(path) != c.me:
            return None
        from nixlib.store import force_remove

        force_remove(path)
        return f"removed {what} {path}"
    return fix


def _real_dir(path: Path) -> bool:
    """A directory, not a symlink to one (which another user may have put in a shared directory)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _owner(path: Path) -> int | None:
    try:
        return os.lstat(path).st_uid
    except OSError:
        return None


def _names(d: Path) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except OSError:
        return []
