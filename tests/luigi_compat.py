"""Luigi's own test suite, run as shipped and again with every `luigi.Task` subclass a NixTask.

The tests come from the source distribution of the installed Luigi (downloaded once with pip, as a dependency
would be, into ~/.cache/nixworkflow/luigi-src/<version>). Each chosen module (MODULES) runs twice with pytest in
a subprocess of its own, each run with a fresh store (NIX_WORKFLOW_STORE) and a fresh working directory holding
a copy of Luigi's `test/` folder (its tests name `test/testconfig/...` relative to the source root):

1. as shipped: the baseline (a test failing there is reported, never compared);
2. with this module loaded as a pytest plugin (`-p tests.luigi_compat`, NW_LUIGI_COMPAT=nix), which, before any
   test module is imported, sets `luigi.Task = luigi_nixworkflow.NixTask`: every task class the tests define
   on `luigi.Task` (also `from luigi import Task`, and helpers.py's RunOnceTask) becomes a NixTask, exactly the
   migration docs/luigi.md describes. Luigi's own classes keep Luigi's bases: its modules are imported before
   the swap, so `ExternalTask`, `WrapperTask`, `RangeDaily` & co. are unchanged.

Both runs alias the `mock` package Luigi's tests import to `unittest.mock` (of which it is the backport). The
processes the command-line tests start (`./bin/luigi`, `python -m luigi`, `python test/...py`) get the same through
a `sitecustomize` in the working directory (_subprocess_setup).
Results are compared per test id: a test that passes as shipped and fails (or errors, or is missing) with
NixTask is a regression, unless BY_DESIGN explains it. `python -m tests.luigi_compat` runs every module and
writes docs/luigi-compat.md; `--only MODULE,MODULE` runs just those and prints their rows; `--table` writes the
table again from the last full run (kept in ~/.cache/nixworkflow/luigi-src/last-run.json).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import sdist
from tests.procs import run_group

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nixworkflow" / "luigi-src"
TIMEOUT = 600.0
MODE = "NW_LUIGI_COMPAT"  # set to "nix" in the environment of the second run

# Modules whose tests define, schedule and run tasks locally (or check targets and parameters tasks use).
MODULES = [
    "task_test", "task_register_test", "task_bulk_complete_test", "task_forwarded_attributes_test",
    "task_progress_percentage_test", "task_status_message_test", "task_running_resources_test",
    "task_serialize_test", "task_history_test", "worker_test", "worker_task_test", "worker_task_process_test",
    "worker_external_task_test", "worker_multiprocess_test", "worker_parallel_scheduling_test",
    "worker_keep_alive_test", "worker_scheduler_com_test", "scheduler_test", "scheduler_message_test",
    "scheduler_parameter_visibilities_test", "scheduler_visualisation_test", "interface_test", "retcodes_test",
    "execution_summary_test", "event_callbacks_test", "instance_test", "instance_wrap_test", "dynamic_import_test",
    "cmdline_test", "util_test", "util_previous_test", "range_test", "decorator_test", "wrap_test", "clone_test",
    "subtask_test", "recursion_test", "fib_test", "factorial_test", "priority_test", "simulate_test",
    "helpers_test", "parameter_test", "date_parameter_test", "date_interval_test", "dict_parameter_test",
    "list_parameter_test", "choice_parameter_test", "numerical_parameter_test", "optional_parameter_test",
    "visible_parameters_test", "custom_metrics_test", "set_task_name_test", "local_target_test", "target_test",
    "mock_test", "most_common_test", "notifications_test", "lock_test",
]

# Every other test module of Luigi's test/ folder, and why it does not run here.
SKIPPED = {
    "rpc_test": "the HTTP client of a remote scheduler (mocked network calls); defines no task to migrate",
    "server_test": "starts luigid's HTTP server (a network service); defines no task to migrate",
    "scheduler_api_test": "the central scheduler's API called directly; defines no task to migrate",
    "remote_scheduler_test": "needs a running remote scheduler (network)",
    "db_task_history_test": "task history in a SQL database (SQLAlchemy)",
    "hdfs_client_test": "needs Hadoop",
    "customized_run_test": "Hadoop MapReduce runner (luigi.contrib.mrrunner)",
    "metrics_test": "needs prometheus_client (optional package, not installed)",
    "mypy_test": "needs mypy (a static type check of Luigi's code)",
    "batch_notifier_test": "email batching; defines no task to migrate",
    "config_env_test": "configuration parsing; defines no task to migrate",
    "config_toml_test": "configuration parsing (toml); defines no task to migrate",
    "setup_logging_test": "logging set-up; defines no task to migrate",
    "safe_extractor_test": "tar extraction; defines no task to migrate",
    "import_test": "imports every luigi.contrib module (optional packages: databases, clouds, Hadoop)",
    "test_sigpipe": "Hadoop streaming's SIGPIPE handling",
    "test_ssh": "needs an SSH server",
    "_mysqldb_test": "needs a MySQL server (disabled upstream: leading underscore)",
    "_test_ftp": "needs an FTP server (disabled upstream: leading underscore)",
    "contrib/*": "integrations with external systems (Hadoop, clouds, databases, containers, batch schedulers); "
                 "their tasks subclass luigi.contrib bases, not luigi.Task",
}

# Tests that pass as shipped and fail with NixTask for a documented reason (docs/luigi-compat.md lists them), by
# test id. A test is also by design when its NixTask run printed one of REFUSALS, the errors with which the adapter
# deliberately refuses a task (each documented, each pinned by a test of ours): the test then fails because
# the task it defines is refused, not because Luigi's contract broke.
_BATCHED = ("docs/luigi.md (Luigi's contracts): NixTasks are never batched, each parameter value runs (or is served) "
            "by itself; the test asserts that Luigi ran one batched task for several parameter values")
BY_DESIGN: dict[str, str] = {
    f"worker_test.WorkerTest::{name}": _BATCHED
    for name in ("test_run_csv_batch_job", "test_run_max_batch_job", "test_run_batch_job_limit_batch_size",
                 "test_fail_max_batch_job", "test_gracefully_handle_batch_method_failure",
                 "test_post_error_message_for_failed_batch_methods")
} | {
    "execution_summary_test.ExecutionSummaryTest::test_batch_fail": _BATCHED,
} | {
    "worker_external_task_test.WorkerExternalTaskTest::test_external_task_complete_but_missing_dep_at_runtime":
    "docs/luigi.md: a file on disk is not a result the store vouches for (the first run after migrating runs every "
    "task once, even where plain Luigi's files exist); the test touches the output file by hand and expects the task, "
    "whose run() it replaced by NotImplemented, not to run",
} | {
    f"event_callbacks_test.TestDependencyEvents::{name}": "this run's own artefact: the test registers its handlers "
    "with `@luigi.Task.event_handler`, which the swap makes `NixTask.event_handler`, so the events Luigi fires on its "
    "own ExternalTask D (dependency present/missing) reach no handler; a user migrating by base class keeps them on "
    "Luigi's Task (the events of the migrated tasks all arrive)"
    for name in ("test_complete_dag", "test_incomplete_dag")
}
BY_DESIGN["task_running_resources_test.ConcurrentRunningResourcesTest::test_tasks_parallel"] = (
    "not a behaviour difference: it asserts wall-clock time (two 2-second tasks within 4 s), which a loaded machine "
    "misses either way (as shipped it failed in one of two full runs here); it passes when the module runs alone")
REFUSALS = {
    "returned without writing its declared output": "its task's run() does not write the output() it declares: a "
    "NixTask fails then, as nothing could be stored (docs/luigi.md: each declared output must exist when run() "
    "returns), where Luigi does not look",
    "wrote nothing into": "its task leaves an empty output directory: a NixTask refuses an empty result unless the "
    "class sets `allow_empty = True` (docs/luigi.md); an empty file is a result, as in Luigi",
}


def installed_version() -> str:
    return sdist.installed("luigi")


def source_tests(version: str | None = None) -> Path:
    """The `test/` folder of Luigi's source distribution (tests/sdist.py)."""
    return sdist.unpacked("luigi", version or installed_version(), "test", CACHE)


