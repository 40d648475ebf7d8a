"""A command() task reading a plain upstream task's directory whose files are symlinks out of it (a data directory of
links into a shared dataset: `rawdir/big.txt -> ../shared/big.txt`).

The command reads the store's copy of that directory, which held only the links: a relative one dangled there, so
the step failed where plain Luigi worked ("cat: …/store/…/big.txt: No such file or directory"), and an absolute one
read live data. It now reads a copy with the links followed (the key already covered what they point to)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import luigi
import pytest

from luigi_nixworkflow import NixTask
from tests.luigi_run import build, note, runs


class LinkedRawDir(luigi.Task):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("rawdir")


class ReadsLinks(NixTask):
    def requires(self) -> luigi.Task:
        return LinkedRawDir()

    def command(self) -> str:
        return f"cat {self.input().path}/rel.txt {self.input().path}/abs.txt {self.input().path}/sub/inner.txt " \
               "> $out/joined"


@pytest.fixture
def linked_dir(store_root: Path) -> Path:
    shared = Path("shared").absolute()
    (shared / "deep").mkdir(parents=True)
    (shared / "rel.txt").write_text("relative\n")
    (shared / "abs.txt").write_text("absolute\n")
    (shared / "deep" / "inner.txt").write_text("inner\n")
    Path("rawdir").mkdir()
    os.symlink("../shared/rel.txt", "rawdir/rel.txt")
    os.symlink(shared / "abs.txt", "rawdir/abs.txt")
    os.symlink("../shared/deep", "rawdir/sub")  # a linked directory
    return shared


def output_of(task: luigi.Task) -> str:
    return (Path(str(task.output())) / "joined").read_text()


def test_a_command_reads_the_data_behind_links_out_of_its_input_directory(linked_dir: Path, store_root: Path) -> None:
    build(ReadsLinks())
    assert output_of(ReadsLinks()) == "relative\nabsolute\ninner\n"
    (linked_dir / "rel.txt").write_text("relative, edited\n")  # the data behind a link: the key covers it
    build(ReadsLinks())
    assert output_of(ReadsLinks()) == "relative, edited\nabsolute\ninner\n"
    (linked_dir / "deep" / "inner.txt").write_text("inner, edited\n")
    build(ReadsLinks())
    assert output_of(ReadsLinks()) == "relative, edited\nabsolute\ninner, edited\n"
    realised = sorted(p.name for p in (store_root / "realisations").rglob("*.json"))
    assert len(realised) == 3  # one per content of the linked data
    build(ReadsLinks())  # nothing changed: served, nothing new recorded
    assert output_of(ReadsLinks()) == "relative, edited\nabsolute\ninner, edited\n"
    assert sorted(p.name for p in (store_root / "realisations").rglob("*.json")) == realised


def test_a_dangling_link_in_the_input_directory_is_a_clear_failure(linked_dir: Path, caplog: pytest.LogCaptureFixture
                                                                   ) -> None:
    os.symlink("../shared/nowhere.txt", "rawdir/gone.txt")
    build(ReadsLinks(), ok=False)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("cannot copy what its symlinks point to" in e and "rawdir" in e for e in errors), errors
    assert not any(r.exc_info for r in caplog.records if r.levelname == "ERROR")


# ---- a yielded task whose family another module's class shares ----------------------------------------------------


class DupSource(luigi.ExternalTask):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("source.txt")


TWIN = ("import luigi\nclass DupSource(luigi.ExternalTask):\n"
        "    def output(self):\n        return luigi.LocalTarget('x')\n")
exec(TWIN, {"__name__": "tests_twin_module"})  # the same family, defined in another module


class ReadsYielded(NixTask):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("copied.txt")

    def run(self) -> Iterator[luigi.Task]:
        source = yield DupSource()
        note("ReadsYielded")
        with self.output().open("w") as f:
            f.write(Path(source.path).read_text())


def test_a_yielded_task_is_found_again_by_its_module_when_another_class_shares_its_family(store_root: Path) -> None:
    """Luigi finds a class by its family alone, which two modules' classes made ambiguous: the yielded task counted
    as gone, so every build ran the task again though nothing had changed."""
    Path("source.txt").write_text("data\n")
    build(ReadsYielded())
    build(ReadsYielded())
    assert runs()["ReadsYielded"] == 1 and Path("copied.txt").read_text() == "data\n"
    Path("source.txt").write_text("new data\n")  # what it yielded changed: it runs again
    build(ReadsYielded())
    assert runs()["ReadsYielded"] == 2 and Path("copied.txt").read_text() == "new data\n"


def test_a_second_build_in_one_process_reads_the_edited_data_behind_the_links(linked_dir: Path) -> None:
    """A notebook's second luigi.build after the data behind a link was edited: the copy with the links followed was
    memoised per process, so the re-run (under the new key) read the old data."""
    build(ReadsLinks(), afresh=False)
    (linked_dir / "rel.txt").write_text("relative, edited\n")
    build(ReadsLinks(), afresh=False)
    assert output_of(ReadsLinks()) == "relative, edited\nabsolute\ninner\n"
