"""`nw run`: drive the engine over an evaluated workflow, show progress, link and root outputs.

Shared by the Python and Nix front doors: both produce a Workflow of recipes, and this
module does everything after evaluation.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nixlib import faults, locks, temproots
from nixlib.engine import Engine, Result, second_interrupt_kills
from nixlib.errors import Interrupted, NixWorkflowError, StepFailed
from nixlib.lineage import LAST_RUN
from nixlib.names import name_problem
from nixlib.recipe import Recipe
from nixlib.store import Store
from nixlib.view.history import RunJournal


class Progress:
    """A live `done / cached / running / failed` line naming the running steps and how long each has run, on a
    terminal (redrawn every second); otherwise plain event lines and, every NW_PROGRESS_INTERVAL seconds
    (default 60), a `still running: NAME (ELAPSED)` line, so a CI log shows what a long run is waiting for."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet = total, quiet
        self.counts = {"done": 0, "cached": 0, "running": 0, "failed": 0, "skipped": 0}
        self.tty = sys.stderr.isatty()
        self.lock = threading.Lock()
        self.started: dict[str, float] = {}  # running step -> when it started
        self.stop = threading.Event()
        interval = 1.0 if self.tty else _interval()
        if interval > 0:
            threading.Thread(target=self._tick, args=(interval,), name="nw-progress", daemon=True).start()

    def line(self) -> str:
        c = self.counts
        return (f"[{c['done'] + c['cached'] + c['failed'] + c['skipped']}/{self.total}] done {c['done']} · cached "
                f"{c['cached']} · running {c['running']} · failed {c['failed']}"
                + (f" · skipped {c['skipped']}" if c["skipped"] else "")
                + (f": {self.running()}" if self.started else ""))

    def running(self) -> str:
        """The running steps, longest-running first, with their elapsed time (at most three named)."""
        now = time.monotonic()
        steps = sorted(self.started.items(), key=lambda kv: kv[1])
        named = ", ".join(f"{name} ({_elapsed(now - t)})" for name, t in steps[:3])
        return named + (f" and {len(steps) - 3} more" if len(steps) > 3 else "")

    def _tick(self, interval: float) -> None:
        while not self.stop.wait(interval):
            with self.lock:
                if self.tty:
                    self._clear()
                    self._draw()
                elif self.started and not self.quiet:
                    print(f"nw: still running: {self.running()}", file=sys.stderr, flush=True)

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
                self.started[recipe.name] = time.monotonic()
            else:
                # A started step may also end "cached" (another process realised it while we waited for its lock).
                if self.started.pop(recipe.name, None) is not None:
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
        self.stop.set()
        with self.lock:
            self._clear()
            print(f"nw: {self.line()}", file=sys.stderr, flush=True)


def _interval() -> float:
    try:
        return float(os.environ.get("NW_PROGRESS_INTERVAL", "60"))
    except ValueError:
        return 60.0


