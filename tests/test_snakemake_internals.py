"""One test per assumption snakemake_executor_nixworkflow/internals.py makes about Snakemake's internals:
a Snakemake release that changes one fails here by name (the CLI tests show the behaviour end to end)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from snakemake_executor_nixworkflow import internals

pytest.importorskip("snakemake")


def test_static_resource_reads_literals_and_leaves_functions_unevaluated() -> None:
    from snakemake.resources import Resources

    calls = []
    resources = Resources.from_mapping({"nix_env": "train", "test": lambda wc: calls.append(wc) or 1})
    rule = SimpleNamespace(resources=resources)
    assert internals.static_resource(rule, "nix_env") == "train"
    assert internals.static_resource(rule, "test") is None
    assert internals.static_resource(rule, "absent") is None
    assert calls == [], "a resource function must not be evaluated at start-up"


def test_snakemake_keeps_a_directory_symlinks_mtime_on_the_link(tmp_path: Path) -> None:
    """Snakemake's own touch of a directory() output that is a symlink writes nothing through the link."""
    from snakemake.io import IOFile, directory

    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    f = IOFile(str(directory(str(link))))
    f.flags["directory"] = True
    f.touch()
    assert os.listdir(target) == []
    assert not internals.carries_timestamp(str(link))
    assert internals.carries_timestamp(str(target))


def test_forced_reads_the_dags_reason() -> None:
    from snakemake.jobs import Reason

    reason = Reason()
    dag = SimpleNamespace(reason=lambda job: reason)
    assert internals.forced(dag, object()) is False
    reason.forced = True
    assert internals.forced(dag, object()) is True


def test_dag_marks_forced_jobs_in_their_reason() -> None:
    """The DAG sets `reason.forced` for jobs of forced rules and files (what `forced` relies on)."""
    import inspect

    import snakemake.api  # noqa: F401  (snakemake.dag imports cleanly only after the package's entry point)
    from snakemake.dag import DAG

    source = inspect.getsource(DAG.update_needrun)
    assert "reason.forced = True" in source and "forcerules" in inspect.getsource(DAG.__init__)


# ---- restoring cached jobs before the scheduler (internals.ready_jobs ... count_finished) -------------------


def _snakemake_classes() -> tuple[type, type, type]:
    import snakemake.api  # noqa: F401  (snakemake.dag imports cleanly only after the package's entry point)
    from snakemake.dag import DAG
    from snakemake.jobs import Job
    from snakemake.scheduling.job_scheduler import JobScheduler

    return DAG, Job, JobScheduler


def test_dag_exposes_ready_jobs_and_finishes_only_running_jobs() -> None:
    """`ready_jobs` is the DAG's set of runnable jobs; `finish` removes the job from `_running` (so a job
    finished up front must be registered running first) and updates its dependents' readiness."""
    import inspect

    dag_class, _, _ = _snakemake_classes()
    assert isinstance(inspect.getattr_static(dag_class, "ready_jobs"), property)
    finish = inspect.getsource(dag_class.finish)
    assert "self._running.remove(job)" in finish and "self.update_ready(" in finish
    assert "update_checkpoint_dependencies" in inspect.signature(dag_class.finish).parameters
    register = inspect.getsource(dag_class.register_running)
    assert "self._running.update(jobs)" in register and "self._ready_jobs -= jobs" in register


def test_scheduler_finishes_a_job_as_internals_does() -> None:
    """The scheduler resets params/resources before selecting, and finishes a successful job with
    `postprocess(...)` then `dag.finish(...)`, counting it in `finished_jobs`: what `reevaluate`,
    `postprocess_upfront`, `mark_finished` and `count_finished` repeat for jobs restored up front."""
    import inspect

    _, job_class, scheduler_class = _snakemake_classes()
    schedule = inspect.getsource(scheduler_class.schedule)
    assert "job.reset_params_and_resources()" in schedule
    finish_jobs = inspect.getsource(scheduler_class._finish_jobs)
    for needle in ("await job.postprocess(", "handle_log=True", "await self.workflow.dag.finish(",
                   "self.finished_jobs += len(job)"):
        assert needle in finish_jobs, needle
    params = inspect.signature(job_class.postprocess).parameters
    assert {"store_in_storage", "handle_log", "handle_touch", "ignore_missing_output"} <= set(params)
    assert inspect.iscoroutinefunction(job_class.prepare) and inspect.iscoroutinefunction(job_class.postprocess)
    assert callable(job_class.reset_params_and_resources)


