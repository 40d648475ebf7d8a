"""Issue 10, "what was seen": each everyday Luigi idiom that was wrong with NixTask, as a regression test.

Real Luigi (local scheduler, or the real `luigi` command in a subprocess), a private store per test."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import luigi
import luigi.tools.range
import pytest
from luigi.task_register import Register

import luigi_nixworkflow
from luigi_nixworkflow import NixTarget, NixTask
from nixlib.errors import NixWorkflowError
from tests.helpers import REPO, nw

LUIGI = str(Path(sys.executable).with_name("luigi"))


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    yield
    config = luigi.configuration.get_config()
    for section in ("Threshold", "nixworkflow"):
        config.remove_section(section)


def build(*tasks: luigi.Task) -> bool:
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    return luigi.build(list(tasks), local_scheduler=True, log_level="CRITICAL")


def ran(name: str) -> int:
    path = Path("runs.log")
    return path.read_text().split().count(name) if path.exists() else 0


def note(name: str) -> None:
    with open("runs.log", "a") as f:
        f.write(name + "\n")


def set_config(section: str, key: str, value: str) -> None:
    config = luigi.configuration.get_config()
    if not config.has_section(section):
        config.add_section(section)
    config.set(section, key, value)


# ---- a subclass overriding output() ----------------------------------------------------------


class Streams(NixTask):
    date = luigi.DateParameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(self.date.strftime("data/streams_%Y_%m_%d.tsv"))

    def run(self) -> None:
        note("Streams")
        with self.output().open("w") as f:
            f.write(f"artist\t{self.date}\n")


class MemoryTarget(luigi.Target):
    """A target the store cannot hold (like HdfsTarget): kept in memory."""

    written: set[str] = set()

    def __init__(self, name: str) -> None:
        self.name = name

    def exists(self) -> bool:
        return self.name in self.written


class StreamsElsewhere(Streams):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(self.date.strftime("elsewhere/streams_%Y_%m_%d.tsv"))


class StreamsRemote(Streams):  # as top_artists' StreamsHdfs
    def output(self) -> MemoryTarget:
        return MemoryTarget(str(self.date))

    def run(self) -> None:
        note("StreamsRemote")
        MemoryTarget.written.add(str(self.date))


def test_subclass_overriding_output_imports_and_works(store_root: Path) -> None:
    day = datetime.date(2024, 1, 2)
    assert build(Streams(date=day), StreamsElsewhere(date=day))
    assert Path("elsewhere/streams_2024_01_02.tsv").read_text() == "artist\t2024-01-02\n"
    assert Path("data/streams_2024_01_02.tsv").read_text() == "artist\t2024-01-02\n"
    assert build(StreamsElsewhere(date=day)) and ran("Streams") == 2
    # a target the store cannot hold: the task runs as plain Luigi (warned), it is not refused
    assert build(StreamsRemote(date=day)) and ran("StreamsRemote") == 1
    assert build(StreamsRemote(date=day)) and ran("StreamsRemote") == 1


# ---- dynamic dependencies ----------------------------------------------------------------------


class Numbers(NixTask):
    def requires(self) -> luigi.Task:
        return Source()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("numbers.txt")

    def run(self) -> None:
        note("Numbers")
        with self.input().open() as src, self.output().open("w") as dst:
            dst.write(",".join(str(len(word)) for word in src.read().split()))


class Square(NixTask):
    n = luigi.IntParameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(f"squares/{self.n}.txt")

    def run(self) -> None:
        note("Square")
        with self.output().open("w") as f:
            f.write(str(self.n * self.n))


class Dynamic(NixTask):
    """As Luigi's dynamic_requirements example: what it yields depends on what an earlier yield produced."""

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("dynamic.txt")

    def run(self) -> Iterator[Any]:
        numbers = yield Numbers()
        with numbers.open() as f:
            wanted = [int(x) for x in f.read().split(",")]
        squares = yield [Square(n=n) for n in wanted]
        with self.output().open("w") as out:
            out.write("+".join(t.open().read() for t in squares))
        note("Dynamic")


class AfterDynamic(NixTask):
    def requires(self) -> luigi.Task:
        return Dynamic()

    def produce(self, out: Path) -> None:
        note("AfterDynamic")
        (out / "x").write_text(Path("dynamic.txt").read_text() + "!")


def test_yield_in_run_schedules_and_keys_the_yielded_tasks(store_root: Path) -> None:
    Path("source.txt").write_text("ab cde\n")
    assert build(AfterDynamic())
    assert Path("dynamic.txt").read_text() == "4+9"
    assert (ran("Numbers"), ran("Square"), ran("Dynamic"), ran("AfterDynamic")) == (1, 2, 1, 1)
    assert build(AfterDynamic()) and (ran("Dynamic"), ran("AfterDynamic")) == (1, 1)
    Path("source.txt").write_text("abcd\n")  # what Dynamic yielded last time has changed: it runs again
    assert build(AfterDynamic())
    assert Path("dynamic.txt").read_text() == "16"
    assert (ran("Numbers"), ran("Square"), ran("Dynamic"), ran("AfterDynamic")) == (2, 3, 2, 2)
    assert (AfterDynamic().output() / "x").open().read() == "16!"
    assert build(AfterDynamic()) and ran("Dynamic") == 2


