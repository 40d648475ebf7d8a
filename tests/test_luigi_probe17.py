"""Probing wave 17 (Luigi): everyday pipelines written as plain Luigi and migrated by changing only the base class
(RangeDaily naming its parameter, a WrapperTask aggregating dated tasks, data files named by the task's parameters),
run with the real `luigi` command against a private store. Each test is a bug that probing found, and fails on the
code before its fix."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.luigi_run import luigi_cli, runs

# ---- RangeDaily(param_name=...) over a task whose date is not its first parameter --------------------------------

RANGED = '''
import datetime
import luigi
import luigi.tools.range
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Stage(NixTask):
    date = luigi.DateParameter()

    def output(self):
        return luigi.LocalTarget(self.date.strftime("out/stage/%Y-%m-%d.txt"))

    def run(self):
        note("Stage")
        with self.output().open("w") as f:
            f.write(f"stage {self.date}")


class Combine(NixTask):
    upstream = luigi.TaskParameter(default=Stage)  # positional, first: RangeDaily is told which one is the date
    date = luigi.DateParameter()

    def requires(self):
        return self.upstream(date=self.date)

    def output(self):
        return luigi.LocalTarget(self.date.strftime("out/comb/%Y-%m-%d.txt"))

    def run(self):
        note("Combine")
        with self.input().open() as f, self.output().open("w") as g:
            g.write("[" + f.read() + "]")


class Ranged(luigi.WrapperTask):
    def requires(self):
        return luigi.tools.range.RangeDaily(of=Combine, param_name="date", start=datetime.date(2024, 1, 1),
                                            stop=datetime.date(2024, 1, 4), days_back=100000)
'''


def test_range_daily_with_param_name_over_a_task_whose_date_is_not_first() -> None:
    """`RangeDaily(of=Combine, param_name="date")` where Combine's first parameter is a TaskParameter: plain Luigi
    runs Combine for each day (its bulk_complete raises, and the range tool instantiates Combine(date=d)), but
    NixTask.bulk_complete passed each date positionally (MixinNaiveBulkComplete), to `upstream`, so scheduling
    failed with "requires the 'date' parameter to be set". Each day is asked by `date` now, and a re-run with the
    outputs deleted restores them with nothing run."""
    Path("ranged.py").write_text(RANGED)
    luigi_cli("--module", "ranged", "Ranged")
    assert runs() == {"Stage": 3, "Combine": 3}
    assert Path("out/comb/2024-01-02.txt").read_text() == "[stage 2024-01-02]"
    for p in Path("out/comb").iterdir():
        p.unlink()
    luigi_cli("--module", "ranged", "Ranged")
    assert runs() == {"Stage": 3, "Combine": 3}
    assert Path("out/comb/2024-01-03.txt").read_text() == "[stage 2024-01-03]"


# ---- the files of dated NixTasks behind a WrapperTask the served task requires -----------------------------------

GROUPED = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Enrich(NixTask):
    day = luigi.IntParameter()

    def output(self):
        return {"csv": luigi.LocalTarget(f"out/enriched/{self.day}.csv"),
                "bin": luigi.LocalTarget(f"out/enriched/{self.day}.bin", format=luigi.format.Nop)}

    def run(self):
        note("Enrich")
        with self.output()["csv"].open("w") as f:
            f.write(f"day,{self.day}\\n")
        with self.output()["bin"].open("w") as f:
            f.write(bytes([self.day, 0, 255]))


class AllDays(luigi.WrapperTask):
    def requires(self):
        return [Enrich(day=d) for d in (1, 2)]


class Report(NixTask):
    def requires(self):
        return AllDays()

    def output(self):
        return luigi.LocalTarget("out/report.txt")

    def run(self):
        note("Report")
        with self.output().open("w") as f:
            for d in (1, 2):
                f.write(Enrich(day=d).output()["csv"].open().read())
'''


def _digests(root: str) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_files_of_tasks_behind_a_wrapper_are_restored_when_the_task_is_served() -> None:
    """Report requires a WrapperTask over Enrich(day) (and is keyed through it). After `rm -rf out` the re-run served
    Report and restored out/report.txt, but not the Enrich files behind the wrapper: Luigi never checks AllDays once
    Report is complete, so out/enriched/ stayed empty where plain Luigi makes every file again. They are restored
    byte-identical now, with nothing run."""
    Path("grouped.py").write_text(GROUPED)
    luigi_cli("--module", "grouped", "Report")
    assert runs() == {"Enrich": 2, "Report": 1}
    before = _digests("out")
    assert len(before) == 5
    for p in Path("out").rglob("*"):
        if p.is_file():
            p.unlink()
    luigi_cli("--module", "grouped", "Report")
    assert runs() == {"Enrich": 2, "Report": 1}
    assert _digests("out") == before


# ---- a data file opened by a path built from the task's parameters ------------------------------------------------

DATED = '''
import os
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Daily(NixTask):
    date = luigi.DateParameter()

    def output(self):
        return luigi.LocalTarget(f"out/daily/{self.date:%Y-%m-%d}.txt")

    def run(self):
        note(f"Daily{self.date:%d}")
        with open(f"data/{self.date:%Y-%m-%d}.csv") as f:
            text = f.read()
        os.makedirs("out", exist_ok=True)
        with open(f"out/side_{self.date:%d}.log", "w") as g:  # written, not read: never keyed
            g.write(str(os.getpid()))
        with self.output().open("w") as f:
            f.write(text.upper())


class Joined(NixTask):
    name = luigi.Parameter()
    day = luigi.DateParameter()

    def output(self):
        return luigi.LocalTarget(f"out/joined/{self.name}.txt")

    def run(self):
        note(f"Joined{self.name}")
        with open(os.path.join("data", f"{self.day.strftime('%Y-%m-%d')}.csv")) as f:
            text = f.read()
        with self.output().open("w") as f:
            f.write(text + self.name)
'''


def test_a_data_file_named_by_the_tasks_parameters_is_keyed() -> None:
    """run() opens `f"data/{self.date:%Y-%m-%d}.csv"`, the day's raw file, without an ExternalTask for it: editing
    that file served the old result (only literal paths were keyed), where plain Luigi's first run of the pipeline
    reads the file as it is. The path is formatted with the task's own parameters and keyed by content, so editing
    one day's file re-runs that day's task only; a path the code writes (`open(..., "w")`) is not keyed."""
    Path("dated.py").write_text(DATED)
    Path("data").mkdir()
    Path("data/2024-01-01.csv").write_text("one\n")
    Path("data/2024-01-02.csv").write_text("two\n")
    for day in ("2024-01-01", "2024-01-02"):
        luigi_cli("--module", "dated", "Daily", "--date", day)
    luigi_cli("--module", "dated", "Joined", "--name", "a", "--day", "2024-01-02")
    assert runs() == {"Daily01": 1, "Daily02": 1, "Joineda": 1}
    for day in ("2024-01-01", "2024-01-02"):  # unchanged (and the side file written): served
        luigi_cli("--module", "dated", "Daily", "--date", day)
    assert runs() == {"Daily01": 1, "Daily02": 1, "Joineda": 1}
    Path("data/2024-01-02.csv").write_text("TWO v2\n")
    for day in ("2024-01-01", "2024-01-02"):
        luigi_cli("--module", "dated", "Daily", "--date", day)
    luigi_cli("--module", "dated", "Joined", "--name", "a", "--day", "2024-01-02")
    assert runs() == {"Daily01": 1, "Daily02": 2, "Joineda": 2}
    assert Path("out/daily/2024-01-02.txt").read_text() == "TWO V2\n"
    assert Path("out/joined/a.txt").read_text() == "TWO v2\na"
