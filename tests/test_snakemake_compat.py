"""A sample of Snakemake's own test workflows, run with the local executor, with `--executor nixworkflow`
and again from the store after deleting their outputs (tests/snakemake_compat.py; `make compat` runs all).

The sample is chosen from quick workflows that pass with the local executor here; a sample case failing
with the local executor is a broken baseline (a failure too: the comparison would prove nothing).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import sdist
from tests import snakemake_compat as compat

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

SAMPLE = [
    "test01", "test02", "test03", "test06", "test07", "test13",
    "issue956", "set_threads", "set_resources_complex_cli", "ancient_cli", "subpath", "params",
    "same_wildcard", "unpack_dict", "unpack_list", "no_temp", "shell", "globwildcards", "keyword_list",
    "ruledeps", "local_import", "touch", "config", "update_config", "config_replacing", "wildcard_keyword",
    "temp_expand", "wildcard_count_ambiguity", "name_override", "multiple_includes", "empty_include",
    "yaml_config", "lazy_resources", "pipes_simple",
    # keyword arguments translated to options (--until, --default-resources) and cases that must fail
    "until", "default_resources", "test09", "ensure_nonempty_fail",
]


@pytest.fixture(scope="session")
def cases() -> dict[str, compat.Case]:
    tests = sdist.tests_or_skip(compat.source_tests, "Snakemake", "NW_REQUIRE_SNAKEMAKE_TESTS")
    return {c.name: c for c in compat.cases(tests)}


def test_the_sample_is_large_enough() -> None:
    assert len(set(SAMPLE)) >= 30


LONG_SAMPLE = ["test05", "pipes_multiple"]  # slower (13-21 s): in `make test-long`, so make test stays under 20 minutes


@pytest.mark.parametrize("name", SAMPLE + [pytest.param(n, marks=pytest.mark.long) for n in LONG_SAMPLE])
def test_snakemake_workflow(name: str, cases: dict[str, compat.Case], tmp_path: Path) -> None:
    case = cases.get(name)
    assert case is not None, f"{name} is no longer a test of this Snakemake release: update SAMPLE"
    assert case.skip is None, f"{name} cannot run here ({case.skip}): update SAMPLE"
    outcome = compat.run_case(case, tmp_path)
    assert outcome.local is not None and outcome.local.ok, \
        f"baseline: fails with the local executor: {outcome.local.why if outcome.local else ''}"
    failed = next((r for r in (outcome.executor, outcome.rerun) if r is not None and not r.ok), None)
    assert outcome.regression is None, f"{outcome.regression}\n{failed.output[-3000:] if failed else ''}"
    if case.shouldfail:  # failed with both executors, the same way, and nothing of the failed jobs is stored
        assert outcome.executor is not None and outcome.executor.failed and outcome.rerun is None
        assert compat.failed_jobs(outcome.executor.output), "sample failing cases have a failing job to check"
        return
    assert outcome.rerun is not None and outcome.rerun.ok, f"re-run from the store failed: {outcome.rerun}"
    if outcome.stored:  # the re-run after deleting the outputs is served from the store, not re-executed
        assert outcome.restored > 0, f"nothing was restored from the store:\n{outcome.rerun.output[-3000:]}"


def test_comparison_fails_on_a_wrong_result(cases: dict[str, compat.Case], tmp_path: Path) -> None:
    """The runner's check is honest: a produced file that differs from expected-results is a failure."""
    case = cases["test01"]
    workdir = compat.prepare(case, tmp_path)
    expected = sorted(p for p in (case.directory / "expected-results").rglob("*") if p.is_file())[0]
    target = workdir / expected.relative_to(case.directory / "expected-results")
    assert compat.compare(case, workdir) is not None, "nothing ran yet: expected files are missing"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(expected.read_bytes())
    others = [p for p in (case.directory / "expected-results").rglob("*") if p.is_file() and p != expected]
    for p in others:
        t = workdir / p.relative_to(case.directory / "expected-results")
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_bytes(p.read_bytes())
    assert compat.compare(case, workdir) is None
    target.write_bytes(expected.read_bytes() + b"x")
    assert "wrong result" in (compat.compare(case, workdir) or "")


TESTS_PY = """
from .common import run, dpath
from snakemake.settings.types import Batch
from snakemake.settings.enums import RerunTrigger


def test_flags():
    run(dpath("wf"), printshellcmds=True, benchmark_extended=True, all_temp=True, forceall=False, retries=2,
        shadow_prefix="shadowdir", scheduler_ilp_solver="GLPK_CMD", targets=["a", "b c"])


def test_lists():
    run(dpath("wf"), until=["r1", "x.txt"], omit_from=["r2"], default_resources=["mem_mb=max(2*input.size, 1000)"],
        rerun_triggers={RerunTrigger.INPUT, RerunTrigger.SOFTWARE_ENV}, batch=Batch("agg", 1, 2))


def test_mappings():
    run(dpath("wf"), resources={"mem_mb": 20}, overwrite_scatter={"split": 2},
        overwrite_resources={"a": {"a": 1, "b": "foo"}}, configfiles=[dpath("wf/c.yaml")], config={"k": 1})


def test_fails():
    run(dpath("wf"), shouldfail=True)


def test_fails_checked():
    run(dpath("wf"), shouldfail=True, check_results=True)


def test_fails_with():
    run(dpath("wf"), shouldfail=WorkflowError)


def test_unknown():
    run(dpath("wf"), sigint_after=3)
"""


