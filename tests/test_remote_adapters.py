"""The remote through the Snakemake executor: two "hosts" (separate stores, separate checkouts) sharing only a
file:// remote, configured by the environment (NIX_WORKFLOW_REMOTE, ...), which every front door reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import nw
from tests.test_snakemake import EVERY_JOB, executions, ok, snakemake, snapshot, workflow


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "executions.log"
    monkeypatch.setenv("NW_TEST_LOG", str(path))
    return path


def test_snakemake_host_b_executes_nothing_host_a_pushed(tmp_path: Path, log: Path) -> None:
    nw("key", "generate", "k1", "--secret-key-file", str(tmp_path / "k1.sec"), "--public-key-file",
       str(tmp_path / "k1.pub"), check=True)
    (tmp_path / "remote").mkdir()
    shared = {"NIX_WORKFLOW_REMOTE": f"file://{tmp_path / 'remote'}",
              "NIX_WORKFLOW_TRUSTED_KEYS": (tmp_path / "k1.pub").read_text().strip()}
    a = workflow(tmp_path / "a" / "wf", log)
    ok(snakemake(a, env=dict(shared, NIX_WORKFLOW_STORE=str(tmp_path / "store-a"), NIX_WORKFLOW_PUSH="1",
                             NIX_WORKFLOW_SECRET_KEY_FILE=str(tmp_path / "k1.sec"))))
    assert executions(log) == EVERY_JOB
    assert len(list((tmp_path / "remote" / "realisations").iterdir())) == sum(EVERY_JOB.values())

    b = workflow(tmp_path / "b" / "wf", log)
    ok(snakemake(b, env=dict(shared, NIX_WORKFLOW_STORE=str(tmp_path / "store-b"))))
    assert executions(log) == EVERY_JOB, "host B must execute nothing"
    assert snapshot(b) == snapshot(a)