def test_snakemake_cached_matches_the_local_executors_cache_check() -> None:
    """The local executor serves a rule from Snakemake's `--cache` when `workflow_settings.cache` is set and the
    rule has `cache`; such jobs are left to it."""
    import inspect

    from snakemake.executors.local import Executor

    source = inspect.getsource(Executor.acached_or_run)
    assert "self.workflow.workflow_settings.cache is not None" in source and "job.rule.cache" in source
    workflow = SimpleNamespace(workflow_settings=SimpleNamespace(cache=None))
    job = SimpleNamespace(rule=SimpleNamespace(cache=True))
    assert internals.snakemake_cached(workflow, job) is False
    workflow.workflow_settings.cache = []
    assert internals.snakemake_cached(workflow, job) is True
    assert internals.snakemake_cached(workflow, SimpleNamespace(rule=SimpleNamespace(cache=False))) is False


def test_count_finished_adds_to_the_schedulers_progress() -> None:
    scheduler = SimpleNamespace(finished_jobs=2)
    internals.count_finished(scheduler, 3)
    assert scheduler.finished_jobs == 5
    internals.count_finished(None, 3)  # no scheduler yet: nothing to count


def test_cli_args_are_snakemakes_parsed_command_line_with_every_plugins_options(tmp_path: Path) -> None:
    """A Snakefile is read while `snakemake.cli.args_to_api` runs, as the executor is created: what
    cli_args() returns there carries a backend plugin's own options (here the Slurm plugin's), parsed."""
    import subprocess
    import sys

    from tests.helpers import REPO

    pytest.importorskip("snakemake_executor_plugin_slurm")
    (tmp_path / "Snakefile").write_text(
        "from snakemake_executor_nixworkflow import internals\n"
        "args = internals.cli_args()\n"
        "open('seen', 'w').write(f'{args.executor} {args.slurm_qos} {args.slurm_status_attempts}')\n"
        "rule all:\n    output: 'x'\n    shell: 'touch {output}'\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-c1", "--executor", "nixworkflow",
                           "--slurm-qos", "short", "--slurm-status-attempts", "7"], cwd=tmp_path, text=True,
                          capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "seen").read_text() == "nixworkflow short 7"
    assert internals.cli_args() is None  # not under Snakemake's command line (its Python API, a test)


def test_scheduler_finishes_jobs_through_the_dag_instances_finish() -> None:
    """The scheduler awaits `self.workflow.dag.finish(...)` after post-processing each job it ran, looked up on
    the DAG instance: what `after_finish` hooks (and `mark_finished` bypasses, calling the class's method)."""
    import inspect

    _, _, scheduler_class = _snakemake_classes()
    finish_jobs = inspect.getsource(scheduler_class._finish_jobs)
    assert finish_jobs.index("await job.postprocess(") < finish_jobs.index("await self.workflow.dag.finish(")


def test_after_finish_runs_the_hook_after_the_dags_finish_and_mark_finished_does_not() -> None:
    import asyncio

    calls: list[str] = []

    class Dag:
        def register_running(self, jobs: set[str]) -> None:
            calls.append(f"running {sorted(jobs)}")

        async def finish(self, job: str, update_checkpoint_dependencies: bool = True) -> None:
            calls.append(f"finish {job}")

    async def hook(job: str) -> None:
        calls.append(f"hook {job}")

    dag = Dag()
    internals.after_finish(dag, hook)
    asyncio.run(dag.finish("a", update_checkpoint_dependencies=True))
    asyncio.run(internals.mark_finished(dag, "b"))
    assert calls == ["finish a", "hook a", "running ['b']", "finish b"]


