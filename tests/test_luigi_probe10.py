"""Probing wave 10: Luigi pipelines written as their users write them, migrated by changing only `luigi.Task` to
`NixTask` (the legacy shape: own run() and output()), run with real Luigi against a private store and compared with
what plain Luigi does. Each test is a bug that probing found, and fails on the code before its fix."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import luigi
import pytest

from luigi_nixworkflow import NixTask
from tests.helpers import migrated_pair
from tests.luigi_run import build, note, runs

PARTIAL = '''
import functools

import luigi

from tests.luigi_run import note

BASE = "plain"


def _fmt(text, suffix):
    return text.lower() + suffix


shout = functools.partial(_fmt, suffix="!")


class Helper:
    tidy = functools.partial(_fmt, suffix="?")


class Shout(BASE):
    def output(self):
        return luigi.LocalTarget("shout.txt")

    def run(self):
        note("Shout")
        with self.output().open("w") as f:
            f.write(shout("HEY") + Helper.tidy("YOU"))
'''


@pytest.fixture
def partial_module(tmp_path: Path) -> Iterator[tuple[Path, ModuleType]]:
    code = tmp_path / "code"
    code.mkdir()
    yield code, migrated_pair(PARTIAL, code, "partial_nix", True)
    sys.modules.pop("partial_nix", None)


def test_a_module_level_partial_is_keyed_by_its_function_and_arguments(partial_module: tuple[Path, ModuleType],
                                                                        store_root: Path) -> None:
    """`shout = functools.partial(_fmt, suffix="!")` at module level, called in run(): a partial is neither a
    function nor a plain value, so it was left out of the key. Editing its bound argument or the function it calls
    served the old result ("hey!" where Luigi writes "hey!!"). Now both are keyed, also as a helper class's
    attribute."""
    code, module = partial_module
    build(module.Shout())
    assert Path("shout.txt").read_text() == "hey!you?"
    edits = [('suffix="!")', 'suffix="!!")', "hey!!you?"),  # the module-level partial's bound argument
             ("text.lower() + suffix", "text.lower() + suffix + '.'", "hey!!.you?."),  # the function it calls
             ('suffix="?")', 'suffix="?!")', "hey!!.you?!.")]  # a helper class's partial attribute
    template = PARTIAL
    for count, (old, new, expected) in enumerate(edits, start=2):
        assert old in template
        template = template.replace(old, new)
        module = migrated_pair(template, code, "partial_nix", True)
        build(module.Shout())
        assert Path("shout.txt").read_text() == expected
        assert runs() == {"Shout": count}
    Path("shout.txt").unlink()
    build(module.Shout())  # unchanged: restored, not run
    assert runs() == {"Shout": 4} and Path("shout.txt").read_text() == "hey!!.you?!."


CONSTANTS = '''
import configparser
import dataclasses
import datetime
import decimal
import enum
import re
import types
from pathlib import Path

import luigi

from tests.luigi_run import note

BASE = "plain"
PATTERN = re.compile(r"[0-9]+")
CUTOFF = datetime.date(2024, 1, 1)
ROOT = Path("data")
RATE = decimal.Decimal("1.5")
SEP = b","


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


MODE = Mode.FAST


@dataclasses.dataclass(frozen=True)
class Settings:
    threshold: float = 0.5


SETTINGS = Settings()


@dataclasses.dataclass(frozen=True, slots=True)
class Slotted:
    size: int = 1


SLOTTED = Slotted(size=5)
NS = types.SimpleNamespace(limit=3)
INI = configparser.ConfigParser()
INI.read("settings.ini")


class Report(BASE):
    def output(self):
        return luigi.LocalTarget("report.txt")

    def run(self):
        note("Report")
        with self.output().open("w") as f:
            f.write(f"{PATTERN.findall('a1 b22')} {CUTOFF} {ROOT / 'x'} {RATE * 2} {SEP!r} {MODE.value} "
                    f"{Mode.SLOW.value} {SETTINGS.threshold} {NS.limit} {SLOTTED.size} {INI['report']['title']}")
'''


def test_module_level_constants_of_common_types_are_keyed(tmp_path: Path, store_root: Path) -> None:
    """A compiled regex, a date, a Path, a Decimal, bytes, an enum member, a user enum's values, a dataclass's
    defaults, a slotted dataclass instance, a SimpleNamespace and a ConfigParser read at import, used in run():
    none was a value the key could digest (an enum or dataclass of the module, whose functions its library wrote,
    was not even a user class; a slotted instance has no __dict__), so editing one served the old result. Now
    each edit re-runs the task, which writes what plain Luigi writes; an edit to nothing it reads re-runs
    nothing."""
    code = tmp_path / "code"
    code.mkdir()
    Path("settings.ini").write_text("[report]\ntitle = Q1\n")
    template = CONSTANTS
    expected = "['1', '22'] 2024-01-01 data/x 3.0 b',' fast slow 0.5 3 5 Q1"
    edits = [('r"[0-9]+"', 'r"[0-9]"', "['1', '2', '2']"), ("2024, 1, 1", "2025, 1, 1", "2025-01-01"),
             ('Path("data")', 'Path("d2")', "d2/x"), ('"1.5"', '"2.5"', "5.0"), ('b","', 'b";"', "b';'"),
             ("MODE = Mode.FAST", "MODE = Mode.SLOW", "slow slow"), ('SLOW = "slow"', 'SLOW = "s"', "s s"),
             ("threshold: float = 0.5", "threshold: float = 0.7", "0.7"), ("limit=3", "limit=4", "0.7 4 5 Q1"),
             ("size=5)", "size=6)", "0.7 4 6 Q1")]
    try:
        for count, (old, new, part) in enumerate([("", "", expected), *edits], start=1):
            assert old in template
            template = template.replace(old, new) if old else template
            module = migrated_pair(template, code, "constants_nix", True)
            build(module.Report())
            assert part in Path("report.txt").read_text()
            assert runs() == {"Report": count}, (old, new)
        module = migrated_pair(template.replace("BASE = ", "UNUSED = 1\nBASE = "), code, "constants_nix", True)
        build(module.Report())
        assert runs() == {"Report": len(edits) + 1}
        Path("settings.ini").write_text("[report]\ntitle = Q2\n")  # read by the module when imported
        module = migrated_pair(template, code, "constants_nix", True)
        build(module.Report())
        assert Path("report.txt").read_text().endswith(" 4 6 Q2") and runs() == {"Report": len(edits) + 2}
    finally:
        sys.modules.pop("constants_nix", None)


# ---- an input file that is a symlink to the data ------------------------------------------------------------------


class Shared(luigi.ExternalTask):
    """Data kept elsewhere and linked into the project (`raw.txt -> shared/raw-v1.txt`), as many pipelines do."""

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("raw.txt")


class Upper(NixTask):
    def requires(self) -> luigi.Task:
        return Shared()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("upper.txt")

    def run(self) -> None:
        note("Upper")
        with self.input().open() as f, self.output().open("w") as g:
            g.write(f.read().upper())


class Count(NixTask):
    def requires(self) -> luigi.Task:
        return Shared()

    def command(self) -> str:
        return f"wc -c < {self.input().path} > {self.output()}/count"


def test_a_symlinked_input_is_keyed_by_the_data_it_points_to(store_root: Path) -> None:
    """An ExternalTask's file that is a symlink to the data: it was keyed by the link's text, so editing the data
    behind it served the result for the old data ("ONE" where Luigi writes "TWO"). Now the data is keyed; a
    command() reads a store copy of that data, and a dangling link is a missing input, as Luigi sees it."""
    Path("shared").mkdir()
    Path("shared/raw-v1.txt").write_text("one\n")
    os.symlink("shared/raw-v1.txt", "raw.txt")
    build(Upper(), Count())
    Path("shared/raw-v1.txt").write_text("two!\n")
    build(Upper(), Count())
    assert Path("upper.txt").read_text() == "TWO!\n" and runs() == {"Upper": 2}
    assert (Path(Count().output().path) / "count").read_text().strip() == "5"
    build(Upper(), Count())  # unchanged: served
    assert runs() == {"Upper": 2}
    os.remove("shared/raw-v1.txt")  # dangling: a missing dependency, nothing runs
    build(Upper(), ok=False)
    assert runs() == {"Upper": 2}


# ---- a task class a factory makes ---------------------------------------------------------------------------------

FACTORY = '''
import luigi

from tests.luigi_run import note

BASE = "plain"


def make_export(fmt, sep):
    class Export(BASE):
        task_namespace = fmt

        def output(self):
            return luigi.LocalTarget(f"export.{fmt}")

        def run(self):
            note("Export-" + fmt)
            with self.output().open("w") as f:
                f.write(sep.join(["a", "b"]) + "\\n")

    return Export


CsvExport = make_export("csv", ",")
TsvExport = make_export("tsv", "\\t")
'''


def test_a_task_class_made_by_a_factory_is_keyed_by_what_it_closes_over(tmp_path: Path, store_root: Path) -> None:
    """`CsvExport = make_export("csv", ",")`: every class the factory makes has the same source, and what tells
    them apart (the factory's arguments, closed over by run()) was not keyed, so changing the separator served the
    old file ("a,b" where Luigi writes "a;b"). Now the closure's values are keyed; the other class is untouched."""
    code = tmp_path / "code"
    code.mkdir()
    try:
        module = migrated_pair(FACTORY, code, "factory_nix", True)
        build(module.CsvExport(), module.TsvExport())
        module = migrated_pair(FACTORY.replace('"csv", ","', '"csv", ";"'), code, "factory_nix", True)
        build(module.CsvExport(), module.TsvExport())
        assert Path("export.csv").read_text() == "a;b\n" and Path("export.tsv").read_text() == "a\tb\n"
        assert runs() == {"Export-csv": 2, "Export-tsv": 1}
    finally:
        sys.modules.pop("factory_nix", None)


# ---- environment variables run() reads ----------------------------------------------------------------------------


def data_version() -> str:
    return os.getenv("PROBE10_DATA_VERSION", "v0")


class Scaled(NixTask):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("scaled.txt")

    def run(self) -> None:
        note("Scaled")
        with self.output().open("w") as f:
            f.write(f"{int(os.environ.get('PROBE10_SCALE', '1')) * 10} {data_version()}\n")


def test_environment_variables_run_reads_are_keyed(monkeypatch: pytest.MonkeyPatch, store_root: Path) -> None:
    """run() reading `os.environ["SCALE"]` (or a helper reading `os.getenv(...)`): Luigi hands run() the
    environment, so `SCALE=4 luigi ...` after `SCALE=3 luigi ...` writes 40 where the store served 30. Now the
    variables the code names are keyed (by a digest of their value), read at each build, and an unchanged
    environment still serves the stored result."""
    monkeypatch.setenv("PROBE10_SCALE", "3")
    build(Scaled())
    monkeypatch.setenv("PROBE10_SCALE", "4")
    build(Scaled(), afresh=False)  # (a notebook: no reset() between the builds)
    assert Path("scaled.txt").read_text() == "40 v0\n" and runs() == {"Scaled": 2}
    monkeypatch.setenv("PROBE10_DATA_VERSION", "v2")  # read by a helper
    build(Scaled())
    assert Path("scaled.txt").read_text() == "40 v2\n" and runs() == {"Scaled": 3}
    monkeypatch.setenv("PROBE10_SCALE", "3")
    monkeypatch.delenv("PROBE10_DATA_VERSION")
    Path("scaled.txt").unlink()
    build(Scaled())  # as at first: served, restored
    assert Path("scaled.txt").read_text() == "30 v0\n" and runs() == {"Scaled": 3}
    keyed = [json.loads(p.read_text())["recipe"]["extra"]["luigi"]["environment"]
             for p in (store_root / "realisations").rglob("*.json")]
    assert sorted(sorted(k) for k in keyed) == [["$PROBE10_DATA_VERSION", "$PROBE10_SCALE"], ["$PROBE10_SCALE"],
                                                ["$PROBE10_SCALE"]]
    assert not {"3", "4", "v2"} & {v for k in keyed for v in k.values()}  # digests, never the values


# ---- class attributes set from module-level names -----------------------------------------------------------------

ATTRIBUTES = '''
import luigi

import p10_helpers
from tests.luigi_run import note

BASE = "plain"
COLUMNS = ["a", "b"]


class Select(BASE):
    columns = COLUMNS
    sep = p10_helpers.SEP
    fmt = staticmethod(p10_helpers.shout)

    def output(self):
        return luigi.LocalTarget("selected.txt")

    def run(self):
        note("Select")
        with self.output().open("w") as f:
            f.write(self.fmt(self.sep.join(self.columns)))
'''


def test_class_attributes_set_from_module_level_names_are_keyed(tmp_path: Path, store_root: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`columns = COLUMNS`, `sep = helpers.SEP`, `fmt = staticmethod(helpers.shout)` in the class body, used
    as `self.columns` in run(): the class's source names them, but only the methods' code was followed to the
    values behind names, so editing COLUMNS, SEP or shout() served the old file. Now the class body is followed
    as a method is."""
    code = tmp_path / "code"
    code.mkdir()
    monkeypatch.syspath_prepend(str(code))
    helpers = code / "p10_helpers.py"
    edits = [(None, None, "A,B"), ("COLUMNS = [\"a\", \"b\"]", "COLUMNS = [\"a\", \"b\", \"c\"]", "A,B,C"),
             ('SEP = ","', 'SEP = ";"', "A;B;C"), ("text.upper()", "text.upper() + '!'", "A;B;C!")]
    template, helper = ATTRIBUTES, 'SEP = ","\n\n\ndef shout(text):\n    return text.upper()\n'
    try:
        for count, (old, new, expected) in enumerate(edits, start=1):
            if old is not None:
                assert (old in template) != (old in helper)
                template, helper = template.replace(old, new), helper.replace(old, new)
            helpers.write_text(helper)
            sys.modules.pop("p10_helpers", None)
            module = migrated_pair(template, code, "attributes_nix", True)
            build(module.Select())
            assert Path("selected.txt").read_text() == expected
            assert runs() == {"Select": count}
        Path("selected.txt").unlink()
        build(module.Select())
        assert runs() == {"Select": len(edits)} and Path("selected.txt").read_text() == "A;B;C!"
    finally:
        for name in ("attributes_nix", "p10_helpers"):
            sys.modules.pop(name, None)


HOME_PATHS = '''
import os
from pathlib import Path

import luigi

from tests.luigi_run import note

BASE = "plain"
DATA = Path(__file__).parent / "data"
NAMES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "names.txt")


class Listed(BASE):
    def output(self):
        return luigi.LocalTarget("listed.txt")

    def run(self):
        note("Listed")
        with self.output().open("w") as f:
            f.write(f"{DATA.name} {os.path.basename(NAMES)}")
'''


def test_paths_beside_the_module_key_alike_in_every_checkout(tmp_path: Path, store_root: Path) -> None:
    """`DATA = Path(__file__).parent / "data"` (and its os.path form) once keyed by its absolute path: a second
    checkout of the same pipeline re-ran every task that uses it, though its code and results are the same. The
    module's directory now stands as a placeholder in module-level values; moving a value elsewhere re-runs."""
    checkouts = [tmp_path / "a" / "code", tmp_path / "b" / "code"]
    for code in checkouts:
        code.mkdir(parents=True)
        module = migrated_pair(HOME_PATHS, code, "home_paths", True)
        Path("listed.txt").unlink(missing_ok=True)
        build(module.Listed())
        assert Path("listed.txt").read_text() == "data names.txt" and runs() == {"Listed": 1}
    moved = migrated_pair(HOME_PATHS.replace('"data"', '"data2"'), checkouts[1], "home_paths", True)
    build(moved.Listed())
    assert Path("listed.txt").read_text() == "data2 names.txt" and runs() == {"Listed": 2}
    sys.modules.pop("home_paths", None)
