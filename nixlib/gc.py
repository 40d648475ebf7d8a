"""Garbage collection and verification of the store.

Roots are the links users keep (./nix-workflow-output/*, registered in gcroots/). A root
keeps its object, the realisation that made it, and that realisation's whole upstream
lineage (records and objects), so a kept result stays explainable and cheap to extend.
Everything else goes, including stale records, the leftovers of dead builders, and the
Nix GC roots of envs that no kept realisation used (so `nix-collect-garbage` may then
reclaim those envs).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from nixlib import nar
from nixlib.env import GCROOTS as NIX_GCROOTS
from nixlib.recipe import digest
from nixlib.store import Store, force_remove

GRACE_SECONDS = 24 * 3600
MIN_AGE = 3600.0  # objects and records this recent are kept: their run may not have linked them yet


@dataclass
class GcPlan:
    """What a collection keeps and removes."""

    keep_objects: set[str] = field(default_factory=set)
    keep_records: set[str] = field(default_factory=set)
    remove: list[Path] = field(default_factory=list)


def plan(store: Store, min_age: float = MIN_AGE) -> GcPlan:
    """Decide what to keep from the roots; lists every path that would be removed.

    Objects and realisations younger than `min_age` seconds are roots too: a pipeline that is still
    running has stored its steps but links its outputs only when it ends."""
    p = GcPlan()
    r = store.root
    for h in store.rooted_objects():
        _keep_object(store, h, p)
    for h in _younger(r / "store", min_age):
        _keep_object(store, h, p)
    for name in _younger(r / "realisations", min_age):
        doc = store.read_record("realisations", name.removesuffix(".json"))
        if doc is not None:
            p.keep_records.add(doc["resolved_key"])
            for h in doc["outputs"].values():
                _keep_object(store, h, p)
    p.remove += [r / "store" / h for h in _names(r / "store") if h not in p.keep_objects]
    for name in _names(r / "realisations"):
        if name.removesuffix(".json") not in p.keep_records:
            p.remove += [r / "realisations" / name, store.log_path(name.removesuffix(".json"))]
    p.remove += [r / "origins" / h for h in _names(r / "origins") if h not in p.keep_objects]
    for name in _names(r / "recipes"):
        if store.last(name.removesuffix(".json")) not in p.keep_records:
            p.remove.append(r / "recipes" / name)
    p.remove += [e for e in (r / "gcroots").iterdir() if not _live_root(e)]
    p.remove += list(_dead_tmp(store))
    p.remove += list(_stale_nix_roots(store, p.keep_records))
    return p


def _stale_nix_roots(store: Store, keep_records: set[str]) -> Iterator[Path]:
    """Nix GC roots of envs that no kept realisation used. Roots younger than a day are kept: a run may
    have built an env whose steps have not been recorded yet."""
    used = set()
    for rk in keep_records:
        doc = store.read_record("realisations", rk)
        if doc is not None:
            used.add(digest(doc["env"]["identity"]))
    now = time.time()
    for host_dir in _subdirs(store.root / NIX_GCROOTS):
        for name in _names(host_dir):
            entry = host_dir / name
            if name.split("-")[0] not in used and now - entry.lstat().st_mtime > GRACE_SECONDS:
                yield entry


def _keep_object(store: Store, h: str, p: GcPlan) -> None:
    """Keep `h` and, through the realisations that produced it, everything upstream (iteratively)."""
    todo = [h]
    while todo:
        obj = todo.pop()
        if obj in p.keep_objects:
            continue
        p.keep_objects.add(obj)
        for doc in store.origins(obj):
            if doc["resolved_key"] not in p.keep_records:
                p.keep_records.add(doc["resolved_key"])
                todo += [i["object"] for i in doc.get("inputs", [])] + list(doc.get("files", {}).values())


def _younger(d: Path, seconds: float) -> list[str]:
    now = time.time()
    return [n for n in _names(d) if now - os.lstat(d / n).st_mtime < seconds]


def _subdirs(d: Path) -> list[Path]:
    return [d / n for n in _names(d) if (d / n).is_dir()]


def _names(d: Path) -> list[str]:
    try:
        return os.listdir(d)
    except FileNotFoundError:
        return []


def _live_root(entry: Path) -> bool:
    try:
        link = os.readlink(entry)
        return os.path.islink(link) and os.path.exists(link)
    except OSError:
        return False


def _dead_tmp(store: Store) -> Iterator[Path]:
    """Scratch directories of builders on this host whose process no longer exists."""
    host = socket.gethostname()
    for name in _names(store.root / "tmp"):
        parts = name.split("-")
        if name.startswith(f"{host}-") and len(parts) > 2:
            pid = name[len(host) + 1:].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                yield store.root / "tmp" / name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def collect(store: Store, dry_run: bool = False, min_age: float = MIN_AGE) -> GcPlan:
    """Remove everything unreachable from the roots (under the store's exclusive GC lock)."""
    with store.gc_guard(exclusive=True):
        p = plan(store, min_age)
        if not dry_run:
            for path in p.remove:
                force_remove(path)
            _remove_idle_locks(store)
    return p


def _remove_idle_locks(store: Store) -> None:
    for name in _names(store.root / "locks"):
        if name == "gc.lock":
            continue
        lock = filelock.FileLock(store.root / "locks" / name, timeout=0)
        try:
            with lock:
                pass
        except filelock.Timeout:
            continue
        (store.root / "locks" / name).unlink(missing_ok=True)


def verify(store: Store) -> tuple[int, list[tuple[str, str, Path | None]]]:
    """Re-hash every object (no memo); quarantine mismatches. Returns (checked, [(name, actual, moved to)])."""
    bad = []
    names = _names(store.root / "store")
    for h in names:
        actual = nar.nar_hash(store.object_path(h))
        if actual != h:
            bad.append((h, actual, store.quarantine(h)))
        else:
            store.memo.remember(store.object_path(h), h)
    return len(names), bad
