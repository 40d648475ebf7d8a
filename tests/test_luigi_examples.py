"""examples/luigi: the legacy pipeline, its two migration steps and the showcase as NixTasks."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import luigi
import pytest
from luigi.task_register import Register

import luigi_nixworkflow
from tests.helpers import REPO

EXAMPLES = REPO / "examples" / "luigi"


@pytest.fixture(autouse=True)
def importable() -> Iterator[None]:
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLES))


def build(task: luigi.Task, workers: int = 1) -> None:
    result = luigi.build([task], local_scheduler=True, workers=workers, detailed_summary=True, log_level="WARNING")
    assert result.status == luigi.execution_summary.LuigiStatusCode.SUCCESS, result.summary_text


def test_migration_steps_give_the_legacy_report(store_root: Path) -> None:
    import legacy
    import step1
    import step2

    build(legacy.Report())
    build(step1.Report())
    build(step2.Report())
    expected = Path("out/legacy/report.md").read_text()
    assert "| a |" in expected
    assert Path("out/step1/report.md").read_text() == expected
    assert (step2.Report().output() / "report.md").open().read() == expected
    # step 2's Stats produces what step 1's did: one object in the store serves both
    assert step1.Stats().output().path == step2.Stats().output().path


def test_showcase_as_nixtasks(store_root: Path) -> None:
    import showcase

    build(showcase.Compare(), workers=2)
    comparison = json.loads((showcase.Compare().output() / "comparison.json").open().read())
    assert [r["result"] for r in comparison["results"]] == [0, 1, 2]
    assert len(list((store_root / "realisations").iterdir())) == 11
