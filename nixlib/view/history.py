"""The run journal: what `nw run` is doing right now, and what its recent runs did, for `nw view`.

`.nw-last-run.json` is written once a run ends and keeps one entry per step name; the viewer also
needs the graph of a run while it runs (which steps are pending, running, done) and the runs before
it. So `nw run` keeps a small journal per run in `<out-link dir>/.nw-runs/<start ms>-<pid>.json`
(the `.nw-` prefix is reserved there, so no step link can collide with it): every step with its
status, upstream step names and, once known, its keys. The newest KEEP runs are kept.

Journalling costs next to nothing per step, however many steps: a state changes in memory only.
A background thread, at most every FLUSH_EVERY seconds, appends one line per step changed since
its last pass to `<id>.updates` (one write); the whole journal is rewritten only when those lines
outgrow it (so a 10,000-step run rewrites it a few times, not once per step: total bytes stay linear)
and once at the end, when the updates file goes. Readers apply the updates past the offset the
journal names, then the events forked workers appended to `<id>.events`.

The journal is a convenience for the viewer, never a source of truth: a failure to write it is
ignored, and the viewer validates every key in it before reading the store's own records.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Container, Iterable
from pathlib import Path
from typing import Any

from nixlib import pids
from nixlib.errors import Interrupted

RUNS_DIR = ".nw-runs"
# Front doors that call the engine themselves journal in their working directory: Luigi in .nw-runs (its output-link
# directory is the user's to empty), Snakemake under .snakemake/ (where its checkpoints' write checks do not look).
LUIGI_RUNS = Path(RUNS_DIR)
SNAKEMAKE_RUNS = Path(".snakemake") / "nw-runs"
KEEP = 20
FLUSH_EVERY = 0.3  # seconds: a live view is at most this stale
COMPACT_AT = 1 << 20  # bytes of updates past which the journal is rewritten (if they also outgrow the journal)
STATES = ("pending", "running", "done", "cached", "failed", "skipped", "interrupted")


class RunJournal:
    """Records one run's steps and their states while it runs: `nw run` passes its whole graph (`order`) and
    its scheduler's events; Snakemake and Luigi add steps as they discover them (`add`) and report states
    through `note`, or let `watch` follow an Engine's lookups and realisations.

    Cheap by construction: no call writes anything. States change in memory; the shared flusher thread, at
    most every FLUSH_EVERY seconds, writes the journal the first time, then appends the steps changed since
    (one write to `<id>.updates`), rewriting the journal only once the updates outgrow it; finish() writes
    the final state once. Nothing is fsynced and any failure to write is ignored. A process forked from
    the one that made the journal (a Luigi worker process) appends its events to `<id>.events` instead,
    one short O_APPEND write each through a descriptor it opens once; readers apply them last."""

    def __init__(self, out_dir: Path, store_root: Path, engine: Any = None, order: Iterable[Any] = (), *,
                 tool: str = "nw run", runs_dir: Path | None = None,
                 name: Callable[[Any], str] | None = None, family: Callable[[Any], str | None] | None = None) -> None:
        self.engine = engine
        self.name_of = name or (lambda recipe: recipe.name)
        self.family_of = family  # a step's family (a Luigi task's class), so `nw show FAMILY` can find its one step
        self.started = time.time()
        self.pid = os.getpid()
        self.dir = Path(runs_dir) if runs_dir is not None else Path(out_dir) / RUNS_DIR
        self.path = self.dir / f"{int(self.started * 1000)}-{self.pid}.json"
        self.lock = threading.RLock()
        self.doc: dict[str, Any] = {
            "v": 1, "id": self.path.stem, "host": socket.gethostname(), "pid": self.pid, "tool": tool,
            "started": self.started, "ended": None, "store": str(store_root),
            "steps": {self.name_of(r): {"status": "pending", "recipe_key": r.key,
                                        "upstream": sorted({self.name_of(u) for u in r.upstream()})} for r in order},
        }
        self.changed: dict[str, None] = {}  # steps changed since the last flush, in order
        self.written = -1  # bytes of the journal last written; -1: not written yet
        self.updates_fd = -1  # <id>.updates, opened on the first append
        self.appended = 0  # bytes appended to it so far
        self.covered = 0  # of which the journal last written covers this many (it says so: readers skip them)
        self.worker_fd: tuple[int, int] | None = None  # (pid, fd of <id>.events) in a forked process
        self.broken = False
        self.stop = threading.Event()
        with contextlib.suppress(OSError):
            self.dir.mkdir(parents=True, exist_ok=True)  # where a worker forked before the first write appends
        _flush_later(self)  # a front door adding steps right after this lands in the first write

    # ---- what a front door calls ----------------------------------------------------------

    def add(self, name: str, upstream: Iterable[str] = (), recipe_key: str | None = None,
            family: str | None = None) -> None:
        """A step as it becomes known (pending until a state is noted); a known step only gains upstream it did not
        list (a Luigi task's tasks its run() yielded)."""
        if os.getpid() != self.pid:
            return
        with self.lock:
            entry = self.doc["steps"].get(name)
            if entry is None:
                entry = self.doc["steps"][name] = {"status": "pending", "upstream": sorted(set(upstream))}
                if family:
                    entry["family"] = family
            elif upstream and not set(upstream) <= set(entry.get("upstream") or ()):
                entry["upstream"] = sorted(set(entry.get("upstream") or ()) | set(upstream))
            else:
                return
            if recipe_key:
                entry["recipe_key"] = recipe_key
            self.changed[name] = None

    def note(self, name: str, status: str, resolved_key: str | None = None, error: str | None = None,
             upstream: Iterable[str] | None = None, family: str | None = None) -> None:
        """A step's new state (running, done, cached, failed, skipped), with its key once known (and its upstream
        and family, for a step not added before)."""
        now = time.time()
        change: dict[str, Any] = {"status": status, "start" if status == "running" else "end": now}
        if resolved_key:
            change["resolved_key"] = resolved_key
        if family:
            change["family"] = family
        if error is not None:
            change["error"] = error[:2000]
        elif status in ("running", "done", "cached"):
            change["error"] = None  # a new attempt (a Luigi retry): an earlier attempt's error no longer holds
        if status == "running":
            change["end"] = None  # (nor its end)
        if os.getpid() != self.pid:
            self._append(name, change | ({"upstream": sorted(set(upstream))} if upstream else {}))
            return
        if upstream:
            self.add(name, upstream)
        with self.lock:
            entry = self.doc["steps"].setdefault(name, {"upstream": []})
            entry.update(change)
            self.changed[name] = None

    def event(self, kind: str, recipe: Any, info: Any) -> None:
        """Note a scheduler event (start, done, cached, failed, skipped) for `recipe` (Engine's on_event)."""
        try:
            name = self.name_of(recipe)
            if kind == "start":
                upstream = [self.name_of(u) for u in recipe.upstream()]
                self.note(name, "running", self._resolved_key(recipe), upstream=upstream, family=self._family(recipe))
            elif kind in ("done", "cached"):
                self.note(name, kind, getattr(info, "resolved_key", None))
            else:
                self.note(name, kind, getattr(info, "resolved_key", None), error=str(info))
        except Exception:  # noqa: BLE001 - a journal detail must never fail a run
            pass

    def wrap(self, on_event: Any) -> Any:
        """An event callback that notes the event here, then passes it on (to the progress line)."""
        def both(kind: str, recipe: Any, info: Any) -> None:
            self.event(kind, recipe, info)
            on_event(kind, recipe, info)
        return both

    def watch(self, engine: Any, stopping: Callable[[], bool] | None = None) -> None:
        """Follow `engine` (for front doors that call lookup/realise themselves): a lookup that misses adds its
        step as pending, one that hits marks a step not yet started cached; realise() reports running, then
        done, cached or failed, or interrupted when the run was stopped around it (Ctrl-C: an Interrupted or
        KeyboardInterrupt, or any error once `stopping()`, the front door's "cancelled" flag, is true), as
        `nw run` says of a step it stopped. The engine behaves exactly as before; a journal error is swallowed."""
        lookup, realise = engine.lookup, engine.realise

        def journaled_lookup(recipe: Any) -> Any:
            result = lookup(recipe)
            if os.getpid() == self.pid:  # a forked worker's checks of its inputs are not states
                try:
                    self._looked_up(recipe, result)
                except Exception:  # noqa: BLE001
                    pass
            return result

        def journaled_realise(recipe: Any, *args: Any, **kwargs: Any) -> Any:
            self.event("start", recipe, None)
            try:
                result = realise(recipe, *args, **kwargs)
            except BaseException as e:
                self.event("interrupted" if _stopped(e, stopping) else "failed", recipe, e)
                raise
            self.event("cached" if result.cached else "done", recipe, result)
            return result

        engine.lookup, engine.realise = journaled_lookup, journaled_realise

    def _looked_up(self, recipe: Any, result: Any) -> None:
        name = self.name_of(recipe)
        entry = self.doc["steps"].get(name)
        # No recipe key here: the viewer reads it from the record, and computing it for every hit of a
        # 1,000-task cached Luigi graph was a tenth of the whole check's cost.
        if result is None:
            if entry is None:
                self.add(name, [self.name_of(u) for u in recipe.upstream()], family=self._family(recipe))
        elif entry is None:  # the common case of a cached graph: one new entry, in its final state at once
            upstream = sorted({self.name_of(u) for u in recipe.upstream()})
            family = self._family(recipe)
            with self.lock:
                self.doc["steps"].setdefault(name, {"upstream": upstream}).update(
                    status="cached", end=time.time(), resolved_key=result.resolved_key, **(
                        {"family": family} if family else {}))
                self.changed[name] = None
        elif entry.get("status") == "pending":
            self.add(name, [self.name_of(u) for u in recipe.upstream()])
            self.note(name, "cached", result.resolved_key)

    def _family(self, recipe: Any) -> str | None:
        try:
            family = self.family_of(recipe) if self.family_of is not None else None
        except Exception:  # noqa: BLE001 - a journal detail must never fail a run
            return None
        return family if isinstance(family, str) else None

    def _resolved_key(self, recipe: Any) -> str | None:
        """The key a starting step runs under (its log is logs/<key>.log), so the viewer can tail it live."""
        if self.engine is None:
            return None
        try:
            realised = self.engine.resolve(recipe)
            return recipe.resolved_key(realised) if realised is not None else None
        except Exception:  # noqa: BLE001 - a journal detail must never fail a run
            return None

    def finish(self) -> None:
        """Mark the run ended (steps still pending or running were interrupted), write the final state once
        (the updates file, now covered by it, goes) and prune old runs."""
        if os.getpid() != self.pid or self.stop.is_set():
            return
        _OPEN.discard(self)
        with self.lock:
            self.stop.set()
            self.doc["ended"] = time.time()
            steps = {name: dict(entry) for name, entry in self.doc["steps"].items()}
            for line in (_read(self.path.with_suffix(".events")) or b"").splitlines():
                _apply(steps, line)  # with what forked workers said (a task failed there), as readers will see it
            for name, why in _not_run(steps).items():
                if self.doc["steps"].get(name, {}).get("status") == "pending":
                    self.doc["steps"][name].update(status="skipped", error=why)
            for entry in self.doc["steps"].values():
                if entry.get("status") in ("pending", "running"):
                    entry["status"] = "interrupted"
            self._rewrite()
            if self.updates_fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self.updates_fd)
                self.updates_fd = -1
                if not self.broken:  # the journal now covers every update
                    with contextlib.suppress(OSError):
                        self.path.with_suffix(".updates").unlink()
        self._prune()

    def flush(self) -> None:
        """The flusher's pass: write the journal the first time, then append the steps changed since the last
        pass (one write), or rewrite the journal instead once the updates outgrow it."""
        with self.lock:
            if self.stop.is_set() or self.broken or (not self.changed and self.written >= 0):
                return
            if self.written < 0 or self.appended - self.covered >= max(COMPACT_AT, self.written):
                self._rewrite()
                return
            steps = self.doc["steps"]
            text = "".join(json.dumps({"step": name, **steps[name]}, sort_keys=True) + "\n" for name in self.changed)
            self.changed.clear()
            self._updates(text.encode())

    def _updates(self, data: bytes) -> None:
        """Append `data` (whole lines) to `<id>.updates` with one write, opening it the first time."""
        try:
            if self.updates_fd < 0:
                self.updates_fd = os.open(self.path.with_suffix(".updates"), os.O_WRONLY | os.O_APPEND | os.O_CREAT
                                          | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            written = os.write(self.updates_fd, data)
        except OSError:
            self.broken = True  # an unwritable directory is reported by the run itself
            return
        self.appended += written
        if written < len(data):
            self.broken = True  # a short write (disk full): a later line would not start at a line's start

    def _append(self, name: str, change: dict[str, Any]) -> None:
        """A forked process's event: one line appended to `<id>.events` (never the journal it shares), through a
        descriptor this process opens once."""
        line = (json.dumps({"step": name, **change}, sort_keys=True) + "\n").encode()
        with contextlib.suppress(OSError):
            pid = os.getpid()
            if self.worker_fd is None or self.worker_fd[0] != pid:
                self.worker_fd = (pid, os.open(self.path.with_suffix(".events"), os.O_WRONLY | os.O_APPEND
                                               | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
            os.write(self.worker_fd[1], line)

    def _rewrite(self) -> None:
        """Write the whole journal atomically, naming how many bytes of `<id>.updates` it already covers (called
        with the lock held: every change so far is in it)."""
        if self.broken:
            return
        text = json.dumps(self.doc | {"updates_from": self.appended}, sort_keys=True)
        self.changed.clear()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / f".{self.path.name}.{threading.get_ident()}"
            tmp.write_text(text)
            os.replace(tmp, self.path)
        except OSError:
            self.broken = True  # an unwritable out-link directory is reported by the run itself
            return
        self.written, self.covered = len(text), self.appended

    def _prune(self) -> None:
        with contextlib.suppress(OSError):
            names = sorted((n for n in os.listdir(self.dir) if n.endswith(".json") and not n.startswith(".")),
                           key=_started)
            for name in names[:-KEEP]:
                for path in (self.dir / name, *((self.dir / name).with_suffix(s) for s in (".updates", ".events"))):
                    with contextlib.suppress(OSError):
                        path.unlink()


def _stopped(error: BaseException, stopping: Callable[[], bool] | None) -> bool:
    """Whether a step's error is its run being stopped (Ctrl-C) rather than the step failing."""
    if isinstance(error, (Interrupted, KeyboardInterrupt)):
        return True
    try:
        return bool(stopping and stopping())
    except Exception:  # noqa: BLE001 - a journal detail must never fail a run
        return False


def _not_run(steps: dict[str, Any]) -> dict[str, str]:
    """At the end of a run, the steps still pending that need a step which failed or was not run, each with why:
    they were skipped (as `nw run` says of them; Luigi leaves such a task pending, Snakemake stops), not
    interrupted: nothing killed them. (Marks them skipped in `steps`; linear in steps and edges.)"""
    dependants: dict[str, list[str]] = {}
    for name, entry in steps.items():
        if isinstance(entry, dict) and isinstance(entry.get("upstream"), list):
            for u in entry["upstream"]:
                if isinstance(u, str):
                    dependants.setdefault(u, []).append(name)
    todo = [n for n, e in steps.items() if isinstance(e, dict) and e.get("status") in ("failed", "skipped")]
    skipped: dict[str, str] = {}
    while todo:
        up = todo.pop()
        for name in dependants.get(up, ()):
            entry = steps[name]
            if entry.get("status") == "pending":
                why = f"it depends on '{up}', which {'failed' if steps[up]['status'] == 'failed' else 'was not run'}"
                entry.update(status="skipped", error=why)
                skipped[name] = why
                todo.append(name)
    return skipped


_OPEN: set[RunJournal] = set()  # journals of this process still running, flushed by one shared thread
_FLUSHER: list[threading.Thread] = []
_PASSES = [0]  # the flusher's passes so far (each writes each journal at most once): a bound tests check


def _flush_later(journal: RunJournal) -> None:
    """Have the shared flusher write `journal` while it runs (one thread however many journals)."""
    _OPEN.add(journal)
    if not _FLUSHER or not _FLUSHER[0].is_alive():
        _FLUSHER[:] = [threading.Thread(target=_flush_loop, name="nw-journal", daemon=True)]
        _FLUSHER[0].start()


def flush_passes() -> int:
    """How many passes the flusher has begun in this process."""
    return _PASSES[0]


def _flush_loop() -> None:
    while True:
        time.sleep(FLUSH_EVERY)
        _PASSES[0] += 1
        for journal in list(_OPEN):
            if os.getpid() == journal.pid:
                with contextlib.suppress(Exception):  # the flusher must outlive any journal's trouble
                    journal.flush()


def _started(name: str) -> int:
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def journal_dirs(out_dir: Path) -> list[Path]:
    """Where runs are journalled: `nw run`'s beside its output links, Luigi's and Snakemake's in the current
    directory (their working directory)."""
    dirs = [Path(out_dir).absolute() / RUNS_DIR, Path.cwd() / LUIGI_RUNS, Path.cwd() / SNAKEMAKE_RUNS]
    return list(dict.fromkeys(dirs))


def journals(out_dir: Path, owners: Container[int] | None = None) -> list[dict[str, Any]]:
    """The journals of recent runs (see journal_dirs), newest first; unreadable or malformed ones are skipped, and
    with `owners`, those (or their updates) written by anyone else (see read_journal)."""
    found = []
    for d in journal_dirs(out_dir):
        try:
            found += [(n, d) for n in os.listdir(d) if n.endswith(".json") and not n.startswith(".")]
        except OSError:
            continue
    docs = []
    for name, d in sorted(found, key=lambda nd: _started(nd[0]), reverse=True):
        doc = read_journal(d / name, owners)
        if doc is not None:
            docs.append(doc)
    return docs


def find_journal(out_dir: Path, run_id: str, owners: Container[int] | None = None) -> dict[str, Any] | None:
    """The journal of run `run_id` (already checked to be `<digits>-<digits>`), wherever it was written."""
    for d in journal_dirs(out_dir):
        doc = read_journal(d / f"{run_id}.json", owners)
        if doc is not None:
            return doc
    return None


def live(doc: dict[str, Any], host: str | None = None) -> bool:
    """Whether a journal's run still runs: not ended, and its process alive, the same one (a process started after
    the run began only reuses its pid). A run on another host than `host` (default: this one) cannot be checked and
    reads as live until it ends."""
    if doc.get("ended") is not None:
        return False
    if doc.get("host") != (host or socket.gethostname()):
        return True
    started = doc.get("started")
    if isinstance(started, (int, float)) and not isinstance(started, bool):
        return pids.running_since(doc.get("pid"), started)
    return pids.running(doc.get("pid"))


def read_journal(path: Path, owners: Container[int] | None = None) -> dict[str, Any] | None:
    """A journal's JSON if it has the expected shape (a dict of steps), with the events its forked workers
    appended applied on top; never follows a symlink. Its id is its file's name (whatever it says inside).
    With `owners` (the store's trusted users), a journal another user wrote is None and updates or events
    another user wrote are ignored: in a shared directory they would draw steps and lineage nobody trusted ran."""
    data = _read(path, 0, owners)
    try:
        doc = json.loads(data.decode("utf-8")) if data is not None else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), dict):
        return None
    doc["id"] = path.stem
    start = doc.pop("updates_from", 0)
    updates = _read(path.with_suffix(".updates"), start if isinstance(start, int) and start > 0 else 0, owners)
    for line in (updates or b"").splitlines() + (_read(path.with_suffix(".events"), 0, owners) or b"").splitlines():
        _apply(doc["steps"], line)
    return doc


def _read(path: Path, offset: int = 0, owners: Container[int] | None = None) -> bytes | None:
    """Up to 16 MiB of `path` from `offset`, without following a symlink or blocking on a FIFO; with `owners`,
    only a regular file one of them owns."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if owners is not None and (st.st_uid not in owners or not stat.S_ISREG(st.st_mode)):
                return None
            f.seek(offset)
            return f.read(16 << 20)
    except (OSError, OverflowError, ValueError):
        return None


def _apply(steps: dict[str, Any], line: bytes) -> None:
    """One appended line (a JSON object naming its step and its new state, or, from `<id>.updates`, its whole
    entry); anything malformed is skipped."""
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return
    if not isinstance(event, dict) or not isinstance(event.get("step"), str) or event.get("status") not in STATES:
        return
    entry = steps.setdefault(event.pop("step"), {"upstream": []})
    if not isinstance(entry, dict):
        return
    entry.update({k: v for k, v in event.items()
                  if k in ("status", "start", "end", "resolved_key", "recipe_key", "error", "family")})
    upstream = event.get("upstream")  # a known step only gains upstream it did not list (see RunJournal.add)
    if isinstance(upstream, list) and all(isinstance(u, str) for u in upstream):
        known = entry.get("upstream") if isinstance(entry.get("upstream"), list) else []
        entry["upstream"] = known + [u for u in upstream if u not in known]