@pytest.fixture
def fake_tests(tmp_path: Path) -> Path:
    """A tests/ folder shaped like Snakemake's: tests.py and one workflow directory."""
    tests = tmp_path / "tests"
    (tests / "wf" / "expected-results").mkdir(parents=True)
    (tests / "wf" / "Snakefile").write_text("rule a:\n    output: 'a'\n    shell: 'touch {output}'\n")
    (tests / "tests.py").write_text(TESTS_PY)
    return tests


def test_keyword_arguments_become_options(fake_tests: Path, tmp_path: Path) -> None:
    """Each run() keyword argument is the option Snakemake's CLI has for it (tests/common.py passes the same
    value to the API); targets go last, after `--`, so no multi-valued option swallows them."""
    found = {c.name: c for c in compat.cases(fake_tests)}
    tail = 4  # python -m snakemake --nocolor
    assert found["flags"].argv(True, None)[tail:] == [
        "-p", "--benchmark-extended", "--all-temp", "--retries", "2", "--shadow-prefix", "shadowdir",
        "--scheduler-ilp-solver", "GLPK_CMD", "-c", "3", "--executor", "nixworkflow", "--", "a", "b c"]
    assert found["lists"].argv(False, None)[tail:] == [
        "--until", "r1", "x.txt", "--omit-from", "r2", "--default-resources", "mem_mb=max(2*input.size, 1000)",
        "--rerun-triggers", "input", "software-env", "--batch", "agg=1/2", "-c", "3"]
    config = tmp_path / "c.json"
    assert found["mappings"].argv(False, config)[tail:] == [
        "--resources", "mem_mb=20", "--set-scatter", "split=2", "--set-resources", "a:a=1", "a:b='foo'",
        "-c", "3", "--configfile", str(fake_tests / "wf" / "c.yaml"), str(config)]
    assert all(found[n].skip is None for n in ("flags", "lists", "mappings", "fails", "fails_checked"))
    assert found["unknown"].skip == "uses run(sigint_after=...)"


def test_shouldfail_cases(fake_tests: Path) -> None:
    """As in common.py, a case that should fail compares no results unless it says check_results=True."""
    found = {c.name: c for c in compat.cases(fake_tests)}
    assert found["fails"].shouldfail and not found["fails"].check_results
    assert found["fails_checked"].shouldfail and found["fails_checked"].check_results
    assert found["fails_with"].shouldfail and found["fails_with"].expected_error == "WorkflowError"
    assert found["flags"].check_results and not found["flags"].shouldfail


FAILED_RUN = """Select jobs to execute...
RuleException:
CalledProcessError in file "/w/Snakefile", line 26:
Command 'false' returned non-zero exit status 1.
Error in rule rule1:
    message: None
    jobid: 1
    output: test.inter, other.txt
    log: logs/test.log (check log file(s) for error details)
Shutting down, this might take some time.
WorkflowError:
At least one job did not complete successfully.
"""


def test_a_failed_jobs_output_in_the_store_is_found(tmp_path: Path) -> None:
    """The runner's leak check is honest: a realisation recording an output of a job the run reports as
    failed is named; realisations of other outputs are not."""
    store = tmp_path / "store"
    (store / "realisations").mkdir(parents=True)
    assert compat.failed_jobs(FAILED_RUN) == [("rule1", ["test.inter", "other.txt"])]
    (store / "realisations" / "k1.json").write_text(json.dumps(
        {"provenance": {"rule": "rule0"}, "outputs": {"test.in2": "x"}}))
    assert compat.leaked(store, FAILED_RUN) == []
    (store / "realisations" / "k2.json").write_text(json.dumps(
        {"provenance": {"rule": "rule1"}, "outputs": {"other.txt": "y"}}))
    assert compat.leaked(store, FAILED_RUN) == ["rule1: other.txt"]


def test_a_different_failure_is_found() -> None:
    """Failing is not enough: the executor's run must fail in the same rules, naming the same exceptions."""
    assert compat.differs(FAILED_RUN, FAILED_RUN) is None
    assert "failed rules" in (compat.differs(FAILED_RUN, FAILED_RUN.replace("rule rule1", "rule rule2")) or "")
    other = "Error in rule rule1:\n    jobid: 1\nNixWorkflowError:\nboom\n"
    assert "names" in (compat.differs(FAILED_RUN, other) or "")
    ensure = 'WorkflowError in rule a in file "/w/Snakefile", line 3:\nempty\nWorkflowError:\nAt least one\n'
    assert compat.differs(ensure, ensure + "Error in rule a:\n    output: test.txt\n") is None
