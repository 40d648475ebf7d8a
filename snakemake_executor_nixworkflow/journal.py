"""A Snakemake run's jobs and their states, live, for `nw view` (nixlib.view.history.RunJournal).

The journal goes to `.snakemake/nw-runs/` of the working directory (not beside output links: a
checkpoint's check for undeclared writes walks the working directory but skips `.snakemake/`).
Every job Snakemake will run is added up front as pending, with the jobs producing its inputs as
upstream; the engine's lookups and realisations then say running, done, cached or failed. A job is
named `rule[wildcard=value,…]`, from the job here and from the recipe's keyed wildcards in the
engine, so both name it alike. Journalling never fails or slows a run (see RunJournal).
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from nixlib.view.history import SNAKEMAKE_RUNS, RunJournal


def attach(executor: Any) -> RunJournal | None:
    """Journal the executor's run (not a dry run, nor a job's own spawned Snakemake); None if it cannot."""
    try:
        workflow = executor.workflow
        if workflow.dryrun or workflow.touch or not workflow.is_main_process:
            return None
        journal = RunJournal(Path.cwd(), executor.store.root, executor.engine, tool="snakemake",
                             runs_dir=Path.cwd() / SNAKEMAKE_RUNS, name=recipe_name)
        jobs = [j for job in executor.dag.needrun_jobs() for j in (job if job.is_group() else [job]) if not j.is_norun]
        producers = {str(f): job_name(j) for j in jobs for f in j.output}
        for j in jobs:
            name = job_name(j)
            journal.add(name, {producers[str(f)] for f in j.input if str(f) in producers} - {name})
        # a job failing once Ctrl-C cancelled the run was stopped, not failed: it reads interrupted, as in nw run
        cancelling = getattr(executor, "cancelling", None)
        journal.watch(executor.engine, stopping=cancelling.is_set if cancelling is not None else None)
        atexit.register(journal.finish)
        return journal
    except Exception as e:  # noqa: BLE001 - the viewer's journal must never stop a run
        executor.logger.debug(f"nixworkflow: this run is not journalled for nw view: {e}")
        return None


def job_name(job: Any) -> str:
    return _name(job.rule.name, job.wildcards_dict.items())


def recipe_name(recipe: Any) -> str:
    """The journal's name of a job's recipe: its rule and the wildcards keyed with it (see jobs.RecipeBuilder)."""
    wildcards = ((recipe.extra or {}).get("snakemake") or {}).get("wildcards") or []
    return _name(recipe.name, wildcards.items() if isinstance(wildcards, dict) else wildcards)


def _name(rule: str, wildcards: Any) -> str:
    pairs = sorted(f"{k}={v}" for k, v in wildcards)
    return f"{rule}[{','.join(pairs)}]" if pairs else rule
