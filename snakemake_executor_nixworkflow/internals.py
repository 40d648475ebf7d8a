"""Everything the executor assumes about Snakemake beyond the executor-plugin interface, in one place.

Snakemake's plugin interface tells an executor which job to run, not why, nor how Snakemake itself treats
a directory symlink. The executor needs a few such facts; each is read here, from Snakemake 9.27's
internals, and each has a test (tests/test_snakemake_internals.py; Snakemake's metadata records:
tests/test_snakemake_records.py) that fails by name when a Snakemake release changes it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import stat
import sys
import time
import types
from collections.abc import Awaitable, Callable
from typing import Any

TIMESTAMP = ".snakemake_timestamp"  # the file that carries a directory() output's mtime for Snakemake


def forced(dag: Any, job: Any) -> bool:
    """True when Snakemake runs `job` because the user forced it (`--forceall`, `-R/--forcerun`, `-f`): the
    DAG marks such a job's reason `forced`. A forced job must execute, never be restored from the store.

    `--rerun-incomplete` marks a job forced too (Snakemake adds the outputs a killed run left marked
    incomplete to its forced files), but it only says the files in the working directory cannot be
    trusted. A result the store recorded was complete and verified before its record was written, so
    such a job is looked up like any other: forced only if the user also forced its rule or another
    output (`remember_incomplete` noted which outputs were incomplete before this run started any job)."""
    try:
        if not dag.reason(job).forced:
            return False
        rerun = getattr(dag, _INCOMPLETE, frozenset())
        if not rerun or (job.rule in dag.forcerules and job not in dag.omitforce):
            return True
        return any(str(f) in dag.forcefiles and str(f) not in rerun for f in job.output)
    except (AttributeError, KeyError):
        return False


_INCOMPLETE = "_nixworkflow_incomplete"  # the DAG attribute remember_incomplete sets


def remember_incomplete(workflow: Any, dag: Any) -> None:
    """Note, before any job of this run starts (a started job is marked incomplete too), which outputs of
    forced jobs a killed run left marked incomplete: with `--rerun-incomplete` those are why the job is
    forced (see `forced`)."""
    if not workflow.dag_settings.force_incomplete:
        return
    persistence = workflow.persistence
    try:
        outputs = {persistence._get_key(f): str(f) for job in dag.needrun_jobs() if dag.reason(job).forced
                   for f in job.output}
        marked = persistence._filter_incomplete_keys(outputs)
    except (AttributeError, KeyError, TypeError):
        return  # another persistence plugin: every forced job executes, as before
    setattr(dag, _INCOMPLETE, frozenset(outputs[k] for k in marked))


def static_resource(rule: Any, name: str) -> Any | None:
    """A rule's resource value when it is known without evaluating anything (a literal in the Snakefile or
    from `--set-resources`); None when unset or computed by a function. Reading `job.resources` instead
    would evaluate resource functions before their upstream files exist (Snakemake evaluates them lazily,
    when the job is about to run), so start-up checks must use this."""
    try:
        resource = rule.resources.get(name)
    except AttributeError:
        return None
    if resource is None:
        return None
    if hasattr(resource, "is_evaluable"):
        if resource.is_evaluable():
            return None
        return resource.value
    return None if callable(resource) else resource


def carries_timestamp(path: str) -> bool:
    """Whether Snakemake keeps a directory() output's mtime in `<dir>/.snakemake_timestamp`: only for a real
    directory. For a symlink Snakemake uses the link's own mtime and never writes through it."""
    return os.path.isdir(path) and not os.path.islink(path)


def is_checkpoint(job: Any) -> bool:
    """A checkpoint job: Snakemake re-evaluates the DAG from its outputs once it finishes."""
    return bool(getattr(job, "is_checkpoint", False))


# Resources that say where or how a job is scheduled on this machine, not what it computes: `tmpdir` is a
# host path, `_nodes` a cluster count; nix_env/nix_cache are the executor's own (the env is keyed by identity).
UNKEYED_RESOURCES = frozenset({"tmpdir", "_nodes", "nix_env", "nix_cache", "nix_resumable"})


