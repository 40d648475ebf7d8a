"""Probing wave 18 (Luigi): data files a task's code opens by a path it builds in a loop over a list/interval
parameter, from a luigi.Config class's value, or through a helper with an `if`/`else`, run with real Luigi against a
private store, for a legacy task (its own run() and output()) and a store-native produce(out) task. Each test is a bug
that probing found (editing the file served the old result), and fails on the code before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.luigi_run import luigi_cli, runs

# ---- a loop or comprehension over a ListParameter / DateIntervalParameter ----------------------------------------

LOOPS = '''
import os
from pathlib import Path
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Up(NixTask):
    name = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"out/up_{self.name}.txt")

    def run(self):
        note("Up" + self.name)
        with self.output().open("w") as f:
            f.write("up " + self.name + "\\n")


class Loop(NixTask):
    names = luigi.ListParameter()

    def requires(self):
        return [Up(name=n) for n in self.names]

    def output(self):
        return luigi.LocalTarget("out/loop.txt")

    def run(self):
        note("Loop")
        text = ""
        os.makedirs("out", exist_ok=True)
        for name in self.names:
            with open(f"data/{name}.csv") as f:
                text += f.read()
            text += open(f"out/up_{name}.txt").read()        # an upstream's output: keyed as its result
            with open(f"out/side_{name}.log", "w") as g:      # written, not read: never keyed
                g.write(str(os.getpid()))
        with self.output().open("w") as f:
            f.write(text)


class Comprehension(NixTask):
    names = luigi.ListParameter()

    def output(self):
        return luigi.LocalTarget("out/comprehension.txt")

    def run(self):
        note("Comprehension")
        texts = [Path("data", f"{n}.csv").read_text() for n in sorted(self.names)]
        with self.output().open("w") as f:
            f.write("".join(texts))


class Days(NixTask):
    date_interval = luigi.DateIntervalParameter()

    def output(self):
        return luigi.LocalTarget("out/days.txt")

    def run(self):
        note("Days")
        text = ""
        for d in self.date_interval:
            text += open(d.strftime("logs/%Y-%m-%d.log")).read()
        with self.output().open("w") as f:
            f.write(text)


class Native(NixTask):
    names = luigi.ListParameter()

    def produce(self, out):
        note("Native")
        (out / "all.txt").write_text("".join(open("data/%s.csv" % n).read() for n in self.names))
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_paths_built_in_a_loop_over_a_list_or_interval_parameter_are_keyed() -> None:
    """`for name in self.names: open(f"data/{name}.csv")`, a comprehension over `sorted(self.names)`, `for d in
    self.date_interval: open(d.strftime("logs/%Y-%m-%d.log"))`, and the same in a produce(out) task: the loop
    variable was not a value to format, so editing any of these files served the old result. Each item of the
    parameter is formatted now and its file keyed: editing one re-runs the tasks that read it; a file of a name or a
    day outside the parameter, a file the loop writes and an upstream's output (its own result) are not keyed."""
    Path("loops.py").write_text(LOOPS)
    Path("data").mkdir()
    Path("logs").mkdir()
    for name in ("a", "b", "c"):
        Path("data", f"{name}.csv").write_text(f"{name}\n")
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        Path("logs", f"{day}.log").write_text(f"{day}\n")

    def everything() -> None:
        luigi_cli("--module", "loops", "Loop", "--names", '["a", "b"]')
        luigi_cli("--module", "loops", "Comprehension", "--names", '["b", "a"]')
        luigi_cli("--module", "loops", "Days", "--date-interval", "2024-01-01-2024-01-03")
        luigi_cli("--module", "loops", "Native", "--names", '["a", "b"]')

    everything()
    first = {"Upa": 1, "Upb": 1, "Loop": 1, "Comprehension": 1, "Days": 1, "Native": 1}
    assert runs() == first
    everything()  # (unchanged, the side files written: served)
    assert runs() == first
    Path("data/c.csv").write_text("c v2\n")  # (no task's names hold c)
    Path("logs/2024-01-03.log").write_text("outside the interval\n")
    everything()
    assert runs() == first
    Path("data/b.csv").write_text("b v2\n")
    everything()
    assert runs() == {**first, "Loop": 2, "Comprehension": 2, "Native": 2}
    assert Path("out/loop.txt").read_text() == "a\nup a\nb v2\nup b\n"
    assert Path("out/comprehension.txt").read_text() == "a\nb v2\n"
    Path("logs/2024-01-02.log").write_text("day two v2\n")
    everything()
    assert runs() == {**first, "Loop": 2, "Comprehension": 2, "Native": 2, "Days": 2}
    assert Path("out/days.txt").read_text() == "2024-01-01\nday two v2\n"


