"""The executor: Snakemake's local executor, with every job going through nixlib's engine.

Design (pinned to Snakemake 9.27 / executor interface 9.4): we subclass
`snakemake.executors.local.Executor` and replace only `run_single_job`. Everything else —
thread pool, group (pipe/service) jobs, callbacks, benchmark records, Snakemake's own
`--cache`, the in-process `run_wrapper` for shell:/script: rules and a spawned Snakemake for
`run:` blocks and shadow rules — is Snakemake's, so a job behaves as with the local executor.

Per job, on a worker thread: resolve its env, build its Recipe, and ask the engine.
A hit materialises the outputs (and logs, benchmark file) from the store and the job is
reported successful without running. A miss goes through `Engine.realise` with an Action
that runs the job exactly as the local executor would (inside the env, see runtime.py), so
the engine's per-key lock, output check, ingest and realisation record apply unchanged.
A job Snakemake forces runs and replaces its record; a hit that cannot stand in for the job (a
checkpoint that wrote undeclared files, a symlink output that would dangle) runs too. What this
relies on in Snakemake's internals is in internals.py.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures as cf
import functools
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from snakemake.exceptions import SpawnedJobError, WorkflowError
from snakemake.executors.local import Executor as LocalExecutor
from snakemake.executors.local import run_wrapper
from snakemake.iocontainers import ResourceList
from snakemake_interface_executor_plugins.settings import CommonSettings

from nixlib import faults, trees
from nixlib.engine import Engine, Result
from nixlib.env import ResolvedEnv
from nixlib.errors import NixWorkflowError, StepFailed
from nixlib.reaper import (
    StuckProcesses,
    inherited_markers,
    mark_runner_environ,
    new_marker,
    reap_leftovers,
    reap_marked,
)
from nixlib.recipe import Recipe, RunOptions
from nixlib.runner import Build, append_log, open_log
from nixlib.store import Store, copy_tree, disk_full, force_remove
from snakemake_executor_nixworkflow import internals, journal
from snakemake_executor_nixworkflow.copier import Copier
from snakemake_executor_nixworkflow.jobs import (
    BENCHMARK_PREFIX,
    LOG_PREFIX,
    RecipeBuilder,
    cacheable,
    is_flagged,
    mistyped,
    products,
    provenance,
    switch,
    unretrieved_inputs,
)
from snakemake_executor_nixworkflow.runtime import (
    Runtime,
    deployed_software,
    deployed_warning,
    load_side_car,
    sandbox_readable,
    unpinned_warning,
)
from snakemake_executor_nixworkflow.settings import STORE_SETTING, ExecutorSettings, SetupError, settings_of

common_settings = CommonSettings(
    non_local_exec=False,
    implies_no_shared_fs=False,
    job_deploy_sources=False,
    pass_envvar_declarations_to_cmd=True,
    auto_deploy_default_storage_provider=False,
)


# A hit downstream of a job that ran is restored on the scheduler's thread when it copies at most this much.
QUICK_BYTES = 64 << 20
# Most jobs looked up (their copies handed to the helper) ahead of the oldest one not yet post-processed.
WINDOW = 256
# Ready jobs in a restoring pass from which their copies go to the helper process (copier.py).
HELPER_BATCH = 48
# Link modes whose restore is a copy the helper can make (links are made in-process: nothing to copy).
HELPER_MODES = ("auto", "copy", "reflink")
Handed = tuple[str, Path, str, int]  # (object hash, destination, link mode, the helper's request id)
# A restore in progress: the hit (None: a rule without code), the copies handed out, the formatted command, and
# the job's products (computed once per job: `products` builds a Path per file), and when its restore began (the
# start of its Snakemake metadata record: `internals.write_record`).
Started = tuple[Result | None, list[Handed], str | None, dict[str, Path], float]


def export_remote_settings(s: ExecutorSettings) -> None:
    """The remote-cache options, handed to the engine the way every front door configures it: the
    NIX_WORKFLOW_* variables (an option given on the command line or in a profile wins over the environment)."""
    for var, value in (("NIX_WORKFLOW_REMOTE", s.remote), ("NIX_WORKFLOW_TRUSTED_KEYS", s.trusted_keys),
                       ("NIX_WORKFLOW_SECRET_KEY_FILE", s.secret_key_file and Path(s.secret_key_file).absolute()),
                       ("NIX_WORKFLOW_PUSH", "1" if s.push else None)):
        if value:
            os.environ[var] = str(value)


class NixWorkflowJobError(WorkflowError):
    """A job failed for a reason nixworkflow knows (env, missing output, store): reported as a rule error.
    Snakemake's report names the rule and its line in the Snakefile (mapped from the compiled Snakefile's line);
    WorkflowError's own `(rule, line, file)` suffix would repeat them with the compiled line, which is wrong."""

    def __init__(self, message: str, rule: Any = None) -> None:
        super().__init__(message)
        if rule is not None:
            self.rule, self.lineno, self.snakefile = rule, rule.lineno, rule.snakefile


class Unstored(NixWorkflowError):
    """A job that ran, whose products are not stored: Snakemake's post-processing would fail it (see
    `Executor.failing_checks`). The job itself is Snakemake's to judge, as with the local executor."""


def unrestore(produced: Mapping[str, Path]) -> None:
    """Remove the products of a job whose restore was interrupted (Ctrl-C) before Snakemake recorded it
    finished: left in place, they would be taken for up to date with no metadata record (so a later edit of
    the rule's code would not re-run it), where the local executor leaves a file it wrote either recorded or
    marked incomplete. They are whole store objects, so the next run simply restores them again."""
    for path in produced.values():
        try:
            trees.remove(path)
        except OSError:
            pass


