"""A Luigi run's tasks and their states, live, for `nw view` (nixlib.view.history.RunJournal).

Luigi discovers tasks while it schedules, by asking each whether it is complete, which for a NixTask
is an Engine lookup; running one is Engine.realise. So the journal follows the process's engine:
a lookup that misses adds the task (named by its task_id, with its family, upstream by the tasks its recipe
uses) as pending, one that hits marks it cached, and a realisation says running, then done, cached or failed.
A task that fails before its realisation (its recipe cannot be built, Luigi finds a dependency missing
at run time, complete() raised, its worker process died) is marked failed from Luigi's failure events.
A task run by a forked worker process (`--workers N`) reports from there (RunJournal appends its
events). The journal lives in `.nw-runs/` of the working directory, one per process and store root,
and is marked ended when the process exits. Journalling never fails or slows a run.
"""

from __future__ import annotations

import atexit
import logging
import os
from pathlib import Path
from typing import Any

from luigi.task import DynamicRequirements, flatten

from nixlib.errors import NixWorkflowError
from nixlib.view.history import LUIGI_RUNS, RunJournal

logger = logging.getLogger("luigi-interface")


_BY_ENGINE: dict[int, RunJournal] = {}  # id(engine) -> its journal


def attach(engine: Any, out_link: str) -> RunJournal | None:
    """Journal what `engine` does for this process's tasks; nothing when output links are off ('' or 'none')."""
    if not out_link or out_link.lower() == "none":
        return None
    try:
        journal = RunJournal(Path.cwd(), engine.store.root, engine, tool="luigi", runs_dir=Path.cwd() / LUIGI_RUNS,
                             family=family)
        journal.watch(engine)
        atexit.register(journal.finish)
        _BY_ENGINE[id(engine)] = journal
        return journal
    except Exception as e:  # noqa: BLE001 - the viewer's journal must never stop a run
        logger.debug("nixworkflow: this run is not journalled for nw view: %s", e)
        return None


def flush() -> None:
    """Write what this process's journals learnt since their last write, at the end of a luigi.build: the shared
    flusher writes only every FLUSH_EVERY seconds, and an interpreter that lives on after the build (a notebook, a
    service, a test) would otherwise leave a task its journal on disk still calls running, which `nw lineage` and
    `nw show` of that task, run right after the build, report."""
    for journal in list(_BY_ENGINE.values()):
        if journal.pid != os.getpid():
            continue  # (a forked worker's: it reports through events, never writes the journal)
        try:
            journal.flush()
        except Exception as e:  # noqa: BLE001 - journalling never fails a run
            logger.debug("nixworkflow: could not write the run journal: %s", e)


def family(recipe: Any) -> str | None:
    """A task's family, from its recipe (translate.build keys it), so `nw show FAMILY` finds a family's one task."""
    return ((recipe.extra or {}).get("luigi") or {}).get("family")


def failed(engine: Any, name: str, error: BaseException | str) -> None:
    """Mark task `name` failed in `engine`'s journal, for a failure the engine never saw: before its realisation
    (its recipe cannot be built, a dependency Luigi finds missing at run time), in complete(), or its worker
    process dying."""
    journal = _BY_ENGINE.get(id(engine))
    if journal is None:
        return
    try:
        text = error if isinstance(error, str) else str(error) if isinstance(error, NixWorkflowError) \
            else f"{type(error).__name__}: {error}"  # (nixworkflow's own errors name what failed)
        journal.note(name, "failed", error=text)
    except Exception as e:  # noqa: BLE001 - journalling never fails a run
        logger.debug("nixworkflow: could not journal the failure of %s: %s", name, e)


def pending(engine: Any, task: Any) -> None:
    """List `task`, found not complete, as pending (upstream by the tasks it requires) when no lookup did: one
    of the tasks it needs is not complete, so its own recipe is not known yet. Should that one fail, Luigi leaves
    this task pending, and its journal entry says it was not run."""
    journal = _BY_ENGINE.get(id(engine))
    if journal is None or task.task_id in journal.doc["steps"]:
        return
    try:
        journal.add(task.task_id, [t.task_id for t in flatten(task.deps())], family=task.task_family)
    except Exception as e:  # noqa: BLE001 - journalling never fails a run
        logger.debug("nixworkflow: could not journal %s as pending: %s", task.task_id, e)


def waiting(engine: Any, name: str, requirements: Any) -> None:
    """Mark task `name` as waiting for tasks its run() yielded that were not complete (the engine saw its action
    stop and journalled a failure): Luigi runs them, then this run() again. Should one of them fail, Luigi leaves
    this task pending, and so does its journal entry say at the end: it did not run, it did not fail."""
    journal = _BY_ENGINE.get(id(engine))
    if journal is None:
        return
    try:
        if isinstance(requirements, DynamicRequirements):
            requirements = requirements.flat_requirements
        ids = [t.task_id for t in flatten(requirements)]
        listed = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        journal.note(name, "skipped", error=f"waiting for the tasks its run() yielded ({listed}), which were not "
                     "complete: Luigi runs them first, then this task's run() again (not if one of them fails)",
                     upstream=ids)  # (what it yielded is upstream of it, as what it requires is)
    except Exception as e:  # noqa: BLE001 - journalling never fails a run
        logger.debug("nixworkflow: could not journal that %s waits for the tasks it yielded: %s", name, e)
