"""Snakemake's own test workflows, run with the local executor and with `--executor nixworkflow`.

The workflows come from the source distribution of the installed Snakemake (downloaded once with pip,
as a dependency would be, into ~/.cache/nixworkflow/snakemake-src/<version>). A case is a test function of
Snakemake's `tests/tests.py` that is a single `run(dpath(...), ...)` call with arguments this runner can
express on the command line (see OPTIONS; targets, a `snakemake ...` shell command, `shouldfail`) and no
marker that needs a network, conda, containers or cloud storage. Each case runs three times:

1. with the local executor: the baseline (a case that fails there is reported, never compared);
2. with `--executor nixworkflow` on a private store;
3. with the executor again, after every file the run created (and `.snakemake/`) was deleted, so every job
   is served from the store (if the local executor's own re-run fails the same way, that is not ours).

Each run is checked as Snakemake's `tests/common.py` checks it: the run succeeds and every file under
`expected-results/` exists in the working directory with the same MD5 (unless the case says
`check_md5=False`). A `shouldfail` case must exit non-zero instead (results are compared only if it says
`check_results=True`); its executor run must fail the same way (the same rules fail, naming the same
exception when the case names one) and the store must hold no realisation of an output of a failed job;
it has no re-run from the store. `python -m tests.snakemake_compat` runs every case and writes
docs/snakemake-compat.md; `--only NAME,NAME` runs just those cases and prints their outcomes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import sdist
from tests.procs import run_group

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nixworkflow" / "snakemake-src"
TIMEOUT = 180.0
# Keyword arguments of Snakemake's run() (tests/common.py) and the Snakemake 9.27 option each one is.
FLAGS = {"forceall": "-F", "printshellcmds": "-p", "benchmark_extended": "--benchmark-extended",
         "all_temp": "--all-temp"}
OPTIONS = {"snakefile": "-s", "shadow_prefix": "--shadow-prefix", "retries": "--retries",
           "scheduler_ilp_solver": "--scheduler-ilp-solver", "batch": "--batch"}
LISTS = {"until": "--until", "omit_from": "--omit-from", "default_resources": "--default-resources",
         "cleanup_metadata": "--cleanup-metadata", "rerun_triggers": "--rerun-triggers"}
MAPPINGS = {"resources": "--resources", "overwrite_scatter": "--set-scatter", "overwrite_resources": "--set-resources"}
# Any keyword argument not here skips the case (its reason names it).
SUPPORTED = {"targets", "cores", "config", "configfiles", "check_md5", "shellcmd", "check_results", "shouldfail",
             *FLAGS, *OPTIONS, *LISTS, *MAPPINGS}
ALLOWED_MARKERS = ("skip_on_windows", "pytest.mark.skipif(ON_MACOS")
# Workflows whose Snakefile needs what this machine or a hermetic run does not have.
NEEDS = ("conda:", "container:", "singularity:", "envmodules:", "wrapper:", "notebook:", "storage.", "storage:",
         "http://", "https://", "ftp://", "zenodo", "cwl:")


# Cases whose re-run from the store is known not to match, each for a documented reason (docs/snakemake.md).
# Only the re-run is excused: the executor's own run must still pass.
KNOWN = {
    "priority": "every job also appends to order.out, which no rule declares: undeclared files are not "
                "restored, so a fully restored re-run leaves no order.out",
}


def installed_version() -> str:
    return sdist.installed("snakemake")


def source_tests(version: str | None = None) -> Path:
    """The `tests/` folder of Snakemake's source distribution (tests/sdist.py)."""
    return sdist.unpacked("snakemake", version or installed_version(), "tests", CACHE)


