"""A sample of Snakemake's own test workflows, run with the local executor, with `--executor nixworkflow`
and again from the store after deleting their outputs (tests/snakemake_compat.py; `make compat` runs all).

The sample is chosen from quick workflows that pass with the local executor here; a sample case failing
with the local executor is a broken baseline (a failure too: the comparison would prove nothing).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests import snakemake_compat as compat

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

SAMPLE = [
    "test01", "test02", "test03", "test05", "test06", "test07", "test13",
    "issue956", "set_threads", "set_resources_complex_cli", "ancient_cli", "subpath", "params",
    "same_wildcard", "unpack_dict", "unpack_list", "no_temp", "shell", "globwildcards", "keyword_list",
    "ruledeps", "local_import", "touch", "config", "update_config", "config_replacing", "wildcard_keyword",
    "temp_expand", "wildcard_count_ambiguity", "name_override", "multiple_includes", "empty_include",
    "yaml_config", "lazy_resources",
]


@pytest.fixture(scope="session")
def cases() -> dict[str, compat.Case]:
    try:
        tests = compat.source_tests()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        why = f"Snakemake's source distribution cannot be downloaded here: {e}"
        if os.environ.get("NW_REQUIRE_SNAKEMAKE_TESTS") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return {c.name: c for c in compat.cases(tests)}


def test_the_sample_is_large_enough() -> None:
    assert len(set(SAMPLE)) >= 30


@pytest.mark.parametrize("name", SAMPLE)
def test_snakemake_workflow(name: str, cases: dict[str, compat.Case], tmp_path: Path) -> None:
    case = cases.get(name)
    assert case is not None, f"{name} is no longer a test of this Snakemake release: update SAMPLE"
    assert case.skip is None, f"{name} cannot run here ({case.skip}): update SAMPLE"
    outcome = compat.run_case(case, tmp_path)
    assert outcome.local is not None and outcome.local.ok, \
        f"baseline: fails with the local executor: {outcome.local.why if outcome.local else ''}"
    failed = next((r for r in (outcome.executor, outcome.rerun) if r is not None and not r.ok), None)
    assert outcome.regression is None, f"{outcome.regression}\n{failed.output[-3000:] if failed else ''}"
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
