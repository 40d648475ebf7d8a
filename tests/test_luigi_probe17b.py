"""Probing wave 17b (Luigi): data files a legacy task's run() opens by a path built from its parameters in the other
everyday spellings (`+`, `%`, `.format()`, pathlib's `/`, `str(self.date)`, `.isoformat()`, a local variable, a
project helper, a luigi.cfg directory), run with the real `luigi` command against a private store. Each test is a
bug that probing found (editing the file served the old result), and fails on the code before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.luigi_run import luigi_cli, runs

# ---- `+`, `%`, `.format()`, str() and .isoformat() ---------------------------------------------------------------

SPELLED = '''
import os
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Plus(NixTask):
    name = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget("out/plus_" + self.name + ".txt")

    def run(self):
        note("Plus" + self.name)
        with open("data/" + self.name + ".csv") as f:
            text = f.read()
        os.makedirs("out", exist_ok=True)
        with open("out/side_" + self.name + ".log", "w") as g:  # written, not read: never keyed
            g.write(str(os.getpid()))
        with self.output().open("w") as f:
            f.write(text.upper())


class Percent(NixTask):
    name = luigi.Parameter()
    n = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget("out/percent_%s_%d.txt" % (self.name, self.n))

    def run(self):
        note("Percent" + self.name)
        with open("data/%s.csv" % self.name) as f, open("data/part_%03d.csv" % (self.n,)) as g:
            text = f.read() + g.read()
        with self.output().open("w") as f:
            f.write(text)


class Formatted(NixTask):
    date = luigi.DateParameter()

    def output(self):
        return luigi.LocalTarget("out/formatted_{}.txt".format(self.date))

    def run(self):
        note("Formatted")
        with open("data/{}.csv".format(self.date)) as f, open("data/" + self.date.isoformat() + ".extra") as g, \\
                open("data/" + str(self.date) + ".more") as h:
            text = f.read() + g.read() + h.read()
        with self.output().open("w") as f:
            f.write(text)
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_paths_built_with_plus_percent_and_format_are_keyed() -> None:
    """run() opens `"data/" + self.name + ".csv"`, `"data/%s.csv" % self.name`, `"data/part_%03d.csv" % (self.n,)`,
    `"data/{}.csv".format(self.date)`, `"data/" + self.date.isoformat() + ".extra"` and `"data/" + str(self.date) +
    ".more"`: only f-strings and os.path.join were formatted and keyed, so editing any of these files served the old
    result. Each is formatted with the task's values (`%03d` of 7 is part_007.csv) and keyed by content: editing it
    re-runs the tasks that read it, and only those; a path the code writes (`open(..., "w")`) is not keyed."""
    Path("spelled.py").write_text(SPELLED)
    Path("data").mkdir()
    for name, text in {"a.csv": "a\n", "b.csv": "b\n", "part_007.csv": "p7\n", "2024-01-02.csv": "day\n",
                       "2024-01-02.extra": "extra\n", "2024-01-02.more": "more\n"}.items():
        Path("data", name).write_text(text)

    def everything() -> None:
        for name in ("a", "b"):
            luigi_cli("--module", "spelled", "Plus", "--name", name)
        luigi_cli("--module", "spelled", "Percent", "--name", "a", "--n", "7")
        luigi_cli("--module", "spelled", "Formatted", "--date", "2024-01-02")

    everything()
    assert runs() == {"Plusa": 1, "Plusb": 1, "Percenta": 1, "Formatted": 1}
    everything()  # (unchanged, and the side files written: served)
    assert runs() == {"Plusa": 1, "Plusb": 1, "Percenta": 1, "Formatted": 1}
    Path("data/a.csv").write_text("a v2\n")
    everything()
    assert runs() == {"Plusa": 2, "Plusb": 1, "Percenta": 2, "Formatted": 1}
    assert Path("out/plus_a.txt").read_text() == "A V2\n"
    assert Path("out/percent_a_7.txt").read_text() == "a v2\np7\n"
    Path("data/part_007.csv").write_text("p7 v2\n")
    Path("data/2024-01-02.extra").write_text("extra v2\n")
    everything()
    assert runs() == {"Plusa": 2, "Plusb": 1, "Percenta": 3, "Formatted": 2}
    assert Path("out/formatted_2024-01-02.txt").read_text() == "day\nextra v2\nmore\n"
    Path("data/2024-01-02.more").write_text("more v2\n")
    everything()
    assert runs() == {"Plusa": 2, "Plusb": 1, "Percenta": 3, "Formatted": 3}
    assert Path("out/formatted_2024-01-02.txt").read_text() == "day\nextra v2\nmore v2\n"


# ---- pathlib: Path("data") / f"...", Path("data") / self.name, a module-level Path ---------------------------------

PATHS = '''
from pathlib import Path
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note

HERE = Path(__file__).parent
RAW = HERE / "raw"


class Slashed(NixTask):
    name = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"out/slashed_{self.name}.txt")

    def run(self):
        note("Slashed" + self.name)
        text = (Path("data") / f"{self.name}.csv").read_text() + (Path("data") / self.name).read_text()
        text += (RAW / self.name / "notes.txt").read_text()
        Path("out").mkdir(exist_ok=True)
        (Path("out") / f"{self.name}.log").write_text("written, not read")
        with self.output().open("w") as f:
            f.write(text)
'''


def test_paths_built_with_pathlib_are_keyed() -> None:
    """run() reads `Path("data") / f"{self.name}.csv"`, `Path("data") / self.name` and `RAW / self.name /
    "notes.txt"` (RAW a module-level `Path(__file__).parent / "raw"`): pathlib's `/` was not followed, so editing
    any of them served the old result. Each is keyed by content now, for that name's task only; the `.log` the task
    writes with `write_text` is not keyed."""
    Path("paths.py").write_text(PATHS)
    Path("data").mkdir()
    Path("raw/x").mkdir(parents=True)
    Path("raw/y").mkdir(parents=True)
    for name in ("x", "y"):
        Path("data", f"{name}.csv").write_text(f"{name} csv\n")
        Path("data", name).write_text(f"{name} bare\n")
        Path("raw", name, "notes.txt").write_text(f"{name} notes\n")

    def both() -> None:
        for name in ("x", "y"):
            luigi_cli("--module", "paths", "Slashed", "--name", name)

    both()
    both()
    assert runs() == {"Slashedx": 1, "Slashedy": 1}
    Path("data/x.csv").write_text("x csv v2\n")
    both()
    assert runs() == {"Slashedx": 2, "Slashedy": 1}
    Path("data/y").write_text("y bare v2\n")
    both()
    assert runs() == {"Slashedx": 2, "Slashedy": 2}
    Path("raw/x/notes.txt").write_text("x notes v2\n")
    both()
    assert runs() == {"Slashedx": 3, "Slashedy": 2}
    assert Path("out/slashed_x.txt").read_text() == "x csv v2\nx bare\nx notes v2\n"
    assert Path("out/slashed_y.txt").read_text() == "y csv\ny bare v2\ny notes\n"


# ---- a local variable, a project helper, a luigi.cfg directory, strftime's own path -------------------------------

HELPERS = '''
def raw_path(day, root="raw"):
    """The day's raw file."""
    stamp = day.strftime("%Y%m%d")
    return f"{root}/{stamp}.json"