def keyed_resources(job: Any) -> dict[str, Any]:
    """The evaluated resources of a job that code reading `snakemake.resources`/`resources` can see."""
    return {str(k): v for k, v in job.resources.items() if k not in UNKEYED_RESOURCES}


def computed_resource(rule: Any, name: str) -> bool:
    """Whether the rule's resource `name` is computed by a function (known only when its job is about to run)."""
    try:
        resource = rule.resources.get(name)
    except AttributeError:
        return False
    if hasattr(resource, "is_evaluable"):
        return bool(resource.is_evaluable())
    return callable(resource)


# ---- finishing cached jobs before the scheduler's per-job cycle (executor.Executor.restore_upfront) ----------
# Snakemake builds the DAG, then creates the executor, then schedules: one ILP job selection, `prepare()`,
# post-processing and DAG update per round of ready jobs. A job the store can serve does not need that cycle:
# the executor restores it at start-up and finishes it the way JobScheduler._finish_jobs does, so Snakemake's
# metadata, temp-file handling and readiness of downstream jobs are exactly as after a run.


def ready_jobs(dag: Any) -> list[Any]:
    """The jobs whose inputs are all there (the DAG's `ready_jobs`, updated by `finish_upfront`)."""
    return list(dag.ready_jobs)


def is_ready(dag: Any, job: Any) -> bool:
    return job in dag.ready_jobs


def dependants(dag: Any, job: Any) -> list[Any]:
    """The jobs that consume outputs of `job` (of each job of a group), as `DAG.finish` walks them."""
    return [j for member in (job if job.is_group() else [job]) for j in dag.depending[member]]


async def reevaluate(job: Any) -> None:
    """Make a job's params and resources be evaluated again now that its inputs exist, as the scheduler does
    before selecting it (they may have been evaluated with upstream files still missing).

    Snakemake computes a resource that reads input sizes (`input.size_mb`, any `--default-resources`
    expression) by running a coroutine to completion, which it cannot do inside a running event loop, where
    the restore passes run: it silently gives `<TBD>` there, and the job would keep it (the scheduler resets
    a job's params and resources only once), running `echo {resources.mem_mb}` as `echo <TBD>`. So a job
    whose rule computes resources is evaluated on a thread without an event loop, as the scheduler's own
    evaluation is; a value still `<TBD>` after that raises, leaving the job to the scheduler, which then
    evaluates it again."""
    from snakemake.common.tbdstring import TBDString

    memoise_signatures(job.rule)
    job.reset_params_and_resources()
    if any(name != "tmpdir" and _computed(r) for name, r in job.rule.resources.items()):
        await asyncio.to_thread(_evaluate, job)
    undetermined = [str(k) for k, v in job.resources.items() if isinstance(v, TBDString)]
    if undetermined:
        job._params_and_resources_resetted = False  # the scheduler's reset before selection must happen
        raise ValueError(f"resources {', '.join(undetermined)} cannot be determined yet")


# Rules whose resource and param functions carry their parameters (memoise_signatures), by id (kept alive here).
_SIGNED: dict[int, Any] = {}


def memoise_signatures(rule: Any) -> None:
    """Have Snakemake look up which parameters a rule's resource and param functions take once per run, not
    once per job and resource. Evaluating a job's resources, Snakemake's `apply_input_function` asks
    `get_function_params(resource.evaluate)` twice and `Resource.evaluate` asks it for the resource's function:
    an `inspect.signature` each time, about a sixth of a restored job's cost for a rule with the default computed
    `tmpdir`. `get_function_params` returns the parameters stored in a function's FUNC_OVERWRITE_PARAMS_ATTR
    attribute when it has one (where Snakemake's own wrappers keep theirs, `overwrite_function_params`); this
    stores there exactly what `inspect.signature` gives, so every later call returns the same parameters
    without computing them. Only plain Python functions not annotated yet are touched; a bound method's
    attribute is its function's, so `Resource.evaluate` carries the parameters of the bound method."""
    if _SIGNED.get(id(rule)) is rule:
        return
    _SIGNED[id(rule)] = rule
    from snakemake.resources import Resource

    try:
        _annotate(Resource.evaluate, Resource("_", 0).evaluate)
        functions = [getattr(r, "_evaluator", None) for r in dict(rule.resources.items()).values()]
        for _, value in getattr(rule.params, "_allitems", list)():
            functions += [value, getattr(value, "callable", None)]  # a function, or a string carrying one
    except Exception:  # noqa: BLE001 - only a shortcut: without it Snakemake computes the same parameters
        return
    for func in functions:
        _annotate(func, func)


