"""`nw run`: drive the engine over an evaluated workflow, show progress, link and root outputs.

Shared by the Python and Nix front doors: both produce a Workflow of recipes, and this
module does everything after evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from nixlib import faults, temproots
from nixlib.engine import Engine, Result
from nixlib.errors import NixWorkflowError, StepFailed
from nixlib.lineage import LAST_RUN
from nixlib.names import name_problem
from nixlib.recipe import Recipe
from nixlib.store import Store


class Progress:
    """A live `done / cached / running / failed` line on a terminal, plain event lines otherwise."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet = total, quiet
        self.counts = {"done": 0, "cached": 0, "running": 0, "failed": 0, "skipped": 0}
        self.tty = sys.stderr.isatty()
        self.lock = threading.Lock()

    def line(self) -> str:
        c = self.counts
        return (f"[{c['done'] + c['cached'] + c['failed'] + c['skipped']}/{self.total}] done {c['done']} · cached "
                f"{c['cached']} · running {c['running']} · failed {c['failed']}"
                + (f" · skipped {c['skipped']}" if c["skipped"] else ""))

    def echo(self, step: str, text: str) -> None:
        if self.quiet:
            return
        with self.lock:
            self._clear()
            print(f"[{step}] {text}", flush=True)
            self._draw()

    def event(self, kind: str, recipe: Recipe, info: Any) -> None:
        with self.lock:
            if kind == "start":
                self.counts["running"] += 1
            else:
                if kind in ("done", "failed"):
                    self.counts["running"] = max(0, self.counts["running"] - 1)
                self.counts[kind] += 1
            self._clear()
            texts = {"start": "running", "cached": "cached", "failed": f"FAILED: {info}", "skipped": f"skipped: {info}"}
            message = _done_text(info) if kind == "done" else texts[kind]
            if kind in ("failed", "skipped") or not (self.quiet or (kind == "cached" and self.tty)):
                print(f"nw: {recipe.name}: {message}", file=sys.stderr, flush=True)
            self._draw()

    def _clear(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")

    def _draw(self) -> None:
        if self.tty:
            sys.stderr.write(self.line())
            sys.stderr.flush()

    def finish(self) -> None:
        with self.lock:
            self._clear()
            print(f"nw: {self.line()}", file=sys.stderr, flush=True)


def _done_text(result: Result) -> str:
    record = result.record or {}
    return f"done in {record.get('duration', 0):.2f} s"


def run_workflow(store: Store, workflow: Any, targets: list[Recipe], args: argparse.Namespace) -> int:
    """Realise `targets`, link every named step that succeeded, and report; returns the exit status."""
    _ingest_statics(store, workflow)
    from nixlib.engine import topological

    progress = Progress(len(topological(targets)), args.quiet)
    engine = Engine(store, echo=progress.echo)
    results: dict[Recipe, Result | BaseException] = {}
    try:
        results = engine.run_graph(targets, jobs=args.jobs, keep_going=args.keep_going, on_event=progress.event)
    finally:
        progress.finish()
        if results:
            faults.point("before-links")
            _link_outputs(store, workflow, results, Path(args.out_link))
    failed = [r for r, o in results.items() if isinstance(o, BaseException)]
    for r in failed:
        outcome = results[r]
        if not str(outcome).endswith("which failed") and "was not run" not in str(outcome):
            print(f"error: {outcome}", file=sys.stderr)
    return 1 if failed else 0


def _ingest_statics(store: Store, workflow: Any) -> None:
    """Copy static inputs into the store (only now, after evaluation succeeded), checking their hashes. They are
    temp roots first, so `nw gc` keeps them (present or about to be added) while this run lives."""
    temproots.of(store.root).add(static.hash for static in workflow.statics.values())
    for static in workflow.statics.values():
        if store.has(static.hash):
            continue
        if static.source is None:
            raise NixWorkflowError(f"{static.where}: static object {static.hash} is not in the store at {store.root}")
        h = store.ingest(static.source)
        if h != static.hash:
            raise NixWorkflowError(f"{static.where}: {static.source} changed while being read (hash {h}, expected "
                                   f"{static.hash}); run again")


def _link_outputs(store: Store, workflow: Any, results: dict[Recipe, Result | BaseException], out_dir: Path) -> None:
    """Point out_dir/NAME at each named step's output (a GC root) and record the run for `nw log`/`nw show`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = _read_summary(out_dir)
    for recipe, outcome in results.items():
        entry: dict[str, Any] = {"recipe_key": recipe.key, "store": str(store.root)}
        if isinstance(outcome, Result):
            entry.update(status="cached" if outcome.cached else "done", resolved_key=outcome.resolved_key,
                         log=str(store.log_path(outcome.resolved_key)))
            if recipe.name in workflow.named:
                _link(store, out_dir, recipe.name, store.object_path(outcome.outputs["out"]))
        else:  # kept for `nw show`/`nw log`: a step that did not succeed is reported as such, not as unknown
            entry.update(status="skipped" if _was_skipped(outcome) else "failed", error=str(outcome))
            log = getattr(outcome, "log", None)
            if log:
                entry["log"] = log
        summary[recipe.name] = entry
    tmp = out_dir / f".{LAST_RUN}.{os.getpid()}"
    tmp.write_text(json.dumps(summary, indent=1, sort_keys=True))
    os.replace(tmp, out_dir / LAST_RUN)


def _read_summary(out_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((out_dir / LAST_RUN).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _was_skipped(outcome: BaseException) -> bool:
    """True for a step the scheduler did not start because a step it depends on (or an earlier one) failed."""
    return not isinstance(outcome, StepFailed) and "was not run:" in str(outcome)


def _link(store: Store, out_dir: Path, name: str, target: Path) -> None:
    """Point out_dir/NAME at `target`. The front doors refuse bad names where a step is defined; this is the
    last line of defence: a name that is not one plain file name never becomes a link (outside out_dir, or
    replacing a user's file)."""
    problem = name_problem(name)
    if problem is not None:
        print(f"warning: step {name!r} is not linked under {out_dir}: {problem}", file=sys.stderr)
        return
    link = out_dir / name
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    if os.path.lexists(tmp):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    store.add_root(link)