@dataclass
class Case:
    """One of Snakemake's test functions, as a command line."""

    name: str
    directory: Path
    args: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)  # run(targets=...): last, after `--`
    config: dict[str, Any] | None = None
    configfiles: list[str] = field(default_factory=list)
    check_results: bool | None = None  # None: as common.py, True unless the case should fail
    check_md5: bool = True
    shouldfail: bool = False  # the run must exit non-zero
    expected_error: str | None = None  # run(shouldfail=SomeError): the output must name it
    skip: str | None = None  # why the case cannot run here

    def argv(self, executor: bool, config_file: Path | None) -> list[str]:
        extra = []
        if not any(a in ("-c", "--cores", "-j", "--jobs") or a.startswith(("-c", "--cores=")) for a in self.args):
            extra += ["-c", "3"]
        files = self.configfiles + ([str(config_file)] if config_file is not None else [])
        if files:  # one option: a second --configfile would replace the first list, not extend it
            extra += ["--configfile", *files]
        if executor:
            extra += ["--executor", "nixworkflow"]
        args = list(self.args)
        at = args.index("--") if "--" in args else len(args)  # options go before a `--` target separator
        targets = ([] if "--" in args else ["--"]) + self.targets if self.targets else []
        return [sys.executable, "-m", "snakemake", "--nocolor", *args[:at], *extra, *args[at:], *targets]


def cases(tests: Path) -> list[Case]:
    """Every test function of tests.py that is one `run(dpath(...))` call, with its arguments."""
    tree = ast.parse((tests / "tests.py").read_text())
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            case = _case(tests, node)
            if case is not None:
                out.append(case)
    return out


def _case(tests: Path, node: ast.FunctionDef) -> Case | None:
    body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], ast.Expr) or not isinstance(body[0].value, ast.Call):
        return None
    call = body[0].value
    if ast.unparse(call.func) != "run" or not call.args:
        return None
    where = call.args[0]
    if not (isinstance(where, ast.Call) and ast.unparse(where.func) == "dpath" and where.args
            and isinstance(where.args[0], ast.Constant)):
        return None
    case = Case(node.name.removeprefix("test_"), tests / where.args[0].value)
    markers = [ast.unparse(d) for d in node.decorator_list]
    odd = [m for m in markers if not m.startswith(ALLOWED_MARKERS)]
    if odd:
        case.skip = f"marked {odd[0][:40]}"
        return case
    unsupported = [kw.arg for kw in call.keywords if kw.arg not in SUPPORTED]
    if unsupported:
        case.skip = f"uses run({unsupported[0]}=...)"
        return case
    for kw in call.keywords:
        if kw.arg == "shouldfail" and isinstance(kw.value, ast.Name):  # shouldfail=SomeError
            case.shouldfail, case.expected_error = True, kw.value.id
            continue
        try:
            value = _value(kw.value, tests)
        except ValueError:
            case.skip = f"computes run({kw.arg}=...)"
            return case
        _apply(case, kw.arg, value)
        if case.skip:
            return case
    if case.check_results is None:
        case.check_results = not case.shouldfail
    if case.skip is None:
        case.skip = _needs(case)
    return case


def _value(node: ast.expr, tests: Path) -> Any:
    """A keyword argument's value: a literal, or one of the few constructors tests.py builds them with
    (`dict(...)`, `dpath(...)`, `Batch(rule, i, n)`, `RerunTrigger.X`); anything else raises ValueError."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, (ast.List, ast.Set, ast.Tuple)):
        return [_value(e, tests) for e in node.elts]
    if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "RerunTrigger":
        return node.attr.lower().replace("_", "-")  # the --rerun-triggers choice: SOFTWARE_ENV -> software-env
    if isinstance(node, ast.Call):
        func = ast.unparse(node.func)
        args = [ast.literal_eval(a) for a in node.args]
        if func == "dict" and not args:
            return {k.arg: _value(k.value, tests) for k in node.keywords}
        if func == "dpath" and len(args) == 1 and not node.keywords:
            return str(tests / args[0])
        if func == "Batch" and len(args) == 3 and not node.keywords:
            return f"{args[0]}={args[1]}/{args[2]}"  # parse_batch's RULE=BATCH/BATCHES
    raise ValueError(ast.unparse(node))


def _assignment(value: Any) -> str:
    """A resource value as Snakemake's CLI parses it: a number, or a quoted string."""
    return repr(value) if isinstance(value, str) else str(value)