def test_count_finished_can_print_the_schedulers_progress() -> None:
    shown: list[int] = []
    scheduler = SimpleNamespace(finished_jobs=1, print_progress=True)
    scheduler.progress = lambda: shown.append(scheduler.finished_jobs)
    internals.count_finished(scheduler, 2, show=True)
    assert shown == [3]
    scheduler.print_progress = False  # --quiet progress: nothing printed
    internals.count_finished(scheduler, 1, show=True)
    assert shown == [3] and scheduler.finished_jobs == 4
    assert "self.finished_jobs" in __import__("inspect").getsource(_snakemake_classes()[2].progress)


def test_dag_finish_readies_the_jobs_of_depending() -> None:
    """`DAG.finish` walks `self.depending[job]` for the jobs it may make ready, and `ready_jobs` is the set they
    enter: what `dependants` and `is_ready` read after a job is finished."""
    import inspect

    dag_class, _, _ = _snakemake_classes()
    assert "self.depending[job]" in inspect.getsource(dag_class.finish)
    class Job:
        def is_group(self) -> bool:
            return False

    member = Job()
    dag = SimpleNamespace(depending={member: {"b": {"x.txt"}, "c": {"y.txt"}}}, ready_jobs={"b"})
    assert internals.dependants(dag, member) == ["b", "c"]
    assert internals.is_ready(dag, "b") and not internals.is_ready(dag, "c")


def test_a_cluster_runs_scheduler_makes_its_local_executor_from_the_registry_right_after_the_runs_executor() -> None:
    """What `run_local_jobs_with` relies on: in a cluster run `JobScheduler.__init__` creates the run's executor
    and then, next, its local executor from the registry's "local" record, and hands `job.is_local` jobs to it."""
    import inspect

    _, _, scheduler_class = _snakemake_classes()
    init = inspect.getsource(scheduler_class.__init__)
    cluster = init[init.index("else:", init.index("if self.workflow.local_exec:")):]
    made, local = cluster.index("self._executor = executor_plugin.executor("), cluster.index('.get_plugin("local")')
    assert made < local and "self._local_executor = (" in cluster[made:local]
    assert cluster.index(".executor(", local) < cluster.index("self.workflow,", local)
    assert "return self._local_executor" in inspect.getsource(scheduler_class.get_executor)
    assert "executor=self._local_executor or self._executor" in inspect.getsource(scheduler_class.schedule)


def test_run_local_jobs_with_serves_the_next_local_executor_once() -> None:
    from snakemake.executors.local import Executor as LocalExecutor
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    record = ExecutorPluginRegistry().get_plugin("local")
    workflow, ours = object(), object()
    try:
        internals.run_local_jobs_with(workflow, ours)
        assert record.executor(workflow, None) is ours
        assert record.executor is LocalExecutor  # put back by that call: the next run gets Snakemake's
        undo = internals.run_local_jobs_with(workflow, ours)
        undo()  # the call never came (e.g. the run ended before its scheduler was built)
        assert record.executor is LocalExecutor
        undo()
        assert record.executor is LocalExecutor
    finally:
        record.executor = LocalExecutor


def test_job_exec_puts_the_python_executable_right_before_dash_m_snakemake() -> None:
    """`Executor.get_python_executable` returns `python -m …jobexec`, which expects Snakemake to append
    `-m snakemake ARGS…` directly after it."""
    import inspect

    from snakemake_interface_executor_plugins.executors.real import RealExecutor

    source = inspect.getsource(RealExecutor.format_job_exec)
    assert 'self.get_python_executable(),\n                "-m snakemake",' in source