# ---- the pytest plugin (loaded in both runs with `-p tests.luigi_compat`) ----------------------------------

LUIGI_MODULES = (
    "luigi.task", "luigi.util", "luigi.tools.range", "luigi.mock", "luigi.local_target", "luigi.worker",
    "luigi.scheduler", "luigi.interface", "luigi.cmdline", "luigi.notifications", "luigi.batch_notifier",
    "luigi.task_history", "luigi.lock", "luigi.metrics", "luigi.execution_summary", "luigi.date_interval",
    "luigi.contrib.simulate", "luigi.contrib.external_program", "luigi.server", "luigi.rpc",
)


def _install() -> None:
    """`mock` is `unittest.mock`; in the NixTask run, luigi.Task is NixTask from here on."""
    import importlib
    import unittest.mock

    sys.modules.setdefault("mock", unittest.mock)
    if os.environ.get(MODE) != "nix":
        return
    for name in LUIGI_MODULES:  # Luigi's own classes are defined on Luigi's own Task
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    import luigi

    from luigi_nixworkflow import NixTask

    luigi.Task = NixTask


TEST_TIMEOUT = 30  # seconds a single test may take before it is failed (Luigi retrying a failed task forever)


class TestTimeout(BaseException):  # noqa: N818 - not an Exception: Luigi's worker loop catches those
    """A test ran longer than TEST_TIMEOUT."""