def _annotate(func: Any, signed: Any) -> None:
    """Store `inspect.signature(signed).parameters` on `func` where `get_function_params` looks first."""
    from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR

    if not isinstance(func, types.FunctionType) or FUNC_OVERWRITE_PARAMS_ATTR in func.__dict__:
        return
    try:
        setattr(func, FUNC_OVERWRITE_PARAMS_ATTR, inspect.signature(signed).parameters)
    except (TypeError, ValueError):  # no signature: Snakemake's own call computes (and reports) it as before
        pass


def _computed(resource: Any) -> bool:
    """A rule's resource that is a function or an expression, evaluated per job (possibly from input sizes)."""
    return resource.is_evaluable() if hasattr(resource, "is_evaluable") else callable(resource)


def _evaluate(job: Any) -> None:
    job.resources  # noqa: B018 - evaluated and cached on the job


async def prepare_upfront(job: Any) -> None:
    """What Snakemake does before a job runs: remove stale outputs, create output directories."""
    await job.prepare()


async def postprocess_upfront(job: Any, shellcmd: str | None = None, began: float | None = None) -> None:
    """Post-process a job whose outputs are in place as the scheduler does after a successful run: log and
    touch handling, the output check, protection, Snakemake's metadata record. With Snakemake's file-based
    metadata (its default), the record is written by `write_record` instead of `Persistence.finished`: the
    same record, without building a pydantic model per output or formatting the command a second time
    (`shellcmd`, when the caller formatted it already), which is about half of a restored job's share of
    Snakemake's post-processing. The stand-in for `finished` is set on the persistence object only while this
    job's `postprocess` runs: Snakemake post-processes jobs one at a time, on the scheduler's thread (its
    `_finish_jobs` loop, under its lock), which is also where the restoring pass runs, so no other job's
    post-processing can see it. `began`, when the restore began, is the record's start time: such a job has no
    incomplete marker of this run to take it from."""
    persistence = job.dag.workflow.persistence
    lean = lean_records(job.dag.workflow)
    if lean:
        persistence.finished = _recorded_later  # this call only: the instance attribute shadows the method
    elif began is not None:
        persistence.finished = _starting_at(persistence, began)  # (another backend: Snakemake's db, a plugin)
    try:
        await job.postprocess(store_in_storage=True, handle_log=True, handle_touch=True, ignore_missing_output=False)
    finally:
        if lean or began is not None:
            del persistence.finished
    if lean:
        await write_record(persistence, job, job.shellcmd if shellcmd is None else shellcmd, began)


async def _recorded_later(job: Any) -> None:
    """Stands in for `Persistence.finished` inside `postprocess_upfront` (write_record follows)."""


def _starting_at(persistence: Any, began: float) -> Callable[[Any], Awaitable[None]]:
    """`Persistence.finished` of a backend `write_record` does not stand in for (`--persistence-backend db`),
    with the start time of a job restored before scheduling: when its restore began, never after its end (the
    output's mtime). Snakemake's `finished` takes the start from the incomplete marker, which such a job has not
    got, so it would fall back to the previous record's (a past run's start: a runtime of hours in `--report`)
    or to the time of the write, after the restored output's mtime (a negative runtime). Its own
    `_get_recorded_starttime` is shadowed for this one call (same single-threaded post-processing as above)."""

    async def finished(job: Any) -> None:
        starts = {}
        for f in job.output:
            end = (await f.mtime()).local_or_storage() if await f.exists() else began
            starts[persistence._get_key(f)] = min(began, end)
        recorded = persistence._get_recorded_starttime
        persistence._get_recorded_starttime = lambda key: starts[key] if key in starts else recorded(key)
        try:
            await type(persistence).finished(persistence, job)
        finally:
            del persistence._get_recorded_starttime

    return finished


