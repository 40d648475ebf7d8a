"""Snakemake's own pytest tests (tests/tests.py of its source distribution), run as is and with the executor.

`make compat` (tests/snakemake_compat.py) runs the test functions that are one `run(dpath(...))` call from the
command line. The others run Snakemake several times, edit files between runs, call the Python API or check the
state afterwards: exactly the cache-sensitive ones (a second run after an edit must re-run what Snakemake would
and never serve a stale result). This runner runs those with Snakemake's own pytest, conftest and common.py,
each test function in a fresh pytest process (the executor makes its process a child subreaper and marks its
environment), twice:

1. as is (the local executor): the baseline;
2. with `run()`'s default executor switched to nixworkflow (a small pytest plugin, SHIM, wraps common.run: a
   call that names no executor, cluster or shell command gets `executor="nixworkflow"` and the plugin's default
   ExecutorSettings) and with a Snakemake profile that says `executor: nixworkflow`, so a test's own
   `snakemake ...` command lines use the executor too.

Each process gets its own temporary NIX_WORKFLOW_STORE and TMPDIR, and its own copy of the source
distribution's tests/ folder (some tests run in place, `no_tmpdir=True`, and would otherwise leave their files
in the cached source that `make compat` reads). Outcomes per test: passes with both, fails
with the executor only (a regression unless KNOWN), or fails locally too (never compared).
`python -m tests.snakemake_pytest_compat` runs the default selection and writes docs/snakemake-pytest-compat.md;
`--only NAME,NAME` runs just those test functions (printing their rows), `--chunk I/N` the I-th of N slices
(the rows of either are merged into the existing table), `-j N` N at a time (default 2).
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests import sdist
from tests import snakemake_compat as compat
from tests.procs import run_group

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "snakemake-pytest-compat.md"
TIMEOUT = 420.0
# Decorators (and test-body words) of test functions that need what this machine or a hermetic run lacks.
SKIP_MARKERS = ("conda", "apptainer", "connected", "gcloud", "azbatch", "zenodo", "ci", "only_on_windows")
SKIP_MARKS = ("needs_s3", "needs_envmodules", "pytest.mark.skip(", "pytest.mark.skip ")
SKIP_WORDS = ("conda", "apptainer", "singularity", "container_image", "s3_storage", "notebook", "DeploymentMethod",
              "storage_provider", "zenodo", "http://", "https://")

# Test functions whose executor run is known to differ, each for a documented reason (docs/snakemake.md).
KNOWN: dict[str, str] = {
    "test_github_issue_14": "its second run, in a new directory, is served from the store (the same job on the same "
                            "input): a restored job runs no script, so `.snakemake/scripts/`, which the test lists "
                            "to check `cleanup_scripts=True` emptied it, is never created",
    "test_github_issue3687": "a timing-dependent test, not a difference: it touches dir2/Done and then replaces the "
                             "symlink dir2/D at once, often within one tick of the filesystem's clock here, and then "
                             "Snakemake sees no newer input and re-runs nothing, with the local executor too (4 of 4 "
                             "runs of the test's steps through its own run(): `Done` and the link had equal mtimes)",
}

# The pytest plugin loaded into Snakemake's own test run (as module nw_pytest_shim) in the executor mode.
SHIM = '''
"""Switches Snakemake's tests/common.py run() to --executor nixworkflow (tests/snakemake_pytest_compat.py)."""
import functools
import os
import sys

import pytest


def _count() -> None:
    path = os.environ["NW_PYTEST_COUNT"]
    with open(path, "a") as f:
        f.write("1\\n")


def _switched(run):
    @functools.wraps(run)
    def wrapped(*args, **kwargs):
        if kwargs.get("executor", "local") == "local" and kwargs.get("cluster") is None \\
                and not kwargs.get("shellcmd"):
            from snakemake_executor_nixworkflow import ExecutorSettings

            kwargs["executor"] = "nixworkflow"
            if kwargs.get("executor_settings") is None:
                kwargs["executor_settings"] = ExecutorSettings()
            _count()
        return run(*args, **kwargs)

    wrapped.nw_switched = True
    return wrapped


