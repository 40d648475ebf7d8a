"""The legacy shape: a NixTask that keeps its own run() and output() (LocalTargets, as plain Luigi).

run() writes its LocalTargets in place, as Luigi does; the engine then ingests copies of them
(outputs `out`, `out1`, … in the order `luigi.task.flatten(output())` gives). On a hit each
declared file is restored from the store: a fresh writable copy (reflinked where the filesystem
can), replaced atomically, never a link into the store that an edit could corrupt. This module
only knows about paths and the store; task.py decides when to call it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import Any

import luigi
from luigi.task import flatten

from luigi_nixworkflow import shape
from luigi_nixworkflow.inputs import unhashable
from nixlib import trees
from nixlib.errors import NixWorkflowError, StepFailed
from nixlib.store import Store, force_remove

ASIDE = ".nw-previous-"  # prefix of a file a re-run moved out of its way (put back if the run fails)


def local_targets(task: luigi.Task) -> list[luigi.LocalTarget] | None:
    """The task's declared outputs when every one is a LocalTarget the store can hold, else None. A temporary
    one (`LocalTarget(is_tmp=True)`) cannot be held: it names a new random path at each output() call and is
    deleted when garbage-collected, so such a task runs as plain Luigi runs it (each time)."""
    targets = flatten(task.output())
    if not targets or not all(isinstance(t, luigi.LocalTarget) and not getattr(t, "is_tmp", False) for t in targets):
        return None
    return targets


def unmanaged(task: luigi.Task) -> str | None:
    """Why a legacy task must run as a plain Luigi task (not cached nor recorded), or None if the store can
    hold it: its output() holds a target the store cannot hold, or it reads one whose content the store cannot
    hash (inputs.unhashable: a stored result could not be checked against that content, and would be served
    after it changed), or the class has nothing for the store to run or hold (shape.plain)."""
    why = shape.plain(type(task))
    if why:
        return why
    if local_targets(task) is None:
        return f"its output() returns {describe(task.output())}, and only LocalTargets with a fixed path can be stored"
    reads = unhashable(task)
    if reads:
        return (f"it reads {', '.join(reads[:3])}{' …' if len(reads) > 3 else ''}, whose content the store cannot "
                "hash, so a stored result could not be checked against it. To cache it, copy that data into a "
                "LocalTarget with a plain task in between (its file is then keyed by content)")
    return None


def output_names(count: int) -> tuple[str, ...]:
    """The engine's output names for `count` declared targets, in flatten() order."""
    return ("out", *(f"out{i}" for i in range(1, count)))


def paths(task: luigi.Task) -> list[Path]:
    """Absolute paths of the declared LocalTargets (checked to be distinct and not nested)."""
    targets = local_targets(task)
    assert targets is not None
    found = [Path(os.path.abspath(t.path)) for t in targets]
    for i, p in enumerate(found):
        for q in found[i + 1:]:
            if p == q or p in q.parents or q in p.parents:
                raise NixWorkflowError(f"task {task.task_id}: output() declares {p} and {q}, one inside the other; "
                                       "declare each file or directory once")
    return found


def move_aside(outputs: list[Path]) -> list[tuple[Path, Path]]:
    """Rename what a previous run left at the output paths, so a run that does not write one of its
    outputs can never have that old file ingested as its result. Each name says which process of which
    host moved it, so what a run killed by SIGTERM or SIGKILL (no `finally`) left is settled by the next
    (see _settle_dead_asides): the old files a killed run moved aside of these outputs are dropped by
    `settle` only once this run has replaced them, as an uninterrupted run would have."""
    moved = []
    owner = trees.owner()
    for p in outputs:
        _settle_dead_asides(p)
        if os.path.lexists(p):
            aside = p.with_name(f"{ASIDE}{p.name}.{secrets.token_hex(4)}.{owner}")
            os.rename(p, aside)
            moved.append((p, aside))
        moved += [(p, dead) for dead in _LEFT.pop(p, [])]
    return moved


_SWEPT: set[tuple[int, str]] = set()  # (pid, directory) already swept by this process: one listing each
_LEFT: dict[Path, list[Path]] = {}  # output path -> dead asides of it the sweep left (something is at the path)
_DEAD_ASIDE = re.compile(rf"{re.escape(ASIDE)}(.+)\.[0-9a-f]{{8}}\.(\d+)@(.+)")


def reset() -> None:
    """Sweep each directory again at the next build: a worker process of this interpreter (`workers=2` in a
    notebook, a service calling luigi.build) killed since the last sweep left asides there."""
    _SWEPT.clear()
    _LEFT.clear()