def lean_records(workflow: Any) -> bool:
    """Whether `write_record` can stand in for `Persistence.finished`: Snakemake's file-based metadata
    (`.snakemake/metadata`, not its database backend) of a normal, local run that keeps metadata."""
    from snakemake.persistence.file import FilePersistence
    from snakemake_interface_executor_plugins.settings import ExecMode

    return (type(workflow.persistence) is FilePersistence and workflow.exec_mode == ExecMode.DEFAULT
            and workflow.execution_settings.keep_metadata)


async def write_record(persistence: Any, job: Any, shellcmd: str | None, began: float | None = None) -> None:
    """`Persistence.finished(job)` of Snakemake 9.27's file backend, field for field (tests/test_snakemake_records.py
    compares the files both write): per output, the rule's code, input, log, params, command, conda env, software stack
    hash, job hash, start (the incomplete marker's mtime, else the previous record's, else now) and end
    (the output's mtime) times and the input checksums, merged into the output's previous record, written
    as the backend's own writer writes it (`write_json`); then the output's incomplete marker is removed.
    A job restored before scheduling passes `began`, when its restore began, and starts then (never after its
    end): Snakemake's fallbacks would give it the previous record's start, a past run's (a runtime of days in
    `--report`), or the time of this write, after the restored output's mtime (a negative runtime)."""
    from snakemake.persistence import RECORD_FORMAT_VERSION

    persistence._clear_cache()
    common = {
        "rule": job.rule.name, "input": persistence._input(job), "log": persistence._log(job),
        "shellcmd": shellcmd, "params": persistence._params(job), "code": persistence._code(job.rule),
        "record_format_version": RECORD_FORMAT_VERSION, "conda_env": persistence._conda_env(job),
        "container_img_url": job.container_img_url, "software_stack_hash": persistence._software_stack_hash(job),
        "job_hash": hash(job), "incomplete": False,
    }
    fallback_time = time.time()
    for f in job.output:
        key = persistence._get_key(f)
        endtime = (await f.mtime()).local_or_storage() if await f.exists() else fallback_time
        checksums = {str(infile): await infile.checksum(persistence.max_checksum_file_size) for infile in job.input}
        previous = persistence._read_record(key)
        record = dict(previous.items()) if previous is not None else {**RECORD_DEFAULTS}
        start = min(began, endtime) if began is not None else persistence._get_recorded_starttime(key) or fallback_time
        record.update(common, starttime=start, endtime=endtime,
                      input_checksums={k: v for k, v in checksums.items() if v is not None})
        write_json(persistence, key, record)
    for f in job.output:
        persistence._unmark_incomplete(persistence._get_key(f))


RECORD_MODE = stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP  # FilePersistence._io_write's default


def write_json(persistence: Any, key: str, value: Any) -> None:
    """`FilePersistence._io_write(persistence._metadata_path, value, key)`, the same file with the same bytes and
    mode (tests/test_snakemake_internals.py writes both): `json.dumps` in one write instead of `json.dump`'s
    Python-level encoder writing piece by piece, and the record's directory created only when opening fails
    for want of it."""
    path = persistence._record_path(persistence._metadata_path, key)
    text = json.dumps(value)
    try:
        existing: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        existing = None
    try:
        f = open(path, "w")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        f = open(path, "w")
    with f:
        f.write(text)
    if existing is None:
        os.chmod(path, RECORD_MODE)
    elif existing | RECORD_MODE != existing:
        os.chmod(path, existing | RECORD_MODE)


# A fresh MetadataRecord's fields, in its order (what `dict(MetadataRecord().items())` gives; pinned by a test).
RECORD_DEFAULTS: dict[str, Any] = {
    "rule": None, "input": None, "log": None, "shellcmd": None, "params": None, "code": None,
    "record_format_version": 0, "conda_env": None, "container_img_url": None, "software_stack_hash": None,
    "job_hash": None, "starttime": None, "endtime": None, "incomplete": None, "external_jobid": None,
    "input_checksums": {},
}