class Executor(LocalExecutor):
    """`snakemake --executor nixworkflow`: pinned envs, lineage and a content-addressed cache per job."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # Every job process Snakemake starts from now on carries this marker: it dies with this executor, and a
        # cancelled run stops them all by it (`stop_jobs`).
        self.marker = mark_runner_environ()
        self.cancelling = threading.Event()  # set by `cancel`: no job that is still running from then on is stored
        self.settings: ExecutorSettings = settings_of(self.workflow)  # a backend keeps them apart from its own
        s = self.settings
        if s.store is not None:  # nixlib.env keeps its evaluation cache and GC roots under the same root
            os.environ["NIX_WORKFLOW_STORE"] = str(Path(s.store).absolute())
        export_remote_settings(s)
        forced = RunOptions(pure=s.pure, sandbox=s.sandbox, network=True if s.network else None)
        try:
            self.store = Store(s.store, setting=STORE_SETTING)  # (its errors name Snakemake's option)
            self.engine = Engine(self.store)
            if s.link_mode == "reflink":
                self.check_reflinks()
            config = load_side_car(s.config, Path(self.workflow.main_snakefile).parent)
            self.runtime = Runtime(config, s.env, forced, os.getcwd(), self.store.root,
                                   tuple(sorted(self.workflow.envvars)))
            if self.sandboxing():
                self.runtime.readable = sandbox_readable(
                    os.getcwd(), [str(self.workflow.main_snakefile), *{str(r.snakefile) for r in self.workflow.rules}],
                    sorted({str(f) for job in self.dag.jobs for f in job.input}))
            self.check_envs()
        except NixWorkflowError as e:
            raise SetupError(f"nixworkflow: {e}") from None
        self.recipes = RecipeBuilder(self.workflow, self.store.memo)
        # Engine calls run here: each holds a running job, then (briefly) the storing of its products.
        self.storing = cf.ThreadPoolExecutor(max_workers=2 * self.workers, thread_name_prefix="nixworkflow-store")
        methods = self.workflow.deployment_settings.deployment_method
        if self.host_rules:
            self.logger.warning(unpinned_warning(config is not None, self.host_rules, methods))
        if self.deployed_rules:
            self.logger.warning(deployed_warning(self.deployed_rules, methods))
        journal.attach(self)  # nw view: this run's jobs and their states, live (journal.py)
        self.copier = Copier()  # copies of restored outputs, made by a helper process (started on first use)
        internals.remember_incomplete(self.workflow, self.dag)
        self.unservable: set[Any] = set()  # jobs whose hit was found unfit to serve here (warned once): they run
        # What every job handed to this executor declares: a finished checkpoint leaves the DAG once Snakemake
        # re-evaluates it, while the files it wrote may still appear in another checkpoint's walk (`declared`).
        self.handed: set[str] = set()
        self.unkeyed_rules: set[str] = set()  # rules reading a storage input with retrieve=False (warned once)
        self.upfront = self.restore_upfront()

    def check_reflinks(self) -> None:
        """--nixworkflow-link-mode reflink where the store and the working directory cannot share blocks fails
        before any job: fresh outputs are stored as copies either way, so it would fail only every restore."""
        try:
            scratch = self.store.new_tmp("reflink")
            try:
                if trees.can_reflink(scratch, os.getcwd()):
                    return
            finally:
                force_remove(scratch)
        except OSError as e:  # (a full disk, a read-only working directory: the trial files cannot be written)
            raise NixWorkflowError(f"--nixworkflow-link-mode reflink: cannot try a reflink from the store "
                                   f"{self.store.root} to the working directory {os.getcwd()}: {e.strerror or e}"
                                   ) from None
        raise NixWorkflowError(
            f"--nixworkflow-link-mode reflink: the store {self.store.root} and the working directory {os.getcwd()} "
            "cannot share blocks (a reflink needs both on one filesystem that supports it, such as Btrfs or XFS); "
            "use --nixworkflow-link-mode auto, which reflinks where it can and copies otherwise")

    # ---- cached jobs, outside the scheduler's per-job cycle ---------------------------------

    def restore_upfront(self) -> int:
        """Restore every job the store can serve before Snakemake's scheduler starts, and finish it in the
        DAG as the scheduler would: such a job skips Snakemake's per-job cycle (a job-selection round,
        prepare, post-processing, a rate-limiter round), which is what a cached re-run otherwise costs.
        Only what the scheduler would run is considered (the DAG's needrun jobs: params changes and
        `--rerun-triggers` are Snakemake's), in dependency order as jobs become ready; forced jobs,
        checkpoints, shadow and group jobs and every miss are left to the scheduler, unchanged. From then on,
        each job the scheduler finishes is followed by the same pass over the dependants it made ready
        (`restore_after`): a job downstream of one that ran is restored there when its inputs' new content
        and its recipe resolve to a stored result, without entering the scheduler's cycle either."""
        self._tried: set[Any] = set()  # jobs looked up once: a miss is the scheduler's, not looked up again here
        if self.settings.no_cache or self.workflow.dryrun or self.workflow.touch:
            return 0
        try:
            finished = self.workflow.async_run(self._restore_ready())
        except KeyboardInterrupt:  # Ctrl-C before Snakemake's scheduler (which reports it itself) has started
            raise SetupError("nixworkflow: interrupted while restoring cached jobs from the store, before any job "
                             "ran; each output is restored whole or not at all, and the next run restores the "
                             "rest") from None
        restored = sum(not job.is_norun for job in finished)
        if restored:
            self.logger.info(f"nixworkflow: {restored} job(s) restored from the store before scheduling")
        if self.copier.made:
            self.logger.debug(f"nixworkflow: {self.copier.made} output(s) copied back by the helper process")
        internals.after_finish(self.dag, self.restore_after)
        return len(finished)

    async def restore_after(self, job: Any) -> None:
        """Called by the DAG each time the scheduler has finished `job` (its outputs final, post-processed),
        before the scheduler's next selection: restore, in one pass, the dependants it made ready that are
        now hits (their keys need `job`'s outputs, which exist only now). This runs on the scheduler's thread
        while other jobs may be running, so only hits with little to copy are restored here (`quick`); a
        larger one is restored by the scheduler's path, on a worker thread, as before."""
        try:
            finished = await self._restore_ready(quick=True, after=job)
        except Exception as e:  # noqa: BLE001 - never break Snakemake's bookkeeping: the scheduler runs them
            self.logger.debug(f"nixworkflow: dependants of rule {job.rule.name} left to the scheduler: {e}")
            return
        if finished:
            internals.count_finished(getattr(self.workflow, "scheduler", None), len(finished), show=True)

    async def _restore_ready(self, quick: bool = False, after: Any = None) -> list[Any]:
        """Restore and finish every ready job the store can serve, until no newly ready job is a hit. After a
        finished job (`after`), only its dependants and theirs are candidates (the scheduler calls this for
        every job it finishes: a scan of all ready jobs each time would be quadratic), except after a
        checkpoint, whose completion can add jobs to the DAG."""
        finished: list[Any] = []
        fresh = None if after is None or internals.is_checkpoint(after) else internals.dependants(self.dag, after)
        while True:
            candidates = internals.ready_jobs(self.dag) if fresh is None else fresh
            batch = [job for job in dict.fromkeys(candidates)
                     if job not in self._tried and internals.is_ready(self.dag, job)]
            if not batch:
                return finished
            self._tried.update(batch)
            done = await self._restore_batch(batch, quick)
            finished += done
            if fresh is not None:
                fresh = [j for job in done for j in internals.dependants(self.dag, job)]

    async def _restore_batch(self, batch: list[Any], quick: bool) -> list[Any]:
        """Restore and finish the hits among `batch`, ready jobs (none reads what another writes), pipelined:
        each hit's copies go to the copying helper (copier.py) as soon as its key is found in the store, and
        jobs are post-processed in order as soon as their copies are done; until then the next jobs are
        looked up (at most WINDOW ahead), so the lookups overlap the helper's start-up and copies. A batch of
        fewer than HELPER_BATCH jobs is copied in-process: starting the helper (a Python process, tens of
        milliseconds) would cost it more than it saves. Each job's one-line report is logged with the others'
        in one record (one call to Snakemake's logging per batch, not per job). Every copy handed out is
        waited for before this returns, whatever happens: a job left to the scheduler is never written to by
        the helper while it runs."""
        done: list[Any] = []
        pending: collections.deque[tuple[Any, Started]] = collections.deque()
        lines: list[str] = []
        batch = await self.retrieved(batch, quick)
        copier = self.copier if len(batch) >= HELPER_BATCH else None
        try:
            for job in batch:
                started = await self._begin(job, quick, copier)
                if started is not None:
                    pending.append((job, started))
                while pending and (len(pending) > WINDOW or self.copied(pending[0][1])):
                    job_, started_ = pending.popleft()
                    if await self._complete(job_, started_, lines):
                        done.append(job_)
            while pending:
                job_, started_ = pending.popleft()
                if await self._complete(job_, started_, lines):
                    done.append(job_)
        finally:
            for _, (_, handed, _, produced, _) in pending:  # only when interrupted: none was finished
                self.await_copies(handed, settle=False)
                unrestore(produced)
            if lines:
                self.logger.info("\n".join(lines))
        return done

    async def _begin(self, job: Any, quick: bool, copier: Copier | None) -> Started | None:
        """Look one ready job up and start restoring it: (its result, the copies handed to the helper), or
        None (the scheduler handles it) for anything but a plain hit."""
        if job.is_group() or job.is_shadow or internals.is_checkpoint(job) or internals.forced(self.dag, job) \
                or internals.snakemake_cached(self.workflow, job):
            return None
        if job.is_norun:  # e.g. `rule all` once everything it asks for is there: nothing runs
            return None if job.output or job.log else (None, [], None, {}, time.time())
        began = time.time()
        try:
            await internals.reevaluate(job)
            if not cacheable(job):
                return None
            produced = products(job, self.recipes.where)
            self.handed.update(declared_names(produced))
            previous = self.engine.lookup(self.recipes.recipe(job, *self.env_of(job), produced=produced))
            formatted, shellcmd = self.recipes.last_shellcmd
            if previous is None or not self.servable(job, previous):
                return None
            if quick and not self.quick(job, previous, produced):
                return None
            await internals.prepare_upfront(job)
            handed = self.start_copies(job, previous, copier, produced)
            return previous, handed, shellcmd if formatted is job else None, produced, began
        except Exception as e:  # noqa: BLE001 - any trouble: the scheduler's path reports it properly
            self._left(job, e)
            return None

    async def retrieved(self, batch: list[Any], quick: bool) -> list[Any]:
        """The jobs of `batch` to look up, their storage-plugin inputs (`storage.s3(...)`,
        `--default-storage-provider`) brought up to date in `.snakemake/storage/` first, as Snakemake's scheduler
        does for the jobs it is about to run (all at once: whether a file may be fetched on demand depends on how
        many jobs read it). A job's key is computed from those local copies, and one kept from an earlier run
        (`--keep-storage-local-copies`, `keep_local=True`) may be older than the object in storage: keying it would
        restore the result of the old bytes. Jobs with storage inputs are left to the scheduler's path (which
        retrieves, then looks them up) on the scheduler's thread (`quick`), where a download must not stall the
        run, and when the retrieval fails (the scheduler then reports it)."""
        remote = [job for job in batch if any(f.is_storage for f in job.input)]
        if not remote:
            return batch
        if not quick:
            try:
                await self.dag.retrieve_storage_inputs(jobs=remote, also_missing_internal=True)
                return batch
            except Exception as e:  # noqa: BLE001 - the scheduler's path retrieves again and reports it
                self.logger.debug(f"nixworkflow: jobs with storage inputs left to the scheduler: {e}")
        left = set(remote)
        return [job for job in batch if job not in left]

    def unkeyable(self, job: Any) -> bool:
        """Whether the job reads a storage input it declares with `retrieve=False` (it reads the object from
        storage itself): its bytes are never here to key, and keying its name alone would serve the result of
        an object since changed. Such a job runs as with the local executor, and nothing of it is stored;
        said once per rule."""
        names = unretrieved_inputs(job)
        if names and job.rule.name not in self.unkeyed_rules:
            self.unkeyed_rules.add(job.rule.name)
            self.logger.warning(f"nixworkflow: rule {job.rule.name} reads {', '.join(names)} from storage itself "
                                "(retrieve=False), so its content cannot be keyed: its jobs run as with the local "
                                "executor and are not stored (drop retrieve=False to cache them)")
        return bool(names)

    async def _complete(self, job: Any, started: Started, lines: list[str]) -> bool:
        """Finish a job `_begin` started: its outputs in place, Snakemake's post-processing, the DAG update."""
        result, handed, shellcmd, produced, began = started
        reported = len(lines)
        try:
            if result is not None:
                self.await_copies(handed)
                line = self.settle(job, result, produced)
                if line is None:
                    return False
                lines.append(line)
            elif job.is_norun:  # (a restored job has its one line instead)
                await internals.reevaluate(job)  # (its resources, which it prints, may read input sizes)
                job.log_info()  # (as the scheduler prints a job it starts: internals.log_finished)
            await faults.suspend("restore-settled")  # (tests: a Ctrl-C between the outputs and their record)
            await internals.postprocess_upfront(job, shellcmd, began)
        except Exception as e:  # noqa: BLE001 - e.g. a failed output check: reported by the scheduler's path
            self._left(job, e)
            return False
        except BaseException:  # Ctrl-C (cancelled): without its metadata record the job is not finished
            del lines[reported:]
            unrestore(produced)
            raise
        await internals.mark_finished(self.dag, job)
        if result is None and job.is_norun:
            internals.log_finished(job)
        return True

    def _left(self, job: Any, why: Any) -> None:
        self.logger.debug(f"nixworkflow: rule {job.rule.name} (jobid {job.jobid}) left to the scheduler: {why}")

    def quick(self, job: Any, result: Result, produced: dict[str, Path]) -> bool:
        """Whether restoring `result` copies at most QUICK_BYTES (links copy nothing)."""
        budget = QUICK_BYTES
        for name, path in produced.items():
            h = result.outputs.get(name)
            if h is not None and self.link_mode(job, path) not in ("hardlink", "symlink"):
                budget -= tree_bytes(self.store.object_path(h), budget + 1)
                if budget < 0:
                    return False
        return True

    def get_python_executable(self) -> str:
        """Spawned jobs start through `jobexec`, which imports Snakemake's plugins with host tools reachable
        (a pure env's PATH has none, and some plugins run `which` at import) before the job's own code runs."""
        return f"{super().get_python_executable()} -m snakemake_executor_nixworkflow.jobexec"

    def run_jobs(self, jobs: list[Any]) -> None:
        """Count the jobs restored up front in Snakemake's progress once the scheduler exists."""
        if self.upfront:
            internals.count_finished(getattr(self.workflow, "scheduler", None), self.upfront)
            self.upfront = 0
        super().run_jobs(jobs)

    def sandboxing(self) -> bool:
        """Whether any job may run in the sandbox (`--nixworkflow-sandbox`, or an env with `sandbox: true`)."""
        config = self.runtime.config
        names = [None, *(config.envs if config is not None else ())]
        return any(self.runtime.options(name).sandbox for name in names)

    def check_envs(self) -> None:
        """Fail before any job runs if a rule of this run names an env the config does not define, or gives
        `nix_cache`/`nix_resumable` a value that is no switch. Only literal values are checked here: a resource
        function is evaluated by Snakemake when its job is about to run (its upstream files may not exist yet), and
        an unknown env or a bad switch then fails that job.
        Notes in `host_rules` the rules of this run whose env is the host's tools (not pinned: warned once)."""
        names: dict[str | None, str] = {self.runtime.default_env: "the default env"}
        chosen: dict[Any, str | None] = {}  # rule -> its env, for rules with code whose env is known now
        for job in self.dag.needrun_jobs():
            for j in (job if job.is_group() else [job]):
                for resource in ("nix_cache", "nix_resumable"):  # (a typo'd switch: refused before any job runs)
                    switch(j.rule.name, resource, internals.static_resource(j.rule, resource), default=False)
                literal = internals.static_resource(j.rule, "nix_env")
                name = self.runtime.choose(literal, j.rule.name)
                names.setdefault(name, f"rule {j.rule.name}")
                dynamic = literal is None and internals.computed_resource(j.rule, "nix_env")
                if not (j.is_norun or dynamic):
                    chosen.setdefault(j.rule, name)
        for name, who in names.items():
            try:
                self.runtime.spec(name)
            except NixWorkflowError as e:
                raise NixWorkflowError(f"{who} asks for env '{name}': {e}") from None
        self.host_rules = sorted((r for r, name in chosen.items() if self.runtime.is_host(name)), key=lambda r: r.name)
        methods = self.workflow.deployment_settings.deployment_method
        self.deployed_rules = sorted((r for r in chosen if deployed_software(r, methods)), key=lambda r: r.name)

    # ---- scheduling ---------------------------------------------------------------------

    def run_single_job(self, job: Any):
        """Prepare in-process jobs on the scheduler thread as the local executor does; run on the pool."""
        in_process = self.use_threads or (not job.is_shadow and not job.is_run) or job.is_template_engine
        args = self.job_args_and_prepare(job) if in_process else None
        return self.pool.submit(self.execute, job, args)

    def execute(self, job: Any, args: tuple | None) -> None:
        """Serve the job from the store or run it once in its env and store what it produced."""
        self.handed.update(declared_names(products(job, self.recipes.where)))
        unshare_benchmark(job)
        if job.is_norun:  # e.g. `rule all`: nothing runs, no env needed
            if args is None:  # a shadow rule without code: spawned, as the local executor does
                self.cached_or_run(job, self.spawn_job, job)
            else:
                self.cached_or_run(job, run_wrapper, *args)
            return
        try:
            self.refuse_cancelled(job)  # (a job the pool starts after Ctrl-C)
            env, options = self.env_of(job)
            run = self.runner(job, args, env, options)
            if self.settings.no_cache or self.unkeyable(job) or not cacheable(job):
                run()
                return
            self.realise(job, self.recipes.recipe(job, env, options), run)
        except NixWorkflowError as e:
            raise NixWorkflowJobError(str(e), rule=job.rule) from None

    def env_of(self, job: Any) -> tuple[ResolvedEnv, RunOptions]:
        """The job's resolved env and its run options (with `$state` when the rule asks for resume)."""
        name = self.runtime.env_name(job)
        return self.runtime.resolve(name), with_resumable(job, self.runtime.options(name))

    def realise(self, job: Any, recipe: Recipe, run: Callable[[], None]) -> None:
        """Hand the job to the engine; return as soon as its outcome is known to Snakemake.

        The engine runs on a storing thread. A hit (possibly built by another process while we waited
        for the recipe's lock) is restored here. On a miss the Action runs the job and stages copies of
        its products; from then on the job is done for Snakemake (its core is free for the next job)
        while the engine, still holding the recipe's lock, seals, hashes and records the staged copies.
        A failure to store after that is a warning, never a failed job: the store is a cache.

        A job Snakemake forces (`--forceall`, `-R`, `--forcerun`, `-f`) always runs; its result replaces
        the recorded one, and a different result is reported as non-determinism. So does a hit that cannot
        be served as it is (see `restore`)."""
        force = internals.forced(self.dag, job)
        previous = self.engine.lookup(recipe)  # the common case of a re-run, answered without a thread hop
        if previous is not None and not force:
            if job not in self.unservable and self.restore(job, previous):
                return
            force = True
        ran = threading.Event()
        done = threading.Event()
        prov = provenance(job, self.recipes.where)

        def store() -> Result:
            try:
                return self.engine.realise(recipe, self.action(job, run, ran, done, prov), prov, force=force)
            finally:
                done.set()

        future = self.storing.submit(store)
        done.wait()
        if ran.is_set():
            future.add_done_callback(functools.partial(self.stored, job, previous))
            return
        result = future.result()  # a hit, or the job's failure
        if result.cached and not self.restore(job, result):
            raise NixWorkflowError(f"rule {job.rule.name} (jobid {job.jobid}): the stored result of another "
                                   "process cannot be restored here; run again")

    def stored(self, job: Any, previous: Result | None, future: cf.Future) -> None:
        """After a job's products are stored: a failure is a warning; a result that differs from the one
        recorded before for the same key is reported as non-determinism, naming the files that differ."""
        error = future.exception()
        if isinstance(error, Unstored):
            self.logger.warning(f"nixworkflow: rule {job.rule.name} (jobid {job.jobid}): its outputs are not stored: "
                                f"{error}")
            return
        if error is not None:
            self.logger.warning(f"nixworkflow: rule {job.rule.name} (jobid {job.jobid}) succeeded but its outputs "
                                f"could not be stored, so it will run again next time: {error}")
            return
        result = future.result()
        old = result.previous["outputs"] if result.previous else previous.outputs if previous else None
        if old is None:
            return
        differ = differing(self.store, results_only(old), results_only(result.outputs))
        if differ:
            shown = ", ".join(differ[:10]) + (f" and {len(differ) - 10} more" if len(differ) > 10 else "")
            self.logger.warning(
                f"nixworkflow: rule {job.rule.name} (jobid {job.jobid}) is not deterministic: re-run with the same "
                f"inputs, code and env, it wrote different content to {shown} than the recorded realisation "
                f"{result.resolved_key}; the new result replaces it")

    def runner(self, job: Any, args: tuple | None, env: ResolvedEnv, options: RunOptions) -> JobRun:
        """A callable that runs the job the way the local executor would, but inside `env`, and returns once
        every process of it has ended (`run_reaped`)."""
        from snakemake.shell import shell

        if job.is_template_engine and args is not None:
            # Snakemake renders the template itself, in this process: the job starts no process, so there is
            # nothing of it to reap, and reaping by place would kill another job's process forked from this one
            # while the rendered output was open (a fork holds every descriptor until it execs).
            return JobRun(lambda _log: self.cached_or_run(job, run_wrapper, *args))
        marker = new_marker()  # carried by every process of this job alone (`job_shell`)
        if args is None:  # run: blocks and shadow rules: a Snakemake process per job, started by the env's sh
            def launch() -> None:
                wrapper = self.job_shell(job, env, options, "/bin/sh", marker)
                self.cached_or_run(job, self.spawn_in_env, job, wrapper, options.sandbox)
        else:
            base = job.resources.get("shell_exec") or shell.get_executable()
            if base and not os.path.isabs(base):
                base = shutil.which(base) or base

            def launch() -> None:
                wrapper = self.job_shell(job, env, options, base, marker)
                self.cached_or_run(job, run_wrapper, *with_shell_exec(args, job.resources, wrapper))
        return JobRun(functools.partial(self.run_reaped, job, marker, launch))

    def job_shell(self, job: Any, env: ResolvedEnv, options: RunOptions, base: str | None, marker: str) -> str:
        """The job's own wrapper of its shell (its `shell_exec`): Snakemake's shell() takes its environment from
        the process-wide os.environ, shared by the jobs' threads, so only the shell it runs can give a job a
        variable of its own: the job's reaper marker (beside the run's, which stays for Ctrl-C), and for a
        resumable job its `$state` link (see `link_state`). Costs one exec of sh per job, env or not."""
        exports = {marker: "1"}
        if options.resumable:
            exports["state"] = str(job_dir(job) / "state")
        return self.runtime.shell(env, options, base, job_dir(job), exports, tuple(inherited_markers(os.environ)))

    def run_reaped(self, job: Any, marker: str, launch: Callable[[], None], log: Path | None = None) -> None:
        """Run the job, then kill what it left running (a `cmd &`, a `setsid` daemon) before its outputs are
        staged or stored, as `nw run` does for a step: such a process would go on writing into the outputs, or,
        hard-linked, into the stored object. The job still succeeds, as with `nw run`, with a note in `log` and
        on the console; processes that survive SIGKILL fail it, and nothing of it is stored."""
        try:
            launch()
        finally:
            self.end_leftovers(job, marker, log)

    def end_leftovers(self, job: Any, marker: str, log: Path | None) -> None:
        """Kill every process that carries the job's marker (`run_reaped`), or that still holds open, maps or works
        in one of the job's outputs (one that cleared its environment carries no marker): reaper.reap_leftovers."""
        try:
            killed = reap_leftovers(marker, job_places(job))
        except StuckProcesses as e:
            raise NixWorkflowError(f"rule {job.rule.name} (jobid {job.jobid}): processes it started ({e}) did not end "
                                   "after SIGKILL (stuck in the kernel?), so its outputs were not stored") from None
        if not killed:
            return
        note = (f"nixworkflow: rule {job.rule.name} (jobid {job.jobid}): killed {killed} process(es) the job "
                "left running when its command exited; a job ends when all of its processes end: wait for background "
                "jobs (`wait`) before the command ends")
        self.logger.warning(note)
        if log is not None:
            with append_log(log) as f:
                f.write(note + "\n")

    def spawn_in_env(self, job: Any, wrapper: str, sandbox: bool = False) -> None:
        """Start the job's own Snakemake process through the env's shell. In the sandbox, where nothing of the
        home directory is writable, it keeps its runtime source cache (copies of the Snakefiles it parses,
        under ~/.cache for this process) in the sandbox's scratch directory instead."""
        command = self.format_job_exec(job)
        if sandbox:
            cache = str(self.workflow.sourcecache.runtime_cache_path)
            command = command.replace(cache, str(self.runtime.scratch("source-cache")))
        try:
            subprocess.check_call(command, shell=True, executable=wrapper)
        except subprocess.CalledProcessError:
            raise SpawnedJobError() from None

    # ---- the engine's side --------------------------------------------------------------

    def action(self, job: Any, run: Callable[[], None], ran: threading.Event, done: threading.Event,
               prov: dict[str, Any]) -> Callable[[Build, str], Mapping[str, Path]]:
        """The engine Action of a job: run it in the working directory, stage its products in the build's
        scratch space (copies, or hard links with --nixworkflow-link-mode hardlink) and signal `done`.
        Hard-linked products keep Snakemake waiting until they are stored: its post-processing touches a
        finished job's outputs, and a touch of an inode the store is still hashing is a change under the
        object's name (the store quarantines it, and the output is not stored).
        For a checkpoint, files it writes without declaring them are noted in `prov` (recorded with the
        realisation): such a checkpoint cannot be restored, since Snakemake's DAG is re-evaluated from it."""

        def act(build: Build, command: str) -> Mapping[str, Path]:
            self.refuse_cancelled(job)
            self.start_log(job, build, command)
            link_state(job, build.state)
            workdir, skip = self.recipes.where.workdir, str(self.store.root)
            before = tree_state(workdir, skip) if internals.is_checkpoint(job) else None
            if isinstance(run, JobRun):
                run.log = build.log  # what it kills is noted in the job's log
            run()  # (returns once every process of the job has ended: `run_reaped`)
            self.refuse_cancelled(job)  # its processes were killed by `cancel`, whatever their exit said
            if before is not None:
                extra = undeclared(before, tree_state(workdir, skip), self.declared())
                if extra:
                    prov["undeclared_writes"] = extra[:20]
            self.finish_products(job)
            produced = products(job, self.recipes.where)
            missing = [name for name, path in produced.items() if not os.path.lexists(path)]
            if missing:
                raise StepFailed(job.rule.name, "its command succeeded but did not create the declared output(s) "
                                 + ", ".join(missing))
            why = self.failing_checks(job)
            if why:  # Snakemake's post-processing decides whether the job failed; the store keeps nothing of it
                ran.set()
                done.set()
                raise Unstored(why)
            try:
                staged = {name: self.stage(job, path, build.tmp / f"product-{i}", build.linked)
                          for i, (name, path) in enumerate(produced.items())}
            except OSError as e:
                if disk_full(e, job.rule.name, self.store.root) is not None:
                    ran.set()  # the job succeeded, only storing failed (the store is full): a warning, outputs kept
                    done.set()
                raise
            ran.set()
            if not build.linked:  # (else `store` sets `done` once the store has the objects: see below)
                done.set()  # Snakemake's part is over; what follows happens while its next job runs
            with append_log(build.log) as log:
                log.write("ended: its command succeeded\n")
            return staged

        return act

    def start_log(self, job: Any, build: Build, command: str) -> None:
        """The job's log in the store (`logs/<key>.log`, what `nw view` and `nw log` show), written as the job
        starts, so a running job shows what runs and where its output goes. Its output itself goes to Snakemake's
        console and the rule's `log:` files, as with the local executor (Snakemake's shell() writes there)."""
        logs = ", ".join(str(f) for f in job.log)
        with open_log(build.log) as log:
            log.write((f"snakemake job {job.jobid} (rule {job.rule.name}) in {self.recipes.where.workdir}\n"
                       f"$ {job.shellcmd if job.rule.shellcmd is not None else command}\n"
                       "(its output goes to Snakemake's console"
                       + (f" and the rule's log files: {logs})\n" if logs else ")\n")).encode())

    def refuse_cancelled(self, job: Any) -> None:
        """Fail a job the run was cancelled around (Ctrl-C): it is not stored, whatever its processes did."""
        if self.cancelling.is_set():
            raise NixWorkflowError(f"rule {job.rule.name} (jobid {job.jobid}) was cancelled on user request (Ctrl-C) "
                                   "before it ended; nothing of it was stored, and the next run runs it again")

    def failing_checks(self, job: Any) -> str | None:
        """Why Snakemake's post-processing of this finished job (dag.check_and_touch_output) may fail it, or None.
        Its products are then not stored: the job is left to Snakemake, which fails it as the local executor does
        (or not, if a link's target appears within --latency-wait, or its touch of the outputs comes late
        enough: a run that is not stored either way). An output or benchmark file that is a symbolic link whose
        target does not exist is missing to Snakemake; an input modified later than now is newer than the
        outputs Snakemake is about to touch (its clock-skew check); an output of the wrong type (a directory where
        a file is declared, or a file where `directory()` is) is Snakemake's ImproperOutputException."""
        wrong = mistyped(job)
        if wrong:
            return "its output " + ", ".join(wrong) + " is of the wrong type (a directory where a file is declared, " \
                "or the other way round), which fails the job"
        files = [*job.output, *([job.benchmark] if job.benchmark else [])]
        dangling = [f"{f} (a link to {os.readlink(f)}, which does not exist)" for f in files
                    if os.path.islink(f) and not os.path.exists(f)]
        if dangling:
            return ("its output " + ", ".join(dangling) + " is missing to Snakemake, which fails the job unless the "
                    "link's target appears within --latency-wait")
        now = time.time()

        async def newest() -> tuple[float, str] | None:
            found = [((await f.mtime_uncached(skip_storage=True)).local(), str(f)) for f in job.input
                     if await f.exists_local()]
            return max(found) if found else None

        latest = self.workflow.async_run(newest()) if job.input else None
        if latest is not None and latest[0] > now:
            return (f"its input {latest[1]} was modified later than now (clock skew?), so its outputs are older than "
                    "that input and Snakemake fails the job")
        return None

    def stage(self, job: Any, path: Path, staged: Path, linked: set[Path]) -> Path:
        """A private copy of a product that the engine moves into the store: Snakemake may delete (temp)
        or change (touch, protect) the working-directory file before the store is done with it. In hardlink
        mode, a hard link instead (added to `linked`): the working-directory file becomes the read-only store
        object, as that mode promises (a file linked anywhere else too is still copied by the store)."""
        if self.link_mode(job, path) == "hardlink":
            try:
                copy_tree(path, staged, writable=True, link="hardlink")
                linked.add(staged)
                return staged
            except OSError:  # another filesystem: copy
                force_remove(staged)
        copy_tree(path, staged, writable=True)
        return staged

    def finish_products(self, job: Any) -> None:
        """What Snakemake's post-processing would add anyway, done before the products are stored so the
        stored objects equal the working-directory files: empty logs, `touch()` outputs, the timestamp
        file of directory outputs. `ensure()` checks run here so a bad output is never stored."""
        for f in job.log:
            if not os.path.exists(f):
                f.touch_or_create()
        for f in job.output:
            if f in job.touch_output and not os.path.exists(f):
                f.touch_or_create()
            stamp = os.path.join(f, internals.TIMESTAMP)
            if f.is_directory and internals.carries_timestamp(f) and not os.path.lexists(stamp):
                open(stamp, "w").close()
        ensured = [f for f in job.output if is_flagged(f, "ensure")]
        if ensured:
            self.workflow.async_run(self.dag.handle_ensure(job, ensured))

    def declared(self) -> set[str]:
        """Every file the DAG's jobs declare (outputs, logs, benchmarks), as working-directory-relative names:
        what a checkpoint may see appear while it runs without it being an undeclared write of its own; with
        those of every job handed to this executor: a checkpoint that finished while this one ran (two samples'
        checkpoints at once) has left the DAG, which Snakemake re-evaluated from what it wrote."""
        where = self.recipes.where
        return {name for j in list(self.dag.jobs) for name in declared_names(products(j, where))} | self.handed

    def link_mode(self, job: Any, path: Path) -> str:
        """How a product is shared with the store. Protected outputs are always copies: Snakemake's
        protect() chmods through symlinks and gives every file of a directory the directory's mode,
        which would change a shared store object (its executable bits are part of its hash). So are the
        local copies of storage-plugin outputs (`.snakemake/storage/...`, uploaded then usually deleted): an
        upload follows a link, and the fs plugin's rsync gives the object the store file's read-only mode and
        its old mtime (older than the job's inputs: every later run would run the job again)."""
        mode = self.settings.link_mode
        if mode in ("hardlink", "symlink") and (str(path) in {str(f) for f in job.protected_output}
                                                or str(path) in storage_outputs(job)):
            return "copy"
        return mode

    def restore(self, job: Any, result: Result) -> bool:
        """Put a cached job's products back into the working directory; False (nothing left behind) when
        the result cannot stand in for running the job (see `servable` and `put_back`)."""
        return self.servable(job, result) and self.put_back(job, result)

    def servable(self, job: Any, result: Result) -> bool:
        """False for a checkpoint that wrote files it did not declare (they are not in the store). Only a
        checkpoint's record is read for them: Snakemake re-reads the DAG from what a checkpoint wrote, while any
        other job's undeclared files are never restored (docs/snakemake.md), and a hit's full record is read
        only when needed (nixlib.hits.LazyRecord), which a cached run then never does."""
        if not internals.is_checkpoint(job):
            return True
        extra = ((result.record or {}).get("provenance") or {}).get("undeclared_writes")
        if extra:
            self.unservable.add(job)
            self.logger.warning(f"nixworkflow: checkpoint {job.rule.name} writes files it does not declare "
                                f"({', '.join(map(str, extra[:3]))}...), which the store cannot restore: it runs "
                                "again (declare them, e.g. as a directory() output, to restore it)")
            return False
        return True

    def put_back(self, job: Any, result: Result) -> bool:
        """Materialise a hit's products (thread-safe: the scheduler's path calls it on worker threads); False,
        with nothing left behind, when a restored symlink output would dangle here."""
        produced = products(job, self.recipes.where)
        self.start_copies(job, result, None, produced)
        line = self.settle(job, result, produced)
        if line is not None:
            self.logger.info(line)
        return line is not None

    def start_copies(self, job: Any, result: Result, copier: Copier | None, produced: dict[str, Path]) -> list[Handed]:
        """Start putting a hit's products back: copies the helper can make (copier.py: the same copy as
        `Store.materialise`) are handed to it, the rest (links, or everything without a helper) are
        materialised here. Returns what was handed out, for `await_copies`."""
        handed: list[Handed] = []
        try:
            for name, path in produced.items():
                h = result.outputs.get(name)
                if h is None:
                    continue
                mode = self.link_mode(job, path)
                ident = copier.submit(self.store.object_path(h), path, mode) \
                    if copier is not None and mode in HELPER_MODES else None
                if ident is None:
                    # A link into the store is an output link: `nw gc` must keep its object. It is rooted before
                    # it exists, so a kill between the two never leaves a link that the next run finds present and
                    # never roots, and again after (a `nw gc` meanwhile drops a root whose link is not there yet).
                    if mode == "symlink":
                        self.store.add_root(path)
                    self.store.materialise(h, path, mode=mode)
                    faults.point("restore-placed")
                    if mode == "symlink":
                        self.store.add_root(path)
                else:
                    handed.append((h, path, mode, ident))
        except BaseException:
            self.await_copies(handed, settle=False)
            raise
        return handed

    def copied(self, started: Started) -> bool:
        """Whether the helper has answered for every copy of a started restore (never blocks)."""
        return all(self.copier.done(ident) for *_, ident in started[1])

    def await_copies(self, handed: list[Handed], settle: bool = True) -> None:
        """Wait until the helper has answered for every copy handed to it; with `settle`, make here (with
        `Store.materialise`, which reports errors properly) every copy it did not make."""
        if not handed:
            return
        answers = [self.copier.wait(ident) for *_, ident in handed]
        if settle:
            for (h, path, mode, _), answer in zip(handed, answers, strict=True):
                if answer != "ok":
                    self.store.materialise(h, path, mode=mode)

    def settle(self, job: Any, result: Result, produced: dict[str, Path]) -> str | None:
        """After a hit's products are back: the line reporting it, or None (the products removed again) when
        a restored symlink, an output or inside a directory output, dangles here (the job then runs; it is noted
        in `unservable`, so the scheduler's path neither restores nor warns again). A product restored as a link
        into the store whose own relative links then resolve inside the store (a symlink output `b.txt -> a.txt`,
        a directory output holding `raw -> ../raw.txt`) is put back as a copy instead, where they resolve here."""
        def ours(name: str, path: Path) -> bool:  # a link into the store that symlink mode restored
            h = result.outputs.get(name)
            return self.settings.link_mode == "symlink" and h is not None and os.path.islink(path) \
                and os.readlink(path) == str(self.store.object_path(h))

        dangling = [link for name, p in produced.items() for link in dangling_links(str(p), ours(name, p))]
        if dangling and self.settings.link_mode == "symlink":
            for name, path in produced.items():
                if ours(name, path) and dangling_links(str(path), True):
                    self.store.materialise(result.outputs[name], path, mode="copy")
            dangling = [link for name, p in produced.items() for link in dangling_links(str(p), ours(name, p))]
        if dangling:
            self.unservable.add(job)
            for path in produced.values():
                force_remove(path)
            shown = ", ".join(dangling[:5]) + (f" and {len(dangling) - 5} more" if len(dangling) > 5 else "")
            self.logger.warning(f"nixworkflow: rule {job.rule.name} (jobid {job.jobid}): the stored output(s) "
                                f"{shown} are symlinks whose targets do not exist here: it runs again")
            return None
        return (f"nixworkflow: restored the outputs of rule {job.rule.name} (jobid {job.jobid}) "
                f"from the store, realisation {result.resolved_key}")

    def _callback(self, job_info: Any, future: Any) -> None:
        """Report our own errors like Snakemake's: the message, not the executor's stack frames."""
        error = future.exception()
        if isinstance(error, NixWorkflowJobError):
            error.__traceback__ = None
        super()._callback(job_info, future)

    def shutdown(self) -> None:
        super().shutdown()
        self.storing.shutdown(wait=True)  # outputs already produced are stored before Snakemake exits
        self.runtime.close()
        if hasattr(self, "copier"):
            self.copier.close()

    def cancel(self) -> None:
        """Snakemake's scheduler on Ctrl-C ("Terminating processes on user request"): stop every running job.
        The local executor's cancel only waits for its threads, relying on the terminal's SIGINT reaching the
        jobs' processes too (same process group); a SIGINT sent to Snakemake alone, or a job that outlives its
        shell, would run on to its end and be stored as a success. So every process of this run's jobs (found
        by the run's marker: grandchildren and processes that left the group included) is killed first; each
        running job then fails, and nothing of it is stored (`refuse_cancelled`): the engine removes its
        scratch directory and releases its lock, and Snakemake handles its outputs as for any failed job."""
        self.cancelling.set()
        self.stop_jobs()
        swept = threading.Event()
        threading.Thread(target=self.sweep, args=(swept,), daemon=True, name="nixworkflow-cancel").start()
        try:
            super().cancel()  # waits for the jobs' threads, which now fail
        finally:
            swept.set()
        self.storing.shutdown(wait=False, cancel_futures=True)
        self.runtime.close()
        if hasattr(self, "copier"):
            self.copier.close()

    def sweep(self, swept: threading.Event) -> None:
        """Kill job processes again until the jobs' threads have ended: a thread that was about to start its job's
        command when `cancel` began would otherwise start it after the first kill, and Snakemake would wait for it."""
        while not swept.wait(0.5):
            self.stop_jobs()

    def stop_jobs(self) -> None:
        """Kill every process of this run's jobs (not the copying helper, which ends with its input)."""
        helper = self.copier.pid() if hasattr(self, "copier") else None
        try:
            reap_marked(self.marker, exclude=() if helper is None else (helper,))
        except StuckProcesses as e:
            self.logger.warning(f"nixworkflow: processes {e} of this run's jobs had not ended 30 s after being "
                                "killed (uninterruptible I/O?); check them with ps before running again")


def dangling_links(path: str, restored_link: bool = False) -> list[str]:
    """The symlinks at or inside a restored product (a directory output, walked without following links) whose
    targets do not exist here: an absolute link into another checkout, say. Inside a directory too, since the
    job's consumers read through them; only the links themselves are stat'ed a second time. A product that is
    itself a link is not walked (what it points at is not the product: `ref -> /data/genome`), unless it is
    `restored_link`, the link into the store symlink mode put there, to an object that is a directory."""
    if os.path.islink(path):
        if not os.path.exists(path):
            return [path]
        if not restored_link or os.path.islink(os.readlink(path)):
            return []
    if not os.path.isdir(path):
        return []
    out: list[str] = []
    stack = [path]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    if not os.path.exists(entry.path):
                        out.append(entry.path)
                elif entry.is_dir():
                    stack.append(entry.path)
    return sorted(out)


def tree_bytes(path: Path, limit: int) -> int:
    """Bytes of the files of a file or tree, counted until more than `limit`."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_size
            if total > limit:
                return total
    return total


def tree_state(root: str, skip: str | None = None) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file under `root` except Snakemake's own `.snakemake/` and the store (`skip`), which
    may live in the working directory (`--nixworkflow-store .nw-store`): what the store writes while a checkpoint
    runs (other jobs' results, caches, logs) is not the checkpoint's doing; nor is the file Snakemake's own output
    goes to (`snakemake ... > run.log 2>&1`, `nohup.out`: this process's stdout and stderr), which grows while any
    job runs."""
    state: dict[str, tuple[int, int]] = {}
    streams = own_streams()
    inside = os.path.relpath(os.path.realpath(skip), os.path.realpath(root)) if skip else os.pardir
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root and ".snakemake" in dirnames:
            dirnames.remove(".snakemake")
        if not inside.startswith(os.pardir):
            rel = os.path.relpath(dirpath, root)
            dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel, d)) != inside]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in streams:
                state[os.path.relpath(path, root)] = (st.st_mtime_ns, st.st_size)
    return state


