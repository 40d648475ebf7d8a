"""Docs probe 11b: docs/luigi.md says a dangling link in a plain task's input directory "fails the task, naming the
directory". It did, but the paragraph carried Python's raw `[Errno 2] No such file or directory: '…'` (shutil's
error text) instead of saying which link dangles and where it points."""

from __future__ import annotations

import os
from pathlib import Path

import luigi
import pytest

from luigi_nixworkflow import NixTask
from tests.luigi_run import build


class LinkFarm(luigi.ExternalTask):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("farm")


class CatFarm(NixTask):
    def requires(self) -> luigi.Task:
        return LinkFarm()

    def command(self) -> str:
        return f"cat {self.input().path}/x > $out/y"


def test_a_dangling_link_in_an_input_directory_is_named_without_a_raw_errno(
        store_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    Path("shared").mkdir()
    Path("shared/x").write_text("x\n")
    Path("farm").mkdir()
    os.symlink("../shared/x", "farm/x")
    os.symlink("../shared/gone.txt", "farm/gone.txt")  # points to nothing
    build(CatFarm(), ok=False)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    failure = [e for e in errors if "cannot copy what its symlinks point to" in e]
    assert failure, errors
    assert "[Errno" not in failure[0], failure[0]
    assert "farm/gone.txt is a link to ../shared/gone.txt, which does not exist" in failure[0], failure[0]
    assert not list((store_root / "realisations").rglob("*.json"))  # nothing stored