def _elapsed(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _done_text(result: Result) -> str:
    record = result.record or {}
    return f"done in {record.get('duration', 0):.2f} s"


CWD_NOTE = (" Steps run with their output directory ($out) as the working directory, so a relative path such as "
            "data.csv means $out/data.csv: give input files with static() in experiment.py (or a path in "
            "experiment.nix) and reference upstream steps by interpolating them.")


NOT_FOUND_NOTE = (" Exit status 127 means the shell did not find a command: a step's PATH holds its env's tools "
                  "(Env(...) in experiment.py, the string context of its command in experiment.nix) in front of the "
                  "host's, and with pure=True the env's alone, so add the tool's package to the step's env.")


def _failure_note(outcome: object) -> str:
    """The hint after a failed step's error: a command not found (exit status 127), or a missing file (most often a
    relative path meant from the project, not from $out); none for any other failure, where it would be noise."""
    if isinstance(outcome, StepFailed) and "exited with status 127" in str(outcome):
        return NOT_FOUND_NOTE
    return CWD_NOTE if _missing_file(outcome) else ""


def _missing_file(outcome: object) -> bool:
    """A step that exited non-zero after its log said a file was missing: then the working-directory note helps
    (most often a relative path meant from the project, not from $out); for any other failure it is noise."""
    if not (isinstance(outcome, StepFailed) and "exited with status" in str(outcome) and outcome.log):
        return False
    try:
        with open(outcome.log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            tail = f.read()
    except OSError:
        return True  # no log to tell: keep the note
    return b"No such file or directory" in tail or b"cannot open" in tail.lower() or b"not found" in tail


def run_workflow(store: Store, workflow: Any, targets: list[Recipe], args: argparse.Namespace,
                 prepare: Callable[[Recipe], None] | None = None) -> int:
    """Realise `targets`, link every named step that succeeded, and report; returns the exit status.
    With args.dry_run only say what would happen; args.force names steps to run even if cached; `prepare` is
    called before each step that runs (Engine.prepare)."""
    out_dir = Path(args.out_link)
    if getattr(args, "dry_run", False):
        if getattr(args, "slurm_option", None) is not None:  # refuse what the real run would refuse
            from nixlib import slurm
            from nixlib.engine import topological

            slurm.check_args(args, (r.name for r in topological(targets)))
        return _dry_run(store, workflow, targets, out_dir, getattr(args, "force", []), getattr(args, "json", False))
    check_out_dir(out_dir)
    _ingest_statics(store, workflow)
    from nixlib.engine import topological

    progress = Progress(len(topological(targets)), args.quiet)
    engine = Engine(store, echo=progress.echo)
    engine.keep_failed = getattr(args, "keep_failed", False)
    engine.prepare = prepare
    if getattr(args, "slurm_option", None) is not None:  # `nw run` (not every caller has the options)
        from nixlib import slurm

        engine.action = slurm.action_from_args(args, (r.name for r in topological(targets))) or engine.action
    journal = RunJournal(out_dir, store.root, engine, topological(targets))  # what `nw view` shows live
    linked = set(getattr(workflow, "named", ())) | {r.name for r in targets}

    def on_event(kind: str, recipe: Recipe, info: Any) -> None:
        if kind in ("done", "cached") and isinstance(info, Result):
            _link_now(store, out_dir, linked, recipe, info)  # before its dependants start, and before "done" shows
        progress.event(kind, recipe, info)

    results: dict[Recipe, Result | BaseException] = {}
    stopping: Any = contextlib.nullcontext()
    try:
        results = engine.run_graph(targets, jobs=args.jobs, keep_going=args.keep_going,
                                   on_event=journal.wrap(on_event),
                                   force=getattr(args, "force", []))
    except Interrupted as e:
        results = e.results  # what finished before the interrupt is linked and recorded all the same
        stopping = second_interrupt_kills()  # and another Ctrl-C meanwhile does not cut that short
        raise
    finally:
        with stopping:
            progress.finish()
            journal.finish()
            if results:
                faults.point("before-links")
                _link_outputs(store, workflow, results, out_dir, str(Path(args.file).absolute()),
                              {r.name for r in targets}, getattr(args, "arguments", None))
    _report_forced(store, results)
    failed = [r for r, o in results.items() if isinstance(o, BaseException)]
    for r in failed:
        outcome = results[r]
        if not str(outcome).endswith("which failed") and "was not run" not in str(outcome):
            note = _failure_note(outcome)
            print(f"error: {outcome}{note}", file=sys.stderr)
    return 1 if failed else 0


def check_out_dir(out_dir: Path) -> None:
    """Refuse, before any step runs, an output-link directory that cannot be created or written: otherwise the
    failure would come after every step ran, and no output would be linked (or kept by `nw gc`)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NixWorkflowError(f"the output-link directory {out_dir} is a file, not a directory; nothing was run. "
                               "Move it away or choose another with --out-link DIR.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".nw-probe.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise NixWorkflowError(f"the output-link directory {out_dir} cannot be written ({e.strerror or e}"
                               f"{f': {e.filename}' if e.filename and str(e.filename) != str(out_dir) else ''}); "
                               "nothing was run. Fix its permissions or choose another with --out-link DIR.") from None


def _dry_run(store: Store, workflow: Any, targets: list[Recipe], out_dir: Path, force: list[Recipe],
             as_json: bool) -> int:
    """`nw run --dry-run`: each step's state, nothing run and nothing stored (statics are not even ingested)."""
    from nixlib import plan

    steps = plan.states(store, workflow, targets, out_dir, remote=True)
    forced = {r.name for r in force}
    for s in steps:
        if s.name in forced and s.state in (plan.CACHED, plan.FETCH):
            where = "in the store" if s.state == plan.CACHED else "on the remote"
            s.state, s.why = plan.RUN, f"forced (--force), although its realisation is {where}"
    if as_json:
        print(json.dumps([s.as_json() for s in steps], indent=2, sort_keys=True))
        return 0
    shown = {plan.RUN: "would run", plan.FETCH: "would fetch"}
    for s in steps:
        print(f"{shown.get(s.state, s.state):<17} {s.name}  ({s.why})")
    counts = {state: sum(s.state == state for s in steps) for state in (plan.RUN, plan.FETCH, plan.CACHED, plan.PINNED)}
    fetched = f"{counts[plan.FETCH]} would be fetched from the remote, " if counts[plan.FETCH] else ""
    print(f"nw: dry run: {counts[plan.RUN]} would run, {fetched}{counts[plan.CACHED]} cached, {counts[plan.PINNED]} "
          "pinned; nothing was run", file=sys.stderr)
    return 0


def _report_forced(store: Store, results: dict[Recipe, Result | BaseException]) -> None:
    """For each forced step: did re-running the identical recipe reproduce its recorded outputs?"""
    from nixlib.diff import output_differences

    for recipe, outcome in results.items():
        if not isinstance(outcome, Result) or outcome.previous is None:
            continue
        old = outcome.previous["outputs"]
        if old == outcome.outputs:
            print(f"nw: {recipe.name}: forced re-run reproduced the recorded output (deterministic)", file=sys.stderr)
            continue
        lines = []
        for name in sorted(set(old) | set(outcome.outputs)):
            a, b = old.get(name), outcome.outputs.get(name)
            if a == b:
                continue
            lines.append(f"  output '{name}': {a} → {b}")
            if a and b and os.path.lexists(store.object_path(a)):
                lines += ["    " + x for x in output_differences(store.object_path(a), store.object_path(b),
                                                                  "before", "now")]
        print(f"warning: step '{recipe.name}' is not deterministic: re-running its identical recipe (key "
              f"{outcome.resolved_key}) produced different output; the new realisation replaces the old one.\n"
              + "\n".join(lines), file=sys.stderr)


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


def _link_now(store: Store, out_dir: Path, linked: set[str], recipe: Recipe, result: Result) -> None:
    """Link a named step's output as soon as it succeeds or is served, not only when the run ends: the results of a
    long pipeline's finished steps can be looked at while it runs, and a run that ends without its end-of-run
    linking (killed, SIGKILL, OOM, the machine going down) leaves them rooted: `nw gc` would otherwise remove hours
    of work once their temp roots died with the process. Atomic (store.link_output), and a GC root at once. A name
    that cannot be linked is left to the end of the run (_link_outputs), which warns or fails as it always did."""
    if recipe.name not in linked or "out" not in result.outputs or name_problem(recipe.name) is not None:
        return
    with contextlib.suppress(NixWorkflowError, OSError):  # (never stops a running pipeline; said at its end)
        store.link_output(str(out_dir.absolute()), recipe.name, str(store.object_path(result.outputs["out"])))


def _link_outputs(store: Store, workflow: Any, results: dict[Recipe, Result | BaseException], out_dir: Path,
                  experiment: str | None = None, targets: set[str] | frozenset[str] = frozenset(),
                  arguments: Any = None) -> None:
    """Point out_dir/NAME at each named step's output (a GC root) and record the run for `nw log`/`nw show`
    (and, for `nw why`, the experiment file, the `arguments` it was evaluated with (nixlib.arguments) and the
    realisation each step had before this run). The steps named
    on the command line (`targets`) are linked too, top-level or not (a step of an imported module, `shared.data`):
    the user asked for that result, and without a link `nw gc` removes it at once."""
    linked = set(getattr(workflow, "named", ())) | set(targets)
    out_dir.mkdir(parents=True, exist_ok=True)
    here = hashlib.sha256(str(out_dir.absolute()).encode()).hexdigest()[:32]
    with locks.lock(store.root / "locks" / f"last-run.{here}.lock"):  # two runs here at once keep each other's entries
        summary = _read_summary(out_dir)
        _forget_removed(summary, workflow, experiment)
        for recipe, outcome in results.items():
            summary[recipe.name] = _entry(store, linked, recipe, outcome, summary.get(recipe.name), out_dir,
                                          experiment)
            if arguments:
                summary[recipe.name]["arguments"] = arguments.as_json()
        tmp = out_dir / f".{LAST_RUN}.{os.getpid()}"
        tmp.write_text(json.dumps(summary, sort_keys=True))  # (no indent: the C encoder, twice as fast on 1,000 steps)
        os.replace(tmp, out_dir / LAST_RUN)


def _forget_removed(summary: dict[str, Any], workflow: Any, experiment: str | None) -> None:
    """Drop the entries of steps this experiment no longer defines (renamed or removed): `nw show OLDNAME` must not
    report a step as cached in the last run when the experiment has no such step. Entries of other experiments
    sharing this directory stay. (The old output link stays too, as a result link does in Nix, until removed.)"""
    recipes = getattr(workflow, "recipes", None)
    if experiment is None or not isinstance(recipes, dict):
        return
    for name in [n for n, e in summary.items() if isinstance(e, dict) and e.get("experiment") == experiment]:
        if name not in recipes:
            del summary[name]


def _entry(store: Store, linked: set[str], recipe: Recipe, outcome: Result | BaseException, before: Any,
           out_dir: Path, experiment: str | None) -> dict[str, Any]:
    """One step's entry in the last-run summary (linking its output when it succeeded and is in `linked`)."""
    entry: dict[str, Any] = {"recipe_key": recipe.key, "store": str(store.root)}
    if experiment:
        entry["experiment"] = experiment
    if isinstance(outcome, Result):
        entry.update(status="cached" if outcome.cached else "done", resolved_key=outcome.resolved_key,
                     log=str(store.log_path(outcome.resolved_key)))
        before = before if isinstance(before, dict) else {}
        previous = before.get("resolved_key") if before.get("resolved_key") != outcome.resolved_key \
            else before.get("previous_key")
        if isinstance(previous, str):
            entry["previous_key"] = previous
        if outcome.previous is not None:
            entry["forced"] = True
        if recipe.name in linked and "out" in outcome.outputs:
            _link(store, out_dir, recipe.name, store.object_path(outcome.outputs["out"]))
    else:  # kept for `nw show`/`nw log`: a step that did not succeed is reported as such, not as unknown
        status = "interrupted" if isinstance(outcome, Interrupted) else "skipped" if _was_skipped(outcome) else "failed"
        entry.update(status=status, error=str(outcome))
        log = getattr(outcome, "log", None)
        if log:
            entry["log"] = log
            signature = getattr(outcome, "log_signature", None)
            if signature:
                entry["log_signature"] = signature
    return entry


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
    store.link_output(str(out_dir.absolute()), name, str(target))
