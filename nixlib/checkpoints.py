"""Long-running steps: checkpoints, the `$state` of resumable steps, and what `--keep-failed` keeps.

Checkpoints (a step declared with `checkpoints=True`): the step gets `$NW_CHECKPOINTS`, an empty
directory, and publishes a checkpoint NAME atomically by writing `$NW_CHECKPOINTS/NAME.tmp` (a file
or a directory), then renaming it to `$NW_CHECKPOINTS/NAME`; it does not touch it afterwards. A
`Watcher` thread polls the directory while the step runs (and once more when it ends, however it
ends) and seals each published entry into the store as its own object, with its own realisation
keyed by (the step's resolved key, NAME): `checkpoint_key`. A checkpoint is thus served only for
exactly the computation that produced it, and its record names the step, its inputs and its env.

`$state` is keyed by the step's resolved key — everything that determines its result (command, env,
files and the objects of its inputs) — so a step whose input changed starts from scratch instead of
resuming from state made from other data. It is removed once the step's realisation is recorded (a
completed step has nothing to resume); what a crash leaves between the record and that removal, and
the state of steps that never completed, is collected by `nw gc` (see `state_garbage`).

`nw run --keep-failed` moves a failed step's scratch directory (with `$out` as the step left it) to
`<root>/failed/<step>-<random>`: outside `store/`, never recorded, so never served; `nw gc` removes it
once it is older than `--min-age`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from nixlib import names, records, temproots
from nixlib.errors import NixWorkflowError
from nixlib.recipe import Recipe, digest
from nixlib.store import Store, force_remove

FAILED = "failed"
DIR = "checkpoints"  # beneath the step's scratch directory (writable inside the sandbox too)
POLL = 0.1


def checkpoint_key(resolved_key: str, name: str) -> str:
    """The realisation key of checkpoint `name` of the step run as `resolved_key`."""
    return digest({"checkpoint": name, "of": resolved_key})


def checkpoint_recipe_key(recipe_key: str, name: str) -> str:
    """The recipe key of checkpoint `name` of a step (before its inputs are known)."""
    return digest({"checkpoint": name, "of": recipe_key})


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a checkpoint (it becomes part of a record and of output names), or None."""
    problem = names.name_problem(name)
    if problem is None and (name.startswith(".") or name.endswith(".tmp")):
        problem = "names starting with '.' or ending in '.tmp' are in-progress names, never published"
    return problem


