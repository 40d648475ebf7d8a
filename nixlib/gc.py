"""Garbage collection of the store.

Roots are the links users keep (./nix-workflow-output/*, registered in gcroots/), the temp roots
of live processes (nixlib.temproots: what a running `nw run`, Snakemake executor or Luigi worker
has looked up or produced), and, as an extra margin, objects and records younger than `--min-age`.
A root keeps its object, the realisations that made it, and their whole upstream lineage (records
and objects), so a kept result stays explainable and cheap to extend.

Which realisation made which object is read from the records themselves (every valid record in
realisations/), never from the origins index: a kill between a record and its index entry must not
make gc drop a rooted output's record and upstream. Records naming a missing object are garbage.
Everything else goes too: stale index entries, leftovers of dead processes of this host (build
scratch and record temp files in tmp/, hidden staging names in store/, temp-root files), and the Nix
GC roots of envs that no kept realisation used (so `nix-collect-garbage` may then reclaim them), the
`$state` of resumable steps that completed or went unused for `--min-age` (never one a live process uses),
and `--keep-failed` build directories older than `--min-age` (nixlib.checkpoints).
The whole plan and deletion run under the store's gc guard held exclusive.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixlib import checkpoints, locks, pids, records, temproots, trees
from nixlib.env import GCROOTS as NIX_GCROOTS
from nixlib.recipe import digest
from nixlib.store import Store, force_remove, parse_raw, read_raw

GRACE_SECONDS = 24 * 3600
MIN_AGE = 3600.0  # objects and records this recent are kept too (a margin; temp roots protect running pipelines)


@dataclass
class GcPlan:
    """What a collection keeps and removes (and, after `collect`, what it could not remove or re-indexed)."""

    keep_objects: set[str] = field(default_factory=set)
    keep_records: set[str] = field(default_factory=set)
    remove: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    reindexed: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Records:
    """Every valid realisation record naming only present objects: by key, and by the objects they produced."""

    docs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    producers: dict[str, set[str]] = field(default_factory=dict)
    files: dict[str, list[tuple[Path, bool]]] = field(default_factory=dict)  # key -> [(path, valid and servable)]


def plan(store: Store, min_age: float = MIN_AGE) -> GcPlan:
    """Decide what to keep from the roots; lists every path that would be removed. The caller holds the gc
    guard exclusive (see `collect`), so no process registers a temp root or writes a record meanwhile."""
    p = GcPlan()
    r = store.root
    objects = {n for n in _names(r / "store") if records.is_name(n)}
    recs = _scan_records(store, objects)
    live, dead_roots = temproots.live(r)
    todo: list[tuple[str, str]] = [("obj", h) for h in store.rooted_objects()]
    todo += [("obj", h) for h in _younger(r / "store", min_age)]
    todo += [("rec", key) for key, path in store.record_files("realisations") if key and _is_young(path, min_age)]
    todo += [("obj", n) for n in live] + [("rec", n) for n in live]
    _keep(recs, todo, objects, p)
    p.remove += [r / "store" / h for h in sorted(objects - p.keep_objects)]
    for key, entries in recs.files.items():
        for path, servable in entries:
            if key not in p.keep_records or not servable:
                p.remove.append(path)
    p.remove += [path for key, path in store.record_files("realisations") if key is None]
    p.remove += _logs(store, set(recs.files) - p.keep_records - live)  # a live process may be rebuilding a key
    p.remove += _stale_origins(r, p)
    p.remove += _stale_recipes(store, p.keep_records)
    p.remove += [e for e in _entries(r / "gcroots") if not _live_root(e)]
    p.remove += dead_roots
    p.remove += list(_dead_tmp(store))
    p.remove += checkpoints.state_garbage(store, set(recs.docs), live, min_age)  # completed, or unused and unrooted
    p.remove += checkpoints.failed_garbage(store, min_age)  # `nw run --keep-failed` build directories
    p.remove += list(trees.dead_stage_leftovers(r))
    p.remove += list(_stale_nix_roots(store, recs, p.keep_records))
    return p


def _scan_records(store: Store, objects: set[str]) -> _Records:
    """Read every realisation record, whoever wrote it (keeping more is always safe). A record is used only
    if it is valid (nixlib.records) and all its outputs are present; the rest is garbage."""
    recs = _Records()
    for key, path in store.record_files("realisations"):
        if key is None:
            continue
        doc = _load(path, key)
        servable = doc is not None and all(h in objects for h in doc["outputs"].values())
        recs.files.setdefault(key, []).append((path, servable))
        if doc is not None and servable:
            recs.docs.setdefault(key, []).append(doc)
            for h in doc["outputs"].values():
                recs.producers.setdefault(h, set()).add(key)
    return recs


def _load(path: Path, key: str, kind: str = "realisations") -> dict[str, Any] | None:
    try:
        return records.check(kind, key, parse_raw(read_raw(path)[1]))
    except (OSError, records.InvalidRecord):
        return None


def _keep(recs: _Records, todo: list[tuple[str, str]], objects: set[str], p: GcPlan) -> None:
    """Keep objects and records from `todo` and everything upstream of them (iteratively: chains may be long).
    A kept object keeps every record that produced it; a kept record keeps its outputs, inputs and files."""
    while todo:
        kind, name = todo.pop()
        if kind == "obj":
            if name in p.keep_objects or name not in objects:
                continue
            p.keep_objects.add(name)
            todo += [("rec", key) for key in recs.producers.get(name, ())]
        elif name not in p.keep_records and name in recs.docs:
            p.keep_records.add(name)
            for doc in recs.docs[name]:
                todo += [("obj", h) for h in doc["outputs"].values()]
                todo += [("obj", i["object"]) for i in doc["inputs"]]
                todo += [("obj", h) for h in doc["files"].values()]


def _logs(store: Store, removed_keys: set[str]) -> list[Path]:
    """Logs of removed records (`logs/<key>.log` or a user's `logs/<key>.<uid>.log`)."""
    d = store.root / "logs"
    return [d / n for n in _names(d) if n.endswith(".log") and n.split(".")[0] in removed_keys]


def _stale_origins(root: Path, p: GcPlan) -> list[Path]:
    """Index directories of removed objects, and entries naming removed records."""
    out = []
    d = root / "origins"
    for name in _names(d):
        if name.split(".")[0] not in p.keep_objects or not _is_dir(d / name):
            out.append(d / name)  # (a symlink another user put there goes itself; what it points at is not ours)
        else:
            out += [d / name / rk for rk in _names(d / name) if rk not in p.keep_records]
    return out


def _stale_recipes(store: Store, keep_records: set[str]) -> list[Path]:
    out = []
    for key, path in store.record_files("recipes"):
        doc = _load(path, key, "recipes") if key else None
        if doc is None or doc["last_resolved_key"] not in keep_records:
            out.append(path)
    return out


def _stale_nix_roots(store: Store, recs: _Records, keep_records: set[str]) -> Iterator[Path]:
    """Nix GC roots of envs that no kept realisation used. Roots younger than a day are kept: a run may
    have built an env whose steps have not been recorded yet."""
    used = {digest(doc["env"]["identity"]) for rk in keep_records for doc in recs.docs.get(rk, [])}
    now = time.time()
    for host_dir in _subdirs(store.root / NIX_GCROOTS):
        for name in _names(host_dir):
            entry = host_dir / name
            if name.split("-")[0] not in used and now - entry.lstat().st_mtime > GRACE_SECONDS:
                yield entry


def _dead_tmp(store: Store) -> Iterator[Path]:
    """Leftovers in tmp/ of processes of this host that no longer exist: build scratch directories and
    record temp files, both named `<host>-<pid>-…`. Temp files of older versions (`.<key>.<pid>.<rand>.json`,
    no host in the name) go once they are a day old."""
    host = socket.gethostname()
    now = time.time()
    d = store.root / "tmp"
    for name in _names(d):
        if name.startswith(f"{host}-"):
            pid = name[len(host) + 1:].split("-")[0]
            if pid.isdigit() and not pids.running(int(pid)):
                yield d / name
        elif name.startswith(".") and name.endswith(".json") and _age(d / name, now) > GRACE_SECONDS:
            yield d / name


def collect(store: Store, dry_run: bool = False, min_age: float = MIN_AGE) -> GcPlan:
    """Remove everything unreachable from the roots, under the store's gc guard held exclusive from planning
    to deleting (processes register temp roots and write records under it shared). What cannot be removed
    (another user's file in the sticky store) is listed in `failed`; missing origins entries of kept records
    are added back (the index is rebuilt from the records)."""
    with store.gc_guard(exclusive=True, waiting=_GuardWait(store.root / "locks" / "gc.lock")):
        p = plan(store, min_age)
        if dry_run:
            return p
        for path in p.remove:
            try:
                _remove(store, _moved_aside(store, path))
            except OSError as e:
                p.failed.append((path, e.strerror or str(e)))
        _reindex(store, p)
        _remove_idle_locks(store)
    return p


class _GuardWait:
    """Names the process a collection waits for (a long `nw verify` holds the guard shared while it checks)."""

    NOTICE, REPEAT = 2.0, 60.0

    def __init__(self, path: Path) -> None:
        self.path, self.next = path, self.NOTICE

    def __call__(self, waited: float, fd: int) -> None:
        if waited < self.next:
            return
        self.next = waited + self.REPEAT
        pid = locks.holder(fd)
        print(f"nw gc: waiting for {f'process {pid}' if pid is not None else 'another process'}, which holds the "
              f"store's gc guard {self.path} (`nw verify` holds it while it checks the store, a run while it stores "
              f"a result; {int(waited)} s so far)", file=sys.stderr, flush=True)


def _remove(store: Store, path: Path) -> None:
    """Remove a path of the plan. One below a store subdirectory's subdirectory (origins/<object>/<key>) is reached
    without following a symlink (trees.beneath): another user may rename or replace such a directory between the
    plan and the removal, and a symlink in its place must not turn this into a removal of the files it points at."""
    rel = path.relative_to(store.root).parts if path.is_relative_to(store.root) else ()
    if len(rel) <= 2:
        force_remove(path)
        return
    with trees.beneath(store.root / rel[0], path) as safe:
        force_remove(Path(safe))


def _is_dir(path: Path) -> bool:
    """A real directory (never a symlink to one: other users can put symlinks in the store's shared directories)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _moved_aside(store: Store, path: Path) -> Path:
    """A directory object is first renamed to a hidden staging name of this process, then removed file by file: a
    kill or Ctrl-C midway then leaves no opened, half-removed tree under an object name (verify would call it
    corrupt and a lookup would quarantine it, kept forever) but a leftover the next gc removes
    (trees.dead_stage_leftovers). A rename within store/ needs no write permission on the sealed tree.

    Only our own object: where store/ belongs to this user (its first user made it, no `sudo nw verify`), the
    rename of another user's object would succeed, but not the removal of its sealed tree, and the object would
    stay under a hidden name of ours, gone from its own name, that no gc of ours can remove and verify calls
    unexpected. Left under its name, it is reported as another user's to remove. (Root can remove any tree.)"""
    if path.parent != store.root / "store" or not records.is_name(path.name):
        return path
    try:
        st = os.lstat(path)
    except OSError:
        return path
    if not stat.S_ISDIR(st.st_mode) or os.geteuid() not in (0, st.st_uid):  # (root can remove any tree)
        return path
    hidden = path.with_name(trees.stage_name())
    try:
        os.rename(path, hidden)
    except OSError:
        return path  # another user's object: the removal below reports it
    return hidden


def _reindex(store: Store, p: GcPlan) -> None:
    """Add the origins entries a kill left missing, for every kept record (records are the truth)."""
    for rk in sorted(p.keep_records):
        doc = store.read_record("realisations", rk)
        if doc is None:
            continue
        for h in doc["outputs"].values():
            if not any(os.path.lexists(d / rk) for d in store.origin_dirs(h)):
                store._index_origin(h, rk)
                p.reindexed.append((h, rk))


def _remove_idle_locks(store: Store) -> None:
    for name in _names(store.root / "locks"):
        if not name.startswith("gc."):  # the gc guard (and a user's fallback for it) is never removed
            locks.remove_if_idle(store.root / "locks" / name)


def _younger(d: Path, seconds: float) -> list[str]:
    now = time.time()
    return [n for n in _names(d) if _age(d / n, now) < seconds]


def _is_young(path: Path, seconds: float) -> bool:
    return _age(path, time.time()) < seconds


def _age(path: Path, now: float) -> float:
    try:
        return now - os.lstat(path).st_mtime
    except OSError:
        return float("inf")


def _subdirs(d: Path) -> list[Path]:
    return [d / n for n in _names(d) if _is_dir(d / n)]


def _entries(d: Path) -> list[Path]:
    return [d / n for n in _names(d)]


def _names(d: Path) -> list[str]:
    try:
        return os.listdir(d)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _live_root(entry: Path) -> bool:
    """A root entry is live while what it names exists: an output link that resolves, or a directory of them
    (Store.add_root_dir)."""
    try:
        link = os.readlink(entry)
        if os.path.islink(link):
            return os.path.exists(link)
        return os.path.isdir(link)
    except OSError:
        return False