@pytest.fixture(autouse=True)
def _nw_executor(request, monkeypatch):
    if os.environ.get("NW_PYTEST_MODE") == "executor":
        for module in (sys.modules.get("tests.common"), request.module):
            run = getattr(module, "run", None)
            if run is not None and not getattr(run, "nw_switched", False):
                monkeypatch.setattr(module, "run", _switched(run))
    yield
'''


@dataclass
class Selected:
    """A test function of tests.py and why it cannot run here (None: it runs)."""

    name: str
    skip: str | None = None


def source_tests() -> Path:
    return compat.source_tests()


def selection(tests: Path) -> list[Selected]:
    """The test functions of tests.py that `make compat` does not run, each with why it is skipped, if it is."""
    runs = {c.name for c in compat.runnable(tests)}
    tree = ast.parse((tests / "tests.py").read_text())
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test") \
                and node.name.removeprefix("test_") not in runs:
            out.append(Selected(node.name, _skip(tests, node)))
    return out


def _skip(tests: Path, node: ast.FunctionDef) -> str | None:
    for decorator in node.decorator_list:
        text = ast.unparse(decorator)
        if text.split("(")[0] in SKIP_MARKERS or any(m in text or text == m.strip("( ") for m in SKIP_MARKS):
            return f"marked {text[:40]}"
    body = ast.unparse(node)
    for word in SKIP_WORDS:
        if word in body:
            return f"uses {word.strip(':/')}"
    for path in _dpaths(node):
        where = tests / path
        files = [p for p in where.rglob("*") if p.is_file()] if where.is_dir() else []
        text = "".join(p.read_text(errors="replace") for p in files
                       if p.name.startswith("Snakefile") or p.suffix in (".smk", ".py", ".yaml"))
        need = next((n for n in compat.NEEDS if n in text), None)
        if need:
            return f"needs {need.strip(':(')}"
    return None


def _dpaths(node: ast.FunctionDef) -> list[str]:
    return [n.args[0].value for n in ast.walk(node) if isinstance(n, ast.Call) and ast.unparse(n.func) == "dpath"
            and n.args and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)]


@dataclass
class Result:
    """One pytest run of one test function."""

    outcome: str  # passed, failed, skipped, error, timeout (several: the worst of its parameters)
    seconds: float
    output: str = ""
    switched: int = 0  # run() calls switched to the executor
    stored: int = 0  # realisations in the test's store afterwards

    @property
    def ok(self) -> bool:
        return self.outcome in ("passed", "skipped", "xfailed")


@dataclass
class Outcome:
    name: str
    skip: str | None = None
    local: Result | None = None
    executor: Result | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def used(self) -> bool:
        """Whether the executor ran at all (a switched run() call, or a store it filled)."""
        return self.executor is not None and (self.executor.switched > 0 or self.executor.stored > 0)

    @property
    def status(self) -> str:
        if self.skip:
            return f"skipped ({self.skip})"
        if self.local is None or not self.local.ok:
            return "fails locally too" if self.local else "not run"
        if self.local.outcome == "skipped":
            return "skipped by the test itself"
        if self.executor is None:
            return "not run"
        if self.executor.ok:
            return "passes" if self.used else "passes (never reaches the executor)"
        if self.name in KNOWN:
            return f"known difference ({KNOWN[self.name]})"
        return "REGRESSION"


SUMMARY = re.compile(r"^(?:=+ )?(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s\b", re.M)


def parse(output: str, code: int) -> str:
    """The worst outcome pytest's closing line names."""
    found = SUMMARY.findall(output)
    words = found[-1] if found else ""
    for outcome in ("error", "failed", "passed", "xfailed", "skipped"):
        if re.search(rf"\d+ {outcome}", words):
            return outcome
    return "error" if code else "passed"


def shim_dir(scratch: Path) -> Path:
    where = scratch / "shim"
    where.mkdir(exist_ok=True)
    (where / "nw_pytest_shim.py").write_text(SHIM)
    profile = where / "profile"
    profile.mkdir(exist_ok=True)
    (profile / "config.yaml").write_text("executor: nixworkflow\n")
    return where


def run_pytest(tests: Path, name: str, mode: str, scratch: Path, shim: Path) -> Result:
    """One test function in a fresh pytest process, with its own store, TMPDIR and copy of the tests."""
    work = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=scratch))
    root = work / "sdist"
    shutil.copytree(tests, root / "tests", symlinks=True)
    shutil.copy(tests.parent / "pyproject.toml", root)
    store, tmp, count = work / "store", work / "tmp", work / "switched"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NIX_WORKFLOW_", "SNAKEMAKE_", "PYTEST_"))}
    env.update(NIX_WORKFLOW_STORE=str(store), TMPDIR=str(tmp), NW_PYTEST_MODE=mode, NW_PYTEST_COUNT=str(count),
               PYTHONPATH=str(shim), PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    # (the venv's bin first, as if activated: tests run `python -m snakemake` in their shell commands)
    if mode == "executor":
        env["SNAKEMAKE_PROFILE"] = str(shim / "profile")
    argv = [sys.executable, "-m", "pytest", "-p", "nw_pytest_shim", "-p", "no:cacheprovider", "-q", "-rfEs",
            "--tb=short", "-o", "addopts=", f"tests/tests.py::{name}"]
    start = time.monotonic()
    code, output = execute(argv, root, env)
    seconds = time.monotonic() - start
    outcome = "timeout" if code is None else parse(output, code)
    switched = len(count.read_text().split()) if count.exists() else 0
    stored = len(list((store / "realisations").glob("*.json"))) if (store / "realisations").is_dir() else 0
    subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return Result(outcome, seconds, output, switched, stored)


def execute(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int | None, str]:
    return run_group(argv, cwd, env, TIMEOUT)


def run_test(tests: Path, chosen: Selected, scratch: Path, shim: Path) -> Outcome:
    outcome = Outcome(chosen.name, chosen.skip)
    if chosen.skip:
        return outcome
    outcome.local = run_pytest(tests, chosen.name, "local", scratch, shim)
    if outcome.local.ok and outcome.local.outcome != "skipped":
        outcome.executor = run_pytest(tests, chosen.name, "executor", scratch, shim)
    keep_log(outcome)
    return outcome


def keep_log(outcome: Outcome) -> None:
    """The output of a failed run, kept in $NW_PYTEST_COMPAT_LOGS (if set) as NAME.MODE.log for reading."""
    logs = os.environ.get("NW_PYTEST_COMPAT_LOGS")
    for mode, result in (("local", outcome.local), ("executor", outcome.executor)):
        if logs and result is not None and not result.ok:
            Path(logs).mkdir(parents=True, exist_ok=True)
            (Path(logs) / f"{outcome.name}.{mode}.log").write_text(result.output)


def why(result: Result | None) -> str:
    """The first failure line of a pytest run (its `FAILED`/`ERROR` summary, else its last error line)."""
    if result is None:
        return ""
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    line = next((x for x in lines if x.startswith(("FAILED", "ERROR"))), None) \
        or next((x for x in reversed(lines) if re.match(r"^E\s", x)), None) or (lines[-1] if lines else "")
    return line.replace("|", "/")[:140]


def _cell(result: Result | None) -> str:
    if result is None:
        return "–"
    return f"{result.outcome} {result.seconds:.0f} s"


HEADER = "| test | local | executor | run() calls switched | realisations stored | status |"


def row(o: Outcome) -> str:
    status = o.status
    if status == "REGRESSION" or status.startswith("fails locally"):
        status += f": {why(o.executor if status == 'REGRESSION' else o.local)}"
    switched = str(o.executor.switched) if o.executor else "–"
    stored = str(o.executor.stored) if o.executor else "–"
    return f"| {o.name} | {_cell(o.local)} | {_cell(o.executor)} | {switched} | {stored} | {status} |"


def table(rows: dict[str, str], skipped: list[str], version: str, functions: int, selected: int) -> str:
    statuses = [r.rsplit("|", 2)[-2].strip() for r in rows.values()]
    count = {k: sum(1 for s in statuses if s.startswith(k)) for k in
             ("passes", "passes (never", "REGRESSION", "known", "fails locally", "skipped by")}
    lines = [
        "## Snakemake's own pytest tests with `--executor nixworkflow`",
        "",
        f"Generated by `make compat-pytest` (tests/snakemake_pytest_compat.py) against Snakemake {version}'s source "
        f"distribution: the test functions of its tests/tests.py that `make compat` does not run (several runs, "
        f"edits between runs, the Python API, state checked afterwards), run by Snakemake's own pytest, "
        f"conftest and common.py, once as is and once with common.run()'s default executor switched to "
        f"nixworkflow (and a profile `executor: nixworkflow` for the test's own `snakemake` command lines), each "
        f"in a fresh process with its own store.",
        "",
        f"{functions} test functions in tests.py; {len(rows) + len(skipped)} not run by `make compat`; "
        f"{len(skipped)} skipped here (conda, containers, network, cloud, notebooks); {len(rows)} of the "
        f"{selected} others ran{'' if len(rows) >= selected else ' (a partial run: the rest are not in the table)'}: "
        f"{count['passes']} pass with both ({count['passes'] - count['passes (never']} reaching the executor, "
        f"{count['passes (never']} never reaching it: dry-runs, another executor, or API calls the switch does "
        f"not cover), {count['fails locally']} fail with the local executor too, {count['skipped by']} skip "
        f"themselves, {count['known']} known differences, {count['REGRESSION']} regressions.",
        "",
        HEADER,
        "|---|---|---|---|---|---|",
        *(rows[k] for k in sorted(rows)),
        "",
        f"Skipped ({len(skipped)}): " + ", ".join(sorted(skipped)),
        "",
    ]
    return "\n".join(lines)


def existing_rows() -> dict[str, str]:
    """The rows of the current table (a chunk's rows are merged into them)."""
    if not DOC.exists():
        return {}
    return {line.split("|")[1].strip(): line for line in DOC.read_text().splitlines()
            if line.startswith("| test") and line != HEADER}


def run_all(tests: Path, todo: list[Selected], jobs: int, publish: Callable[[list[Outcome]], None]) -> list[Outcome]:
    """Run `todo`, `jobs` at a time, handing the outcomes so far to `publish` after each (an interrupted run
    leaves the table of what it finished)."""
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="nw-pytest-compat-") as scratch, cf.ThreadPoolExecutor(jobs) as pool:
        shim = shim_dir(Path(scratch))
        futures = [pool.submit(run_test, tests, s, Path(scratch), shim) for s in todo if not s.skip]
        for future in cf.as_completed(futures):
            o = future.result()
            outcomes.append(o)
            print(f"{o.name}: {o.status}" + (f" — {why(o.executor)}" if o.status == "REGRESSION" else ""),
                  flush=True)
            publish(outcomes)
    return outcomes


def main(argv: list[str]) -> int:
    """`make compat-pytest`: the default selection (or `--only`, `--chunk I/N`), two at a time (`-j N`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.snakemake_pytest_compat")
    parser.add_argument("--only", default="", help="NAME,NAME: just these test functions (rows are printed)")
    parser.add_argument("--chunk", default="", help="I/N: the I-th (1-based) of N slices of the selection")
    parser.add_argument("-j", type=int, default=int(os.environ.get("COMPAT_JOBS", "2")))
    args = parser.parse_args(argv)
    tests = source_tests()
    chosen = selection(tests)
    only = {n if n.startswith("test") else f"test_{n}" for n in args.only.split(",") if n}
    if only - {s.name for s in chosen}:
        print(f"not in the selection: {', '.join(sorted(only - {s.name for s in chosen}))}", file=sys.stderr)
        return 2
    runnable = [s for s in chosen if not s.skip and (not only or s.name in only)]
    if args.chunk:
        i, n = map(int, args.chunk.split("/"))
        runnable = runnable[i - 1::n]
    before = existing_rows() if only or args.chunk else {}  # a part's rows (--only, --chunk) are merged
    functions = sum(1 for n in ast.parse((tests / "tests.py").read_text()).body
                    if isinstance(n, ast.FunctionDef) and n.name.startswith("test"))
    skipped = [s.name for s in chosen if s.skip]

    def publish(done: list[Outcome]) -> None:
        if not only or DOC.exists():
            rows = {**before, **{o.name: row(o) for o in done}}
            DOC.write_text(table(rows, skipped, sdist.installed("snakemake"), functions, len(chosen) - len(skipped)))

    outcomes = run_all(tests, runnable, args.j, publish)
    if only:
        print("\n".join([HEADER, *sorted(row(o) for o in outcomes)]))
    bad = [o for o in outcomes if o.status == "REGRESSION"]
    print(f"{len(bad)} regressions" + "".join(f"\n  {o.name}: {why(o.executor)}" for o in bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