def _alarm(signum: int, frame: object) -> None:

    signal.alarm(5)  # again, should the code under test swallow this one
    raise TestTimeout(f"the test ran for more than {TEST_TIMEOUT} s (stopped by tests/luigi_compat.py)")


if os.environ.get(MODE):
    _install()

    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(item: object) -> object:
        """Fail a test that hangs instead of losing the whole module's report to the module's timeout."""
        import signal

        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(TEST_TIMEOUT)
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)


# ---- running and comparing ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One pytest run of one module: each test id's outcome (passed, failed, error, skipped)."""

    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)  # the failure's text and what the test printed and logged
    seconds: float = 0.0
    problem: str = ""  # the run itself went wrong (timed out, no report)
    output: str = ""


@dataclass
class Outcome:
    module: str
    shipped: Run | None = None
    nix: Run | None = None

    def count(self, run: Run | None, what: str) -> int:
        return sum(1 for v in (run.outcomes.values() if run else ()) if v == what)

    @property
    def changed(self) -> list[str]:
        """Test ids that pass as shipped and do not pass with NixTask."""
        if self.shipped is None or self.nix is None:
            return []
        return sorted(t for t, v in self.shipped.outcomes.items()
                      if v == "passed" and self.nix.outcomes.get(t, "missing") != "passed")

    def reason(self, test: str) -> str | None:
        """Why the test fails with NixTask by design, or None (a regression)."""
        if test in BY_DESIGN:
            return BY_DESIGN[test]
        detail = self.nix.details.get(test, "") if self.nix else ""
        return next((why for signature, why in REFUSALS.items() if signature in detail), None)

    @property
    def regressions(self) -> list[str]:
        return [t for t in self.changed if self.reason(t) is None]

    @property
    def by_design(self) -> list[str]:
        return [t for t in self.changed if self.reason(t) is not None]


