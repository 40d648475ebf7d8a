"""A sample of Snakemake's own multi-run pytest tests, run by Snakemake's pytest as is and with run()'s default
executor switched to nixworkflow (tests/snakemake_pytest_compat.py; `make compat-pytest` runs them all).

The sample is chosen from quick tests that run Snakemake several times on one working directory (a re-run after an
edit, a temp file, a checkpoint) and pass with the local executor here; a sample test failing with the local
executor is a broken baseline, a failure too. Each must actually reach the executor: a switched run() call and a
realisation in the test's store, or the comparison would prove nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import sdist
from tests import snakemake_pytest_compat as runner

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

SAMPLE = ["test_temp", "test_checkpoint_rerun", "test_failed_intermediate"]


@pytest.fixture(scope="session")
def selection() -> dict[str, runner.Selected]:
    tests = sdist.tests_or_skip(runner.source_tests, "Snakemake", "NW_REQUIRE_SNAKEMAKE_TESTS")
    return {s.name: s for s in runner.selection(tests)}


@pytest.mark.parametrize("name", SAMPLE)
def test_snakemake_pytest(name: str, selection: dict[str, runner.Selected], tmp_path: Path) -> None:
    chosen = selection.get(name)
    assert chosen is not None, f"{name} is no longer a test `make compat` leaves out: update SAMPLE"
    assert chosen.skip is None, f"{name} cannot run here ({chosen.skip}): update SAMPLE"
    outcome = runner.run_test(runner.source_tests(), chosen, tmp_path, runner.shim_dir(tmp_path))
    assert outcome.local is not None and outcome.local.outcome == "passed", \
        f"baseline: fails with the local executor:\n{outcome.local.output[-3000:] if outcome.local else ''}"
    assert outcome.executor is not None
    assert outcome.executor.outcome == "passed", f"with the executor:\n{outcome.executor.output[-4000:]}"
    assert outcome.executor.switched > 0 and outcome.executor.stored > 0, "the executor never ran"
    assert outcome.local.switched == 0, "the local baseline must not be switched"


def test_selection_leaves_out_what_compat_runs(selection: dict[str, runner.Selected]) -> None:
    """The default selection is the complement of `make compat`'s cases: no test function runs in both."""
    from tests import snakemake_compat as compat

    ran = {f"test_{c.name}" for c in compat.runnable(runner.source_tests())}
    assert selection and not ran & set(selection)
    assert "test_temp" in selection and "test_01" not in selection