def _apply(case: Case, name: str, value: Any) -> None:
    if name == "targets":
        case.targets += list(value)
    elif name == "cores":
        case.args += ["-c", str(value)]
    elif name == "config":
        case.config = dict(value)
    elif name == "configfiles":
        case.configfiles += [str(v) for v in value]
    elif name == "shouldfail":
        case.shouldfail = bool(value)
    elif name in FLAGS:
        case.args += [FLAGS[name]] if value else []
    elif name in OPTIONS:
        case.args += [OPTIONS[name], str(value)] if value is not None else []
    elif name in LISTS:
        case.args += [LISTS[name], *map(str, value)] if value else []
    elif name == "overwrite_resources":
        case.args += [MAPPINGS[name], *(f"{rule}:{k}={_assignment(v)}" for rule, res in value.items()
                                        for k, v in res.items())] if value else []
    elif name in MAPPINGS:
        case.args += [MAPPINGS[name], *(f"{k}={_assignment(v)}" for k, v in value.items())] if value else []
    elif name == "check_md5":
        case.check_md5 = bool(value)
    elif name == "check_results":
        case.check_results = bool(value)
    elif name == "shellcmd":
        words = shlex.split(value)
        if not words or words[0] != "snakemake":
            case.skip = "shell command is not snakemake"
        else:
            case.args += words[1:]


def _needs(case: Case) -> str | None:
    if not case.directory.is_dir():
        return "no such directory"
    snakefile = case.directory / next((case.args[i + 1] for i, a in enumerate(case.args[:-1]) if a == "-s"),
                                      "Snakefile")
    if not snakefile.is_file():
        return "no Snakefile"
    if case.check_results and not (case.directory / "expected-results").is_dir():
        return "no expected-results"
    text = "".join(p.read_text(errors="replace") for p in case.directory.rglob("*")
                   if p.is_file() and (p.name.startswith("Snakefile") or p.suffix in (".smk", ".py", ".yaml")))
    for need in NEEDS:
        if need in text:
            return f"needs {need.strip(':(')}"
    return None


@dataclass
class Run:
    ok: bool
    why: str = ""
    seconds: float = 0.0
    output: str = ""
    failed: bool = False  # exited non-zero (for a shouldfail case, `ok` then means: as expected)


@dataclass
class Outcome:
    """What the three runs of a case gave. `regression` is what a test fails on."""

    case: Case
    local: Run | None = None
    executor: Run | None = None
    rerun: Run | None = None
    local_rerun: Run | None = None
    stored: int = 0  # realisations in the store after the executor's run
    differs: str | None = None  # shouldfail: how the executor's failure differs from the local one
    leaked: list[str] = field(default_factory=list)  # shouldfail: stored realisations of failed jobs' outputs

    @property
    def restored(self) -> int:
        """Jobs the re-run served from the store (each says so on Snakemake's log)."""
        return self.rerun.output.count("nixworkflow: restored the outputs") if self.rerun else 0

    @property
    def regression(self) -> str | None:
        if self.case.skip or self.local is None or not self.local.ok:
            return None
        if self.executor is None or not self.executor.ok:
            return f"--executor nixworkflow: {self.executor.why if self.executor else 'not run'}"
        if self.differs:
            return f"--executor nixworkflow fails differently: {self.differs}"
        if self.leaked:
            return f"the store holds a realisation of a failed job's output: {', '.join(self.leaked)[:200]}"
        if self.rerun is not None and not self.rerun.ok and (self.local_rerun is None or self.local_rerun.ok) \
                and self.case.name not in KNOWN:
            return f"re-run from the store: {self.rerun.why}"
        return None

    @property
    def status(self) -> str:
        if self.case.skip:
            return f"skipped ({self.case.skip})"
        if self.local is None or not self.local.ok:
            if self.case.shouldfail:
                return f"the local executor does not fail as expected ({self.local.why if self.local else 'not run'})"
            return f"fails with the local executor ({self.local.why if self.local else 'not run'})"
        if self.regression:
            return "REGRESSION"
        if self.case.shouldfail:
            return "passes (fails as expected, the same way; nothing of the failed jobs stored)"
        if self.rerun is not None and not self.rerun.ok and self.case.name in KNOWN:
            return f"passes; re-run from the store: known limitation ({KNOWN[self.case.name]})"
        if self.rerun is not None and not self.rerun.ok:
            return "passes; re-run fails with the local executor too"
        return "passes"


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def compare(case: Case, workdir: Path) -> str | None:
    """common.py's check: every expected file exists in the working directory, with the same MD5."""
    results = case.directory / "expected-results"
    if not case.check_results or not results.is_dir():
        return None
    for expected in sorted(results.rglob("*")):
        rel = expected.relative_to(results)
        if not expected.is_file() or rel.name in (".gitignore", ".gitkeep") or rel.name.endswith("_WIN"):
            continue
        target = workdir / rel
        if not target.exists():
            return f'expected file "{rel}" not produced'
        if case.check_md5 and md5(target) != md5(expected):
            return f"wrong result produced for file '{rel}'"
    return None


