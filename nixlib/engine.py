"""realise(recipe): lookup → lock → run → ingest → record, and the DAG scheduler on top.

This is the one path every front door takes (DESIGN §6). Adapters build a Recipe and,
when the step is not a shell command of its own (a Snakemake job, a Luigi `run`), an
Action; everything about keys, locks, the store and lineage happens here.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import functools
import getpass
import os
import secrets
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixlib import __version__, checkpoints, faults, locks, pids, reaper, temproots
from nixlib.errors import Interrupted, NixWorkflowError, StepFailed
from nixlib.intact import check_inputs_intact
from nixlib.recipe import Recipe, topological
from nixlib.runner import CHILDREN, Build, Echo, run_shell
from nixlib.store import ChangedWhileStored, Store, disk_full, force_remove
from nixlib.trees import UnstorableFile

Action = Callable[[Build, str], Mapping[str, Path]]
Event = Callable[[str, Recipe, Any], None]


@dataclass
class Result:
    """What a recipe realised to: its resolved key and output objects."""

    recipe: Recipe
    resolved_key: str
    outputs: dict[str, str]
    cached: bool
    record: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None  # a forced run: the record it replaced (None if there was none)


def shell_action(build: Build, command: str) -> Mapping[str, Path]:
    """The default action: run the command with cwd and $out the output directory."""
    run_shell(build, command)
    return {"out": build.out}


def reuses_scratch(action: Action) -> bool:
    """Whether `action` returns only once nothing of the step can write into its build directory any more, so
    the directory may be emptied and reused by the next step of this process (see _Scratch): shell_action
    (run_shell reaps every process the command left running), and any action a front door marks so with
    `action.reuses_scratch = True` once it gives the same guarantee. Any other action (e.g. nixlib.slurm's,
    whose job runs elsewhere) gets a fresh build directory per step, removed after it."""
    return action is shell_action or getattr(action, "reuses_scratch", False) is True


_user = functools.cache(getpass.getuser)  # read once per process (it may read /etc/passwd each time)


class Engine:
    """Realises recipes against one store; results are memoised for the life of the engine."""

    def __init__(self, store: Store, echo: Echo | None = None) -> None:
        self.store = store
        self.echo = echo
        self._results: dict[int, Result] = {}
        self.remote = configured_remote()  # a configured remote cache (nixlib.remote), asked on a local miss
        self.keep_failed = False  # `nw run --keep-failed`: a failed step's build directory is moved aside, not removed
        self.action: Action = shell_action  # for steps without their own (`nw run --slurm`: nixlib.slurm)
        self.prepare: Callable[[Recipe], None] | None = None  # called (under the step's lock) before a step runs

    # ---- lookup -------------------------------------------------------------------------

    def resolve(self, recipe: Recipe) -> dict[str, str] | None:
        """token -> object hash for every upstream reference, or None while an upstream is unrealised."""
        realised: dict[str, str] = {}
        for i in recipe.inputs:
            if i.step is None:
                continue
            # An upstream found before is taken from the memo lookup() would answer from, without calling it again:
            # lookup may be wrapped (nw view's journal notes each call), and a note of that hit was made when it
            # was found, so a cached graph's 1,000 checks do not each pass through the wrapper twice.
            up = self._results.get(id(i.step))
            if up is None:
                up = self.lookup(i.step)
            if up is None:
                return None
            if i.output not in up.outputs:
                raise NixWorkflowError(f"step '{recipe.name}' uses output '{i.output}' of '{i.step.name}', "
                                       f"which only has {', '.join(sorted(up.outputs))}")
            realised[i.token] = up.outputs[i.output]
        return realised

    def lookup(self, recipe: Recipe) -> Result | None:
        """The realisation of `recipe` if it is in the store with intact objects (never runs anything)."""
        known = self._results.get(id(recipe))
        if known is not None:
            return known
        if isinstance(recipe, checkpoints.CheckpointRecipe):
            return self._lookup_checkpoint(recipe)
        if recipe.pinned is not None:
            temproots.of(self.store.root).add([recipe.pinned])  # a temp root before the check: gc keeps it
            if not self.store.has(recipe.pinned):
                return None
            return self._remember(Result(recipe, recipe.key, {"out": recipe.pinned}, cached=True))
        realised = self.resolve(recipe)
        if realised is None:
            return None
        rk = recipe.resolved_key(realised)
        temproots.of(self.store.root).add([rk])  # before reading: gc keeps the record, its outputs and upstream
        doc = self.store.realisation(rk)
        if doc is None and self.remote is not None:
            doc = self.remote.substitute(self.store, rk)  # verified, then recorded locally; None on any problem
        if doc is None:
            return None
        return self._remember(Result(recipe, rk, dict(doc["outputs"]), cached=True, record=doc))

    def _lookup_checkpoint(self, ref: checkpoints.CheckpointRecipe) -> Result | None:
        """A published checkpoint of the producer as it would run now (its inputs realised), or None."""
        realised = self.resolve(ref.producer)
        if realised is None:
            return None
        key = checkpoints.checkpoint_key(ref.producer.resolved_key(realised), ref.checkpoint)
        temproots.of(self.store.root).add([key])  # before reading, as for any realisation
        doc = self.store.realisation(key)
        if doc is None and self.remote is not None:  # published on another host and pushed there
            doc = self.remote.substitute(self.store, key)
        if doc is None:
            return None
        return self._remember(Result(ref, key, dict(doc["outputs"]), cached=True, record=doc))

    def assume_realised(self, recipe: Recipe, rk: str, doc: Mapping[str, Any]) -> Result:
        """For a plan only (`nw run -n`, `nw status`): take `recipe` as realised by the record `doc` that another
        source holds (a remote's, not fetched), so the steps below it are judged against its outputs. An engine that
        realises never calls this: it looks records up, and fetches them, itself."""
        return self._remember(Result(recipe, rk, dict(doc["outputs"]), cached=True, record=doc))

    def _remember(self, result: Result) -> Result:
        self._results[id(result.recipe)] = result
        return result

    # ---- realise ------------------------------------------------------------------------

    def realise(self, recipe: Recipe, action: Action | None = None,
                provenance: Mapping[str, Any] | None = None, force: bool = False) -> Result:
        """Serve `recipe` from the store or run it once (across processes and hosts) and store its outputs.
        `force` runs it even if it is in the store; its new realisation replaces the old record."""
        hit = None if force and recipe.pinned is None else self.lookup(recipe)
        if hit is not None:
            return hit
        if isinstance(recipe, checkpoints.CheckpointRecipe):  # never run: published by its producer, or absent
            raise NixWorkflowError(f"checkpoint '{recipe.checkpoint}' of step '{recipe.producer.name}' has not been "
                                   "published for the producer's current inputs: run the producer first")
        if recipe.pinned is not None:
            from nixlib.plan import quarantined  # a corrupt pinned object was moved aside: say so

            moved = quarantined(self.store, recipe.pinned)
            raise NixWorkflowError(
                f"step '{recipe.name}' is pinned to object {recipe.pinned}, which is not in the store at "
                f"{self.store.root}"
                + (f": it was quarantined as corrupt (its content no longer matched its hash; moved to {moved[-1]})"
                   if moved else "")
                + ". Pinned steps are never run: copy the object into this store, or remove the hash to run the step."
            )
        realised = self.resolve(recipe)
        if realised is None:
            missing = [u.name for u in recipe.upstream() if self.lookup(u) is None]
            raise NixWorkflowError(f"step '{recipe.name}' cannot run before {', '.join(missing)}: realise them first")
        rk = recipe.resolved_key(realised)
        _protect_statics(self.store, recipe)
        with self._locked(recipe, rk) as lock:
            doc = self.store.realisation(rk)
            if doc is not None and not force:
                return self._remember(Result(recipe, rk, dict(doc["outputs"]), cached=True, record=doc))
            previous = (doc or self.store.read_record("realisations", rk)) if force else None
            held = getattr(lock, "held_fd", lambda: None)()
            if self.remote is not None and not force:  # another host building it: wait for its result (remote.md)
                doc = self.remote.claim(self.store, rk)
                if doc is not None:
                    return self._remember(Result(recipe, rk, dict(doc["outputs"]), cached=True, record=doc))
            try:
                if self.prepare is not None:
                    self.prepare(recipe)  # (`nw run`: the step's Nix env is built here if it was not up front)
                _check_env_present(recipe)
                doc = self._build(recipe, rk, realised, action or self.action, provenance or {},
                                  keep_fds=() if held is None else (held,))
            except BaseException as e:
                _note_log(e)
                if self.remote is not None:
                    self.remote.release(rk)  # the lease this process may hold: other hosts need not wait
                raise
        if self.remote is not None:
            self.remote.after_build(self.store, doc)  # pushes if asked; a failure is a warning
        return self._remember(Result(recipe, rk, dict(doc["outputs"]), cached=False, record=doc, previous=previous))

    @contextlib.contextmanager
    def _locked(self, recipe: Recipe, rk: str) -> Any:
        """Hold the per-key lock of `rk`. While another process holds it, say so (which process, and whether it is
        stopped), and give up when this run is interrupted, instead of waiting silently and uninterruptibly."""
        lock = self.store.lock(rk)
        if isinstance(lock, locks.FlockLock):
            lock.acquire(waiting=_LockWait(recipe.name, lock.path))
        else:
            lock.acquire()  # a soft lock (NIX_WORKFLOW_LOCKS=soft) polls on its own
        try:
            yield lock
        finally:
            lock.release()

    def executed_command(self, recipe: Recipe, realised: Mapping[str, str]) -> str:
        """The command as it runs (its shell form, not the reordered canonical form that is keyed), every
        reference replaced by the real path of its object."""
        command = recipe.shell or recipe.command
        for i in sorted(recipe.inputs, key=lambda i: len(i.token), reverse=True):
            obj = i.obj or realised[i.token]
            command = command.replace(i.token, str(self.store.object_path(obj)))
        return command

    def _build(self, recipe: Recipe, rk: str, realised: Mapping[str, str], action: Action,
               provenance: Mapping[str, Any], keep_fds: tuple[int, ...] = ()) -> dict[str, Any]:
        scratch = _Scratch.of(self.store) if reuses_scratch(action) else None
        tmp = scratch.take() if scratch is not None else self.store.new_tmp(recipe.name)
        state = checkpoints.state_dir(self.store, rk) if recipe.options.resumable else None  # by resolved key
        build = Build(
            name=recipe.name, out=tmp / "out", state=state, tmp=tmp, log=self.store.log_path(rk),
            store_root=self.store.root, env_paths=recipe.env_paths, options=recipe.options, echo=self.echo,
            keep_fds=keep_fds,
        )
        build.out.mkdir()
        command = self.executed_command(recipe, realised)
        start = time.time()
        stored = False
        try:
            produced = self._run_action(recipe, rk, realised, action, build, command, start, provenance)
            end = time.time()
            faults.point("step-ran")
            check_inputs_intact(self.store, recipe, realised, build)
            paths = self._check_outputs(recipe, produced, build)
            with self.store.gc_guard():
                outputs = {name: self.store.ingest(p, move=p.is_relative_to(tmp),
                                                   label=f"output '{name}' of step '{recipe.name}'",
                                                   links=2 if p in build.linked else 1)
                           for name, p in paths.items()}
                faults.point("ingested")
                doc = self._record(recipe, rk, realised, command, outputs, start, end,
                                   {**provenance, **build.provenance})
                self.store.record_realisation(doc)
                temproots.of(self.store.root).add([rk, *outputs.values()], guarded=True)  # kept until linked
                faults.point("recorded")
            if state is not None:
                checkpoints.drop_state(state)  # completed: nothing to resume (gc removes it after a crash here)
            stored = True
            return doc
        except Exception as e:
            full = disk_full(e, f"the outputs of step '{recipe.name}'", self.store.root) if isinstance(e, OSError) \
                else None
            if full is not None:  # a front door's copy of an output into scratch space, or the store's
                raise full from None
            if self.keep_failed and not isinstance(e, Interrupted):
                self._keep_failed(recipe, tmp, e)
            if isinstance(e, (UnstorableFile, ChangedWhileStored)):  # the step ran: its log says what it did
                raise StepFailed(recipe.name, str(e).rstrip("."), str(build.log)) from None
            raise
        finally:
            try:
                if scratch is not None:
                    scratch.give_back(tmp)  # emptied for the next step (or removed)
                else:
                    force_remove(tmp)
            except OSError:
                if stored:
                    raise
                # A failed step's leftovers that cannot be removed (a `chattr +i` file) must not hide why it
                # failed: the error in flight is raised, and `nw gc` removes the directory once we are gone.

    def _run_action(self, recipe: Recipe, rk: str, realised: Mapping[str, str], action: Action, build: Build,
                    command: str, start: float, provenance: Mapping[str, Any]) -> Mapping[str, Path]:
        """Run the step; each checkpoint a step with checkpoints publishes is sealed and recorded meanwhile, and
        once more when it ends, however it ends (nixlib.checkpoints)."""
        if not recipe.options.checkpoints:
            return action(build, command)

        def publish(name: str, path: Path) -> None:
            self._checkpoint(recipe, rk, realised, command, start, {**provenance, **build.provenance}, name, path)

        def note(text: str) -> None:
            if self.echo:
                self.echo(recipe.name, f"nixworkflow: {text}")

        watcher = checkpoints.Watcher(build.tmp / checkpoints.DIR, publish, note)
        watcher.start()
        build.variables["NW_CHECKPOINTS"] = str(watcher.directory)
        if recipe.options.resumable:  # resume from what an earlier run of exactly this computation published
            build.variables.update(checkpoints.latest_variables(self.store, rk))
        try:
            return action(build, command)
        finally:
            watcher.stop()

    def _checkpoint(self, recipe: Recipe, rk: str, realised: Mapping[str, str], command: str, start: float,
                    provenance: Mapping[str, Any], name: str, path: Path) -> None:
        """Seal published checkpoint `name` into the store with its own realisation (checkpoint_key(rk, name)),
        under that key's lock as every realisation is recorded (taken before the gc guard, as a pull of it does):
        `nw verify` tells a fresh origins entry, written before its record, from a stale one by that lock."""
        what = None if recipe.options.allow_empty else _emptiness(path)
        if what:
            raise NixWorkflowError(f"it is empty ({what})")
        with self.store.lock(checkpoints.checkpoint_key(rk, name)), self.store.gc_guard():
            h = self.store.ingest(path, label=f"checkpoint '{name}' of step '{recipe.name}'")
            step_doc = self._record(recipe, rk, realised, command, {"out": h}, start, time.time(), provenance)
            doc = checkpoints.checkpoint_record(step_doc, name, h)
            self.store.record_realisation(doc)
            temproots.of(self.store.root).add([doc["resolved_key"], h], guarded=True)
        if self.remote is not None:  # pushed like any result (when pushing is on), so other hosts can use it
            self.remote.after_build(self.store, doc)
        if self.echo:
            self.echo(recipe.name, f"nixworkflow: checkpoint '{name}' stored as {h}")

    def _keep_failed(self, recipe: Recipe, tmp: Path, error: Exception) -> None:
        """`--keep-failed`: move the failed step's scratch directory aside and name it in the error."""
        kept = checkpoints.keep_failed(self.store, tmp, recipe.name)
        if kept is not None:
            error.args = (f"{error} Its build directory is kept at {kept} ($out as the step left it is {kept}/out; "
                          "--keep-failed); it is never served, and `nw gc` removes it.",)

    def _check_outputs(self, recipe: Recipe, produced: Mapping[str, Path], build: Build) -> dict[str, Path]:
        missing = [o for o in recipe.outputs if o not in produced or not os.path.lexists(produced[o])]
        if missing:
            raise StepFailed(recipe.name, "its command succeeded but did not create the declared output(s) "
                             + ", ".join(missing), str(build.log))
        paths = {o: Path(produced[o]) for o in recipe.outputs}
        empty = [] if recipe.options.allow_empty else [(o, what) for o, p in paths.items()
                                                        if (what := _emptiness(p, recipe.options.empty_files))]
        if empty:  # `$out` exists before the step runs, so "exists" alone would cache a step that wrote nothing
            described = ", ".join(f"'{o}' ({what})" for o, what in empty)
            raise StepFailed(recipe.name, f"it finished without error but its declared output {described} is empty, "
                             "which usually means it did not do its work; nothing was stored. If an empty output "
                             "is intended, declare it on the step: allow_empty=True (output() in experiment.py) or "
                             "allowEmpty = true; (output in experiment.nix)", str(build.log))
        return paths

    def _record(self, recipe: Recipe, rk: str, realised: Mapping[str, str], command: str,
                outputs: dict[str, str], start: float, end: float, provenance: Mapping[str, Any]) -> dict[str, Any]:
        inputs = []
        for i in recipe.inputs:
            entry: dict[str, Any] = {"object": i.obj or realised[i.token]}
            if i.step is not None:
                up = self.lookup(i.step)
                entry.update(step=i.step.name, output=i.output, recipe_key=i.step.key,
                             resolved_key=up.resolved_key if up else None, pinned=i.step.pinned is not None)
            inputs.append(entry)
        return {
            "v": 1, "name": recipe.name, "resolved_key": rk, "recipe_key": recipe.key,
            "recipe": recipe.document(lambda i: f"step:{i.step.key}!{i.output}" if i.step else f"obj:{i.obj}"),
            "outputs": outputs, "command": command, "inputs": inputs, "files": dict(recipe.files),
            "env": {"identity": recipe.env, "paths": list(recipe.env_paths)},
            "options": vars(recipe.options), "start": start, "end": end, "duration": round(end - start, 6),
            "exit": 0, "host": socket.gethostname(), "user": _user(), "tool": f"nixworkflow {__version__}",
            "log": str(self.store.log_path(rk)), "provenance": dict(provenance),
        }

    # ---- graphs -------------------------------------------------------------------------

    def run_graph(self, targets: Iterable[Recipe], jobs: int = 1, keep_going: bool = False,
                  on_event: Event | None = None, force: Iterable[Recipe] = ()) -> dict[Recipe, Result | BaseException]:
        """Realise `targets` and their upstream closure, `jobs` at a time.

        A failure stops its dependants; other running steps finish, and with `keep_going` every step
        that does not depend on a failure still runs. Ctrl-C stops every process group started and
        raises Interrupted; the store is left exactly as before the interrupted steps. Steps in `force`
        run even if they are in the store.
        """
        scheduler = _Scheduler(self, topological(targets), jobs, keep_going, on_event or (lambda *a: None))
        scheduler.force = {id(r) for r in force}
        return scheduler.run()


class _LockWait:
    """Called while a step waits for its lock (locks.FlockLock.acquire): stops waiting once the run is
    interrupted, and names the holder after NOTICE seconds, then every REPEAT seconds."""

    NOTICE, REPEAT = 2.0, 60.0

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path, self.next = name, path, self.NOTICE

    def __call__(self, waited: float, fd: int) -> None:
        if CHILDREN.stopping.is_set():
            raise Interrupted(f"step '{self.name}' was interrupted while it waited for its lock")
        if waited < self.next:
            return
        self.next = waited + self.REPEAT
        pid = locks.holder(fd)
        who = f"process {pid}" if pid is not None else "another process"
        if pid is not None and pids.stopped(pid):
            who += f" (stopped: `kill -CONT {pid}` resumes it, `kill {pid}` ends it)"
        print(f"nixworkflow: step '{self.name}' waits for {who}, which holds its lock {self.path} and is running "
              f"the same step now ({int(waited)} s so far); it is served from the store once that finishes, or "
              "run here if that fails", file=sys.stderr, flush=True)


def _interrupted(running: Iterable[Recipe]) -> str:
    """The interrupt message: what was stopped, what was kept, and how to resume."""
    text = "interrupted: running steps were stopped and nothing partial was stored"
    kept = checkpoints.resumable_names(running)
    if kept:
        text += (f"; the $state of resumable step(s) {', '.join(kept)} was kept: run the same command again to resume "
                 "(a step whose inputs or recipe changed starts afresh)")
    return text


def configured_remote() -> Any:
    """The remote cache NIX_WORKFLOW_REMOTE configures, or None; its module is imported only when one is."""
    if not os.environ.get("NIX_WORKFLOW_REMOTE"):
        from nixlib.config import push_on  # (only here, without a remote: the engine's import stays light)

        if push_on(os.environ.get("NIX_WORKFLOW_PUSH")):  # else silently nothing pushed
            raise NixWorkflowError("pushing is on (--push, --nixworkflow-push, push: in nixworkflow.yaml or "
                                   "NIX_WORKFLOW_PUSH=1) but no remote is configured: pass --remote URL "
                                   "(--nixworkflow-remote URL for snakemake) or set NIX_WORKFLOW_REMOTE, or turn "
                                   "pushing off; nothing was run")
        return None
    from nixlib import remote

    return remote.configured()


def _check_env_present(recipe: Recipe) -> None:
    """Refuse to run a step whose env paths are not all present (Nix's garbage collector removed them, or they
    were never built here): the runner skips a missing directory on PATH, so the command would run with the
    host's tools and its result be stored under the Nix env's key."""
    missing = [p for p in recipe.env_paths if not os.path.exists(p)]
    if missing:
        raise StepFailed(recipe.name, f"its env is not present on this host ({', '.join(missing[:3])}"
                         f"{' …' if len(missing) > 3 else ''} missing): realise it with Nix first (nw run builds "
                         "it; for Snakemake and Luigi, run again so the env is evaluated and built)")


def _protect_statics(store: Store, recipe: Recipe) -> None:
    """Register a step's static input objects as temp roots, then check they are still there (gc may have
    removed one between the front door's ingest and now): a clear error instead of a failing command."""
    statics = [i.obj for i in recipe.inputs if i.obj]
    if not statics:
        return
    temproots.of(store.root).add(statics)
    missing = [h for h in statics if not os.path.lexists(store.object_path(h))]
    if missing:
        raise NixWorkflowError(f"step '{recipe.name}' cannot run: its input object(s) {', '.join(missing)} were "
                               f"removed from the store at {store.root} (by `nw gc`?) before it started; run again")


class _Scratch:
    """Build directories of this process, reused from one step to the next.

    Creating a directory costs as much as creating a file (an inode: about 1 ms on ext4 here), and a
    step's build directory (its $TMPDIR, holding $out) was created and removed once per step. A
    directory given back after a step is emptied (on success $out has already been moved into the
    store; whatever the step left in $TMPDIR, or a failed step's $out, is removed) and handed to the
    next step, under a new name, only if it is still the very directory created for this purpose: a
    directory (not a symlink), ours, with its original mode, device and inode. So every step still
    starts with an empty, private $TMPDIR of a name no earlier step had, and creates only $out. Reuse
    is limited to actions after which nothing of the step can still write there (reuses_scratch). The
    directories are named `<host>-<pid>-build-…` like any scratch directory: removed at exit, and by
    `nw gc` once this process is dead (a kill).
    """

    _pools: dict[tuple[Path, int], _Scratch] = {}
    _pools_lock = threading.Lock()

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.free: list[Path] = []
        self.made: dict[Path, tuple[int, int, int]] = {}  # path -> (device, inode, mode) when created

    @classmethod
    def of(cls, store: Store) -> _Scratch:
        """The pool of this process (a forked child starts its own) for `store`."""
        key = (store.root, os.getpid())
        pool = cls._pools.get(key)
        if pool is None:
            with cls._pools_lock:
                pool = cls._pools.get(key)
                if pool is None:
                    if not cls._pools:
                        atexit.register(cls._remove_all)
                    pool = cls._pools[key] = _Scratch(store)
        return pool

    def take(self) -> Path:
        """An empty build directory of ours under a name never used before: a reused one renamed (a rename
        allocates no inode), or a new one. The new name keeps anything that still holds the previous step's
        $TMPDIR or $out path (a process that escaped the reaper: see docs/steps.md) out of this step's; only
        one whose working directory is the old $TMPDIR itself could still write into it, and a directory in which a
        process descended from this runner works is never reused (reaper.working_inside)."""
        with self.lock:
            path = self.free.pop() if self.free else None
        if path is not None:
            fresh = path.with_name(f"{self.store.host}-{os.getpid()}-build-{secrets.token_hex(8)}")
            try:
                if not self._intact(path):
                    raise OSError("changed since it was given back")
                if reaper.working_inside(str(path)):  # an escaped process of a step works in it: not reused
                    raise OSError("in use")
                os.rename(path, fresh)
            except OSError:
                self._drop(path)
                with contextlib.suppress(OSError):
                    force_remove(path)
            else:
                with self.lock:
                    self.made[fresh] = self.made.pop(path)
                return fresh
        path = self.store.new_tmp("build")
        st = os.lstat(path)
        with self.lock:
            self.made[path] = (st.st_dev, st.st_ino, st.st_mode)
        return path

    def give_back(self, path: Path) -> None:
        """Empty `path` after a step and keep it for the next one; remove it if it is no longer intact (a
        failure to empty it is raised, as removing a build directory's failure always was)."""
        try:
            with os.scandir(path) as entries:
                names = [e.name for e in entries]
            for name in names:
                force_remove(path / name)
            intact = self._intact(path)
        except OSError:
            intact = False
        if not intact:
            self._drop(path)
            force_remove(path)
            return
        with self.lock:
            self.free.append(path)

    def _intact(self, path: Path) -> bool:
        """Still the directory made for this pool, with its mode, and empty."""
        try:
            st = os.lstat(path)
            with os.scandir(path) as entries:
                empty = next(entries, None) is None
        except OSError:
            return False
        return (empty and stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
                and self.made.get(path) == (st.st_dev, st.st_ino, st.st_mode))

    def _drop(self, path: Path) -> None:
        with self.lock:
            self.made.pop(path, None)

    @classmethod
    def _remove_all(cls) -> None:
        """At exit: remove this process's idle build directories (a killed process leaves them to `nw gc`)."""
        for (_, pid), pool in list(cls._pools.items()):
            if pid != os.getpid():
                continue
            with pool.lock:
                free, pool.free = pool.free, []
            for path in free:
                with contextlib.suppress(OSError):
                    force_remove(path)


def _emptiness(path: Path, files_may_be_empty: bool = False) -> str | None:
    """What makes an output empty (a directory with no entries, a zero-byte file unless `files_may_be_empty`), or
    None if it is not."""
    try:
        if path.is_symlink():
            return None
        if path.is_dir():
            with os.scandir(path) as entries:
                return None if next(entries, None) is not None else "a directory with no entries"
        return "a zero-byte file" if path.stat().st_size == 0 and not files_may_be_empty else None
    except OSError:
        return None  # unreadable: ingest reports it with its own message


class _Scheduler:
    """Runs ready steps on a thread pool; cache hits are answered on the main thread without a thread hop."""

    def __init__(self, engine: Engine, order: list[Recipe], jobs: int, keep_going: bool, on_event: Event) -> None:
        self.engine, self.order, self.keep_going, self.on_event = engine, order, keep_going, on_event
        self.jobs = max(1, jobs)
        self.results: dict[Recipe, Result | BaseException] = {}
        self.waiting = {r: {id(u) for u in checkpoints.waits_for(r)} for r in order}
        self.dependants: dict[int, list[Recipe]] = {}
        self.watching: list[checkpoints.CheckpointRecipe] = []  # checkpoints served as soon as published
        for r in order:
            for u in checkpoints.waits_for(r):
                self.dependants.setdefault(id(u), []).append(r)
        self.ready = [r for r in order if not self.waiting[r]]
        self.failed = False
        self.force: set[int] = set()

    def run(self) -> dict[Recipe, Result | BaseException]:
        with cf.ThreadPoolExecutor(self.jobs, thread_name_prefix="nw-step") as pool:
            running: dict[cf.Future, Recipe] = {}
            try:
                while self.ready or running or self.watching:
                    self._start_ready(pool, running)
                    self._check_watched()
                    if not running:
                        if self.watching and not self.ready:
                            time.sleep(0.1)  # a checkpoint whose producer is not running yet (or just ended)
                        continue
                    done, _ = cf.wait(running, timeout=0.25, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        recipe = running.pop(fut)
                        self._finish(recipe, fut.exception() or fut.result())
            except KeyboardInterrupt:
                with second_interrupt_kills():  # a second Ctrl-C kills the steps: it never abandons them
                    CHILDREN.terminate()
                    pool.shutdown(wait=True, cancel_futures=True)
                raise Interrupted(_interrupted(running.values()), self._stopped(running)) from None
        for r in self.order:
            if r not in self.results:
                self._skip(r, "an earlier step failed")
        return self.results

    def _stopped(self, running: dict[cf.Future, Recipe]) -> dict[Recipe, Result | BaseException]:
        """The results of an interrupted run: those finished, a step that finished as it was stopped, and an
        Interrupted (with the attempt's log) for each step that was stopped."""
        results = dict(self.results)
        for fut, recipe in running.items():
            error = None if fut.cancelled() else fut.exception()
            if fut.cancelled() or error is not None:
                results[recipe] = Interrupted(f"step '{recipe.name}' was interrupted", log=getattr(error, "log", None))
                results[recipe].log_signature = getattr(error, "log_signature", None)
            else:
                results[recipe] = fut.result()
        return results

    def _start_ready(self, pool: cf.ThreadPoolExecutor, running: dict[cf.Future, Recipe]) -> None:
        while self.ready and len(running) < self.jobs:
            recipe = self.ready.pop(0)
            if self.failed and not self.keep_going:
                self._skip(recipe, "an earlier step failed")
                continue
            if isinstance(recipe, checkpoints.CheckpointRecipe):
                self.watching.append(recipe)  # never run: `_check_watched` serves it once published
                continue
            forced = id(recipe) in self.force and recipe.pinned is None
            hit = None if forced else self.engine.lookup(recipe)
            if hit is not None:
                self._finish(recipe, hit)
                continue
            self.on_event("start", recipe, None)
            running[pool.submit(self.engine.realise, recipe, force=forced)] = recipe

    def _check_watched(self) -> None:
        """Serve each watched checkpoint its producer has published; fail it once the producer ended without."""
        for ref in list(self.watching):
            ended = self.results.get(ref.producer)  # read before looking: a producer records before it ends
            hit = self.engine.lookup(ref)
            if hit is None and ended is None:
                continue
            self.watching.remove(ref)
            if hit is not None:
                self._finish(ref, hit)
            elif isinstance(ended, BaseException):
                self._skip(ref, f"step '{ref.producer.name}' did not succeed and had not published checkpoint "
                                f"'{ref.checkpoint}'")
                self._skip_dependants(ref)
            else:
                self._finish(ref, NixWorkflowError(_unpublished(ref, ended, self.dependants.get(id(ref), []))))

    def _finish(self, recipe: Recipe, outcome: Result | BaseException) -> None:
        self.results[recipe] = outcome
        if isinstance(outcome, BaseException):
            self.failed = True
            self.on_event("failed", recipe, outcome)
            self._skip_dependants(recipe)
            return
        self.on_event("cached" if outcome.cached else "done", recipe, outcome)
        for d in self.dependants.get(id(recipe), []):
            self.waiting[d].discard(id(recipe))
            if not self.waiting[d] and d not in self.results:
                self.ready.append(d)

    def _skip_dependants(self, recipe: Recipe, what: str = "failed") -> None:
        """Skip what depends on `recipe` (which failed), and what depends on those (which were not run)."""
        for d in self.dependants.get(id(recipe), []):
            if d not in self.results:
                self._skip(d, f"it depends on '{recipe.name}', which {what}")
                self._skip_dependants(d, "was not run")

    def _skip(self, recipe: Recipe, why: str) -> None:
        self.results[recipe] = NixWorkflowError(f"step '{recipe.name}' was not run: {why}")
        self.on_event("skipped", recipe, why)


@contextlib.contextmanager
def second_interrupt_kills() -> Iterator[None]:
    """While an interrupted run stops its steps (SIGTERM, up to 5 s of grace, then SIGKILL): a further Ctrl-C or
    SIGTERM SIGKILLs every step's process group at once, as Nix and Snakemake do, instead of raising a
    KeyboardInterrupt inside the stopping, which left the worker threads to be waited for until a step that ignores
    SIGTERM ended on its own, and escaped as a bare KeyboardInterrupt: the summary unwritten, finished steps unlinked.
    Signal handlers can only be set in the main thread (the only one a KeyboardInterrupt is raised in)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def kill(signum: int, frame: Any) -> None:
        with contextlib.suppress(OSError):  # (os.write: print() may be inside a write to stderr right now)
            os.write(2, b"nw: interrupted again: killing the running steps now\n")
        CHILDREN.kill()

    saved = {sig: signal.signal(sig, kill) for sig in (signal.SIGINT, signal.SIGTERM)
             if signal.getsignal(sig) is not signal.SIG_IGN}  # (ignored, as in a background job: kept so)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _note_log(error: BaseException) -> None:
    """Stamp a step's failure with its log as this attempt left it (still under the key's lock). The log is
    `logs/<key>.log`, which the next run of the same key (another checkout, front door or user sharing the store)
    rewrites: `nw log`/`nw show` of this failure compare (nixlib.lineage.log_changed) and never show that run's log
    as this one's."""
    log = getattr(error, "log", None)
    if isinstance(log, str):
        with contextlib.suppress(OSError):
            st = os.stat(log)
            error.log_signature = [st.st_ino, st.st_size, st.st_mtime_ns]  # type: ignore[attr-defined]


def _unpublished(ref: Recipe, ended: Result, users: list[Recipe]) -> str:
    """Why checkpoint `ref` is missing though its producer succeeded: the producer ran and published no such name,
    or it was not run here but served (from this store, or pulled from a remote cache) without that checkpoint."""
    using = f"which step(s) {', '.join(d.name for d in users)} use"
    producer = ref.producer.name  # type: ignore[union-attr]
    if ended.cached:
        return (f"step '{producer}' did not run now but was served from the store, which holds no checkpoint "
                f"'{ref.checkpoint}' of it (for its current inputs), {using}: check the checkpoint's name (`nw "
                f"checkpoints {producer}` lists what it published); if it was pulled from a remote cache that lacks "
                "the checkpoint, push the checkpoints from the host that ran it (`nw push` with no step pushes them "
                f"too) and pull again, or run it again here with `nw run --force FILE {producer}`")
    return (f"step '{producer}' finished without publishing checkpoint '{ref.checkpoint}' (for its current inputs), "
            f"{using}: check the checkpoint's name (`nw checkpoints STEP` lists what it published)")
