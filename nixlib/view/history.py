"""The run journal: what `nw run` is doing right now, and what its recent runs did, for `nw view`.

`.nw-last-run.json` is written once a run ends and keeps one entry per step name; the viewer also
needs the graph of a run while it runs (which steps are pending, running, done) and the runs before
it. So `nw run` keeps one small file per run in `<out-link dir>/.nw-runs/<start ms>-<pid>.json`
(the `.nw-` prefix is reserved there, so no step link can collide with it): every step with its
status, upstream step names and, once known, its keys. It is rewritten atomically as events arrive
(at most a few times a second) and the newest KEEP runs are kept.

The journal is a convenience for the viewer, never a source of truth: a failure to write it is
ignored, and the viewer validates every key in it before reading the store's own records.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

RUNS_DIR = ".nw-runs"
KEEP = 20
FLUSH_EVERY = 0.3  # seconds: a live view is at most this stale, and a 1,000-step cached run writes a few files


class RunJournal:
    """Records one run's steps and their states in the out-link directory while it runs."""

    def __init__(self, out_dir: Path, store_root: Path, engine: Any, order: list[Any]) -> None:
        self.engine = engine
        self.started = time.time()
        self.dir = Path(out_dir) / RUNS_DIR
        self.path = self.dir / f"{int(self.started * 1000)}-{os.getpid()}.json"
        self.lock = threading.Lock()
        self.doc: dict[str, Any] = {
            "v": 1, "id": self.path.stem, "host": socket.gethostname(), "pid": os.getpid(),
            "started": self.started, "ended": None, "store": str(store_root),
            "steps": {r.name: {"status": "pending", "recipe_key": r.key,
                               "upstream": sorted({u.name for u in r.upstream()})} for r in order},
        }
        self.dirty = False
        self.last_write = 0.0
        self.broken = False
        self.stop = threading.Event()
        self._write()
        self.flusher = threading.Thread(target=self._flush_loop, name="nw-journal", daemon=True)
        self.flusher.start()

    def event(self, kind: str, recipe: Any, info: Any) -> None:
        """Note a scheduler event (start, done, cached, failed, skipped) for `recipe`."""
        with self.lock:
            entry = self.doc["steps"].setdefault(recipe.name, {"recipe_key": recipe.key, "upstream": []})
            entry["status"] = "running" if kind == "start" else kind
            now = time.time()
            if kind == "start":
                entry["start"] = now
                rk = self._resolved_key(recipe)
                if rk:
                    entry["resolved_key"] = rk
            else:
                entry["end"] = now
            if kind in ("done", "cached") and getattr(info, "resolved_key", None):
                entry["resolved_key"] = info.resolved_key
            if kind in ("failed", "skipped"):
                entry["error"] = str(info)[:2000]
            self.dirty = True
            urgent = kind in ("start", "failed") or now - self.last_write >= FLUSH_EVERY
        if urgent:
            self._write()

    def wrap(self, on_event: Any) -> Any:
        """An event callback that notes the event here, then passes it on (to the progress line)."""
        def both(kind: str, recipe: Any, info: Any) -> None:
            self.event(kind, recipe, info)
            on_event(kind, recipe, info)
        return both

    def _resolved_key(self, recipe: Any) -> str | None:
        """The key a starting step runs under (its log is logs/<key>.log), so the viewer can tail it live."""
        try:
            realised = self.engine.resolve(recipe)
            return recipe.resolved_key(realised) if realised is not None else None
        except Exception:  # noqa: BLE001 - a journal detail must never fail a run
            return None

    def finish(self) -> None:
        """Mark the run ended (steps still pending or running were interrupted) and prune old runs."""
        self.stop.set()
        with self.lock:
            self.doc["ended"] = time.time()
            for entry in self.doc["steps"].values():
                if entry.get("status") in ("pending", "running"):
                    entry["status"] = "interrupted"
            self.dirty = True
        self._write()
        self._prune()

    def _flush_loop(self) -> None:
        while not self.stop.wait(FLUSH_EVERY):
            if self.dirty:
                self._write()

    def _write(self) -> None:
        if self.broken:
            return
        with self.lock:
            text = json.dumps(self.doc, sort_keys=True)
            self.dirty = False
            self.last_write = time.time()
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                tmp = self.dir / f".{self.path.name}.{threading.get_ident()}"
                tmp.write_text(text)
                os.replace(tmp, self.path)
            except OSError:
                self.broken = True  # an unwritable out-link directory is reported by the run itself

    def _prune(self) -> None:
        with contextlib.suppress(OSError):
            names = sorted((n for n in os.listdir(self.dir) if n.endswith(".json") and not n.startswith(".")),
                           key=_started)
            for name in names[:-KEEP]:
                with contextlib.suppress(OSError):
                    (self.dir / name).unlink()


def _started(name: str) -> int:
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def journals(out_dir: Path) -> list[dict[str, Any]]:
    """The journals of recent runs in `out_dir`, newest first; unreadable or malformed ones are skipped."""
    d = Path(out_dir) / RUNS_DIR
    try:
        names = [n for n in os.listdir(d) if n.endswith(".json") and not n.startswith(".")]
    except OSError:
        return []
    docs = []
    for name in sorted(names, key=_started, reverse=True):
        doc = read_journal(d / name)
        if doc is not None:
            docs.append(doc)
    return docs


def read_journal(path: Path) -> dict[str, Any] | None:
    """A journal's JSON if it has the expected shape (a dict of steps); never follows a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            data = f.read(16 << 20)
        doc = json.loads(data.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), dict):
        return None
    return doc