def snakemake(case: Case, workdir: Path, store: Path, executor: bool, config_file: Path | None) -> Run:
    env = dict(os.environ, PYTHONPATH=str(REPO), NIX_WORKFLOW_STORE=str(store))
    start = time.monotonic()
    proc = execute(case.argv(executor, config_file), workdir, env)
    if proc is None:
        return Run(False, f"timed out after {TIMEOUT:.0f} s", TIMEOUT)
    seconds = time.monotonic() - start
    failed = proc.returncode != 0
    if failed and not case.shouldfail:
        return Run(False, f"exit {proc.returncode}: {last_error(proc.stdout)}", seconds, proc.stdout, failed)
    if case.shouldfail and not failed:
        return Run(False, "exit 0, but the case should fail", seconds, proc.stdout)
    if case.expected_error and not re.search(rf"\b{case.expected_error}\b", proc.stdout):
        return Run(False, f"fails, but not with {case.expected_error}: {last_error(proc.stdout)}", seconds,
                   proc.stdout, failed)
    why = compare(case, workdir)
    return Run(why is None, why or "", seconds, proc.stdout, failed)


def execute(argv: list[str], workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str] | None:
    """Run Snakemake to its exit (None: timed out; tests/procs.py: a job process it leaves behind, a `pipe()`
    reader whose writer failed in `pipes_fail`, is killed)."""
    code, output = run_group(argv, workdir, env, TIMEOUT)
    return None if code is None else subprocess.CompletedProcess(argv, code, output)


ERROR_BLOCK = re.compile(r"^Error in rule (\S+):\n((?:[ \t]+.*(?:\n|$))*)", re.M)
EXCEPTION = re.compile(r"^(\w+(?:Error|Exception))\b", re.M)
RULE_EXCEPTION = re.compile(r"^\w+(?:Error|Exception) in rule (\S+) in file", re.M)


def failed_jobs(output: str) -> list[tuple[str, list[str]]]:
    """(rule, output paths) of every `Error in rule R:` block Snakemake printed."""
    jobs = []
    for m in ERROR_BLOCK.finditer(output):
        paths = next((line.split(":", 1)[1].strip() for line in m.group(2).splitlines()
                      if line.strip().startswith("output:")), "")
        jobs.append((m.group(1), [p for p in paths.split(", ") if p]))
    return jobs


def failure(output: str) -> tuple[list[str], list[str]]:
    """What a failed run says went wrong: the rules whose jobs failed (an `Error in rule R` block, or an
    exception raised in a rule: the executor checks `ensure()` and missing outputs inside the job, which
    Snakemake then reports with a block of its own, where the local executor's post-processing raises
    without one), and the exceptions it names."""
    rules = {rule for rule, _ in failed_jobs(output)} | set(RULE_EXCEPTION.findall(output))
    return sorted(rules), sorted(set(EXCEPTION.findall(output)))


