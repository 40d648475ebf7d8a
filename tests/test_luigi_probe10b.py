"""Probing wave 10b: Luigi pipelines written as their users write them, migrated by changing only `luigi.Task` to
`NixTask`, run with real Luigi against a private store and compared with what plain Luigi does. Each test is a bug
that probing found, and fails on the code before its fix."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import luigi
import pytest

from luigi_nixworkflow import NixTask, static
from tests.helpers import migrated_pair
from tests.luigi_run import build, note, runs

# ---- Luigi's scheduling attributes ---------------------------------------------------------------------------------

SCHEDULED = '''
import luigi

from tests.luigi_run import note

BASE = "plain"


class Tuned(BASE):
    priority = 10
    resources = {"db": 1}
    retry_count = 2
    worker_timeout = 600
    disable_window = 30
    disable_hard_timeout: int = 3600
    max_batch_size = 4
    owner_email = "data@example.org"
    accepts_messages = False

    def output(self):
        return luigi.LocalTarget("tuned.txt")

    def run(self):
        note("Tuned")
        with self.output().open("w") as f:
            f.write("tuned\\n")


class Labelled(BASE):
    priority = 3

    def output(self):
        return luigi.LocalTarget("labelled.txt")

    def run(self):
        note("Labelled")
        with self.output().open("w") as f:
            f.write(describe(self))


def describe(task):
    return f"priority {task.priority}\\n"


class Sized(BASE):
    n = luigi.IntParameter(default=2)

    @property
    def resources(self):
        return {"cpu": self.n - 1}

    def output(self):
        return luigi.LocalTarget("sized.txt")

    def run(self):
        note("Sized")
        with self.output().open("w") as f:
            f.write(str(self.resources["cpu"]) + "\\n")
'''


@pytest.fixture
def code_dir(tmp_path: Path) -> Iterator[Path]:
    code = tmp_path / "code"
    code.mkdir()
    yield code
    sys.modules.pop("scheduled_nix", None)


def test_editing_scheduling_attributes_does_not_re_run_a_task(code_dir: Path, store_root: Path) -> None:
    """`priority = 10` raised to 20, a resource or retry count changed: Luigi reads these only to schedule the task,
    and plain Luigi (its output in place) does not re-run it. The class source keyed them, so every such edit ran
    the task again. Now a plain value of a scheduling attribute is left out of the key, unless the task's code reads
    it (run() writing `self.priority` through a helper re-runs), and a property of that name is code, still keyed."""
    module = migrated_pair(SCHEDULED, code_dir, "scheduled_nix", True)
    build(module.Tuned(), module.Labelled(), module.Sized())
    edits = [("priority = 10", "priority = 20"), ('{"db": 1}', '{"db": 1, "net": 1}'),
             ("retry_count = 2", "retry_count = 5"),
             ("worker_timeout = 600", "worker_timeout = 60"), ("disable_window = 30", "disable_window = 3"),
             ("int = 3600", "int = 7200"), ("max_batch_size = 4", "max_batch_size = 8"),
             ('"data@example.org"', '"ops@example.org"'), ("accepts_messages = False", "accepts_messages = True")]
    template = SCHEDULED
    for old, new in edits:
        assert old in template
        template = template.replace(old, new)
    module = migrated_pair(template, code_dir, "scheduled_nix", True)
    Path("tuned.txt").unlink()
    build(module.Tuned())  # the same result: restored from the store, not run
    assert runs()["Tuned"] == 1 and Path("tuned.txt").read_text() == "tuned\n"
    template = template.replace("priority = 3", "priority = 4")  # read by run(): what it writes changes
    template = template.replace('"cpu": self.n - 1}', '"cpu": self.n - 2}')  # a property of that name: code
    module = migrated_pair(template, code_dir, "scheduled_nix", True)
    build(module.Tuned(), module.Labelled(), module.Sized())
    assert Path("labelled.txt").read_text() == "priority 4\n" and Path("sized.txt").read_text() == "0\n"
    assert runs() == {"Tuned": 1, "Labelled": 2, "Sized": 2}


# ---- symlinks inside a directory input ----------------------------------------------------------------------------


class RawDir(luigi.ExternalTask):
    """A directory of data whose files are links to data kept elsewhere (`rawdir/x -> ../shared/x`)."""

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("rawdir")


class Joined(NixTask):
    def requires(self) -> luigi.Task:
        return RawDir()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("joined.txt")

    def run(self) -> None:
        note("Joined")
        root = Path(self.input().path)
        with self.output().open("w") as f:
            f.write("".join((root / name).read_text() for name in ("x", "latest", "sub/y", "own")))


class Tail(NixTask):
    """Reads the same directory through a task it yields (a dynamic dependency): keyed by all of it."""

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("tail.txt")

    def run(self) -> Iterator[luigi.Task]:
        raw = yield RawDir()
        note("Tail")
        with self.output().open("w") as f:
            f.write((Path(raw.path) / "sub" / "y").read_text())


def test_symlinks_inside_a_directory_input_are_keyed_by_the_data_they_point_to(store_root: Path) -> None:
    """A plain task's directory whose entries link out of it (`rawdir/x -> ../shared/x`, a linked subdirectory):
    the directory was keyed by its NAR, which holds the links' text, so editing the data behind a link served the
    result made from the old data. Now each outward link is keyed by what it points to (through a linked
    directory's own links); a link inside the directory (`latest -> x`) is covered by the directory itself."""
    Path("shared/sub").mkdir(parents=True)
    Path("shared/x").write_text("x1 ")
    Path("shared/sub/y").write_text("y1 ")
    Path("rawdir").mkdir()
    Path("rawdir/own").write_text("own\n")
    os.symlink("../shared/x", "rawdir/x")
    os.symlink("x", "rawdir/latest")
    os.symlink("../shared/sub", "rawdir/sub")
    build(Joined(), Tail())
    assert Path("joined.txt").read_text() == "x1 x1 y1 own\n" and Path("tail.txt").read_text() == "y1 "
    Path("shared/x").write_text("x2 ")  # a linked file
    build(Joined(), Tail())
    assert Path("joined.txt").read_text() == "x2 x2 y1 own\n" and runs() == {"Joined": 2, "Tail": 2}
    Path("shared/sub/y").write_text("y2 ")  # a file in a linked directory
    build(Joined(), Tail())
    assert Path("joined.txt").read_text() == "x2 x2 y2 own\n" and Path("tail.txt").read_text() == "y2 "
    assert runs() == {"Joined": 3, "Tail": 3}
    os.remove("joined.txt")
    build(Joined(), Tail())  # unchanged: served
    assert runs() == {"Joined": 3, "Tail": 3} and Path("joined.txt").read_text() == "x2 x2 y2 own\n"


# ---- static() of a symlink ----------------------------------------------------------------------------------------


class RunsTool(NixTask):
    def command(self) -> str:
        return f"sh {static('tool.sh')} > {self.output()}/out"


class RunsTools(NixTask):
    def command(self) -> str:
        return f"sh {static('tools')}/x > {self.output()}/out"


def test_static_of_a_symlink_is_keyed_by_the_data_and_a_link_out_of_a_directory_is_refused(store_root: Path,
                                                                                             caplog: object) -> None:
    """`static("tool.sh")` where tool.sh links to the data (`-> /shared/tool.sh`): the store copy was the link
    itself, keyed by its text, so after the data was edited the old output was served ("v1" where the command now
    prints "v2"). Now the data is stored and keyed. A static directory with a link out of it (`tools/x ->
    ../shared/x`), whose copy would hold a dangling link, is refused, naming the link, and nothing is stored."""
    Path("shared").mkdir()
    Path("shared/tool.sh").write_text("echo v1\n")
    os.symlink(os.path.abspath("shared/tool.sh"), "tool.sh")
    build(RunsTool())
    Path("shared/tool.sh").write_text("echo v2\n")
    build(RunsTool())
    assert (Path(RunsTool().output().path) / "out").read_text() == "v2\n"
    Path("tools").mkdir()
    os.symlink("../shared/tool.sh", "tools/x")
    objects = sorted(os.listdir(store_root / "store"))
    build(RunsTools(), ok=False)
    assert "static input" in caplog.text and "x is a symlink to" in caplog.text  # type: ignore[attr-defined]
    assert sorted(os.listdir(store_root / "store")) == objects