def _settle_dead_asides(p: Path) -> None:
    """Settle the files runs of this host moved aside in `p`'s directory and never settled because they were
    killed: left, they lie next to the outputs forever, and a reader that lists the directory would read stale
    data. Such a file is the only copy of what was at its output before the killed run (an old result of a plain
    Luigi run, a file the user edited), so it is never just removed: where nothing is at its output path now (the
    run was killed before it wrote it) and no live run has that output moved aside (it is being run now: what is
    put back would mix into what it writes), it is put back there; else it is kept (in _LEFT) until a run of its
    task replaces that output (settle) or restores it from the store (restore). Asides of live processes and of
    other hosts are left alone. Once per directory and process: a directory of many outputs is listed once, not
    once per task."""
    swept = (os.getpid(), str(p.parent))
    if swept in _SWEPT:
        return
    _SWEPT.add(swept)
    for name, original in _dead_asides(p.parent):
        aside = p.parent / name
        # (checked absent first, then no live aside: a run that moves it aside after this listing found it there)
        if not os.path.lexists(original) and original not in _live_asides(p.parent):
            with contextlib.suppress(OSError):
                os.rename(aside, original)
                continue
        _LEFT.setdefault(original, []).append(aside)


def _dead_asides(parent: Path) -> list[tuple[str, Path]]:
    """(name, output path) of each aside in `parent` that a dead process of this host left."""
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    return [(name, parent / found.group(1)) for name in names if (found := _DEAD_ASIDE.fullmatch(name))
            and not trees.owner_alive(found.group(2), found.group(3))]


def _live_asides(parent: Path) -> set[Path]:
    """The output paths in `parent` that a process moved aside and has not settled: a live one of this host, or
    one of another host (whose processes this one cannot see)."""
    with contextlib.suppress(OSError):
        return {parent / found.group(1) for name in os.listdir(parent) if (found := _DEAD_ASIDE.fullmatch(name))
                and trees.owner_alive(found.group(2), found.group(3))}
    return set()


def settle(moved: list[tuple[Path, Path]], succeeded: bool) -> None:
    """After the run: drop the old files; if it failed, put back each old one it did not replace (and keep
    what a killed earlier run moved aside: see _settle_dead_asides)."""
    mine = f".{trees.owner()}"
    for p, aside in moved:
        if not succeeded and not aside.name.endswith(mine):
            _LEFT.setdefault(p, []).append(aside)
            continue
        if not succeeded and not os.path.lexists(p):
            with contextlib.suppress(OSError):
                os.rename(aside, p)
                continue
        force_remove(aside)


def check_written(task: luigi.Task, outputs: list[Path], allow_empty: bool, log: str) -> None:
    """Every declared output exists, and (unless allow_empty) no declared directory is empty, named by its path.
    An empty file is a result, as in Luigi, where a marker file (`self.output().open("w").close()`) says a task is
    done; run() returning without making a declared file at all is the step that wrote nothing."""
    missing = [str(p) for p in outputs if not os.path.lexists(p)]
    now = paths(task) if missing else outputs
    if now != outputs:
        raise StepFailed(task.task_id, f"output() returns different paths at each call ({', '.join(missing)} before "
                         f"run(), {', '.join(map(str, now))} now): the store could never find such a result "
                         "again. Build output() paths from the task's parameters only (no clock, no random name); "
                         "nothing was stored", log)
    if missing:
        raise StepFailed(task.task_id, f"run() returned without writing its declared output(s) {', '.join(missing)}; "
                         "nothing was stored", log)
    escaping = [f"{link} -> {os.readlink(link)}" for p in outputs for link in _links_out(p)]
    if escaping:
        raise StepFailed(task.task_id, f"run() made {', '.join(escaping)}, a symlink to a file outside its output; "
                         "the store would keep only the link, not what it points to, so a change there would never "
                         "re-run the tasks that read it. Write a copy (shutil.copyfile, shutil.copytree) instead of "
                         "a link; nothing was stored", log)
    if allow_empty:
        return
    empty = [str(p) for p in outputs if _empty_directory(p)]
    if empty:
        raise StepFailed(task.task_id, f"run() wrote nothing into {', '.join(empty)} (an empty directory), so there is "
                         "no result to store. Write the output, or set `allow_empty = True` on the class if an empty "
                         "output is intended", log)


def _links_out(p: Path) -> list[str]:
    """Symlinks in the output `p` (or `p` itself) whose target lies outside it: `os.symlink(input, output)`, a
    staging link. Links between entries of one output directory are kept as the run made them."""
    if p.is_symlink():
        return [str(p)]
    if not p.is_dir():
        return []
    inside = str(p) + os.sep
    found = []
    for dirpath, dirnames, filenames in os.walk(p):
        for name in (*dirnames, *filenames):
            link = os.path.join(dirpath, name)
            if os.path.islink(link) and not os.path.normpath(os.path.join(dirpath, os.readlink(link))) \
                    .startswith(inside):
                found.append(link)
    return found


def _empty_directory(p: Path) -> bool:
    return not p.is_symlink() and p.is_dir() and not any(p.iterdir())


def restore(task: luigi.Task, store: Store, outputs: dict[str, str], link_mode: str = "auto") -> list[Path]:
    """Put each declared output back to exactly what the store holds for it (a fresh copy, atomically),
    where it is missing or differs; returns what was restored. Unchanged files are left alone."""
    restored = []
    for name, p in zip(output_names(len(outputs)), paths(task), strict=True):
        h = outputs[name]
        _settle_dead_asides(p)
        if not _holds(store, p, h):
            store.materialise(h, p, mode=link_mode)
            restored.append(p)
        for dead in _LEFT.pop(p, []):  # what a killed run moved aside of `p`: replaced now, as by a run
            force_remove(dead)
    return restored


