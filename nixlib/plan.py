"""What a run would do, without running anything: each step's state against the store (`nw run --dry-run`,
`nw status`, `nw dag`), and why a step would run (`nw why`).

Everything here only reads: the store's records and objects (through the engine's lookup, which checks every
record and object exactly as a real run would), the per-key locks (tested, never waited on) and the last-run
summary in the output-link directory. No step runs and nothing is added to the store.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nixlib import checkpoints, locks
from nixlib.engine import Engine
from nixlib.errors import NixWorkflowError
from nixlib.lineage import last_run
from nixlib.recipe import Recipe, topological
from nixlib.store import Store

# Each state, as `nw status` and `nw dag` name it.
CACHED, RUN, PINNED, PINNED_MISSING, RUNNING = "cached", "to run", "pinned", "pinned, missing", "running elsewhere"
FETCH = "to fetch"  # not in the store, but on the configured remote cache: a run substitutes it, runs nothing


@dataclass
class StepState:
    """One step's state against the store. `resolved_key` is known once every upstream step is realised."""

    name: str
    state: str
    recipe_key: str
    resolved_key: str | None
    upstream: list[str]
    top_level: bool
    why: str
    last_status: str | None = None  # its status in the last `nw run` here (done, cached, failed, skipped)
    last_error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    state_kept: str | None = None  # a resumable step's $state from an unfinished run, which it resumes from

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def local_engine(store: Store) -> Engine:
    """An engine that only looks: a configured remote cache is not asked, since substituting from it would add
    to the store. A query describes the local store."""
    engine = Engine(store)
    engine.remote = None
    return engine


def states(store: Store, workflow: Any, targets: list[Recipe], out_dir: Path, remote: bool = False) -> list[StepState]:
    """The state of `targets` and everything upstream, dependencies first. With `remote`, a step missing locally
    that the configured remote cache has is FETCH (and the steps below it are judged with its outputs), as `nw run`
    would substitute it; only records are read from the remote and nothing is stored."""
    engine = local_engine(store)
    asker = _RemoteRecords.configured(store) if remote else None
    summary = last_run(out_dir)
    result = []
    for recipe in topological(targets):
        result.append(_state(store, engine, recipe, recipe.name in workflow.named, summary.get(recipe.name), asker))
    return result


class _RemoteRecords:
    """Asks the configured remote cache whether it has a realisation, as `nw run`'s substitution would find it: a
    record signed by a trusted key that passes validation, whose every object is on the remote (or already here).
    Only the record is downloaded (into memory), never an object; the store is not touched. A remote that cannot
    be reached costs one warning, and the states are then the local store's."""

    def __init__(self, store: Store, remote: Any) -> None:
        self.store, self.remote = store, remote

    @classmethod
    def configured(cls, store: Store) -> _RemoteRecords | None:
        if not os.environ.get("NIX_WORKFLOW_REMOTE"):  # (nixlib.remote and its libraries load only when one is)
            return None
        from nixlib import remote

        try:
            configured = remote.configured()
        except NixWorkflowError as e:  # a bad setting: `nw run` refuses it; a query still answers for the store
            remote.warn(f"the remote cache is not asked: {e}")
            return None
        return cls(store, configured) if configured is not None and configured.trusted else None

    def find(self, rk: str) -> tuple[dict[str, Any], str] | None:
        """(the remote's record of `rk`, the trusted key that signed it), or None."""
        from nixlib import records, remote
        from nixlib.remotes import RemoteDown

        if self.remote.down or not records.is_name(rk):
            return None
        try:
            found = self.remote.fetch_record(rk)
            if found is None:
                return None
            doc, signer = found
            if any(not self.store.has(h) and not self.remote.has_object(h) for h in doc["outputs"].values()):
                return None  # `nw run` would reject it and run the step
        except RemoteDown as e:
            self.remote.down = True
            remote.warn(f"remote {self.remote.url} could not be asked ({str(e)[:300]}); the states shown are those "
                        "of the local store (a step the remote has is shown as to run)")
            return None
        return doc, signer