# ---- a luigi.Config class's value, and a helper choosing between two paths ---------------------------------------

HELPERS = '''
import os


def pick(name, old=False):
    """The name's file: the archived one or the current one."""
    root = "data"
    if old:
        path = f"{root}/old_{name}.txt"
    else:
        os.makedirs("out", exist_ok=True)
        path = f"{root}/{name}.txt"
    return path


def notes(name, archived):
    if archived:
        return os.path.join("notes", "archive", name + ".md")
    return os.path.join("notes", name + ".md")
'''

CONFIGURED = '''
import os
from pathlib import Path
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note
from pathhelpers import notes, pick


class Paths(luigi.Config):
    root = luigi.Parameter(default="data")


class Conf(NixTask):
    name = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"out/conf_{self.name}.txt")

    def run(self):
        note("Conf" + self.name)
        text = open(f"{Paths().root}/lookup.csv").read() + open(os.path.join(Paths().root, self.name + ".txt")).read()
        with self.output().open("w") as f:
            f.write(text)


class Picked(NixTask):
    name = luigi.Parameter()
    old = luigi.BoolParameter()
    archived = luigi.BoolParameter()

    def output(self):
        return luigi.LocalTarget(f"out/picked_{self.name}.txt")

    def run(self):
        note("Picked" + self.name)
        with self.output().open("w") as f:
            f.write(open(pick(self.name, self.old)).read() + open(notes(self.name, self.archived)).read())


class NativeConf(NixTask):
    def produce(self, out):
        note("NativeConf")
        paths = Paths()
        (out / "lookup.txt").write_text((Path(paths.root) / "lookup.csv").read_text())
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_paths_from_a_config_class_or_a_branching_helper_are_keyed() -> None:
    """`open(f"{Paths().root}/lookup.csv")` and `os.path.join(Paths().root, self.name + ".txt")` with `class
    Paths(luigi.Config)` (its value was keyed, the file it names was not), and helpers that assign locals and choose
    between two paths with `if`/`else` (only a helper of one `return` was followed): editing the file served the old
    result. Each path is keyed now (both a helper's branches: over-keying at worst), in a produce(out) task too; an
    unrelated file is not, and a changed `[Paths] root` keys the files of the new directory."""
    Path("pathhelpers.py").write_text(HELPERS)
    Path("configured.py").write_text(CONFIGURED)
    for d in ("data", "data2", "notes/archive"):
        Path(d).mkdir(parents=True)
    for path, text in {"data/lookup.csv": "look\n", "data/a.txt": "a\n", "data/old_a.txt": "old a\n",
                       "data/unrelated.txt": "x\n", "notes/a.md": "note a\n", "notes/archive/a.md": "archived a\n",
                       "data2/lookup.csv": "look2\n", "data2/a.txt": "a2\n"}.items():
        Path(path).write_text(text)

    def everything() -> None:
        luigi_cli("--module", "configured", "Conf", "--name", "a")
        luigi_cli("--module", "configured", "Picked", "--name", "a")
        luigi_cli("--module", "configured", "NativeConf")

    everything()
    everything()
    first = {"Confa": 1, "Pickeda": 1, "NativeConf": 1}
    assert runs() == first
    Path("data/unrelated.txt").write_text("x v2\n")
    everything()
    assert runs() == first
    Path("data/lookup.csv").write_text("look v2\n")
    everything()
    assert runs() == {**first, "Confa": 2, "NativeConf": 2}
    assert Path("out/conf_a.txt").read_text() == "look v2\na\n"
    Path("data/a.txt").write_text("a v2\n")
    everything()
    assert runs() == {**first, "Confa": 3, "NativeConf": 2, "Pickeda": 2}
    assert Path("out/picked_a.txt").read_text() == "a v2\nnote a\n"
    Path("notes/a.md").write_text("note a v2\n")
    everything()
    assert runs() == {**first, "Confa": 3, "NativeConf": 2, "Pickeda": 3}
    assert Path("out/picked_a.txt").read_text() == "a v2\nnote a v2\n"
    Path("luigi.cfg").write_text("[Paths]\nroot = data2\n")
    everything()
    assert runs() == {**first, "Confa": 4, "NativeConf": 3, "Pickeda": 3}
    assert Path("out/conf_a.txt").read_text() == "look2\na2\n"
    Path("data2/a.txt").write_text("a2 v2\n")
    Path("data/a.txt").write_text("a v3\n")  # (no longer Conf's: only Picked re-runs)
    everything()
    assert runs() == {**first, "Confa": 5, "NativeConf": 3, "Pickeda": 4}
    assert Path("out/conf_a.txt").read_text() == "look2\na2 v2\n"