def own_streams() -> set[tuple[int, int]]:
    """(device, inode) of the regular files this process's stdout and stderr write to: directly (`> run.log`), or
    through the process reading them from a pipe (`snakemake ... 2>&1 | tee run.log`: the files tee writes)."""
    found = set()
    pipes = set()
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
        except OSError:  # (closed)
            continue
        if stat.S_ISREG(st.st_mode):
            found.add((st.st_dev, st.st_ino))
        elif stat.S_ISFIFO(st.st_mode):
            pipes.add(f"pipe:[{st.st_ino}]")
    return found | pipe_files(pipes) if pipes else found


def pipe_files(pipes: set[str]) -> set[tuple[int, int]]:
    """(device, inode) of the regular files open in the processes whose standard input is one of `pipes` (as
    /proc names them, `pipe:[123]`): what a `tee` reading this process's output writes. Other processes (this
    one's jobs, which inherit its stdout) do not read from it; processes of other users are not readable."""
    found: set[tuple[int, int]] = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    except OSError:  # (no /proc)
        return found
    for pid in pids:
        try:
            if os.readlink(f"/proc/{pid}/fd/0") not in pipes:
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.add((st.st_dev, st.st_ino))
    return found


def storage_outputs(job: Any) -> set[str]:
    """The local paths (in `.snakemake/storage/`) of a job's outputs and benchmark that a storage plugin uploads."""
    files = [*job.output, *([job.benchmark] if job.benchmark else [])]
    return {str(f) for f in files if getattr(f, "is_storage", False)}