def test_jobexec_starts_snakemake_when_path_has_no_host_tools(tmp_path: Path) -> None:
    """A pure env's PATH has no `which`; Snakemake still starts through jobexec (the Slurm plugin runs
    `which sacct` when Snakemake imports it), and the job's PATH is as it was."""
    import subprocess
    import sys

    from snakemake_executor_nixworkflow import jobexec

    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "snakemake_executor_nixworkflow.jobexec", "-m", "snakemake",
                           "--version"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()[0].isdigit()
    os.environ["PATH"] = str(empty)
    with jobexec.host_tools_on_path():
        assert os.environ["PATH"].endswith(":/usr/local/bin:/usr/bin:/bin")
    assert os.environ["PATH"] == str(empty)


def test_resources_from_input_sizes_are_undetermined_inside_an_event_loop_and_reset_once() -> None:
    """What `reevaluate` relies on: a resource needing input sizes comes out `<TBD>` when evaluated inside a
    running event loop (Snakemake catches NestedCoroutineError), a job resets its params and resources only
    once (`_params_and_resources_resetted`, which reevaluate clears to leave the job to the scheduler), and
    a rule's resource says whether it is computed (`is_evaluable`)."""
    import inspect

    from snakemake.jobs import Job
    from snakemake.resources import Resources
    from snakemake.rules import Rule

    expand = inspect.getsource(Rule.expand_resources)
    assert "except NestedCoroutineError:" in expand and "TBDString()" in expand
    reset = inspect.getsource(Job.reset_params_and_resources)
    assert "if not self._params_and_resources_resetted:" in reset
    assert "self._params_and_resources_resetted = True" in reset
    resources = Resources.from_mapping({"fixed": 3, "computed": lambda wc, input: 1})
    assert not resources["fixed"].is_evaluable() and resources["computed"].is_evaluable()


def _functions() -> dict[str, object]:
    """Resource and param functions of the shapes Snakefiles use (what `memoise_signatures` annotates)."""

    def two(wildcards, attempt):
        return 100 + attempt

    def three(wildcards, input, threads):
        return 10 * threads + len(input)

    def anything(wildcards, **kwargs):
        return ",".join(sorted(kwargs))

    return {"two": two, "three": three, "anything": anything, "lambda": lambda wildcards, resources: 1}


def test_get_function_params_returns_the_parameters_a_function_carries() -> None:
    """What `memoise_signatures` relies on: Snakemake's `get_function_params` returns what a function carries in
    FUNC_OVERWRITE_PARAMS_ATTR (else computes `inspect.signature`), a bound method's attribute is its function's,
    and the per-job evaluation of resources and params asks it: `apply_input_function` for the function it
    applies (for resources, the Resource's bound `evaluate`) and `Resource.evaluate` for the resource's own
    function, kept in `_evaluator`."""
    import inspect

    from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR, get_function_params, get_input_function_aux_params
    from snakemake.resources import Resource
    from snakemake.rules import Rule

    def f(wildcards, input):
        return 1

    assert get_function_params(f) == inspect.signature(f).parameters
    marker = inspect.signature(lambda x: 0).parameters
    setattr(f, FUNC_OVERWRITE_PARAMS_ATTR, marker)
    assert get_function_params(f) is marker
    assert list(get_input_function_aux_params(f, {"x": 1, "input": 2})) == ["x"]
    resource = Resource("r", f)
    assert resource._evaluator is f
    Resource.evaluate._nw_probe = marker
    try:
        assert Resource("s", 1).evaluate._nw_probe is marker  # a bound method forwards attributes to its function
    finally:
        del Resource.evaluate._nw_probe
    apply = inspect.getsource(Rule.apply_input_function)
    assert "get_function_params(func)" in apply and "get_input_function_aux_params(func, aux_params)" in apply
    assert "get_input_function_aux_params(self._evaluator, kwargs)" in inspect.getsource(Resource.evaluate)
    assert "val.evaluate" in inspect.getsource(Rule.expand_resources)