def _state(store: Store, engine: Engine, recipe: Recipe, top: bool, entry: Any,
           asker: _RemoteRecords | None = None) -> StepState:
    hit = engine.lookup(recipe)
    ups = [u.name for u in recipe.upstream()]
    last = entry if isinstance(entry, dict) else {}
    common = {"name": recipe.name, "recipe_key": recipe.key, "upstream": ups, "top_level": top,
              "last_status": last.get("status"), "last_error": last.get("error")}
    if recipe.pinned is not None:
        if hit is not None:
            return StepState(state=PINNED, resolved_key=None, why=f"pinned to object {recipe.pinned}, which is in "
                             "the store", outputs=dict(hit.outputs), **common)
        return StepState(state=PINNED_MISSING, resolved_key=None, why=pinned_missing(store, recipe), **common)
    if hit is not None:
        return StepState(state=CACHED, resolved_key=hit.resolved_key, why="its realisation is in the store",
                         outputs=dict(hit.outputs), **common)
    realised = engine.resolve(recipe)
    if realised is None:
        waiting = [u.name for u in recipe.upstream() if engine.lookup(u) is None]
        return StepState(state=RUN, resolved_key=None, why=f"runs after {', '.join(waiting)}, which must run "
                         "first", **common)
    rk = recipe.resolved_key(realised)
    if lock_held(store, rk):
        return StepState(state=RUNNING, resolved_key=rk, why="another process holds its lock and is running it now",
                         **common)
    found = asker.find(rk) if asker is not None and not isinstance(recipe, checkpoints.CheckpointRecipe) else None
    if found is not None:
        doc, signer = found
        engine.assume_realised(recipe, rk, doc)  # the steps below it are judged against its outputs
        return StepState(state=FETCH, resolved_key=rk, why=f"not in the store, but on the remote {asker.remote.url} "
                         f"(signed by {signer}): a run fetches it instead of running it",
                         outputs=dict(doc["outputs"]), **common)
    kept = store.kept_state(rk) if recipe.options.resumable else None
    resumes = f"; it resumes from its $state kept from an unfinished run ({kept})" if kept else ""
    return StepState(state=RUN, resolved_key=rk, why="no realisation of its recipe with these inputs is in the "
                     f"store{resumes}", state_kept=str(kept) if kept else None, **common)


def shown_root(store: Store) -> Path:
    """The store's path as a message names it: for the empty stand-in `nw status` and friends use when the store
    does not exist yet (cli._store_or_empty), the path of that missing store, not of the stand-in."""
    return getattr(store, "stands_for", store.root)


def pinned_missing(store: Store, recipe: Recipe) -> str:
    """Why a pinned step cannot be served, saying so when its object was quarantined as corrupt."""
    moved = quarantined(store, str(recipe.pinned))
    if moved:
        return (f"pinned to object {recipe.pinned}, which was quarantined as corrupt (its content no longer matched "
                f"its hash; moved to {moved[-1]}): restore a good copy into the store, or remove the hash to run "
                "the step")
    return (f"pinned to object {recipe.pinned}, which is not in the store at {shown_root(store)}: copy the object into "
            "this store, or remove the hash to run the step")


def quarantined(store: Store, h: str) -> list[Path]:
    """Where corrupt copies of object `h` were moved (`quarantine/<h>.<time>.<random>`), oldest first."""
    try:
        names = sorted(n for n in os.listdir(store.root / "quarantine") if n.startswith(f"{h}."))
    except OSError:
        return []
    return [store.root / "quarantine" / n for n in names]


def lock_held(store: Store, key: str) -> bool:
    """True if another process holds the per-key lock of `key`, i.e. is realising it now (locks.held)."""
    return locks.held(store.root / "locks" / f"{key}.lock")


def suggest(name: str, known: list[str]) -> str:
    """` Did you mean 'x'?` for a misspelt step name, or an empty string."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def label(s: StepState) -> str:
    """The state as one line of `nw status`: the state, then the last run's failure if it failed."""
    text = s.state
    if s.last_status == "failed" and s.state != CACHED:
        text += " (failed last time)"
    return text


def check_targets(workflow: Any, names: list[str]) -> None:
    """An error with a "did you mean" for every name that is no step of the workflow."""
    unknown = [t for t in names if t not in workflow.recipes]
    if unknown:
        hints = "".join(suggest(u, list(workflow.recipes)) for u in unknown)
        raise NixWorkflowError(f"no step named {', '.join(repr(u) for u in unknown)}.{hints} The experiment defines "
                               f"{', '.join(workflow.recipes) or 'no steps'}.")


# ---- nw why ---------------------------------------------------------------------------------------


