"""`--nixworkflow-backend NAME`: cache misses run through another executor plugin (Slurm, cluster-generic, ...).

A backend is any installed remote executor plugin, named as for `--executor`. Its own options and profile
keys (`--slurm-*`) keep working: the nixworkflow plugin takes the backend's place in Snakemake's plugin
registry (its executor class and common settings: a cluster run, not a local one) and runs it wrapped,
the way snakemake-executor-plugin-shared-local wraps the local executor:
`type("Executor", (BackendMixin, backend.executor), {})`.

Who does what:
- the submitting Snakemake (`--executor nixworkflow --nixworkflow-backend slurm`): nixworkflow's local
  executor restores every hit before the scheduler starts (nothing is submitted for them); each job the
  scheduler then hands over is looked up again and, on a miss, realised by the engine under the recipe's
  lock whose Action submits the job through the backend and waits for its outcome. So the lock is held
  from before the submission until the outputs are stored: two runs sharing the store submit a job once
  between them, and the second is served the first one's result. The backend's job id is recorded in
  the realisation's provenance (`{"slurm": {"job_id": "123"}}`); failures are reported by the backend,
  exactly as without nixworkflow, and nothing is stored.
- every Snakemake the backend starts for a job passes it on with the backend's own arguments, except
  that each `--executor X` becomes `--executor nixworkflow --nixworkflow-backend X` (Slurm's
  `slurm-jobstep`), and the innermost one, which runs the job, uses `--executor nixworkflow
  --nixworkflow-no-cache`: the job runs in its rule's Nix env, and the submitting process stores it. On the
  node, the Snakemake slurm-jobstep kills whatever the job left running (found by its marker) before it ends,
  so nothing writes into the outputs after Slurm says the job completed.
- jobs Snakemake runs on the submitting host in a cluster run (`localrules`, `localrule: True`, rules without
  code) go to nixworkflow's local executor, the one that restored the hits (`internals.run_local_jobs_with`):
  looked up, run in their env here and stored under the recipe's lock, as with `--executor nixworkflow`.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

from nixlib.errors import NixWorkflowError
from nixlib.reaper import StuckProcesses, mark_runner_environ, reap_marked
from nixlib.slurm import CANCEL_WAIT
from snakemake_executor_nixworkflow import internals
from snakemake_executor_nixworkflow.settings import ExecutorSettings, SetupError, register, settings_of

PLUGIN = "nixworkflow"
NOT_BACKENDS = ("local", "dryrun", "touch", PLUGIN)
# What the Snakemake on a node needs to run a job in its env (the store holds the env evaluation cache);
# the remote cache, pushing and link modes concern storing, which happens in the submitting process.
ONWARD = ("store", "config", "env", "pure", "sandbox", "network")
PENDING_POLL = 5.0  # seconds between two looks (one batched squeue) at the run's pending Slurm jobs

_original: tuple[Any, Any] | None = None  # the plugin's own executor class and common settings
_classes: dict[str, type] = {}


def activate(name: str | None) -> None:
    """Make the nixworkflow plugin run `name` as its backend (None: run jobs here, the default)."""
    global _original
    if name is None and _original is None:
        return
    plugin = ExecutorPluginRegistry().get_plugin(PLUGIN)
    if _original is None:
        _original = (plugin.executor, plugin.common_settings)
    if name is None:
        plugin.executor, plugin.common_settings = _original
        return
    base = backend_plugin(name)
    plugin.executor = executor_class(name)
    plugin.common_settings = base.common_settings


def backend_plugin(name: str) -> Any:
    """The installed remote executor plugin `name`, or a SetupError saying what to install or choose."""
    registry = ExecutorPluginRegistry()
    if name in NOT_BACKENDS:
        raise SetupError(f"nixworkflow: --nixworkflow-backend {name}: a backend is a remote executor plugin "
                         "(e.g. slurm, cluster-generic); leave the option out to run jobs on this machine")
    if not registry.is_installed(name):
        raise SetupError(f"nixworkflow: --nixworkflow-backend {name}: no Snakemake executor plugin '{name}' is "
                         f"installed (pip install {registry.get_plugin_package_name(name)})")
    plugin = registry.get_plugin(name)
    if plugin.common_settings.local_exec:
        raise SetupError(f"nixworkflow: --nixworkflow-backend {name}: '{name}' runs jobs locally; a backend is a "
                         "remote executor plugin (e.g. slurm, cluster-generic)")
    return plugin


def executor_class(name: str) -> type:
    """The backend's executor class with nixworkflow in front of it."""
    if name not in _classes:
        base = backend_plugin(name).executor
        _classes[name] = type("Executor", (BackendMixin, base), {"nixworkflow_backend": name})
    return _classes[name]


