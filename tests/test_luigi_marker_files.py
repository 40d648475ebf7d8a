"""A legacy-shape NixTask whose run() writes an empty marker file (`self.output().open("w").close()`, as Luigi's own
foo example and many pipelines mark a task done): in Luigi the file's existence is the result, so it is one here too.
Before, the task failed ("its declared output 'out' (a zero-byte file) is empty") unless the class also set
`allow_empty = True`, so changing the base class alone was not enough. A declared output that run() never made, and
a declared directory left empty, still fail: those are a step that wrote nothing."""

from __future__ import annotations

from pathlib import Path

import luigi

from luigi_nixworkflow import NixTask
from tests.luigi_run import build, note, runs


class Mark(NixTask):
    n = luigi.IntParameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(f"marks/m{self.n}")

    def run(self) -> None:
        note("Mark")
        self.output().open("w").close()


class EmptyDir(NixTask):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("made_dir")

    def run(self) -> None:
        Path(self.output().path).mkdir()


class NeverWrites(NixTask):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("never.txt")

    def run(self) -> None:
        pass


def test_an_empty_marker_file_is_a_result_stored_and_restored(store_root: Path) -> None:
    build(Mark(1), Mark(2))
    assert Path("marks/m1").read_bytes() == b"" and runs()["Mark"] == 2
    for p in Path("marks").iterdir():
        p.unlink()
    build(Mark(1), Mark(2))  # served: the empty files come back without a run
    assert runs()["Mark"] == 2 and Path("marks/m1").exists() and Path("marks/m2").read_bytes() == b""


def test_an_empty_directory_or_a_missing_file_still_fails(store_root: Path) -> None:
    build(EmptyDir(), ok=False)
    build(NeverWrites(), ok=False)
    assert not list((store_root / "realisations").rglob("*.json"))