async def mark_finished(dag: Any, job: Any) -> None:
    """Mark a post-processed job finished in the DAG (which makes its dependents ready and handles temp
    files), as the scheduler does for a job it ran. Calls the DAG class's `finish`, not the per-instance hook
    of `after_finish`: the restoring pass that finishes jobs this way loops over newly ready jobs itself."""
    dag.register_running({job})
    await type(dag).finish(dag, job, update_checkpoint_dependencies=True)


def after_finish(dag: Any, hook: Callable[[Any], Awaitable[None]]) -> None:
    """Have `await hook(job)` run each time the scheduler has finished a job in the DAG. The scheduler's
    `_finish_jobs` post-processes each job it ran and then awaits `dag.finish(job, ...)` (which readies the
    job's dependents), on its own thread and under its lock, before its next job selection: the hook sees the
    dependents ready and can finish some of them before they are selected."""
    finish = dag.finish

    async def finish_then_hook(job: Any, *args: Any, **kwargs: Any) -> Any:
        result = await finish(job, *args, **kwargs)
        await hook(job)
        return result

    dag.finish = finish_then_hook


def snakemake_cached(workflow: Any, job: Any) -> bool:
    """A job of a rule under Snakemake's own between-workflow cache (`--cache`): left to the scheduler, where
    the local executor's `cached_or_run` serves it."""
    return workflow.workflow_settings.cache is not None and bool(getattr(job.rule, "cache", None))


def log_finished(job: Any) -> None:
    """The scheduler's `Finished jobid: N (Rule: R)` record (the JOB_FINISHED event), for a job with nothing to run
    that the restoring pass finishes itself (printed, as the scheduler does, with `job.log_info()`): tools reading
    the log (log handler plugins, Snakemake's own tests) saw no such job start or finish, so a run counted one job
    fewer."""
    from snakemake.logging import LogEvent, logger

    logger.info(f"Finished jobid: {job.jobid} (Rule: {job.rule.name})",
                extra=dict(event=LogEvent.JOB_FINISHED, job_id=job.jobid))


def count_finished(scheduler: Any, n: int, show: bool = False) -> None:
    """Add jobs finished outside the scheduler to its progress count ("x of y steps done"); `show` prints the
    progress line as the scheduler does after each job it finishes (it printed its own before the hook ran)."""
    if scheduler is not None and hasattr(scheduler, "finished_jobs"):
        scheduler.finished_jobs += n
        if show and getattr(scheduler, "print_progress", False):
            scheduler.progress()


def cli_args() -> Any | None:
    """The command line Snakemake parsed for this run (profile values included), or None when Snakemake was
    started through its Python API. A backend's own settings (`--slurm-*`) are read from it through the plugin
    registry, as Snakemake reads the settings of the executor it runs; it lives as the local `args` of
    `snakemake.cli.args_to_api`, on the stack while that function builds and runs the workflow."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "args_to_api" and frame.f_globals.get("__name__") == "snakemake.cli":
            return frame.f_locals.get("args")
        frame = frame.f_back
    return None



def run_local_jobs_with(workflow: Any, executor: Any) -> Callable[[], None]:
    """Have the scheduler being built for `workflow` run its local jobs (`localrules`, `localrule: True`, rules
    without code) with `executor` instead of Snakemake's local executor. In a cluster run `JobScheduler.__init__`
    creates the run's executor, then right after it its local executor from the registry's "local" record
    (`.executor(workflow, logger)`), and hands each `job.is_local` job to that one. Called from the run's
    executor's constructor, this makes that next call return `executor` (for `workflow` only) and put the record
    back; the function returned puts it back if the call never came."""
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    record = ExecutorPluginRegistry().get_plugin("local")
    original = record.executor

    def undo() -> None:
        if record.executor is provide:
            record.executor = original

    def provide(wf: Any, logger: Any) -> Any:
        undo()
        return executor if wf is workflow else original(wf, logger)

    record.executor = provide
    return undo