def test_memoise_signatures_stores_exactly_what_snakemake_computes() -> None:
    """After `memoise_signatures(rule)`, every resource and param function of the rule, and `Resource.evaluate`
    bound to any resource, gives `get_function_params` the parameters `inspect.signature` gives (so Snakemake
    passes each function the same arguments); a function Snakemake annotated itself keeps its own."""
    import inspect

    from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR, get_function_params, overwrite_function_params
    from snakemake.iocontainers import Params
    from snakemake.resources import Resource, Resources

    funcs = _functions()

    def wrapped(wildcards, **kwargs):
        return 0

    own = inspect.signature(lambda wildcards, input: 0).parameters
    overwrite_function_params(wrapped, own)  # as Snakemake's ioutils wrappers do
    resources = Resources.from_mapping({"two": funcs["two"], "three": funcs["three"], "anything": funcs["anything"],
                                        "fixed": 3, "wrapped": wrapped})
    params = Params()
    params.append(funcs["lambda"])
    params._add_name("p")
    params.append("literal")
    rule = SimpleNamespace(resources=resources, params=params)
    expected = {name: inspect.signature(f).parameters for name, f in funcs.items()}
    internals.memoise_signatures(rule)
    for name, f in funcs.items():
        assert FUNC_OVERWRITE_PARAMS_ATTR in f.__dict__, name
        assert get_function_params(f) == expected[name], name
    assert get_function_params(wrapped) is own
    assert FUNC_OVERWRITE_PARAMS_ATTR in Resource.evaluate.__dict__

    class Odd:  # a param value that cannot be inspected: the shortcut is skipped, nothing raises
        @property
        def callable(self):
            raise RuntimeError("no")

    odd = Params()
    odd.append(Odd())
    internals.memoise_signatures(SimpleNamespace(resources=Resources.from_mapping({}), params=odd))
    bound = Resource("x", funcs["two"]).evaluate
    assert get_function_params(bound) == inspect.signature(Resource("y", 1).evaluate).parameters
    assert [p.kind for p in get_function_params(bound).values()] == [inspect.Parameter.VAR_POSITIONAL,
                                                                    inspect.Parameter.VAR_KEYWORD]


def test_write_json_writes_what_snakemakes_file_backend_writes(tmp_path: Path) -> None:
    """`internals.write_json` stands in for `FilePersistence._io_write` on the metadata directory: same path,
    same bytes, same mode, for a new record (mode set to rw for user and group) and over an existing one
    (mode bits only added), and it creates the record's directory when a long key splits into several."""
    from snakemake.persistence.file import FilePersistence

    def backend(root: Path) -> FilePersistence:
        p = FilePersistence.__new__(FilePersistence)  # the file backend's writer alone, without a workflow
        p._max_len = None
        p._metadata_path = str(root)
        root.mkdir()
        return p

    theirs, mine = backend(tmp_path / "theirs"), backend(tmp_path / "mine")
    record = {"rule": "a", "input": ["in.txt"], "shellcmd": "echo \"é\" > out", "params": [1.5, None, True],
              "input_checksums": {}, "starttime": 1732600000.123456}
    keys = ["out/a.txt", "d/" + "x" * 300]
    for key in keys:
        theirs._io_write(theirs._metadata_path, record, key)
        internals.write_json(mine, key, record)
    for key in keys:
        a = Path(theirs._record_path(theirs._metadata_path, key))
        b = Path(mine._record_path(mine._metadata_path, key))
        assert a.relative_to(tmp_path / "theirs") == b.relative_to(tmp_path / "mine")
        assert b.read_bytes() == a.read_bytes()
        assert b.stat().st_mode == a.stat().st_mode
        a.chmod(0o604)
        b.chmod(0o604)
    record["rule"] = "b"
    for key in keys:
        theirs._io_write(theirs._metadata_path, record, key)
        internals.write_json(mine, key, record)
        a = Path(theirs._record_path(theirs._metadata_path, key))
        b = Path(mine._record_path(mine._metadata_path, key))
        assert b.read_bytes() == a.read_bytes() and b"\"rule\": \"b\"" in b.read_bytes()
        assert b.stat().st_mode == a.stat().st_mode == (a.stat().st_mode & ~0o7777) | 0o664