def declared_names(produced: Mapping[str, Path]) -> list[str]:
    """The working-directory names of a job's products (log and benchmark files without their key prefix)."""
    return [name.split(":", 1)[-1] if name.startswith((LOG_PREFIX, BENCHMARK_PREFIX)) else name for name in produced]


def undeclared(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], declared: set[str]) -> list[str]:
    """Files created or changed between two states that are not (inside) a declared product."""
    out = []
    for path, state in sorted(after.items()):
        if before.get(path) == state or path.endswith(internals.TIMESTAMP):
            continue
        parts = path.split(os.sep)
        if not any(os.sep.join(parts[:i]) in declared for i in range(1, len(parts) + 1)):
            out.append(path)
    return out


def results_only(outputs: Mapping[str, str]) -> dict[str, str]:
    """A realisation's outputs less its log and benchmark files: those record times (a benchmark file always
    differs between two runs, a log often does), so a difference there says nothing about the rule's results and
    must not be reported as non-determinism. They are stored and restored like outputs all the same."""
    return {name: h for name, h in outputs.items() if not name.startswith((LOG_PREFIX, BENCHMARK_PREFIX))}


def differing(store: Store, old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The products (and the files inside directory products) whose content differs between two results."""
    from nixlib.diff import differing_files, file_map

    out: list[str] = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if a is None or b is None:
            out.append(name)
            continue
        try:
            inner = differing_files(file_map(store.object_path(a)), file_map(store.object_path(b)))
        except OSError:  # the old object is gone (collected, quarantined): the output as a whole
            inner = []
        out += [name if line.startswith(". (") else f"{name}/{line}" for line in inner] or [name]
    return out


def unshare_benchmark(job: Any) -> None:
    """Before a job runs: remove its benchmark file if it is a link into the store (restored in `symlink` or
    `hardlink` mode). Snakemake removes a job's old outputs and logs before it runs, but writes its benchmark file
    in place (`open(path, "w")`): through such a link, into the store object of another realisation (which the
    store then sets aside as changed; a user other than root cannot write it and the job fails), and the new
    realisation would record the link instead of the benchmark the job wrote."""
    if not job.benchmark:
        return
    path = str(job.benchmark)
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_nlink > 1):
        os.unlink(path)


class JobRun:
    """A job's run (`Executor.runner`), called without arguments; `log`, the job's log in the store when it has
    one (set by `Executor.action`), is where `run_reaped` notes the processes it killed."""

    def __init__(self, run: Callable[[Path | None], None]) -> None:
        self.run = run
        self.log: Path | None = None

    def __call__(self) -> None:
        self.run(self.log)


class ShellPath(str):
    """The wrapper's path as a `shell_exec` resource. Snakemake 9.27 writes it into the preamble of Python
    `script:` files as `shell.executable({shell_exec})`, without quotes; formatted, this path is a Python
    string literal, and it pickles (into that preamble) as a plain str."""

    def __format__(self, spec: str) -> str:
        return repr(str(self))

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (str, (str(self),))


def with_resumable(job: Any, options: RunOptions) -> RunOptions:
    """A rule asks for a persistent `$state` with the resource `nix_resumable=1` (keyed by the job's resolved
    key: a changed input starts afresh). Not with the sandbox, which would not let the job write to it."""
    if not switch(job.rule.name, "nix_resumable", job.resources.get("nix_resumable"), default=False):
        return options
    if options.sandbox:
        raise NixWorkflowError(f"rule {job.rule.name} asks for nix_resumable, which is not available inside the "
                               "sandbox for Snakemake jobs: drop nix_resumable or run this rule's env without sandbox")
    return replace(options, resumable=True)


_JOB_DIRS = Path(tempfile.mkdtemp(prefix="nixworkflow-jobs-"))
atexit.register(force_remove, _JOB_DIRS)


def job_places(job: Any) -> list[str]:
    """Where only the job's own processes work: its outputs and logs (files or directories), its shadow
    directory and its job directory, as absolute paths. Not a `pipe()` or `service()` output: the job that reads
    it runs beside this one, in its group, and holds it open."""
    outputs = [f for f in job.output if not is_flagged(f, "pipe") and not is_flagged(f, "service")]
    places = [*outputs, *job.log, *filter(None, [getattr(job, "shadow_dir", None)])]
    return [os.path.abspath(str(p)) for p in places] + [str(job_dir(job))]


def job_dir(job: Any) -> Path:
    """A directory of the job's own (its shell wrapper, its `$state` link), by job id: unique in the run."""
    return _JOB_DIRS / str(job.jobid)


def link_state(job: Any, state: Path | None) -> None:
    """Point the job's `$state` link (exported by its wrapper: `job_shell`) at the state directory the engine made
    (its path depends on the resolved key, known only then)."""
    if state is None:
        return
    link = job_dir(job) / "state"
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(".state.tmp")
    force_remove(tmp)
    os.symlink(state, tmp)
    os.replace(tmp, link)


def with_shell_exec(args: tuple, resources: ResourceList, wrapper: str) -> list:
    """`run_wrapper`'s arguments with the job's resources replaced by a copy whose `shell_exec` is `wrapper`."""
    copy = ResourceList(fromdict={**dict(resources.items()), "shell_exec": ShellPath(wrapper)})
    out = list(args)
    index = next(i for i, a in enumerate(out) if a is resources)
    out[index] = copy
    return out
