"""Static inputs (a file or directory used by content, every front door's `static()`): what is hashed and copied.

A static input's store copy must hold the bytes its key names. A symlink is stored as Nix stores one, as the
link itself: for `data.csv -> /shared/data_v3.csv` that copy is a link to live data, so an edit of the data
changed what the step read while its key (the link's text) stayed, and the old result was served. So a
symlinked static input is taken as the data it points to, and a directory whose links point out of it is
refused: its copy would hold links that dangle or name data that can change behind the key. Links within the
directory, and into the Nix store (immutable), are kept as they are. A Luigi command() that reads a plain
task's directory with such links (keyed by the tree and each link's target) reads `materialised`'s copy instead,
with those links followed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from nixlib import temproots
from nixlib.errors import NixWorkflowError
from nixlib.statmemo import StatMemo
from nixlib.store import Store, force_remove


def content(memo: StatMemo, written: str | os.PathLike, where: str = "") -> tuple[Path, str]:
    """(the path to copy into the store, its NAR hash) for a static input named `written`, which exists; `where`
    (FILE:LINE of the static() call) starts an error."""
    real = os.path.realpath(written)
    links: list[bytes] = []
    h = memo.checked(real, links=links)[0]
    for rel, target in outward(real, links):
        if target.startswith("/nix/store/"):
            continue
        raise NixWorkflowError(
            f"{where + ': ' if where else ''}static input {written}: {rel} is a symlink to {target}, outside it. Its "
            "store copy would hold only the link, not the data it points to (which can change behind the key). Copy "
            "the data into the directory, or pass the linked path to static() itself.")
    return Path(real), h


def outward(real: str, links: list[bytes]) -> Iterator[tuple[str, str]]:
    """(relative path, resolved target) of each of `links` (symlinks found in directory `real` by a scan) that
    points out of it: a link within the tree is covered by the tree's own hash."""
    for rel in map(os.fsdecode, links):
        target = os.path.realpath(os.path.join(real, rel))
        if target != real and not target.startswith(real + os.sep):
            yield rel, target


def hashed(memo: StatMemo, real: str) -> tuple[str, dict[str, str]]:
    """The NAR hash of the file or directory at `real` (a resolved path), and {relative path: hash of what it
    points to} of the symlinks inside a directory that point out of it (`rawdir/x -> ../shared/x`), for a front
    door that reads such a tree where it lies (a Luigi input): a NAR holds a link's text, which does not change
    when the data behind it is edited. Found by the scan the memo does anyway (a directory without such links
    costs nothing more); through linked directories' own outward links, each once; a dangling one is "absent"."""
    links: list[bytes] = []
    h = memo.checked(real, links=links)[0]
    return h, (_linked(memo, real, links, {real}) if links else {})


def hashed_without(memo: StatMemo, real: str, excluded: list[str]) -> dict[str, str]:
    """{relative path: NAR hash} of the entries of directory `real` with `excluded` (absolute paths inside it)
    left out: the entries beside each excluded path, and beside each directory above it, hashed one by one (an
    excluded path keys alike whether it exists or not). For a reader that moves those paths aside before it reads
    the tree (a Luigi task whose own output lies inside a plain task's directory input): it is keyed by what it
    reads, and its own output, once written, does not change its key."""
    out: dict[str, str] = {}
    stack = [("", [tuple(os.path.relpath(e, real).split(os.sep)) for e in excluded])]
    while stack:
        rel, rests = stack.pop()
        skip: dict[str, list[tuple[str, ...]]] = {}
        for r in rests:
            skip.setdefault(r[0], []).append(r[1:])
        try:
            names = sorted(os.listdir(os.path.join(real, rel)))
        except OSError:
            continue
        for name in names:
            path = os.path.join(rel, name)
            full = os.path.join(real, path)
            if name not in skip:
                h, linked = hashed(memo, os.path.realpath(full))
                out[path] = h
                out.update((f"{path}/{r}", lh) for r, lh in linked.items())
            elif () not in skip[name] and os.path.isdir(full):  # (a link to a directory too: read through it)
                stack.append((path, skip[name]))
    return out


def _linked(memo: StatMemo, real: str, links: list[bytes], seen: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for rel, target in outward(real, links):
        if not os.path.exists(target):
            out[rel] = "absent"
            continue
        more: list[bytes] = []
        out[rel] = memo.checked(target, links=more)[0]
        if more and target not in seen:
            seen.add(target)
            out.update((f"{rel}/{r}", h) for r, h in _linked(memo, target, more, seen).items())
    return out


def link_hint(written: str | os.PathLike) -> str:
    """For a pinned hash that does not match: a symlinked input is hashed as the data it points to."""
    if not os.path.islink(written):
        return ""
    return (f" ({written} is a symlink: static() uses the data it points to, `nw hash {os.path.realpath(written)}`; "
            "a hash of the link itself names no data)")


def materialised(store: Store, real: str) -> str:
    """The store object of the tree at `real` with each symlink replaced by a copy of what it points to: what a
    command reads for an input directory whose links point out of it (`rawdir/x -> ../shared/x`). The store copy
    of the tree itself holds only the links, which dangle there (a relative one) or reach live data (an absolute
    one). Its content is what the key already covers (the tree's hash and each outward link's target, `hashed`)."""
    scratch = store.new_tmp("materialise")
    try:
        copy = scratch / "tree"
        try:
            shutil.copytree(real, copy, symlinks=False)
        except (shutil.Error, OSError) as e:
            raise NixWorkflowError(f"input directory {real}: cannot copy what its symlinks point to "
                                   f"({_copy_failure(e)}); every link in it must lead to a file or directory") from None
        h = store.memo.checked(str(copy))[0]
        temproots.of(store.root).add([h])  # (before it is published: `nw gc` keeps it while the step reads it)
        with store.gc_guard():
            stored = store.ingest(copy, move=True, label=f"the copy of {real} with its links followed")
        if stored != h:
            raise NixWorkflowError(f"input directory {real} changed while it was copied into the store; run again")
        return h
    finally:
        force_remove(scratch)


_ERRNO = re.compile(r"^\[Errno \d+\] ")


def _copy_failure(e: OSError) -> str:
    """What shutil.copytree could not copy, in words: a dangling link named with its target, else the entry and
    the system's reason (never a raw `[Errno N]`)."""
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        src, _, why = e.args[0][0]
        if os.path.islink(src) and not os.path.exists(src):
            return f"{src} is a link to {os.readlink(src)}, which does not exist"
        return f"{src}: {_ERRNO.sub('', str(why))}"
    return f"{e.filename}: {e.strerror}" if e.strerror else str(e)