def backend_settings(name: str) -> Any:
    """The backend's own settings, from Snakemake's command line and profile as if it were `--executor`."""
    plugin = backend_plugin(name)
    args = internals.cli_args()
    if args is not None:
        settings = plugin.get_settings(args)
    elif plugin.settings_cls is not None:  # Snakemake's Python API: the backend's defaults
        settings = plugin.settings_cls()
    else:
        settings = None
    if getattr(settings, "array_jobs", None):
        raise SetupError("nixworkflow: array jobs (--slurm-array-jobs) are not supported with "
                         "--nixworkflow-backend: leave the option out (each miss is submitted as its own job)")
    if getattr(settings, "requeue", None):
        from nixlib.slurm import REFUSED

        raise SetupError(f"nixworkflow: '--slurm-requeue' cannot be used with --nixworkflow-backend: "
                         f"{REFUSED['--requeue']} (after a node failure, a cut-off node could still write into "
                         "the shared working directory); leave the option out")
    if name == "slurm" and hasattr(settings, "no_requeue"):
        settings.no_requeue = True  # `sbatch --no-requeue`, as `nw run --slurm`: the cluster's default may requeue
    return settings


def onward_args(words: list[str], settings: ExecutorSettings) -> list[str]:
    """The arguments a backend gives the Snakemake it starts for a job, made to keep nixworkflow in the chain:
    an inner executor X becomes nixworkflow with backend X; without one (the job runs there) nixworkflow."""
    out = list(words)
    for i, word in enumerate(out):
        if word == "--executor" and i + 1 < len(out):
            out[i:i + 2] = ["--executor", PLUGIN, "--nixworkflow-backend", out[i + 1]]
            break
        if word.startswith("--executor="):
            out[i:i + 1] = ["--executor", PLUGIN, "--nixworkflow-backend", word.split("=", 1)[1]]
            break
    else:
        out += ["--executor", PLUGIN]
    return out + node_settings(settings)


def node_settings(settings: ExecutorSettings) -> list[str]:
    """`--nixworkflow-*` arguments of the Snakemake that runs a job on a node: its env settings, and no
    cache (the submitting process, which holds the recipe's lock, stores the outputs)."""
    out = ["--nixworkflow-no-cache"]
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name not in ONWARD or value in (None, False):
            continue
        flag = "--nixworkflow-" + f.name.replace("_", "-")
        if value is True:
            out.append(flag)
        else:
            out += [flag, str(Path(value).absolute()) if isinstance(value, Path) else str(value)]
    return out


@dataclass
class Outcome:
    """What the backend reported for a submitted job."""

    done: threading.Event = field(default_factory=threading.Event)
    info: SubmittedJobInfo | None = None
    failed: bool = False
    msg: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


class BackendFailed(NixWorkflowError):
    """The backend reported the job failed (its report is passed on as it is)."""