def run_module(tests: Path, module: str, where: Path, nix: bool) -> Run:
    """pytest on one of Luigi's test modules, in `where` (a copy of test/ beside a fresh store)."""
    where.mkdir(parents=True)
    shutil.copytree(tests, where / "test", ignore=shutil.ignore_patterns("contrib", "__pycache__"))
    _subprocess_setup(where, tests.parent)
    (where / "store").mkdir()
    report = where / "report.xml"
    env = dict(os.environ, NIX_WORKFLOW_STORE=str(where / "store"), PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
               PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    env.pop("NIX_WORKFLOW_FORCE", None)
    env[MODE] = "nix" if nix else "shipped"
    argv = [sys.executable, "-m", "pytest", "-p", "tests.luigi_compat", "-p", "no:cacheprovider", "-p", "no:xdist",
            "-q", "-rN", "--tb=short", "-o", "junit_logging=all", f"--junitxml={report}", f"test/{module}.py"]
    start = time.monotonic()
    code, output = execute(argv, where, env)
    run = Run(seconds=time.monotonic() - start, output=output)
    if code is None:
        run.problem = f"timed out after {TIMEOUT:.0f} s"
    if not report.is_file():
        run.problem = run.problem or f"no report (exit {code}): {output[-300:]}"
        return run
    read_report(report, run)
    return run


# Luigi's command-line tests start `./bin/luigi` (in Luigi's repository, not its source distribution), `python -m
# luigi` and `python test/...py` with `.` on PYTHONPATH: these start-up files give those processes what the pytest
# process has (the `mock` alias; in the NixTask run, luigi.Task as NixTask), so they run and are migrated too.
BIN_LUIGI = "#!/usr/bin/env python\nfrom luigi.cmdline import luigi_run\n\nluigi_run()\n"
SITECUSTOMIZE = "from tests import luigi_compat\n\nluigi_compat._install()\n"


def _subprocess_setup(where: Path, source: Path) -> None:
    """`bin/luigi` and a `sitecustomize` (imported by every Python started with `where` on its path) in `where`, and
    what the command-line tests run from the source root (`source`): the `deps`/`deps_tree` scripts by path (only
    the scripts: the package is the installed one) and the examples they name."""
    for script in ("deps.py", "deps_tree.py"):
        (where / "luigi" / "tools").mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "luigi" / "tools" / script, where / "luigi" / "tools" / script)
    if (source / "examples").is_dir():
        shutil.copytree(source / "examples", where / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    (where / "bin").mkdir()
    (where / "bin" / "luigi").write_text(BIN_LUIGI)
    (where / "bin" / "luigi").chmod(0o755)
    (where / "sitecustomize.py").write_text(SITECUSTOMIZE)


def read_report(report: Path, run: Run) -> None:
    for case in ET.parse(report).getroot().iter("testcase"):
        test = f"{case.get('classname', '').split('.', 1)[-1]}::{case.get('name')}"
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                status = {"failure": "failed"}.get(child.tag, child.tag)
                message = (child.get("message") or child.text or "").strip()
                break
        detail = "\n".join(child.text or "" for child in case)
        if status == "passed" or run.outcomes.get(test) in (None, "passed"):  # a teardown error counts
            run.outcomes[test] = status
            run.messages[test] = message
            run.details[test] = detail[-20000:]


def execute(argv: list[str], workdir: Path, env: dict[str, str]) -> tuple[int | None, str]:
    """Run pytest to its exit (None: timed out), its output in a file; whatever it left running is killed."""
    return run_group(argv, workdir, env, TIMEOUT)


def run_case(tests: Path, module: str, scratch: Path) -> Outcome:
    """Both runs of one module."""
    outcome = Outcome(module)
    outcome.shipped = run_module(tests, module, scratch / "shipped", nix=False)
    outcome.nix = run_module(tests, module, scratch / "nix", nix=True)
    return outcome


# ---- the table ---------------------------------------------------------------------------------------------

HEADER = ("| module | tests | as shipped: pass / fail / skip | NixTask: pass / fail / skip | "
          "regressions | by design |")


def _counts(o: Outcome, run: Run | None) -> str:
    if run is None:
        return "–"
    if run.problem:
        return f"FAIL: {run.problem[:60]}"
    failed = o.count(run, "failed") + o.count(run, "error")
    return f"{o.count(run, 'passed')} / {failed} / {o.count(run, 'skipped')}"


def rows(outcomes: list[Outcome]) -> list[str]:
    lines = []
    for o in sorted(outcomes, key=lambda o: o.module):
        total = len(o.shipped.outcomes) if o.shipped else 0
        lines.append(f"| {o.module} | {total} | {_counts(o, o.shipped)} | {_counts(o, o.nix)} | "
                     f"{len(o.regressions)} | {len(o.by_design)} |")
    return lines


def table(outcomes: list[Outcome], version: str) -> str:
    def total(run_of: str, what: str) -> int:
        return sum(o.count(getattr(o, run_of), what) for o in outcomes)

    tests = sum(len(o.shipped.outcomes) for o in outcomes if o.shipped)
    bad = [(o.module, t) for o in outcomes for t in o.regressions]
    lines = [
        "## Luigi's own test suite with every `luigi.Task` a `NixTask`",
        "",
        f"Generated by `make luigi-compat` (`.venv/bin/python -m tests.luigi_compat`, tests/luigi_compat.py) "
        f"against Luigi {version}'s source distribution: {len(outcomes)} test modules, {tests} tests. As shipped "
        f"{total('shipped', 'passed')} pass, {total('shipped', 'failed') + total('shipped', 'error')} fail, "
        f"{total('shipped', 'skipped')} skip; with NixTask {total('nix', 'passed')} pass, "
        f"{total('nix', 'failed') + total('nix', 'error')} fail, {total('nix', 'skipped')} skip. Of the tests that "
        f"pass as shipped, {sum(len(o.by_design) for o in outcomes)} fail with NixTask by design (listed below) "
        f"and {len(bad)} are regressions.",
        "",
        "Each module runs twice with pytest, in a subprocess with a fresh store and a fresh working directory "
        "holding a copy of Luigi's `test/` folder: as shipped, and with `luigi.Task` set to "
        "`luigi_nixworkflow.NixTask` before the test modules are imported (a pytest plugin, `-p "
        "tests.luigi_compat`), so every task class the tests define on `luigi.Task` is migrated by its base "
        "class alone; Luigi's own classes (`ExternalTask`, `WrapperTask`, the range tasks) keep Luigi's bases. "
        "Both runs alias the `mock` package Luigi's tests import to `unittest.mock`. The command-line tests start "
        "`./bin/luigi` (Luigi's repository has it; written here), `python -m luigi` and `python test/...py`: a "
        "`sitecustomize` in the working directory gives those processes the alias and, in the NixTask run, the "
        "migration too.",
        "",
        HEADER,
        "|---|---|---|---|---|---|",
        *rows(outcomes),
        "",
        "### By design",
        "",
    ]
    designed = sorted((o.module, t) for o in outcomes for t in o.by_design)
    reasons = {(m, t): next(o for o in outcomes if o.module == m).reason(t) for m, t in designed}
    lines += [f"- `{t}`: {reasons[m, t]}" for m, t in designed] or ["None."]
    if bad:
        lines += ["", "### Regressions", ""]
        lines += [f"- `{t}`: {_message(outcomes, m, t)}" for m, t in bad]
    lines += ["", "### Modules not run", ""]
    lines += [f"- `{m}`: {why}" for m, why in SKIPPED.items()]
    return "\n".join(lines) + "\n"


def _message(outcomes: list[Outcome], module: str, test: str) -> str:
    o = next(o for o in outcomes if o.module == module)
    status = o.nix.outcomes.get(test, "missing") if o.nix else "not run"
    text = (o.nix.messages.get(test, "") if o.nix else "").splitlines()
    return f"{status}: {(text[0] if text else '')[:200]}".replace("|", "/")


LAST = CACHE / "last-run.json"  # the last full run's outcomes: `--table` renders them again


def save(outcomes: list[Outcome]) -> None:
    """Keep what the table needs (details only of the tests that changed), so that editing BY_DESIGN does not
    need the full run (~5 minutes on 2 cores) again."""
    def run(r: Run | None, keep: set[str]) -> dict[str, object] | None:
        if r is None:
            return None
        return {"outcomes": r.outcomes, "messages": {t: m for t, m in r.messages.items() if t in keep},
                "details": {t: d for t, d in r.details.items() if t in keep}, "problem": r.problem}

    LAST.parent.mkdir(parents=True, exist_ok=True)
    LAST.write_text(json.dumps([{"module": o.module, "shipped": run(o.shipped, set()),
                                 "nix": run(o.nix, set(o.changed))} for o in outcomes]))


def load() -> list[Outcome]:
    def run(d: dict[str, Any] | None) -> Run | None:
        return None if d is None else Run(d["outcomes"], d["messages"], d["details"], problem=d["problem"])

    return [Outcome(d["module"], run(d["shipped"]), run(d["nix"])) for d in json.loads(LAST.read_text())]


def main(argv: list[str]) -> int:
    """`make luigi-compat`: every module of MODULES, two at a time (COMPAT_JOBS); the table goes to
    docs/luigi-compat.md. `--only MODULE,MODULE` (or names as arguments): just those, rows printed instead."""
    import concurrent.futures as cf

    if {"-h", "--help"} & set(argv):
        print(__doc__)
        return 0
    if argv == ["--table"]:  # render the last full run again (after editing BY_DESIGN or REFUSALS)
        outcomes = load()
        (REPO / "docs" / "luigi-compat.md").write_text(table(outcomes, installed_version()))
        return 1 if any(o.regressions for o in outcomes) else 0
    tests = source_tests()
    only = [n for a in argv if a != "--only" for n in a.removeprefix("--only=").split(",") if n]
    unknown = [n for n in only if not (tests / f"{n}.py").is_file()]
    if unknown:
        print(f"no such module: {', '.join(unknown)}", file=sys.stderr)
        return 2
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="nw-luigi-compat-") as scratch, \
            cf.ThreadPoolExecutor(int(os.environ.get("COMPAT_JOBS", "2"))) as pool:
        futures = [pool.submit(run_case, tests, m, Path(scratch) / m) for m in (only or MODULES)]
        for future in cf.as_completed(futures):
            o = future.result()
            outcomes.append(o)
            problems = "; ".join(f"{n}: {r.problem}" for n, r in (("shipped", o.shipped), ("nix", o.nix))
                                 if r is not None and r.problem)
            print(f"{o.module}: {_counts(o, o.shipped)} -> {_counts(o, o.nix)}, {len(o.regressions)} regressions"
                  + (f" ({problems})" if problems else ""), flush=True)
            for t in o.regressions:
                print(f"  REGRESSION {t}: {_message(outcomes, o.module, t)}", flush=True)
    if not only:
        save(outcomes)
        (REPO / "docs" / "luigi-compat.md").write_text(table(outcomes, installed_version()))
    else:
        print("\n".join([HEADER, *rows(outcomes)]))
    bad = sum(len(o.regressions) for o in outcomes)
    print(f"{bad} regressions")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
