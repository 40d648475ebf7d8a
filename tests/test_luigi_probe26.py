"""Probing wave 26 (Luigi): legacy pipelines written afresh and migrated by changing base classes only. A task that
imports its upstream task inside `requires()` (the usual way around a circular import between two pipeline modules)
had that whole module keyed, so editing any other task there re-ran it and what follows; and the idioms no other test
covers: `on_success`/`on_failure` overrides and event handlers with `--workers 2`, a run() that raises after writing
part of its output, and parameter types whose values must key alike in every process (DateHour, TimeDelta, EnumList,
Numerical, ChoiceList, OptionalInt, Path, a DateInterval week, a TaskParameter). Each build is a new `luigi` process,
as a user's next run is (code digests are memoised per process)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from tests.luigi_run import luigi_cli, runs

# ---- two modules importing each other's tasks inside requires() -----------------------------------------------------

PIPELINE = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note

import lower


class Raw(luigi.ExternalTask):
    def output(self):
        return luigi.LocalTarget("data/raw.txt")


class Scale(NixTask):  # not required by Uses: its factor() runs inside Uses, so Uses is keyed by its code
    def factor(self):
        return 2

    def output(self):
        return luigi.LocalTarget("out/scale.txt")

    def run(self):
        with self.output().open("w") as g:
            g.write("scale")


class Report(NixTask):
    def requires(self):
        return lower.Load()

    def output(self):
        return luigi.LocalTarget("out/report.txt")

    def run(self):
        note("Report")
        with self.input().open() as f, self.output().open("w") as g:
            g.write("report: " + f.read())


class Other(NixTask):
    def output(self):
        return luigi.LocalTarget("out/other.txt")

    def run(self):
        note("Other")
        with self.output().open("w") as g:
            g.write("other v1")


class All(luigi.WrapperTask):
    def requires(self):
        return [Report(), lower.Uses(), Other()]
'''

LOWER = '''
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Load(NixTask):
    def requires(self):
        from pipeline import Raw  # (pipeline imports this module: a top-level import would be circular)
        return Raw()

    def output(self):
        return luigi.LocalTarget("out/load.txt")

    def run(self):
        note("Load")
        with self.input().open() as f, self.output().open("w") as g:
            g.write(f.read().upper())


class Uses(NixTask):
    def output(self):
        return luigi.LocalTarget("out/uses.txt")

    def run(self):
        from pipeline import Scale
        note("Uses")
        with self.output().open("w") as g:
            g.write(f"factor {Scale().factor()}")
'''


def test_a_task_importing_its_upstream_inside_requires_is_not_rerun_by_edits_of_other_tasks_of_that_module() -> None:
    """`def requires(self): from pipeline import Raw` in lower.Load keyed all of pipeline.py (and the modules it
    imports) by content, as a helper module imported inside a method is: editing Other, a task Load has nothing to do
    with, re-ran Load (and Uses, which imports Scale from there the same way). A task class imported by name inside
    a method is now keyed as one the module names at its top: by its result where the task requires it (Raw: its
    file), by its code where its code runs inside the task (Scale().factor() in Uses)."""
    Path("pipeline.py").write_text(PIPELINE)
    Path("lower.py").write_text(LOWER)
    Path("data").mkdir()
    Path("data/raw.txt").write_text("abc\n")
    luigi_cli("--module", "pipeline", "All")
    assert runs() == {"Load": 1, "Report": 1, "Uses": 1, "Other": 1}

    Path("pipeline.py").write_text(PIPELINE.replace("other v1", "other v2"))
    Path("runs.log").unlink()
    luigi_cli("--module", "pipeline", "All")
    assert runs() == {"Other": 1}, "an edit of Other re-ran tasks that only import their upstream from its module"
    assert Path("out/other.txt").read_text() == "other v2"

    Path("pipeline.py").write_text(PIPELINE.replace("other v1", "other v2").replace("return 2", "return 3"))
    Path("runs.log").unlink()
    luigi_cli("--module", "pipeline", "All")
    assert runs() == {"Uses": 1}, "Scale.factor() runs inside Uses: editing it must re-run Uses"
    assert Path("out/uses.txt").read_text() == "factor 3"

    Path("data/raw.txt").write_text("abd\n")
    Path("runs.log").unlink()
    luigi_cli("--module", "pipeline", "All")
    assert runs() == {"Load": 1, "Report": 1}
    assert Path("out/report.txt").read_text() == "report: ABD\n"


# ---- overrides, event handlers and a run() that raises mid-write, with --workers 2 ---------------------------------

HOOKS = '''
import datetime
import enum
import json
import os

import luigi
from luigi.util import inherits, requires
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


def event(*words):
    with open("events.log", "a") as f:
        f.write(" ".join(map(str, words)) + "\\n")


class Colour(enum.Enum):
    red = 1
    green = 2


class Raw(luigi.ExternalTask):
    def output(self):
        return luigi.LocalTarget("data/raw.txt")


class Lines(NixTask):
    def requires(self):
        return Raw()

    def output(self):
        return luigi.LocalTarget("out/lines.txt")

    def run(self):
        note("Lines")
        with self.input().open() as f, self.output().open("w") as g:
            g.write(f.read().upper())


class Params(NixTask):
    hour = luigi.DateHourParameter(default=datetime.datetime(2024, 1, 2, 3))
    span = luigi.TimeDeltaParameter(default=datetime.timedelta(days=1, hours=2))
    colours = luigi.EnumListParameter(enum=Colour, default=(Colour.red, Colour.green))
    ratio = luigi.NumericalParameter(var_type=float, min_value=0, max_value=1, default=0.5)
    picks = luigi.ChoiceListParameter(choices=["x", "y", "z"], default=("x", "z"))
    limit = luigi.OptionalIntParameter(default=None)
    where = luigi.PathParameter(default="data/raw.txt")
    week = luigi.DateIntervalParameter(default=luigi.date_interval.Week.from_date(datetime.date(2024, 1, 3)))
    upstream = luigi.TaskParameter(default=Lines)

    def output(self):
        return luigi.LocalTarget(f"out/params-{self.ratio}.json")

    def run(self):
        note("Params")
        with self.output().open("w") as g:
            json.dump({"hour": str(self.hour), "span": str(self.span), "colours": [c.name for c in self.colours],
                       "picks": list(self.picks), "limit": self.limit, "where": str(self.where),
                       "week": str(self.week), "up": self.upstream.get_task_family()}, g, sort_keys=True)


class Packed(NixTask):
    def requires(self):
        return Lines()

    def output(self):
        return {"blob": luigi.LocalTarget("out/packed/blob.bin", format=luigi.format.Nop),
                "gz": luigi.LocalTarget("out/packed/text.gz", format=luigi.format.Gzip)}

    def run(self):
        note("Packed")
        text = self.input().open().read().encode()
        with self.output()["blob"].temporary_path() as tmp:
            with open(tmp, "wb") as g:
                g.write(bytes(range(256)) + text)
        with self.output()["gz"].open("w") as g:
            g.write(text)


@requires(Params, Packed)
class Combine(NixTask):
    def output(self):
        return luigi.LocalTarget(f"out/combine-{self.ratio}.txt")

    def run(self):
        note("Combine")
        params, packed = self.input()
        with params.open() as p, packed["gz"].open("r") as z, self.output().open("w") as g:
            g.write(p.read() + "\\n" + z.read().decode())


@inherits(Params)
class Flaky(NixTask):
    def requires(self):
        return self.clone(Combine)

    def output(self):
        return luigi.LocalTarget(f"out/flaky-{self.ratio}.txt")

    def run(self):
        note("Flaky")
        with open(self.output().path, "w") as g:
            g.write("partial\\n")
            g.flush()
            raise ValueError("bad row 2")
            g.write(self.input().open().read())

    def on_success(self):
        event("on_success", self.task_family)
        return super().on_success()

    def on_failure(self, exception):
        event("on_failure", self.task_family, type(exception).__name__)
        return "flaky said: " + str(exception)


@luigi.Task.event_handler(luigi.Event.SUCCESS)
def _succeeded(task):
    event("SUCCESS", task.task_family)


@luigi.Task.event_handler(luigi.Event.FAILURE)
def _failed(task, exception):
    event("FAILURE", task.task_family, type(exception).__name__, exception)
'''


def _events() -> list[str]:
    path = Path("events.log")
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return sorted(lines)


def _digests(root: str) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_overrides_and_event_handlers_fire_and_a_partial_output_is_never_stored_with_two_workers() -> None:
    """With `--workers 2`: the task's own on_failure() and the FAILURE handler get its own exception (a ValueError,
    not a nixworkflow wrapper), and the file run() wrote before raising is not stored: the failed build re-run fails
    again (plain Luigi would take the partial file as done). Once fixed, only that task runs, with on_success() and
    SUCCESS; a re-run runs nothing and fires neither (as in plain Luigi); deleted outputs, a Nop binary written through
    temporary_path() and a Gzip file included, come back byte-identical; the typed parameters key alike in every
    process; a new value of one of them re-runs exactly the tasks that have it."""
    Path("hooks.py").write_text(HOOKS)
    Path("data").mkdir()
    Path("data/raw.txt").write_text("alpha\nbeta\n")
    for _ in range(2):
        out = luigi_cli("--module", "hooks", "Flaky", "--workers", "2", ok=False)
        assert "ValueError: bad row 2" in out
        assert Path("out/flaky-0.5.txt").read_text() == "partial\n"
        events = _events()
        assert "on_failure Flaky ValueError" in events and "FAILURE Flaky ValueError bad row 2" in events, events
    assert runs() == {"Lines": 1, "Params": 1, "Packed": 1, "Combine": 1, "Flaky": 2}

    fixed = HOOKS.replace('            raise ValueError("bad row 2")\n', "")
    Path("hooks.py").write_text(fixed)
    Path("runs.log").unlink()
    luigi_cli("--module", "hooks", "Flaky", "--workers", "2")
    assert runs() == {"Flaky": 1}
    assert _events() == ["SUCCESS Flaky", "on_success Flaky"]
    flaky = Path("out/flaky-0.5.txt").read_text()
    assert flaky.startswith('partial\n{"colours": ["red", "green"], "hour": "2024-01-02 03:00:00"') \
        and flaky.endswith("ALPHA\nBETA\n"), flaky

    before = _digests("out")
    shutil.rmtree("out")
    Path("runs.log").unlink()
    luigi_cli("--module", "hooks", "Flaky", "--workers", "2")
    assert runs() == {} and _events() == []
    assert _digests("out") == before

    luigi_cli("--module", "hooks", "Flaky", "--workers", "2", "--Flaky-span", "3 h")
    assert runs() == {"Params": 1, "Combine": 1, "Flaky": 1}


# ---- on_success() writing a _SUCCESS marker into the output directory ------------------------------------------------

MARKER = '''
import os

import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Parts(NixTask):
    def output(self):
        return luigi.LocalTarget("out/parts")

    def run(self):
        note("Parts")
        os.makedirs(self.output().path)
        for i in range(2):
            with open(os.path.join(self.output().path, f"part-{i}"), "w") as g:
                g.write(f"part {i}\\n")

    def on_success(self):
        note("on_success")
        open(os.path.join(self.output().path, "_SUCCESS"), "w").close()
        return super().on_success()

    def complete(self):
        return os.path.exists(os.path.join(self.output().path, "_SUCCESS"))


class Count(luigi.Task):  # plain: counts what the directory holds
    def requires(self):
        return Parts()

    def output(self):
        return luigi.LocalTarget("out/count.txt")

    def run(self):
        note("Count")
        with self.output().open("w") as g:
            g.write(str(sorted(os.listdir(self.input().path))))


class Noisy(NixTask):  # its on_success() fails (a mail server down): Luigi fails the task, the file stays
    def output(self):
        return luigi.LocalTarget("out/noisy.txt")

    def run(self):
        note("Noisy")
        with self.output().open("w") as g:
            g.write("noisy")

    def on_success(self):
        note("noisy_success")
        raise RuntimeError("mail server down")
'''


def test_a_marker_on_success_writes_into_the_output_directory_is_stored_with_it() -> None:
    """on_success() writes `_SUCCESS` into the output directory and complete() looks for it, as Hadoop-style
    pipelines do. Luigi calls on_success() after run(), so the store held the directory without the marker, and each
    check restored it so: complete() said "not complete" at every build (Parts ran each time) and the plain Count
    failed with "Unfulfilled dependency at run time". The task's own on_success() now runs before its outputs are
    stored, once per run; one that raises still fails the task (Luigi gets its exception) with the result stored, as
    plain Luigi's file stays."""
    Path("marker.py").write_text(MARKER)
    for _ in range(2):
        luigi_cli("--module", "marker", "Count")
        assert Path("out/count.txt").read_text() == "['_SUCCESS', 'part-0', 'part-1']"
    assert runs() == {"Parts": 1, "on_success": 1, "Count": 1}

    shutil.rmtree("out")
    Path("runs.log").unlink()
    luigi_cli("--module", "marker", "Count")
    assert runs() == {"Count": 1} and Path("out/count.txt").read_text() == "['_SUCCESS', 'part-0', 'part-1']"

    out = luigi_cli("--module", "marker", "Noisy", ok=False)
    assert "RuntimeError: mail server down" in out and Path("out/noisy.txt").read_text() == "noisy"
    luigi_cli("--module", "marker", "Noisy")
    assert runs()["Noisy"] == 1 and runs()["noisy_success"] == 1