'''

INDIRECT = '''
import os
import luigi
from luigi.configuration import get_config
from luigi_nixworkflow import NixTask
from tests.luigi_run import note
from pathhelpers import raw_path


class Indirect(NixTask):
    date = luigi.DateParameter()

    def output(self):
        return luigi.LocalTarget(self.date.strftime("out/indirect_%Y-%m-%d.txt"))

    def run(self):
        note(self.date.strftime("Indirect%d"))
        day = self.date.strftime("%Y-%m-%d")
        texts = [open(f"daily/{day}.csv").read()]                                   # a local
        texts.append(open(raw_path(self.date)).read())                              # a project helper
        texts.append(open(os.path.join(get_config().get("paths", "lookups"), f"{day}.tsv")).read())  # luigi.cfg
        texts.append(open(self.date.strftime("stamped/%Y/%m-%d.txt")).read())      # strftime's own path
        with self.output().open("w") as f:
            f.write("".join(texts))
'''


def test_paths_built_through_a_local_a_helper_or_luigi_cfg_are_keyed() -> None:
    """run() opens `f"daily/{day}.csv"` with `day = self.date.strftime(...)`, `raw_path(self.date)` (a project
    helper returning `f"{root}/{stamp}.json"`), `os.path.join(get_config().get("paths", "lookups"), f"{day}.tsv")`
    and `self.date.strftime("stamped/%Y/%m-%d.txt")`: none was keyed, so editing any of these files served the old
    result. Each is formatted with the task's date (and luigi.cfg's directory) and keyed by content, for that day's
    task only."""
    Path("pathhelpers.py").write_text(HELPERS)
    Path("indirect.py").write_text(INDIRECT)
    Path("luigi.cfg").write_text("[paths]\nlookups = tables\n")
    files = {}
    for day in ("01", "02"):
        files[day] = [Path(f"daily/2024-01-{day}.csv"), Path(f"raw/202401{day}.json"),
                      Path(f"tables/2024-01-{day}.tsv"), Path(f"stamped/2024/01-{day}.txt")]
        for i, p in enumerate(files[day]):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"{day}-{i}\n")

    def both() -> None:
        for day in ("01", "02"):
            luigi_cli("--module", "indirect", "Indirect", "--date", f"2024-01-{day}")

    both()
    both()
    assert runs() == {"Indirect01": 1, "Indirect02": 1}
    for i, p in enumerate(files["02"]):
        p.write_text(f"02-{i} v2\n")
        both()
        assert runs() == {"Indirect01": 1, "Indirect02": 2 + i}, p
    assert Path("out/indirect_2024-01-02.txt").read_text() == "".join(f"02-{i} v2\n" for i in range(4))
    assert Path("out/indirect_2024-01-01.txt").read_text() == "".join(f"01-{i}\n" for i in range(4))