class Watcher:
    """Publishes each checkpoint a running step completes under its `$NW_CHECKPOINTS` (see the module doc).
    `publish(name, path)` stores one; `note(text)` reports a refused or failed one (in the step's log)."""

    def __init__(self, directory: Path, publish: Callable[[str, Path], None], note: Callable[[str], None]) -> None:
        self.directory, self.publish, self.note = directory, publish, note
        self.done: set[str] = set()
        self.published: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nw-checkpoints", daemon=True)

    def start(self) -> None:
        self.directory.mkdir()
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and publish what the step completed before it ended."""
        self._stop.set()
        self._thread.join()
        self.scan()

    def _loop(self) -> None:
        while not self._stop.wait(POLL):
            self.scan()

    def scan(self) -> None:
        """Store what was published since the last scan, in the order it was published (the rename sets the
        entry's ctime; equal times go by name, epoch-9 before epoch-10), so the records' order is the
        publication order that `nw checkpoints` and `$NW_LATEST_CHECKPOINT` rely on."""
        fresh = [n for n in _names(self.directory) if n not in self.done and not n.startswith(".")
                 and not n.endswith(".tmp")]
        for name in sorted(fresh, key=lambda n: (_ctime_ns(self.directory / n), _natural(n))):
            self.done.add(name)
            problem = name_problem(name)
            if problem is not None:
                self.note(f"checkpoint {name!r} was not stored: {problem}")
                continue
            try:
                self.publish(name, self.directory / name)
                self.published.append(name)
            except Exception as e:  # noqa: BLE001 - a checkpoint that cannot be stored must not kill the step
                self.note(f"checkpoint '{name}' was not stored: {e}")


def checkpoint_record(step_doc: dict[str, Any], name: str, h: str) -> dict[str, Any]:
    """The realisation of checkpoint `name` (object `h`), made from the record the step would have: same
    command, inputs, env and files, its own keys, and `checkpoint` naming the step's run it came from."""
    rk, recipe_key = step_doc["resolved_key"], step_doc["recipe_key"]
    return step_doc | {
        "name": f"{step_doc['name']}@{name}", "resolved_key": checkpoint_key(rk, name),
        "recipe_key": checkpoint_recipe_key(recipe_key, name), "outputs": {"out": h},
        "checkpoint": {"name": name, "of": rk, "of_recipe": recipe_key},
    }


def published(store: Store, resolved_key: str) -> dict[str, dict[str, Any]]:
    """Checkpoint name -> trusted, valid realisation, for the step run as `resolved_key`, whose object is
    present (scans the records: listing checkpoints is rare, and records are the truth)."""
    found: dict[str, dict[str, Any]] = {}
    for key, _ in store.record_files("realisations"):
        if key is None or key in found:
            continue
        doc = store.read_record("realisations", key)
        mark = doc.get("checkpoint") if doc else None
        if isinstance(mark, dict) and mark.get("of") == resolved_key and isinstance(mark.get("name"), str) \
                and checkpoint_key(resolved_key, mark["name"]) == key and store.has(doc["outputs"]["out"]):
            found[mark["name"]] = doc
    return dict(sorted(found.items(), key=lambda kv: kv[1]["end"]))


def latest_variables(store: Store, resolved_key: str) -> dict[str, str]:
    """For a resumable step with checkpoints about to run as `resolved_key`: `NW_LATEST_CHECKPOINT` (the object
    path) and `NW_LATEST_CHECKPOINT_NAME` of the checkpoint it published last for exactly this key (an earlier,
    interrupted or failed run of the same computation), so it can resume from there; none when it published
    nothing. Registered as a temp root first, so `nw gc` keeps it while the step reads it."""
    temproots.of(store.root).add([resolved_key])
    found = published(store, resolved_key)
    if not found:
        return {}
    name, doc = list(found.items())[-1]
    h = doc["outputs"]["out"]
    temproots.of(store.root).add([h])
    if not store.has(h):  # collected between the listing and the root: start from $state alone
        return {}
    return {"NW_LATEST_CHECKPOINT": str(store.object_path(h)), "NW_LATEST_CHECKPOINT_NAME": name}


def state_dir(store: Store, resolved_key: str) -> Path:
    """The `$state` of a resumable step about to run as `resolved_key`. The key is registered as a temp root
    first, so `nw gc` keeps the state while this process lives; its mtime is refreshed so a state that is
    being resumed counts as recent."""
    temproots.of(store.root).add([resolved_key])
    path = store.state_dir(resolved_key)
    with contextlib.suppress(OSError):
        os.utime(path)
    return path


def drop_state(path: Path) -> None:
    """Remove the state of a step whose realisation is recorded (best effort: `nw gc` removes what is left)."""
    with contextlib.suppress(OSError):
        force_remove(path)


def keep_failed(store: Store, scratch: Path, step: str) -> Path | None:
    """Move a failed step's scratch directory to `<root>/failed/<step>-<random>`; its path, or None if it
    could not be kept (then it is removed as usual)."""
    parent = store.root / FAILED
    try:
        if not parent.is_dir():
            with contextlib.suppress(FileExistsError):
                parent.mkdir()
                parent.chmod(0o1777)  # shared like tmp/: each user's entries are their own
        dest = parent / f"{step}-{secrets.token_hex(4)}"
        os.rename(scratch, dest)
        os.utime(dest)
        return dest
    except OSError:
        return None


def state_garbage(store: Store, completed: set[str], live: set[str], min_age: float) -> list[Path]:
    """State directories `nw gc` removes: those of a key with a realisation (the step completed), and those
    unused for `min_age` seconds (no file in them changed since); never the state of a key a live process
    registered (a step resuming or running now). Names not led by a key (older layouts) go by age alone."""
    out = []
    now = time.time()
    d = store.root / "state"
    for name in _names(d):
        key = name.split(".")[0]
        if key in live:
            continue
        if (records.is_name(key) and key in completed) or now - _newest(d / name) >= min_age:
            out.append(d / name)
    return out


def failed_garbage(store: Store, min_age: float) -> list[Path]:
    """Kept build directories of failed steps older than `min_age` seconds."""
    d = store.root / FAILED
    now = time.time()
    return [d / n for n in _names(d) if now - _mtime(d / n) >= min_age]


def _newest(path: Path) -> float:
    """The latest mtime of `path` and of everything beneath it (the last time the step wrote its state)."""
    newest = _mtime(path)
    for p in _walk(path):
        newest = max(newest, _mtime(p))
    return newest


def _walk(path: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(path):
        for n in (*dirnames, *filenames):
            yield Path(dirpath, n)


def _ctime_ns(path: Path) -> int:
    try:
        return os.lstat(path).st_ctime_ns
    except OSError:
        return 0


def _natural(name: str) -> list[tuple[int, int | str]]:
    """A sort key putting epoch-9 before epoch-10."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name)]


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _names(d: Path) -> list[str]:
    try:
        return os.listdir(d)
    except OSError:
        return []


def resumable_names(recipes: Iterable[object]) -> list[str]:
    """Names of the resumable steps among `recipes` (for the interrupt message)."""
    return sorted({r.name for r in recipes if getattr(getattr(r, "options", None), "resumable", False)})


def list_checkpoints(store: Store, recipe: Any) -> int:
    """`nw checkpoints STEP`: one line per published checkpoint (name, object, path), oldest first."""
    from nixlib.engine import Engine

    realised = Engine(store).resolve(recipe)
    if realised is None:
        raise NixWorkflowError(f"step '{recipe.name}' has no checkpoints for its current inputs yet: the steps it "
                               "depends on are not all in the store (run the experiment first)")
    found = published(store, recipe.resolved_key(realised))
    if not found:
        print(f"nw: step '{recipe.name}' has published no checkpoint for its current inputs", file=sys.stderr)
    for name, doc in found.items():
        h = doc["outputs"]["out"]
        print(f"{name}\t{h}\t{store.object_path(h)}")
    return 0


def pin(store: Store, recipe: Any, checkpoint: str | None, nix: bool) -> int:
    """`nw pin STEP [--checkpoint NAME]`: the object STEP's output (or its checkpoint NAME) realised to for its
    current inputs, and the line that locks it in the experiment file (served as that object, never run)."""
    from nixlib.engine import Engine

    what = f"step '{recipe.name}'" if checkpoint is None else f"checkpoint '{checkpoint}' of step '{recipe.name}'"
    target = recipe if checkpoint is None else _checkpoint_ref(recipe, checkpoint)
    hit = Engine(store).lookup(target)
    if hit is None:
        known = ", ".join(published(store, recipe.resolved_key(r))) if checkpoint and (
            r := Engine(store).resolve(recipe)) is not None else ""
        raise NixWorkflowError(f"{what} has no result in the store for its current inputs, so there is nothing to pin "
                               "yet: " + (f"it published only {known}; check the name (`nw checkpoints STEP`)"
                                          if known else "run the experiment first"))
    h = hit.outputs["out"]
    print(h)
    print(f"{what} is object {store.object_path(h)}; " + _pin_line(recipe.name, checkpoint, h, nix), file=sys.stderr)
    return 0


def _checkpoint_ref(recipe: Any, name: str) -> CheckpointRecipe:
    problem = name_problem(name)
    if problem is not None:
        raise NixWorkflowError(f"{name!r} cannot name a checkpoint: {problem}")
    if not recipe.options.checkpoints or recipe.pinned is not None:
        raise NixWorkflowError(f"step '{recipe.name}' publishes no checkpoints (it is not declared with checkpoints, "
                               "or it is pinned): pin the step itself with `nw pin STEP`")
    return CheckpointRecipe(f"{recipe.name}@{name}", recipe, name)


def _pin_line(step: str, checkpoint: str | None, h: str, nix: bool) -> str:
    """What to write in the experiment file (Python or Nix) so that it uses exactly object `h`."""
    if checkpoint is None:
        line = f'hash = "{h}";' if nix else f'hash="{h}"'
        where = "in its `output { … }` set" if nix else "as an argument of its output(…)"
        return f"to lock it (served as is, never run), add {where}:\n    {line}"
    line = (f'{step}.checkpoint {{ name = "{checkpoint}"; hash = "{h}"; }}' if nix
            else f'{step}.checkpoint("{checkpoint}", hash="{h}")')
    return (f"to lock it (served as is; '{step}' then need not run), write in place of {step}.checkpoint(…):\n"
            f"    {line}")


class CheckpointRecipe(Recipe):
    """A reference to checkpoint `checkpoint` of `producer` (`model.checkpoint("epoch-2")`): never run. It is
    served once its realisation exists (checkpoint_key of the producer's resolved key), so the scheduler
    starts its dependants as soon as the producer publishes it, while the producer still runs."""

    def __init__(self, name: str, producer: Recipe, checkpoint: str) -> None:
        super().__init__(name=name, command=f"checkpoint {checkpoint} of {producer.name}", env=producer.env,
                         inputs=list(producer.inputs))  # resolved with the producer's inputs: see resolved_key
        self.producer, self.checkpoint = producer, checkpoint
        self._key = checkpoint_recipe_key(producer.key, checkpoint)

    def upstream(self) -> list[Recipe]:
        """The producer: a run that needs the checkpoint runs the producer (the scheduler waits only for the
        producer's own upstream, see `waits_for`)."""
        return [self.producer]

    def resolved_key(self, realised: Mapping[str, str]) -> str:
        """The checkpoint's realisation key, given the producer's realised inputs."""
        return checkpoint_key(self.producer.resolved_key(realised), self.checkpoint)


def waits_for(recipe: Recipe) -> list[Recipe]:
    """What the scheduler waits for before a recipe is ready: a checkpoint reference waits only for what its
    producer needs (then it is watched until published), every other recipe for its upstream."""
    return recipe.producer.upstream() if isinstance(recipe, CheckpointRecipe) else recipe.upstream()