class YieldsInProduce(NixTask):
    def produce(self) -> Iterator[luigi.Task]:
        yield Square(n=1)


def test_yield_in_produce_is_still_a_clear_error(store_root: Path) -> None:
    with pytest.raises(NixWorkflowError, match="produce\\(\\) yields.*plain Luigi shape"):
        YieldsInProduce().complete()


# ---- keys see through plain tasks and wrappers ------------------------------------------------


class Source(luigi.ExternalTask):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("source.txt")


class First(NixTask):
    def requires(self) -> luigi.Task:
        return Source()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("first.txt")

    def run(self) -> None:
        note("First")
        with self.input().open() as src, self.output().open("w") as dst:
            dst.write(src.read().upper())


class Between(luigi.WrapperTask):
    def requires(self) -> luigi.Task:
        return First()


class Last(NixTask):
    def requires(self) -> luigi.Task:
        return Between()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("last.txt")

    def run(self) -> None:
        note("Last")
        with open("first.txt") as src, self.output().open("w") as dst:
            dst.write(src.read() + "!")


class Wrapped(luigi.WrapperTask):
    def requires(self) -> luigi.Task:
        return Source()


class OnlyWrapped(NixTask):
    def requires(self) -> luigi.Task:
        return Wrapped()

    def produce(self, out: Path) -> None:
        note("OnlyWrapped")
        (out / "copy").write_text(Path("source.txt").read_text())


def test_keys_see_through_wrapper_tasks(store_root: Path) -> None:
    Path("source.txt").write_text("one\n")
    assert build(Last(), OnlyWrapped())
    assert Path("last.txt").read_text() == "ONE\n!"
    Path("source.txt").write_text("two\n")
    assert build(Last(), OnlyWrapped())
    assert Path("last.txt").read_text() == "TWO\n!"  # NixTask -> WrapperTask -> NixTask: the change reached it
    assert (ran("First"), ran("Last"), ran("OnlyWrapped")) == (2, 2, 2)
    assert (OnlyWrapped().output() / "copy").open().read() == "two\n"
    assert build(Last(), OnlyWrapped()) and (ran("Last"), ran("OnlyWrapped")) == (2, 2)


# ---- luigi.Config values ----------------------------------------------------------------------


class Threshold(luigi.Config):
    value = luigi.IntParameter(default=1)


def read_threshold() -> int:  # a helper outside the class: the class must declare what it reads
    return Threshold().value


class UsesConfig(NixTask):
    def produce(self, out: Path) -> None:
        note("UsesConfig")
        (out / "value").write_text(str(Threshold().value))


class DeclaresConfig(NixTask):
    configs = (Threshold,)

    def produce(self, out: Path) -> None:
        note("DeclaresConfig")
        (out / "value").write_text(str(read_threshold()))


def test_config_values_a_task_reads_are_in_its_key(store_root: Path) -> None:
    assert build(UsesConfig(), DeclaresConfig())
    set_config("Threshold", "value", "2")
    assert build(UsesConfig(), DeclaresConfig())
    assert (ran("UsesConfig"), ran("DeclaresConfig")) == (2, 2)
    assert (UsesConfig().output() / "value").open().read() == "2"
    assert (DeclaresConfig().output() / "value").open().read() == "2"


# ---- forcing ------------------------------------------------------------------------------------


class ForceMixin:
    """The everyday "force" idiom: complete() says False when asked to."""

    force = luigi.BoolParameter(default=False, significant=False)

    def complete(self) -> bool:
        return False if self.force else super().complete()  # type: ignore[misc]


class Stamp(ForceMixin, NixTask):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("stamp.txt")

    def run(self) -> None:
        note("Stamp")
        with self.output().open("w") as f:
            f.write(f"run {ran('Stamp')}\n")


def test_force_from_a_complete_override_runs_again_and_replaces_the_result(store_root: Path) -> None:
    assert build(Stamp()) and build(Stamp()) and ran("Stamp") == 1
    assert build(Stamp(force=True)) and ran("Stamp") == 2
    assert Path("stamp.txt").read_text() == "run 2\n"
    Path("stamp.txt").unlink()
    assert build(Stamp()) and ran("Stamp") == 2  # served: the forced result replaced the first one
    assert Path("stamp.txt").read_text() == "run 2\n"
    set_config("nixworkflow", "force", "Stamp")  # or NIX_WORKFLOW_FORCE=Stamp
    assert build(Stamp()) and ran("Stamp") == 3
    assert Path("stamp.txt").read_text() == "run 3\n"