def differs(local: str, executor: str) -> str | None:
    """How the executor's failure differs from the local executor's, if it does."""
    (rules, errors), (rules2, errors2) = failure(local), failure(executor)
    if rules != rules2:
        return f"failed rules {rules2 or 'none'} instead of {rules or 'none'}"
    if errors != errors2:
        return f"names {errors2 or 'no exception'} instead of {errors or 'no exception'}"
    return None


def realisations(store: Path) -> list[dict[str, Any]]:
    where = store / "realisations"
    return [json.loads(p.read_text()) for p in sorted(where.glob("*.json"))] if where.is_dir() else []


def leaked(store: Path, output: str) -> list[str]:
    """Outputs of jobs that failed in this run (Snakemake's `Error in rule` blocks) that a realisation in the
    store nevertheless records: the store must never hold the result of a failed job."""
    failed = {path for _, paths in failed_jobs(output) for path in paths}
    return sorted(f"{doc.get('provenance', {}).get('rule', '?')}: {name}" for doc in realisations(store)
                  for name in doc.get("outputs", {}) if name in failed)


def last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "Error" in line or "Exception" in line:
            return line[:200]
    return lines[-1][:200] if lines else "no output"


def listing(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files}


def delete_created(workdir: Path, original: set[str]) -> None:
    """Delete every path the run created (and `.snakemake/`), as a user's `rm -rf` of the outputs would."""
    for dirpath, dirnames, filenames in os.walk(workdir, topdown=True):
        for name in list(dirnames) + filenames:
            path = Path(dirpath, name)
            rel = os.path.relpath(path, workdir)
            if rel in original and rel != ".snakemake":
                continue
            if name in dirnames:
                dirnames.remove(name)
            remove(path)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for d, _, _ in os.walk(path):
            os.chmod(d, os.stat(d).st_mode | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
        shutil.rmtree(path)
    else:
        path.unlink()


def prepare(case: Case, where: Path) -> Path:
    workdir = where / case.name
    shutil.copytree(case.directory, workdir, symlinks=True)
    return workdir


def run_case(case: Case, scratch: Path) -> Outcome:
    """The three runs of a case (the local re-run only when the executor's re-run fails)."""
    outcome = Outcome(case)
    if case.skip:
        return outcome
    config_file = None
    if case.config is not None:
        config_file = scratch / f"{case.name}.config.json"
        config_file.write_text(json.dumps(case.config))
    store = scratch / "store"
    local = prepare(case, scratch / "local")
    original = listing(local)
    outcome.local = snakemake(case, local, store, False, config_file)
    if not outcome.local.ok:
        return outcome
    mine = prepare(case, scratch / "executor")
    outcome.executor = snakemake(case, mine, store, True, config_file)
    outcome.stored = len(realisations(store))
    if case.shouldfail and outcome.executor.failed:
        outcome.differs = differs(outcome.local.output, outcome.executor.output)
        outcome.leaked = leaked(store, outcome.executor.output)
    if not outcome.executor.ok or case.shouldfail:  # a failed run has nothing to restore
        return outcome
    delete_created(mine, original)
    outcome.rerun = snakemake(case, mine, store, True, config_file)
    if not outcome.rerun.ok:
        delete_created(local, original)
        outcome.local_rerun = snakemake(case, local, store, False, config_file)
    return outcome


def runnable(tests: Path) -> Iterator[Case]:
    return (c for c in cases(tests) if not c.skip)


def table(outcomes: list[Outcome], version: str) -> str:
    ran = [o for o in outcomes if not o.case.skip]
    passing = [o for o in ran if o.local and o.local.ok]
    bad = [o for o in passing if o.regression]
    known = [o for o in passing if o.case.name in KNOWN and o.rerun is not None and not o.rerun.ok]
    failing = [o for o in passing if o.case.shouldfail and not o.regression]
    lines = [
        "## Snakemake's own test workflows with `--executor nixworkflow`",
        "",
        f"Generated by `make compat` (tests/snakemake_compat.py) against Snakemake {version}'s source distribution.",
        summary(len(outcomes), len(ran), len(passing), len(bad),
                sum(1 for o in passing if o.rerun is not None and o.rerun.ok), len(known), len(failing)),
        "",
        "Runs: local executor, `--executor nixworkflow`, then the executor again after deleting every file the "
        "run created and `.snakemake/`. Each is checked as Snakemake's tests/common.py does (success, and the "
        "MD5 of every file in `expected-results/`). A `shouldfail` case must exit non-zero instead, with the "
        "executor too, failing in the same rules and naming the same exceptions as with the local executor, and "
        "no realisation in the store may record an output of a job that failed; it has no re-run from the store. "
        "Skipped: test functions that are not a single `run()` call "
        "with arguments expressible on the command line, or that need conda, containers, a network, "
        "cloud storage or notebooks.",
        "",
        HEADER,
        "|---|---|---|---|---|---|",
        *rows(outcomes),
    ]
    skipped = sorted(o.case.name for o in outcomes if o.case.skip)
    lines += ["", f"Skipped ({len(skipped)}): " + ", ".join(skipped), ""]
    return "\n".join(lines)


def summary(functions: int, ran: int, passing: int, bad: int, rerun: int, known: int, failing: int) -> str:
    """The table's opening sentence (its counts: a partial run's rows merged into the table recount them)."""
    return (f"{functions} test functions; {ran} runnable here; {passing} pass with the local executor; of those, "
            f"{passing - bad} pass with `--executor nixworkflow` ({failing} of them must fail, `shouldfail`, and "
            f"fail the same way with the executor, which stores nothing of the failed jobs; they have no re-run); "
            f"of the {passing - failing} others, {rerun} also pass after deleting their outputs (re-run from the "
            f"store), {known} re-run with a known, documented limitation (the rest: their re-run fails with the "
            f"local executor too); {bad} regressions.")


HEADER = "| workflow | local | executor | re-run from store | jobs restored | status |"


def rows(outcomes: list[Outcome]) -> list[str]:
    """The table's row of each case that ran, by name."""
    lines = []
    for o in sorted(outcomes, key=lambda o: o.case.name):
        if o.case.skip:
            continue
        cells = [_cell(r) for r in (o.local, o.executor, o.rerun)]
        restored = str(o.restored) if o.rerun is not None else "–"
        status = o.status.replace("|", "/")[:160]
        lines.append(f"| {o.case.name} | {' | '.join(cells)} | {restored} | {status} |")
    return lines


def _cell(run: Run | None) -> str:
    if run is None:
        return "–"
    if run.ok:
        return f"fails as expected {run.seconds:.1f} s" if run.failed else f"ok {run.seconds:.1f} s"
    return f"FAIL: {run.why.replace('|', '/')[:80]}"


def main(argv: list[str]) -> int:
    """`make compat`: every runnable case, two at a time (COMPAT_JOBS); the table goes to
    docs/snakemake-compat.md. `--only NAME,NAME` (or names as arguments): just those cases, whose table rows
    are printed instead."""
    import concurrent.futures as cf

    tests = source_tests()
    every = cases(tests)
    only = {n for a in argv if a != "--only" for n in a.removeprefix("--only=").split(",") if n}
    unknown = only - {c.name for c in every}
    if unknown:
        print(f"no such case: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    todo = [c for c in every if not only or c.name in only]
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="nw-compat-") as scratch, \
            cf.ThreadPoolExecutor(int(os.environ.get("COMPAT_JOBS", "2"))) as pool:
        futures = {}
        for c in todo:
            where = Path(scratch) / c.name
            where.mkdir()
            futures[pool.submit(run_case, c, where)] = c
        for future in cf.as_completed(futures):
            o = future.result()
            outcomes.append(o)
            why = o.regression or (o.local.why if o.local and not o.local.ok else "")
            print(f"{o.case.name}: {o.status}" + (f" — {why}" if why else ""), flush=True)
    if not only:
        (REPO / "docs" / "snakemake-compat.md").write_text(table(outcomes, installed_version()))
    else:
        print("\n".join([HEADER, *rows(outcomes)]))
    bad = [o for o in outcomes if o.regression]
    print(f"{len(bad)} regressions" + "".join(f"\n  {o.case.name}: {o.regression}" for o in bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