class BackendMixin:
    """In front of a backend's executor: hits restored here, misses submitted under the recipe's lock."""

    nixworkflow_backend = ""

    def __init__(self, workflow: Any, logger: Any) -> None:
        if workflow.is_main_process and self.nixworkflow_backend == "slurm":
            from nixlib.slurm import DROPPED_ENV

            for variable in DROPPED_ENV:  # the plugin runs sbatch with this process's environment
                os.environ.pop(variable, None)
        self.nixworkflow = settings_of(workflow)
        register(workflow, self.nixworkflow)
        workflow.executor_settings = backend_settings(self.nixworkflow_backend)  # what the backend's code reads
        self.local: Any = None
        self.undo_local: Callable[[], None] = lambda: None  # puts back the registry's local executor
        self.serving: cf.ThreadPoolExecutor | None = None
        self._waiting: dict[Any, Outcome] = {}
        self._waiting_lock = threading.Lock()
        self._cancelled = threading.Event()  # stops a wait for Slurm to confirm a job (confirm)
        self._in_backend: dict[Any, SubmittedJobInfo] = {}  # job -> its submission, while it may still run there
        self._never_started: set[str] = set()  # Slurm jobs failed here (never_started): the backend's reports dropped
        self._watch_stop = threading.Event()  # stops watch_pending
        self._stopped = False  # stop_everything has run
        self._ended = threading.Event()  # set once, after a cancel, no job of ours runs in the backend any more
        self.node_marker = ""  # on the node: the marker every process of the job carries (mark_job_processes)
        super().__init__(workflow, logger)  # type: ignore[call-arg]

    def __post_init__(self, *args: Any, **kwargs: Any) -> None:
        super().__post_init__(*args, **kwargs)  # type: ignore[misc]
        if not self.workflow.is_main_process:  # a Snakemake the backend started: it only passes the job on
            self.mark_job_processes()
            return
        from snakemake_executor_nixworkflow.executor import Executor

        self.local = Executor(self.workflow, self.logger)  # restores every hit now, before the scheduler starts
        # jobs Snakemake runs on this host (localrules) go through it too: cached, in their env, stored
        self.undo_local = internals.run_local_jobs_with(self.workflow, self.local)
        nodes = self.workflow.resource_settings.nodes
        self.serving = cf.ThreadPoolExecutor(max_workers=min(int(nodes or 1), 1024) + 4,
                                             thread_name_prefix="nixworkflow-backend")
        if self.nixworkflow_backend == "slurm":
            threading.Thread(target=self.watch_pending, name="nixworkflow-pending", daemon=True).start()

    def mark_job_processes(self) -> None:
        """On the node (the Snakemake slurm-jobstep runs inside the Slurm job): every process of the job from now
        on (its srun, the Snakemake that runs the job, what the job starts) carries this process's runner marker,
        so that `end_leftovers` finds a `setsid` daemon the job left behind, which Slurm's proctrack/linuxproc or
        pgid does not track."""
        self.node_marker = mark_runner_environ() if self.nixworkflow_backend == "slurm-jobstep" else ""

    def end_leftovers(self) -> None:
        """Kill what the job left running on the node before this Snakemake, and so the Slurm job, ends: the
        submitting process stores the outputs once Slurm says the job completed, and a daemon still running then
        would write into them (in the shared working directory; with --nixworkflow-link-mode hardlink into the
        stored object itself). As `nw run --slurm`'s job script does (nixlib.slurm.reap_script)."""
        if not self.node_marker:
            return
        try:
            reap_marked(self.node_marker)
        except StuckProcesses as e:
            self.logger.warning(f"nixworkflow: processes {e} the job left running had not ended 30 s after being "
                                "killed (uninterruptible I/O?)")

    def additional_general_args(self) -> str:
        passed = super().additional_general_args()  # type: ignore[misc]
        words = shlex.split(passed if isinstance(passed, str) else " ".join(passed or []))
        return shlex.join(onward_args(words, self.nixworkflow))

    # ---- the submitting process -----------------------------------------------------------------

    def run_jobs(self, jobs: list[Any]) -> None:
        if self.local is None:
            super().run_jobs(jobs)  # type: ignore[misc]
            return
        if self.local.upfront:
            internals.count_finished(getattr(self.workflow, "scheduler", None), self.local.upfront)
            self.local.upfront = 0
        refused = {job: why for job in jobs if (why := self.refused_extra(job))}
        for job, why in refused.items():  # nothing of it is submitted
            super().report_job_error(SubmittedJobInfo(job), msg=why)  # type: ignore[misc]
        jobs = [job for job in jobs if job not in refused]
        plain = [job for job in jobs if not self.cached(job)]
        for job in jobs:
            if job not in plain:
                assert self.serving is not None
                self.serving.submit(self.serve, job)
        if plain:  # not cached (groups, no outputs, nix_cache=0): submitted as they are, still run in their env
            super().run_jobs(plain)  # type: ignore[misc]

    def refused_extra(self, job: Any) -> str | None:
        """Why the job's `slurm_extra` cannot be used, or None: the options `nw run --slurm` refuses (`--requeue`,
        `--array`, `--wait`, `--wrap`) would undo what --slurm-no-requeue and the store's lock promise (a second copy
        of the job writing the same outputs). The Slurm plugin puts slurm_extra last, so it would win."""
        if self.nixworkflow_backend != "slurm":
            return None
        from nixlib.slurm import option_problem

        extra = getattr(job, "resources", {}).get("slurm_extra")
        try:
            words = shlex.split(str(extra)) if extra else []
        except ValueError:
            return None  # the plugin reports what it cannot parse
        for word in words:
            problem = option_problem(word) if word.startswith("-") else None
            if problem:
                why = problem.replace("$out", "outputs")
                return (f"nixworkflow: rule {job.name}: resources slurm_extra: {why}; remove it from slurm_extra "
                        "(and from --set-resources, --default-resources or the profile); nothing was submitted. ")
        return None

    def cached(self, job: Any) -> bool:
        from snakemake_executor_nixworkflow.jobs import cacheable

        return not self.nixworkflow.no_cache and not job.is_group() and not job.is_norun and cacheable(job)

    def serve(self, job: Any) -> None:
        """Restore the job, or submit it under the recipe's lock and store what it produced; then report it."""
        outcome = Outcome()
        try:
            result = self.realise(job, outcome, internals.forced(self.dag, job))
            if result.cached:
                self.workflow.async_run(job.prepare())
                if not self.local.restore(job, result):  # a result that cannot stand in for the job: run it
                    self.realise(job, outcome, force=True)
        except BackendFailed:
            super().report_job_error(outcome.info, msg=outcome.msg, **outcome.kwargs)  # type: ignore[misc]
            return
        except Exception as e:  # noqa: BLE001 - reported as the job's failure, with nixworkflow's message
            self.logger.debug(f"nixworkflow: rule {job.rule.name} (jobid {job.jobid}) failed", exc_info=True)
            info = outcome.info or SubmittedJobInfo(job)
            super().report_job_error(info, msg=f"nixworkflow: {e}")  # type: ignore[misc]
            return
        super().report_job_success(outcome.info or SubmittedJobInfo(job))  # type: ignore[misc]

    def realise(self, job: Any, outcome: Outcome, force: bool) -> Any:
        """The engine's realise of the job, whose Action submits it through the backend and waits for it."""
        from snakemake_executor_nixworkflow.jobs import provenance

        local = self.local
        recipe = local.recipes.recipe(job, *local.env_of(job))
        prov = provenance(job, local.recipes.where)

        def run() -> None:
            with self._waiting_lock:
                if self._cancelled.is_set():
                    raise NixWorkflowError(f"rule {job.rule.name}: cancelled before it was submitted")
                self._waiting[job] = outcome
            super(BackendMixin, self).run_jobs([job])  # type: ignore[misc]
            outcome.done.wait()
            if outcome.failed:
                raise BackendFailed(f"rule {job.rule.name}: {outcome.msg}")
            job_id = str(outcome.info.external_jobid)
            try:
                node = self.confirm(job, job_id)
            except NixWorkflowError:
                if self._cancelled.is_set():  # keep the recipe's lock until the cancel has seen the job end
                    self._ended.wait(CANCEL_WAIT + 30)
                raise
            self.forget(outcome.info)
            prov[self.nixworkflow_backend] = {"job_id": job_id, **({"node": node} if node else {})}
            self.await_outputs(job)

        action = local.action(job, run, threading.Event(), threading.Event(), prov)
        return local.engine.realise(recipe, action, prov, force=force)

    def confirm(self, job: Any, job_id: str) -> str:
        """Before anything of a job the backend calls done is staged: ask Slurm itself that it has ended and
        completed with exit 0. The Slurm plugin also reports a job whose status it cannot read (UNKNOWN) as a
        success, which may still be running, or have failed, with a stale or partial output in the working
        directory. Other backends are believed (there is no Slurm to ask). Returns the node it ran on ("" when
        unknown), for the realisation's provenance."""
        if self.nixworkflow_backend != "slurm":
            return ""
        from nixlib.slurm import final_state, job_node

        state, exit_code = final_state(job_id, self._cancelled)
        if state != "COMPLETED" or exit_code != "0:0":
            seen = f"ended in state {state}, exit code {exit_code}" if state else "could not be confirmed to have ended"
            raise NixWorkflowError(f"rule {job.rule.name}: the Slurm plugin reported Slurm job {job_id} done, but "
                                   f"Slurm says it {seen}; its outputs were not stored (run again)")
        return job_node(job_id)

    def await_outputs(self, job: Any) -> None:
        """On a shared filesystem (NFS) a node's files can appear here later than the job's end: wait for the
        declared outputs (and benchmark file) for the user's --latency-wait, as Snakemake does after a remote job,
        before they are read and stored. A file still missing then fails the job with Snakemake's message."""
        from snakemake.io import wait_for_files

        files = [*job.output, *([job.benchmark] if job.benchmark else [])]
        self.workflow.async_run(wait_for_files(files, latency_wait=self.workflow.execution_settings.latency_wait,
                                               ignore_pipe_or_service=True))

    def report_job_submission(self, job_info: SubmittedJobInfo) -> None:
        super().report_job_submission(job_info)  # type: ignore[misc]
        if job_info.external_jobid is not None:  # in the backend until it is reported (and, if ours, confirmed)
            with self._waiting_lock:
                self._in_backend[job_info.job] = job_info

    def report_job_success(self, job_info: SubmittedJobInfo) -> None:
        self.end_leftovers()  # (on the node: the job's srun has ended)
        if self.failed_here(job_info):
            return
        if not self.claimed(job_info, failed=False):
            self.forget(job_info)
            super().report_job_success(job_info)  # type: ignore[misc]

    def report_job_error(self, job_info: SubmittedJobInfo, msg: str | None = None, **kwargs: Any) -> None:
        self.end_leftovers()
        if not self.failed_here(job_info):
            self.fail(job_info, msg, kwargs)

    def fail(self, job_info: SubmittedJobInfo, msg: str | None, kwargs: dict[str, Any]) -> None:
        if not self.claimed(job_info, failed=True, msg=msg, kwargs=kwargs):
            self.forget(job_info)
            super().report_job_error(job_info, msg=msg, **kwargs)  # type: ignore[misc]

    def failed_here(self, job_info: SubmittedJobInfo) -> bool:
        """A job never_started failed: the backend's own later report of it (cancelled) is not passed on."""
        with self._waiting_lock:
            return job_info.external_jobid is not None and str(job_info.external_jobid) in self._never_started

    async def check_active_jobs(self, active_jobs: list[SubmittedJobInfo]) -> Any:
        """The backend's status check, without the jobs never_started has failed (it is not asked about them)."""
        with self._waiting_lock:
            gone = set(self._never_started)
        async for job_info in super().check_active_jobs(  # type: ignore[misc]
                [j for j in active_jobs if str(j.external_jobid) not in gone]):
            yield job_info

    def watch_pending(self) -> None:
        """Every few seconds, one batched `squeue` over the run's jobs still in Slurm (not one query per job: with
        many queued jobs that would load slurmctld): a job pending for a reason that means it can never start as
        submitted (its partition's time limit, ...: nixlib.slurm.cannot_start) is failed (never_started). Slurm
        keeps such a job pending for ever on a cluster with the default EnforcePartLimits=NO, and the Slurm plugin
        would wait for it for ever, saying nothing."""
        from nixlib import slurm

        while not self._watch_stop.wait(PENDING_POLL):
            with self._waiting_lock:
                infos = {str(i.external_jobid): i for i in self._in_backend.values()}
            if not infos:
                continue
            try:
                for job_id, reason in slurm.pending_reasons(infos).items():
                    if slurm.cannot_start(reason) and not self._watch_stop.is_set():
                        self.never_started(infos[job_id])
            except Exception:  # noqa: BLE001 - a failed look is retried at the next one
                self.logger.debug("nixworkflow: looking at the pending Slurm jobs failed", exc_info=True)

    def never_started(self, job_info: SubmittedJobInfo) -> None:
        """Cancel a job Slurm can never start and fail it with nixlib.slurm's message (as `nw run --slurm` does),
        naming the rule and what to change in Snakemake's terms. Nothing of it is stored: the submitting thread,
        which holds the recipe's lock, gets a failure."""
        from nixlib import slurm

        job, job_id = job_info.job, str(job_info.external_jobid)
        name = job.name if job.is_group() else job.rule.name
        knobs = slurm.Knobs(time=f"`runtime` (in the rule's resources, --set-resources {name}:runtime=…, "
                                 "--default-resources or the profile)",
                            resources="its resources (the rule's resources, --set-resources, --default-resources "
                                      "or the profile)",
                            partition="another partition (`slurm_partition`)")
        why = slurm.never_starts(job_id, slurm.job_fields(job_id), knobs)
        if why is None:  # no longer pending for that reason (an administrator changed the limit)
            return
        with self._waiting_lock:
            if self._cancelled.is_set():  # the run is being cancelled: its cancel ends and fails every job
                return
            self._never_started.add(job_id)  # from now on the backend neither asks for it nor reports it
        slurm.cancel(job_id)
        kind = "group" if job.is_group() else "rule"
        self.fail(job_info, f"nixworkflow: {kind} {name} (jobid {job.jobid}): {why}. ", {})

    def forget(self, job_info: SubmittedJobInfo) -> None:
        """The backend has seen the job end: nothing to wait for on a cancel (ours are kept until confirmed)."""
        with self._waiting_lock:
            self._in_backend.pop(job_info.job, None)

    def claimed(self, job_info: SubmittedJobInfo, failed: bool, msg: str | None = None,
                kwargs: dict[str, Any] | None = None) -> bool:
        """Hand the backend's report on a job we wait for to its waiting thread (which reports it once its
        outputs are stored); False for any other job."""
        with self._waiting_lock:
            outcome = self._waiting.pop(job_info.job, None)
            if outcome is not None and failed:
                self._in_backend.pop(job_info.job, None)
        if outcome is None:
            return False
        outcome.info, outcome.failed, outcome.msg, outcome.kwargs = job_info, failed, msg, kwargs or {}
        outcome.done.set()
        return True

    def cancel(self) -> None:
        self._cancelled.set()
        super().cancel()  # type: ignore[misc]  # the backend cancels its jobs (scancel), then calls shutdown()
        self.stop_everything()

    def shutdown(self) -> None:
        if self._cancelled.is_set():  # from the backend's cancel(): its submissions are done, its polling stops
            super().shutdown()  # type: ignore[misc]
            self.stop_everything()
            return
        if self.serving is not None:
            self.serving.shutdown(wait=True)  # every job reported, its outputs stored
        self._watch_stop.set()
        super().shutdown()  # type: ignore[misc]
        self.end_leftovers()
        if self.local is not None:  # also the scheduler's local executor: its jobs' outputs stored before exit
            self.undo_local()
            self.local.shutdown()

    def stop_everything(self) -> None:
        """After a cancel: wait until no job of ours runs in Slurm any more, and only then fail the jobs we wait
        for, which releases their recipes' locks (a job may write into the working directory until Slurm has
        killed it: KillWait). Then stop the local executor, which the scheduler never cancels. Runs once."""
        with self._waiting_lock:
            if self._stopped:
                return
            self._stopped = True
        self._watch_stop.set()
        self.end_backend_jobs()
        self._ended.set()
        with self._waiting_lock:
            waiting, self._waiting = self._waiting, {}
        for job, outcome in waiting.items():
            outcome.info, outcome.failed, outcome.msg = SubmittedJobInfo(job), True, "cancelled"
            outcome.done.set()
        if self.serving is not None:  # a thread may wait for a lock another run holds: not waited for
            self.serving.shutdown(wait=False, cancel_futures=True)
        if self.local is not None:
            self.undo_local()
            self.local.cancel()

    def end_backend_jobs(self) -> None:
        """Cancel every Slurm job of this run that may still run (the backend cancelled those it was polling;
        a job whose status read UNKNOWN, or submitted while it cancelled, also goes), and wait for each to end,
        bounded as `nw run --slurm` waits (nixlib.slurm.CANCEL_WAIT)."""
        if self.nixworkflow_backend != "slurm":
            return
        from nixlib import slurm

        with self._waiting_lock:
            jobs = {str(i.external_jobid) for i in self._in_backend.values()}
            self._in_backend.clear()
        run = getattr(self, "run_uuid", None)  # the Slurm plugin names every job of a run by it
        if isinstance(run, str) and run:
            jobs.update(slurm.jobs_named(run))
        left = slurm.cancel(*sorted(jobs))
        if left:
            self.logger.warning(f"nixworkflow: Slurm jobs {', '.join(left)} had not ended "
                                f"{slurm.CANCEL_WAIT:.0f} s after scancel; check them with squeue")