# ---- Luigi's contracts --------------------------------------------------------------------------


class Daily(NixTask):
    date = luigi.DateParameter()

    def produce(self, out: Path) -> None:
        note("Daily")
        (out / "day").write_text(str(self.date))


class DailyFile(NixTask):
    date = luigi.DateParameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(self.date.strftime("daily/%Y-%m-%d.txt"))

    def run(self) -> None:
        note("DailyFile")
        with self.output().open("w") as f:
            f.write(str(self.date))


NOW = int(datetime.datetime(2024, 1, 10).timestamp())  # RangeDaily looks at most days_back before now


def test_range_daily_over_nixtasks(store_root: Path) -> None:
    assert isinstance(Daily(date=datetime.date(2024, 1, 1)).output(), luigi.target.FileSystemTarget)
    assert isinstance(Daily(date=datetime.date(2024, 1, 1)).output(), NixTarget)
    start, stop = datetime.date(2024, 1, 1), datetime.date(2024, 1, 4)
    for of in (Daily, DailyFile):
        ranged = luigi.tools.range.RangeDaily(of=of, start=start, stop=stop, now=NOW)
        assert build(ranged) and ran(of.__name__) == 3
    Path("daily/2024-01-02.txt").unlink()
    Path("daily/2024-01-03.txt").write_text("not what the task wrote")  # a file on disk is not a result
    assert build(luigi.tools.range.RangeDaily(of=DailyFile, start=start, stop=stop, now=NOW))
    assert ran("DailyFile") == 3 and Path("daily/2024-01-03.txt").read_text() == "2024-01-03"


class Batched(NixTask):
    day = luigi.IntParameter(batch_method=max)

    def produce(self, out: Path) -> None:
        note("Batched")
        (out / "day").write_text(str(self.day))


class Days(luigi.WrapperTask):
    def requires(self) -> list[luigi.Task]:
        return [Batched(day=i) for i in range(3)]


def test_batch_method_tasks_each_run_and_are_complete(store_root: Path) -> None:
    assert build(Days()) and ran("Batched") == 3
    assert [(Batched(day=i).output() / "day").open().read() for i in range(3)] == ["0", "1", "2"]


ABBREV = """
import luigi
import luigi_nixworkflow  # an unmigrated module that merely imports the adapter


class Count(luigi.Task):
    n = luigi.IntParameter(default=1)

    def output(self):
        return luigi.LocalTarget(f"count_{self.n}.txt")

    def run(self):
        with self.output().open("w") as f:
            f.write(str(self.n))
"""


def test_importing_the_adapter_adds_no_global_flags(tmp_path: Path) -> None:
    (tmp_path / "abbrev.py").write_text(ABBREV)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}:{REPO}")
    proc = subprocess.run([LUIGI, "--module", "abbrev", "Count", "--n", "20", "--local-scheduler"], env=env,
                          text=True, capture_output=True, timeout=60)
    assert proc.returncode == 0 and Path("count_20.txt").read_text() == "20", proc.stderr[-2000:]
    proc = subprocess.run([LUIGI, "--module", "abbrev", "Count", "--help-all"], env=env, text=True,
                          capture_output=True, timeout=60)
    assert "--nixworkflow" not in proc.stdout


# ---- links ------------------------------------------------------------------------------------


def test_links_are_refreshed_whenever_a_task_is_found_complete(store_root: Path) -> None:
    link = Path("nix-workflow-output") / UsesConfig().task_id
    assert build(UsesConfig())
    first = os.readlink(link)
    set_config("Threshold", "value", "5")  # as an edit of the task would
    assert build(UsesConfig()) and os.readlink(link) != first
    luigi.configuration.get_config().remove_section("Threshold")  # reverted: served, and linked again
    assert build(UsesConfig()) and os.readlink(link) == first and ran("UsesConfig") == 2
    for entry in Path("nix-workflow-output").iterdir():
        entry.unlink()
    assert build(UsesConfig()) and os.readlink(link) == first and ran("UsesConfig") == 2
    nw("gc", "--min-age", "0", check=True)
    assert Path(first).is_dir() and (link / "value").read_text() == "1"


# ---- errors -----------------------------------------------------------------------------------


class Opaque:
    pass


class TakesObject(NixTask):
    thing = luigi.Parameter()

    def command(self) -> str:
        return "echo x > $out/x"


def test_unserialisable_parameter_error_chains_no_internal_traceback(store_root: Path) -> None:
    with pytest.warns(UserWarning):
        task = TakesObject(thing=Opaque())
    with pytest.raises(NixWorkflowError, match="parameter 'thing'") as info:
        task.complete()
    assert info.value.__context__ is None and info.value.__cause__ is None