def why(store: Store, recipe: Recipe, out_dir: Path, sources: dict[str, str] | None = None) -> dict[str, Any]:
    """Why `recipe` would run, or why it re-ran in the last run, as {name, state, compared_with, key,
    differences, verdict}.

    The *nearest* realisation it is compared with is, in order: the realisation the step had in the last
    `nw run` here (the last-run summary), the last realisation of the same recipe key (recipes/ index), and
    the newest realisation recorded under the same step name. A step that is cached now but re-ran in the
    last run is compared with the realisation it had in the run before (kept in the summary as previous_key).
    """
    from nixlib import diff

    engine = local_engine(store)
    entry = last_run(out_dir).get(recipe.name)
    entry = entry if isinstance(entry, dict) else {}
    state = _state(store, engine, recipe, True, entry)
    current = diff.side_of_recipe(recipe, engine, "now", sources)
    report: dict[str, Any] = {"name": recipe.name, "state": state.state, "compared_with": None, "key": None,
                              "differences": []}
    if state.state in (PINNED, PINNED_MISSING):
        return report | {"verdict": f"'{recipe.name}' is pinned: it never runs. {state.why}"}
    if state.state == CACHED:
        previous = entry.get("previous_key") if entry.get("resolved_key") == state.resolved_key else None
        old = _record(store, previous)
        if entry.get("status") == "done" and entry.get("forced"):
            return report | {"verdict": f"'{recipe.name}' is cached now; it re-ran in the last run because it was "
                             "forced (nw run --force)"}
        if entry.get("status") != "done" or old is None:
            return report | {"verdict": f"'{recipe.name}' would not run: its realisation {state.resolved_key} is in "
                             "the store"}
        now = _record(store, state.resolved_key) or {}
        differences = diff.recipe_differences(diff.side_of_record(old, "before"), diff.side_of_record(now, "last run"))
        return report | {"compared_with": "its realisation in the run before the last", "key": previous,
                         "differences": differences, "verdict": f"'{recipe.name}' is cached now; it re-ran in the "
                         "last run because its recipe differed from the run before:"}
    how, old = nearest(store, recipe, entry)
    if old is None:
        if entry.get("status") in ("failed", "skipped", "interrupted"):
            what = {"failed": "it failed", "skipped": "it was skipped", "interrupted": "it was interrupted"}
            since = "" if entry.get("recipe_key") == recipe.key else ", and its recipe has changed since"
            return report | {"verdict": f"'{recipe.name}' would run: {what[entry['status']]} in the last run here"
                             f"{since}, so no realisation of it is recorded "
                             f"({entry.get('error') or 'no error recorded'})"}
        return report | {"verdict": f"'{recipe.name}' would run: no realisation of a step named '{recipe.name}' "
                         f"is recorded in the store at {shown_root(store)} (it never ran here, or `nw gc` removed it)"}
    differences = diff.recipe_differences(diff.side_of_record(old, "before"), current)
    if not differences and old["resolved_key"] == state.resolved_key:
        differences = ["its recipe and inputs are unchanged, but the output objects of that realisation are gone "
                       "from the store (removed by `nw gc`, or quarantined as corrupt by `nw verify`)"]
    verb = "is running elsewhere" if state.state == RUNNING else "would run"
    return report | {"compared_with": how, "key": old["resolved_key"], "differences": differences,
                     "verdict": f"'{recipe.name}' {verb}: compared with {how} ({old['resolved_key']}):"}


def nearest(store: Store, recipe: Recipe, entry: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The realisation a step is compared with, and how it was chosen (see `why`)."""
    doc = _record(store, entry.get("resolved_key"))
    if doc is not None:
        return "its realisation in the last `nw run` here", doc
    doc = _record(store, store.last(recipe.key))
    if doc is not None and doc.get("recipe_key") == recipe.key:  # (never another recipe's, whatever points there)
        return "the last realisation of the same recipe", doc
    named = [d for key, path in store.record_files("realisations") if key
             and (d := store.load_record("realisations", key, path)) is not None and d.get("name") == recipe.name]
    if named:
        return f"the newest realisation recorded for a step named '{recipe.name}'", max(named, key=lambda d: d["end"])
    return "", None


def _record(store: Store, key: Any) -> dict[str, Any] | None:
    from nixlib import nar

    return store.read_record("realisations", key) if isinstance(key, str) and nar.is_nar_hash(key) else None