def differing(task: luigi.Task, store: Store, outputs: dict[str, str]) -> list[Path]:
    """The declared outputs whose files no longer hold what the store holds for them (changed after storing)."""
    return [p for name, p in zip(output_names(len(outputs)), paths(task), strict=True)
            if not _holds(store, p, outputs[name])]


def read_once(task: luigi.Task, dep: luigi.Task, outputs: dict[str, str], read: dict[Path, tuple[Any, Any]]) -> None:
    """Refuse to run `task` when two of the tasks it requires declare one output path with different stored content
    (`A(v=1)` and `A(v=2)` whose output() does not depend on `v`), or one inside the other (a directory output of one
    and a file declared in it by another): there is one file on disk, so run() reads one of them (for a nested file:
    the directory's copy or the file's, whichever was restored last), while its key and lineage record say it read
    both. `read` collects {path: (task, object)}, and {directory: (task, None)} for the directories above each path."""
    for name, p in zip(output_names(len(outputs)), paths(dep), strict=True):
        other = read.get(p)
        if other is not None and other[0].task_id != dep.task_id and other[1] is None:
            inner = next(q for q, (t, h) in read.items() if h is not None and t is other[0] and p in q.parents)
            raise _nested(task, dep, p, other[0], inner)
        if other is not None and other[0].task_id != dep.task_id and other[1] != outputs[name]:
            raise NixWorkflowError(
                f"task {task.task_id} requires {other[0]!r} and {dep!r}, which both declare the output "
                f"{p} with different content: there is one file at that path, so run() would read the same data for "
                "both, and its result would be recorded as made from each. Make that output() path depend on the "
                "parameters that tell the two tasks apart; nothing was run")
        read[p] = (dep, outputs[name])
        for above in p.parents:
            outer = read.get(above)
            if outer is None:
                read[above] = (dep, None)
            elif outer[1] is not None and outer[0].task_id != dep.task_id:
                raise _nested(task, outer[0], above, dep, p)


def apart(task: luigi.Task, outputs: list[Path], read: dict[Path, tuple[Any, Any]]) -> None:
    """Refuse to run `task` when one of its own outputs is inside an output directory of a legacy NixTask it
    requires (`A` declares out/d, `B` writes out/d/extra.txt), is that output, or contains it: every check of the
    required task restores its directory exactly as stored (removing the file `task` wrote there, put back when
    `task` is checked: with several workers, a file vanishing under a reader), and moving `task`'s output aside
    before its run() would take the required task's file with it. `read` is read_once's."""
    for p in outputs:
        other = read.get(p)
        if other is not None:
            if other[1] is not None:
                raise _inside(task, other[0], p, p)
            inner = next(q for q, (t, h) in read.items() if h is not None and t is other[0] and p in q.parents)
            raise _inside(task, other[0], inner, p)
        for above in p.parents:
            outer = read.get(above)
            if outer is not None and outer[1] is not None:
                raise _inside(task, outer[0], above, p)


def _inside(task: luigi.Task, dep: luigi.Task, theirs: Path, mine: Path) -> NixWorkflowError:
    if theirs == mine:
        where = f"declares the output {mine}, which {dep!r} (a task it requires) declares too"
    elif theirs in mine.parents:
        where = f"declares {mine}, inside the directory {theirs} that {dep!r} (a task it requires) declares"
    else:
        where = f"declares the directory {mine}, which holds {theirs} that {dep!r} (a task it requires) declares"
    return NixWorkflowError(
        f"task {task.task_id} {where}. Each task's declared output is restored from the store exactly as that task "
        "made it whenever the task is checked, so one written into another's would be removed (or taken along) and "
        "its record would not say which task made what is there. Declare the outputs side by side (write "
        f"{mine.name} outside {dep!r}'s output, or have {dep!r} write it); nothing was run")


def _nested(task: luigi.Task, outer: luigi.Task, directory: Path, inner: luigi.Task, p: Path) -> NixWorkflowError:
    return NixWorkflowError(
        f"task {task.task_id} requires {outer!r} and {inner!r}, whose outputs are one inside the other: {outer!r} "
        f"declares the directory {directory} and {inner!r} declares {p} inside it. There is one file at that path, so "
        "run() would read one task's copy of it (whichever was put there last) while its result would be recorded as "
        "made from both. Declare the outputs side by side (the file outside the directory); nothing was run")


def _holds(store: Store, p: Path, h: str) -> bool:
    """True if `p` has exactly the content of object `h` (hashed, memoised by stat)."""
    if not os.path.lexists(p):
        return False
    try:
        return store.memo.hash(p) == h
    except (OSError, NixWorkflowError):
        return False


def describe(targets: Any) -> str:
    """Types of the targets output() returned, for messages."""
    names = {"LocalTarget(is_tmp=True)" if getattr(t, "is_tmp", False) else type(t).__name__ for t in flatten(targets)}
    return ", ".join(sorted(names)) or "nothing"
